//! The AWS API emulator for the CLI's tests (`dlq_healer_testkit`): the spawned `dlq-healer`
//! processes get its endpoint, a region and dummy credentials through their environment.

#![allow(dead_code)]

use aws_sdk_sqs::types::QueueAttributeName;
use dlq_healer_aws::AwsClients;
pub use dlq_healer_testkit::{emulator, unique};
use std::process::{Command, Output};

/// Clients talking to the emulator directly.
pub async fn clients() -> AwsClients {
    AwsClients::connect(&dlq_healer_testkit::aws_settings!(), None).await
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
        .envs(dlq_healer_testkit::aws_env())
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

/// Wait for `child` to exit within `limit`; kill it and fail, saying `what` it kept doing, if it
/// does not.
pub fn exited_within(
    mut child: std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> Output {
    let started = std::time::Instant::now();
    while child
        .try_wait()
        .expect("the child can be waited for")
        .is_none()
    {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("the child's output")
}
