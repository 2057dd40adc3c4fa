//! `dlq-healer run --backend aws` through a fault-injecting proxy (500s, 503s, throttling,
//! connections dropped before and after the emulator acted), then checked by clients talking to
//! the emulator directly: every dead letter is accounted for exactly once, one ledger decision
//! per (key, attempt), and the only duplicates are SQS's at-least-once re-queues, counted.

mod common;
#[path = "common/fault_proxy.rs"]
mod fault_proxy;

use aws_sdk_sqs::types::QueueAttributeName;
use common::{alert_inbox, depth, env_pairs, healer, healer_at, run_ok, unique};
use dlq_healer_aws::{AwsClients, DynamoLedger, S3Archive, SqsSender};
use dlq_healer_core::consumer::dead_letter_for;
use dlq_healer_core::context::ContextReading;
use dlq_healer_core::message::{CONTEXT_ATTRIBUTE, ReceivedMessage};
use dlq_healer_core::ports::{Archive, QueueSender};
use dlq_healer_core::records::{ArchiveRecord, ArchiveRef, RecordedAction};
use fault_proxy::{Fault, FaultProxy};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const MESSAGES: usize = 60;
const MAX_PASSES: usize = 25;
const VARIABLES: [&str; 5] = [
    "MAIN_QUEUE_URL",
    "DLQ_URL",
    "ARCHIVE_BUCKET",
    "FAILED_TABLE",
    "ALERT_TOPIC_ARN",
];

/// The default rules with re-queue backoffs of one second, so that re-queued messages are
/// visible on the main queue soon.
fn fast_rules(dir: &std::path::Path) -> std::path::PathBuf {
    let defaults = run_ok(healer().arg("default-rules")).stdout;
    let text = String::from_utf8(defaults)
        .unwrap()
        .replace("base_delay_seconds = 2\n", "base_delay_seconds = 1\n")
        .replace("base_delay_seconds = 10\n", "base_delay_seconds = 1\n")
        .replace("max_delay_seconds = 900\n", "max_delay_seconds = 1\n")
        .replace("max_delay_seconds = 3600 ", "max_delay_seconds = 1 ");
    assert!(
        !text.contains("max_delay_seconds = 3600"),
        "the default rules changed; adapt this test"
    );
    let path = dir.join("rules.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Seed the DLQ with the original's mix as the consumer library dead-letters it; the DLQ
/// message ids (the ledger keys) with their expected classes.
async fn seed_dlq(clients: &AwsClients, dlq: &str, source: &str) -> BTreeMap<String, &'static str> {
    let mix = dlq_healer_demo::dead_letter_mix(MESSAGES, 11);
    let letters = dlq_healer_demo::dead_letters_as_sent(MESSAGES, 11, source, chrono::Utc::now());
    let sender = SqsSender::new(clients.sqs.clone());
    let mut keys = BTreeMap::new();
    for (chunk, letters) in mix.chunks(10).zip(letters.chunks(10)) {
        for (letter, id) in chunk.iter().zip(sender.send(dlq, letters).await.unwrap()) {
            keys.insert(id.unwrap(), letter.class);
        }
    }
    keys
}

async fn receive_all(clients: &AwsClients, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    let mut empty = 0;
    // Re-queues carry a one-second delay: poll until two long polls in a row find nothing.
    while empty < 2 {
        let got = clients
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(300)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        empty = if got.is_empty() { empty + 1 } else { 0 };
        all.extend(got);
    }
    all
}

async fn archived_lines(clients: &AwsClients, bucket: &str) -> Vec<ArchiveRecord> {
    let listing = clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut lines = Vec::new();
    for object in listing.contents() {
        let body = clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(object.key().unwrap())
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            lines.push(serde_json::from_slice(line).unwrap());
        }
    }
    lines
}

/// The resources `setup` made under a fresh prefix, their DLQ seeded with the original's mix.
struct SeededDlq {
    env: BTreeMap<String, String>,
    clients: AwsClients,
    dlq: String,
    main_queue: String,
    /// The DLQ message ids (the ledger keys) with their expected classes.
    expected: BTreeMap<String, &'static str>,
    rules: std::path::PathBuf,
    _rules_dir: tempfile::TempDir,
}

/// Set up resources under a prefix starting with `name`, with a DLQ whose deliveries come back
/// after 2 s (not 30) and [`fast_rules`], and seed the DLQ.
async fn seeded_dlq(name: &str) -> SeededDlq {
    let prefix = unique(name);
    let env: BTreeMap<String, String> = env_pairs(
        &run_ok(healer().args(["setup", "--backend", "aws", "--prefix", &prefix])).stdout,
    )
    .into_iter()
    .collect();
    let clients = common::clients().await;
    let dlq = env["DLQ_URL"].clone();
    let main_queue = env["MAIN_QUEUE_URL"].clone();
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(&dlq)
        .attributes(QueueAttributeName::VisibilityTimeout, "2")
        .send()
        .await
        .unwrap();
    let rules_dir = tempfile::Builder::new()
        .prefix("dlq-healer-faults-rules-")
        .tempdir()
        .unwrap();
    let rules = fast_rules(rules_dir.path());
    let expected = seed_dlq(&clients, &dlq, &main_queue).await;
    assert_eq!(expected.len(), MESSAGES);
    SeededDlq {
        env,
        clients,
        dlq,
        main_queue,
        expected,
        rules,
        _rules_dir: rules_dir,
    }
}

/// `run --backend aws --until-empty` through the proxy, on the resources in `env` with `rules`
/// (the default rules without), the environment variables `settings` and more `args`: its output
/// and its stderr as text.
async fn drain_dlq(
    proxy: &FaultProxy,
    env: &BTreeMap<String, String>,
    rules: Option<&std::path::Path>,
    settings: &[(&str, &str)],
    args: &[&str],
) -> (std::process::Output, String) {
    let mut command = healer_at(&proxy.endpoint);
    for name in VARIABLES {
        command.env(name, &env[name]);
    }
    if let Some(rules) = rules {
        command.env("DLQ_HEALER_RULES", rules);
    }
    command.envs(settings.iter().copied());
    command
        .args([
            "run",
            "--backend",
            "aws",
            "--until-empty",
            "--wait-seconds",
            "0",
        ])
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output, stderr)
}

/// Heal ~60 dead letters of the original's mix through the proxy at `rate`, with the SDK's
/// retries limited to `max_attempts` per call, then account for every one of them.
async fn heal_through_faults(rate: f64, seed: u64, max_attempts: u32, drop_a_send_answer: bool) {
    let emulator = common::emulator();
    let SeededDlq {
        env,
        clients,
        dlq,
        main_queue,
        expected,
        rules,
        _rules_dir,
    } = seeded_dlq("faults").await;
    let inbox = alert_inbox(&clients, &env["ALERT_TOPIC_ARN"]).await;

    let proxy = FaultProxy::start(&emulator.endpoint, rate, seed).await;
    if drop_a_send_answer {
        // A re-queue that reaches SQS while its answer is lost: the nasty case, for certain.
        proxy.force("SQS.SendMessageBatch", Fault::DropAfter, 1);
    }
    let mut passes = 0;
    let mut acted_but_failed = 0;
    let mut exit_codes = Vec::new();
    while depth(&clients, &dlq).await > 0 {
        passes += 1;
        assert!(
            passes <= MAX_PASSES,
            "the DLQ is not empty after {MAX_PASSES} passes"
        );
        let max_attempts = max_attempts.to_string();
        let (output, stderr) = drain_dlq(
            &proxy,
            &env,
            Some(&rules),
            &[("AWS_MAX_ATTEMPTS", max_attempts.as_str())],
            &[],
        )
        .await;
        // 0: all healed; 1: some failed and stay in the DLQ. Anything else is a crash.
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "pass {passes}: {:?}\n{stderr}",
            output.status
        );
        exit_codes.push(output.status.code().unwrap());
        acted_but_failed += stderr.matches("acted, but").count() as u64;
        if depth(&clients, &dlq).await > 0 {
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
    }
    proxy.set_enabled(false);
    let stats = proxy.stats();

    // Ledger: exactly one decision per key, attempt 1, of the expected class.
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), env["FAILED_TABLE"].clone());
    let archive = S3Archive::new(clients.s3.clone(), env["ARCHIVE_BUCKET"].clone());
    let mut requeued_keys: BTreeSet<String> = BTreeSet::new();
    let mut archived_keys: BTreeSet<String> = BTreeSet::new();
    for (key, class) in &expected {
        let records = ledger.records_by_key(key).await.unwrap();
        assert_eq!(records.len(), 1, "one decision for {key}: {records:#?}");
        let record = &records[0];
        assert_eq!(record.attempt, 1, "{record:?}");
        assert_eq!(record.class.as_str(), *class, "{record:?}");
        match record.action {
            RecordedAction::Requeued => {
                requeued_keys.insert(key.to_string());
            }
            RecordedAction::Archived => {
                let reference: ArchiveRef = record.archive_ref.as_ref().unwrap().parse().unwrap();
                let line = archive.fetch(&reference).await.unwrap();
                assert_eq!(&line.key, key, "the ledger points at the key's own line");
                archived_keys.insert(key.to_string());
            }
            other => panic!("{key}: unexpected {other:?}"),
        }
    }
    assert_eq!(
        requeued_keys.len() + archived_keys.len(),
        MESSAGES,
        "every message is re-queued or archived, not both"
    );

    // Main queue: every re-queued key is there, no archived key is, each with its heal block;
    // copies beyond one per (key, attempt) are SQS at-least-once re-sends.
    let mut copies: BTreeMap<(String, u32), u64> = BTreeMap::new();
    for message in receive_all(&clients, &main_queue).await {
        let text = message
            .message_attributes()
            .and_then(|a| a.get(CONTEXT_ATTRIBUTE))
            .and_then(|a| a.string_value())
            .expect("a re-queued message carries its dlq-context");
        let ContextReading::Valid(context) = ContextReading::parse(text) else {
            panic!("unreadable context {text}");
        };
        let heal = context.heal.expect("a heal block");
        *copies.entry((heal.key, heal.attempts)).or_default() += 1;
    }
    let on_main: BTreeSet<String> = copies.keys().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        on_main, requeued_keys,
        "re-queued keys and main queue agree"
    );
    assert!(copies.keys().all(|(_, attempt)| *attempt == 1));
    let duplicates: u64 = copies.values().map(|n| n - 1).sum();
    // A duplicate needs a send that took effect unseen (its answer dropped), or a send whose
    // ledger write then failed so that the redelivery sent again.
    assert!(
        duplicates <= stats.unacknowledged_send_entries + acted_but_failed,
        "{duplicates} duplicate re-queues, but only {} unacknowledged send entries and {acted_but_failed} messages acted on without a ledger record",
        stats.unacknowledged_send_entries
    );

    // Archive: every archived key has a line; no re-queued key has one. Copies of a line in a
    // second object come from a PUT that took effect unseen or a failed ledger write.
    let lines = archived_lines(&clients, &env["ARCHIVE_BUCKET"]).await;
    let line_keys: BTreeSet<String> = lines.iter().map(|l| l.key.clone()).collect();
    assert_eq!(line_keys, archived_keys);
    let extra_lines = lines.len() - line_keys.len();
    assert_eq!(depth(&clients, &dlq).await, 0);
    if drop_a_send_answer {
        assert!(stats.unacknowledged_send_entries > 0);
        assert!(
            duplicates > 0,
            "the SDK's retry of a send that took effect re-sends it"
        );
    }
    let alerts = receive_all(&clients, &inbox).await.len();

    let by_kind = |kind: Fault| -> u64 {
        stats
            .faults
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, n)| n)
            .sum()
    };
    eprintln!(
        "FAULTS rate {rate} seed {seed} max_attempts {max_attempts}: {} requests, {} faults \
         (500: {}, 503: {}, throttle: {}, drop before: {}, drop after: {}); {passes} passes, exit codes {exit_codes:?}; \
         {} re-queued, {} archived; {duplicates} duplicate re-queues (unacknowledged send entries {}, acted-but-unrecorded {acted_but_failed}); \
         {extra_lines} extra archive lines; {alerts} alerts published",
        stats.total_requests(),
        stats.total_faults(),
        by_kind(Fault::Status500),
        by_kind(Fault::Status503),
        by_kind(Fault::Throttle),
        by_kind(Fault::DropBefore),
        by_kind(Fault::DropAfter),
        requeued_keys.len(),
        archived_keys.len(),
        stats.unacknowledged_send_entries,
    );
    eprintln!("FAULTS by operation: {:?}", stats.faults);
    if max_attempts > 1 {
        // With the SDK's retries, the auth fingerprint's first alert goes out at once (and
        // possibly twice, when a publish's answer was dropped and the SDK published again).
        assert!(alerts >= 1, "no alert was published");
    }
    assert!(
        stats.total_faults() as f64 >= stats.total_requests() as f64 * rate / 2.0,
        "the proxy injected faults"
    );
}

/// Heal `auth_messages` auth failures of one fingerprint, one per batch, through a proxy that
/// forwards the first `DynamoDB.PutItem` (the alert window's opening) and drops its answer;
/// the alerts and the digests that reached the topic.
async fn alerts_after_a_lost_window_answer(
    max_attempts: u32,
    auth_messages: usize,
) -> (usize, usize) {
    let emulator = common::emulator();
    let prefix = unique("lost-open");
    let env: BTreeMap<String, String> = env_pairs(
        &run_ok(healer().args(["setup", "--backend", "aws", "--prefix", &prefix])).stdout,
    )
    .into_iter()
    .collect();
    let clients = common::clients().await;
    let inbox = alert_inbox(&clients, &env["ALERT_TOPIC_ARN"]).await;
    let now = chrono::Utc::now();
    let letters: Vec<_> = (0..auth_messages)
        .map(|i| {
            let original = ReceivedMessage {
                message_id: format!("o{i}"),
                receipt_handle: String::new(),
                body: format!(r#"{{"order_id":{i}}}"#).into_bytes(),
                attributes: Default::default(),
                receive_count: 1,
                redrive_source: None,
                sent_at: None,
                group_id: None,
            };
            let error = dlq_healer_core::context::ErrorInfo {
                status: Some(401),
                ..dlq_healer_core::context::ErrorInfo::message("401 Unauthorized")
            };
            dead_letter_for(
                &original,
                error,
                "orders-consumer",
                &env["MAIN_QUEUE_URL"],
                now,
            )
        })
        .collect();
    SqsSender::new(clients.sqs.clone())
        .send(&env["DLQ_URL"], &letters)
        .await
        .unwrap();
    let proxy = FaultProxy::start(&emulator.endpoint, 0.0, 1).await;
    proxy.force("DynamoDB.PutItem", Fault::DropAfter, 1);
    let max_attempts = max_attempts.to_string();
    let (output, stderr) = drain_dlq(
        &proxy,
        &env,
        None,
        &[("AWS_MAX_ATTEMPTS", max_attempts.as_str())],
        // One loop: the batches follow one another, so the first one's opening is the one whose
        // answer is dropped. (With two, the second batch's opening can reach the table first.)
        &["--batch-size", "1", "--concurrency", "1"],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        proxy
            .stats()
            .faults
            .get(&("DynamoDB.PutItem".to_string(), Fault::DropAfter)),
        Some(&1)
    );
    let (mut alerts, mut digests) = (0, 0);
    for _ in 0..3 {
        let got = clients
            .sqs
            .receive_message()
            .queue_url(&inbox)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        for notification in got {
            // A digest's headline counts "more messages".
            if notification.body().unwrap_or("").contains("more message") {
                digests += 1;
            } else {
                alerts += 1;
            }
        }
    }
    (alerts, digests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_alert_goes_out_when_the_sdk_retried_a_window_opening_that_took_effect() {
    // The SDK's second attempt finds the window its first attempt opened.
    assert_eq!(alerts_after_a_lost_window_answer(3, 1).await, (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_alert_goes_out_with_the_next_batch_when_a_window_opening_failed_unseen() {
    // Without SDK retries the first batch's alert fails; the second batch finds the window the
    // failed call opened and must still send the window's first alert. The second message is
    // held back in the window, and the stopping run sends its digest.
    assert_eq!(alerts_after_a_lost_window_answer(1, 2).await, (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_accounted_for_once_through_faults_with_sdk_retries() {
    heal_through_faults(0.2, 20, 3, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_accounted_for_once_through_faults_without_sdk_retries() {
    heal_through_faults(0.2, 21, 1, false).await;
}

/// The number before `what` in the run's closing line ("healed 3 batches: 30 requeued, ...").
fn summary_count(stderr: &str, what: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|line| line.starts_with("healed "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    line.split([':', ','])
        .find_map(|part| part.trim().strip_suffix(what))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of {what:?} in {line:?}"))
}

/// [`seeded_dlq`], and a proxy in front of the emulator whose ledger writes take `by` to answer.
async fn seeded_dlq_with_slow_ledger_writes(name: &str, by: Duration) -> (SeededDlq, FaultProxy) {
    let emulator = common::emulator();
    let seeded = seeded_dlq(name).await;
    let proxy = FaultProxy::start(&emulator.endpoint, 0.0, 1).await;
    proxy.slow_down("DynamoDB.BatchWriteItem", by);
    (seeded, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_that_take_longer_than_the_visibility_timeout_are_not_received_twice() {
    // Each batch's ledger write takes 3 s, longer than the DLQ's visibility timeout of 2 s;
    // the batch received meanwhile waits in hand for as long. One loop, so that its receives
    // can be counted.
    let (seeded, proxy) = seeded_dlq_with_slow_ledger_writes("slow", Duration::from_secs(3)).await;
    let args = ["--batch-size", "20", "--concurrency", "1"];
    let (output, stderr) = drain_dlq(&proxy, &seeded.env, Some(&seeded.rules), &[], &args).await;
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(summary_count(&stderr, "already handled"), 0, "{stderr}");
    let handled = ["requeued", "parked", "archived"]
        .iter()
        .map(|what| summary_count(&stderr, what))
        .sum::<u64>();
    assert_eq!(handled as usize, seeded.expected.len(), "{stderr}");
    assert_eq!(depth(&seeded.clients, &seeded.dlq).await, 0);
    let stats = proxy.stats();
    assert_eq!(
        stats.requests.get("SQS.ReceiveMessage"),
        Some(&7),
        "two receives of 10 for each of the 3 batches and one that found the DLQ empty: {stats:?}"
    );
    assert!(
        stats
            .requests
            .get("SQS.ChangeMessageVisibilityBatch")
            .is_some_and(|&calls| calls > 0),
        "the batches in hand were kept invisible: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_hangs_times_out_and_leaves_its_messages_in_the_dlq() {
    // The ledger's writes get no answer for a minute; each attempt may take one second.
    let (seeded, proxy) = seeded_dlq_with_slow_ledger_writes("hung", Duration::from_secs(60)).await;
    let started = std::time::Instant::now();
    let (output, stderr) = drain_dlq(
        &proxy,
        &seeded.env,
        Some(&seeded.rules),
        &[
            ("DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS", "1"),
            ("AWS_MAX_ATTEMPTS", "1"),
        ],
        &["--batch-size", "20", "--concurrency", "1"],
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "the run waited for the hung call: {stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("timeout"), "{stderr}");
    assert_eq!(summary_count(&stderr, "already handled"), 0, "{stderr}");
    // Nothing was recorded, so nothing was deleted: every message is still in the DLQ.
    assert_eq!(
        depth(&seeded.clients, &seeded.dlq).await as usize,
        seeded.expected.len()
    );
}
