//! The healer handler on in-memory ports, called with hand-built SQS events.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{TimeZone, Utc};
use dlq_healer_core::consumer::dead_letter_for;
use dlq_healer_core::context::ErrorInfo;
use dlq_healer_core::message::{OutgoingMessage, ReceivedMessage};
use dlq_healer_core::ports::{Clock, ManualClock, MessageSource, PortError, QueueSender};
use dlq_healer_core::rules::DEFAULT_RULES_TOML;
use dlq_healer_core::testing::{
    MemoryAlerter, MemoryArchive, MemoryLedger, MemoryMetrics, MemoryQueue, MemoryQueues,
};
use dlq_healer_core::{Engine, EngineConfig, FailureClass, Ports};
use dlq_healer_lambda::HealerFunction;
use dlq_healer_lambda::event_dlq::{DlqResolver, EventSourceDlq};
use dlq_healer_lambda::healer::{lambda_engine_config, load_rules};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const DLQ_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:orders-dlq";

struct World {
    clock: Arc<ManualClock>,
    queues: Arc<MemoryQueues>,
    dlq: Arc<MemoryQueue>,
    ledger: Arc<MemoryLedger>,
    archive: Arc<MemoryArchive>,
    alerter: Arc<MemoryAlerter>,
    metrics: Arc<MemoryMetrics>,
}

impl World {
    fn new() -> World {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap(),
        ));
        let queues = MemoryQueues::new(clock.clone());
        queues.create("main");
        let dlq = queues.queue("dlq");
        World {
            clock,
            queues,
            dlq,
            ledger: Arc::new(MemoryLedger::default()),
            archive: Arc::new(MemoryArchive::default()),
            alerter: Arc::new(MemoryAlerter::new(chrono::Duration::minutes(10))),
            metrics: Arc::new(MemoryMetrics::default()),
        }
    }

    fn ports(&self, dlq: Arc<dyn MessageSource>) -> Ports {
        Ports {
            dlq,
            queues: self.queues.clone(),
            ledger: self.ledger.clone(),
            archive: self.archive.clone(),
            alerter: self.alerter.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// An engine whose dependency backoff is two hours, so dependency failures are parked.
    fn engine(&self, dlq: Arc<dyn MessageSource>) -> Arc<Engine> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let rules_file = std::env::temp_dir().join(format!(
            "dlq-healer-lambda-rules-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let text = DEFAULT_RULES_TOML.replace(
            "base_delay_seconds = 10\nmax_delay_seconds = 3600",
            "base_delay_seconds = 7200\nmax_delay_seconds = 7200",
        );
        assert_ne!(text, DEFAULT_RULES_TOML, "the dependency policy moved");
        std::fs::write(&rules_file, text).unwrap();
        let rules = load_rules(Some(&rules_file)).unwrap();
        let _ = std::fs::remove_file(&rules_file);
        let config = EngineConfig {
            jitter_seed: Some(7),
            ..lambda_engine_config("main")
        };
        Arc::new(Engine::new(
            Arc::new(rules),
            self.ports(dlq),
            self.clock.clone(),
            config,
        ))
    }

    /// Do what the event source mapping does with a response: delete every message not reported.
    async fn acknowledge(&self, sent: &[ReceivedMessage], response: &SqsBatchResponse) {
        let reported = failures(response);
        let handles: Vec<String> = sent
            .iter()
            .filter(|m| !reported.contains(&m.message_id))
            .map(|m| m.receipt_handle.clone())
            .collect();
        for result in self.dlq.delete(&handles).await.unwrap() {
            result.unwrap();
        }
    }

    /// Dead-letter orders that failed with `errors` into the DLQ and receive them, as the event
    /// source mapping would.
    async fn dead_letters(&self, errors: &[ErrorInfo]) -> Vec<ReceivedMessage> {
        let outgoing: Vec<OutgoingMessage> = errors
            .iter()
            .enumerate()
            .map(|(i, error)| {
                let order = ReceivedMessage {
                    message_id: format!("order-{i}"),
                    receipt_handle: String::new(),
                    body: format!(r#"{{"order_id":{i},"user":"u","amount_cents":5,"items":[]}}"#)
                        .into_bytes(),
                    attributes: Default::default(),
                    receive_count: 1,
                    redrive_source: None,
                    sent_at: None,
                    group_id: None,
                };
                OutgoingMessage {
                    entry_id: format!("e{i}"),
                    ..dead_letter_for(
                        &order,
                        error.clone(),
                        "orders-consumer",
                        "main",
                        self.clock.now(),
                    )
                }
            })
            .collect();
        for result in self.queues.send("dlq", &outgoing).await.unwrap() {
            result.unwrap();
        }
        self.dlq
            .receive(10, std::time::Duration::ZERO)
            .await
            .unwrap()
    }
}

fn error(error_type: &str, message: &str, status: Option<u16>) -> ErrorInfo {
    ErrorInfo {
        error_type: Some(error_type.to_string()),
        status,
        ..ErrorInfo::message(message)
    }
}

fn validation() -> ErrorInfo {
    error("ValidationError", "user: Field required", None)
}

fn timeout() -> ErrorInfo {
    error("TimeoutError", "Task timed out after 30.00 seconds", None)
}

fn dependency() -> ErrorInfo {
    error("HTTPError", "503 Service Unavailable", Some(503))
}

/// The SQS event the mapping would deliver for these messages, as JSON.
fn event_json(messages: &[ReceivedMessage]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes
                .iter()
                .map(|(name, a)| {
                    (
                        name.clone(),
                        json!({"stringValue": a.string_value, "stringListValues": [],
                               "binaryListValues": [], "dataType": a.data_type}),
                    )
                })
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": String::from_utf8_lossy(&m.body),
                "attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": "1795773600000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1795773600001"
                },
                "messageAttributes": attributes,
                "md5OfBody": "0",
                "eventSource": "aws:sqs",
                "eventSourceARN": DLQ_ARN,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn event(messages: &[ReceivedMessage]) -> SqsEvent {
    serde_json::from_value(event_json(messages)).unwrap()
}

fn failures(response: &SqsBatchResponse) -> BTreeSet<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn reports_exactly_the_parked_and_failed_messages() {
    let world = World::new();
    let healer = HealerFunction::new(world.engine(world.dlq.clone()));
    let letters = world
        .dead_letters(&[validation(), timeout(), dependency(), dependency()])
        .await;
    // The last delivery's receipt handle is stale (a crash took it), so parking it fails.
    let mut sent = letters.clone();
    sent[3].receipt_handle = "stale".into();

    let response = healer.handle(event(&sent)).await;

    let expected: BTreeSet<String> =
        [sent[2].message_id.clone(), sent[3].message_id.clone()].into();
    assert_eq!(failures(&response), expected);
    // The validation failure is archived, the timeout is back on the main queue; the mapping
    // deletes both. Nothing was deleted by the engine itself.
    let archived = world.archive.records();
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].class, FailureClass::Validation);
    assert_eq!(world.queues.messages("main").len(), 1);
    assert_eq!(world.queues.messages("dlq").len(), 4);
    // The parked one is hidden in the DLQ for its backoff.
    let parked = world
        .queues
        .messages("dlq")
        .into_iter()
        .find(|m| m.message_id == sent[2].message_id)
        .unwrap();
    assert!(parked.visible_at > world.clock.now() + chrono::Duration::minutes(15));
}

#[tokio::test]
async fn a_failing_archive_reports_only_the_messages_it_held_back() {
    let world = World::new();
    let healer = HealerFunction::new(world.engine(world.dlq.clone()));
    let letters = world.dead_letters(&[validation(), timeout()]).await;
    world.archive.fail.set(true);

    let response = healer.handle(event(&letters)).await;

    assert_eq!(failures(&response), [letters[0].message_id.clone()].into());
    assert_eq!(world.queues.messages("main").len(), 1);
    world.acknowledge(&letters, &response).await;

    // Redelivered once the archive is back, it is archived and the batch acknowledged.
    world.archive.fail.set(false);
    world.clock.advance(chrono::Duration::minutes(1));
    let again = world
        .dlq
        .receive(10, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    let response = healer.handle(event(&again)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(world.archive.records().len(), 1);
}

#[tokio::test]
async fn a_ledger_outage_reports_the_whole_batch() {
    let world = World::new();
    let healer = HealerFunction::new(world.engine(world.dlq.clone()));
    let letters = world.dead_letters(&[validation(), timeout()]).await;
    world.ledger.fail.set(true);
    let response = healer.handle(event(&letters)).await;
    assert_eq!(failures(&response).len(), 2);
    assert!(world.queues.messages("main").is_empty());
}

#[tokio::test]
async fn unreadable_records_are_reported_and_the_rest_healed() {
    let world = World::new();
    let healer = HealerFunction::new(world.engine(world.dlq.clone()));
    let letters = world.dead_letters(&[timeout()]).await;
    let mut json = event_json(&letters);
    let records = json["Records"].as_array_mut().unwrap();
    records.push(json!({"messageId": "no-handle", "body": "{}", "eventSourceARN": DLQ_ARN}));
    records.push(json!({"body": "{}", "eventSourceARN": DLQ_ARN}));
    let event: SqsEvent = serde_json::from_value(json).unwrap();

    let response = healer.handle(event).await;

    // An empty identifier makes Lambda retry the whole batch: the safe answer for a record
    // without an id.
    assert_eq!(
        failures(&response),
        ["no-handle".to_string(), String::new()].into()
    );
    assert_eq!(world.queues.messages("main").len(), 1);
}

#[tokio::test]
async fn an_empty_event_is_an_empty_response() {
    let world = World::new();
    let healer = HealerFunction::new(world.engine(world.dlq.clone()));
    let event: SqsEvent = serde_json::from_value(json!({"Records": []})).unwrap();
    let response = healer.handle(event).await;
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": []})
    );
}

struct CountingResolver {
    queue: Arc<MemoryQueue>,
    calls: AtomicUsize,
}

#[async_trait]
impl DlqResolver for CountingResolver {
    async fn resolve(&self, arn: &str) -> Result<Arc<dyn MessageSource>, PortError> {
        assert_eq!(arn, DLQ_ARN);
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.queue.clone())
    }
}

#[tokio::test]
async fn without_dlq_url_the_queue_is_resolved_from_the_event_source_once() {
    let world = World::new();
    let resolver = Arc::new(CountingResolver {
        queue: world.dlq.clone(),
        calls: AtomicUsize::new(0),
    });
    let dlq = Arc::new(EventSourceDlq::new(resolver.clone()));
    let healer = HealerFunction::with_event_source_dlq(world.engine(dlq.clone()), dlq);

    let first = world.dead_letters(&[dependency()]).await;
    let response = healer.handle(event(&first)).await;
    assert_eq!(failures(&response), [first[0].message_id.clone()].into());
    let second = world.dead_letters(&[dependency(), timeout()]).await;
    let response = healer.handle(event(&second)).await;
    assert_eq!(failures(&response).len(), 1);

    assert_eq!(resolver.calls.load(Ordering::SeqCst), 1);
    // The second batch's timeout went back to the main queue.
    assert_eq!(world.queues.messages("main").len(), 1);
}
