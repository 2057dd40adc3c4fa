//! The ledger in the SQLite file: one row per (key, attempt), found by key, by body digest, and by
//! class and time.

use crate::error::LocalError;
use crate::store::{LocalStore, conversion, from_text, to_text};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dlq_healer_core::FailureClass;
use dlq_healer_core::ports::{DigestMatch, HistoryRequest, Ledger, PortError};
use dlq_healer_core::records::LedgerRecord;
use rusqlite::{Row, params};
use std::collections::HashMap;

const COLUMNS: &str = "key, attempt, class, rule, action, alerted, at, source, archive_ref, error,
                       dlq_message_id, body_digest, due_at";

/// The `alerted` column: 0 when no alert was raised, 1 when it went out (what the column held
/// before alerts held back were told apart, so older files read the same), 2 when held back.
const ALERT_SENT: i64 = 1;
const ALERT_HELD_BACK: i64 = 2;

fn alert_column(record: &LedgerRecord) -> i64 {
    match (record.alerted, record.alert_held_back) {
        (true, _) => ALERT_SENT,
        (false, true) => ALERT_HELD_BACK,
        (false, false) => 0,
    }
}

/// Which ledger records to list; every field narrows the query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerQuery {
    /// Only this class.
    pub class: Option<FailureClass>,
    /// Only records at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only records before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (newest first); all when absent.
    pub limit: Option<usize>,
}

/// The [`Ledger`] of the local backend.
#[derive(Debug, Clone)]
pub struct LocalLedger {
    store: LocalStore,
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<LedgerRecord> {
    let class: String = row.get(2)?;
    let action: String = row.get(4)?;
    let at: String = row.get(6)?;
    let due_at: Option<String> = row.get(12)?;
    Ok(LedgerRecord {
        key: row.get(0)?,
        attempt: row.get(1)?,
        class: class
            .parse()
            .map_err(|e| conversion(format!("class: {e}")))?,
        rule: row.get(3)?,
        action: action.parse().map_err(conversion)?,
        alerted: row.get::<_, i64>(5)? == ALERT_SENT,
        alert_held_back: row.get::<_, i64>(5)? == ALERT_HELD_BACK,
        at: from_text(&at)?,
        source: row.get(7)?,
        archive_ref: row.get(8)?,
        error: row.get(9)?,
        dlq_message_id: row.get(10)?,
        body_digest: row.get(11)?,
        due_at: due_at.as_deref().map(from_text).transpose()?,
    })
}

/// The statement of [`LocalLedger::query`]: class, since, until, limit.
fn query_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM ledger
         WHERE (?1 IS NULL OR class = ?1) AND (?2 IS NULL OR at >= ?2)
           AND (?3 IS NULL OR at < ?3)
         ORDER BY at DESC, key, attempt LIMIT ?4"
    )
}

/// For each digest of the JSON array `?1`, its newest re-queued or parked record. The prefix and
/// the action are those of the index `ledger_retried_by_digest_prefix`, so that it is used.
const KEYS_BY_DIGEST: &str = "SELECT d.value, l.key, l.attempt, l.action FROM json_each(?1) AS d
     CROSS JOIN ledger AS l
     WHERE l.rowid = (SELECT rowid FROM ledger
                      WHERE substr(body_digest, 1, 12) = substr(d.value, 1, 12)
                        AND body_digest = d.value AND action IN ('requeued', 'parked')
                      ORDER BY at DESC, key DESC, attempt DESC LIMIT 1)";

/// A list as JSON text, to pass it to SQLite's `json_each` in one parameter.
fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_string())
}

impl LocalLedger {
    /// The ledger of `store`.
    pub fn new(store: LocalStore) -> Self {
        LocalLedger { store }
    }

    /// Every record of one key, oldest attempt first.
    pub fn records_by_key(&self, key: &str) -> Result<Vec<LedgerRecord>, LocalError> {
        self.store.read("read", "the ledger", |tx| {
            let mut statement = tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM ledger WHERE key = ?1 ORDER BY attempt"
            ))?;
            statement.query_map([key], record_from_row)?.collect()
        })
    }

    /// Records by class and time, newest first.
    pub fn query(&self, query: &LedgerQuery) -> Result<Vec<LedgerRecord>, LocalError> {
        let limit = query
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        self.store.read("query", "the ledger", |tx| {
            let mut statement = tx.prepare_cached(&query_sql())?;
            statement
                .query_map(
                    params![
                        query.class.map(FailureClass::as_str),
                        query.since.map(to_text),
                        query.until.map(to_text),
                        limit
                    ],
                    record_from_row,
                )?
                .collect()
        })
    }

    /// The records still parked and due after `due_after`, soonest due first: the messages
    /// waiting in the DLQ for their retry (through the index `ledger_parked_by_due`, which
    /// holds parked records only).
    pub fn parked(&self, due_after: DateTime<Utc>) -> Result<Vec<LedgerRecord>, LocalError> {
        self.store.read("query", "the ledger", |tx| {
            let mut statement = tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM ledger
                 WHERE action = 'parked' AND due_at > ?1
                 ORDER BY due_at, key, attempt"
            ))?;
            statement
                .query_map(params![to_text(due_after)], record_from_row)?
                .collect()
        })
    }

    /// How many records the ledger holds.
    pub fn count(&self) -> Result<u64, LocalError> {
        self.store.read("count", "the ledger", |tx| {
            tx.query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0))
        })
    }
}

#[async_trait]
impl Ledger for LocalLedger {
    async fn history(
        &self,
        requests: &[HistoryRequest],
    ) -> Result<HashMap<String, Vec<LedgerRecord>>, PortError> {
        self.store
            .read("read", "the ledger", |tx| {
                // One statement for the whole batch: the requests go in as a JSON array of
                // [key, highest attempt] pairs (the last request of a key counts).
                let mut bounds: HashMap<&str, u32> = HashMap::with_capacity(requests.len());
                for request in requests {
                    bounds.insert(&request.key, request.up_to_attempt);
                }
                let pairs: Vec<(&str, u32)> = bounds.into_iter().collect();
                let mut statement = tx.prepare_cached(
                    "SELECT ledger.key, attempt, class, rule, action, alerted, at, source,
                            archive_ref, error, dlq_message_id, body_digest, due_at
                     FROM json_each(?1) AS r CROSS JOIN ledger
                     WHERE ledger.key = r.value ->> 0 AND ledger.attempt <= r.value ->> 1
                     ORDER BY ledger.key, ledger.attempt",
                )?;
                let mut out: HashMap<String, Vec<LedgerRecord>> = HashMap::new();
                let mut rows = statement.query([json_list(&pairs)])?;
                while let Some(row) = rows.next()? {
                    let record = record_from_row(row)?;
                    out.entry(record.key.clone()).or_default().push(record);
                }
                Ok(out)
            })
            .map_err(|e| e.into_port("read", "ledger"))
    }

    async fn keys_by_digest(
        &self,
        digests: &[String],
    ) -> Result<HashMap<String, DigestMatch>, PortError> {
        self.store
            .read("read", "the ledger", |tx| {
                // One statement for the whole batch: the digests go in as a JSON array; each
                // gets its newest re-queued or parked record, if any.
                let mut statement = tx.prepare_cached(KEYS_BY_DIGEST)?;
                let mut out = HashMap::new();
                let mut rows = statement.query([json_list(digests)])?;
                while let Some(row) = rows.next()? {
                    let action: String = row.get(3)?;
                    out.insert(
                        row.get(0)?,
                        DigestMatch {
                            key: row.get(1)?,
                            attempt: row.get(2)?,
                            action: action.parse().map_err(conversion)?,
                        },
                    );
                }
                Ok(out)
            })
            .map_err(|e| e.into_port("read", "ledger"))
    }

    async fn record(&self, records: &[LedgerRecord]) -> Result<(), PortError> {
        self.store
            .write("write", "the ledger", |tx| {
                let mut statement = tx.prepare_cached(&format!(
                    "INSERT OR REPLACE INTO ledger ({COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ))?;
                for r in records {
                    statement.execute(params![
                        r.key,
                        r.attempt,
                        r.class.as_str(),
                        r.rule,
                        r.action.as_str(),
                        alert_column(r),
                        to_text(r.at),
                        r.source,
                        r.archive_ref,
                        r.error,
                        r.dlq_message_id,
                        r.body_digest,
                        r.due_at.map(to_text),
                    ])?;
                }
                Ok(())
            })
            .map_err(|e| e.into_port("write", "ledger"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lookup_by_digest_finds_its_records_through_the_digest_prefix_index() {
        let plan = crate::LocalStore::query_plan(super::KEYS_BY_DIGEST, ["[\"0123456789abcdef\"]"]);
        // A search of the index by the prefix, not a scan of all of it.
        assert!(
            plan.iter().any(|step| step
                .starts_with("SEARCH ledger USING INDEX ledger_retried_by_digest_prefix")),
            "{plan:?}"
        );
    }

    #[test]
    fn a_query_by_class_and_time_reads_the_time_index_instead_of_sorting_the_ledger() {
        crate::LocalStore::assert_query_reads_in_order(&super::query_sql(), "ledger_by_time");
    }
}
