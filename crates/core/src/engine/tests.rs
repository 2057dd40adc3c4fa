use super::*;
use crate::consumer::dead_letter_for;
use crate::context::ErrorInfo;
use crate::letter::MAX_KEY_BYTES;
use crate::message::Attributes;
use crate::ports::ManualClock;
use crate::testing::{MemoryAlerter, MemoryArchive, MemoryLedger, MemoryMetrics, MemoryQueues};
use chrono::TimeZone;
use proptest::prelude::*;

struct World {
    clock: Arc<ManualClock>,
    queues: Arc<MemoryQueues>,
    ledger: Arc<MemoryLedger>,
    archive: Arc<MemoryArchive>,
    alerter: Arc<MemoryAlerter>,
    metrics: Arc<MemoryMetrics>,
    engine: Engine,
}

fn world_with(rules: RuleSet, default_target: Option<&str>) -> World {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap(),
    ));
    let queues = MemoryQueues::new(clock.clone());
    queues.create("orders");
    let ledger = Arc::new(MemoryLedger::default());
    let archive = Arc::new(MemoryArchive::default());
    let alerter = Arc::new(MemoryAlerter::new(DEFAULT_ALERT_WINDOW));
    let metrics = Arc::new(MemoryMetrics::default());
    let ports = Ports {
        dlq: queues.queue("dlq"),
        queues: queues.clone(),
        ledger: ledger.clone(),
        archive: archive.clone(),
        alerter: alerter.clone(),
        metrics: metrics.clone(),
    };
    let config = EngineConfig {
        default_target: default_target.map(str::to_string),
        jitter_seed: Some(7),
        ..EngineConfig::default()
    };
    let engine = Engine::new(Arc::new(rules), ports, clock.clone(), config);
    World {
        clock,
        queues,
        ledger,
        archive,
        alerter,
        metrics,
        engine,
    }
}

fn world() -> World {
    world_with(RuleSet::defaults(), None)
}

fn fresh(body: &[u8]) -> ReceivedMessage {
    ReceivedMessage {
        message_id: format!("orig-{}", body.len()),
        receipt_handle: String::new(),
        body: body.to_vec(),
        attributes: Attributes::new(),
        receive_count: 1,
        redrive_source: None,
        sent_at: None,
        group_id: None,
    }
}

impl World {
    /// A consumer on `orders` fails `message` with `error` and dead-letters it.
    async fn fail(&self, message: &ReceivedMessage, error: &str) {
        self.fail_from("orders", message, error).await;
    }

    /// A consumer on `source` fails `message` with `error` and dead-letters it.
    async fn fail_from(&self, source: &str, message: &ReceivedMessage, error: &str) {
        let dead = dead_letter_for(
            message,
            ErrorInfo::message(error),
            "test-consumer",
            source,
            self.clock.now(),
        );
        self.queues
            .send("dlq", &[dead])
            .await
            .unwrap()
            .remove(0)
            .unwrap();
    }

    /// Up to `max` messages received from the DLQ.
    async fn receive_from_dlq(&self, max: usize) -> Vec<ReceivedMessage> {
        self.engine
            .ports()
            .dlq
            .receive(max, std::time::Duration::ZERO)
            .await
            .unwrap()
    }

    async fn heal_all(&self) -> BatchReport {
        let mut all = BatchReport::default();
        loop {
            let batch = self.receive_from_dlq(10).await;
            if batch.is_empty() {
                return all;
            }
            all.messages
                .extend(self.engine.heal_batch(batch).await.messages);
        }
    }

    async fn take_from_orders(&self) -> Vec<ReceivedMessage> {
        let source = self.queues.queue("orders");
        let received = source.receive(10, std::time::Duration::ZERO).await.unwrap();
        let handles: Vec<String> = received.iter().map(|m| m.receipt_handle.clone()).collect();
        source.delete(&handles).await.unwrap();
        received
    }
}

#[tokio::test]
async fn timeout_is_requeued_to_its_source_with_heal_context() {
    let w = world();
    w.fail(
        &fresh(b"{\"order\":1}"),
        "Task timed out after 30.00 seconds",
    )
    .await;
    let report = w.heal_all().await;
    assert_eq!(report.messages.len(), 1);
    let item = &report.messages[0];
    assert_eq!(item.class, Some(FailureClass::Timeout));
    assert!(matches!(&item.outcome, Outcome::Requeued { queue, .. } if queue == "orders"));
    assert!(item.deleted);
    assert!(w.queues.messages("dlq").is_empty());
    let requeued = &w.queues.messages("orders")[0].message;
    assert_eq!(requeued.body, b"{\"order\":1}");
    let context = crate::context::ContextReading::parse(
        requeued.attributes[CONTEXT_ATTRIBUTE].as_str().unwrap(),
    );
    let heal = context.context().unwrap().heal.clone().unwrap();
    assert_eq!(heal.attempts, 1);
    assert_eq!(heal.last_class, FailureClass::Timeout);
    assert_eq!(heal.key, item.key);
    assert_eq!(w.ledger.all().len(), 1);
    assert_eq!(w.metrics.for_class(m::REQUEUED, FailureClass::Timeout), 1.0);
}

#[tokio::test]
async fn message_age_at_healing_is_measured_from_the_first_failure() {
    let w = world();
    w.fail(
        &fresh(b"{\"order\":1}"),
        "Task timed out after 30.00 seconds",
    )
    .await;
    w.fail(
        &fresh(b"{\"order\":22}"),
        "Task timed out after 30.00 seconds",
    )
    .await;
    w.clock.advance(Duration::seconds(90));
    let report = w.heal_all().await;
    assert!(report.messages.iter().all(|r| r.first_failed_at.is_some()));
    assert_eq!(
        w.metrics
            .for_class(m::MESSAGE_AGE_SECONDS, FailureClass::Timeout),
        90.0
    );
}

async fn always_failing(strip_attributes: bool) -> (World, usize) {
    let w = world();
    let max = w.engine.rules().policy(FailureClass::Timeout).max_attempts as usize;
    w.fail(&fresh(b"{\"order\":42}"), "ReadTimeout: read timed out")
        .await;
    let mut requeues = 0;
    for _ in 0..(max + 5) {
        let report = w.heal_all().await;
        requeues += report.tally().requeued;
        w.clock.advance(Duration::hours(1));
        for mut message in w.take_from_orders().await {
            if strip_attributes {
                message.attributes.clear();
            }
            w.fail(&message, "ReadTimeout: read timed out").await;
        }
    }
    (w, requeues)
}

#[tokio::test]
async fn a_message_that_always_fails_is_requeued_max_attempts_times_then_archived() {
    for strip in [false, true] {
        let (w, requeues) = always_failing(strip).await;
        let max = w.engine.rules().policy(FailureClass::Timeout).max_attempts as usize;
        assert_eq!(requeues, max, "strip attributes: {strip}");
        let archived = w.archive.records();
        assert_eq!(archived.len(), 1, "strip attributes: {strip}");
        assert!(
            archived[0].reason.contains("gave up after"),
            "{}",
            archived[0].reason
        );
        assert!(
            archived[0]
                .reason
                .contains(&format!("after {max} re-queues")),
            "{}",
            archived[0].reason
        );
        assert!(w.queues.messages("dlq").is_empty());
        assert!(w.queues.messages("orders").is_empty());
        let keys: std::collections::BTreeSet<String> =
            w.ledger.all().into_iter().map(|r| r.key).collect();
        if strip {
            // Without its context each copy is a message of its own that takes up the attempts
            // of the key that last re-queued its body.
            assert_eq!(keys.len(), max + 1, "a key per copy");
            assert_eq!(archived[0].history.last().unwrap().attempt as usize, max);
        } else {
            assert_eq!(keys.len(), 1, "one key across all attempts");
            assert_eq!(archived[0].history.len(), max);
        }
    }
}

#[tokio::test]
async fn auth_is_archived_and_alerted_once_per_fingerprint() {
    let w = world();
    for i in 0..5 {
        let body = format!("{{\"order\":{i}}}");
        let mut message = fresh(body.as_bytes());
        message.message_id = format!("o{i}");
        w.fail(
            &message,
            &format!("401 Unauthorized: token expired for order {i}"),
        )
        .await;
    }
    let report = w.heal_all().await;
    assert_eq!(report.tally().archived, 5);
    assert!(
        report
            .messages
            .iter()
            .all(|r| r.alert == AlertOutcome::Sent && r.class == Some(FailureClass::Auth))
    );
    assert_eq!(w.metrics.for_class(m::ALERTED, FailureClass::Auth), 5.0);
    assert_eq!(
        w.metrics
            .for_class(m::ALERTS_SUPPRESSED, FailureClass::Auth),
        0.0
    );
    assert_eq!(
        w.metrics.writes(),
        1,
        "one batch, one metrics write: the alerts' counts go with the rest"
    );
    let sent = w.alerter.sent();
    assert_eq!(
        sent.len(),
        1,
        "one alert for five messages of one fingerprint"
    );
    assert_eq!(sent[0].count, 5);
    assert!(
        !sent[0].error.contains("{\"order\""),
        "alerts never carry the body"
    );
    assert_eq!(w.archive.records().len(), 5);
    let record = &w.archive.records()[0];
    assert_eq!(record.class, FailureClass::Auth);
    assert!(record.context.is_some());
    // Stored archive records can be fetched back through their ledger reference.
    let reference: ArchiveRef = w.ledger.all()[0]
        .archive_ref
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    let fetched = w.engine.ports().archive.fetch(&reference).await.unwrap();
    assert_eq!(fetched.key, w.ledger.all()[0].key);
    assert!(
        w.ledger
            .all()
            .iter()
            .all(|r| r.alerted && !r.alert_held_back)
    );
}

#[tokio::test]
async fn the_ledger_counts_alerts_held_back_as_the_metrics_do() {
    let w = world();
    let order = |i: usize| {
        let mut message = fresh(format!("{{\"order\":{i}}}").as_bytes());
        message.message_id = format!("o{i}");
        message
    };
    w.fail(&order(1), "401 Unauthorized: token expired").await;
    w.fail(&order(2), "403 Forbidden: missing scope").await;
    let first = w.heal_all().await;
    w.clock.advance(Duration::minutes(1));
    for i in 3..6 {
        w.fail(&order(i), "401 Unauthorized: token expired").await;
    }
    let second = w.heal_all().await;
    let alerts = |report: &BatchReport| -> Vec<AlertOutcome> {
        report.messages.iter().map(|r| r.alert).collect()
    };
    assert_eq!(alerts(&first), vec![AlertOutcome::Sent; 2]);
    assert_eq!(
        alerts(&second),
        vec![AlertOutcome::HeldBack; 3],
        "the repeats within the window wait for its digest"
    );
    let records = w.ledger.all();
    let held_back = records.iter().filter(|r| r.alert_held_back).count();
    let alerted = records.iter().filter(|r| r.alerted).count();
    assert_eq!((alerted, held_back), (2, 3));
    assert_eq!(
        w.metrics
            .for_class(m::ALERTS_SUPPRESSED, FailureClass::Auth),
        held_back as f64
    );
    assert_eq!(
        w.metrics.for_class(m::ALERTED, FailureClass::Auth),
        alerted as f64
    );
}

#[tokio::test]
async fn one_error_text_from_two_sources_in_a_batch_alerts_once_per_source() {
    let w = world();
    for (i, source) in ["orders", "payments", "orders", "payments", "orders"]
        .into_iter()
        .enumerate()
    {
        let mut message = fresh(format!("{{\"order\":{i}}}").as_bytes());
        message.message_id = format!("o{i}");
        w.fail_from(source, &message, "401 Unauthorized").await;
    }
    let report = w.heal_all().await;
    assert_eq!(report.tally().archived, 5);
    let mut sent: Vec<(Option<String>, u64, String)> = w
        .alerter
        .sent()
        .into_iter()
        .map(|a| (a.source, a.count, a.fingerprint))
        .collect();
    sent.sort();
    let expected = |source: &str, count: u64| {
        let fingerprint = alert::fingerprint(FailureClass::Auth, "401 Unauthorized", Some(source));
        (Some(source.to_string()), count, fingerprint)
    };
    assert_eq!(sent, vec![expected("orders", 3), expected("payments", 2)]);
}

#[tokio::test]
async fn crash_before_delete_is_not_acted_on_twice() {
    let w = world();
    w.fail(
        &fresh(b"{\"order\":7}"),
        "connect ECONNREFUSED 10.0.0.1:443",
    )
    .await;
    w.queues.fail_delete.set(true);
    let first = w.heal_all().await;
    assert!(matches!(
        first.messages[0].outcome,
        Outcome::Requeued { .. }
    ));
    assert!(!first.messages[0].deleted);
    w.queues.fail_delete.set(false);
    w.clock.advance(Duration::minutes(1));
    let second = w.heal_all().await;
    assert_eq!(second.messages[0].outcome, Outcome::AlreadyHandled);
    assert!(second.messages[0].deleted);
    assert_eq!(
        w.queues.messages("orders").len(),
        1,
        "re-queued exactly once"
    );
    assert_eq!(w.metrics.total(m::DUPLICATES), 1.0);
}

#[tokio::test]
async fn a_message_delivered_twice_in_one_batch_is_acted_on_once_with_its_last_delivery() {
    let w = world();
    w.fail(
        &fresh(b"{\"order\":8}"),
        "connect ECONNREFUSED 10.0.0.1:443",
    )
    .await;
    w.fail(&fresh(b"{\"order\":10}"), "401 Unauthorized").await;
    let dlq = w.engine.ports().dlq.clone();
    let mut batch = dlq.receive(10, std::time::Duration::ZERO).await.unwrap();
    // The deliveries' visibility runs out while the batch is still being received: a later
    // receive of the same batch gets both messages again, with new receipt handles.
    w.clock.advance(Duration::minutes(1));
    let again = dlq.receive(10, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(again.len(), 2);
    batch.extend(again);
    let ids: Vec<String> = batch.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(ids[..2], ids[2..], "the same two messages, delivered twice");

    let report = w.engine.heal_batch(batch).await;

    let reported: Vec<&str> = report
        .messages
        .iter()
        .map(|r| r.message_id.as_str())
        .collect();
    assert_eq!(
        reported, ids,
        "one report per delivery, in the order received"
    );
    for (earlier, last) in report.messages[..2].iter().zip(&report.messages[2..]) {
        assert_eq!(earlier.outcome, Outcome::AlreadyHandled);
        assert!(!earlier.deleted, "a stale receipt handle is not used");
        assert_eq!((&earlier.key, earlier.class), (&last.key, last.class));
        assert!(last.deleted);
    }
    assert!(matches!(
        report.messages[2].outcome,
        Outcome::Requeued { .. }
    ));
    assert!(matches!(
        report.messages[3].outcome,
        Outcome::Archived { .. }
    ));
    assert_eq!(w.queues.messages("orders").len(), 1, "re-queued once");
    assert_eq!(w.archive.records().len(), 1, "archived once");
    assert_eq!(w.ledger.all().len(), 2, "one decision per message");
    assert_eq!(w.alerter.sent().len(), 1, "alerted once");
    assert!(w.queues.messages("dlq").is_empty());
    assert_eq!(w.metrics.total(m::DUPLICATES), 2.0);

    // When the last delivery fails, the earlier one does not report the message settled.
    w.fail(&fresh(b"{\"order\":12}"), "Task timed out").await;
    let mut batch = dlq.receive(10, std::time::Duration::ZERO).await.unwrap();
    w.clock.advance(Duration::minutes(1));
    batch.extend(dlq.receive(10, std::time::Duration::ZERO).await.unwrap());
    assert_eq!(batch.len(), 2);
    w.queues.fail_send.set(true);
    let report = w.engine.heal_batch(batch).await;
    assert!(
        report
            .messages
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Failed { .. }) && !r.deleted),
        "{report:?}"
    );
    assert_eq!(report.not_settled().count(), 2);
}

/// A ledger whose writes wait for a permit of `gate`; `arrived` counts the writes that came.
struct GatedLedger {
    inner: Arc<MemoryLedger>,
    gate: tokio::sync::Semaphore,
    arrived: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Ledger for GatedLedger {
    async fn history(
        &self,
        requests: &[HistoryRequest],
    ) -> Result<HashMap<String, Vec<LedgerRecord>>, PortError> {
        self.inner.history(requests).await
    }
    async fn keys_by_digest(
        &self,
        digests: &[String],
    ) -> Result<HashMap<String, DigestMatch>, PortError> {
        self.inner.keys_by_digest(digests).await
    }
    async fn record(&self, records: &[LedgerRecord]) -> Result<(), PortError> {
        self.arrived
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        self.inner.record(records).await
    }
}

#[tokio::test]
async fn two_batches_healed_at_once_that_hold_one_message_act_on_it_once() {
    let w = world();
    let gated = Arc::new(GatedLedger {
        inner: w.ledger.clone(),
        gate: tokio::sync::Semaphore::new(0),
        arrived: Default::default(),
    });
    let ports = Ports {
        ledger: gated.clone(),
        ..w.engine.ports().clone()
    };
    let config = EngineConfig {
        jitter_seed: Some(7),
        ..EngineConfig::default()
    };
    let engine = Engine::new(
        Arc::new(RuleSet::defaults()),
        ports,
        w.clock.clone(),
        config,
    );
    w.fail(
        &fresh(b"{\"order\":8}"),
        "connect ECONNREFUSED 10.0.0.1:443",
    )
    .await;
    let dlq = engine.ports().dlq.clone();
    let first = dlq.receive(10, std::time::Duration::ZERO).await.unwrap();
    // Its visibility runs out while the first batch heals it: another loop receives it again.
    w.clock.advance(Duration::minutes(1));
    let second = dlq.receive(10, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(first[0].message_id, second[0].message_id);

    let arrived = || gated.arrived.load(std::sync::atomic::Ordering::SeqCst);
    let (first, second) = tokio::join!(engine.heal_batch(first), async {
        // The first batch has re-queued the message and waits on its ledger write.
        while arrived() == 0 {
            tokio::task::yield_now().await;
        }
        let second = engine.heal_batch(second);
        let open_gate = async {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            assert_eq!(
                arrived(),
                1,
                "the second batch acted while the first held the message"
            );
            gated.gate.add_permits(2);
        };
        tokio::join!(second, open_gate).0
    });
    assert!(matches!(
        first.messages[0].outcome,
        Outcome::Requeued { .. }
    ));
    assert!(
        !first.messages[0].deleted,
        "its receipt handle was no longer the latest"
    );
    assert_eq!(second.messages[0].outcome, Outcome::AlreadyHandled);
    assert!(second.messages[0].deleted);
    assert_eq!(w.queues.messages("orders").len(), 1, "re-queued once");
    assert!(w.queues.messages("dlq").is_empty());
}

#[tokio::test]
async fn a_failing_port_leaves_the_message_in_the_dlq() {
    let w = world();
    w.fail(
        &fresh(b"{\"order\":8}"),
        "validation failed: user is required",
    )
    .await;
    w.archive.fail.set(true);
    let report = w.heal_all().await;
    assert!(matches!(report.messages[0].outcome, Outcome::Failed { .. }));
    assert_eq!(w.queues.messages("dlq").len(), 1);
    assert!(w.ledger.all().is_empty());
    w.archive.fail.set(false);
    w.ledger.fail_writes.set(true);
    w.clock.advance(Duration::minutes(1));
    let report = w.heal_all().await;
    assert!(
        matches!(&report.messages[0].outcome, Outcome::Failed { reason } if reason.contains("stays in the DLQ"))
    );
    assert_eq!(w.queues.messages("dlq").len(), 1);
    w.ledger.fail_writes.set(false);
    w.clock.advance(Duration::minutes(1));
    let report = w.heal_all().await;
    assert!(matches!(
        report.messages[0].outcome,
        Outcome::Archived { .. }
    ));
    assert!(w.queues.messages("dlq").is_empty());
    assert_eq!(w.ledger.all().len(), 1);
}

#[tokio::test]
async fn a_send_failure_is_retried_later_and_a_missing_queue_archives() {
    let w = world();
    w.fail(&fresh(b"{\"order\":9}"), "503 Service Unavailable")
        .await;
    w.queues.fail_send.set(true);
    let report = w.heal_all().await;
    assert!(matches!(report.messages[0].outcome, Outcome::Failed { .. }));
    assert_eq!(w.queues.messages("dlq").len(), 1);
    w.queues.fail_send.set(false);

    w.fail_from(
        "gone-queue",
        &fresh(b"{\"order\":10}"),
        "503 Service Unavailable",
    )
    .await;
    w.clock.advance(Duration::minutes(1));
    let report = w.heal_all().await;
    let outcomes: Vec<&Outcome> = report.messages.iter().map(|r| &r.outcome).collect();
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Requeued { .. })),
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Archived { .. })),
        "{outcomes:?}"
    );
    assert!(
        w.archive
            .records()
            .iter()
            .any(|r| r.reason.contains("gone-queue"))
    );
    // A dependency failure is not alerted on by default, but one that cannot go back to its
    // queue is: every such failure is archived until the queue is back.
    let alerts = w.alerter.sent();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].source.as_deref(), Some("gone-queue"));
    assert!(
        alerts[0]
            .error
            .starts_with("re-queue to gone-queue impossible"),
        "the alert says what is wrong: {}",
        alerts[0].error
    );
}

#[tokio::test]
async fn a_source_that_names_the_dlq_itself_is_not_re_queued_into_it() {
    let w = world();
    w.fail_from(
        "arn:aws:sqs:us-east-1:123456789012:dlq",
        &fresh(b"{\"order\":12}"),
        "503 Service Unavailable",
    )
    .await;
    let report = w.heal_all().await;
    assert!(
        matches!(report.messages[0].outcome, Outcome::Archived { .. }),
        "{:?}",
        report.messages[0].outcome
    );
    assert!(
        w.queues.messages("dlq").is_empty(),
        "nothing went back into the DLQ"
    );
    let reason = &w.archive.records()[0].reason;
    assert!(reason.contains("it is the DLQ being healed"), "{reason}");
    assert_eq!(w.alerter.sent().len(), 1, "a person is told");
}

#[test]
fn queue_references_name_the_same_queue_by_name_and_account() {
    use crate::engine::same_queue;
    let url = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-dlq";
    let arn = "arn:aws:sqs:us-east-1:123456789012:orders-dlq";
    assert!(same_queue(url, arn));
    assert!(same_queue("orders-dlq", arn));
    assert!(same_queue("orders-dlq", url));
    assert!(same_queue("orders-dlq", "orders-dlq"));
    assert!(!same_queue("orders", url));
    assert!(!same_queue(
        "arn:aws:sqs:us-east-1:999999999999:orders-dlq",
        url
    ));
    assert!(!same_queue("orders-dlq.fifo", "orders-dlq"));
}

#[tokio::test]
async fn unknown_source_uses_the_default_target_or_archives() {
    let native = ReceivedMessage {
        redrive_source: None,
        ..fresh(b"{\"order\":11}")
    };
    let rules = RuleSet::from_toml(
        "[policy.unknown]\naction = \"requeue\"\nmax_attempts = 1\n[[rule]]\nname = \"all\"\nclass = \"unknown\"\n",
        "test",
    )
    .unwrap();
    let w = world_with(rules, Some("orders"));
    w.queues
        .send("dlq", &[OutgoingMessage::new("e", native.body.clone())])
        .await
        .unwrap();
    let report = w.heal_all().await;
    assert!(
        matches!(&report.messages[0].outcome, Outcome::Requeued { queue, .. } if queue == "orders")
    );

    let rules = RuleSet::from_toml(
        "[policy.unknown]\naction = \"requeue\"\nmax_attempts = 1\n[[rule]]\nname = \"all\"\nclass = \"unknown\"\n",
        "test",
    )
    .unwrap();
    let w = world_with(rules, None);
    w.queues
        .send("dlq", &[OutgoingMessage::new("e", native.body)])
        .await
        .unwrap();
    let report = w.heal_all().await;
    assert!(matches!(
        report.messages[0].outcome,
        Outcome::Archived { .. }
    ));
    assert!(
        w.archive.records()[0]
            .reason
            .contains("source queue is unknown")
    );
}

#[tokio::test]
async fn long_backoff_parks_in_the_dlq_then_requeues_when_due() {
    let rules = RuleSet::from_toml(
        "[policy.dependency]\naction = \"requeue\"\nmax_attempts = 3\nbase_delay_seconds = 3600\nmax_delay_seconds = 3600\n[[rule]]\nname = \"dep\"\nclass = \"dependency\"\n",
        "test",
    )
    .unwrap();
    let mut w = world_with(rules, None);
    // Full jitter may draw a short delay; draw until it parks, from a fixed seed.
    let mut seed = 0;
    let parked = loop {
        w.fail(&fresh(b"{\"order\":12}"), "payment gateway 503")
            .await;
        let report = w.heal_all().await;
        if let Outcome::Parked { seconds } = report.messages[0].outcome {
            break seconds;
        }
        seed += 1;
        assert!(seed < 20, "never parked");
        let rules = RuleSet::from_toml(
            "[policy.dependency]\naction = \"requeue\"\nmax_attempts = 3\nbase_delay_seconds = 3600\nmax_delay_seconds = 3600\n[[rule]]\nname = \"dep\"\nclass = \"dependency\"\n",
            "test",
        )
        .unwrap();
        w = world_with(rules, None);
    };
    assert!(parked > 900);
    assert_eq!(
        w.queues.messages("dlq").len(),
        1,
        "parked messages stay in the DLQ"
    );
    assert_eq!(w.ledger.all()[0].action, RecordedAction::Parked);
    assert!(
        w.heal_all().await.messages.is_empty(),
        "invisible while parked"
    );
    w.clock.advance(Duration::seconds(parked as i64 + 1));
    let report = w.heal_all().await;
    assert!(matches!(
        report.messages[0].outcome,
        Outcome::Requeued {
            delay_seconds: 0,
            ..
        }
    ));
    assert!(w.queues.messages("dlq").is_empty());
    assert_eq!(w.queues.messages("orders").len(), 1);
    let records = w.ledger.all();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, RecordedAction::Requeued);
}

#[tokio::test]
async fn hostile_bodies_and_contexts_are_archived_with_a_reason() {
    let w = world();
    let mut deep = "[".repeat(100_000);
    deep.push_str(&"]".repeat(100_000));
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![b'x'; 1024 * 1024],
        vec![0xff, 0xfe, 0x00, 0x80],
        deep.into_bytes(),
        b"{\"truncated\": ".to_vec(),
    ];
    for (i, body) in bodies.iter().enumerate() {
        let mut message = fresh(body);
        message.message_id = format!("h{i}");
        w.fail(&message, "Task timed out after 30.00 seconds").await;
    }
    let contexts = [
        "{\"v\":1,\"error\":{\"message\":\"cut",
        "{\"v\":9,\"error\":{\"message\":\"future\"}}",
        "{\"v\":1,\"error\":{\"message\":[1]},\"failed_at\":\"x\"}",
    ];
    for (i, context) in contexts.iter().enumerate() {
        let mut message = OutgoingMessage::new(format!("c{i}"), b"{\"ok\":true}".to_vec());
        message
            .attributes
            .insert(CONTEXT_ATTRIBUTE.into(), Attribute::string(*context));
        w.queues.send("dlq", &[message]).await.unwrap();
    }
    let report = w.heal_all().await;
    assert_eq!(report.messages.len(), bodies.len() + contexts.len());
    assert_eq!(
        report.tally().archived,
        bodies.len() + contexts.len(),
        "{report:#?}"
    );
    let records = w.archive.records();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.class == FailureClass::BadPayload)
            .count(),
        bodies.len()
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r.class == FailureClass::Unknown)
            .count(),
        contexts.len()
    );
    assert!(records.iter().all(|r| !r.reason.is_empty()));
    assert!(
        records
            .iter()
            .filter(|r| r.class == FailureClass::Unknown)
            .all(|r| r.context_problem.is_some())
    );
    let binary = records
        .iter()
        .find(|r| r.body_b64.is_some())
        .expect("the non-UTF-8 body is kept in base64");
    assert_eq!(binary.body_bytes().unwrap(), vec![0xff, 0xfe, 0x00, 0x80]);
    assert!(w.queues.messages("dlq").is_empty());
}

#[tokio::test]
async fn lambda_mode_leaves_deletes_to_the_caller_and_reports_parked_as_unsettled() {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    ));
    let queues = MemoryQueues::new(clock.clone());
    queues.create("orders");
    let ports = Ports {
        dlq: queues.queue("dlq"),
        queues: queues.clone(),
        ledger: Arc::new(MemoryLedger::default()),
        archive: Arc::new(MemoryArchive::default()),
        alerter: Arc::new(MemoryAlerter::new(DEFAULT_ALERT_WINDOW)),
        metrics: Arc::new(MemoryMetrics::default()),
    };
    let engine = Engine::new(
        Arc::new(RuleSet::defaults()),
        ports,
        clock.clone(),
        EngineConfig {
            delete_handled: false,
            ..EngineConfig::default()
        },
    );
    let dead = dead_letter_for(
        &fresh(b"{}"),
        ErrorInfo::message("timed out"),
        "c",
        "orders",
        clock.now(),
    );
    queues.send("dlq", &[dead]).await.unwrap();
    let batch = engine
        .ports()
        .dlq
        .receive(10, std::time::Duration::ZERO)
        .await
        .unwrap();
    let report = engine.heal_batch(batch).await;
    assert!(report.messages[0].is_settled());
    assert!(!report.messages[0].deleted);
    assert_eq!(report.not_settled().count(), 0);
    assert_eq!(queues.messages("dlq").len(), 1, "the caller deletes");
}

#[derive(Debug, Clone)]
enum Fault {
    None,
    Send,
    Archive,
    Ledger,
    Delete,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        4 => Just(Fault::None),
        1 => Just(Fault::Send),
        1 => Just(Fault::Archive),
        1 => Just(Fault::Ledger),
        1 => Just(Fault::Delete),
    ]
}

const ERRORS: [&str; 6] = [
    "401 Unauthorized",
    "validation failed: user is required",
    "Task timed out after 30.00 seconds",
    "JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
    "503 Service Unavailable",
    "something odd",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Whatever fails and whenever, every message ends in exactly one place: the DLQ, the source
    /// queue, or the archive; and no key is re-queued more often than its policy allows.
    #[test]
    fn nothing_is_lost(errors in proptest::collection::vec(0usize..6, 1..25), faults in proptest::collection::vec(fault(), 1..12)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let w = world();
            for (i, error) in errors.iter().enumerate() {
                let mut message = fresh(format!("{{\"order\":{i}}}").as_bytes());
                message.message_id = format!("p{i}");
                w.fail(&message, ERRORS[*error]).await;
            }
            for fault in &faults {
                w.queues.fail_send.set(matches!(fault, Fault::Send));
                w.archive.fail.set(matches!(fault, Fault::Archive));
                w.ledger.fail.set(matches!(fault, Fault::Ledger));
                w.queues.fail_delete.set(matches!(fault, Fault::Delete));
                w.heal_all().await;
                w.clock.advance(Duration::minutes(5));
                // Everything re-queued fails again, as if the outage persists.
                w.queues.fail_send.set(false);
                w.queues.fail_delete.set(false);
                for message in w.take_from_orders().await {
                    let error = ERRORS[message.body[9] as usize % 6];
                    w.fail(&message, error).await;
                }
            }
            w.queues.fail_send.set(false);
            w.archive.fail.set(false);
            w.ledger.fail.set(false);
            w.queues.fail_delete.set(false);
            // One healing pass without faults settles redeliveries of messages whose delete failed.
            w.clock.advance(Duration::minutes(5));
            w.heal_all().await;
            let mut archived_keys = std::collections::BTreeSet::new();
            for record in w.archive.records() {
                archived_keys.insert(record.body.clone().unwrap());
            }
            let in_dlq: Vec<String> = w.queues.messages("dlq").into_iter().map(|m| {
                crate::letter::OpenedLetter::open(ReceivedMessage {
                    message_id: m.message_id, receipt_handle: String::new(), body: m.message.body,
                    attributes: m.message.attributes, receive_count: 1, redrive_source: None, sent_at: None, group_id: None,
                }).message.body
            }).map(|b| String::from_utf8(b).unwrap()).collect();
            let in_orders: Vec<String> = w.queues.messages("orders").into_iter().map(|m| String::from_utf8(m.message.body).unwrap()).collect();
            for i in 0..errors.len() {
                let body = format!("{{\"order\":{i}}}");
                let places = archived_keys.contains(&body) as usize
                    + in_dlq.iter().filter(|b| **b == body).count()
                    + in_orders.iter().filter(|b| **b == body).count();
                prop_assert!(places >= 1, "order {} lost", i);
                prop_assert!(places == 1, "order {} is in {} places", i, places);
            }
            let mut per_key: BTreeMap<String, u32> = BTreeMap::new();
            for record in w.ledger.all() {
                if record.action == RecordedAction::Requeued {
                    *per_key.entry(record.key).or_default() += 1;
                }
            }
            let max = w.engine.rules().policies().get(FailureClass::Dependency).max_attempts.max(
                w.engine.rules().policies().get(FailureClass::Timeout).max_attempts);
            prop_assert!(per_key.values().all(|n| *n <= max), "{:?}", per_key);
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn a_body_seen_again_after_its_key_was_archived_starts_a_new_key() {
    // Like DynamoDB's digest items, the digest points at the key's last re-queue (attempt 1)
    // although the key was archived since (attempt 2, a record without a digest entry).
    let w = world();
    w.fail(&fresh(b"{\"order\":42}"), "ReadTimeout: read timed out")
        .await;
    let first = w.heal_all().await;
    let key = first.messages[0].key.clone();
    let requeued = w.ledger.all().remove(0);
    assert_eq!(requeued.action, RecordedAction::Requeued);
    let archived = LedgerRecord {
        attempt: 2,
        action: RecordedAction::Archived,
        body_digest: "not-this-body".into(),
        at: requeued.at - Duration::seconds(1),
        ..requeued
    };
    w.ledger.record(&[archived]).await.unwrap();
    w.clock.advance(Duration::hours(1));
    w.take_from_orders().await;
    // The same body again, with no context: a new order that happens to look the same.
    w.fail(&fresh(b"{\"order\":42}"), "ReadTimeout: read timed out")
        .await;
    let again = w.heal_all().await;
    assert_ne!(
        again.messages[0].key, key,
        "a new message, not the archived key"
    );
    assert!(
        matches!(again.messages[0].outcome, Outcome::Requeued { .. }),
        "{:?}",
        again.messages[0].outcome
    );
}

#[tokio::test]
async fn both_runs_the_second_future_while_the_first_waits() {
    let log = std::sync::Mutex::new(Vec::new());
    let note = |what: &'static str| log.lock().unwrap().push(what);
    let mut waited = false;
    let first = std::future::poll_fn(|cx| {
        if waited {
            note("first done");
            return Poll::Ready(1);
        }
        note("first waits");
        waited = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    });
    let second = async {
        note("second done");
        "two"
    };
    assert_eq!(both(first, second).await, (1, "two"));
    assert_eq!(
        *log.lock().unwrap(),
        ["first waits", "second done", "first done"]
    );
}

/// A message re-queued once, taken from its source queue as its consumer would receive it.
async fn requeued_once(w: &World, body: &[u8], error: &str) -> ReceivedMessage {
    w.fail(&fresh(body), error).await;
    w.heal_all().await;
    w.clock.advance(Duration::hours(2));
    w.take_from_orders().await.remove(0)
}

#[tokio::test]
async fn a_twin_of_a_decided_copy_is_settled_as_already_handled() {
    let w = world();
    let copy = requeued_once(&w, b"{\"order\":7}", "Task timed out after 30.00 seconds").await;
    // The same copy dead-lettered twice: a crash between the re-queue and its ledger record, or
    // a consumer handed the message twice.
    for _ in 0..2 {
        w.fail(&copy, "Task timed out after 30.00 seconds").await;
    }
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let batch = w.receive_from_dlq(1).await;
        outcomes.extend(
            w.engine
                .heal_batch(batch)
                .await
                .messages
                .into_iter()
                .map(|r| r.outcome),
        );
    }
    assert!(
        matches!(outcomes[0], Outcome::Requeued { .. }),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], Outcome::AlreadyHandled, "{outcomes:?}");
    let attempts: Vec<u32> = w.ledger.all().iter().map(|r| r.attempt).collect();
    assert_eq!(
        attempts.len(),
        2,
        "attempt 1 and 2, once each: {attempts:?}"
    );
    assert_eq!(w.queues.messages("orders").len(), 1, "one copy goes on");
    assert!(w.queues.messages("dlq").is_empty());
}

#[tokio::test]
async fn twins_in_one_batch_are_handled_once() {
    let w = world();
    let copy = requeued_once(&w, b"{\"order\":8}", "Task timed out after 30.00 seconds").await;
    for _ in 0..3 {
        w.fail(&copy, "Task timed out after 30.00 seconds").await;
    }
    let report = w.heal_all().await;
    let tally = report.tally();
    assert_eq!(
        (tally.requeued, tally.duplicates),
        (1, 2),
        "{:?}",
        report.messages
    );
    assert_eq!(w.queues.messages("orders").len(), 1);
    assert_eq!(w.ledger.all().len(), 2);
}

#[tokio::test]
async fn two_bodies_with_one_heal_block_in_one_batch_take_attempts_of_their_own() {
    let w = world();
    let copy = requeued_once(&w, b"{\"order\":18}", "Task timed out after 30.00 seconds").await;
    // A consumer that copies one message's `heal` block onto another (a fan-out, a buggy
    // library): two bodies under one key and attempt count.
    let other = ReceivedMessage {
        body: b"{\"order\":19}".to_vec(),
        ..copy.clone()
    };
    w.fail(&copy, "Task timed out after 30.00 seconds").await;
    w.fail(&other, "Task timed out after 30.00 seconds").await;
    let report = w.heal_all().await;
    assert_eq!(report.tally().requeued, 2, "{:?}", report.messages);
    let attempts: Vec<u32> = w.ledger.all().iter().map(|r| r.attempt).collect();
    assert_eq!(
        attempts.len(),
        3,
        "one record each, none written over: {attempts:?}"
    );
    let mut sorted = attempts.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, vec![1, 2, 3], "{attempts:?}");
}

#[tokio::test]
async fn a_stale_copy_after_its_key_was_archived_does_not_reopen_it() {
    let w = world();
    let first = requeued_once(&w, b"{\"order\":9}", "Task timed out after 30.00 seconds").await;
    // The copy goes on failing until the key is archived...
    let mut copy = first.clone();
    loop {
        w.fail(&copy, "Task timed out after 30.00 seconds").await;
        w.heal_all().await;
        w.clock.advance(Duration::hours(2));
        match w.take_from_orders().await.pop() {
            Some(next) => copy = next,
            None => break,
        }
    }
    let records_before = w.ledger.all();
    let archived = records_before
        .iter()
        .filter(|r| r.action == RecordedAction::Archived)
        .count();
    assert_eq!(archived, 1);
    // ...then its stale twin from attempt 1 fails.
    w.fail(&first, "Task timed out after 30.00 seconds").await;
    let report = w.heal_all().await;
    assert_eq!(report.messages[0].outcome, Outcome::AlreadyHandled);
    assert_eq!(w.ledger.all(), records_before, "no decision written over");
    assert_eq!(w.archive.records().len(), 1, "archived once");
    assert!(w.queues.messages("orders").is_empty());
}

#[tokio::test]
async fn a_copy_whose_next_attempt_was_only_parked_is_handled() {
    // The parked copy may have been moved back to its source by an operator: this copy may be
    // the only one left.
    let w = world();
    let copy = requeued_once(&w, b"{\"order\":10}", "Task timed out after 30.00 seconds").await;
    let key = w.ledger.all()[0].key.clone();
    let parked = LedgerRecord {
        action: RecordedAction::Parked,
        dlq_message_id: "parked-then-redriven".into(),
        due_at: Some(w.clock.now() + Duration::hours(3)),
        ..crate::contract::ledger_record(
            &key,
            2,
            w.clock.now(),
            &crate::letter::body_digest(&copy.body),
        )
    };
    w.ledger.record(&[parked]).await.unwrap();
    w.fail(&copy, "Task timed out after 30.00 seconds").await;
    let report = w.heal_all().await;
    assert!(
        matches!(report.messages[0].outcome, Outcome::Requeued { .. }),
        "{:?}",
        report.messages[0].outcome
    );
}

#[tokio::test]
async fn distinct_messages_with_one_body_are_never_taken_for_copies_of_one() {
    // Four orders with the same body fail one after another: each later one finds the first's
    // key by the body's digest while it is being retried. Then all four fail again and come back
    // in one batch.
    let w = world();
    for n in 0..4 {
        let order = ReceivedMessage {
            message_id: format!("order-{n}"),
            ..fresh(b"{}")
        };
        w.fail(&order, "Task timed out after 30.00 seconds").await;
        w.heal_all().await;
    }
    w.clock.advance(Duration::hours(1));
    let copies = w.take_from_orders().await;
    assert_eq!(copies.len(), 4);
    for copy in &copies {
        w.fail(copy, "Task timed out after 30.00 seconds").await;
    }
    let again = w.heal_all().await;
    assert_eq!(again.messages.len(), 4);
    assert!(
        again
            .messages
            .iter()
            .all(|m| matches!(m.outcome, Outcome::Requeued { .. })),
        "{:?}",
        again
            .messages
            .iter()
            .map(|m| &m.outcome)
            .collect::<Vec<_>>()
    );
    w.clock.advance(Duration::hours(1));
    assert_eq!(w.take_from_orders().await.len(), 4, "all four go on");
    let keys: HashSet<String> = w.ledger.all().into_iter().map(|r| r.key).collect();
    assert_eq!(keys.len(), 4, "a key each: {keys:?}");
}

#[tokio::test]
async fn a_context_key_the_ledger_cannot_hold_is_replaced_by_the_message_id() {
    for key in [String::new(), "k".repeat(MAX_KEY_BYTES + 1), "a\nb".into()] {
        let w = world();
        let context = format!(
            r#"{{"v":1,"error":{{"message":"Task timed out after 30.00 seconds"}},"source":"orders","failed_at":"2026-11-27T09:59:00Z","heal":{{"key":{},"attempts":1,"first_failed_at":"2026-11-27T09:59:00Z","last_class":"timeout"}}}}"#,
            serde_json::to_string(&key).unwrap()
        );
        let mut letter = OutgoingMessage::new("e", b"{\"order\":9}".to_vec());
        letter
            .attributes
            .insert(CONTEXT_ATTRIBUTE.into(), Attribute::string(context));
        w.queues.send("dlq", &[letter]).await.unwrap();
        let report = w.heal_all().await;
        let message = &report.messages[0];
        assert!(
            matches!(message.outcome, Outcome::Requeued { .. }),
            "key {key:?}: {:?}",
            message.outcome
        );
        assert_eq!(message.key, message.message_id, "key {key:?}");
        let records = w.ledger.all();
        assert_eq!(records[0].key, message.message_id);
        assert_eq!(records[0].attempt, 2, "the context's attempts still count");
    }
}

#[tokio::test]
async fn an_alert_names_its_source_without_the_credentials_in_it() {
    let w = world();
    w.fail_from(
        "https://user:SRCPW20@sqs.example/q",
        &fresh(b"{\"order\":1}"),
        "401 Unauthorized",
    )
    .await;
    w.heal_all().await;
    let sent = w.alerter.sent();
    let source = sent[0].source.as_deref().unwrap();
    assert!(!source.contains("SRCPW20"), "{source}");
    assert!(source.contains("sqs.example/q"), "{source}");
    let recorded = w.ledger.all()[0].source.clone().unwrap();
    assert!(
        !recorded.contains("SRCPW20"),
        "the ledger keeps it too: {recorded}"
    );
}

#[tokio::test]
async fn a_parked_message_without_a_context_is_requeued_when_due_after_its_body_was_seen_again() {
    // A message without a context took up attempt 2 of its body's key under its own key and was
    // parked; another message with the same body was parked since, at attempt 3, and holds the
    // body's latest record. When the first comes due, its own parked record decides. (Without a
    // context, the default target says where it goes back to.)
    let w = world_with(RuleSet::defaults(), Some("orders"));
    let body = b"{\"order\":77}";
    let stripped = OutgoingMessage::new("e", body.to_vec());
    w.queues.send("dlq", &[stripped]).await.unwrap();
    let id = w.receive_from_dlq(1).await[0].message_id.clone();
    let record = |key: &str, attempt, action, dlq_message_id: &str, minutes| LedgerRecord {
        key: key.into(),
        attempt,
        class: FailureClass::Dependency,
        rule: "dependency".into(),
        action,
        alerted: false,
        alert_held_back: false,
        at: w.clock.now() - Duration::minutes(minutes),
        source: Some("orders".into()),
        archive_ref: None,
        error: "503".into(),
        dlq_message_id: dlq_message_id.into(),
        body_digest: body_digest(body),
        due_at: (action == RecordedAction::Parked).then(|| w.clock.now() - Duration::minutes(1)),
    };
    w.ledger
        .record(&[
            record("earlier", 1, RecordedAction::Requeued, "dlq-earlier", 30),
            record(&id, 2, RecordedAction::Parked, &id, 20),
            record("other", 3, RecordedAction::Parked, "dlq-other", 10),
        ])
        .await
        .unwrap();
    w.clock.advance(Duration::seconds(31));
    let report = w.heal_all().await;
    assert_eq!(report.messages.len(), 1);
    assert!(
        matches!(report.messages[0].outcome, Outcome::Requeued { .. }),
        "{:?}",
        report.messages[0].outcome
    );
    let mine: Vec<u32> = w
        .ledger
        .all()
        .into_iter()
        .filter(|r| r.key == id)
        .map(|r| r.attempt)
        .collect();
    assert_eq!(mine, [2], "re-queued as attempt 2, no new attempt");
}

/// A DLQ whose deletes never finish while `hanging` is set: the process dies there.
struct HangingDelete {
    inner: Arc<crate::testing::MemoryQueue>,
    hanging: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl MessageSource for HangingDelete {
    fn queue_id(&self) -> &str {
        self.inner.queue_id()
    }
    async fn receive(
        &self,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<Vec<ReceivedMessage>, PortError> {
        self.inner.receive(max, wait).await
    }
    async fn delete(&self, receipt_handles: &[String]) -> Result<EntryResults<()>, PortError> {
        if self.hanging.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.delete(receipt_handles).await
    }
    async fn change_visibility(
        &self,
        entries: &[(String, u32)],
    ) -> Result<EntryResults<()>, PortError> {
        self.inner.change_visibility(entries).await
    }
}

#[tokio::test]
async fn a_batch_that_dies_at_its_delete_is_counted_once_and_its_redelivery_as_duplicates() {
    let w = world();
    let dlq = Arc::new(HangingDelete {
        inner: w.queues.queue("dlq"),
        hanging: std::sync::atomic::AtomicBool::new(true),
    });
    let ports = Ports {
        dlq: dlq.clone(),
        queues: w.queues.clone(),
        ledger: w.ledger.clone(),
        archive: w.archive.clone(),
        alerter: w.alerter.clone(),
        metrics: w.metrics.clone(),
    };
    let engine = Engine::new(
        Arc::new(RuleSet::defaults()),
        ports,
        w.clock.clone(),
        EngineConfig::default(),
    );
    for i in 0..3 {
        w.fail(
            &fresh(format!("{{\"order\":{i}}}").as_bytes()),
            "401 Unauthorized",
        )
        .await;
    }
    let batch = dlq.receive(10, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(batch.len(), 3);
    let died = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        engine.heal_batch(batch),
    )
    .await;
    assert!(died.is_err(), "the delete never finished");
    // After the crash the batch comes back and is found in the ledger.
    dlq.hanging
        .store(false, std::sync::atomic::Ordering::SeqCst);
    w.clock.advance(Duration::minutes(1));
    let again = dlq.receive(10, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(engine.heal_batch(again).await.tally().duplicates, 3);
    assert_eq!(
        w.metrics.total(m::RECEIVED),
        3.0,
        "counted before the delete"
    );
    assert_eq!(w.metrics.total(m::ARCHIVED), 3.0);
    assert_eq!(w.metrics.total(m::DUPLICATES), 3.0);
}
