//! The SNS alerter on the emulator: the shared alerter contract, one alert per fingerprint and
//! window across 20 concurrent instances (counted at an SQS queue subscribed to the topic), the
//! digest, and what a notification may carry.

mod common;

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, Duration, Utc};
use dlq_healer_aws::{AwsClients, SnsAlerter};
use dlq_healer_core::contract::{self, sample_alert};
use dlq_healer_core::ports::Alerter;
use serde_json::Value;
use std::sync::Arc;

const WINDOW: i64 = 10;

/// A topic with an SQS queue subscribed to it, and a table for the windows.
struct Fixture {
    clients: AwsClients,
    topic_arn: String,
    queue_url: String,
    table: String,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture::with_clients(common::clients().await).await
    }

    async fn with_clients(clients: AwsClients) -> Fixture {
        let name = common::unique("alerts");
        let topic_arn = clients
            .sns
            .create_topic()
            .name(&name)
            .send()
            .await
            .unwrap()
            .topic_arn
            .unwrap();
        let queue_url = clients
            .sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let queue_arn = clients
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .unwrap();
        clients
            .sns
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .unwrap();
        let table = common::create_ledger_table(&clients.dynamodb, "alerts").await;
        Fixture {
            clients,
            topic_arn,
            queue_url,
            table,
        }
    }

    fn alerter(&self) -> SnsAlerter {
        SnsAlerter::new(
            self.clients.sns.clone(),
            &self.topic_arn,
            self.clients.dynamodb.clone(),
            &self.table,
            Duration::minutes(WINDOW),
        )
    }

    /// Every notification that reached the queue so far (SNS envelopes), removed from it.
    async fn notifications(&self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let got = self
                .clients
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            for message in messages {
                let envelope: Value =
                    serde_json::from_str(message.body.as_deref().unwrap_or("")).unwrap();
                out.push(envelope);
                self.clients
                    .sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(message.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

/// The JSON detail of a notification: the message after the headline.
fn detail(notification: &Value) -> Value {
    let message = notification["Message"].as_str().unwrap();
    let (_, json) = message.split_once("\n\n").unwrap();
    serde_json::from_str(json).unwrap()
}

fn alert(fingerprint: &str, key: &str, at: DateTime<Utc>) -> dlq_healer_core::alert::Alert {
    sample_alert(fingerprint, key, at)
}

#[tokio::test]
async fn sns_alerter_passes_the_alerter_contract() {
    let fixture = Fixture::new().await;
    let alerter = fixture.alerter();
    contract::alerter_contract(&alerter, Duration::minutes(WINDOW)).await;
    // First alert, another fingerprint's alert, the held-back digest of the stopping process,
    // the digest of the closed window, the alert after the window.
    let notes = fixture.notifications().await;
    assert_eq!(notes.len(), 5, "{notes:#?}");
    let digests: Vec<(Value, Value)> = notes
        .iter()
        .map(detail)
        .filter(|d| d["digest"] == true)
        .map(|d| (d["count"].clone(), d["sample_keys"].clone()))
        .collect();
    assert_eq!(
        digests,
        vec![
            (Value::from(2), serde_json::json!(["k2", "k3"])),
            (Value::from(1), serde_json::json!(["k6"])),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_instances_send_one_alert_then_one_digest() {
    let (clients, counter) = common::counted_clients().await;
    let fixture = Arc::new(Fixture::with_clients(clients).await);
    counter.reset();
    let t0 = Utc::now();
    let fingerprint = common::unique("fp");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let fixture = fixture.clone();
        let fingerprint = fingerprint.clone();
        tasks.push(tokio::spawn(async move {
            // One alerter per task: twenty Lambda instances sharing the table.
            let alerter = fixture.alerter();
            let at = t0 + Duration::milliseconds(i);
            let report = alerter
                .raise(vec![alert(&fingerprint, &format!("k{i}"), at)], at)
                .await
                .unwrap();
            (alerter, report)
        }));
    }
    let mut alerters = Vec::new();
    let (mut sent, mut suppressed) = (0, 0);
    for task in tasks {
        let (alerter, report) = task.await.unwrap();
        sent += report.sent;
        suppressed += report.suppressed;
        alerters.push(Arc::new(alerter));
    }
    assert_eq!((sent, suppressed), (1, 19));
    let raised = counter.snapshot();
    assert_eq!(raised.operations.get("SNS.PublishBatch"), Some(&1));
    println!("20 concurrent raises: {:?}", raised.operations);
    let notes = fixture.notifications().await;
    assert_eq!(notes.len(), 1, "exactly one immediate alert: {notes:#?}");
    assert_eq!(detail(&notes[0])["digest"], false);

    // Nothing before the window closes, from any instance.
    for alerter in &alerters {
        assert_eq!(
            alerter
                .flush_digests(t0 + Duration::minutes(1))
                .await
                .unwrap()
                .sent,
            0
        );
    }
    // All twenty flush at once after the window: one digest carries the nineteen.
    let closed = t0 + Duration::minutes(WINDOW) + Duration::seconds(1);
    let flushes: Vec<_> = alerters
        .iter()
        .cloned()
        .map(|alerter| tokio::spawn(async move { alerter.flush_digests(closed).await.unwrap() }))
        .collect();
    let mut digests_sent = 0;
    for flush in flushes {
        digests_sent += flush.await.unwrap().sent;
    }
    assert_eq!(digests_sent, 1);
    let notes = fixture.notifications().await;
    assert_eq!(notes.len(), 1, "{notes:#?}");
    let digest = detail(&notes[0]);
    assert_eq!(digest["digest"], true);
    assert_eq!(digest["count"], 19);
    assert_eq!(digest["sample_keys"].as_array().unwrap().len(), 5);
    let keys: std::collections::BTreeSet<&str> = digest["sample_keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(keys.len(), 5, "sample keys are distinct");
    // The losers of the claim look once more, find nothing held back, and let go.
    for alerter in &alerters {
        let again = alerter
            .flush_digests(closed + Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(again.sent, 0);
    }
    assert!(alerters.iter().all(|a| a.touched_fingerprints().is_empty()));
}

#[tokio::test]
async fn a_reopened_window_sends_the_digest_first() {
    let fixture = Fixture::new().await;
    let (first, second) = (fixture.alerter(), fixture.alerter());
    let t0 = Utc::now();
    let fingerprint = common::unique("fp");
    first
        .raise(vec![alert(&fingerprint, "k1", t0)], t0)
        .await
        .unwrap();
    let t1 = t0 + Duration::minutes(1);
    let held = second
        .raise(
            vec![
                alert(&fingerprint, "k2", t1),
                alert(&fingerprint, "k3", t1),
                alert(&fingerprint, "k2", t1),
            ],
            t1,
        )
        .await
        .unwrap();
    assert_eq!((held.sent, held.suppressed), (0, 3));
    // An instance that never saw the fingerprint opens the next window and sends both.
    let third = fixture.alerter();
    let t2 = t0 + Duration::minutes(WINDOW + 1);
    let report = third
        .raise(vec![alert(&fingerprint, "k4", t2)], t2)
        .await
        .unwrap();
    assert_eq!((report.sent, report.suppressed), (2, 0));
    let notes: Vec<Value> = fixture.notifications().await.iter().map(detail).collect();
    assert_eq!(notes.len(), 3);
    let digest = notes.iter().find(|n| n["digest"] == true).unwrap();
    assert_eq!(digest["count"], 3);
    assert_eq!(digest["sample_keys"], serde_json::json!(["k2", "k3"]));
    // The digest was taken by the reopening: the others have nothing left to flush.
    let late = t2 + Duration::minutes(1);
    assert_eq!(first.flush_digests(late).await.unwrap().sent, 0);
    assert_eq!(second.flush_digests(late).await.unwrap().sent, 0);
}

#[tokio::test]
async fn notifications_carry_no_body_and_no_secrets() {
    let fixture = Fixture::new().await;
    let alerter = fixture.alerter();
    let now = Utc::now();
    let body = r#"{"order": 14013, "card": "4111111111111111"}"#;
    let raised = dlq_healer_core::alert::Alert {
        error: format!(
            "401 Unauthorized: Authorization: Bearer sk.abcdefgh12345678 rejected\nsecond line {body}"
        ),
        source: Some("https://sqs.us-east-1.amazonaws.com/123456789012/orders".into()),
        ..alert(&common::unique("fp"), "order-14013", now)
    };
    alerter.raise(vec![raised], now).await.unwrap();
    let notes = fixture.notifications().await;
    assert_eq!(notes.len(), 1);
    let subject = notes[0]["Subject"].as_str().unwrap();
    assert!(
        subject.len() < 100 && !subject.contains('\n'),
        "{subject:?}"
    );
    let message = notes[0]["Message"].as_str().unwrap();
    assert!(!message.contains("abcdefgh12345678"), "{message}");
    assert!(message.contains("[REDACTED]"), "{message}");
    assert!(
        !message.contains("4111111111111111") && !message.contains("card"),
        "{message}"
    );
    let detail = detail(&notes[0]);
    let fields: Vec<&str> = detail
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        vec![
            "class",
            "count",
            "digest",
            "error",
            "fingerprint",
            "first_seen",
            "last_seen",
            "sample_keys",
            "source"
        ],
        "no body field"
    );
    assert_eq!(detail["class"], "auth");
    assert_eq!(detail["count"], 1);
    assert_eq!(detail["sample_keys"], serde_json::json!(["order-14013"]));
}

#[tokio::test]
async fn an_alert_that_cannot_be_published_goes_out_in_the_next_digest() {
    let fixture = Fixture::new().await;
    let broken = SnsAlerter::new(
        fixture.clients.sns.clone(),
        format!("{}-missing", fixture.topic_arn),
        fixture.clients.dynamodb.clone(),
        &fixture.table,
        Duration::minutes(WINDOW),
    );
    let t0 = Utc::now();
    let fingerprint = common::unique("fp");
    let error = broken
        .raise(vec![alert(&fingerprint, "k1", t0)], t0)
        .await
        .unwrap_err();
    assert!(!error.retryable, "a missing topic is permanent: {error}");
    // Another instance flushes that fingerprint after the window: the lost alert is its digest.
    let healthy = fixture.alerter();
    let report = healthy
        .flush_fingerprints(
            std::slice::from_ref(&fingerprint),
            t0 + Duration::minutes(WINDOW),
        )
        .await
        .unwrap();
    assert_eq!(report.sent, 1);
    let notes = fixture.notifications().await;
    assert_eq!(notes.len(), 1);
    assert_eq!(detail(&notes[0])["count"], 1);
}

#[tokio::test]
async fn raising_costs_one_write_and_one_publish_per_call() {
    let (clients, counter) = common::counted_clients().await;
    let fixture = Fixture::with_clients(clients).await;
    let alerter = fixture.alerter();
    let now = Utc::now();
    let alerts: Vec<_> = (0..12)
        .map(|i| alert(&common::unique("fp"), &format!("k{i}"), now))
        .collect();
    counter.reset();
    let report = alerter.raise(alerts, now).await.unwrap();
    assert_eq!(report.sent, 12);
    let counts = counter.snapshot();
    assert_eq!(counts.operations.get("DynamoDB.PutItem"), Some(&12));
    assert_eq!(
        counts.operations.get("SNS.PublishBatch"),
        Some(&2),
        "10 per call"
    );
    // Held back in an open window this process knows: one UpdateItem, no PutItem, no publish.
    let fingerprint = alerter.touched_fingerprints()[0].clone();
    counter.reset();
    let report = alerter
        .raise(vec![alert(&fingerprint, "again", now)], now)
        .await
        .unwrap();
    assert_eq!((report.sent, report.suppressed), (0, 1));
    assert_eq!(
        counter.snapshot().total_operations(),
        1,
        "{:?}",
        counter.snapshot()
    );
    fixture.notifications().await;
}
