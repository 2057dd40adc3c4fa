//! Alerts of the local backend: the dedup window of every fingerprint lives in the SQLite file (so
//! several healer processes share it), every alert sent is logged and listed in the `alerts`
//! table, and an optional Slack-compatible webhook gets them from a background thread.

use crate::error::LocalError;
use crate::store::{LocalStore, from_text, to_text};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dlq_healer_core::FailureClass;
use dlq_healer_core::alert::{self, Alert, DigestsDue, WindowState};
use dlq_healer_core::ports::{AlertReport, Alerter, PortError};
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The log target of alert lines.
pub const LOG_TARGET: &str = "dlq_healer::alert";

/// How the alerter behaves.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// How long a fingerprint stays quiet after an alert went out.
    pub window: chrono::Duration,
    /// Where to POST Slack-compatible JSON, if anywhere.
    pub webhook_url: Option<String>,
    /// Alerts waiting for the webhook; beyond this they are logged and dropped.
    pub webhook_queue: usize,
    /// Tries per alert (first try included).
    pub webhook_tries: u32,
    /// Wait before the second try; doubled for each later one.
    pub webhook_backoff: Duration,
    /// Timeout of one POST.
    pub webhook_timeout: Duration,
}

impl AlertSettings {
    /// Defaults for a window and an optional webhook: 256 queued, 3 tries from 500 ms, 5 s each.
    pub fn new(window: chrono::Duration, webhook_url: Option<String>) -> Self {
        AlertSettings {
            window,
            webhook_url,
            webhook_queue: 256,
            webhook_tries: 3,
            webhook_backoff: Duration::from_millis(500),
            webhook_timeout: Duration::from_secs(5),
        }
    }
}

/// An alert that went out, as the `alerts` table lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentAlert {
    /// When it went out.
    pub at: DateTime<Utc>,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Failure class.
    pub class: FailureClass,
    /// Source queue, if known.
    pub source: Option<String>,
    /// Messages it stands for.
    pub count: u64,
    /// Whether it was a digest.
    pub digest: bool,
    /// The error, redacted.
    pub error: String,
    /// Some of the keys.
    pub sample_keys: Vec<String>,
}

/// What the webhook sink has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Alerts the webhook accepted.
    pub delivered: u64,
    /// Alerts given up on after every try.
    pub failed: u64,
    /// Alerts dropped because the queue to the webhook was full.
    pub dropped: u64,
    /// Tries that failed and were retried.
    pub retries: u64,
}

#[derive(Default)]
struct WebhookShared {
    pending: Mutex<u64>,
    drained: Condvar,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
}

struct Webhook {
    sender: SyncSender<Alert>,
    shared: Arc<WebhookShared>,
}

/// The [`Alerter`] of the local backend.
pub struct LocalAlerter {
    store: LocalStore,
    window: chrono::Duration,
    webhook: Option<Webhook>,
}

impl std::fmt::Debug for LocalAlerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAlerter")
            .field("window", &self.window)
            .field("webhook", &self.webhook.is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Slack-compatible body for one alert: `text` for every client, `blocks` for Slack.
/// Text from messages (errors, sources, keys) goes into Slack's markup escaped as Slack asks:
/// `<!channel>` in an error text must not notify a channel, nor `<https://…|…>` show a link.
pub fn webhook_body(alert: &Alert) -> serde_json::Value {
    let headline = slack_escaped(&alert.headline());
    let mut details = format!(
        "*class:* {}  *source:* {}  *count:* {}",
        alert.class,
        slack_escaped(alert.source.as_deref().unwrap_or("unknown")),
        alert.count
    );
    if !alert.sample_keys.is_empty() {
        details.push_str(&format!(
            "\n*sample keys:* {}",
            slack_escaped(&alert.sample_keys.join(", "))
        ));
    }
    details.push_str(&format!("\n*error:* {}", slack_escaped(&alert.error)));
    json!({
        "text": headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": details}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                "fingerprint `{}`{} · first seen {} · last seen {}",
                alert.fingerprint,
                if alert.digest { " · digest" } else { "" },
                alert.first_seen.to_rfc3339(),
                alert.last_seen.to_rfc3339()
            )}]}
        ]
    })
}

/// `&`, `<` and `>` escaped, the three characters Slack's message markup gives a meaning.
fn slack_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What went wrong with a webhook call, without its URL: a webhook's URL is its credential
/// (anyone who has a Slack webhook's URL can post to its channel), so it stays out of the log.
fn failure_without_url(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Status(code, _) => format!("status {code}"),
        ureq::Error::Transport(transport) => {
            let mut text = transport.kind().to_string();
            if let Some(message) = transport.message() {
                text = format!("{text}: {message}");
            }
            if let Some(source) = std::error::Error::source(transport) {
                text = format!("{text}: {source}");
            }
            text
        }
    }
}

fn post_with_retries(
    agent: &ureq::Agent,
    url: &str,
    alert: &Alert,
    settings: &AlertSettings,
    shared: &WebhookShared,
) {
    let body = webhook_body(alert);
    let mut backoff = settings.webhook_backoff;
    for attempt in 1..=settings.webhook_tries.max(1) {
        let failure = match agent.post(url).send_json(&body) {
            Ok(_) => {
                shared.delivered.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Err(ureq::Error::Status(code, _)) if code != 429 && code < 500 => {
                tracing::error!(target: LOG_TARGET, status = code, fingerprint = %alert.fingerprint,
                    "the alert webhook refused the alert; check the webhook URL");
                shared.failed.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Err(error) => failure_without_url(&error),
        };
        if attempt == settings.webhook_tries.max(1) {
            tracing::error!(target: LOG_TARGET, tries = attempt, error = %failure,
                fingerprint = %alert.fingerprint, "the alert webhook failed; alert not delivered");
            shared.failed.fetch_add(1, Ordering::SeqCst);
            return;
        }
        tracing::warn!(target: LOG_TARGET, attempt, error = %failure, "alert webhook failed, retrying");
        shared.retries.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(backoff);
        backoff = backoff.saturating_mul(2);
    }
}

fn run_webhook(
    receiver: Receiver<Alert>,
    url: String,
    settings: AlertSettings,
    shared: Arc<WebhookShared>,
) {
    let agent = ureq::AgentBuilder::new()
        .timeout(settings.webhook_timeout)
        .build();
    for alert in receiver {
        post_with_retries(&agent, &url, &alert, &settings, &shared);
        let mut pending = lock(&shared.pending);
        *pending = pending.saturating_sub(1);
        shared.drained.notify_all();
    }
}

fn load_window(tx: &Transaction<'_>, fingerprint: &str) -> rusqlite::Result<Option<WindowState>> {
    let state: Option<String> = tx
        .query_row(
            "SELECT state FROM alert_windows WHERE fingerprint = ?1",
            [fingerprint],
            |r| r.get(0),
        )
        .optional()?;
    state
        .map(|s| {
            serde_json::from_str(&s).map_err(|e| {
                crate::store::conversion(format!("alert window of {fingerprint}: {e}"))
            })
        })
        .transpose()
}

fn save_window(
    tx: &Transaction<'_>,
    template: &Alert,
    state: &WindowState,
) -> rusqlite::Result<()> {
    let encode =
        |what: &str, e: serde_json::Error| crate::store::conversion(format!("{what}: {e}"));
    tx.execute(
        "INSERT OR REPLACE INTO alert_windows (fingerprint, template, state) VALUES (?1, ?2, ?3)",
        params![
            template.fingerprint,
            serde_json::to_string(template).map_err(|e| encode("alert", e))?,
            serde_json::to_string(state).map_err(|e| encode("alert window", e))?,
        ],
    )?;
    Ok(())
}

fn log_sent(tx: &Transaction<'_>, at: DateTime<Utc>, alert: &Alert) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO alerts (at, fingerprint, class, source, count, digest, error, sample_keys)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            to_text(at),
            alert.fingerprint,
            alert.class.as_str(),
            alert.source,
            alert.count,
            alert.digest,
            alert.error,
            serde_json::to_string(&alert.sample_keys).unwrap_or_else(|_| "[]".into()),
        ],
    )?;
    Ok(())
}

impl LocalAlerter {
    /// An alerter with a dedup window and an optional webhook (default retry settings).
    pub fn new(store: LocalStore, window: chrono::Duration, webhook_url: Option<String>) -> Self {
        LocalAlerter::with_settings(store, AlertSettings::new(window, webhook_url))
    }

    /// An alerter with every setting given. Starts the webhook thread when there is a webhook.
    pub fn with_settings(store: LocalStore, settings: AlertSettings) -> Self {
        let webhook = settings.webhook_url.clone().map(|url| {
            let (sender, receiver) = std::sync::mpsc::sync_channel(settings.webhook_queue.max(1));
            let shared = Arc::new(WebhookShared::default());
            let worker_shared = shared.clone();
            let worker_settings = settings.clone();
            std::thread::Builder::new()
                .name("dlq-healer-webhook".into())
                .spawn(move || run_webhook(receiver, url, worker_settings, worker_shared))
                .map(|_| Webhook { sender, shared })
        });
        let webhook = match webhook {
            None => None,
            Some(Ok(webhook)) => Some(webhook),
            Some(Err(error)) => {
                tracing::error!(target: LOG_TARGET, %error, "cannot start the alert webhook thread; alerts go to the log only");
                None
            }
        };
        LocalAlerter {
            store,
            window: settings.window,
            webhook,
        }
    }

    /// Wait until every alert handed to the webhook was delivered or given up on; false if
    /// `timeout` passed first. True at once without a webhook.
    pub fn wait_for_webhooks(&self, timeout: Duration) -> bool {
        let Some(webhook) = &self.webhook else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        let mut pending = lock(&webhook.shared.pending);
        while *pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            pending = webhook
                .shared
                .drained
                .wait_timeout(pending, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }

    /// What the webhook sink has done (all zero without a webhook).
    pub fn webhook_stats(&self) -> WebhookStats {
        self.webhook
            .as_ref()
            .map_or_else(WebhookStats::default, |w| WebhookStats {
                delivered: w.shared.delivered.load(Ordering::SeqCst),
                failed: w.shared.failed.load(Ordering::SeqCst),
                dropped: w.shared.dropped.load(Ordering::SeqCst),
                retries: w.shared.retries.load(Ordering::SeqCst),
            })
    }

    /// How many alerts (and digests) went out, from any process.
    pub fn sent_count(&self) -> Result<u64, LocalError> {
        self.store.read("count", "alerts", |tx| {
            tx.query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
        })
    }

    /// The most recent alerts that went out, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<SentAlert>, LocalError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.store.read("list", "alerts", |tx| {
            let mut statement = tx.prepare_cached(
                "SELECT at, fingerprint, class, source, count, digest, error, sample_keys
                 FROM alerts ORDER BY at DESC, id DESC LIMIT ?1",
            )?;
            statement
                .query_map([limit], |r| {
                    let at: String = r.get(0)?;
                    let class: String = r.get(2)?;
                    let keys: String = r.get(7)?;
                    Ok(SentAlert {
                        at: from_text(&at)?,
                        fingerprint: r.get(1)?,
                        class: class
                            .parse()
                            .map_err(|e| crate::store::conversion(format!("class: {e}")))?,
                        source: r.get(3)?,
                        count: r.get(4)?,
                        digest: r.get(5)?,
                        error: r.get(6)?,
                        sample_keys: serde_json::from_str(&keys)
                            .map_err(|e| crate::store::conversion(format!("sample keys: {e}")))?,
                    })
                })?
                .collect()
        })
    }

    /// Send the digests `due` says, log them and hand them to the webhook.
    fn send_digests(&self, now: DateTime<Utc>, due: DigestsDue) -> Result<AlertReport, PortError> {
        let window = self.window;
        let outgoing = self
            .store
            .write("flush digests of", "alerts", |tx| {
                let rows: Vec<(String, String, String)> = {
                    let mut statement =
                        tx.prepare("SELECT fingerprint, template, state FROM alert_windows")?;
                    statement
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect::<rusqlite::Result<_>>()?
                };
                let mut outgoing = Vec::new();
                for (fingerprint, template, state) in rows {
                    let decoded = serde_json::from_str::<Alert>(&template)
                        .ok()
                        .zip(serde_json::from_str::<WindowState>(&state).ok());
                    let Some((template, mut state)) = decoded else {
                        tracing::warn!(target: LOG_TARGET, %fingerprint, "damaged alert window dropped");
                        tx.execute("DELETE FROM alert_windows WHERE fingerprint = ?1", [&fingerprint])?;
                        continue;
                    };
                    let closed = alert::window_closed(&state, now, window);
                    if !due.takes(closed) {
                        continue;
                    }
                    match alert::digest_of(&template, state.clone()) {
                        Some(digest) => {
                            state.suppressed = 0;
                            state.sample_keys.clear();
                            save_window(tx, &template, &state)?;
                            log_sent(tx, now, &digest)?;
                            outgoing.push(digest);
                        }
                        // An open window with nothing held back still holds back repeats.
                        None if !closed => {}
                        // A closed window with nothing held back is the same as no window.
                        None => {
                            tx.execute(
                                "DELETE FROM alert_windows WHERE fingerprint = ?1",
                                [&fingerprint],
                            )?;
                        }
                    }
                }
                Ok(outgoing)
            })
            .map_err(|e| e.into_port("flush digests", "alerts"))?;
        let report = AlertReport {
            sent: outgoing.len() as u64,
            ..AlertReport::default()
        };
        for alert in outgoing {
            self.emit(alert);
        }
        Ok(report)
    }

    /// Log an alert that went out and hand it to the webhook.
    fn emit(&self, alert: Alert) {
        tracing::warn!(
            target: LOG_TARGET,
            class = %alert.class,
            source = alert.source.as_deref().unwrap_or(""),
            count = alert.count,
            fingerprint = %alert.fingerprint,
            digest = alert.digest,
            sample_keys = ?alert.sample_keys,
            error = %alert.error,
            "{}",
            alert.headline()
        );
        let Some(webhook) = &self.webhook else {
            return;
        };
        *lock(&webhook.shared.pending) += 1;
        if let Err(refused) = webhook.sender.try_send(alert) {
            let (reason, alert) = match refused {
                TrySendError::Full(alert) => ("the webhook queue is full", alert),
                TrySendError::Disconnected(alert) => ("the webhook thread has stopped", alert),
            };
            let dropped = webhook.shared.dropped.fetch_add(1, Ordering::SeqCst) + 1;
            tracing::warn!(target: LOG_TARGET, fingerprint = %alert.fingerprint, dropped,
                "{reason}; alert not sent to the webhook (it is in the log and the alerts table)");
            let mut pending = lock(&webhook.shared.pending);
            *pending = pending.saturating_sub(1);
            webhook.shared.drained.notify_all();
        }
    }
}

/// The alert as it may leave the process: the error redacted once more, in case a caller forgot.
fn sanitized(mut alert: Alert) -> Alert {
    alert.error = alert::redact(&alert.error);
    alert
}

#[async_trait]
impl Alerter for LocalAlerter {
    async fn raise(
        &self,
        alerts: Vec<Alert>,
        now: DateTime<Utc>,
    ) -> Result<AlertReport, PortError> {
        let window = self.window;
        let (report, outgoing) = self
            .store
            .write("raise", "alerts", |tx| {
                let mut report = AlertReport::default();
                let mut outgoing = Vec::new();
                for alert in alerts {
                    let alert = sanitized(alert);
                    let previous = load_window(tx, &alert.fingerprint)?;
                    let template = alert.clone();
                    let outcome = alert::gate(alert, previous, now, window);
                    save_window(tx, &template, &outcome.state)?;
                    report.count_gated(&template.fingerprint, &outcome);
                    for sent in outcome.send {
                        log_sent(tx, now, &sent)?;
                        outgoing.push(sent);
                    }
                }
                Ok((report, outgoing))
            })
            .map_err(|e| e.into_port("raise", "alerts"))?;
        for alert in outgoing {
            self.emit(alert);
        }
        Ok(report)
    }

    async fn flush_digests(&self, now: DateTime<Utc>) -> Result<AlertReport, PortError> {
        self.send_digests(now, DigestsDue::OfClosedWindows)
    }

    /// A repeat held back in a window that no process closes would otherwise be reported only
    /// by the next `run`.
    async fn send_held_back_digests(&self, now: DateTime<Utc>) -> Result<AlertReport, PortError> {
        self.send_digests(now, DigestsDue::HeldBackNow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn a_failed_call_is_described_without_the_webhook_url() {
        let url = "http://127.0.0.1:1/services/T0/B0/webhookSecret?token=tokenSecret";
        let error = ureq::post(url).send_string("{}").unwrap_err();
        let text = failure_without_url(&error);
        assert!(!text.contains("Secret"), "{text}");
        assert!(text.contains("Connection Failed"), "{text}");
    }

    #[test]
    fn https_webhooks_are_called_over_tls() {
        // Slack's webhooks are https only: the call must start a TLS handshake (which a server
        // that answers in plain HTTP fails), not stop at a scheme it cannot speak.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            use std::io::Write;
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let error = ureq::post(&format!("https://127.0.0.1:{port}/services/T0/B0/x"))
            .send_string("{}")
            .unwrap_err();
        let ureq::Error::Transport(transport) = &error else {
            panic!("{error}");
        };
        assert_ne!(transport.kind(), ureq::ErrorKind::UnknownScheme, "{error}");
        assert!(
            !failure_without_url(&error).contains("TLS backend"),
            "{error}"
        );
    }

    #[test]
    fn slack_markup_in_message_texts_is_escaped() {
        let now = Utc::now();
        let alert = Alert {
            fingerprint: "f".into(),
            class: dlq_healer_core::FailureClass::Auth,
            source: Some("orders<!here>".into()),
            count: 1,
            sample_keys: vec!["k<@U123>".into()],
            error: "401 <!channel> see <https://evil.example|rotate> & more".into(),
            digest: false,
            first_seen: now,
            last_seen: now,
        };
        let body = webhook_body(&alert).to_string();
        for markup in ["<!here>", "<!channel>", "<@U123>", "<https://"] {
            assert!(!body.contains(markup), "{markup} in {body}");
        }
        assert!(body.contains("&lt;!channel&gt;"), "{body}");
        assert!(body.contains("&amp; more"), "{body}");
    }
}
