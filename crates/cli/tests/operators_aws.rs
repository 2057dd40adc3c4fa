//! The operator commands on the aws backend against the AWS API emulator (`dlq_healer_testkit`):
//! inspect, redrive (dry run, move, rerun), stats, and archive list/show after a healer run.

mod common;

use aws_sdk_sqs::types::MessageAttributeValue;
use serde_json::Value;
use std::collections::HashMap;
use std::process::{Command, Output};

struct Aws {
    endpoint: String,
    env: HashMap<String, String>,
}

impl Aws {
    fn cmd(&self, words: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dlq-healer"));
        command
            .args(words)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .envs(dlq_healer_testkit::aws_env())
            .env_remove("AWS_PROFILE")
            .env("LOG_LEVEL", "warn");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
    }

    fn ok(&self, words: &[&str]) -> Output {
        let output = self.cmd(words).output().expect("the binary runs");
        assert!(
            output.status.success(),
            "{words:?} failed:\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn json(&self, words: &[&str]) -> Value {
        serde_json::from_slice(&self.ok(words).stdout).expect("JSON output")
    }

    /// `run` the healer on `dlq` until it is empty.
    fn heal(&self, dlq: &str) -> Output {
        self.ok(&[
            "run",
            "--backend",
            "aws",
            "--dlq",
            dlq,
            "--until-empty",
            "--wait-seconds",
            "0",
        ])
    }
}

async fn sqs(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::config::Builder::new()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

async fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

async fn dead_letter(
    client: &aws_sdk_sqs::Client,
    dlq: &str,
    source: &str,
    n: u32,
    error_type: &str,
) {
    let context = format!(
        r#"{{"v":1,"error":{{"type":"{error_type}","message":"failed order {n}"}},"source":"{source}","failed_at":"2026-01-01T10:00:00Z"}}"#
    );
    client
        .send_message()
        .queue_url(dlq)
        .message_body(format!(r#"{{"order":{n}}}"#))
        .message_attributes(
            "dlq-context",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(context)
                .build()
                .unwrap(),
        )
        .message_attributes(
            "blob",
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(aws_sdk_sqs::primitives::Blob::new(vec![0u8, 255, n as u8]))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

async fn drain(client: &aws_sdk_sqs::Client, queue: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut out = Vec::new();
    loop {
        let got = client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_redrive_stats_and_archive_on_the_emulator() {
    let mut aws = Aws {
        endpoint: dlq_healer_testkit::emulator().endpoint.clone(),
        env: HashMap::new(),
    };
    let prefix = format!("ops{}", std::process::id());
    let setup = aws.ok(&["setup", "--backend", "aws", "--prefix", &prefix]);
    for line in String::from_utf8_lossy(&setup.stdout).lines() {
        if let Some((k, v)) = line.split_once('=') {
            aws.env.insert(k.to_string(), v.to_string());
        }
    }
    let dlq = aws.env["DLQ_URL"].clone();
    let main = aws.env["MAIN_QUEUE_URL"].clone();
    let client = sqs(&aws.endpoint).await;
    for n in 1..=3 {
        dead_letter(&client, &dlq, &main, n, "ExpiredTokenException").await;
    }
    for n in 4..=5 {
        dead_letter(&client, &dlq, &main, n, "TimeoutError").await;
    }

    let inspection = aws.json(&["inspect", "--backend", "aws", "--dlq", &dlq, "--json"]);
    assert_eq!(inspection["total"], 5, "{inspection}");
    let auth = inspection["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "auth")
        .unwrap();
    assert_eq!(auth["count"], 3);

    let dry = aws.json(&[
        "redrive",
        "--backend",
        "aws",
        "--dlq",
        &dlq,
        "--class",
        "auth",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(dry["moved"].as_array().unwrap().len(), 3, "{dry}");
    let moved = aws.json(&[
        "redrive",
        "--backend",
        "aws",
        "--dlq",
        &dlq,
        "--class",
        "auth",
        "--rate",
        "50",
        "--json",
    ]);
    assert_eq!(moved["moved"].as_array().unwrap().len(), 3, "{moved}");
    let again = aws.json(&[
        "redrive",
        "--backend",
        "aws",
        "--dlq",
        &dlq,
        "--class",
        "auth",
        "--json",
    ]);
    assert_eq!(again["moved"].as_array().unwrap().len(), 0, "{again}");
    let arrived = drain(&client, &main).await;
    assert_eq!(arrived.len(), 3);
    for message in &arrived {
        let attributes = message.message_attributes.as_ref().unwrap();
        let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
        let n = body["order"].as_u64().unwrap() as u8;
        assert_eq!(
            attributes["blob"].binary_value().unwrap().as_ref(),
            &[0u8, 255, n][..]
        );
        assert!(
            attributes["dlq-context"]
                .string_value()
                .unwrap()
                .contains("ExpiredTokenException")
        );
    }

    let stats = aws.json(&["stats", "--backend", "aws", "--dlq", &dlq, "--json"]);
    let dlq_name = dlq.rsplit('/').next().unwrap();
    let row = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == dlq_name)
        .cloned();
    assert_eq!(
        row.map(|r| r["visible"].clone()),
        Some(Value::from(2)),
        "{stats}"
    );

    // Without the ledger table the class counts and decisions cannot be read: said at start
    // rather than shown as zeros or answered with errors later.
    for words in [
        &["stats", "--backend", "aws", "--dlq", &dlq][..],
        &[
            "serve",
            "--backend",
            "aws",
            "--dlq",
            &dlq,
            "--bind",
            "127.0.0.1:0",
        ][..],
    ] {
        let child = aws
            .cmd(words)
            .env_remove("FAILED_TABLE")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let output = common::exited_within(
            child,
            std::time::Duration::from_secs(30),
            &format!("{words:?} kept running without the ledger table"),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{words:?}: {stderr}");
        assert!(stderr.contains("--failed-table"), "{words:?}: {stderr}");
    }

    // A missing DLQ is named.
    let output = aws
        .cmd(&["inspect", "--backend", "aws", "--dlq", "no-such-queue"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-such-queue"));

    // Archive: heal a validation failure, then list and show it.
    dead_letter(&client, &dlq, &main, 6, "ValidationError").await;
    aws.heal(&dlq);
    let listing = aws.json(&[
        "archive",
        "list",
        "--backend",
        "aws",
        "--class",
        "validation",
        "--json",
    ]);
    let key = listing[0]["entry"]["key"]
        .as_str()
        .expect("an archived validation failure")
        .to_string();
    let record = aws.json(&["archive", "show", "--backend", "aws", &key]);
    assert_eq!(record["body"], r#"{"order":6}"#);
    let replay = aws.json(&[
        "archive",
        "replay",
        "--backend",
        "aws",
        "--key",
        &key,
        "--json",
    ]);
    assert_eq!(replay["moved"].as_array().unwrap().len(), 1, "{replay}");

    // Two runs of auth failures within one alert window: the first run's alert goes out, the
    // second run's repeats are held back for the digest, and stats reads them as the metrics do.
    for n in 7..=8 {
        dead_letter(&client, &dlq, &main, n, "ExpiredTokenException").await;
    }
    aws.heal(&dlq);
    for n in 9..=11 {
        dead_letter(&client, &dlq, &main, n, "ExpiredTokenException").await;
    }
    aws.heal(&dlq);
    // Parked messages come from the ledger: those still parked and not yet due, soonest first.
    use dlq_healer_core::ports::Ledger;
    use dlq_healer_core::records::{LedgerRecord, RecordedAction};
    let now = chrono::Utc::now();
    let parked = |key: &str, action: RecordedAction, due_in_minutes: i64| LedgerRecord {
        key: key.into(),
        attempt: 2,
        class: dlq_healer_core::FailureClass::Dependency,
        rule: "dependency".into(),
        action,
        alerted: false,
        alert_held_back: false,
        at: now - chrono::Duration::minutes(1),
        source: Some(main.clone()),
        archive_ref: None,
        error: "503 Service Unavailable".into(),
        dlq_message_id: format!("m-{key}"),
        body_digest: "00".repeat(32),
        due_at: Some(now + chrono::Duration::minutes(due_in_minutes)),
    };
    dlq_healer_aws::DynamoLedger::new(dynamodb(&aws.endpoint).await, &aws.env["FAILED_TABLE"])
        .record(&[
            parked("later", RecordedAction::Parked, 90),
            parked("sooner", RecordedAction::Parked, 30),
            parked("was-due", RecordedAction::Parked, -5),
            parked("requeued", RecordedAction::Requeued, 30),
        ])
        .await
        .unwrap();
    let inspection = aws.json(&["inspect", "--backend", "aws", "--dlq", &dlq, "--json"]);
    let keys: Vec<&str> = inspection["parked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["sooner", "later"], "{inspection}");

    let stats = aws.json(&["stats", "--backend", "aws", "--dlq", &dlq, "--json"]);
    let auth = stats["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "auth")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (auth["alerted"].clone(), auth["suppressed"].clone()),
        (Value::from(2), Value::from(3)),
        "{stats}"
    );
}
