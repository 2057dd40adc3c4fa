//! The consumer handler on in-memory queues, called with hand-built SQS events.

use aws_lambda_events::event::sqs::SqsEvent;
use dlq_healer_core::context::ContextReading;
use dlq_healer_core::message::CONTEXT_ATTRIBUTE;
use dlq_healer_core::metrics as m;
use dlq_healer_core::ports::SystemClock;
use dlq_healer_core::testing::{MemoryMetrics, MemoryQueues};
use dlq_healer_demo::OrderConsumer;
use dlq_healer_lambda::ConsumerFunction;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

const MAIN_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:orders";

fn event() -> SqsEvent {
    let record = |id: &str, body: &str| {
        json!({
            "messageId": id,
            "receiptHandle": format!("handle-{id}"),
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795773600000"},
            "messageAttributes": {
                "tenant": {"stringValue": "acme", "dataType": "String"}
            },
            "eventSource": "aws:sqs",
            "eventSourceARN": MAIN_ARN,
            "awsRegion": "us-east-1"
        })
    };
    serde_json::from_value(json!({"Records": [
        record("good", r#"{"order_id":1,"user":"u-1","amount_cents":500,"items":[{"sku":"A","quantity":1}]}"#),
        record("truncated", r#"{"order_id":2,"user":"u-2","amou"#),
        record("no-user", r#"{"order_id":3,"user":null,"amount_cents":500,"items":[{"sku":"A","quantity":1}]}"#),
    ]}))
    .unwrap()
}

struct Setup {
    queues: Arc<MemoryQueues>,
    orders: Arc<OrderConsumer>,
    metrics: Arc<MemoryMetrics>,
    function: ConsumerFunction,
}

fn setup() -> Setup {
    let queues = MemoryQueues::new(Arc::new(SystemClock));
    queues.create("dlq");
    let orders = Arc::new(OrderConsumer::new());
    let metrics = Arc::new(MemoryMetrics::default());
    let function = ConsumerFunction {
        handler: orders.clone(),
        sender: queues.clone(),
        dlq: "dlq".into(),
        name: "orders-consumer".into(),
        clock: Arc::new(SystemClock),
        metrics: metrics.clone(),
    };
    Setup {
        queues,
        orders,
        metrics,
        function,
    }
}

#[tokio::test]
async fn failures_are_dead_lettered_with_their_context_and_the_batch_acknowledged() {
    let s = setup();
    let response = s.function.handle(event()).await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(s.orders.processed(), BTreeSet::from([1]));
    let dead = s.queues.messages("dlq");
    assert_eq!(dead.len(), 2);
    let mut error_types = BTreeSet::new();
    for stored in &dead {
        let attributes = &stored.message.attributes;
        assert_eq!(
            attributes["tenant"].as_str(),
            Some("acme"),
            "attributes are kept"
        );
        let reading = ContextReading::parse(attributes[CONTEXT_ATTRIBUTE].as_str().unwrap());
        let context = reading.context().expect("a valid dlq-context");
        assert_eq!(context.source.as_deref(), Some(MAIN_ARN));
        assert_eq!(context.consumer.as_deref(), Some("orders-consumer"));
        error_types.insert(context.error.error_type.clone().unwrap());
    }
    assert_eq!(
        error_types,
        BTreeSet::from(["JSONDecodeError".to_string(), "ValidationError".to_string()])
    );
    // The original body travels unchanged.
    assert!(
        dead.iter()
            .any(|d| d.message.body == br#"{"order_id":2,"user":"u-2","amou"#)
    );
    assert_eq!(s.metrics.total(m::CONSUMER_INVOCATIONS), 3.0);
    assert_eq!(s.metrics.total(m::CONSUMER_ERRORS), 2.0);
    assert_eq!(s.metrics.total(m::PROCESSED), 1.0);
}

#[tokio::test]
async fn failures_that_cannot_be_dead_lettered_are_reported_and_successes_are_not() {
    let s = setup();
    s.queues.fail_send.set(true);
    let response = s.function.handle(event()).await;
    let reported: BTreeSet<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        reported,
        BTreeSet::from(["truncated".to_string(), "no-user".to_string()])
    );
    assert!(s.queues.messages("dlq").is_empty());
}

#[tokio::test]
async fn a_dlq_that_does_not_exist_reports_the_failures() {
    let s = setup();
    let function = ConsumerFunction {
        dlq: "no-such-queue".into(),
        ..s.function
    };
    let response = function.handle(event()).await;
    assert_eq!(response.batch_item_failures.len(), 2);
}
