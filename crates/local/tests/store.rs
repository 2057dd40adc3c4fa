//! Opening the database: clear errors for bad paths and foreign files; several connections on
//! one file at once.

mod common;

use common::Fixture;
use dlq_healer_core::message::OutgoingMessage;
use dlq_healer_core::ports::{Ledger, MessageSource, QueueSender};
use dlq_healer_local::{LocalError, LocalStore, QueueSettings};
use std::time::Duration;

#[test]
fn a_missing_directory_is_a_clear_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("healer.db");
    let error = LocalStore::open(&path).unwrap_err();
    assert!(matches!(error, LocalError::Open { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("no-such-dir"), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    assert!(!error.is_retryable());
}

#[test]
fn a_file_that_is_not_sqlite_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let error = LocalStore::open(&path).unwrap_err();
    assert!(
        matches!(error, LocalError::NotADatabase { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("notes.txt"), "{error}");
    // The file is left alone.
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("these are my notes")
    );
}

#[test]
fn another_applications_database_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    for (name, schema) in [
        (
            "app.db",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);",
        ),
        // A table of one of the store's names, without the store's schema version.
        ("clash.db", "CREATE TABLE queues (name TEXT, owner TEXT);"),
        // The store's schema version, without its tables.
        (
            "versioned.db",
            "CREATE TABLE users (id INTEGER PRIMARY KEY); PRAGMA user_version = 3;",
        ),
    ] {
        let path = dir.path().join(name);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(schema)
            .unwrap();
        let error = LocalStore::open(&path).unwrap_err();
        assert!(
            matches!(error, LocalError::ForeignDatabase { .. }),
            "{name}: {error:?}"
        );
        assert!(
            error.to_string().contains("not a dlq-healer one"),
            "{name}: {error}"
        );
        let raw = rusqlite::Connection::open(&path).unwrap();
        let tables: i64 = raw
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1, "{name}: no table added");
        let mode: String = raw
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete", "{name}: its journal mode is left alone");
    }
    // An empty file is a new database.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    LocalStore::open(&empty).unwrap();
}

#[test]
fn a_newer_schema_is_refused() {
    let fixture = Fixture::new();
    assert_eq!(
        fixture.store.schema_version().unwrap(),
        dlq_healer_local::store::SCHEMA_VERSION
    );
    let raw = rusqlite::Connection::open(fixture.store.path()).unwrap();
    raw.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(raw);
    let error = LocalStore::open(fixture.store.path()).unwrap_err();
    assert!(
        matches!(error, LocalError::NewerSchema { found: 99, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_version_1_file_is_migrated_and_finds_retried_records_by_digest() {
    use chrono::{TimeZone, Utc};
    use dlq_healer_core::FailureClass;
    use dlq_healer_core::records::{LedgerRecord, RecordedAction};
    let fixture = Fixture::new();
    let at = |minute| Utc.with_ymd_and_hms(2026, 11, 27, 10, minute, 0).unwrap();
    let record = |key: &str, action, digest: &str, minute| LedgerRecord {
        key: key.into(),
        attempt: 1,
        class: FailureClass::Timeout,
        rule: "timeout".into(),
        action,
        alerted: false,
        alert_held_back: false,
        at: at(minute),
        source: Some("orders".into()),
        archive_ref: None,
        error: "timed out".into(),
        dlq_message_id: format!("m-{key}"),
        body_digest: digest.into(),
        due_at: None,
    };
    // Turn the fresh file back into what version 1 wrote: every record in the digest index.
    let reopened = fixture.reopen_after(&format!(
        "{}
         DROP INDEX ledger_retried_by_digest_prefix;
         CREATE INDEX ledger_by_digest ON ledger(body_digest, at);
         PRAGMA user_version = 1;",
        Fixture::PAYLOADS_IN_MESSAGES
    ));
    let ledger = reopened.ledger();
    ledger
        .record(&[
            record("retried", RecordedAction::Requeued, "d-1", 0),
            record("parked", RecordedAction::Parked, "d-2", 1),
            record("archived-later", RecordedAction::Archived, "d-1", 2),
            record("archived", RecordedAction::Archived, "d-3", 3),
        ])
        .await
        .unwrap();
    let found = ledger
        .keys_by_digest(&["d-1".into(), "d-2".into(), "d-3".into()])
        .await
        .unwrap();
    assert_eq!(
        found["d-1"].key, "retried",
        "the newest re-queued record, not the archive"
    );
    assert_eq!(found["d-2"].key, "parked");
    assert!(
        !found.contains_key("d-3"),
        "archived records are not found by digest"
    );
    let raw = rusqlite::Connection::open(reopened.path()).unwrap();
    let indexes: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        indexes.contains(&"ledger_retried_by_digest_prefix".to_string()),
        "{indexes:?}"
    );
    assert!(
        !indexes.contains(&"ledger_by_digest".to_string()),
        "{indexes:?}"
    );
}

#[test]
fn reopening_keeps_the_data() {
    let fixture = Fixture::new();
    fixture
        .store
        .queues()
        .create_queue("orders", QueueSettings::default())
        .unwrap();
    let again = fixture.reopen();
    let names: Vec<String> = again
        .queues()
        .list_queues()
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, vec!["orders".to_string()]);
}

#[tokio::test]
async fn new_files_get_the_small_page_size_and_older_files_keep_theirs() {
    let page_size = |path: &std::path::Path| -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .unwrap()
    };
    let fixture = Fixture::new();
    assert_eq!(
        page_size(fixture.store.path()),
        dlq_healer_local::store::PAGE_SIZE
    );

    // A file an earlier build made, with SQLite's default page size and a large body in it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("older.db");
    let raw = rusqlite::Connection::open(&path).unwrap();
    // The table fixes the page size in the file; dropped, it leaves no table a dlq-healer file
    // would not have.
    raw.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x); DROP TABLE t;",
    )
    .unwrap();
    drop(raw);
    let store = LocalStore::open(&path).unwrap();
    assert_eq!(page_size(&path), 4096);
    let queues = store.queues();
    queues
        .create_queue("orders", QueueSettings::default())
        .unwrap();
    let body = "x".repeat(300_000);
    let sent = queues
        .send("orders", &[OutgoingMessage::new("e", body.clone())])
        .await
        .unwrap();
    assert!(sent[0].is_ok(), "{sent:?}");
    drop(store);
    let store = LocalStore::open(&path).unwrap();
    let got = store
        .queues()
        .queue("orders")
        .unwrap()
        .receive(10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, body.as_bytes());
    assert_eq!(page_size(&path), 4096);
}

#[test]
fn a_database_locked_too_long_is_a_busy_error_not_a_panic() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("orders", QueueSettings::default())
        .unwrap();
    let mut blocker = rusqlite::Connection::open(fixture.store.path()).unwrap();
    let tx = blocker
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    let started = std::time::Instant::now();
    let error = queues.purge("orders").unwrap_err();
    assert!(matches!(error, LocalError::Busy { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "waited for the busy timeout"
    );
    tx.rollback().unwrap();
    assert_eq!(queues.purge("orders").unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connections_share_one_file_at_once() {
    let fixture = Fixture::new();
    let producer = fixture.store.clone();
    let consumer = fixture.reopen();
    producer
        .queues()
        .create_queue("orders", QueueSettings::default())
        .unwrap();

    let sending = tokio::spawn(async move {
        let queues = producer.queues();
        for round in 0..50 {
            let batch: Vec<OutgoingMessage> = (0..4)
                .map(|i| OutgoingMessage::new(format!("e{i}"), format!("{round}-{i}")))
                .collect();
            let results = queues.send("orders", &batch).await.unwrap();
            assert!(results.iter().all(Result::is_ok));
            tokio::task::yield_now().await;
        }
    });
    let receiving = tokio::spawn(async move {
        let source = consumer.queues().queue("orders").unwrap();
        let ledger = consumer.ledger();
        let mut bodies = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while bodies.len() < 200 && std::time::Instant::now() < deadline {
            let got = source.receive(10, Duration::from_millis(50)).await.unwrap();
            let handles: Vec<String> = got.iter().map(|m| m.receipt_handle.clone()).collect();
            bodies.extend(got.into_iter().map(|m| String::from_utf8(m.body).unwrap()));
            let deleted = source.delete(&handles).await.unwrap();
            assert!(deleted.iter().all(Result::is_ok));
            // Touch another table through the same connection meanwhile.
            let request = dlq_healer_core::ports::HistoryRequest {
                key: "k".to_string(),
                up_to_attempt: 1,
            };
            ledger.history(&[request]).await.unwrap();
        }
        bodies
    });
    sending.await.unwrap();
    let mut bodies = receiving.await.unwrap();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 200, "every message received exactly once");
    assert_eq!(fixture.store.queues().depth("orders").unwrap().total(), 0);
}

#[tokio::test]
async fn attributes_are_stored_as_a_blob_and_read_back() {
    use dlq_healer_core::message::Attribute;
    let fixture = Fixture::new();
    let queues = fixture.queue_with_dlq("orders", 30, 5);
    let context = r#"{"v":1,"error":{"type":"ValueError","message":"a \"quoted\" word"}}"#;
    let mut message = OutgoingMessage::new("m-1", "order 1");
    message
        .attributes
        .insert("dlq-context".into(), Attribute::string(context));
    message.attributes.insert(
        "raw".into(),
        Attribute {
            data_type: "Binary".into(),
            string_value: None,
            binary_value: Some(vec![0, 159, 146, 150]),
        },
    );
    queues.send("orders", &[message.clone()]).await.unwrap();
    let raw = rusqlite::Connection::open(fixture.store.path()).unwrap();
    let stored: String = raw
        .query_row(
            "SELECT typeof(attributes) FROM message_payloads",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, "blob");
    let got = queues
        .queue("orders")
        .unwrap()
        .receive(10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got[0].attributes, message.attributes);
}

#[tokio::test]
async fn a_version_2_file_loses_its_unused_indexes_moves_its_payloads_and_expires_old_handles_safely()
 {
    let fixture = Fixture::new();
    orders_holding_one_message(&fixture).await;
    // Turn the fresh file back into what version 2 wrote: bodies and attributes in the message
    // rows, the receipt index, and a message in flight under a handle of version 2's shape (a
    // bare uuid), its attributes JSON text.
    let reopened = fixture.reopen_after(&format!(
        "{}
         CREATE UNIQUE INDEX messages_by_receipt ON messages(receipt_handle);
         CREATE INDEX ledger_by_class ON ledger(class, at);
         CREATE INDEX archive_by_class ON archive_index(class, archived_at);
         DROP INDEX archive_by_time;
         UPDATE messages SET receipt_handle = '0190c3a1f4e27c3a9b1d2e3f4a5b6c7d',
             receive_count = 1, visible_at_ms = visible_at_ms + 30000,
             attributes = '{{\"tenant\":{{\"data_type\":\"String\",\"string_value\":\"a \\\"quoted\\\" name\"}}}}';
         PRAGMA user_version = 2;",
        Fixture::PAYLOADS_IN_MESSAGES
    ));
    assert_eq!(
        message_columns(fixture.store.path()),
        [
            "seq",
            "queue",
            "message_id",
            "group_id",
            "deduplication_id",
            "sent_at_ms",
            "visible_at_ms",
            "receive_count",
            "receipt_handle",
            "redrive_source"
        ],
        "bodies and attributes moved out of the message rows"
    );
    assert_eq!(
        payload_count(fixture.store.path()),
        1,
        "into message_payloads"
    );
    assert_eq!(
        index_names(fixture.store.path()),
        [
            "alerts_by_time",
            "archive_by_key",
            "archive_by_time",
            "ledger_by_time",
            "ledger_parked_by_due",
            "ledger_retried_by_digest_prefix",
            "messages_by_visibility"
        ],
        "the receipt and class indexes are gone, the archive has a time index, parked records \
         an index by due time"
    );
    let queue = reopened.queues().queue("orders").unwrap();
    let refused = queue
        .delete(&["0190c3a1f4e27c3a9b1d2e3f4a5b6c7d".into()])
        .await
        .unwrap();
    assert!(
        refused[0]
            .as_ref()
            .is_err_and(|e| e.to_string().contains("was not issued by this queue")),
        "{refused:?}"
    );
    // The message is not lost: once its visibility timeout passes it is delivered again, under
    // a handle of the new shape, which deletes it.
    fixture.clock.advance(chrono::Duration::seconds(31));
    let again = queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    assert_eq!(
        again[0].attributes["tenant"].string_value.as_deref(),
        Some("a \"quoted\" name"),
        "attributes written as JSON text are still read"
    );
    let deleted = queue
        .delete(&[again[0].receipt_handle.clone()])
        .await
        .unwrap();
    assert!(deleted[0].is_ok(), "{deleted:?}");
    assert_eq!(reopened.queues().depth("orders").unwrap().total(), 0);
    assert_eq!(
        payload_count(fixture.store.path()),
        0,
        "the payload goes with its message"
    );
}

#[tokio::test]
async fn a_message_whose_payload_is_gone_is_a_clear_error_and_stays_queued() {
    let fixture = Fixture::new();
    let queues = orders_holding_one_message(&fixture).await;
    let raw = rusqlite::Connection::open(fixture.store.path()).unwrap();
    raw.execute("DELETE FROM message_payloads", []).unwrap();
    let error = queues
        .queue("orders")
        .unwrap()
        .receive(10, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("its body and attributes are missing from message_payloads"),
        "{error}"
    );
    assert_eq!(
        queues.depth("orders").unwrap().total(),
        1,
        "the message is not dropped"
    );
}

/// The queue "orders" (visibility 30 s, to "dlq" after 5 receives) with one message, "order 1".
async fn orders_holding_one_message(fixture: &Fixture) -> dlq_healer_local::LocalQueues {
    let queues = fixture.queue_with_dlq("orders", 30, 5);
    queues
        .send("orders", &[OutgoingMessage::new("m-1", "order 1")])
        .await
        .unwrap();
    queues
}

/// The columns of the message table, in order.
fn message_columns(path: &std::path::Path) -> Vec<String> {
    let raw = rusqlite::Connection::open(path).unwrap();
    let mut statement = raw
        .prepare("SELECT name FROM pragma_table_info('messages')")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// How many message payloads the file holds.
fn payload_count(path: &std::path::Path) -> i64 {
    let raw = rusqlite::Connection::open(path).unwrap();
    raw.query_row("SELECT count(*) FROM message_payloads", [], |row| {
        row.get(0)
    })
    .unwrap()
}

/// The indexes the file has, by name, leaving out SQLite's own (primary keys).
fn index_names(path: &std::path::Path) -> Vec<String> {
    let raw = rusqlite::Connection::open(path).unwrap();
    let mut statement = raw
        .prepare(
            "SELECT name FROM sqlite_master
             WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%' ORDER BY name",
        )
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}
