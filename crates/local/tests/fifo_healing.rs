//! The engine over real local FIFO queues: a message group goes back to its source in the order it
//! came into the DLQ, whatever backoff each of its messages draws.

mod common;

use chrono::Duration;
use common::Fixture;
use dlq_healer_core::engine::EngineConfig;
use dlq_healer_core::message::{Attribute, CONTEXT_ATTRIBUTE, OutgoingMessage};
use dlq_healer_core::ports::{MessageSource, QueueSender};
use dlq_healer_local::QueueSettings;

const NOW: std::time::Duration = std::time::Duration::ZERO;

/// Dead-letter `count` timeouts of group `g` into `orders-dlq.fifo` (bodies `0`, `1`, ...), heal
/// them with jitter drawn from `seed` until the DLQ is empty, and return the bodies in the order
/// `orders.fifo` hands them out.
async fn requeued_order(seed: u64, count: usize) -> Vec<String> {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("orders-dlq.fifo", QueueSettings::default().fifo())
        .unwrap();
    queues
        .create_queue("orders.fifo", QueueSettings::default().fifo())
        .unwrap();
    let letters: Vec<OutgoingMessage> = (0..count)
        .map(|n| {
            let context = r#"{"v":1,"error":{"message":"Task timed out after 30.00 seconds"},"source":"orders.fifo","failed_at":"2026-11-27T09:59:00Z"}"#;
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
    let config = EngineConfig {
        jitter_seed: Some(seed),
        ..EngineConfig::default()
    };
    let engine = fixture.engine("orders-dlq.fifo", config);
    // The first attempt's backoff is at most 2 s: parked messages come due within it.
    for _ in 0..30 {
        loop {
            let batch = dlq.receive(10, NOW).await.unwrap();
            if batch.is_empty() {
                break;
            }
            engine.heal_batch(batch).await;
        }
        fixture.clock.advance(Duration::seconds(1));
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
