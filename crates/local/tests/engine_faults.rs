//! The engine over the real local backend when the disk or the database fails under it: the
//! message stays in the DLQ, and a later pass heals it exactly once.

mod common;

use chrono::Duration;
use common::Fixture;
use dlq_healer_core::engine::{Engine, EngineConfig, Outcome};
use dlq_healer_core::message::{Attribute, CONTEXT_ATTRIBUTE, OutgoingMessage};
use dlq_healer_core::ports::QueueSender;
use dlq_healer_local::QueueSettings;
use std::ops::Deref;

/// A store with the queues `orders` and `orders-dlq`, and an engine healing `orders-dlq`.
struct Setup {
    fixture: Fixture,
    engine: Engine,
}

impl Deref for Setup {
    type Target = Fixture;

    fn deref(&self) -> &Fixture {
        &self.fixture
    }
}

fn setup() -> Setup {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("orders", QueueSettings::default())
        .unwrap();
    queues
        .create_queue("orders-dlq", QueueSettings::default())
        .unwrap();
    let engine = fixture.engine("orders-dlq", EngineConfig::default());
    Setup { fixture, engine }
}

async fn dead_letter(setup: &Setup, body: &str, error: &str) {
    let context = format!(
        r#"{{"v":1,"error":{{"message":"{error}"}},"source":"orders","failed_at":"2026-11-27T09:59:00Z"}}"#
    );
    let mut message = OutgoingMessage::new("m", body.as_bytes().to_vec());
    message
        .attributes
        .insert(CONTEXT_ATTRIBUTE.into(), Attribute::string(context));
    setup
        .store
        .queues()
        .send("orders-dlq", &[message])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
}

async fn heal_once(setup: &Setup) -> Vec<Outcome> {
    let batch = setup
        .engine
        .ports()
        .dlq
        .receive(10, std::time::Duration::ZERO)
        .await
        .unwrap();
    setup
        .engine
        .heal_batch(batch)
        .await
        .messages
        .into_iter()
        .map(|m| m.outcome)
        .collect()
}

fn dlq_total(setup: &Setup) -> u64 {
    setup.store.queues().depth("orders-dlq").unwrap().total()
}

#[tokio::test]
async fn an_archive_write_error_as_on_a_full_disk_leaves_the_message_in_the_dlq() {
    let setup = setup();
    dead_letter(
        &setup,
        "{\"order\":1}",
        "validation failed: user is required",
    )
    .await;
    // The archive's day directory cannot be created: the path is taken by a file.
    std::fs::write(
        setup.dir.path().join("archive").join("archive"),
        b"not a directory",
    )
    .unwrap();
    let outcomes = heal_once(&setup).await;
    assert!(
        matches!(&outcomes[..], [Outcome::Failed { reason }] if reason.contains("archive")),
        "{outcomes:?}"
    );
    assert_eq!(dlq_total(&setup), 1, "the message stays in the DLQ");
    assert_eq!(setup.store.ledger().count().unwrap(), 0, "nothing recorded");

    std::fs::remove_file(setup.dir.path().join("archive").join("archive")).unwrap();
    setup.clock.advance(Duration::seconds(31));
    let outcomes = heal_once(&setup).await;
    assert!(
        matches!(&outcomes[..], [Outcome::Archived { .. }]),
        "{outcomes:?}"
    );
    assert_eq!(dlq_total(&setup), 0);
    assert_eq!(
        setup.store.ledger().count().unwrap(),
        1,
        "healed exactly once"
    );
}

#[tokio::test]
async fn a_locked_database_is_an_error_that_leaves_the_message_in_the_dlq() {
    let setup = setup();
    dead_letter(
        &setup,
        "{\"order\":2}",
        "Task timed out after 30.00 seconds",
    )
    .await;
    let batch = setup
        .engine
        .ports()
        .dlq
        .receive(10, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(batch.len(), 1);
    setup
        .store
        .set_busy_timeout(std::time::Duration::from_millis(50))
        .unwrap();
    // Another process holds the write lock while the healer works.
    let blocker = rusqlite::Connection::open(setup.store.path()).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let report = setup.engine.heal_batch(batch).await;
    assert!(
        matches!(report.messages[0].outcome, Outcome::Failed { .. }),
        "{:?}",
        report.messages[0].outcome
    );
    assert!(!report.messages[0].deleted);
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    assert_eq!(dlq_total(&setup), 1, "the message stays in the DLQ");
    assert_eq!(
        setup.store.queues().depth("orders").unwrap().total(),
        0,
        "and was not re-queued"
    );

    setup.clock.advance(Duration::seconds(31));
    let outcomes = heal_once(&setup).await;
    assert!(
        matches!(&outcomes[..], [Outcome::Requeued { .. }]),
        "{outcomes:?}"
    );
    assert_eq!(dlq_total(&setup), 0);
    assert_eq!(
        setup.store.queues().depth("orders").unwrap().total(),
        1,
        "re-queued exactly once"
    );
}
