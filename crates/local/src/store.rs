//! The SQLite file: opening it (WAL, busy timeout), the schema and its migrations, the injected
//! clock, and the time encodings every table shares.

use crate::error::LocalError;
use crate::periodic::{FirstRound, Periodic, StopRequest};
use chrono::{DateTime, SecondsFormat, Utc};
use dlq_healer_core::ports::{Clock, SystemClock};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a statement waits for another process's lock before giving up with
/// [`LocalError::Busy`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The newest schema version this build writes.
pub const SCHEMA_VERSION: i64 = 6;

/// Schema version 1: queues, messages, ledger, archive index, alert windows and log, metrics.
const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    visibility_timeout_seconds INTEGER NOT NULL,
    dead_letter_queue TEXT,
    max_receive_count INTEGER,
    fifo INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    attributes TEXT NOT NULL,
    group_id TEXT,
    deduplication_id TEXT,
    sent_at_ms INTEGER NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt_handle TEXT,
    redrive_source TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages(queue, visible_at_ms);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_receipt ON messages(receipt_handle);
CREATE TABLE IF NOT EXISTS fifo_dedup (
    queue TEXT NOT NULL,
    deduplication_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    PRIMARY KEY (queue, deduplication_id)
);
CREATE TABLE IF NOT EXISTS ledger (
    key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    class TEXT NOT NULL,
    rule TEXT NOT NULL,
    action TEXT NOT NULL,
    alerted INTEGER NOT NULL, -- 0: no alert, 1: alerted, 2: held back for the window's digest
    at TEXT NOT NULL,
    source TEXT,
    archive_ref TEXT,
    error TEXT NOT NULL,
    dlq_message_id TEXT NOT NULL,
    body_digest TEXT NOT NULL,
    due_at TEXT,
    PRIMARY KEY (key, attempt)
);
CREATE INDEX IF NOT EXISTS ledger_by_digest ON ledger(body_digest, at);
CREATE INDEX IF NOT EXISTS ledger_by_class ON ledger(class, at);
CREATE INDEX IF NOT EXISTS ledger_by_time ON ledger(at);
CREATE TABLE IF NOT EXISTS archive_index (
    object TEXT NOT NULL,
    line INTEGER NOT NULL,
    key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    class TEXT NOT NULL,
    archived_at TEXT NOT NULL,
    source TEXT,
    PRIMARY KEY (object, line)
);
CREATE INDEX IF NOT EXISTS archive_by_key ON archive_index(key);
CREATE INDEX IF NOT EXISTS archive_by_class ON archive_index(class, archived_at);
CREATE TABLE IF NOT EXISTS alert_windows (
    fingerprint TEXT PRIMARY KEY,
    template TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    class TEXT NOT NULL,
    source TEXT,
    count INTEGER NOT NULL,
    digest INTEGER NOT NULL,
    error TEXT NOT NULL,
    sample_keys TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts(at);
CREATE TABLE IF NOT EXISTS metrics (
    minute INTEGER NOT NULL,
    name TEXT NOT NULL,
    class TEXT NOT NULL,
    sum REAL NOT NULL,
    samples INTEGER NOT NULL,
    PRIMARY KEY (minute, name, class)
);
"#;

/// Schema version 2: only re-queued and parked records are found by body digest (a message
/// dead-lettered again without its context can only be one still being retried), so the digest
/// index holds those alone. Its inserts land on random pages, and archived records, most of the
/// ledger, no longer pay for them.
const SCHEMA_V2: &str = r#"
DROP INDEX IF EXISTS ledger_by_digest;
CREATE INDEX IF NOT EXISTS ledger_retried_by_digest ON ledger(body_digest, at)
    WHERE action IN ('requeued', 'parked');
"#;

/// Schema version 3: fewer index writes per healed message.
/// - Receipt handles start with the message's row number (`<seq>-<uuid>`), so a delete or
///   visibility change finds its row by primary key and compares the handle; the unique index on
///   handles, which every receive, send and delete paid for, is gone.
/// - The ledger's and the archive index's class indexes are gone: no query used them (a query
///   by class with an optional time range reads the newest first, through the time index).
/// - The archive index gets the time index its queries lacked (they sorted the whole table).
/// - Messages' attributes are written as a BLOB of length-prefixed fields (see
///   [`crate::stored_attributes`]); rows of earlier versions keep their JSON text, still read.
const SCHEMA_V3: &str = r#"
DROP INDEX IF EXISTS messages_by_receipt;
DROP INDEX IF EXISTS ledger_by_class;
DROP INDEX IF EXISTS archive_by_class;
CREATE INDEX IF NOT EXISTS archive_by_time ON archive_index(archived_at);
"#;

/// Schema version 4: a message's body and attributes, written once and read once, move to a table
/// of their own, `message_payloads`, with the same row number. A receive rewrites a message's
/// delivery state (visible-at, receive count, handle): before, that copied the whole row of about
/// 1.5 KB and logged its pages; now it rewrites rows of under 150 bytes, dozens to a page. The
/// payload is written by the send and deleted with the message.
const SCHEMA_V4: &str = r#"
CREATE TABLE IF NOT EXISTS message_payloads (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    attributes BLOB NOT NULL
);
INSERT INTO message_payloads (seq, body, attributes) SELECT seq, body, attributes FROM messages;
ALTER TABLE messages DROP COLUMN body;
ALTER TABLE messages DROP COLUMN attributes;
"#;

/// Schema version 5: the index that finds re-queued and parked records by body digest holds the
/// digest's first 12 hex digits (48 bits) alone, about 18 bytes an entry instead of about 70 with
/// the whole digest and the time. Its inserts land on random pages, one or two per re-queued
/// message: with entries a quarter the size, the ledger's commit of a batch of 100 in `bench`
/// writes about 60 log pages instead of 83. A lookup compares the whole digest on the few rows
/// the prefix finds and sorts them.
const SCHEMA_V5: &str = r#"
DROP INDEX IF EXISTS ledger_retried_by_digest;
CREATE INDEX IF NOT EXISTS ledger_retried_by_digest_prefix ON ledger(substr(body_digest, 1, 12))
    WHERE action IN ('requeued', 'parked');
"#;

/// Schema version 6: the parked records by due time, for the operator's list of the messages
/// waiting for their retry (`inspect`). Without it that list read every decision of the last 12
/// hours through the time index. Only parked records are in it.
const SCHEMA_V6: &str = r#"
CREATE INDEX IF NOT EXISTS ledger_parked_by_due ON ledger(due_at) WHERE action = 'parked';
"#;

/// Tables every dlq-healer database has had since schema version 1.
const OWN_TABLES: [&str; 3] = ["queues", "messages", "ledger"];

/// Refuse a database that has tables but is not a dlq-healer one (schema version 0, or without
/// the store's tables), before anything is written to it: not its journal mode, and not the
/// store's tables.
fn refuse_foreign(connection: &Connection, path: &Path) -> Result<(), LocalError> {
    let read = |e| LocalError::sql("read the schema of", "the database", path, e);
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(read)?;
    if tables.is_empty() {
        return Ok(());
    }
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(read)?;
    let ours = version >= 1 && OWN_TABLES.iter().all(|own| tables.iter().any(|t| t == own));
    if ours {
        return Ok(());
    }
    let mut named: Vec<String> = tables.iter().take(3).map(|t| format!("{t:?}")).collect();
    if tables.len() > 3 {
        named.push(format!("{} more", tables.len() - 3));
    }
    Err(LocalError::ForeignDatabase {
        path: path.to_path_buf(),
        tables: named.join(", "),
    })
}

struct Inner {
    path: PathBuf,
    connection: Mutex<Connection>,
    clock: Arc<dyn Clock>,
    pending_archive: Mutex<PendingArchive>,
    checkpointer: Option<Periodic>,
}

/// The page size of new database files, in bytes (SQLite's default is 4096). A healed message
/// changes small rows and index entries on pages all over the file (the DLQ's rows, the source
/// queue's visibility index at jittered times, the ledger's digest index at random digests), and
/// each changed page is written whole to the log and again by the checkpoint: with 2 KiB pages
/// `bench` healed about 10% more messages per second at batch 100, and at batch 500 with one
/// loop (with two, as many as before), at the peak memory of 4 KiB pages with a 4 MiB cache. 1 KiB
/// pages were no faster at batch 500 and took the peak to about 50 MB.
pub const PAGE_SIZE: i64 = 2048;

/// How often the checkpointer copies the write-ahead log into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);
/// Pages in the write-ahead log after which a commit checkpoints by itself, should the
/// checkpointer thread fall behind (SQLite's default is 1000).
const FALLBACK_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// A thread with its own connection that checkpoints the write-ahead log every
/// [`CHECKPOINT_INTERVAL`] (passive: it never blocks writers), so that copying pages into the
/// database file and its syncs are not on the path of the writes. The syncs are the same as
/// SQLite's own checkpoints with `synchronous = NORMAL`: the log before, the database after.
fn start_checkpointer(path: &Path) -> Option<Periodic> {
    let connection = Connection::open(path).ok()?;
    connection.busy_timeout(BUSY_TIMEOUT).ok()?;
    connection
        .execute_batch("PRAGMA synchronous = NORMAL;")
        .ok()?;
    let checkpoint = move |_: &StopRequest| {
        let done = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(error) = done {
            tracing::debug!(%error, "checkpoint skipped");
        }
    };
    Periodic::start(
        "dlq-healer-checkpoint",
        CHECKPOINT_INTERVAL,
        FirstRound::AfterInterval,
        checkpoint,
    )
    .ok()
}

/// One line of the archive index, as [`crate::archive`] writes it.
#[derive(Debug, Clone)]
pub(crate) struct IndexRow {
    pub(crate) key: String,
    pub(crate) attempt: u32,
    pub(crate) class: &'static str,
    pub(crate) line: usize,
    pub(crate) archived_at: String,
    pub(crate) source: Option<String>,
}

/// An archive object whose file and directory entry are durable, but whose lines are not yet
/// indexed.
#[derive(Debug)]
pub(crate) struct PendingObject {
    pub(crate) object: String,
    pub(crate) rows: Vec<IndexRow>,
}

/// Archive objects waiting for [`LocalStore::write`] to index their lines, in the next write
/// transaction (the alerter's or the ledger's, in the engine), before anything else it does.
/// The objects are durable before they get here, so a ledger record never commits before the
/// files it points to are durable, and an index line never points to a file that could be lost.
#[derive(Debug, Default)]
struct PendingArchive {
    objects: Vec<PendingObject>,
}

fn index_objects(tx: &Transaction<'_>, objects: &[PendingObject]) -> rusqlite::Result<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let mut delete = tx.prepare_cached("DELETE FROM archive_index WHERE object = ?1")?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO archive_index (key, attempt, class, object, line, archived_at, source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for object in objects {
        delete.execute([&object.object])?;
        for row in &object.rows {
            insert.execute(rusqlite::params![
                row.key,
                row.attempt,
                row.class,
                object.object,
                row.line,
                row.archived_at,
                row.source,
            ])?;
        }
    }
    Ok(())
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.checkpointer.take());
        let objects = std::mem::take(
            &mut self
                .pending_archive
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .objects,
        );
        if objects.is_empty() {
            return;
        }
        let connection = self.connection.get_mut().unwrap_or_else(|e| e.into_inner());
        let indexed = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                index_objects(&tx, &objects)?;
                tx.commit()
            });
        if let Err(error) = indexed {
            tracing::warn!(%error, objects = objects.len(),
                "archived files written but not indexed; they are still on disk");
        }
    }
}

/// One connection to the dlq-healer SQLite file, shared by the queues, ledger, archive index,
/// alerter and metrics built from it. Cheap to clone. Open the same file from several processes
/// (or several times in one) to share it: WAL mode and a busy timeout make that safe.
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl LocalStore {
    /// Open (creating if needed) the database at `path`, on the system clock.
    pub fn open(path: impl AsRef<Path>) -> Result<LocalStore, LocalError> {
        LocalStore::open_with_clock(path, Arc::new(SystemClock))
    }

    /// Open (creating if needed) the database at `path`; message and record times come from
    /// `clock`, so tests can run on simulated time.
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        clock: Arc<dyn Clock>,
    ) -> Result<LocalStore, LocalError> {
        let path = path.as_ref().to_path_buf();
        let missing_parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !p.is_dir());
        if let Some(parent) = missing_parent {
            return Err(LocalError::Open {
                path: path.clone(),
                reason: format!("the directory {} does not exist", parent.display()),
            });
        }
        // The log's appends gathered into one write a commit (see `gathered_wal`).
        let opened = match crate::gathered_wal::vfs_name() {
            Some(vfs) => {
                Connection::open_with_flags_and_vfs(&path, rusqlite::OpenFlags::default(), vfs)
            }
            None => Connection::open(&path),
        };
        let connection = opened.map_err(|e| LocalError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let setup = |e| LocalError::sql("set up", "the database", &path, e);
        connection.busy_timeout(BUSY_TIMEOUT).map_err(setup)?;
        refuse_foreign(&connection, &path)?;
        // Only a new, empty file takes the page size; an existing one keeps its own.
        connection
            .pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(setup)?;
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(setup)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(LocalError::Open {
                path: path.clone(),
                reason: format!("the file system refused WAL mode (got {mode})"),
            });
        }
        // A page cache of 2 MiB (SQLite's default). With 4 KiB pages, 4 MiB had been no faster
        // than 2 (8 MiB took the healer's peak memory at batch 500 with `--concurrency 2` from
        // 40-44 to 45-53 MiB); with 2 KiB pages, 4 MiB was no faster than 2 and peaked 3-5 MiB
        // higher.
        connection
            .execute_batch(
                "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -2048;",
            )
            .map_err(setup)?;
        connection.set_prepared_statement_cache_capacity(64);
        let store = LocalStore {
            inner: Arc::new(Inner {
                path,
                connection: Mutex::new(connection),
                clock,
                pending_archive: Mutex::new(PendingArchive::default()),
                checkpointer: None,
            }),
        };
        store.migrate()?;
        // Checkpoint on a thread of our own; commits checkpoint by themselves only if it falls
        // far behind (or could not start).
        let mut store = store;
        if let Some(inner) = Arc::get_mut(&mut store.inner) {
            inner.checkpointer = start_checkpointer(&inner.path);
            if inner.checkpointer.is_some() {
                let connection = inner
                    .connection
                    .get_mut()
                    .unwrap_or_else(|e| e.into_inner());
                connection
                    .pragma_update(None, "wal_autocheckpoint", FALLBACK_AUTOCHECKPOINT_PAGES)
                    .map_err(|e| LocalError::sql("set up", "the database", &inner.path, e))?;
            }
        }
        Ok(store)
    }

    fn migrate(&self) -> Result<(), LocalError> {
        let path = self.inner.path.clone();
        // Read first: a store of this version needs no write, so a command opening it does not
        // wait for a writer of another process (in WAL, readers do not).
        let current = self.read("read the schema version of", "the store", |tx| {
            tx.query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
        })? == SCHEMA_VERSION;
        if current {
            return Ok(());
        }
        self.write("check the schema version of", "the store", |tx| {
            let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
            if found > SCHEMA_VERSION {
                return Ok(Err(LocalError::NewerSchema {
                    path: path.clone(),
                    found,
                    known: SCHEMA_VERSION,
                }));
            }
            if found < 1 {
                tx.execute_batch(SCHEMA_V1)?;
            }
            if found < 2 {
                tx.execute_batch(SCHEMA_V2)?;
            }
            if found < 3 {
                tx.execute_batch(SCHEMA_V3)?;
            }
            if found < 4 {
                tx.execute_batch(SCHEMA_V4)?;
            }
            if found < 5 {
                tx.execute_batch(SCHEMA_V5)?;
            }
            if found < 6 {
                tx.execute_batch(SCHEMA_V6)?;
            }
            if found < SCHEMA_VERSION {
                tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
            }
            Ok(Ok(()))
        })?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The clock this store reads.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    /// What time it is on the store's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Change how long statements wait for another process's lock (default [`BUSY_TIMEOUT`]).
    pub fn set_busy_timeout(&self, timeout: Duration) -> Result<(), LocalError> {
        self.connection()
            .busy_timeout(timeout)
            .map_err(|e| LocalError::sql("set busy timeout of", "the database", self.path(), e))
    }

    /// The schema version of the file.
    pub fn schema_version(&self) -> Result<i64, LocalError> {
        self.read("read", "the schema version", |tx| {
            tx.query_row("PRAGMA user_version", [], |row| row.get(0))
        })
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls back).
        self.inner
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pending_archive(&self) -> std::sync::MutexGuard<'_, PendingArchive> {
        self.inner
            .pending_archive
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hand an archive object, durable in its place, to the next write transaction, which
    /// indexes it before doing anything else.
    pub(crate) fn defer_archive(&self, object: PendingObject) {
        self.pending_archive().objects.push(object);
    }

    /// Index the archive objects stored since the last write now.
    pub(crate) fn settle_archive(&self) -> Result<(), LocalError> {
        if self.pending_archive().objects.is_empty() {
            return Ok(());
        }
        self.write("index", "the archive", |_| Ok(()))
    }

    /// Run `work` in a write transaction (taken at once, so two processes never deadlock on
    /// upgrading a read lock), committing if it succeeds. Archive objects stored since the last
    /// write are indexed first, in this transaction.
    pub(crate) fn write<T>(
        &self,
        operation: &str,
        target: &str,
        work: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, LocalError> {
        let mut connection = self.connection();
        let pending = std::mem::take(&mut self.pending_archive().objects);
        let outcome = (|| {
            let fail = |e| LocalError::sql(operation, target, &self.inner.path, e);
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(fail)?;
            index_objects(&tx, &pending)
                .map_err(|e| LocalError::sql("index", "the archive", &self.inner.path, e))?;
            let value = work(&tx).map_err(fail)?;
            tx.commit().map_err(fail)?;
            Ok(value)
        })();
        if outcome.is_err() && !pending.is_empty() {
            // Not indexed after all: the next write tries again, before anything stored since.
            let mut queue = self.pending_archive();
            let later = std::mem::replace(&mut queue.objects, pending);
            queue.objects.extend(later);
        }
        outcome
    }

    /// Run `work` in a read transaction (one consistent snapshot).
    pub(crate) fn read<T>(
        &self,
        operation: &str,
        target: &str,
        work: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, LocalError> {
        let mut connection = self.connection();
        let fail = |e| LocalError::sql(operation, target, &self.inner.path, e);
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(fail)?;
        let value = work(&tx).map_err(fail)?;
        tx.finish().map_err(fail)?;
        Ok(value)
    }

    /// The steps of SQLite's plan for `sql` with `params` (`EXPLAIN QUERY PLAN`), in a fresh
    /// store.
    #[cfg(test)]
    pub(crate) fn query_plan(sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("healer.db")).unwrap();
        store
            .read("explain", "a query", |tx| {
                tx.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?
                    .query_map(params, |row| row.get(3))?
                    .collect()
            })
            .unwrap()
    }

    /// Assert that SQLite runs `sql`, a query by class (`?1`), time range (`?2`, `?3`) and limit
    /// (`?4`), through `index`, in the index's order rather than sorting what it finds.
    #[cfg(test)]
    pub(crate) fn assert_query_reads_in_order(sql: &str, index: &str) {
        let plan = LocalStore::query_plan(
            sql,
            rusqlite::params!["auth", None::<String>, None::<String>, 10],
        );
        let uses = format!("USING INDEX {index}");
        assert!(plan.iter().any(|step| step.contains(&uses)), "{plan:?}");
        let sorts = |step: &String| step.contains("TEMP B-TREE FOR ORDER BY");
        assert!(!plan.iter().any(sorts), "{plan:?}");
    }

    /// A [`LocalError::Corrupt`] about this database.
    pub(crate) fn corrupt(&self, what: impl Into<String>, reason: impl ToString) -> LocalError {
        LocalError::Corrupt {
            what: what.into(),
            path: self.inner.path.clone(),
            reason: reason.to_string(),
        }
    }
}

/// Milliseconds since the epoch, as the queue tables store times.
pub(crate) fn to_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// A time from milliseconds since the epoch.
pub(crate) fn from_millis(millis: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis).ok_or_else(|| conversion(format!("time {millis} ms")))
}

/// RFC 3339 with nanoseconds and `Z`: fixed width, so text order is time order.
pub(crate) fn to_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A time written by [`to_text`].
pub(crate) fn from_text(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| conversion(format!("time {text:?}: {e}")))
}

/// A conversion failure of a stored value, as a rusqlite error.
pub(crate) fn conversion(what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        Box::<dyn std::error::Error + Send + Sync>::from(format!("cannot read stored {what}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn text_times_sort_like_times() {
        let a = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let b = a + chrono::Duration::nanoseconds(1);
        let c = a + chrono::Duration::days(400);
        assert!(to_text(a) < to_text(b));
        assert!(to_text(b) < to_text(c));
        assert_eq!(from_text(&to_text(b)).unwrap(), b);
        assert_eq!(from_millis(to_millis(c)).unwrap(), c);
        assert!(from_text("yesterday").is_err());
    }

    #[test]
    fn a_write_to_a_file_that_can_only_be_read_is_an_error_retrying_cannot_cure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        drop(LocalStore::open(&path).unwrap());
        let read_only =
            Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let refused = read_only
            .execute("DELETE FROM ledger", [])
            .map_err(|e| LocalError::sql("write", "the ledger", &path, e))
            .unwrap_err();
        assert!(matches!(refused, LocalError::ReadOnly { .. }), "{refused}");
        assert!(!refused.is_retryable());
        assert!(
            refused.to_string().contains("can only be read"),
            "{refused}"
        );
    }
}
