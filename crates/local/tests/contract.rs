//! The shared port contract suite, run against the local backend.

mod common;

use common::Fixture;
use dlq_healer_core::contract::{self, QueueCapabilities};
use dlq_healer_local::QueueSettings;

#[tokio::test]
async fn local_queues_pass_the_queue_contract() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("orders", QueueSettings::default())
        .unwrap();
    let source = queues.queue("orders").unwrap();
    let advance = |by: chrono::Duration| fixture.clock.advance(by);
    contract::queue_contract(&queues, &source, "orders", &advance, QueueCapabilities::ALL).await;
    assert_eq!(queues.depth("orders").unwrap().total(), 0);
}

#[tokio::test]
async fn local_queues_accept_local_urls_in_the_queue_contract() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("local://orders", QueueSettings::default())
        .unwrap();
    let source = queues.queue("orders").unwrap();
    let advance = |by: chrono::Duration| fixture.clock.advance(by);
    contract::queue_contract(
        &queues,
        &source,
        "local://orders",
        &advance,
        QueueCapabilities::ALL,
    )
    .await;
}

#[tokio::test]
async fn local_queues_pass_the_redrive_contract() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("orders-dlq", QueueSettings::default())
        .unwrap();
    queues
        .create_queue(
            "orders",
            QueueSettings::default().with_redrive("orders-dlq", 3),
        )
        .unwrap();
    let source = queues.queue("orders").unwrap();
    let dlq = queues.queue("orders-dlq").unwrap();
    contract::redrive_contract(&queues, &source, "orders", &dlq, 3, QueueCapabilities::ALL).await;
}

#[tokio::test]
async fn local_fifo_queues_pass_the_redrive_contract() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("orders-dlq.fifo", QueueSettings::default().fifo())
        .unwrap();
    queues
        .create_queue(
            "orders.fifo",
            QueueSettings::default()
                .fifo()
                .with_redrive("orders-dlq.fifo", 2),
        )
        .unwrap();
    let source = queues.queue("orders.fifo").unwrap();
    let dlq = queues.queue("orders-dlq.fifo").unwrap();
    contract::redrive_contract(
        &queues,
        &source,
        "orders.fifo",
        &dlq,
        2,
        QueueCapabilities::ALL,
    )
    .await;
}

#[tokio::test]
async fn local_ledger_passes_the_ledger_contract() {
    let fixture = Fixture::new();
    contract::ledger_contract(&fixture.store.ledger()).await;
    // Run twice on the same table: the suite must not depend on an empty ledger.
    contract::ledger_contract(&fixture.store.ledger()).await;
    assert_eq!(fixture.store.ledger().count().unwrap(), 8);
}

#[tokio::test]
async fn local_archive_passes_the_archive_contract() {
    let fixture = Fixture::new();
    let archive =
        dlq_healer_local::LocalArchive::new(fixture.store.clone(), fixture.dir.path().join("arc"))
            .unwrap();
    contract::archive_contract(&archive, "archive").await;
    // Overwriting the object re-indexed it: one line left.
    let indexed = archive.query(None, None, None, None).unwrap();
    assert_eq!(indexed.len(), 1);
}

#[tokio::test]
async fn local_alerter_passes_the_alerter_contract() {
    let fixture = Fixture::new();
    let window = chrono::Duration::minutes(10);
    let alerter = dlq_healer_local::LocalAlerter::new(fixture.store.clone(), window, None);
    contract::alerter_contract(&alerter, window).await;
    // First alert, another fingerprint's alert, the held-back digest of the stopping process,
    // the digest of the closed window, the alert after the window.
    assert_eq!(alerter.sent_count().unwrap(), 5);
}
