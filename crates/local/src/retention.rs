//! Retention: ledger records, sent alerts and metric minutes older than a cutoff are removed, a
//! bounded number of rows per transaction, as DynamoDB's TTL removes the AWS ledger's items 90
//! days after their decision. Without it the file grows by about a kilobyte per healed message
//! for as long as the healer runs.
//!
//! The archive and its index are never removed here: archived messages are kept until their
//! owner removes them (`LocalArchive::prune`, the CLI's `archive prune`). Queues, their messages and the alert dedup windows have lifetimes of their
//! own.

use crate::error::LocalError;
use crate::metrics::minute_holding;
use crate::periodic::{FirstRound, Periodic, StopRequest};
use crate::store::{LocalStore, to_text};
use rusqlite::ToSql;
use std::time::Duration;

/// Rows removed per transaction: other writers sharing the file wait for at most one of these
/// short transactions.
pub const ROWS_PER_TRANSACTION: usize = 2_000;

/// How often a [`RetentionSweeper`] sweeps after its first sweep.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// Up to `?2` ledger records decided before `?1`, found through the ledger's time index.
const FORGET_LEDGER_RECORDS: &str =
    "DELETE FROM ledger WHERE rowid IN (SELECT rowid FROM ledger WHERE at < ?1 LIMIT ?2)";
/// Up to `?2` alerts sent before `?1`, found through the alerts' time index.
const FORGET_ALERTS: &str =
    "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE at < ?1 LIMIT ?2)";
/// Up to `?2` metric rows of minutes before `?1`, found through the primary key (minute first).
const FORGET_METRIC_ROWS: &str =
    "DELETE FROM metrics WHERE rowid IN (SELECT rowid FROM metrics WHERE minute < ?1 LIMIT ?2)";

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    /// Ledger records (one per key and attempt).
    pub ledger_records: u64,
    /// Sent alerts.
    pub alerts: u64,
    /// Metric rows (one per minute, name and class).
    pub metric_rows: u64,
}

impl Forgotten {
    /// Rows removed in all.
    pub fn total(&self) -> u64 {
        self.ledger_records + self.alerts + self.metric_rows
    }
}

impl LocalStore {
    /// Remove ledger records decided, alerts sent and metric minutes begun more than `retention`
    /// ago on the store's clock; a retention reaching back past the earliest time there is keeps
    /// everything.
    pub fn forget_older_than(&self, retention: chrono::Duration) -> Result<Forgotten, LocalError> {
        self.forget_older_than_unless_stopped(retention, &|| false)
    }

    /// [`LocalStore::forget_older_than`], cut short once `stopped`: then each kind of row gets
    /// one more transaction, so that short-lived healers (`run --until-empty` from cron) still
    /// remove up to [`ROWS_PER_TRANSACTION`] of each per run.
    fn forget_older_than_unless_stopped(
        &self,
        retention: chrono::Duration,
        stopped: &dyn Fn() -> bool,
    ) -> Result<Forgotten, LocalError> {
        let Some(cutoff) = self.now().checked_sub_signed(retention) else {
            return Ok(Forgotten::default());
        };
        let at = to_text(cutoff);
        let minute = minute_holding(cutoff);
        Ok(Forgotten {
            ledger_records: self.delete_in_chunks(
                "the ledger",
                FORGET_LEDGER_RECORDS,
                &at,
                stopped,
            )?,
            alerts: self.delete_in_chunks("the sent alerts", FORGET_ALERTS, &at, stopped)?,
            metric_rows: self.delete_in_chunks(
                "the metrics",
                FORGET_METRIC_ROWS,
                &minute,
                stopped,
            )?,
        })
    }

    /// Run `sql` (which deletes up to `?2` rows older than `?1`), one transaction each time,
    /// until it deletes fewer than [`ROWS_PER_TRANSACTION`], or has run once and `stopped`.
    fn delete_in_chunks(
        &self,
        target: &str,
        sql: &str,
        older_than: &dyn ToSql,
        stopped: &dyn Fn() -> bool,
    ) -> Result<u64, LocalError> {
        let mut removed = 0;
        loop {
            let deleted = self.write("forget old rows of", target, |tx| {
                tx.prepare_cached(sql)?
                    .execute(rusqlite::params![older_than, ROWS_PER_TRANSACTION as i64])
            })?;
            removed += deleted as u64;
            if deleted < ROWS_PER_TRANSACTION || stopped() {
                return Ok(removed);
            }
        }
    }
}

/// A thread that removes what is older than the retention from a store, at once and then every
/// [`SWEEP_INTERVAL`], until it is dropped (which waits for at most one transaction per kind of
/// row).
pub struct RetentionSweeper {
    _thread: Periodic,
}

impl RetentionSweeper {
    /// Start sweeping `store`, keeping `retention` (measured on the store's clock).
    pub fn start(store: LocalStore, retention: chrono::Duration) -> std::io::Result<Self> {
        let sweep = move |stop: &StopRequest| match store
            .forget_older_than_unless_stopped(retention, &|| stop.is_made())
        {
            Ok(forgotten) if forgotten.total() > 0 => tracing::info!(
                ledger_records = forgotten.ledger_records,
                alerts = forgotten.alerts,
                metric_rows = forgotten.metric_rows,
                retention_days = retention.num_days(),
                "removed records older than the retention"
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "retention sweep failed; the next one retries")
            }
        };
        let thread = Periodic::start(
            "dlq-healer-retention",
            SWEEP_INTERVAL,
            FirstRound::AtOnce,
            sweep,
        )?;
        Ok(RetentionSweeper { _thread: thread })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each sweep's statement finds its rows through an index, never by reading the whole table
    /// (the ledger holds millions of rows after a few months).
    #[test]
    fn old_rows_are_found_through_an_index() {
        for (sql, index) in [
            (FORGET_LEDGER_RECORDS, "ledger_by_time"),
            (FORGET_ALERTS, "alerts_by_time"),
            (FORGET_METRIC_ROWS, "sqlite_autoindex_metrics_1"),
        ] {
            let plan = LocalStore::query_plan(sql, rusqlite::params!["2026-01-01", 10]);
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{sql}: {plan:?}"
            );
            assert!(
                !plan.iter().any(|step| step.starts_with("SCAN")),
                "{sql}: {plan:?}"
            );
        }
    }
}
