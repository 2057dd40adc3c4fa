//! Named queues with SQS semantics in the SQLite file: visibility timeouts, receive counts, a fresh
//! receipt handle per delivery, delays, native redrive to a dead-letter queue after
//! `max_receive_count` deliveries, and FIFO groups and deduplication.

use crate::error::LocalError;
use crate::store::{LocalStore, from_millis, to_millis};
use crate::stored_attributes::{self, StoredAttributes};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dlq_healer_core::message::{Attributes, MAX_ATTRIBUTES, OutgoingMessage, ReceivedMessage};
use dlq_healer_core::ports::{EntryResults, MessageSource, PortError, QueueSender};
use rusqlite::{OptionalExtension, Transaction, params};
use std::time::{Duration, Instant};

/// The most messages one receive returns; larger requests are clamped, as SQS does.
pub const MAX_RECEIVE_BATCH: usize = dlq_healer_core::ports::RECEIVE_MAX;
/// The most messages one [`MessageSource::receive_batch`] hands the healer in one transaction.
pub const MAX_HEALER_BATCH: usize = 10_000;
/// The longest per-message delay, in seconds.
pub const MAX_DELAY_SECONDS: u32 = 900;
/// The longest visibility timeout, in seconds (12 hours).
pub const MAX_VISIBILITY_TIMEOUT_SECONDS: u32 = 43_200;
/// The largest message (body plus attribute names, types and values), in bytes: 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;
/// The default visibility timeout, in seconds.
pub const DEFAULT_VISIBILITY_TIMEOUT_SECONDS: u32 = 30;
/// How long a FIFO deduplication id is remembered, in milliseconds (5 minutes).
const DEDUPLICATION_WINDOW_MS: i64 = 5 * 60 * 1000;
/// How often a long-polling receive looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The prefix of a queue URL naming a local queue: `local://orders-dlq`.
pub const URL_PREFIX: &str = "local://";

/// Where a queue's messages go after too many deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedrivePolicy {
    /// The dead-letter queue's name. It must exist and have the same FIFO-ness.
    pub dead_letter_queue: String,
    /// Deliveries after which the next receive moves the message to the DLQ instead (1..=1000).
    pub max_receive_count: u32,
}

/// A queue's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Seconds a received message stays invisible (0..=43200; default 30).
    pub visibility_timeout_seconds: u32,
    /// Native redrive to a dead-letter queue, if any.
    pub redrive: Option<RedrivePolicy>,
    /// FIFO: groups delivered in order one batch at a time, deduplication ids honoured, no
    /// per-message delays.
    pub fifo: bool,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            visibility_timeout_seconds: DEFAULT_VISIBILITY_TIMEOUT_SECONDS,
            redrive: None,
            fifo: false,
        }
    }
}

impl QueueSettings {
    /// These settings with a redrive policy.
    pub fn with_redrive(mut self, dead_letter_queue: &str, max_receive_count: u32) -> Self {
        self.redrive = Some(RedrivePolicy {
            dead_letter_queue: dead_letter_queue.to_string(),
            max_receive_count,
        });
        self
    }

    /// These settings with another visibility timeout.
    pub fn with_visibility_timeout(mut self, seconds: u32) -> Self {
        self.visibility_timeout_seconds = seconds;
        self
    }

    /// These settings for a FIFO queue.
    pub fn fifo(mut self) -> Self {
        self.fifo = true;
        self
    }
}

/// A queue and its settings, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// Its settings.
    pub settings: QueueSettings,
}

impl QueueInfo {
    /// Whether its redrive policy names `dlq`.
    pub fn dead_letters_into(&self, dlq: &str) -> bool {
        self.settings
            .redrive
            .as_ref()
            .is_some_and(|r| r.dead_letter_queue == dlq)
    }
}

/// How many messages a queue holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not yet deleted, still invisible.
    pub in_flight: u64,
    /// Sent with a delay that has not passed yet.
    pub delayed: u64,
}

impl QueueDepth {
    /// Every message in the queue.
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// The name in a queue reference: `orders` or `local://orders`.
pub fn queue_name(reference: &str) -> &str {
    reference.strip_prefix(URL_PREFIX).unwrap_or(reference)
}

/// A fresh receipt handle for a delivery of the message in row `seq`: the row number, so that
/// the handle finds its row by primary key, and a random part, so that each delivery's differs.
fn receipt_handle(seq: i64) -> String {
    format!("{seq}-{}", uuid::Uuid::new_v4().simple())
}

/// The row a receipt handle of [`receipt_handle`]'s shape points to. The whole handle is still
/// compared with the row's, so a forged or stale one finds nothing.
fn seq_of_handle(handle: &str) -> Option<i64> {
    handle.split_once('-')?.0.parse().ok()
}

fn not_issued_here(operation: &str, queue: &str, handle: &str) -> PortError {
    PortError::permanent(
        operation,
        queue,
        format!("receipt handle {handle:?} was not issued by this queue"),
    )
}

fn valid_name(name: &str) -> bool {
    (1..=80).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The queues of a [`LocalStore`]: create, list, measure, purge, and send to them
/// ([`QueueSender`]). Get a [`MessageSource`] for one with [`LocalQueues::queue`].
#[derive(Debug, Clone)]
pub struct LocalQueues {
    store: LocalStore,
}

fn load_queue(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<Option<QueueSettings>> {
    tx.prepare_cached(
        "SELECT visibility_timeout_seconds, dead_letter_queue, max_receive_count, fifo
         FROM queues WHERE name = ?1",
    )?
    .query_row([name], |row| {
        let dlq: Option<String> = row.get(1)?;
        let max: Option<u32> = row.get(2)?;
        Ok(QueueSettings {
            visibility_timeout_seconds: row.get(0)?,
            redrive: dlq
                .zip(max)
                .map(|(dead_letter_queue, max_receive_count)| RedrivePolicy {
                    dead_letter_queue,
                    max_receive_count,
                }),
            fifo: row.get(3)?,
        })
    })
    .optional()
}

impl LocalQueues {
    /// The queues of `store`.
    pub fn new(store: LocalStore) -> Self {
        LocalQueues { store }
    }

    /// Create a queue, or update its settings if it exists (like SQS `CreateQueue` followed by
    /// `SetQueueAttributes`). A redrive target must already exist. A queue's type, standard or
    /// FIFO, cannot change (nor can SQS's `FifoQueue`): the messages in it were sent for the
    /// other.
    pub fn create_queue(&self, name: &str, settings: QueueSettings) -> Result<(), LocalError> {
        let name = queue_name(name);
        if !valid_name(name) {
            return Err(LocalError::Invalid(format!(
                "queue name {name:?} is not valid: use 1 to 80 letters, digits, '-', '_' or '.'"
            )));
        }
        if settings.visibility_timeout_seconds > MAX_VISIBILITY_TIMEOUT_SECONDS {
            return Err(LocalError::Invalid(format!(
                "visibility timeout {} s of queue {name:?} is over the maximum of {MAX_VISIBILITY_TIMEOUT_SECONDS} s",
                settings.visibility_timeout_seconds
            )));
        }
        if let Some(redrive) = &settings.redrive {
            if !(1..=1000).contains(&redrive.max_receive_count) {
                return Err(LocalError::Invalid(format!(
                    "max receive count {} of queue {name:?} must be between 1 and 1000",
                    redrive.max_receive_count
                )));
            }
            if queue_name(&redrive.dead_letter_queue) == name {
                return Err(LocalError::Invalid(format!(
                    "queue {name:?} cannot be its own dead-letter queue"
                )));
            }
        }
        let now = self.store.now();
        self.store.write("create queue", name, |tx| {
            let existing = load_queue(tx, name)?;
            // As on SQS, a FIFO queue's name ends in `.fifo` and only a FIFO queue's does (queues
            // made before this rule keep their names).
            if existing.is_none() && name.ends_with(".fifo") != settings.fifo {
                return Ok(Err(LocalError::Invalid(if settings.fifo {
                    format!("a FIFO queue's name ends in .fifo, as on SQS: call it {name}.fifo")
                } else {
                    format!(
                        "a queue named {name:?} is a FIFO queue, as on SQS: make it FIFO (--fifo), or drop .fifo from its name"
                    )
                })));
            }
            if let Some(existing) = existing
                && existing.fifo != settings.fifo
            {
                let kind = |fifo: bool| if fifo { "FIFO" } else { "standard" };
                return Ok(Err(LocalError::Invalid(format!(
                    "queue {name:?} is a {} queue and cannot become a {} one: create a queue of another name",
                    kind(existing.fifo),
                    kind(settings.fifo)
                ))));
            }
            if let Some(redrive) = &settings.redrive {
                let dlq_name = queue_name(&redrive.dead_letter_queue);
                match load_queue(tx, dlq_name)? {
                    None => return Ok(Err(LocalError::NoSuchQueue(dlq_name.to_string()))),
                    Some(dlq) if dlq.fifo != settings.fifo => {
                        return Ok(Err(LocalError::Invalid(format!(
                            "queue {name:?} and its dead-letter queue {dlq_name:?} must both be FIFO or both standard"
                        ))));
                    }
                    Some(_) => {}
                }
            }
            let dlq = settings
                .redrive
                .as_ref()
                .map(|r| queue_name(&r.dead_letter_queue));
            tx.prepare_cached("INSERT INTO queues (name, visibility_timeout_seconds, dead_letter_queue,
                                     max_receive_count, fifo, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(name) DO UPDATE SET
                     visibility_timeout_seconds = excluded.visibility_timeout_seconds,
                     dead_letter_queue = excluded.dead_letter_queue,
                     max_receive_count = excluded.max_receive_count,
                     fifo = excluded.fifo")?.execute(
                params![
                    name,
                    settings.visibility_timeout_seconds,
                    dlq,
                    settings.redrive.as_ref().map(|r| r.max_receive_count),
                    settings.fifo,
                    crate::store::to_text(now),
                ],
            )?;
            Ok(Ok(()))
        })?
    }

    /// The settings of queue `name`, or `None` when there is no such queue.
    pub fn queue_settings(&self, name: &str) -> Result<Option<QueueSettings>, LocalError> {
        let name = queue_name(name);
        self.store
            .read("read the settings of", name, |tx| load_queue(tx, name))
    }

    /// A [`MessageSource`] on an existing queue.
    pub fn queue(&self, name: &str) -> Result<LocalQueue, LocalError> {
        let name = queue_name(name);
        let row = self
            .store
            .read("open queue", name, |tx| load_queue(tx, name))?
            .ok_or_else(|| LocalError::NoSuchQueue(name.to_string()))?;
        Ok(LocalQueue {
            store: self.store.clone(),
            name: name.to_string(),
            fifo: row.fifo,
        })
    }

    /// The queues whose redrive policy names `dlq` (its sources), by name.
    pub fn dead_letter_sources(&self, dlq: &str) -> Result<Vec<String>, LocalError> {
        let dlq = queue_name(dlq);
        Ok(self
            .list_queues()?
            .into_iter()
            .filter(|q| q.dead_letters_into(dlq))
            .map(|q| q.name)
            .collect())
    }

    /// Every queue with its settings, by name.
    pub fn list_queues(&self) -> Result<Vec<QueueInfo>, LocalError> {
        self.store.read("list", "queues", |tx| {
            let mut statement = tx.prepare_cached(
                "SELECT name, visibility_timeout_seconds, dead_letter_queue, max_receive_count, fifo
                 FROM queues ORDER BY name",
            )?;
            let rows = statement.query_map([], |row| {
                let dlq: Option<String> = row.get(2)?;
                let max: Option<u32> = row.get(3)?;
                Ok(QueueInfo {
                    name: row.get(0)?,
                    settings: QueueSettings {
                        visibility_timeout_seconds: row.get(1)?,
                        redrive: dlq.zip(max).map(|(dead_letter_queue, max_receive_count)| {
                            RedrivePolicy {
                                dead_letter_queue,
                                max_receive_count,
                            }
                        }),
                        fifo: row.get(4)?,
                    },
                })
            })?;
            rows.collect()
        })
    }

    /// How many messages a queue holds, by state, now.
    pub fn depth(&self, name: &str) -> Result<QueueDepth, LocalError> {
        let name = queue_name(name);
        let now = to_millis(self.store.now());
        self.store
            .read("count messages of", name, |tx| {
                if load_queue(tx, name)?.is_none() {
                    return Ok(None);
                }
                tx.query_row(
                    "SELECT
                        COALESCE(SUM(visible_at_ms <= ?2), 0),
                        COALESCE(SUM(visible_at_ms > ?2 AND receipt_handle IS NOT NULL), 0),
                        COALESCE(SUM(visible_at_ms > ?2 AND receipt_handle IS NULL), 0)
                     FROM messages WHERE queue = ?1",
                    params![name, now],
                    |row| {
                        Ok(Some(QueueDepth {
                            visible: row.get(0)?,
                            in_flight: row.get(1)?,
                            delayed: row.get(2)?,
                        }))
                    },
                )
            })?
            .ok_or_else(|| LocalError::NoSuchQueue(name.to_string()))
    }

    /// Every queue with its depth.
    pub fn depths(&self) -> Result<Vec<(QueueInfo, QueueDepth)>, LocalError> {
        self.list_queues()?
            .into_iter()
            .map(|info| {
                let depth = self.depth(&info.name)?;
                Ok((info, depth))
            })
            .collect()
    }

    /// Delete every message of a queue, in flight or not; returns how many.
    pub fn purge(&self, name: &str) -> Result<u64, LocalError> {
        let name = queue_name(name);
        self.store
            .write("purge", name, |tx| {
                if load_queue(tx, name)?.is_none() {
                    return Ok(None);
                }
                tx.execute("DELETE FROM fifo_dedup WHERE queue = ?1", [name])?;
                tx.execute(
                    "DELETE FROM message_payloads
                     WHERE seq IN (SELECT seq FROM messages WHERE queue = ?1)",
                    [name],
                )?;
                Ok(Some(
                    tx.execute("DELETE FROM messages WHERE queue = ?1", [name])? as u64,
                ))
            })?
            .ok_or_else(|| LocalError::NoSuchQueue(name.to_string()))
    }

    fn check_entry(name: &str, fifo: bool, message: &OutgoingMessage) -> Result<(), PortError> {
        let refuse = |why: String| Err(PortError::permanent("send", name, why));
        if message.body.is_empty() {
            return refuse(format!("entry {}: the body is empty", message.entry_id));
        }
        if message.delay_seconds > MAX_DELAY_SECONDS {
            return refuse(format!(
                "entry {}: delay of {} s is over the maximum of {MAX_DELAY_SECONDS} s",
                message.entry_id, message.delay_seconds
            ));
        }
        if message.attributes.len() > MAX_ATTRIBUTES {
            return refuse(format!(
                "entry {}: {} attributes, at most {MAX_ATTRIBUTES} are allowed",
                message.entry_id,
                message.attributes.len()
            ));
        }
        let size = message.body.len() + attributes_size(&message.attributes);
        if size > MAX_MESSAGE_BYTES {
            return refuse(format!(
                "entry {}: the message is {size} bytes, over the maximum of {MAX_MESSAGE_BYTES}",
                message.entry_id
            ));
        }
        if fifo {
            if message.group_id.is_none() {
                return refuse(format!(
                    "entry {}: a FIFO queue needs a message group id",
                    message.entry_id
                ));
            }
            if message.delay_seconds > 0 {
                return refuse(format!(
                    "entry {}: FIFO queues do not take per-message delays",
                    message.entry_id
                ));
            }
        }
        Ok(())
    }
}

/// The size SQS counts for attributes: names, types and values.
fn attributes_size(attributes: &Attributes) -> usize {
    attributes
        .iter()
        .map(|(name, a)| {
            name.len()
                + a.data_type.len()
                + a.string_value.as_ref().map_or(0, String::len)
                + a.binary_value.as_ref().map_or(0, Vec::len)
        })
        .sum()
}

#[async_trait]
impl QueueSender for LocalQueues {
    async fn send(
        &self,
        queue: &str,
        messages: &[OutgoingMessage],
    ) -> Result<EntryResults<String>, PortError> {
        let name = queue_name(queue);
        let now = to_millis(self.store.now());
        let encoded: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| stored_attributes::encode(&m.attributes))
            .collect();
        let outcome = self.store.write("send to", name, |tx| {
            let Some(row) = load_queue(tx, name)? else {
                return Ok(None);
            };
            if row.fifo {
                tx.prepare_cached("DELETE FROM fifo_dedup WHERE queue = ?1 AND sent_at_ms <= ?2")?.execute(
                    params![name, now - DEDUPLICATION_WINDOW_MS],
                )?;
            }
            let mut results = Vec::with_capacity(messages.len());
            for (message, attributes) in messages.iter().zip(&encoded) {
                if let Err(e) = LocalQueues::check_entry(name, row.fifo, message) {
                    results.push(Err(e));
                    continue;
                }
                let dedup = message.deduplication_id.as_deref().filter(|_| row.fifo);
                if let Some(dedup) = dedup {
                    let earlier: Option<String> = tx
                        .query_row(
                            "SELECT message_id FROM fifo_dedup
                             WHERE queue = ?1 AND deduplication_id = ?2",
                            params![name, dedup],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(earlier) = earlier {
                        results.push(Ok(earlier));
                        continue;
                    }
                }
                // Time-ordered ids (UUIDv7): they become ledger and archive keys, and B-tree
                // inserts of ordered keys touch the index's last page instead of a random one.
                let message_id = uuid::Uuid::now_v7().to_string();
                tx.prepare_cached("INSERT INTO messages (queue, message_id, group_id,
                         deduplication_id, sent_at_ms, visible_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?.execute(
                    params![
                        name,
                        message_id,
                        message.group_id,
                        dedup,
                        now,
                        now + i64::from(message.delay_seconds) * 1000,
                    ],
                )?;
                tx.prepare_cached(
                    "INSERT INTO message_payloads (seq, body, attributes) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![tx.last_insert_rowid(), message.body, attributes])?;
                if let Some(dedup) = dedup {
                    tx.prepare_cached("INSERT OR REPLACE INTO fifo_dedup (queue, deduplication_id, message_id, sent_at_ms)
                         VALUES (?1, ?2, ?3, ?4)")?.execute(
                        params![name, dedup, message_id, now],
                    )?;
                }
                results.push(Ok(message_id));
            }
            Ok(Some(results))
        });
        match outcome {
            Ok(Some(results)) => Ok(results),
            Ok(None) => Err(PortError::permanent(
                "send",
                name,
                LocalError::NoSuchQueue(name.to_string()).to_string(),
            )),
            Err(error) => Err(error.into_port("send", name)),
        }
    }
}

/// Messages a peek reads in one transaction.
pub const PEEK_PAGE: usize = 500;

/// Where a peek at a queue is (see [`LocalQueue::peek_page`]).
#[derive(Debug, Clone, Copy)]
pub struct PeekCursor {
    /// The messages visible by then are read.
    visible_by_ms: i64,
    /// The visibility time and row of the last message read.
    after: (i64, i64),
}

/// One queue to receive from: the [`MessageSource`] of the local backend.
#[derive(Debug, Clone)]
pub struct LocalQueue {
    store: LocalStore,
    name: String,
    fifo: bool,
}

struct Candidate {
    seq: i64,
    receive_count: u32,
    group_id: Option<String>,
}

/// A statement that reads the rows [`delivery_of_row`] takes, from `messages AS m` and their
/// `message_payloads AS p`, with the rest of the statement (`WHERE ...`) after it: a literal,
/// so that the receive does not format its statement anew each time.
macro_rules! select_deliveries {
    ($rest:literal) => {
        select_deliveries!("", $rest)
    };
    ($more_columns:literal, $rest:literal) => {
        concat!(
            "SELECT m.message_id, m.receipt_handle, p.body, p.attributes, m.receive_count,
                    m.redrive_source, m.sent_at_ms, m.group_id",
            $more_columns,
            " FROM messages AS m LEFT JOIN message_payloads AS p ON p.seq = m.seq ",
            $rest
        )
    };
}

/// A row read by a statement of [`select_deliveries`].
fn delivery_of_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let body: Option<Vec<u8>> = r.get(2)?;
    Ok(Delivery {
        message: ReceivedMessage {
            message_id: r.get(0)?,
            receipt_handle: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            body: Vec::new(),
            attributes: Attributes::new(),
            receive_count: r.get(4)?,
            redrive_source: r.get(5)?,
            sent_at: None,
            group_id: r.get(7)?,
        },
        payload: match body {
            Some(body) => Some((body, StoredAttributes::column(r, 3)?)),
            None => None,
        },
        sent_at_ms: r.get(6)?,
    })
}

/// A message delivered by a receive, with the columns read after the transaction.
struct Delivery {
    message: ReceivedMessage,
    /// The body and attributes; `None` when the payload row is missing (a damaged file).
    payload: Option<(Vec<u8>, StoredAttributes)>,
    sent_at_ms: i64,
}

impl LocalQueue {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One receive attempt, without waiting: redrive what has been delivered too often, then
    /// deliver up to `max` of the oldest visible messages.
    fn receive_now(&self, max: usize) -> Result<Vec<ReceivedMessage>, LocalError> {
        let now_time = self.store.now();
        let now = to_millis(now_time);
        let name = self.name.as_str();
        let outcome = self.store.write("receive from", name, |tx| {
            let Some(row) = load_queue(tx, name)? else {
                return Ok(None);
            };
            let invisible_until = now + i64::from(row.visibility_timeout_seconds) * 1000;
            let mut delivered = Vec::new();
            // Groups with a message in flight are blocked (FIFO); groups already served in
            // this batch keep their order.
            let mut blocked_groups: Vec<String> = Vec::new();
            if row.fifo {
                let mut statement = tx.prepare_cached(
                    "SELECT DISTINCT group_id FROM messages
                     WHERE queue = ?1 AND visible_at_ms > ?2 AND receipt_handle IS NOT NULL
                       AND group_id IS NOT NULL",
                )?;
                blocked_groups = statement
                    .query_map(params![name, now], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
            }
            // Candidates already delivered or skipped in this receive, so that a later page does
            // not offer them again.
            let mut seen: std::collections::HashSet<i64> = std::collections::HashSet::new();
            'pages: loop {
                let mut statement = tx.prepare_cached(if row.fifo {
                    "SELECT seq, receive_count, group_id FROM messages
                     WHERE queue = ?1 AND visible_at_ms <= ?2
                     ORDER BY seq LIMIT ?3"
                } else {
                    "SELECT seq, receive_count, group_id FROM messages
                     WHERE queue = ?1 AND visible_at_ms <= ?2
                     ORDER BY visible_at_ms, seq LIMIT ?3"
                })?;
                let page: Vec<Candidate> = statement
                    .query_map(
                        params![name, now, (max + seen.len() + MAX_RECEIVE_BATCH) as i64],
                        |r| {
                            Ok(Candidate {
                                seq: r.get(0)?,
                                receive_count: r.get(1)?,
                                group_id: r.get(2)?,
                            })
                        },
                    )?
                    .collect::<rusqlite::Result<_>>()?;
                let fresh: Vec<Candidate> = page
                    .into_iter()
                    .filter(|c| !seen.contains(&c.seq))
                    .collect();
                if fresh.is_empty() {
                    break;
                }
                for candidate in fresh {
                    if delivered.len() >= max {
                        break 'pages;
                    }
                    let redrive_to = row
                        .redrive
                        .as_ref()
                        .filter(|r| candidate.receive_count >= r.max_receive_count);
                    if let Some(redrive) = redrive_to {
                        tx.prepare_cached(
                            "UPDATE messages SET queue = ?2, receive_count = 0,
                                 receipt_handle = NULL, visible_at_ms = ?3,
                                 redrive_source = ?4
                             WHERE seq = ?1",
                        )?
                        .execute(params![
                            candidate.seq,
                            redrive.dead_letter_queue,
                            now,
                            name
                        ])?;
                        continue;
                    }
                    let group_blocked = row.fifo
                        && candidate
                            .group_id
                            .as_ref()
                            .is_some_and(|g| blocked_groups.contains(g));
                    if group_blocked {
                        seen.insert(candidate.seq);
                        continue;
                    }
                    tx.prepare_cached(
                        "UPDATE messages SET receive_count = receive_count + 1,
                             receipt_handle = ?2, visible_at_ms = ?3
                         WHERE seq = ?1",
                    )?
                    .execute(params![
                        candidate.seq,
                        receipt_handle(candidate.seq),
                        invisible_until
                    ])?;
                    delivered.push(candidate.seq);
                    seen.insert(candidate.seq);
                }
                if row.fifo {
                    // Later messages of a group wait for the ones delivered now.
                    let mut statement =
                        tx.prepare_cached("SELECT group_id FROM messages WHERE seq = ?1")?;
                    for seq in &delivered {
                        let group: Option<String> = statement.query_row([seq], |r| r.get(0))?;
                        match group {
                            Some(group) if !blocked_groups.contains(&group) => {
                                blocked_groups.push(group)
                            }
                            _ => {}
                        }
                    }
                }
            }
            // Read after the updates (`UPDATE ... RETURNING` costs more: SQLite collects the
            // returned rows in a temporary table).
            let mut statement = tx.prepare_cached(select_deliveries!("WHERE m.seq = ?1"))?;
            let out = delivered
                .iter()
                .map(|&seq| statement.query_row([seq], delivery_of_row));
            Ok(Some(out.collect::<rusqlite::Result<Vec<_>>>()?))
        })?;
        let Some(rows) = outcome else {
            return Err(LocalError::NoSuchQueue(self.name.clone()));
        };
        rows.into_iter()
            .map(|delivery| self.message_of(delivery))
            .collect()
    }

    /// Up to `max` of the messages a receive would deliver now, oldest-visible first, read
    /// without receiving them (see [`LocalQueue::peek_page`]), all in memory at once: for
    /// tests and small queues; a DLQ of any size is read page by page.
    pub fn peek(&self, max: usize) -> Result<Vec<ReceivedMessage>, LocalError> {
        let mut cursor = self.peek_cursor();
        let mut messages = Vec::new();
        while messages.len() < max {
            let page = self.peek_page(&mut cursor, (max - messages.len()).min(PEEK_PAGE))?;
            if page.is_empty() {
                break;
            }
            messages.extend(page);
        }
        Ok(messages)
    }

    /// Where a peek at this queue starts: before the first of the messages visible now.
    pub fn peek_cursor(&self) -> PeekCursor {
        PeekCursor {
            visible_by_ms: to_millis(self.store.now()),
            after: (i64::MIN, i64::MIN),
        }
    }

    /// The next up to `max` messages after `cursor`, oldest-visible first, read without
    /// receiving them: their receive counts, visibility and order stay as they are (a
    /// receive-and-release peek raises the counts, which on a queue with a DLQ of its own moves
    /// messages there). Each comes with the receive count a receive would give it, and no
    /// receipt handle. Empty at the end.
    ///
    /// Page after page, a cursor reads each message that was visible when it was made at most
    /// once: one that a healer receives meanwhile becomes visible again only later, if at all,
    /// and one sent meanwhile is visible only later too. Each page is a read transaction of its
    /// own, so that a long scan neither holds the store nor keeps its log from being
    /// checkpointed.
    pub fn peek_page(
        &self,
        cursor: &mut PeekCursor,
        max: usize,
    ) -> Result<Vec<ReceivedMessage>, LocalError> {
        let name = self.name.as_str();
        let (after_visible, after_seq) = cursor.after;
        let rows = self.store.read("peek at", name, |tx| {
            let mut statement = tx.prepare_cached(select_deliveries!(
                ", m.visible_at_ms, m.seq",
                "WHERE m.queue = ?1 AND m.visible_at_ms <= ?2
                   AND (m.visible_at_ms, m.seq) > (?3, ?4)
                 ORDER BY m.visible_at_ms, m.seq LIMIT ?5"
            ))?;
            let limit = i64::try_from(max).unwrap_or(i64::MAX);
            statement
                .query_map(
                    params![name, cursor.visible_by_ms, after_visible, after_seq, limit],
                    |row| Ok((delivery_of_row(row)?, (row.get(8)?, row.get(9)?))),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        if let Some(&(_, last)) = rows.last() {
            cursor.after = last;
        }
        rows.into_iter()
            .map(|(delivery, _)| {
                let mut message = self.message_of(delivery)?;
                message.receipt_handle = String::new();
                message.receive_count += 1;
                Ok(message)
            })
            .collect()
    }

    /// The message of a row [`delivery_of_row`] read; a clear error if it is damaged.
    fn message_of(&self, delivery: Delivery) -> Result<ReceivedMessage, LocalError> {
        let Delivery {
            mut message,
            payload,
            sent_at_ms: sent_at,
        } = delivery;
        let Some((body, attributes)) = payload else {
            return Err(self.store.corrupt(
                format!("message {}", message.message_id),
                "its body and attributes are missing from message_payloads",
            ));
        };
        message.body = body;
        message.attributes = attributes.decode().map_err(|e| {
            self.store.corrupt(
                format!("the attributes of message {}", message.message_id),
                e,
            )
        })?;
        message.sent_at = Some(from_millis(sent_at).map_err(|e| {
            self.store.corrupt(
                format!("the send time of message {}", message.message_id),
                e,
            )
        })?);
        Ok(message)
    }

    /// Receive up to `max` messages, polling the file until one is there or `wait` is over.
    async fn receive_polling(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, PortError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        loop {
            let messages = self
                .receive_now(max)
                .map_err(|e| e.into_port("receive", &self.name))?;
            let waited = started.elapsed();
            if !messages.is_empty() || waited >= wait {
                return Ok(messages);
            }
            tokio::time::sleep(POLL_INTERVAL.min(wait - waited)).await;
        }
    }

    fn time_after(now: DateTime<Utc>, seconds: u32) -> i64 {
        to_millis(now) + i64::from(seconds) * 1000
    }
}

#[async_trait]
impl MessageSource for LocalQueue {
    fn queue_id(&self) -> &str {
        &self.name
    }

    fn is_fifo(&self) -> bool {
        self.fifo
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, PortError> {
        self.receive_polling(max.min(MAX_RECEIVE_BATCH), wait).await
    }

    async fn visibility_timeout(&self) -> Result<Option<Duration>, PortError> {
        let name = self.name.as_str();
        let row = self
            .store
            .read("read the settings of", name, |tx| load_queue(tx, name))
            .map_err(|e| e.into_port("read the visibility timeout of", name))?;
        Ok(row.map(|row| Duration::from_secs(u64::from(row.visibility_timeout_seconds))))
    }

    /// A whole batch in one transaction: every message gets the same visibility timeout, receive
    /// count, receipt handle and redrive as from [`MessageSource::receive`], with one commit
    /// instead of one per ten messages. So there is no gathering for `_stop` to end.
    async fn receive_batch(
        &self,
        batch_size: usize,
        wait: Duration,
        _stop: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Vec<ReceivedMessage>, PortError> {
        self.receive_polling(batch_size.min(MAX_HEALER_BATCH), wait)
            .await
    }

    async fn delete(&self, receipt_handles: &[String]) -> Result<EntryResults<()>, PortError> {
        let name = self.name.as_str();
        self.store
            .write("delete from", name, |tx| {
                let mut statement = tx.prepare_cached(
                    "DELETE FROM messages WHERE seq = ?1 AND queue = ?2 AND receipt_handle = ?3",
                )?;
                let mut payload =
                    tx.prepare_cached("DELETE FROM message_payloads WHERE seq = ?1")?;
                receipt_handles
                    .iter()
                    .map(|handle| {
                        let Some(seq) = seq_of_handle(handle) else {
                            return Ok(Err(not_issued_here("delete", name, handle)));
                        };
                        Ok(match statement.execute(params![seq, name, handle])? {
                            0 => Err(PortError::permanent(
                                "delete",
                                name,
                                format!(
                                    "receipt handle {handle:?} is stale: the message was deleted or received again since"
                                ),
                            )),
                            _ => {
                                payload.execute([seq])?;
                                Ok(())
                            }
                        })
                    })
                    .collect()
            })
            .map_err(|e| e.into_port("delete", name))
    }

    async fn change_visibility(
        &self,
        entries: &[(String, u32)],
    ) -> Result<EntryResults<()>, PortError> {
        let name = self.name.as_str();
        let now_time = self.store.now();
        let now = to_millis(now_time);
        self.store
            .write("change visibility in", name, |tx| {
                let mut find = tx.prepare_cached(
                    "SELECT seq, visible_at_ms, sent_at_ms FROM messages
                     WHERE seq = ?1 AND queue = ?2 AND receipt_handle = ?3",
                )?;
                let mut update =
                    tx.prepare_cached("UPDATE messages SET visible_at_ms = ?2 WHERE seq = ?1")?;
                let mut results = Vec::with_capacity(entries.len());
                for (handle, seconds) in entries {
                    let refuse = |why: String| {
                        Err(PortError::permanent("change visibility", name, why))
                    };
                    if *seconds > MAX_VISIBILITY_TIMEOUT_SECONDS {
                        results.push(refuse(format!(
                            "visibility timeout of {seconds} s is over the maximum of {MAX_VISIBILITY_TIMEOUT_SECONDS} s"
                        )));
                        continue;
                    }
                    let Some(seq) = seq_of_handle(handle) else {
                        results.push(Err(not_issued_here("change visibility", name, handle)));
                        continue;
                    };
                    let found: Option<(i64, i64, i64)> = find
                        .query_row(params![seq, name, handle], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .optional()?;
                    results.push(match found {
                        None => refuse(format!(
                            "receipt handle {handle:?} is stale: the message was deleted or received again since"
                        )),
                        Some((_, visible_at, _)) if visible_at <= now => refuse(format!(
                            "the message of receipt handle {handle:?} is not in flight: its visibility timeout has passed"
                        )),
                        // Released at once (a peek gives back what it looked at): visible again
                        // in its place by send time, not behind every message it was ahead of,
                        // so that a dry run with --limit previews what the move will take.
                        Some((seq, _, sent_at)) if *seconds == 0 => {
                            update.execute(params![seq, sent_at.min(now)])?;
                            Ok(())
                        }
                        Some((seq, _, _)) => {
                            update.execute(params![seq, LocalQueue::time_after(now_time, *seconds)])?;
                            Ok(())
                        }
                    });
                }
                Ok(results)
            })
            .map_err(|e| e.into_port("change visibility", name))
    }
}
