//! The embedded local backend of dlq-healer: one SQLite file holds the queues (with SQS
//! semantics), the ledger, the archive index, the alert dedup windows and the metrics, so several
//! processes (producer, consumer, healer, dashboard) can share it. Archived messages are JSON
//! Lines files under a directory. Runs on a laptop with no cloud account.
//!
//! # Layout
//! - [`error`]: [`LocalError`], what went wrong and what to do, and its mapping to `PortError`.
//! - [`store`]: [`LocalStore`], the SQLite file (WAL, busy timeout), its schema and the clock.
//! - [`queue`]: [`LocalQueues`] (create, send, depth, purge) and [`LocalQueue`] (receive, delete,
//!   change visibility) with visibility timeouts, receive counts, delays, redrive and FIFO.
//! - [`ledger`]: [`LocalLedger`], one row per (key, attempt), queryable by key, class and time.
//! - [`archive`]: [`LocalArchive`], JSON Lines files written atomically, indexed by key and class.
//! - [`alerts`]: [`LocalAlerter`], dedup windows shared through the file, log line, webhook thread.
//! - [`metrics`]: [`LocalMetrics`], per-minute sums by name and class for dashboards.
//! - [`retention`]: [`RetentionSweeper`], which removes ledger records, sent alerts and metric
//!   minutes older than the retention (90 days by default); the archive is kept.
//!
//! Every adapter implements a port of `dlq_healer_core::ports` and passes the shared contract
//! suite in `dlq_healer_core::contract` (see `tests/contract.rs`).

#![warn(missing_docs)]

pub mod alerts;
pub mod archive;
pub mod error;
mod gathered_wal;
pub mod ledger;
pub mod metrics;
mod parallel;
mod periodic;
pub mod queue;
pub mod retention;
pub mod store;
mod stored_attributes;

pub use alerts::{AlertSettings, LocalAlerter, SentAlert, WebhookStats};
pub use archive::{ArchiveEntry, LocalArchive};
pub use error::LocalError;
pub use ledger::{LedgerQuery, LocalLedger};
pub use metrics::{LocalMetrics, MetricPoint, MetricTotal};
pub use queue::{LocalQueue, LocalQueues, QueueDepth, QueueInfo, QueueSettings, RedrivePolicy};
pub use retention::{Forgotten, RetentionSweeper};
pub use store::LocalStore;

impl LocalStore {
    /// The queues in this store.
    pub fn queues(&self) -> LocalQueues {
        LocalQueues::new(self.clone())
    }

    /// The ledger in this store.
    pub fn ledger(&self) -> LocalLedger {
        LocalLedger::new(self.clone())
    }

    /// The metrics in this store.
    pub fn metrics(&self) -> LocalMetrics {
        LocalMetrics::new(self.clone())
    }
}
