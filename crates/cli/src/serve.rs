//! `dlq-healer serve`: the web dashboard (the three panels as live charts, the failure groups of
//! `inspect`, recent decisions linked to their archived records, a dry run and a confirmed redrive
//! per group), its JSON API and a Prometheus `/metrics` endpoint.
//!
//! Safety: binds 127.0.0.1 by default and refuses any other address without `--token`; with a
//! token every request needs `Authorization: Bearer <token>` (or the cookie the page sets after
//! `/?token=<token>`); without one, only requests that name a loopback host are answered (no
//! DNS rebinding); POSTs must be JSON and not from another origin; answers may not be framed;
//! request bodies are limited to 16 KiB; a real redrive needs the confirm
//! token that the dry run of the same selection returned, and moves the messages that dry run
//! listed, once.

use crate::filter::Filter;
use crate::inspect::Inspection;
use crate::ops::Operator;
use crate::rate::RealPacer;
use crate::redrive::{MoveOptions, MoveReport, Progress, Redrive};
use crate::run::Backend;
use crate::stats::{CounterGuard, MessageCounts};
use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use dlq_healer_core::FailureClass;
use dlq_healer_core::alert::redact;
use dlq_healer_core::records::ArchiveRecord;
use dlq_healer_core::rules::RuleSet;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The page.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// How long a peek at the DLQ is reused before the next one.
const GROUPS_TTL: Duration = Duration::from_secs(15);
/// Messages the failure groups read where reading receives them (SQS).
const GROUPS_RECEIVED: usize = 10_000;
/// Cookie carrying the token for the page's own requests.
const TOKEN_COOKIE: &str = "dlq_healer_token";

/// Flags of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    ops: crate::ops::OpsArgs,
    /// Address to listen on. Any address but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Bearer token every request must carry (required when not bound to loopback).
    #[arg(long, env = "DLQ_HEALER_TOKEN")]
    token: Option<String>,
    /// The DLQ whose failure groups to show and redrive.
    #[arg(long, env = "DLQ_URL")]
    dlq: Option<String>,
    /// On aws: the window of ledger decisions the panels count (e.g. 24h).
    #[arg(long, default_value = "24h")]
    window: String,
    /// Rules file (TOML); the shipped defaults when absent.
    #[arg(long, env = "DLQ_HEALER_RULES")]
    rules: Option<std::path::PathBuf>,
}

/// What the handlers share.
pub struct AppState {
    operator: Arc<dyn Operator>,
    dlq: Option<String>,
    rules: Arc<RuleSet>,
    token: Option<String>,
    window: chrono::Duration,
    groups: tokio::sync::Mutex<Option<(Instant, Inspection)>>,
    moving: tokio::sync::Mutex<()>,
    /// The dry runs whose moves may still be confirmed, newest last.
    dry_runs: std::sync::Mutex<Vec<DryRun>>,
    /// What the message counts are, for `/metrics`.
    message_counts: MessageCounts,
    /// Keeps the counters of `/metrics` from going down.
    counters: std::sync::Mutex<CounterGuard>,
    /// The local store's file as `serve` opened it, to notice it removed or replaced.
    store: Option<StoreFile>,
}

/// A file as found at start: its path, and which file it was (device and inode).
struct StoreFile {
    path: std::path::PathBuf,
    identity: (u64, u64),
}

impl StoreFile {
    /// The file at `path` now.
    fn at(path: &std::path::Path) -> Result<StoreFile> {
        let metadata =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(StoreFile {
            path: path.to_path_buf(),
            identity: file_identity(&metadata),
        })
    }

    /// Why the store can no longer be shown, if the file at its path was removed or replaced:
    /// `serve` would go on showing (and moving messages in) a file no other process sees.
    fn gone(&self) -> Option<String> {
        let now = std::fs::metadata(&self.path).map(|m| file_identity(&m));
        (now.as_ref().ok() != Some(&self.identity)).then(|| {
            format!(
                "the store {} was {} after serve started; restart serve to show the store there now",
                self.path.display(),
                if now.is_err() { "removed" } else { "replaced" }
            )
        })
    }
}

fn file_identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

/// A dry run the page showed: a confirm token moves the messages it listed, once.
struct DryRun {
    token: String,
    /// The request's selection (see [`selection_of`]).
    selection: String,
    /// The DLQ message ids it would have moved.
    ids: Vec<String>,
    at: Instant,
}

/// How long a dry run's token confirms its move.
const DRY_RUN_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Dry runs kept for confirmation at once; older ones are forgotten first.
const DRY_RUNS_KEPT: usize = 32;

/// Check the bind address against the token: loopback is free, anything else needs a token.
pub fn check_bind(bind: &SocketAddr, token: Option<&str>) -> Result<()> {
    if let Some(token) = token
        && token.len() < 8
    {
        bail!("--token must be at least 8 characters");
    }
    if !bind.ip().is_loopback() && token.is_none() {
        bail!(
            "refusing to serve on {bind} without --token: anyone who can reach it could move messages. \
             Pass --token (or DLQ_HEALER_TOKEN), or bind 127.0.0.1"
        );
    }
    Ok(())
}

/// Run `serve`.
pub fn command(args: ServeArgs) -> Result<i32> {
    check_bind(&args.bind, args.token.as_deref())?;
    let rules = Arc::new(crate::load_rules(args.rules.as_deref())?);
    let window = crate::filter::parse_duration(&args.window)
        .map_err(|e| anyhow::anyhow!("--window: {e}"))?;
    crate::runtime()?.block_on(async {
        let operator = crate::ops::open(&args.ops).await?;
        operator.check_ledger()?;
        if let Some(dlq) = &args.dlq {
            operator.dlq(dlq).await?;
        }
        let listener = tokio::net::TcpListener::bind(args.bind)
            .await
            .with_context(|| format!("cannot listen on {}", args.bind))?;
        let address = listener.local_addr()?;
        let state = Arc::new(AppState {
            operator,
            dlq: args.dlq.clone(),
            rules,
            token: args.token.clone(),
            window,
            groups: tokio::sync::Mutex::new(None),
            moving: tokio::sync::Mutex::new(()),
            dry_runs: std::sync::Mutex::new(Vec::new()),
            message_counts: match args.ops.backend {
                Backend::Local => MessageCounts::AllTime,
                Backend::Aws => MessageCounts::InWindow(args.window.clone()),
            },
            counters: std::sync::Mutex::new(CounterGuard::default()),
            store: match args.ops.backend {
                Backend::Local => Some(StoreFile::at(&args.ops.local.db)?),
                Backend::Aws => None,
            },
        });
        println!("dashboard on http://{address}/");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let shutdown = crate::worker::Shutdown::default();
        shutdown.on_signals();
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async move {
                while !shutdown.requested() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
            .await
            .context("the dashboard server failed")?;
        Ok(0)
    })
}

/// The routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/archive/{key}", get(archive_page))
        .route("/api/stats", get(api_stats))
        .route("/api/groups", get(api_groups))
        .route("/api/decisions", get(api_decisions))
        .route("/api/archive/{key}", get(api_archive))
        .route(
            "/api/redrive",
            post(api_redrive).layer(middleware::from_fn(json_from_this_origin)),
        )
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            store_still_there,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            loopback_names_only,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// An error as a response: a status and a message for a person.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// Any path the routes do not know, answered in the API's JSON.
async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no such page or API: {}", uri.path()),
    )
}

/// A known path asked with a method it does not take (the `Allow` header names those it does).
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
}

fn internal(error: anyhow::Error) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"))
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of the header `name`, if it is there and is text.
fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `host` (a `Host` header: a name or address, and maybe a port) names this machine's
/// loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What keeps other web sites out, before the token check: without a token (loopback only), a
/// request must name a loopback host, since a page of another site whose name was made to
/// resolve to 127.0.0.1 (DNS rebinding) sends its own name; and no answer may be framed or
/// sniffed as another type.
async fn loopback_names_only(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let host = header_text(request.headers(), header::HOST).unwrap_or("");
    let mut response = if state.token.is_none() && !is_loopback_host(host) {
        ApiError(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this dashboard answers only to a loopback host (127.0.0.1, localhost), not {host:?}; serve it with --token to reach it by another name"
            ),
        )
        .into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A request that changes something must be JSON, which a page of another site cannot send
/// without the browser asking first, and must not come from another origin.
async fn json_from_this_origin(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let is_json = header_text(headers, header::CONTENT_TYPE)
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    let host = header_text(headers, header::HOST).unwrap_or("");
    let origin = header_text(headers, header::ORIGIN);
    let foreign = origin.is_some_and(|origin| {
        origin
            .split_once("://")
            .is_none_or(|(_, authority)| !authority.eq_ignore_ascii_case(host))
    });
    if !is_json {
        return ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as JSON (Content-Type: application/json)".into(),
        )
        .into_response();
    }
    if foreign {
        return ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "a request from another origin ({}) is refused",
                origin.unwrap_or_default()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(token) = state.token.as_deref() else {
        return next.run(request).await;
    };
    let headers = request.headers();
    // The scheme's name is not case-sensitive (RFC 9110).
    let bearer = header_text(headers, header::AUTHORIZATION)
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let cookie = header_text(headers, header::COOKIE).and_then(|c| {
        c.split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| *k == TOKEN_COOKIE)
            .map(|(_, v)| v.to_string())
    });
    let from_query = query_param(request.uri().query(), "token").map(str::to_string);
    let ok = |t: Option<&str>| t.is_some_and(|t| constant_time_eq(t, token));
    if ok(bearer) || ok(cookie.as_deref()) {
        return next.run(request).await;
    }
    if ok(from_query.as_deref()) {
        // The page opened with its token: the cookie carries it from now on, and the address
        // bar (and the browser's history) is left without it.
        let path = request.uri().path();
        let page = path == "/" || path.starts_with("/archive/");
        let mut response = if request.method() == axum::http::Method::GET && page {
            axum::response::Redirect::to(path).into_response()
        } else {
            next.run(request).await
        };
        if let Ok(value) = HeaderValue::from_str(&format!(
            "{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
        )) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        return response;
    }
    ApiError(
        StatusCode::UNAUTHORIZED,
        "this dashboard needs its token: send Authorization: Bearer <token>, or open /?token=<token>".into(),
    )
    .into_response()
}

/// Answers only while the store file is the one `serve` opened (see [`StoreFile::gone`]).
async fn store_still_there(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match state.store.as_ref().and_then(StoreFile::gone) {
        Some(why) => ApiError(StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
        None => next.run(request).await,
    }
}

async fn index() -> Html<&'static str> {
    Html(DASHBOARD_HTML)
}

async fn api_stats(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let (stats, _, _) = crate::stats::read(
        state.operator.as_ref(),
        state.dlq.as_deref(),
        Utc::now() - state.window,
    )
    .await
    .map_err(internal)?;
    Ok(axum::Json(stats).into_response())
}

async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let (stats, _, _) = crate::stats::read(
        state.operator.as_ref(),
        state.dlq.as_deref(),
        Utc::now() - state.window,
    )
    .await
    .map_err(internal)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    let text = {
        let mut counters = state.counters.lock().unwrap_or_else(|e| e.into_inner());
        crate::stats::prometheus(&stats, &state.message_counts, &mut counters)
    };
    Ok((headers, text).into_response())
}

async fn groups(state: &AppState, refresh: bool) -> Result<Option<Inspection>, ApiError> {
    let Some(dlq) = &state.dlq else {
        return Ok(None);
    };
    let mut cache = state.groups.lock().await;
    if let Some((at, inspection)) = cache.as_ref()
        && !refresh
        && at.elapsed() < GROUPS_TTL
    {
        return Ok(Some(inspection.clone()));
    }
    // Reading without receiving (local) takes memory only for the groups, so the whole DLQ is
    // read. Where reading receives and holds what it read in flight (SQS, which has an in-flight
    // quota), what is read stays invisible to healers until the scan ends, so only the first
    // GROUPS_RECEIVED are.
    let limit = state.operator.in_flight_quota().map(|_| GROUPS_RECEIVED);
    let inspection = crate::inspect::inspect(
        state.operator.as_ref(),
        dlq,
        &state.rules,
        limit,
        &Filter::default(),
        &mut Progress::new(None, true),
    )
    .await
    .map_err(internal)?;
    *cache = Some((Instant::now(), inspection.clone()));
    Ok(Some(inspection))
}

async fn api_groups(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let refresh = query_param(uri.query(), "refresh").is_some();
    match groups(&state, refresh).await? {
        Some(inspection) => Ok(axum::Json(inspection).into_response()),
        None => Ok(axum::Json(serde_json::json!({
            "dlq": null, "total": 0, "classes": [],
            "note": "start serve with --dlq to see failure groups"
        }))
        .into_response()),
    }
}

/// One recent decision, with a link to its archived record.
#[derive(Debug, Serialize)]
struct Decision {
    key: String,
    attempt: u32,
    class: FailureClass,
    action: String,
    at: chrono::DateTime<Utc>,
    source: Option<String>,
    error: String,
    archive_link: Option<String>,
}

/// A URL path segment with everything but unreserved characters percent-encoded.
pub fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn api_decisions(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let records = state
        .operator
        .recent_decisions(50)
        .await
        .map_err(internal)?;
    let decisions: Vec<Decision> = records
        .into_iter()
        .map(|r| Decision {
            archive_link: r
                .archive_ref
                .as_ref()
                .map(|_| format!("/archive/{}", encode_segment(&r.key))),
            key: r.key,
            attempt: r.attempt,
            class: r.class,
            action: r.action.as_str().to_string(),
            at: r.at,
            source: r.source,
            error: r.error,
        })
        .collect();
    Ok(axum::Json(decisions).into_response())
}

/// What the dashboard shows of an archived record: every text in it (body, context, attributes)
/// with secrets redacted as alerts redact them, since a dashboard is what gets shared on a call.
/// `dlq-healer archive show` prints the record as stored, and replay sends it as stored.
fn redacted_record(record: &ArchiveRecord) -> serde_json::Value {
    fn redact_texts(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => *text = redact(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(redact_texts),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(redact_texts),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(record).unwrap_or_default();
    redact_texts(&mut value);
    value
}

/// Said beside an archived record the dashboard shows.
const REDACTED_NOTE: &str =
    "Secrets are redacted here; `dlq-healer archive show KEY` prints the record as stored.";

async fn api_archive(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let record = crate::archive::show(state.operator.as_ref(), &key, None)
        .await
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, format!("{e:#}")))?;
    Ok(axum::Json(redacted_record(&record)).into_response())
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn archive_page(State(state): State<Arc<AppState>>, Path(key): Path<String>) -> Response {
    let (status, body) = match crate::archive::show(state.operator.as_ref(), &key, None).await {
        Ok(record) => (
            StatusCode::OK,
            format!(
                "<h1>Archived message <code id=\"key\">{}</code></h1>\
                 <p>class <b id=\"class\">{}</b>, attempt {}, archived {}; source {}</p>\
                 <p>{}</p><p id=\"redacted\"><i>{}</i></p><pre id=\"record\">{}</pre>",
                escape_html(&record.key),
                record.class,
                record.attempt,
                record.archived_at.to_rfc3339(),
                escape_html(&redact(record.source.as_deref().unwrap_or("(unknown)"))),
                escape_html(&redact(&record.reason)),
                escape_html(REDACTED_NOTE),
                escape_html(
                    &serde_json::to_string_pretty(&redacted_record(&record)).unwrap_or_default()
                )
            ),
        ),
        Err(error) => (
            StatusCode::NOT_FOUND,
            format!(
                "<h1>Not found</h1><p id=\"error\">{}</p>",
                escape_html(&format!("{error:#}"))
            ),
        ),
    };
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{} — dlq-healer</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:2em;background:#fafafa}}pre{{background:#fff;border:1px solid #ddd;padding:1em;overflow:auto}}</style>\
         </head><body><p><a href=\"/\">&larr; dashboard</a></p>{body}</body></html>",
        escape_html(&key)
    );
    (status, Html(page)).into_response()
}

/// A redrive request from the page.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Only this failure group.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Only this class.
    #[serde(default)]
    pub class: Option<String>,
    /// List only (the default).
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// For a real move: the token the dry run returned.
    #[serde(default)]
    pub confirm: Option<String>,
    /// Move at most this many.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Messages per second.
    #[serde(default)]
    pub rate: Option<f64>,
}

fn yes() -> bool {
    true
}

/// Moves an answer to a redrive request lists; the rest are counted in `moves`. A group of the
/// dashboard may hold hundreds of thousands of messages, which no page can show.
const LISTED_MOVES: usize = 100;

/// The answer to a redrive request.
#[derive(Debug, Serialize)]
struct RedriveResponse {
    /// The report, with `moved` cut to the first [`LISTED_MOVES`].
    report: MoveReport,
    /// How many messages moved (dry run: would move), listed or not.
    moves: usize,
    /// For a dry run: the token that confirms the same selection.
    confirm: Option<String>,
    /// For a move: the messages its dry run listed that were no longer in the DLQ (healed,
    /// moved or purged since).
    #[serde(skip_serializing_if = "Option::is_none")]
    left_meanwhile: Option<usize>,
}

/// A redrive request's selection for a log line: its group or class.
fn selection_shown(request: &RedriveRequest) -> String {
    match (&request.fingerprint, &request.class) {
        (Some(fingerprint), Some(class)) => format!("group {fingerprint} of class {class}"),
        (Some(fingerprint), None) => format!("group {fingerprint}"),
        (None, Some(class)) => format!("class {class}"),
        (None, None) => "nothing".into(),
    }
}

/// What a redrive request selects, to tell a confirmation from its dry run.
fn selection_of(dlq: Option<&str>, request: &RedriveRequest) -> String {
    format!(
        "{}|{}|{}|{:?}|{:?}",
        dlq.unwrap_or(""),
        request.fingerprint.as_deref().unwrap_or(""),
        request.class.as_deref().unwrap_or(""),
        request.limit,
        request.rate
    )
}

impl AppState {
    /// Remember a dry run's listing; its confirm token.
    fn remember_dry_run(&self, selection: String, ids: Vec<String>) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut dry_runs = self.dry_runs.lock().unwrap_or_else(|p| p.into_inner());
        dry_runs.retain(|d| d.at.elapsed() < DRY_RUN_TOKEN_LIFETIME);
        if dry_runs.len() >= DRY_RUNS_KEPT {
            dry_runs.remove(0);
        }
        dry_runs.push(DryRun {
            token: token.clone(),
            selection,
            ids,
            at: Instant::now(),
        });
        token
    }

    /// The dry run a confirm token moves, taken so that it confirms one move only; an error that
    /// says why when it confirms nothing for this selection.
    fn take_dry_run(&self, token: Option<&str>, selection: &str) -> Result<DryRun, ApiError> {
        let refuse = |why: &str| Err(ApiError(StatusCode::CONFLICT, why.into()));
        let Some(token) = token else {
            return refuse(
                "a redrive needs the confirm token of a dry run of the same selection: run the dry run first",
            );
        };
        let mut dry_runs = self.dry_runs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(at) = dry_runs
            .iter()
            .position(|d| d.token == token && d.at.elapsed() < DRY_RUN_TOKEN_LIFETIME)
        else {
            return refuse(
                "the confirm token is unknown, used already or older than 15 minutes: run the dry run again",
            );
        };
        if dry_runs[at].selection != selection {
            return refuse(
                "the confirm token is of a dry run of another selection (group, class, limit or rate): run the dry run of this one first",
            );
        }
        Ok(dry_runs.remove(at))
    }

    /// Give back the dry run of a move that failed, so that its token confirms it again (the
    /// move journal keeps a retry from moving any message twice).
    fn give_back_dry_run(&self, dry_run: DryRun) {
        let mut dry_runs = self.dry_runs.lock().unwrap_or_else(|p| p.into_inner());
        if dry_runs.len() >= DRY_RUNS_KEPT {
            dry_runs.remove(0);
        }
        dry_runs.push(dry_run);
    }
}

/// One redrive of the dashboard's DLQ (or its dry run), one at a time; in a dry run, a move to a
/// queue that cannot be read is a failure, not a move to confirm, as in the CLI's.
async fn redrive_once(
    state: &AppState,
    dlq_name: &str,
    options: &MoveOptions,
) -> Result<MoveReport, ApiError> {
    let _one_at_a_time = state.moving.try_lock().map_err(|_| {
        ApiError(
            StatusCode::CONFLICT,
            "another redrive is running; wait for it".into(),
        )
    })?;
    let operator = state.operator.as_ref();
    let dlq = operator.dlq(dlq_name).await.map_err(internal)?;
    let redrive_source = operator.redrive_source(dlq_name).await.map_err(internal)?;
    let sender = operator.sender();
    let journal = operator.journal().map_err(internal)?;
    let pacer = RealPacer::default();
    let peeked = match options.dry_run {
        true => operator.peeker(dlq_name).await.map_err(internal)?,
        false => None,
    };
    let mut redrive = Redrive {
        dlq: dlq.as_ref(),
        redrive_source,
        sender: sender.as_ref(),
        journal: journal.as_ref(),
        rules: &state.rules,
        pacer: &pacer,
        wait: operator.scan_wait(),
        hold_limit: operator.in_flight_quota(),
        peeked,
    };
    let mut report = redrive
        .run(options, &mut Progress::new(None, true), &|| false)
        .await
        .map_err(internal)?;
    crate::redrive::fail_moves_to_missing_queues(operator, &mut report).await;
    Ok(report)
}

/// How long a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

async fn api_redrive(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let too_large = || {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {MAX_BODY_BYTES} bytes"),
        )
    };
    let announced = header_text(request.headers(), header::CONTENT_LENGTH)
        .and_then(|length| length.parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    // A client that announces more than it sends is not waited for without end.
    let body = tokio::time::timeout(
        BODY_TIMEOUT,
        axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES),
    )
    .await
    .map_err(|_| {
        ApiError(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )
    })?
    .map_err(|error| {
        if std::error::Error::source(&error)
            .is_some_and(|e| e.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {error}"),
            )
        }
    })?;
    let request: RedriveRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the redrive request is not valid: {e}; expected {{\"fingerprint\":..., \"class\":..., \"dry_run\":true}}"),
        )
    })?;
    let Some(dlq_name) = state.dlq.clone() else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "no DLQ: start serve with --dlq".into(),
        ));
    };
    let args = crate::filter::FilterArgs {
        classes: request.class.iter().cloned().collect(),
        fingerprints: request.fingerprint.iter().cloned().collect(),
        ..Default::default()
    };
    // The filter's errors name its flags; here they are the request's fields.
    let mut filter: Filter = args.build(Utc::now()).map_err(|e| {
        let why = format!("{e}")
            .replace("--fingerprint ", "fingerprint ")
            .replace("--class ", "class ");
        ApiError(StatusCode::BAD_REQUEST, why)
    })?;
    if filter.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "choose a group: give a fingerprint or a class".into(),
        ));
    }
    if request.limit == Some(0) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "limit must be at least 1 (leave it out to move the whole selection)".into(),
        ));
    }
    if request.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "rate must be positive".into(),
        ));
    }
    let selection = selection_of(state.dlq.as_deref(), &request);
    // A move takes the messages its dry run listed, and only those: not the ones that arrived
    // in the group since.
    let confirmed = match request.dry_run {
        true => None,
        false => Some(state.take_dry_run(request.confirm.as_deref(), &selection)?),
    };
    if let Some(dry_run) = &confirmed {
        if dry_run.ids.is_empty() {
            return Err(ApiError(
                StatusCode::CONFLICT,
                "the dry run listed no message to move".into(),
            ));
        }
        filter.keys = Some(dry_run.ids.iter().cloned().collect());
    }
    let options = MoveOptions {
        filter,
        to: None,
        dry_run: request.dry_run,
        rate: request.rate,
        ramp: None,
        limit: request.limit,
    };
    let report = match redrive_once(&state, &dlq_name, &options).await {
        Ok(report) => report,
        Err(error) => {
            // Nothing was moved, or what was is in the move journal, which keeps a retry of the
            // same confirmation from moving it twice.
            if let Some(dry_run) = confirmed {
                tracing::warn!(
                    dlq = %dlq_name,
                    selection = %selection_shown(&request),
                    error = %error.1,
                    "a move from the dashboard failed; its confirmation can be tried again"
                );
                state.give_back_dry_run(dry_run);
            }
            return Err(error);
        }
    };
    let left_meanwhile = confirmed.map(|dry_run| dry_run.ids.len().saturating_sub(report.matched));
    if let Some(left_meanwhile) = left_meanwhile {
        tracing::info!(
            dlq = %dlq_name,
            selection = %selection_shown(&request),
            moved = report.moved.len(),
            failed = report.failed.len(),
            left_meanwhile,
            "moved messages from the dashboard"
        );
    }
    if !request.dry_run {
        *state.groups.lock().await = None;
    }
    // A dry run with nothing to move has nothing to confirm.
    let confirm = (request.dry_run && !report.moved.is_empty()).then(|| {
        let ids = report.moved.iter().map(|m| m.id.clone()).collect();
        state.remember_dry_run(selection, ids)
    });
    let mut report = report;
    let moves = report.moved.len();
    report.moved.truncate(LISTED_MOVES);
    Ok(axum::Json(RedriveResponse {
        report,
        moves,
        confirm,
        left_meanwhile,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_beyond_loopback_needs_a_token() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let error = check_bind(&any, None).unwrap_err().to_string();
        assert!(error.contains("--token"), "{error}");
        assert!(check_bind(&any, Some("a-long-token")).is_ok());
        assert!(check_bind(&"127.0.0.1:0".parse().unwrap(), None).is_ok());
        assert!(check_bind(&"[::1]:0".parse().unwrap(), None).is_ok());
        assert!(check_bind(&any, Some("short")).is_err());
    }

    #[test]
    fn loopback_hosts_are_told_from_other_names() {
        for host in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost:3000",
            "LOCALHOST",
            "[::1]:80",
            "[::1]",
            "127.1.2.3:9",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "attacker.example.com",
            "attacker.example.com:8080",
            "10.0.0.1:80",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
            "",
            "[::2]:80",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("a b/c#d"), "a%20b%2Fc%23d");
        assert_eq!(query_param(Some("a=1&token=xyz"), "token"), Some("xyz"));
        assert!(constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd"));
    }
}
