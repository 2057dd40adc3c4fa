//! The ledger on DynamoDB: one item per (message key, attempt) in the table of
//! [`crate::ledger_schema`], plus one digest item per body digest of a re-queued or parked
//! record, so that a message whose context was stripped finds the key it is being retried under.
//!
//! Item kinds (all in one table):
//! - ledger record: `pk` = message key, `sk` = attempt; `class`, `rule`, `action`, `alerted`,
//!   `alert_held_back` (absent in items written before it, read as false), `at` (RFC 3339, UTC, nanoseconds, so that string order is time order), `source`,
//!   `archive_ref`, `error`, `dlq_message_id`, `body_digest`, `due_at`, `expires_at`.
//! - digest item: `pk` = `digest#<body_digest>`, `sk` = 0; `key`, `attempt`, `action`, `at`,
//!   `expires_at`. Written only for re-queued and parked records (the engine adopts only keys that
//!   are still being retried), in the same `BatchWriteItem` calls as the records. It has no
//!   `class`, so it stays out of the `by_class_time` index.
//!
//! Every read is strongly consistent (a redelivered message must find the record written just
//! before), except queries on the index, which DynamoDB serves eventually consistent.
//! `BatchWriteItem` offers no conditions, so when two healers write the same digest at once the
//! last write wins; both point at keys being retried with that body, which is all the engine needs.

use crate::ledger_schema::{
    CLASS_ATTRIBUTE, CLASS_TIME_INDEX, PARTITION_KEY, SORT_KEY, TIME_ATTRIBUTE, TTL_ATTRIBUTE,
};
use crate::retry::port_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use chrono::{DateTime, SecondsFormat, Utc};
use dlq_healer_core::FailureClass;
use dlq_healer_core::ports::{DigestMatch, HistoryRequest, Ledger, PortError};
use dlq_healer_core::records::{DEFAULT_RETENTION_DAYS, LedgerRecord, RecordedAction};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The partition key prefix of digest items: `digest#<body_digest>`.
pub const DIGEST_PREFIX: &str = "digest#";

/// Items per `BatchWriteItem` call (the DynamoDB limit).
pub const WRITE_BATCH_SIZE: usize = 25;

/// Keys per `BatchGetItem` call (the DynamoDB limit).
pub const READ_BATCH_SIZE: usize = 100;

/// Histories longer than this are read with one `Query` per key instead of by primary keys.
pub const MAX_BATCH_HISTORY: u32 = 25;

/// Rounds of re-sending unprocessed items or keys before giving up with a retryable error.
const MAX_ROUNDS: u32 = 8;

/// The wait before the second round; doubled every round, capped at [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

type Item = HashMap<String, AttributeValue>;

/// The [`Ledger`] on a DynamoDB table (env `FAILED_TABLE`), plus the queries the tools need.
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
    retention: chrono::Duration,
}

/// The wait before round `round` (from 1) of re-sending unprocessed work: exponential, capped,
/// with up to 50 % jitter taken from the clock so that parallel healers spread out.
pub(crate) fn backoff(round: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << round.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let jitter_percent = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            % 50,
    );
    base + base.mul_f64(jitter_percent as f64 / 100.0)
}

/// RFC 3339 in UTC with nanoseconds: fixed width, so string order is time order.
pub(crate) fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn damaged(target: &str, item: &Item, what: impl std::fmt::Display) -> PortError {
    let pk = item
        .get(PARTITION_KEY)
        .and_then(|v| v.as_s().ok())
        .map_or("?", String::as_str);
    PortError::permanent(
        "read",
        target,
        format!("damaged ledger item {pk:?}: {what}"),
    )
}

fn get_s<'a>(target: &str, item: &'a Item, name: &str) -> Result<&'a str, PortError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| damaged(target, item, format!("no string attribute {name}")))
}

fn opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// A flag; false when absent.
fn opt_bool(item: &Item, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

fn get_n<T: std::str::FromStr>(target: &str, item: &Item, name: &str) -> Result<T, PortError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| damaged(target, item, format!("no valid number attribute {name}")))
}

fn get_time(target: &str, item: &Item, name: &str) -> Result<DateTime<Utc>, PortError> {
    let text = get_s(target, item, name)?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| damaged(target, item, format!("{name} {text:?}: {e}")))
}

fn get_action(target: &str, item: &Item) -> Result<RecordedAction, PortError> {
    get_s(target, item, "action")?
        .parse()
        .map_err(|e| damaged(target, item, e))
}

fn record_from_item(target: &str, item: &Item) -> Result<LedgerRecord, PortError> {
    Ok(LedgerRecord {
        key: get_s(target, item, PARTITION_KEY)?.to_string(),
        attempt: get_n(target, item, SORT_KEY)?,
        class: get_s(target, item, CLASS_ATTRIBUTE)?
            .parse()
            .map_err(|e| damaged(target, item, format!("class: {e}")))?,
        rule: get_s(target, item, "rule")?.to_string(),
        action: get_action(target, item)?,
        alerted: opt_bool(item, "alerted"),
        alert_held_back: opt_bool(item, "alert_held_back"),
        at: get_time(target, item, TIME_ATTRIBUTE)?,
        source: opt_s(item, "source"),
        archive_ref: opt_s(item, "archive_ref"),
        error: opt_s(item, "error").unwrap_or_default(),
        dlq_message_id: opt_s(item, "dlq_message_id").unwrap_or_default(),
        body_digest: opt_s(item, "body_digest").unwrap_or_default(),
        due_at: match item.get("due_at") {
            Some(_) => Some(get_time(target, item, "due_at")?),
            None => None,
        },
    })
}

fn digest_key(digest: &str) -> Item {
    HashMap::from([
        (
            PARTITION_KEY.to_string(),
            s(format!("{DIGEST_PREFIX}{digest}")),
        ),
        (SORT_KEY.to_string(), n(0)),
    ])
}

fn record_key(key: &str, attempt: u32) -> Item {
    HashMap::from([
        (PARTITION_KEY.to_string(), s(key)),
        (SORT_KEY.to_string(), n(attempt)),
    ])
}

impl DynamoLedger {
    /// The ledger in `table`, keeping items for [`DEFAULT_RETENTION_DAYS`].
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoLedger {
            client,
            table: table.into(),
            retention: chrono::Duration::days(i64::from(DEFAULT_RETENTION_DAYS)),
        }
    }

    /// Keep items for `retention` after their decision time (DynamoDB TTL removes them later).
    pub fn with_retention(mut self, retention: chrono::Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn expires_at(&self, at: DateTime<Utc>) -> AttributeValue {
        n((at + self.retention).timestamp())
    }

    fn record_item(&self, r: &LedgerRecord) -> Item {
        let mut item = record_key(&r.key, r.attempt);
        let mut put = |name: &str, value: AttributeValue| {
            item.insert(name.to_string(), value);
        };
        put(CLASS_ATTRIBUTE, s(r.class.as_str()));
        put("rule", s(&r.rule));
        put("action", s(r.action.as_str()));
        put("alerted", AttributeValue::Bool(r.alerted));
        put("alert_held_back", AttributeValue::Bool(r.alert_held_back));
        put(TIME_ATTRIBUTE, s(time_text(r.at)));
        if let Some(source) = &r.source {
            put("source", s(source));
        }
        if let Some(archive_ref) = &r.archive_ref {
            put("archive_ref", s(archive_ref));
        }
        put("error", s(&r.error));
        put("dlq_message_id", s(&r.dlq_message_id));
        put("body_digest", s(&r.body_digest));
        if let Some(due_at) = r.due_at {
            put("due_at", s(time_text(due_at)));
        }
        put(TTL_ATTRIBUTE, self.expires_at(r.at));
        item
    }

    fn digest_item(&self, r: &LedgerRecord) -> Item {
        let mut item = digest_key(&r.body_digest);
        item.insert("key".into(), s(&r.key));
        item.insert("attempt".into(), n(r.attempt));
        item.insert("action".into(), s(r.action.as_str()));
        item.insert(TIME_ATTRIBUTE.into(), s(time_text(r.at)));
        item.insert(TTL_ATTRIBUTE.into(), self.expires_at(r.at));
        item
    }

    /// The items one `record` call writes: the records (the last of identical identities wins)
    /// and, for every digest of a re-queued or parked record, one digest item pointing at the
    /// latest such record (by time, then key, then attempt).
    fn items_for(&self, records: &[LedgerRecord]) -> Vec<Item> {
        let mut by_identity: BTreeMap<(&str, u32), &LedgerRecord> = BTreeMap::new();
        for r in records {
            by_identity.insert((r.key.as_str(), r.attempt), r);
        }
        let mut by_digest: BTreeMap<&str, &LedgerRecord> = BTreeMap::new();
        for r in by_identity.values() {
            let retried = matches!(r.action, RecordedAction::Requeued | RecordedAction::Parked);
            if !retried || r.body_digest.is_empty() {
                continue;
            }
            let later =
                |old: &&LedgerRecord| (r.at, &r.key, r.attempt) >= (old.at, &old.key, old.attempt);
            match by_digest.get(r.body_digest.as_str()) {
                Some(old) if !later(old) => {}
                _ => {
                    by_digest.insert(&r.body_digest, r);
                }
            }
        }
        by_identity
            .values()
            .map(|r| self.record_item(r))
            .chain(by_digest.values().map(|r| self.digest_item(r)))
            .collect()
    }

    /// Write items with `BatchWriteItem`, 25 per call, re-sending unprocessed items with backoff.
    async fn write_items(&self, items: Vec<Item>) -> Result<(), PortError> {
        let mut requests = Vec::with_capacity(items.len());
        for item in items {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| PortError::permanent("write", &self.table, e.to_string()))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        let mut pending: Vec<WriteRequest> = Vec::new();
        let mut queue = requests.into_iter();
        let mut round = 0;
        loop {
            while pending.len() < WRITE_BATCH_SIZE {
                match queue.next() {
                    Some(request) => pending.push(request),
                    None => break,
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, std::mem::take(&mut pending))
                .send()
                .await
                .map_err(|e| port_error("write", &self.table, &e))?;
            let unprocessed = output
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if unprocessed.is_empty() {
                round = 0;
                continue;
            }
            self.next_round(
                &mut round,
                "write",
                "items",
                unprocessed.len() + queue.len(),
            )
            .await?;
            pending = unprocessed;
        }
    }

    /// A batch call left `left` entries unprocessed (throttled): wait out this round's backoff, or
    /// give up with a retryable error after [`MAX_ROUNDS`] rounds in a row.
    async fn next_round(
        &self,
        round: &mut u32,
        operation: &str,
        entries: &str,
        left: usize,
    ) -> Result<(), PortError> {
        *round += 1;
        if *round >= MAX_ROUNDS {
            return Err(PortError::retryable(
                operation,
                &self.table,
                format!("{left} {entries} still unprocessed after {MAX_ROUNDS} rounds (throttled)"),
            ));
        }
        tokio::time::sleep(backoff(*round)).await;
        Ok(())
    }

    /// Read items by primary key with `BatchGetItem`, 100 keys per call (duplicates removed),
    /// strongly consistent, re-sending unprocessed keys with backoff.
    pub(crate) async fn get_items(&self, keys: Vec<Item>) -> Result<Vec<Item>, PortError> {
        let mut unique: BTreeMap<(String, String), Item> = BTreeMap::new();
        for key in keys {
            let id = |name: &str| match key.get(name) {
                Some(AttributeValue::S(v)) => format!("S{v}"),
                Some(AttributeValue::N(v)) => format!("N{v}"),
                other => format!("{other:?}"),
            };
            unique.insert((id(PARTITION_KEY), id(SORT_KEY)), key);
        }
        let mut queue = unique.into_values();
        let mut pending: Vec<Item> = Vec::new();
        let mut found = Vec::new();
        let mut round = 0;
        loop {
            while pending.len() < READ_BATCH_SIZE {
                match queue.next() {
                    Some(key) => pending.push(key),
                    None => break,
                }
            }
            if pending.is_empty() {
                return Ok(found);
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| PortError::permanent("read", &self.table, e.to_string()))?;
            let mut output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| port_error("read", &self.table, &e))?;
            if let Some(items) = output
                .responses
                .as_mut()
                .and_then(|r| r.remove(&self.table))
            {
                found.extend(items);
            }
            let unprocessed = output
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if unprocessed.is_empty() {
                round = 0;
                continue;
            }
            self.next_round(&mut round, "read", "keys", unprocessed.len() + queue.len())
                .await?;
            pending = unprocessed;
        }
    }

    /// The records of `key` with attempts up to `up_to` (all when absent), oldest first, by
    /// `Query` on the partition key (strongly consistent, every page).
    async fn query_key(
        &self,
        key: &str,
        up_to: Option<u32>,
    ) -> Result<Vec<LedgerRecord>, PortError> {
        let mut records = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_names("#pk", PARTITION_KEY)
                .expression_attribute_values(":pk", s(key))
                .set_exclusive_start_key(start.take());
            query = match up_to {
                Some(up_to) => query
                    .key_condition_expression("#pk = :pk AND #sk BETWEEN :one AND :up")
                    .expression_attribute_names("#sk", SORT_KEY)
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":up", n(up_to)),
                None => query.key_condition_expression("#pk = :pk"),
            };
            let output = query
                .send()
                .await
                .map_err(|e| port_error("read", &self.table, &e))?;
            for item in output.items() {
                records.push(record_from_item(&self.table, item)?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        records.sort_by_key(|r| r.attempt);
        Ok(records)
    }

    /// Every record of one key, oldest attempt first (`Query` on `pk`).
    pub async fn records_by_key(&self, key: &str) -> Result<Vec<LedgerRecord>, PortError> {
        self.query_key(key, None).await
    }

    /// Records of `class` decided at or after `since` and before `until`, newest first, at most
    /// `limit` (all when absent), from the `by_class_time` index (eventually consistent).
    pub async fn query(
        &self,
        class: FailureClass,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: Option<usize>,
    ) -> Result<Vec<LedgerRecord>, PortError> {
        let limit = limit.unwrap_or(usize::MAX);
        let mut records = Vec::new();
        if limit == 0 {
            return Ok(records);
        }
        // A key condition has one comparison on the sort key: BETWEEN is inclusive, so a record
        // at exactly `until` is dropped here.
        let (condition, bounds): (&str, Vec<(&str, String)>) = match (since, until) {
            (Some(since), Some(until)) => (
                "#c = :c AND #at BETWEEN :since AND :until",
                vec![(":since", time_text(since)), (":until", time_text(until))],
            ),
            (Some(since), None) => (
                "#c = :c AND #at >= :since",
                vec![(":since", time_text(since))],
            ),
            (None, Some(until)) => (
                "#c = :c AND #at < :until",
                vec![(":until", time_text(until))],
            ),
            (None, None) => ("#c = :c", Vec::new()),
        };
        let until_text = until.map(time_text);
        let mut start: Option<Item> = None;
        loop {
            let page =
                i32::try_from(limit.saturating_sub(records.len()).clamp(1, 1000)).unwrap_or(1000);
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(CLASS_TIME_INDEX)
                .key_condition_expression(condition)
                .expression_attribute_names("#c", CLASS_ATTRIBUTE)
                .expression_attribute_values(":c", s(class.as_str()))
                .scan_index_forward(false)
                .limit(page)
                .set_exclusive_start_key(start.take());
            if !bounds.is_empty() {
                query = query.expression_attribute_names("#at", TIME_ATTRIBUTE);
            }
            for (name, value) in &bounds {
                query = query.expression_attribute_values(*name, s(value));
            }
            let output = query
                .send()
                .await
                .map_err(|e| port_error("query", &self.table, &e))?;
            for item in output.items() {
                let at = item.get(TIME_ATTRIBUTE).and_then(|v| v.as_s().ok());
                if until_text.is_some() && at == until_text.as_ref() {
                    continue;
                }
                records.push(record_from_item(&self.table, item)?);
                if records.len() >= limit {
                    return Ok(records);
                }
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(records),
            }
        }
    }
}

#[async_trait]
impl Ledger for DynamoLedger {
    /// Bounded histories by primary key in `BatchGetItem` calls of 100; a key asking for more
    /// than [`MAX_BATCH_HISTORY`] attempts is read with a `Query` instead.
    async fn history(
        &self,
        requests: &[HistoryRequest],
    ) -> Result<HashMap<String, Vec<LedgerRecord>>, PortError> {
        let mut bounds: BTreeMap<&str, u32> = BTreeMap::new();
        for request in requests {
            let bound = bounds.entry(request.key.as_str()).or_default();
            *bound = (*bound).max(request.up_to_attempt);
        }
        let mut out: HashMap<String, Vec<LedgerRecord>> = HashMap::new();
        let mut keys = Vec::new();
        for (&key, &up_to) in &bounds {
            if key.is_empty() {
                continue; // DynamoDB refuses empty key values; no record can have one.
            }
            if up_to > MAX_BATCH_HISTORY {
                let records = self.query_key(key, Some(up_to)).await?;
                if !records.is_empty() {
                    out.insert(key.to_string(), records);
                }
            } else {
                keys.extend((1..=up_to).map(|attempt| record_key(key, attempt)));
            }
        }
        for item in self.get_items(keys).await? {
            let record = record_from_item(&self.table, &item)?;
            out.entry(record.key.clone()).or_default().push(record);
        }
        for records in out.values_mut() {
            records.sort_by_key(|r| r.attempt);
        }
        Ok(out)
    }

    /// Digest items by primary key, in `BatchGetItem` calls of 100.
    async fn keys_by_digest(
        &self,
        digests: &[String],
    ) -> Result<HashMap<String, DigestMatch>, PortError> {
        let keys = digests
            .iter()
            .filter(|d| !d.is_empty())
            .map(|d| digest_key(d))
            .collect();
        let mut out = HashMap::new();
        for item in self.get_items(keys).await? {
            let pk = get_s(&self.table, &item, PARTITION_KEY)?;
            let Some(digest) = pk.strip_prefix(DIGEST_PREFIX) else {
                continue;
            };
            out.insert(
                digest.to_string(),
                DigestMatch {
                    key: get_s(&self.table, &item, "key")?.to_string(),
                    attempt: get_n(&self.table, &item, "attempt")?,
                    action: get_action(&self.table, &item)?,
                },
            );
        }
        Ok(out)
    }

    /// Records and their digest items in `BatchWriteItem` calls of 25.
    async fn record(&self, records: &[LedgerRecord]) -> Result<(), PortError> {
        if let Some(bad) = records.iter().find(|r| r.key.is_empty()) {
            return Err(PortError::permanent(
                "write",
                &self.table,
                format!("a ledger record needs a key (attempt {})", bad.attempt),
            ));
        }
        self.write_items(self.items_for(records)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn record(
        key: &str,
        attempt: u32,
        action: RecordedAction,
        digest: &str,
        minute: u32,
    ) -> LedgerRecord {
        LedgerRecord {
            key: key.into(),
            attempt,
            class: FailureClass::Timeout,
            rule: "timeouts".into(),
            action,
            alerted: false,
            alert_held_back: false,
            at: Utc.with_ymd_and_hms(2026, 11, 27, 10, minute, 0).unwrap(),
            source: None,
            archive_ref: None,
            error: String::new(),
            dlq_message_id: "m".into(),
            body_digest: digest.into(),
            due_at: None,
        }
    }

    fn ledger() -> DynamoLedger {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        DynamoLedger::new(Client::from_conf(config), "t")
    }

    #[test]
    fn items_keep_the_last_identity_and_the_latest_retried_digest() {
        let items = ledger().items_for(&[
            record("a", 1, RecordedAction::Requeued, "d", 1),
            record("a", 1, RecordedAction::Parked, "d", 2),
            record("b", 1, RecordedAction::Requeued, "d", 3),
            record("c", 1, RecordedAction::Archived, "e", 4),
        ]);
        assert_eq!(items.len(), 4, "{items:?}");
        let a = items
            .iter()
            .find(|i| i.get(PARTITION_KEY) == Some(&s("a")))
            .unwrap();
        assert_eq!(a.get("action"), Some(&s("parked")));
        let digests: Vec<&Item> = items
            .iter()
            .filter(|i| {
                i.get(PARTITION_KEY)
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|pk| pk.starts_with(DIGEST_PREFIX))
            })
            .collect();
        assert_eq!(digests.len(), 1);
        assert_eq!(digests[0].get("key"), Some(&s("b")));
    }

    #[test]
    fn times_sort_as_text_and_round_trip() {
        let a = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let b = a + chrono::Duration::nanoseconds(1);
        assert!(time_text(a) < time_text(b));
        assert_eq!(DateTime::parse_from_rfc3339(&time_text(b)).unwrap(), b);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= FIRST_BACKOFF && backoff(1) < FIRST_BACKOFF * 2);
        assert!(backoff(3) >= FIRST_BACKOFF * 4);
        assert!(backoff(40) <= MAX_BACKOFF.mul_f64(1.5));
    }
}
