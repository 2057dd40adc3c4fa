//! The ports: small async traits the engine drives, implemented by the local and aws adapters
//! (and by in-memory fakes in tests). Batch calls return one result per entry, in input order.

#[cfg(doc)]
use crate::alert::DigestsDue;
use crate::alert::{Alert, GateOutcome};
use crate::class::FailureClass;
use crate::message::{OutgoingMessage, ReceivedMessage};
use crate::records::{ArchiveBatch, ArchiveRecord, ArchiveRef, LedgerRecord, RecordedAction};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// A failed call to the outside world.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} on {target} failed: {message}")]
pub struct PortError {
    /// What was attempted, e.g. `send`, `receive`, `store archive`.
    pub operation: String,
    /// What it was attempted on: a queue, bucket, table, file.
    pub target: String,
    /// What went wrong.
    pub message: String,
    /// Whether trying again later may succeed. A queue that does not exist is not retryable.
    pub retryable: bool,
}

impl PortError {
    /// A retryable error.
    pub fn retryable(operation: &str, target: &str, message: impl Into<String>) -> Self {
        PortError {
            operation: operation.to_string(),
            target: target.to_string(),
            message: message.into(),
            retryable: true,
        }
    }

    /// An error that will not go away by itself.
    pub fn permanent(operation: &str, target: &str, message: impl Into<String>) -> Self {
        PortError {
            retryable: false,
            ..PortError::retryable(operation, target, message)
        }
    }
}

/// SQS's most messages per receive; [`MessageSource::receive`] never returns more.
pub const RECEIVE_MAX: usize = 10;

/// One result per entry of a batch call.
pub type EntryResults<T> = Vec<Result<T, PortError>>;

/// A queue to receive from: the DLQ for the healer, the main queue for a consumer.
#[async_trait]
pub trait MessageSource: Send + Sync {
    /// The queue's name, URL or ARN, for logs and for `dlq-context.source`.
    fn queue_id(&self) -> &str;
    /// Whether the queue is FIFO (no per-message delays; group ids kept).
    fn is_fifo(&self) -> bool {
        false
    }
    /// Receive up to `max` messages, waiting up to `wait` for the first.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, PortError>;
    /// Receive up to `batch_size` messages for one healer batch: the first receive waits up to
    /// `wait`, the rest take whatever is there at once, in receives of up to
    /// [`RECEIVE_MAX`] (SQS's limit). After each receive that leaves the batch short, `stop` is
    /// asked whether to end the batch there (a healer asked to stop heals what it received
    /// rather than leaving it in flight); so once it has been asked, the first receive is over.
    /// A backend that can hand out a whole batch at once (the local one, in one transaction)
    /// overrides this; each message keeps the same semantics.
    async fn receive_batch(
        &self,
        batch_size: usize,
        wait: Duration,
        stop: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Vec<ReceivedMessage>, PortError> {
        let mut batch = Vec::with_capacity(batch_size);
        let mut first = true;
        while batch.len() < batch_size {
            let want = (batch_size - batch.len()).min(RECEIVE_MAX);
            let received = self
                .receive(want, if first { wait } else { Duration::ZERO })
                .await?;
            first = false;
            let got = received.len();
            batch.extend(received);
            if got < want || (batch.len() < batch_size && stop()) {
                break;
            }
        }
        Ok(batch)
    }
    /// How long a delivery stays invisible to other receivers unless its visibility is changed:
    /// the queue's visibility timeout, or `None` when the backend cannot tell.
    async fn visibility_timeout(&self) -> Result<Option<Duration>, PortError> {
        Ok(None)
    }
    /// Delete deliveries by receipt handle; a stale handle is an entry error.
    async fn delete(&self, receipt_handles: &[String]) -> Result<EntryResults<()>, PortError>;
    /// Set the visibility timeout of deliveries, in seconds from now.
    async fn change_visibility(
        &self,
        entries: &[(String, u32)],
    ) -> Result<EntryResults<()>, PortError>;
}

/// Queues to send to, named by URL, ARN or name.
#[async_trait]
pub trait QueueSender: Send + Sync {
    /// Send messages to one queue; returns the new message ids.
    async fn send(
        &self,
        queue: &str,
        messages: &[OutgoingMessage],
    ) -> Result<EntryResults<String>, PortError>;
}

/// A history lookup: the records of `key` with attempts `1..=up_to_attempt`. The bound lets a
/// key-value store fetch a history by primary keys in one batch call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRequest {
    /// The message key.
    pub key: String,
    /// The highest attempt wanted.
    pub up_to_attempt: u32,
}

/// The latest record of a body digest: which key it belongs to and how far that key got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestMatch {
    /// The key.
    pub key: String,
    /// The attempt of the latest record.
    pub attempt: u32,
    /// What the latest record did.
    pub action: RecordedAction,
}

/// The ledger: one record per (key, attempt); writing a record again replaces it.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// The records of each requested key with attempts up to the bound, oldest attempt first
    /// (adapters may return more). Keys without records are absent.
    async fn history(
        &self,
        requests: &[HistoryRequest],
    ) -> Result<HashMap<String, Vec<LedgerRecord>>, PortError>;
    /// The latest record for each body digest. Digests never seen are absent; adapters need only
    /// remember the digests of re-queued and parked records.
    async fn keys_by_digest(
        &self,
        digests: &[String],
    ) -> Result<HashMap<String, DigestMatch>, PortError>;
    /// Write records (insert or replace by identity).
    async fn record(&self, records: &[LedgerRecord]) -> Result<(), PortError>;
}

/// The archive of messages that will not be re-queued automatically.
#[async_trait]
pub trait Archive: Send + Sync {
    /// Store one batch as one object; storing the same object again overwrites it.
    async fn store(&self, batch: &ArchiveBatch) -> Result<(), PortError>;
    /// Store several objects (a healer batch's, one per class); one result per object, in order.
    /// Adapters that can write them concurrently override this.
    async fn store_all(&self, batches: &[ArchiveBatch]) -> EntryResults<()> {
        let mut results = Vec::with_capacity(batches.len());
        for batch in batches {
            results.push(self.store(batch).await);
        }
        results
    }
    /// Read one archived record back.
    async fn fetch(&self, reference: &ArchiveRef) -> Result<ArchiveRecord, PortError>;
}

/// What raising alerts did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertReport {
    /// Alerts (and digests) that went out.
    pub sent: u64,
    /// Messages held back by the dedup window.
    pub suppressed: u64,
    /// The fingerprints of the alerts the window held back: their messages go out in the
    /// window's digest, not now.
    pub held_back: BTreeSet<String>,
}

impl AlertReport {
    /// Count what passing the alert of `fingerprint` through its window (see
    /// [`crate::alert::gate`]) did: the alerts it sends, the messages it held back.
    pub fn count_gated(&mut self, fingerprint: &str, outcome: &GateOutcome) {
        self.sent += outcome.send.len() as u64;
        self.suppressed += outcome.suppressed;
        if outcome.suppressed > 0 {
            self.held_back.insert(fingerprint.to_string());
        }
    }
}

/// Where alerts go, through a dedup window per fingerprint (see [`crate::alert::gate`]).
#[async_trait]
pub trait Alerter: Send + Sync {
    /// Raise alerts at `now`.
    async fn raise(&self, alerts: Vec<Alert>, now: DateTime<Utc>)
    -> Result<AlertReport, PortError>;
    /// Send the digests of windows that have closed by `now`.
    async fn flush_digests(&self, now: DateTime<Utc>) -> Result<AlertReport, PortError>;
    /// Send the digests of every window that holds repeats back, closed or not
    /// ([`DigestsDue::HeldBackNow`]); for a process that stops.
    async fn send_held_back_digests(&self, now: DateTime<Utc>) -> Result<AlertReport, PortError>;
}

/// One metric sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricEvent {
    /// The metric's name; see the constants in [`crate::metrics`].
    pub name: &'static str,
    /// The class it is about, if any.
    pub class: Option<FailureClass>,
    /// The value: a count, milliseconds or seconds.
    pub value: f64,
}

/// Where metrics go. Recording must not fail the healing: adapters log their own errors.
pub trait Metrics: Send + Sync {
    /// Record samples taken at `at`.
    fn record(&self, at: DateTime<Utc>, events: &[MetricEvent]);
}

/// What time it is. Injected so that tests and the demo can run on simulated time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: std::sync::Mutex::new(start),
        }
    }

    /// Move the clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }

    /// Set the clock (never backwards).
    pub fn set(&self, to: DateTime<Utc>) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if to > *now {
            *now = to;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}
