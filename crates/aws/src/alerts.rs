//! Alerts on SNS, deduplicated across every healer instance (hundreds of Lambda instances may see
//! the same failure at once) by one window item per fingerprint in the ledger table:
//! `pk` = `alert#<fingerprint>`, `sk` = 0, with the [`WindowState`] of `core::alert`
//! (`opened_at` and `last_seen` in epoch milliseconds, `suppressed`, `sample_keys`), the first
//! alert of the window as JSON in `template` (what a digest is built from) and `expires_at`. The
//! item has no `class` or `at`, so it stays out of the `by_class_time` index.
//!
//! - **Opening** a window is a conditional `PutItem`
//!   (`attribute_not_exists(pk) OR opened_at <= :window_start`) returning the old item: exactly
//!   one instance wins and sends the alert; when the old window had held messages back, the
//!   winner sends its digest first (the put replaced the old counts, so nobody else can).
//!   The item names its opener (a token unique to the `open` call). A call whose answer was
//!   lost — the SDK retried it after a dropped connection, or it failed after taking effect —
//!   finds a window it opened itself: the SDK's retry by the token of its own call, a later call
//!   by the tokens this process keeps of opens it never saw answered. Either way the window's
//!   first alert, which nobody sent, goes out then (before this, such a window stayed silent
//!   until its digest, a whole window later).
//! - **Holding back** is an `UpdateItem` (`ADD suppressed`, `SET last_seen`, and up to
//!   [`MAX_SAMPLE_KEYS`] sample keys by `list_append` guarded by `size(sample_keys)`), conditional
//!   on the window it saw still being the one there; on a conflict the fresh item comes back with
//!   the failure (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) and the alerter decides again.
//! - **Flushing** reads the windows of the fingerprints *this process* has touched (one
//!   `BatchGetItem` per 100) and claims each closed window with a count by an `UpdateItem` that
//!   resets it on condition that the count is still the one read; only the claimer sends the
//!   digest. A table-wide `Scan` for windows touched by other instances would read every ledger
//!   record, so it is not done: the digest of a window whose instances all went away goes out when
//!   the next alert of its fingerprint opens a new window (or by [`SnsAlerter::flush_fingerprints`]
//!   from a tool that knows the fingerprints). A process that stops claims and sends the counts
//!   of its touched windows that hold repeats back, open or not; an open window stays open.
//! - **Publishing** uses `PublishBatch` (10 per call). An alert or digest that fails to publish
//!   is added back to its window's count (so it goes out in the next digest) and the call fails.
//!
//! Alerts never carry a message body: the subject is the headline, the message the headline and a
//! JSON detail (fingerprint, class, source, count, sample keys, the error redacted again, times).

use crate::ledger::DynamoLedger;
use crate::ledger_schema::{PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};
use crate::retry::port_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_sns::types::PublishBatchRequestEntry;
use aws_smithy_runtime_api::client::result::SdkError;
use chrono::{DateTime, Utc};
use dlq_healer_core::alert::{self, Alert, DigestsDue, MAX_SAMPLE_KEYS, WindowState};
use dlq_healer_core::ports::{AlertReport, Alerter, PortError};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;

/// The partition key prefix of alert window items: `alert#<fingerprint>`.
pub const ALERT_PREFIX: &str = "alert#";

/// SNS subjects must be shorter than 100 characters.
pub const MAX_SUBJECT_CHARS: usize = 99;

/// Entries per `PublishBatch` call (the SNS limit).
pub const PUBLISH_BATCH_SIZE: usize = 10;

/// How long a window item outlives its last activity before DynamoDB's TTL may remove it.
const KEEP_DAYS: i64 = 7;

/// Conditional writes per fingerprint before giving up with a retryable error.
const MAX_ROUNDS: usize = 16;

/// The longest error text and sample key a notification carries.
const MAX_ERROR_CHARS: usize = 1000;
const MAX_KEY_CHARS: usize = 256;

type Item = HashMap<String, AttributeValue>;

/// One fingerprint's window as stored.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    opened_ms: i64,
    suppressed: u64,
    sample_keys: Vec<String>,
    last_seen_ms: i64,
    template: Option<Alert>,
    opener: Option<String>,
}

fn ms_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Window {
    fn from_item(item: &Item) -> Option<Window> {
        let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok());
        let opened_ms = number("opened_at")?.parse().ok()?;
        Some(Window {
            opened_ms,
            suppressed: number("suppressed")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            sample_keys: item
                .get("sample_keys")
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(|k| k.as_s().ok().cloned()).collect())
                .unwrap_or_default(),
            last_seen_ms: number("last_seen")
                .and_then(|v| v.parse().ok())
                .unwrap_or(opened_ms),
            template: item
                .get("template")
                .and_then(|v| v.as_s().ok())
                .and_then(|t| serde_json::from_str(t).ok()),
            opener: item.get("opener").and_then(|v| v.as_s().ok()).cloned(),
        })
    }

    fn is_open(&self, now_ms: i64, window_ms: i64) -> bool {
        now_ms < self.opened_ms.saturating_add(window_ms)
    }

    fn state(&self) -> WindowState {
        WindowState {
            opened_at: ms_time(self.opened_ms),
            suppressed: self.suppressed,
            sample_keys: self.sample_keys.clone(),
            last_seen: ms_time(self.last_seen_ms),
        }
    }

    /// The digest of what this window held back, if anything.
    fn digest(&self, fallback: &Alert) -> Option<Alert> {
        let template = self.template.as_ref().unwrap_or(fallback);
        alert::digest_of(template, self.state())
    }
}

/// What a conditional write found when its condition failed: the item as it is now.
type Conflict = Option<Window>;

/// The subject and message of one SNS notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The headline: ASCII, no control characters, at most [`MAX_SUBJECT_CHARS`].
    pub subject: String,
    /// The headline, a blank line, and the JSON detail.
    pub message: String,
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The notification for an alert: never a body; the error's first line, redacted (again) and
/// shortened.
pub fn render(alert: &Alert) -> Notification {
    let mut alert = alert.clone();
    // The first line only: later lines of an error are where payload dumps and stacks go.
    let first_line = alert.error.lines().next().unwrap_or("");
    alert.error = truncate(&alert::redact(first_line), MAX_ERROR_CHARS);
    alert.sample_keys = alert
        .sample_keys
        .iter()
        .take(MAX_SAMPLE_KEYS)
        .map(|k| truncate(k, MAX_KEY_CHARS))
        .collect();
    let headline = alert.headline();
    let clean: String = headline
        .chars()
        .map(|c| match c {
            c if c.is_control() => ' ',
            c if !c.is_ascii() => '?',
            c => c,
        })
        .collect();
    let subject = if clean.chars().count() > MAX_SUBJECT_CHARS {
        format!("{}...", &clean[..MAX_SUBJECT_CHARS - 3])
    } else {
        clean
    };
    let detail = json!({
        "fingerprint": alert.fingerprint,
        "class": alert.class.as_str(),
        "source": alert.source,
        "count": alert.count,
        "sample_keys": alert.sample_keys,
        "error": alert.error,
        "digest": alert.digest,
        "first_seen": alert.first_seen.to_rfc3339(),
        "last_seen": alert.last_seen.to_rfc3339(),
    });
    let detail = serde_json::to_string_pretty(&detail).unwrap_or_else(|_| detail.to_string());
    Notification {
        subject,
        message: format!("{headline}\n\n{detail}"),
    }
}

/// The [`Alerter`] on an SNS topic (env `ALERT_TOPIC_ARN`), with its dedup windows in the ledger
/// table (env `FAILED_TABLE`) shared by every instance.
#[derive(Debug)]
pub struct SnsAlerter {
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    window: chrono::Duration,
    reader: DynamoLedger,
    /// Fingerprints this process has touched, with the window it last saw.
    touched: Mutex<HashMap<String, Option<Window>>>,
    /// Opener tokens of window openings whose answer this alerter never saw, by fingerprint.
    unconfirmed: Mutex<HashMap<String, Vec<String>>>,
}

/// A token unique to one `open` call: process id, process start time and a counter shared by
/// every alerter of the process.
fn opener_token() -> String {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    static OPENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let start = START.get_or_init(|| Utc::now().timestamp_nanos_opt().unwrap_or_default());
    let count = OPENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{start:x}-{count}", std::process::id())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn keys_value(keys: &[String]) -> AttributeValue {
    AttributeValue::L(keys.iter().map(|k| s(k.clone())).collect())
}

/// The conflict a conditional write met, or the error to report.
fn conflict<E, F>(
    error: SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    operation: &str,
    target: &str,
    item_of: F,
) -> Result<Conflict, PortError>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    F: Fn(&E) -> Option<Option<&Item>>,
{
    if let SdkError::ServiceError(service) = &error
        && let Some(item) = item_of(service.err())
    {
        return Ok(item.and_then(Window::from_item));
    }
    Err(port_error(operation, target, &error))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Up to `room` keys of `candidates` that are not in `present`, without repeats.
fn new_keys(candidates: &[String], present: &[String], room: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in candidates {
        if out.len() >= room {
            break;
        }
        let key = truncate(key, MAX_KEY_CHARS);
        if !present.contains(&key) && !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

impl SnsAlerter {
    /// Alerts to `topic_arn`, deduplicated per fingerprint over `window` through the items of
    /// `table`.
    pub fn new(
        sns: aws_sdk_sns::Client,
        topic_arn: impl Into<String>,
        dynamodb: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        window: chrono::Duration,
    ) -> Self {
        let table = table.into();
        SnsAlerter {
            sns,
            topic_arn: topic_arn.into(),
            reader: DynamoLedger::new(dynamodb.clone(), table.clone()),
            dynamodb,
            table,
            window,
            touched: Mutex::new(HashMap::new()),
            unconfirmed: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `window` was opened by a call of this process whose answer was lost; forgets it.
    fn opened_unseen(&self, fingerprint: &str, window: &Window) -> bool {
        let Some(opener) = &window.opener else {
            return false;
        };
        let mut unconfirmed = lock(&self.unconfirmed);
        let Some(tokens) = unconfirmed.get_mut(fingerprint) else {
            return false;
        };
        let ours = tokens.contains(opener);
        if ours {
            unconfirmed.remove(fingerprint);
        }
        ours
    }

    /// The dedup window.
    pub fn window(&self) -> chrono::Duration {
        self.window
    }

    /// The fingerprints this process has touched and not yet seen settled, sorted.
    pub fn touched_fingerprints(&self) -> Vec<String> {
        let mut out: Vec<String> = lock(&self.touched).keys().cloned().collect();
        out.sort();
        out
    }

    fn remember(&self, fingerprint: &str, window: Option<Window>) {
        lock(&self.touched).insert(fingerprint.to_string(), window);
    }

    fn window_key(fingerprint: &str) -> Item {
        HashMap::from([
            (
                PARTITION_KEY.to_string(),
                s(format!("{ALERT_PREFIX}{fingerprint}")),
            ),
            (SORT_KEY.to_string(), n(0)),
        ])
    }

    fn expires_at(&self, now_ms: i64) -> AttributeValue {
        let keep = self.window + chrono::Duration::days(KEEP_DAYS);
        n((now_ms / 1000).saturating_add(keep.num_seconds()))
    }

    /// Open a new window for `first` (with `held` messages and `keys` already held back in it),
    /// unless an open one exists. Ok(old window) when opened; Err(conflict) otherwise.
    async fn open(
        &self,
        first: &Alert,
        held: u64,
        keys: &[String],
        now_ms: i64,
        token: &str,
    ) -> Result<Result<Option<Window>, Conflict>, PortError> {
        let template = serde_json::to_string(first)
            .map_err(|e| PortError::permanent("open alert window", &self.table, e.to_string()))?;
        let mut item = Self::window_key(&first.fingerprint);
        item.insert("opened_at".into(), n(now_ms));
        item.insert("last_seen".into(), n(now_ms));
        item.insert("suppressed".into(), n(held));
        item.insert("sample_keys".into(), keys_value(keys));
        item.insert("template".into(), s(template));
        item.insert("opener".into(), s(token));
        item.insert(TTL_ATTRIBUTE.into(), self.expires_at(now_ms));
        // Until its answer is seen, this opening may have taken effect unseen.
        lock(&self.unconfirmed)
            .entry(first.fingerprint.clone())
            .or_default()
            .push(token.to_string());
        let window_start = now_ms.saturating_sub(self.window.num_milliseconds());
        let result = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(#pk) OR attribute_not_exists(#opened) OR #opened <= :window_start",
            )
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#opened", "opened_at")
            .expression_attribute_values(":window_start", n(window_start))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                lock(&self.unconfirmed).remove(&first.fingerprint);
                Ok(Ok(output.attributes.as_ref().and_then(Window::from_item)))
            }
            Err(error) => conflict(error, "open alert window", &self.table, |e| match e {
                PutItemError::ConditionalCheckFailedException(c) => Some(c.item.as_ref()),
                _ => None,
            })
            .map(Err),
        }
    }

    /// Count `count` held-back messages into the open window `seen`, with new sample keys while
    /// there is room. Ok(new window) when counted; Err(conflict) when the window changed.
    async fn hold_back(
        &self,
        fingerprint: &str,
        seen: &Window,
        count: u64,
        candidates: &[String],
        now_ms: i64,
    ) -> Result<Result<Option<Window>, Conflict>, PortError> {
        let room = MAX_SAMPLE_KEYS.saturating_sub(seen.sample_keys.len());
        let keys = new_keys(candidates, &seen.sample_keys, room);
        let mut update = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::window_key(fingerprint)))
            .expression_attribute_names("#opened", "opened_at")
            .expression_attribute_names("#suppressed", "suppressed")
            .expression_attribute_names("#last_seen", "last_seen")
            .expression_attribute_names("#expires", TTL_ATTRIBUTE)
            .expression_attribute_values(":opened", n(seen.opened_ms))
            .expression_attribute_values(":count", n(count))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":expires", self.expires_at(now_ms))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if keys.is_empty() {
            update = update
                .update_expression(
                    "ADD #suppressed :count SET #last_seen = :now, #expires = :expires",
                )
                .condition_expression("#opened = :opened");
        } else {
            let mut condition = "#opened = :opened AND size(#keys) <= :limit".to_string();
            for (index, key) in keys.iter().enumerate() {
                condition.push_str(&format!(" AND NOT contains(#keys, :k{index})"));
                update = update.expression_attribute_values(format!(":k{index}"), s(key.clone()));
            }
            update = update
                .update_expression(
                    "ADD #suppressed :count SET #last_seen = :now, #expires = :expires, #keys = list_append(#keys, :keys)",
                )
                .condition_expression(condition)
                .expression_attribute_names("#keys", "sample_keys")
                .expression_attribute_values(":keys", keys_value(&keys))
                .expression_attribute_values(":limit", n(MAX_SAMPLE_KEYS - keys.len()));
        }
        match update.send().await {
            Ok(output) => Ok(Ok(output.attributes.as_ref().and_then(Window::from_item))),
            Err(error) => conflict(error, "count alert", &self.table, |e| match e {
                UpdateItemError::ConditionalCheckFailedException(c) => Some(c.item.as_ref()),
                _ => None,
            })
            .map(Err),
        }
    }

    /// Reset the count of a window (closed, or open for a held-back digest) that is still
    /// `seen.suppressed`; true if this call did it.
    async fn claim(&self, fingerprint: &str, seen: &Window) -> Result<bool, PortError> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::window_key(fingerprint)))
            .update_expression("SET #suppressed = :zero, #keys = :empty")
            .condition_expression("#opened = :opened AND #suppressed = :count")
            .expression_attribute_names("#opened", "opened_at")
            .expression_attribute_names("#suppressed", "suppressed")
            .expression_attribute_names("#keys", "sample_keys")
            .expression_attribute_values(":opened", n(seen.opened_ms))
            .expression_attribute_values(":count", n(seen.suppressed))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => conflict(error, "claim alert digest", &self.table, |e| match e {
                UpdateItemError::ConditionalCheckFailedException(_) => Some(None),
                _ => None,
            })
            .map(|_| false),
        }
    }

    /// Add the count of an alert that could not be published back to its window, so that it
    /// goes out with the next digest. Logs when even that fails.
    async fn give_back(&self, alert: &Alert, now_ms: i64) {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::window_key(&alert.fingerprint)))
            .update_expression("ADD #suppressed :count SET #last_seen = :now")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#suppressed", "suppressed")
            .expression_attribute_names("#last_seen", "last_seen")
            .expression_attribute_values(":count", n(alert.count))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await;
        if let Err(error) = result {
            let error = port_error("give back alert count", &self.table, &error);
            tracing::error!(fingerprint = %alert.fingerprint, count = alert.count, %error,
                "an alert could not be published nor counted back into its window; it is lost");
        } else {
            lock(&self.touched).insert(alert.fingerprint.clone(), None);
        }
    }

    /// Publish alerts with `PublishBatch`, 10 per call. Returns how many went out and the alerts
    /// that did not, with the first error.
    async fn publish(&self, alerts: &[Alert]) -> (u64, Vec<Alert>, Option<PortError>) {
        let mut sent = 0;
        let mut failed = Vec::new();
        let mut first_error = None;
        for chunk in alerts.chunks(PUBLISH_BATCH_SIZE) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (index, alert) in chunk.iter().enumerate() {
                let notification = render(alert);
                match PublishBatchRequestEntry::builder()
                    .id(index.to_string())
                    .subject(notification.subject)
                    .message(notification.message)
                    .build()
                {
                    Ok(entry) => entries.push(entry),
                    Err(e) => {
                        first_error.get_or_insert_with(|| {
                            PortError::permanent("publish", &self.topic_arn, e.to_string())
                        });
                        failed.push(alert.clone());
                    }
                }
            }
            if entries.is_empty() {
                continue;
            }
            let result = self
                .sns
                .publish_batch()
                .topic_arn(&self.topic_arn)
                .set_publish_batch_request_entries(Some(entries.clone()))
                .send()
                .await;
            match result {
                Ok(output) => {
                    for entry in output.failed() {
                        let error = crate::retry::entry_error(
                            "publish",
                            &self.topic_arn,
                            entry.code(),
                            entry.message(),
                            entry.sender_fault(),
                        );
                        first_error.get_or_insert(error);
                        if let Some(alert) =
                            entry.id().parse::<usize>().ok().and_then(|i| chunk.get(i))
                        {
                            failed.push(alert.clone());
                        }
                    }
                    sent += output.successful().len() as u64;
                }
                Err(error) => {
                    first_error
                        .get_or_insert_with(|| port_error("publish", &self.topic_arn, &error));
                    for entry in &entries {
                        if let Some(alert) =
                            entry.id().parse::<usize>().ok().and_then(|i| chunk.get(i))
                        {
                            failed.push(alert.clone());
                        }
                    }
                }
            }
        }
        (sent, failed, first_error)
    }

    /// Publish, count failures back into their windows, and report.
    async fn send_all(
        &self,
        outgoing: Vec<Alert>,
        mut report: AlertReport,
        now_ms: i64,
    ) -> Result<AlertReport, PortError> {
        let (sent, failed, error) = self.publish(&outgoing).await;
        report.sent += sent;
        for alert in &failed {
            self.give_back(alert, now_ms).await;
        }
        match error {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    /// Pass one fingerprint's alerts (in order) through its shared window. Returns what to send
    /// and how many messages were held back.
    async fn gate_group(
        &self,
        group: Vec<Alert>,
        now_ms: i64,
    ) -> Result<(Vec<Alert>, u64), PortError> {
        let Some(first) = group.first().cloned() else {
            return Ok((Vec::new(), 0));
        };
        let fingerprint = first.fingerprint.clone();
        let rest = &group[1..];
        let rest_count: u64 = rest.iter().map(|a| a.count).sum();
        let rest_keys: Vec<String> = rest.iter().flat_map(|a| a.sample_keys.clone()).collect();
        let all_keys: Vec<String> = group.iter().flat_map(|a| a.sample_keys.clone()).collect();
        let window_ms = self.window.num_milliseconds();
        // What this process last saw of the window; unknown means "try to open".
        let mut seen: Option<Option<Window>> = lock(&self.touched).get(&fingerprint).cloned();
        // First alerts of windows this process opened without seeing the answer.
        let mut unsent: Vec<Alert> = Vec::new();
        let token = opener_token();
        for _ in 0..MAX_ROUNDS {
            let open = match &seen {
                Some(Some(window)) if window.is_open(now_ms, window_ms) => Some(window.clone()),
                _ => None,
            };
            match open {
                None => {
                    let keys = new_keys(&rest_keys, &[], MAX_SAMPLE_KEYS);
                    match self.open(&first, rest_count, &keys, now_ms, &token).await? {
                        Ok(old) => {
                            let mut send = std::mem::take(&mut unsent);
                            if let Some(digest) = old.and_then(|w| w.digest(&first)) {
                                send.push(digest);
                            }
                            send.push(first.clone());
                            self.remember(
                                &fingerprint,
                                Some(Window {
                                    opened_ms: now_ms,
                                    suppressed: rest_count,
                                    sample_keys: keys,
                                    last_seen_ms: now_ms,
                                    template: Some(first.clone()),
                                    opener: Some(token.clone()),
                                }),
                            );
                            return Ok((send, rest_count));
                        }
                        Err(Some(current)) if self.opened_unseen(&fingerprint, &current) => {
                            // Our own opening, answered unseen: its first alert was never sent.
                            unsent.push(current.template.clone().unwrap_or_else(|| first.clone()));
                            if current.opener.as_deref() == Some(token.as_str()) {
                                // This very call (the SDK retried it): the window holds its rest.
                                self.remember(&fingerprint, Some(current));
                                return Ok((unsent, rest_count));
                            }
                            // An earlier call's: hold this group back in it as usual.
                            seen = Some(Some(current));
                        }
                        Err(current) => seen = Some(current),
                    }
                }
                Some(window) => {
                    let count = first.count + rest_count;
                    match self
                        .hold_back(&fingerprint, &window, count, &all_keys, now_ms)
                        .await?
                    {
                        Ok(new) => {
                            self.remember(&fingerprint, new);
                            return Ok((unsent, count));
                        }
                        Err(current) => seen = Some(current),
                    }
                }
            }
        }
        Err(PortError::retryable(
            "raise alert",
            &self.table,
            format!(
                "the window of {fingerprint} kept changing under {MAX_ROUNDS} conditional writes"
            ),
        ))
    }

    /// Send the digests of the closed windows of `fingerprints` (any process's) that held
    /// messages back, each exactly once across all instances.
    pub async fn flush_fingerprints(
        &self,
        fingerprints: &[String],
        now: DateTime<Utc>,
    ) -> Result<AlertReport, PortError> {
        self.send_digests(fingerprints, now, DigestsDue::OfClosedWindows)
            .await
    }

    /// Send the digests `due` says of the windows of `fingerprints`, each exactly once across
    /// all instances: a digest goes out only after its window's count is claimed.
    async fn send_digests(
        &self,
        fingerprints: &[String],
        now: DateTime<Utc>,
        due: DigestsDue,
    ) -> Result<AlertReport, PortError> {
        let now_ms = now.timestamp_millis();
        let window_ms = self.window.num_milliseconds();
        let keys = fingerprints.iter().map(|f| Self::window_key(f)).collect();
        let items = self.reader.get_items(keys).await?;
        let mut found: HashMap<String, Window> = HashMap::new();
        for item in &items {
            let fingerprint = item
                .get(PARTITION_KEY)
                .and_then(|v| v.as_s().ok())
                .and_then(|pk| pk.strip_prefix(ALERT_PREFIX));
            if let (Some(fingerprint), Some(window)) = (fingerprint, Window::from_item(item)) {
                found.insert(fingerprint.to_string(), window);
            }
        }
        let mut outgoing = Vec::new();
        let mut claim_error = None;
        for fingerprint in fingerprints {
            let Some(window) = found.get(fingerprint) else {
                lock(&self.touched).remove(fingerprint);
                continue;
            };
            let open = window.is_open(now_ms, window_ms);
            if !due.takes(!open) || (open && window.suppressed == 0) {
                self.remember(fingerprint, Some(window.clone()));
                continue;
            }
            if window.suppressed == 0 {
                lock(&self.touched).remove(fingerprint);
                continue;
            }
            let Some(template) = window.template.clone() else {
                tracing::warn!(%fingerprint, "alert window without a template; its digest is skipped");
                continue;
            };
            match self.claim(fingerprint, window).await {
                Ok(true) => {
                    if let Some(digest) = window.digest(&template) {
                        outgoing.push(digest);
                    }
                    if open {
                        let claimed = Window {
                            suppressed: 0,
                            sample_keys: Vec::new(),
                            ..window.clone()
                        };
                        self.remember(fingerprint, Some(claimed));
                    } else {
                        lock(&self.touched).remove(fingerprint);
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    // Digests claimed so far must still go out; the rest waits for the next flush.
                    claim_error = Some(error);
                    break;
                }
            }
        }
        let report = self
            .send_all(outgoing, AlertReport::default(), now_ms)
            .await?;
        match claim_error {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }
}

#[async_trait]
impl Alerter for SnsAlerter {
    async fn raise(
        &self,
        alerts: Vec<Alert>,
        now: DateTime<Utc>,
    ) -> Result<AlertReport, PortError> {
        let now_ms = now.timestamp_millis();
        let mut groups: Vec<(String, Vec<Alert>)> = Vec::new();
        for mut alert in alerts {
            alert.error = alert::redact(&alert.error);
            match groups.iter_mut().find(|(f, _)| *f == alert.fingerprint) {
                Some((_, group)) => group.push(alert),
                None => groups.push((alert.fingerprint.clone(), vec![alert])),
            }
        }
        let mut report = AlertReport::default();
        let mut outgoing = Vec::new();
        for (fingerprint, group) in groups {
            let (send, held) = self.gate_group(group, now_ms).await?;
            report.suppressed += held;
            if held > 0 {
                report.held_back.insert(fingerprint);
            }
            outgoing.extend(send);
        }
        self.send_all(outgoing, report, now_ms).await
    }

    async fn flush_digests(&self, now: DateTime<Utc>) -> Result<AlertReport, PortError> {
        let fingerprints = self.touched_fingerprints();
        if fingerprints.is_empty() {
            return Ok(AlertReport::default());
        }
        self.flush_fingerprints(&fingerprints, now).await
    }

    /// Only the windows this process touched: a table-wide scan is not done (see the module).
    async fn send_held_back_digests(&self, now: DateTime<Utc>) -> Result<AlertReport, PortError> {
        let fingerprints = self.touched_fingerprints();
        if fingerprints.is_empty() {
            return Ok(AlertReport::default());
        }
        self.send_digests(&fingerprints, now, DigestsDue::HeldBackNow)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlq_healer_core::FailureClass;

    #[test]
    fn notifications_have_a_short_clean_subject_and_no_secrets() {
        let at = Utc::now();
        let alert = Alert {
            fingerprint: "f".into(),
            class: FailureClass::Auth,
            source: Some("orders\nqueue".into()),
            count: 3,
            sample_keys: vec!["k1".into()],
            error: format!(
                "401: Authorization: Bearer abcdefgh12345678 é {}",
                "x".repeat(300)
            ),
            digest: false,
            first_seen: at,
            last_seen: at,
        };
        let n = render(&alert);
        assert!(n.subject.len() <= MAX_SUBJECT_CHARS, "{}", n.subject);
        assert!(n.subject.chars().all(|c| c.is_ascii() && !c.is_control()));
        assert!(!n.message.contains("abcdefgh12345678"));
        assert!(n.message.contains("[REDACTED]"));
    }

    #[test]
    fn new_keys_skip_present_and_repeated_keys() {
        let present = vec!["a".to_string()];
        let candidates: Vec<String> = ["a", "b", "b", "c", "d"].map(String::from).to_vec();
        assert_eq!(new_keys(&candidates, &present, 2), vec!["b", "c"]);
    }
}
