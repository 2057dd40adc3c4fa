//! The engine over real local FIFO queues: a message group goes back to its source in the order it
//! came into the DLQ, whatever backoff each of its messages draws.

use chrono::{Duration, TimeZone, Utc};
use dlq_healer_core::engine::{Engine, EngineConfig, Ports};
use dlq_healer_core::message::{Attribute, CONTEXT_ATTRIBUTE, OutgoingMessage};
use dlq_healer_core::ports::{ManualClock, MessageSource, QueueSender};
use dlq_healer_core::rules::RuleSet;
use dlq_healer_local::{LocalAlerter, LocalArchive, LocalMetrics, LocalStore, QueueSettings};
use std::sync::Arc;

const NOW: std::time::Duration = std::time::Duration::ZERO;

/// Dead-letter `count` timeouts of group `g` into `orders-dlq.fifo` (bodies `0`, `1`, ...), heal
/// them with jitter drawn from `seed` until the DLQ is empty, and return the bodies in the order
/// `orders.fifo` hands them out.
async fn requeued_order(seed: u64, count: usize) -> Vec<String> {
    let dir = tempfile::Builder::new()
        .prefix("dlq-healer-fifo-")
        .tempdir()
        .unwrap();
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap(),
    ));
    let store = LocalStore::open_with_clock(dir.path().join("fifo.db"), clock.clone()).unwrap();
    let queues = store.queues();
    queues
        .create_queue("orders-dlq.fifo", QueueSettings::default().fifo())
        .unwrap();
    queues
        .create_queue("orders.fifo", QueueSettings::default().fifo())
        .unwrap();
    let letters: Vec<OutgoingMessage> = (0..count)
        .map(|n| {
            let context = r#"{"v":1,"error":{"message":"Task timed out after 30.00 seconds"},"source":"orders.fifo","failed_at":"2026-12-04T09:59:00Z"}"#;
            let mut message = OutgoingMessage {
                group_id: Some("g".into()),
                deduplication_id: Some(format!("d{n}")),
                ..OutgoingMessage::new(format!("e{n}"), n.to_string().into_bytes())
            };
            message
                .attributes
                .insert(CONTEXT_ATTRIBUTE.into(), Attribute::string(context));
            message
        })
        .collect();
    for result in queues.send("orders-dlq.fifo", &letters).await.unwrap() {
        result.unwrap();
    }
    let dlq = queues.queue("orders-dlq.fifo").unwrap();
    let ports = Ports {
        dlq: Arc::new(queues.queue("orders-dlq.fifo").unwrap()),
        queues: Arc::new(store.queues()),
        ledger: Arc::new(store.ledger()),
        archive: Arc::new(LocalArchive::new(store.clone(), dir.path().join("archive")).unwrap()),
        alerter: Arc::new(LocalAlerter::new(
            store.clone(),
            Duration::minutes(10),
            None,
        )),
        metrics: Arc::new(LocalMetrics::new(store.clone())),
    };
    let config = EngineConfig {
        jitter_seed: Some(seed),
        ..EngineConfig::default()
    };
    let engine = Engine::new(Arc::new(RuleSet::defaults()), ports, clock.clone(), config);
    // The first attempt's backoff is at most 2 s: parked messages come due within it.
    for _ in 0..30 {
        loop {
            let batch = dlq.receive(10, NOW).await.unwrap();
            if batch.is_empty() {
                break;
            }
            engine.heal_batch(batch).await;
        }
        clock.advance(Duration::seconds(1));
    }
    assert_eq!(queues.depth("orders-dlq.fifo").unwrap().visible, 0);
    let source = queues.queue("orders.fifo").unwrap();
    let mut order = Vec::new();
    loop {
        let received = source.receive(10, NOW).await.unwrap();
        if received.is_empty() {
            break;
        }
        let handles: Vec<String> = received.iter().map(|m| m.receipt_handle.clone()).collect();
        order.extend(
            received
                .into_iter()
                .map(|m| String::from_utf8(m.body).unwrap()),
        );
        source.delete(&handles).await.unwrap();
    }
    order
}

#[tokio::test]
async fn a_group_goes_back_in_the_order_it_came_whatever_each_message_draws() {
    let expected: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    for seed in 0..8 {
        assert_eq!(
            requeued_order(seed, 10).await,
            expected,
            "jitter seed {seed}"
        );
    }
}
