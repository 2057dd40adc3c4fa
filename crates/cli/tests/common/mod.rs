//! The AWS API emulator for the CLI's tests: `moto_server` on a free loopback port, started once
//! per test binary and stopped when the test process exits (its stdin pipe closes); the spawned
//! `dlq-healer` processes get its endpoint, a region and dummy credentials through their
//! environment.

#![allow(dead_code)]

use aws_sdk_sqs::types::QueueAttributeName;
use dlq_healer_aws::{AwsClients, AwsSettings};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running emulator.
pub struct Emulator {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    _process: Child,
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();

/// The emulator of this test binary, started on first use.
pub fn emulator() -> &'static Emulator {
    EMULATOR.get_or_init(start)
}

fn start() -> Emulator {
    // SAFETY: runs once, inside OnceLock initialisation, before any SDK client of this test
    // binary exists; every test calls `emulator()` before it builds clients.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_ENDPOINT_URL");
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    // The shell keeps moto_server alive while our stdin pipe is open, and kills it when the
    // test process exits and the pipe closes.
    let script = format!(
        "moto_server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; echo started; cat >/dev/null; kill $m"
    );
    let mut process = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start moto_server: run scripts/test.sh, which installs it (pip install 'moto[server]')");
    let mut line = String::new();
    BufReader::new(process.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("moto_server wrapper output");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Emulator {
        endpoint: format!("http://127.0.0.1:{port}"),
        _process: process,
    }
}

/// Clients talking to the emulator directly.
pub async fn clients() -> AwsClients {
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(emulator().endpoint.clone()),
    };
    AwsClients::connect(&settings, None).await
}

/// The `dlq-healer` binary with the emulator's endpoint (or `endpoint`), a region and dummy
/// credentials in its environment, and nothing of the caller's AWS configuration.
pub fn healer_at(endpoint: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dlq-healer"));
    for name in [
        "AWS_PROFILE",
        "DLQ_URL",
        "MAIN_QUEUE_URL",
        "ARCHIVE_BUCKET",
        "FAILED_TABLE",
        "ALERT_TOPIC_ARN",
        "AWS_MAX_ATTEMPTS",
    ] {
        command.env_remove(name);
    }
    command
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("LOG_LEVEL", "warn");
    command
}

/// `dlq-healer` on the emulator.
pub fn healer() -> Command {
    healer_at(&emulator().endpoint)
}

/// Run and require success; the output.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("the dlq-healer binary runs");
    assert!(
        output.status.success(),
        "{command:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A name no other test uses: keeps the emulator's queues shallow and fresh per test.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// The `KEY=value` lines of `setup`, as pairs.
pub fn env_pairs(stdout: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Visible plus in-flight plus delayed messages of a queue.
pub async fn depth(clients: &AwsClients, url: &str) -> u64 {
    let attributes = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attributes = attributes.attributes().unwrap();
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
    ]
    .iter()
    .map(|name| attributes.get(name).map_or(0, |v| v.parse().unwrap()))
    .sum()
}

/// A queue subscribed to the topic, so that published alerts can be counted.
pub async fn alert_inbox(clients: &AwsClients, topic_arn: &str) -> String {
    let url = clients
        .sqs
        .create_queue()
        .queue_name(unique("inbox"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap();
    clients
        .sns
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(arn)
        .send()
        .await
        .unwrap();
    url
}
