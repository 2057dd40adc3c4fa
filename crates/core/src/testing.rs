//! In-memory fakes of every port, for unit tests of the engine and of code built on it. They keep
//! SQS's essentials (visibility, receive counts, receipt handles) but no durability. Each can be
//! told to fail, to test that failures leave messages in the DLQ.

use crate::alert::{self, Alert, DigestsDue, WindowState};
use crate::message::{OutgoingMessage, ReceivedMessage};
use crate::ports::{
    AlertReport, Alerter, Archive, Clock, DigestMatch, EntryResults, HistoryRequest, Ledger,
    MessageSource, MetricEvent, Metrics, PortError, QueueSender,
};
use crate::records::{ArchiveBatch, ArchiveRecord, ArchiveRef, LedgerRecord};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A switch that makes a fake fail its calls while on.
#[derive(Debug, Default)]
pub struct FailSwitch(AtomicBool);

impl FailSwitch {
    /// Turn failing on or off.
    pub fn set(&self, failing: bool) {
        self.0.store(failing, Ordering::SeqCst);
    }

    fn check(&self, operation: &str, target: &str) -> Result<(), PortError> {
        if self.0.load(Ordering::SeqCst) {
            Err(PortError::retryable(operation, target, "injected failure"))
        } else {
            Ok(())
        }
    }
}

/// A stored message of a [`MemoryQueues`] queue.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Message id.
    pub message_id: String,
    /// The message as sent.
    pub message: OutgoingMessage,
    /// When it becomes visible.
    pub visible_at: DateTime<Utc>,
    /// Deliveries so far.
    pub receive_count: u32,
    /// The handle of the last delivery.
    pub receipt_handle: Option<String>,
}

/// Named in-memory queues with visibility timeouts. `queue(name)` gives a [`MessageSource`].
pub struct MemoryQueues {
    clock: Arc<dyn Clock>,
    queues: Mutex<BTreeMap<String, Vec<StoredMessage>>>,
    next_id: AtomicU64,
    visibility: Duration,
    /// Fails `send` while on.
    pub fail_send: FailSwitch,
    /// Fails `delete` while on.
    pub fail_delete: FailSwitch,
}

impl MemoryQueues {
    /// Empty queues on a clock, with a 30 s visibility timeout.
    pub fn new(clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(MemoryQueues {
            clock,
            queues: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            visibility: Duration::seconds(30),
            fail_send: FailSwitch::default(),
            fail_delete: FailSwitch::default(),
        })
    }

    /// Create a queue (sending to a queue that does not exist is a permanent error).
    pub fn create(&self, name: &str) {
        lock(&self.queues).entry(name.to_string()).or_default();
    }

    /// A [`MessageSource`] on one queue.
    pub fn queue(self: &Arc<Self>, name: &str) -> Arc<MemoryQueue> {
        self.create(name);
        Arc::new(MemoryQueue {
            queues: self.clone(),
            name: name.to_string(),
        })
    }

    /// Every message of a queue, in flight or not.
    pub fn messages(&self, name: &str) -> Vec<StoredMessage> {
        lock(&self.queues).get(name).cloned().unwrap_or_default()
    }
}

#[async_trait]
impl QueueSender for MemoryQueues {
    async fn send(
        &self,
        queue: &str,
        messages: &[OutgoingMessage],
    ) -> Result<EntryResults<String>, PortError> {
        self.fail_send.check("send", queue)?;
        let now = self.clock.now();
        let mut queues = lock(&self.queues);
        let Some(stored) = queues.get_mut(queue) else {
            return Err(PortError::permanent("send", queue, "queue does not exist"));
        };
        Ok(messages
            .iter()
            .map(|message| {
                check_limits(queue, message)?;
                let id = format!("mem-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
                stored.push(StoredMessage {
                    message_id: id.clone(),
                    message: message.clone(),
                    visible_at: now + Duration::seconds(message.delay_seconds as i64),
                    receive_count: 0,
                    receipt_handle: None,
                });
                Ok(id)
            })
            .collect())
    }
}

/// SQS's limits on one outgoing message, as an entry error.
fn check_limits(queue: &str, message: &OutgoingMessage) -> Result<(), PortError> {
    let refuse = |why: String| Err(PortError::permanent("send", queue, why));
    if message.delay_seconds > 900 {
        return refuse(format!(
            "delay of {} s is over 900 s",
            message.delay_seconds
        ));
    }
    if message.attributes.len() > crate::message::MAX_ATTRIBUTES {
        return refuse(format!(
            "{} attributes, at most 10",
            message.attributes.len()
        ));
    }
    if message.body.len() > 1_048_576 {
        return refuse(format!(
            "body of {} bytes is over 1 MiB",
            message.body.len()
        ));
    }
    Ok(())
}

/// One queue of [`MemoryQueues`].
pub struct MemoryQueue {
    queues: Arc<MemoryQueues>,
    name: String,
}

#[async_trait]
impl MessageSource for MemoryQueue {
    fn queue_id(&self) -> &str {
        &self.name
    }

    async fn receive(
        &self,
        max: usize,
        _wait: std::time::Duration,
    ) -> Result<Vec<ReceivedMessage>, PortError> {
        let now = self.queues.clock.now();
        let mut queues = lock(&self.queues.queues);
        let stored = queues.entry(self.name.clone()).or_default();
        let mut out = Vec::new();
        // SQS returns at most 10 messages per receive.
        for message in stored
            .iter_mut()
            .filter(|m| m.visible_at <= now)
            .take(max.min(10))
        {
            message.receive_count += 1;
            message.visible_at = now + self.queues.visibility;
            let handle = format!("{}#{}", message.message_id, message.receive_count);
            message.receipt_handle = Some(handle.clone());
            out.push(ReceivedMessage {
                message_id: message.message_id.clone(),
                receipt_handle: handle,
                body: message.message.body.clone(),
                attributes: message.message.attributes.clone(),
                receive_count: message.receive_count,
                redrive_source: None,
                sent_at: None,
                group_id: message.message.group_id.clone(),
            });
        }
        Ok(out)
    }

    async fn delete(&self, receipt_handles: &[String]) -> Result<EntryResults<()>, PortError> {
        self.queues.fail_delete.check("delete", &self.name)?;
        let mut queues = lock(&self.queues.queues);
        let stored = queues.entry(self.name.clone()).or_default();
        Ok(receipt_handles
            .iter()
            .map(|handle| {
                let position = stored
                    .iter()
                    .position(|m| m.receipt_handle.as_ref() == Some(handle));
                match position {
                    Some(index) => {
                        stored.remove(index);
                        Ok(())
                    }
                    None => Err(PortError::permanent(
                        "delete",
                        &self.name,
                        "stale receipt handle",
                    )),
                }
            })
            .collect())
    }

    async fn change_visibility(
        &self,
        entries: &[(String, u32)],
    ) -> Result<EntryResults<()>, PortError> {
        let now = self.queues.clock.now();
        let mut queues = lock(&self.queues.queues);
        let stored = queues.entry(self.name.clone()).or_default();
        Ok(entries
            .iter()
            .map(|(handle, seconds)| {
                match stored
                    .iter_mut()
                    .find(|m| m.receipt_handle.as_ref() == Some(handle))
                {
                    Some(message) if message.visible_at <= now => Err(PortError::permanent(
                        "change visibility",
                        &self.name,
                        "message is not in flight",
                    )),
                    Some(message) => {
                        message.visible_at = now + Duration::seconds(*seconds as i64);
                        Ok(())
                    }
                    None => Err(PortError::permanent(
                        "change visibility",
                        &self.name,
                        "stale receipt handle",
                    )),
                }
            })
            .collect())
    }
}

/// An in-memory ledger.
#[derive(Default)]
pub struct MemoryLedger {
    records: Mutex<BTreeMap<(String, u32), LedgerRecord>>,
    /// Fails every call while on.
    pub fail: FailSwitch,
    /// Fails writes only while on.
    pub fail_writes: FailSwitch,
}

impl MemoryLedger {
    /// Every record, by key then attempt.
    pub fn all(&self) -> Vec<LedgerRecord> {
        lock(&self.records).values().cloned().collect()
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn history(
        &self,
        requests: &[HistoryRequest],
    ) -> Result<HashMap<String, Vec<LedgerRecord>>, PortError> {
        self.fail.check("read", "ledger")?;
        let records = lock(&self.records);
        let mut out: HashMap<String, Vec<LedgerRecord>> = HashMap::new();
        let wanted = |r: &LedgerRecord| {
            requests
                .iter()
                .any(|q| q.key == r.key && r.attempt <= q.up_to_attempt)
        };
        for record in records.values().filter(|r| wanted(r)) {
            out.entry(record.key.clone())
                .or_default()
                .push(record.clone());
        }
        Ok(out)
    }

    async fn keys_by_digest(
        &self,
        digests: &[String],
    ) -> Result<HashMap<String, DigestMatch>, PortError> {
        self.fail.check("read", "ledger")?;
        let records = lock(&self.records);
        let mut latest: HashMap<String, &LedgerRecord> = HashMap::new();
        for record in records
            .values()
            .filter(|r| digests.contains(&r.body_digest))
        {
            let entry = latest.entry(record.body_digest.clone()).or_insert(record);
            if record.at >= entry.at {
                *entry = record;
            }
        }
        Ok(latest
            .into_iter()
            .map(|(d, r)| {
                let found = DigestMatch {
                    key: r.key.clone(),
                    attempt: r.attempt,
                    action: r.action,
                };
                (d, found)
            })
            .collect())
    }

    async fn record(&self, records: &[LedgerRecord]) -> Result<(), PortError> {
        self.fail.check("write", "ledger")?;
        self.fail_writes.check("write", "ledger")?;
        let mut stored = lock(&self.records);
        for record in records {
            stored.insert((record.key.clone(), record.attempt), record.clone());
        }
        Ok(())
    }
}

/// An in-memory archive.
#[derive(Default)]
pub struct MemoryArchive {
    objects: Mutex<BTreeMap<String, Vec<ArchiveRecord>>>,
    /// Fails every call while on.
    pub fail: FailSwitch,
}

impl MemoryArchive {
    /// Every stored record.
    pub fn records(&self) -> Vec<ArchiveRecord> {
        lock(&self.objects).values().flatten().cloned().collect()
    }
}

#[async_trait]
impl Archive for MemoryArchive {
    async fn store(&self, batch: &ArchiveBatch) -> Result<(), PortError> {
        self.fail.check("store", &batch.object)?;
        lock(&self.objects).insert(batch.object.clone(), batch.records.clone());
        Ok(())
    }

    async fn fetch(&self, reference: &ArchiveRef) -> Result<ArchiveRecord, PortError> {
        lock(&self.objects)
            .get(&reference.object)
            .and_then(|records| records.get(reference.line as usize - 1))
            .cloned()
            .ok_or_else(|| {
                PortError::permanent("fetch", &reference.to_string(), "no such archived record")
            })
    }
}

/// An in-memory alerter with a dedup window.
pub struct MemoryAlerter {
    window: Duration,
    states: Mutex<HashMap<String, (Alert, WindowState)>>,
    sent: Mutex<Vec<Alert>>,
    /// Fails every call while on.
    pub fail: FailSwitch,
}

impl MemoryAlerter {
    /// An alerter with a dedup window.
    pub fn new(window: Duration) -> Self {
        MemoryAlerter {
            window,
            states: Mutex::new(HashMap::new()),
            sent: Mutex::new(Vec::new()),
            fail: FailSwitch::default(),
        }
    }

    /// Alerts that went out.
    pub fn sent(&self) -> Vec<Alert> {
        lock(&self.sent).clone()
    }
}

#[async_trait]
impl Alerter for MemoryAlerter {
    async fn raise(
        &self,
        alerts: Vec<Alert>,
        now: DateTime<Utc>,
    ) -> Result<AlertReport, PortError> {
        self.fail.check("raise", "alerts")?;
        let mut report = AlertReport::default();
        let mut states = lock(&self.states);
        for alert in alerts {
            let previous = states.remove(&alert.fingerprint).map(|(_, state)| state);
            let template = alert.clone();
            let outcome = alert::gate(alert, previous, now, self.window);
            report.count_gated(&template.fingerprint, &outcome);
            lock(&self.sent).extend(outcome.send);
            states.insert(template.fingerprint.clone(), (template, outcome.state));
        }
        Ok(report)
    }

    async fn flush_digests(&self, now: DateTime<Utc>) -> Result<AlertReport, PortError> {
        Ok(self.send_digests(now, DigestsDue::OfClosedWindows))
    }

    async fn send_held_back_digests(&self, now: DateTime<Utc>) -> Result<AlertReport, PortError> {
        Ok(self.send_digests(now, DigestsDue::HeldBackNow))
    }
}

impl MemoryAlerter {
    fn send_digests(&self, now: DateTime<Utc>, due: DigestsDue) -> AlertReport {
        let mut report = AlertReport::default();
        let mut states = lock(&self.states);
        for (template, state) in states.values_mut() {
            let digest = due
                .takes(alert::window_closed(state, now, self.window))
                .then(|| alert::digest_of(template, state.clone()))
                .flatten();
            if let Some(digest) = digest {
                lock(&self.sent).push(digest);
                report.sent += 1;
                state.suppressed = 0;
                state.sample_keys.clear();
            }
        }
        report
    }
}

/// In-memory metrics: sums by name and class, and how many writes brought them.
#[derive(Default)]
pub struct MemoryMetrics {
    sums: Mutex<BTreeMap<(String, Option<crate::FailureClass>), f64>>,
    writes: Mutex<usize>,
}

impl MemoryMetrics {
    /// The sum of a metric over all classes.
    pub fn total(&self, name: &str) -> f64 {
        lock(&self.sums)
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }

    /// How many times metrics were recorded (each a write of its own in a real store).
    pub fn writes(&self) -> usize {
        *lock(&self.writes)
    }

    /// The sum of a metric for one class.
    pub fn for_class(&self, name: &str, class: crate::FailureClass) -> f64 {
        lock(&self.sums)
            .get(&(name.to_string(), Some(class)))
            .copied()
            .unwrap_or(0.0)
    }
}

impl Metrics for MemoryMetrics {
    fn record(&self, _at: DateTime<Utc>, events: &[MetricEvent]) {
        *lock(&self.writes) += 1;
        let mut sums = lock(&self.sums);
        for event in events {
            *sums
                .entry((event.name.to_string(), event.class))
                .or_default() += event.value;
        }
    }
}
