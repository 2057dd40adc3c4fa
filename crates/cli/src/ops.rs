//! What the operator commands (`inspect`, `redrive`, `archive`, `stats`, `serve`) need from a
//! backend, behind one trait, [`Operator`], implemented for the local backend and for AWS; and the
//! move [`Journal`] that makes redrives and replays resumable and idempotent.

use crate::aws::AwsArgs;
use crate::local::{LocalBackend, LocalSettings};
use crate::panels::{DepthRow, MetricTotals};
use crate::run::Backend;
use anyhow::{Context, Result, anyhow, bail};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use chrono::{DateTime, Utc};
use dlq_healer_aws::ledger_schema::{PARTITION_KEY, SORT_KEY};
use dlq_healer_aws::{AwsClients, DynamoLedger, S3Archive, SqsQueue, SqsSender};
use dlq_healer_core::FailureClass;
use dlq_healer_core::metrics as m;
use dlq_healer_core::policy::MAX_PARK_SECONDS;
use dlq_healer_core::ports::{Archive, MessageSource, PortError, QueueSender, SystemClock};
use dlq_healer_core::records::{ArchiveRecord, ArchiveRef, LedgerRecord, RecordedAction};
use dlq_healer_local::archive::Pruned;
use dlq_healer_local::queue::{LocalQueue, PeekCursor};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One archived message as the index lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArchivedEntry {
    /// Stable message key.
    pub key: String,
    /// Handling number that archived it.
    pub attempt: u32,
    /// Failure class.
    pub class: FailureClass,
    /// Source queue, if known.
    pub source: Option<String>,
    /// When it was archived.
    pub archived_at: DateTime<Utc>,
    /// `object#line`.
    pub reference: String,
}

/// `record`, read at `entry`'s reference, if it is the record the index says is there: a file
/// or object changed since it was indexed (lines reordered, another batch's written over it)
/// would otherwise show, and replay, another message under this key.
fn the_indexed_record(entry: &ArchivedEntry, record: ArchiveRecord) -> Result<ArchiveRecord> {
    if record.key != entry.key || record.attempt != entry.attempt {
        bail!(
            "the archived record at {} holds the key {} (attempt {}), not {} (attempt {}) as the \
             index says: the archive file or object was changed after it was written; restore \
             it, or leave the key out with a narrower filter",
            entry.reference,
            record.key,
            record.attempt,
            entry.key,
            entry.attempt
        );
    }
    Ok(record)
}

/// Which archived messages to list.
#[derive(Debug, Clone, Default)]
pub struct ArchiveQuery {
    /// Only these classes (all when empty).
    pub classes: Vec<FailureClass>,
    /// Archived at or after.
    pub since: Option<DateTime<Utc>>,
    /// Archived before.
    pub until: Option<DateTime<Utc>>,
    /// Only these keys (all when absent).
    pub keys: Option<Vec<String>>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// A finished move, written down so that a rerun does not move the same message again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// What was moved: `redrive:<dlq>:<message id>` or `replay:<key>#<attempt>`.
    pub id: String,
    /// Where it went.
    pub target: String,
    /// Its id in the target queue.
    pub new_message_id: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The journal of moves.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Which of these ids have been moved already.
    async fn done(&self, ids: &[String]) -> Result<HashSet<String>, PortError>;
    /// Write down finished moves.
    async fn record(&self, entries: &[JournalEntry]) -> Result<(), PortError>;
}

/// A DLQ's messages read without receiving them: those visible when reading started, each at
/// most once, in the order a receive would deliver them. Their receive counts, visibility and
/// order stay as they are.
#[async_trait]
pub trait Peeker: Send + Sync {
    /// The next up to `max` messages; empty at the end.
    async fn next_page(&mut self, max: usize) -> Result<Vec<dlq_healer_core::ReceivedMessage>>;
}

/// What the operator commands need from a backend.
#[async_trait]
pub trait Operator: Send + Sync {
    /// How long one receive waits while scanning a DLQ.
    fn scan_wait(&self) -> Duration;
    /// How many messages a scan that receives them may hold in flight at once, where the
    /// backend limits it: SQS refuses receives (`OverLimit`) once about 120,000 messages of a
    /// standard queue are in flight.
    fn in_flight_quota(&self) -> Option<usize> {
        None
    }
    /// Whether the ledger the decisions and class counts come from is configured; the error
    /// says how to configure it.
    fn check_ledger(&self) -> Result<()> {
        Ok(())
    }
    /// The DLQ to read, checked to exist; the error names it and says what to do.
    async fn dlq(&self, dlq: &str) -> Result<Arc<dyn MessageSource>>;
    /// The messages of `dlq`, read page by page without receiving them, where the backend can;
    /// `None` where reading must receive and release (SQS).
    async fn peeker(&self, _dlq: &str) -> Result<Option<Box<dyn Peeker>>> {
        Ok(None)
    }
    /// How many messages of `dlq` are in flight: received by a healer and not yet deleted, or
    /// parked until due. Reading a DLQ does not show them.
    async fn in_flight(&self, dlq: &str) -> Result<u64>;
    /// The queue whose redrive policy points at `dlq`, if exactly one does: where a message of
    /// `dlq` that does not say where it came from goes back to. When several do, none is guessed.
    async fn redrive_source(&self, dlq: &str) -> Result<Option<String>>;
    /// Sending to queues.
    fn sender(&self) -> Arc<dyn QueueSender>;
    /// The move journal.
    fn journal(&self) -> Result<Arc<dyn Journal>>;
    /// Archived messages, newest first.
    async fn archived(&self, query: &ArchiveQuery) -> Result<Vec<ArchivedEntry>>;
    /// How many archived messages the index holds for the query's classes and times (its keys
    /// and limit aside), where the backend can count them; `None` otherwise (aws).
    async fn archived_count(&self, _query: &ArchiveQuery) -> Result<Option<u64>> {
        Ok(None)
    }
    /// One archived record.
    async fn fetch_archived(&self, entry: &ArchivedEntry) -> Result<ArchiveRecord>;
    /// Remove what was archived before `before`, of `classes` (all when empty); with `dry_run`,
    /// count it only.
    async fn prune_archive(
        &self,
        _before: DateTime<Utc>,
        _classes: &[FailureClass],
        _dry_run: bool,
    ) -> Result<Pruned> {
        bail!(
            "on aws, archived objects expire by the bucket's lifecycle rule (the template's \
             ArchiveExpirationDays); archive prune is for the local backend"
        )
    }
    /// The most recent decisions, newest first.
    async fn recent_decisions(&self, limit: usize) -> Result<Vec<LedgerRecord>>;
    /// The messages parked in the DLQ until their retry is due, soonest first: the ledger's
    /// records still parked whose due time is after `now`. (On aws, whose ledger is read by
    /// class and decision time, only the decisions of the last [`MAX_PARK_SECONDS`] are read: a
    /// record is parked at most that long.)
    async fn parked(&self, now: DateTime<Utc>) -> Result<Vec<LedgerRecord>>;
    /// The three panels' figures: metric totals since `since` (all time on local) and depths of
    /// the queues (all local queues; on aws the DLQ and its redrive source).
    async fn stats(
        &self,
        dlq: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<(MetricTotals, Vec<DepthRow>)>;
}

/// Messages a scan of an SQS queue holds in flight at most: below the quota of about 120,000 in
/// flight, leaving room for the healers' own receives.
pub const SQS_SCAN_IN_FLIGHT: usize = 100_000;

/// The earliest decision that may still be parked at `now`.
fn longest_park_before(now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono::Duration::seconds(i64::from(MAX_PARK_SECONDS))
}

/// The backend flags shared by the operator commands.
#[derive(Debug, Clone, clap::Args)]
pub struct OpsArgs {
    /// The backend.
    #[arg(long, value_enum, env = "DLQ_HEALER_BACKEND", default_value = "local")]
    pub backend: Backend,
    #[command(flatten)]
    pub local: crate::LocalArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// Open the backend the flags name.
pub async fn open(args: &OpsArgs) -> Result<Arc<dyn Operator>> {
    Ok(match args.backend {
        Backend::Local => Arc::new(LocalOperator::open(&args.local.settings(None, 600))?),
        Backend::Aws => Arc::new(AwsOperator::connect(&args.aws).await?),
    })
}

// ---------------------------------------------------------------------------------------------
// Local

/// A local DLQ read page by page (see [`LocalQueue::peek_page`]).
pub struct LocalPeeker {
    queue: LocalQueue,
    cursor: PeekCursor,
}

impl LocalPeeker {
    /// Read `queue` from the messages visible now.
    pub fn new(queue: LocalQueue) -> LocalPeeker {
        let cursor = queue.peek_cursor();
        LocalPeeker { queue, cursor }
    }
}

#[async_trait]
impl Peeker for LocalPeeker {
    async fn next_page(&mut self, max: usize) -> Result<Vec<dlq_healer_core::ReceivedMessage>> {
        Ok(self.queue.peek_page(&mut self.cursor, max)?)
    }
}

/// The operator view of the local backend.
pub struct LocalOperator {
    backend: LocalBackend,
    db: std::path::PathBuf,
    journal: Mutex<Option<Arc<LocalJournal>>>,
}

impl LocalOperator {
    /// Open the store (the file must exist: operators inspect what a healer wrote).
    pub fn open(settings: &LocalSettings) -> Result<Self> {
        if !settings.db.exists() {
            bail!(
                "the local store {} does not exist; give the healer's --db (or DLQ_HEALER_DB)",
                settings.db.display()
            );
        }
        // SQLite would take an empty file for an empty store and write its tables into it.
        if std::fs::metadata(&settings.db).is_ok_and(|m| m.is_file() && m.len() == 0) {
            bail!(
                "the local store {} is empty: no healer or `queue` command has written to it; \
                 give the healer's --db (or DLQ_HEALER_DB)",
                settings.db.display()
            );
        }
        Ok(LocalOperator {
            backend: LocalBackend::open(settings, Arc::new(SystemClock))?,
            db: settings.db.clone(),
            journal: Mutex::new(None),
        })
    }
}

#[async_trait]
impl Operator for LocalOperator {
    fn scan_wait(&self) -> Duration {
        Duration::ZERO
    }

    async fn dlq(&self, dlq: &str) -> Result<Arc<dyn MessageSource>> {
        let queue = self.backend.queues.queue(dlq).map_err(|e| {
            anyhow!(
                "{e} in {}; list queues with `dlq-healer queue list --db {}`",
                self.db.display(),
                self.db.display()
            )
        })?;
        Ok(Arc::new(queue))
    }

    async fn peeker(&self, dlq: &str) -> Result<Option<Box<dyn Peeker>>> {
        let queue = self.backend.queues.queue(dlq)?;
        Ok(Some(Box::new(LocalPeeker::new(queue))))
    }

    async fn in_flight(&self, dlq: &str) -> Result<u64> {
        let name = dlq_healer_local::queue::queue_name(dlq);
        Ok(self.backend.queues.depth(name)?.in_flight)
    }

    async fn redrive_source(&self, dlq: &str) -> Result<Option<String>> {
        Ok(the_only(self.backend.queues.dead_letter_sources(dlq)?))
    }

    fn sender(&self) -> Arc<dyn QueueSender> {
        self.backend.queues.clone()
    }

    fn journal(&self) -> Result<Arc<dyn Journal>> {
        let mut slot = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(journal) = slot.as_ref() {
            return Ok(journal.clone());
        }
        let journal = Arc::new(LocalJournal::open(&self.db)?);
        *slot = Some(journal.clone());
        Ok(journal)
    }

    async fn prune_archive(
        &self,
        before: DateTime<Utc>,
        classes: &[FailureClass],
        dry_run: bool,
    ) -> Result<Pruned> {
        let archive = &self.backend.archive;
        if classes.is_empty() {
            return Ok(archive.prune(before, None, dry_run)?);
        }
        let mut total = Pruned::default();
        for class in classes {
            let pruned = archive.prune(before, Some(*class), dry_run)?;
            total.records += pruned.records;
            total.objects += pruned.objects;
            total.bytes += pruned.bytes;
        }
        Ok(total)
    }

    async fn archived_count(&self, query: &ArchiveQuery) -> Result<Option<u64>> {
        let archive = &self.backend.archive;
        if query.classes.is_empty() {
            return Ok(Some(archive.count(None, query.since, query.until)?));
        }
        let mut count = 0;
        for class in &query.classes {
            count += archive.count(Some(*class), query.since, query.until)?;
        }
        Ok(Some(count))
    }

    async fn archived(&self, query: &ArchiveQuery) -> Result<Vec<ArchivedEntry>> {
        let archive = &self.backend.archive;
        let mut entries = Vec::new();
        if let Some(keys) = &query.keys {
            for key in keys {
                entries.extend(archive.find_by_key(key)?);
            }
        } else if query.classes.is_empty() {
            entries = archive.query(None, query.since, query.until, query.limit)?;
        } else {
            for class in &query.classes {
                entries.extend(archive.query(
                    Some(*class),
                    query.since,
                    query.until,
                    query.limit,
                )?);
            }
        }
        let mut entries: Vec<ArchivedEntry> = entries
            .into_iter()
            .filter(|e| query.classes.is_empty() || query.classes.contains(&e.class))
            .filter(|e| query.since.is_none_or(|s| e.archived_at >= s))
            .filter(|e| query.until.is_none_or(|u| e.archived_at < u))
            .map(|e| ArchivedEntry {
                key: e.key,
                attempt: e.attempt,
                class: e.class,
                source: e.source,
                archived_at: e.archived_at,
                reference: e.reference.to_string(),
            })
            .collect();
        sort_and_limit(&mut entries, query.limit);
        Ok(entries)
    }

    async fn fetch_archived(&self, entry: &ArchivedEntry) -> Result<ArchiveRecord> {
        let reference: ArchiveRef = entry.reference.parse().map_err(|e: String| anyhow!(e))?;
        let record = self.backend.archive.fetch(&reference).await.map_err(|e| {
            anyhow!(
                "cannot read the archived record of {} ({e}); check --archive-dir (now {}) or restore the file, \
                 or leave the key out with a narrower filter",
                entry.key,
                self.backend.archive.root().display()
            )
        })?;
        the_indexed_record(entry, record)
    }

    async fn recent_decisions(&self, limit: usize) -> Result<Vec<LedgerRecord>> {
        Ok(self.backend.ledger.query(&dlq_healer_local::LedgerQuery {
            limit: Some(limit),
            ..Default::default()
        })?)
    }

    async fn parked(&self, now: DateTime<Utc>) -> Result<Vec<LedgerRecord>> {
        Ok(self.backend.ledger.parked(now)?)
    }

    async fn stats(
        &self,
        _dlq: Option<&str>,
        _since: DateTime<Utc>,
    ) -> Result<(MetricTotals, Vec<DepthRow>)> {
        let mut totals = MetricTotals::default();
        for row in self.backend.metrics.totals()? {
            totals.add(&row.name, row.class, row.sum, row.samples);
        }
        let depths = self
            .backend
            .queues
            .depths()?
            .into_iter()
            .map(|(queue, d)| DepthRow {
                queue: queue.name,
                visible: d.visible,
                in_flight: d.in_flight,
                delayed: d.delayed,
            })
            .collect();
        Ok((totals, depths))
    }
}

fn sort_and_limit(entries: &mut Vec<ArchivedEntry>, limit: Option<usize>) {
    entries.sort_by(|a, b| {
        b.archived_at
            .cmp(&a.archived_at)
            .then_with(|| a.key.cmp(&b.key))
            .then(a.attempt.cmp(&b.attempt))
    });
    entries.dedup_by(|a, b| a.key == b.key && a.attempt == b.attempt);
    if let Some(limit) = limit {
        entries.truncate(limit);
    }
}

/// The one item of `items`, if it has exactly one.
fn the_only<T>(mut items: Vec<T>) -> Option<T> {
    match items.len() {
        1 => items.pop(),
        _ => None,
    }
}

/// The move journal of the local backend: a table of its own in the SQLite file, made by the
/// first move recorded.
pub struct LocalJournal {
    connection: Mutex<rusqlite::Connection>,
}

const CREATE_JOURNAL: &str = "CREATE TABLE IF NOT EXISTS operator_journal (
    id TEXT PRIMARY KEY, target TEXT NOT NULL, new_message_id TEXT NOT NULL, at TEXT NOT NULL)";

impl LocalJournal {
    /// Open the journal in the store at `db`. Nothing is written: a dry run or a listing reads
    /// the journal without waiting for another process's write, as creating its table would.
    pub fn open(db: &std::path::Path) -> Result<Self> {
        let connection = rusqlite::Connection::open(db)
            .with_context(|| format!("cannot open the move journal in {}", db.display()))?;
        connection
            .busy_timeout(Duration::from_secs(30))
            .context("setting the journal's busy timeout")?;
        Ok(LocalJournal {
            connection: Mutex::new(connection),
        })
    }
}

/// Whether the journal's table exists yet.
fn journal_exists(connection: &rusqlite::Connection) -> rusqlite::Result<bool> {
    connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'operator_journal')",
        [],
        |row| row.get(0),
    )
}

fn journal_error(operation: &str) -> impl Fn(rusqlite::Error) -> PortError + '_ {
    move |e| PortError::retryable(operation, "the move journal", e.to_string())
}

#[async_trait]
impl Journal for LocalJournal {
    async fn done(&self, ids: &[String]) -> Result<HashSet<String>, PortError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        if !journal_exists(&connection).map_err(journal_error("read"))? {
            return Ok(HashSet::new());
        }
        let mut statement = connection
            .prepare_cached(
                "SELECT j.id FROM json_each(?1) AS w JOIN operator_journal AS j ON j.id = w.value",
            )
            .map_err(journal_error("read"))?;
        let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        statement
            .query_map([list], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(journal_error("read"))
    }

    async fn record(&self, entries: &[JournalEntry]) -> Result<(), PortError> {
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let tx = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(journal_error("write"))?;
        tx.execute_batch(CREATE_JOURNAL)
            .map_err(journal_error("write"))?;
        {
            let mut statement = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO operator_journal (id, target, new_message_id, at)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(journal_error("write"))?;
            for e in entries {
                statement
                    .execute(rusqlite::params![
                        e.id,
                        e.target,
                        e.new_message_id,
                        e.at.to_rfc3339()
                    ])
                    .map_err(journal_error("write"))?;
            }
        }
        tx.commit().map_err(journal_error("write"))
    }
}

/// A journal in memory, for tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct MemoryJournal(Mutex<HashMap<String, JournalEntry>>);

#[cfg(test)]
#[async_trait]
impl Journal for MemoryJournal {
    async fn done(&self, ids: &[String]) -> Result<HashSet<String>, PortError> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(ids
            .iter()
            .filter(|id| map.contains_key(*id))
            .cloned()
            .collect())
    }
    async fn record(&self, entries: &[JournalEntry]) -> Result<(), PortError> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for e in entries {
            map.insert(e.id.clone(), e.clone());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// AWS

/// The operator view of the AWS backend.
pub struct AwsOperator {
    clients: AwsClients,
    args: AwsArgs,
    sender: Arc<SqsSender>,
}

/// The journal's items in the ledger table: `pk = journal#<id>`, `sk = 0`, outside the class index.
const JOURNAL_PREFIX: &str = "journal#";

impl AwsOperator {
    /// Clients on the flags' endpoint and region.
    pub async fn connect(args: &AwsArgs) -> Result<Self> {
        let clients = crate::aws::connect(args, None).await?;
        Ok(AwsOperator {
            sender: Arc::new(SqsSender::new(clients.sqs.clone())),
            clients,
            args: args.clone(),
        })
    }

    fn table(&self) -> Result<String> {
        self.args.failed_table.clone().context(
            "the aws backend needs --failed-table (or FAILED_TABLE) for the ledger; `dlq-healer setup --backend aws --prefix NAME` prints it",
        )
    }

    fn bucket(&self) -> Result<String> {
        self.args.archive_bucket.clone().context(
            "the aws backend needs --archive-bucket (or ARCHIVE_BUCKET) for the archive; `dlq-healer setup --backend aws --prefix NAME` prints it",
        )
    }

    fn ledger(&self) -> Result<DynamoLedger> {
        Ok(DynamoLedger::new(
            self.clients.dynamodb.clone(),
            self.table()?,
        ))
    }

    async fn depth(&self, url: &str) -> Result<DepthRow> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let output = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .with_context(|| format!("cannot read the depth of {url}"))?;
        let attributes = output.attributes.unwrap_or_default();
        let number = |name: A| {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(DepthRow {
            queue: url.rsplit('/').next().unwrap_or(url).to_string(),
            visible: number(A::ApproximateNumberOfMessages),
            in_flight: number(A::ApproximateNumberOfMessagesNotVisible),
            delayed: number(A::ApproximateNumberOfMessagesDelayed),
        })
    }
}

#[async_trait]
impl Operator for AwsOperator {
    fn scan_wait(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn in_flight_quota(&self) -> Option<usize> {
        Some(SQS_SCAN_IN_FLIGHT)
    }

    fn check_ledger(&self) -> Result<()> {
        self.table().map(drop)
    }

    async fn dlq(&self, dlq: &str) -> Result<Arc<dyn MessageSource>> {
        let url = self.sender.resolve(dlq).await.map_err(|e| {
            anyhow!("the queue {dlq:?} cannot be found ({e}); give its queue URL (see `aws sqs list-queues`)")
        })?;
        self.clients
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "the queue {url} cannot be read ({}); check the URL and region (see `aws sqs list-queues`)",
                    dlq_healer_aws::retry::error_chain(&e)
                )
            })?;
        Ok(Arc::new(SqsQueue::new(self.clients.sqs.clone(), url)))
    }

    async fn in_flight(&self, dlq: &str) -> Result<u64> {
        let url = self.sender.resolve(dlq).await?;
        Ok(self.depth(&url).await?.in_flight)
    }

    async fn redrive_source(&self, dlq: &str) -> Result<Option<String>> {
        let url = self.sender.resolve(dlq).await?;
        let output = self
            .clients
            .sqs
            .list_dead_letter_source_queues()
            .queue_url(&url)
            .send()
            .await
            .with_context(|| format!("cannot list the queues that dead-letter into {url}"))?;
        Ok(the_only(output.queue_urls))
    }

    fn sender(&self) -> Arc<dyn QueueSender> {
        self.sender.clone()
    }

    fn journal(&self) -> Result<Arc<dyn Journal>> {
        Ok(Arc::new(DynamoJournal {
            client: self.clients.dynamodb.clone(),
            table: self.table()?,
        }))
    }

    async fn archived(&self, query: &ArchiveQuery) -> Result<Vec<ArchivedEntry>> {
        let ledger = self.ledger()?;
        let mut records = Vec::new();
        if let Some(keys) = &query.keys {
            for key in keys {
                records.extend(ledger.records_by_key(key).await?);
            }
        } else {
            let classes: Vec<FailureClass> = if query.classes.is_empty() {
                FailureClass::ALL.to_vec()
            } else {
                query.classes.clone()
            };
            for class in classes {
                records.extend(ledger.query(class, query.since, query.until, None).await?);
            }
        }
        let mut entries: Vec<ArchivedEntry> = records
            .into_iter()
            .filter(|r| r.action == RecordedAction::Archived)
            .filter(|r| query.classes.is_empty() || query.classes.contains(&r.class))
            .filter(|r| query.since.is_none_or(|s| r.at >= s))
            .filter(|r| query.until.is_none_or(|u| r.at < u))
            .filter_map(|r| {
                Some(ArchivedEntry {
                    reference: r.archive_ref?,
                    key: r.key,
                    attempt: r.attempt,
                    class: r.class,
                    source: r.source,
                    archived_at: r.at,
                })
            })
            .collect();
        sort_and_limit(&mut entries, query.limit);
        Ok(entries)
    }

    async fn fetch_archived(&self, entry: &ArchivedEntry) -> Result<ArchiveRecord> {
        let reference: ArchiveRef = entry.reference.parse().map_err(|e: String| anyhow!(e))?;
        let archive = S3Archive::new(self.clients.s3.clone(), self.bucket()?);
        let record = archive.fetch(&reference).await.map_err(|e| {
            anyhow!(
                "cannot read the archived record of {} ({e}); check --archive-bucket or restore the object, \
                 or leave the key out with a narrower filter",
                entry.key
            )
        })?;
        the_indexed_record(entry, record)
    }

    async fn recent_decisions(&self, limit: usize) -> Result<Vec<LedgerRecord>> {
        let ledger = self.ledger()?;
        let since = Utc::now() - chrono::Duration::days(1);
        let mut records = Vec::new();
        for class in FailureClass::ALL {
            records.extend(ledger.query(class, Some(since), None, Some(limit)).await?);
        }
        records.sort_by_key(|r| std::cmp::Reverse(r.at));
        records.truncate(limit);
        Ok(records)
    }

    async fn parked(&self, now: DateTime<Utc>) -> Result<Vec<LedgerRecord>> {
        let ledger = self.ledger()?;
        let mut records = Vec::new();
        for class in FailureClass::ALL {
            let decided = ledger
                .query(class, Some(longest_park_before(now)), None, None)
                .await?;
            records.extend(decided.into_iter().filter(|r| {
                r.action == RecordedAction::Parked && r.due_at.is_some_and(|due| due > now)
            }));
        }
        records.sort_by(|a, b| (a.due_at, &a.key, a.attempt).cmp(&(b.due_at, &b.key, b.attempt)));
        Ok(records)
    }

    async fn stats(
        &self,
        dlq: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<(MetricTotals, Vec<DepthRow>)> {
        let mut totals = MetricTotals::default();
        let ledger = self.ledger()?;
        for class in FailureClass::ALL {
            for record in ledger.query(class, Some(since), None, None).await? {
                let c = Some(record.class);
                totals.add(m::RECEIVED, c, 1.0, 1);
                let action = match record.action {
                    RecordedAction::Requeued => m::REQUEUED,
                    RecordedAction::Parked => m::PARKED,
                    RecordedAction::Archived => m::ARCHIVED,
                };
                totals.add(action, c, 1.0, 1);
                if record.alerted {
                    totals.add(m::ALERTED, c, 1.0, 1);
                }
                if record.alert_held_back {
                    totals.add(m::ALERTS_SUPPRESSED, c, 1.0, 1);
                }
            }
        }
        let mut depths = Vec::new();
        if let Some(dlq) = dlq {
            let url = self.sender.resolve(dlq).await?;
            if let Some(source) = self.redrive_source(&url).await? {
                depths.push(self.depth(&source).await?);
            }
            depths.push(self.depth(&url).await?);
        }
        Ok((totals, depths))
    }
}

/// The move journal on AWS: items in the ledger table, outside its class index.
pub struct DynamoJournal {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

#[async_trait]
impl Journal for DynamoJournal {
    async fn done(&self, ids: &[String]) -> Result<HashSet<String>, PortError> {
        let mut done = HashSet::new();
        let mut unique: Vec<&String> = ids.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let mut keys = KeysAndAttributes::builder();
            for id in chunk {
                keys = keys.keys(HashMap::from([
                    (
                        PARTITION_KEY.to_string(),
                        AttributeValue::S(format!("{JOURNAL_PREFIX}{id}")),
                    ),
                    (SORT_KEY.to_string(), AttributeValue::N("0".into())),
                ]));
            }
            let keys = keys
                .consistent_read(true)
                .build()
                .map_err(|e| PortError::permanent("read journal", &self.table, e.to_string()))?;
            let mut request = Some(HashMap::from([(self.table.clone(), keys)]));
            while let Some(items) = request.take() {
                let output = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(items))
                    .send()
                    .await
                    .map_err(|e| {
                        dlq_healer_aws::retry::port_error("read journal", &self.table, &e)
                    })?;
                for item in output
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    if let Some(AttributeValue::S(pk)) = item.get(PARTITION_KEY)
                        && let Some(id) = pk.strip_prefix(JOURNAL_PREFIX)
                    {
                        done.insert(id.to_string());
                    }
                }
                request = output.unprocessed_keys.filter(|k| !k.is_empty());
            }
        }
        Ok(done)
    }

    async fn record(&self, entries: &[JournalEntry]) -> Result<(), PortError> {
        for chunk in entries.chunks(25) {
            let mut writes = Vec::new();
            for e in chunk {
                let item = HashMap::from([
                    (
                        PARTITION_KEY.to_string(),
                        AttributeValue::S(format!("{JOURNAL_PREFIX}{}", e.id)),
                    ),
                    (SORT_KEY.to_string(), AttributeValue::N("0".into())),
                    ("target".to_string(), AttributeValue::S(e.target.clone())),
                    (
                        "new_message_id".to_string(),
                        AttributeValue::S(e.new_message_id.clone()),
                    ),
                    ("moved_at".to_string(), AttributeValue::S(e.at.to_rfc3339())),
                ]);
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| {
                        PortError::permanent("write journal", &self.table, e.to_string())
                    })?;
                writes.push(WriteRequest::builder().put_request(put).build());
            }
            let mut pending = Some(HashMap::from([(self.table.clone(), writes)]));
            while let Some(items) = pending.take() {
                let output = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(items))
                    .send()
                    .await
                    .map_err(|e| {
                        dlq_healer_aws::retry::port_error("write journal", &self.table, &e)
                    })?;
                pending = output.unprocessed_items.filter(|k| !k.is_empty());
            }
        }
        Ok(())
    }
}
