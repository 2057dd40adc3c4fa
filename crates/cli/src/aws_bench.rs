//! `dlq-healer bench --aws`: AWS calls per DLQ message while the `run` loop drains a DLQ holding
//! the original's failure mix, counted on an emulator by the SDK interceptor, and the cost they
//! would have at public list prices. Only the counts come from the emulator — never timings.
//!
//! The emulator is `--endpoint-url` (or `AWS_ENDPOINT_URL`) when given; otherwise the benchmark
//! starts `moto_server` from the PATH on a free loopback port and stops it at the end. It never
//! runs against an account implicitly.

use crate::aws::{self, AwsArgs, AwsResources};
use crate::worker::{LoopSettings, Shutdown, heal_loop};
use anyhow::{Context, Result, bail};
use dlq_healer_aws::{AwsClients, CallCounter, CallCounts, SqsSender};
use dlq_healer_core::engine::{DEFAULT_ALERT_WINDOW, EngineConfig};
use dlq_healer_core::ports::QueueSender;
use dlq_healer_core::rules::RuleSet;
use dlq_healer_core::testing::MemoryMetrics;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Public list prices used for the estimate (us-east-1), in dollars.
pub mod prices {
    /// SQS standard queue: per request (a batch of up to 10 messages and 64 KiB is one request).
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// S3 Standard PUT, COPY, POST, LIST: per request.
    pub const S3_PUT: f64 = 0.005 / 1e3;
    /// DynamoDB on-demand: per write request unit.
    pub const DYNAMODB_WRU: f64 = 0.625 / 1e6;
    /// DynamoDB on-demand: per read request unit.
    pub const DYNAMODB_RRU: f64 = 0.125 / 1e6;
    /// SNS standard topic: per publish (each PublishBatch entry is one).
    pub const SNS_PUBLISH: f64 = 0.50 / 1e6;
    /// Write request units assumed per conditional `UpdateItem` of an alert window (the window
    /// item carries its first alert as a template and sample keys: 1–2 KiB).
    pub const WINDOW_UPDATE_WRU: f64 = 2.0;
}

/// The targets: calls per DLQ message at 100 and at 10 per batch.
pub fn target(batch_size: usize) -> Option<f64> {
    match batch_size {
        100 => Some(0.35),
        10 => Some(0.7),
        _ => None,
    }
}

/// What one run counted.
#[derive(Debug, Clone)]
pub struct AwsCallFigures {
    /// Dead letters healed.
    pub messages: usize,
    /// Messages per engine batch.
    pub batch_size: usize,
    /// The calls, attempts and billed units of the healer alone (set-up and seeding excluded).
    pub counts: CallCounts,
}

impl AwsCallFigures {
    /// Operations per DLQ message.
    pub fn calls_per_message(&self) -> f64 {
        self.counts.total_operations() as f64 / self.messages as f64
    }

    /// Dollars per million DLQ messages at [`prices`], by service.
    pub fn cost_per_million(&self) -> BTreeMap<&'static str, f64> {
        let per_message = |n: u64| n as f64 / self.messages as f64 * 1e6;
        let mut cost: BTreeMap<&'static str, f64> = BTreeMap::new();
        for (operation, &count) in &self.counts.operations {
            let units = self.counts.units.get(operation).copied();
            let (service, dollars) = match operation.split_once('.') {
                Some(("SQS", _)) => ("SQS", per_message(count) * prices::SQS_REQUEST),
                Some(("S3", _)) => ("S3", per_message(count) * prices::S3_PUT),
                Some(("SNS", "PublishBatch")) => (
                    "SNS",
                    per_message(units.unwrap_or(count)) * prices::SNS_PUBLISH,
                ),
                Some(("SNS", _)) => ("SNS", per_message(count) * prices::SNS_PUBLISH),
                Some(("DynamoDB", "BatchGetItem" | "GetItem" | "Query")) => (
                    "DynamoDB",
                    per_message(units.unwrap_or(count)) * prices::DYNAMODB_RRU,
                ),
                Some(("DynamoDB", "UpdateItem")) => (
                    "DynamoDB",
                    per_message(count) * prices::WINDOW_UPDATE_WRU * prices::DYNAMODB_WRU,
                ),
                Some(("DynamoDB", _)) => (
                    "DynamoDB",
                    per_message(units.unwrap_or(count)) * prices::DYNAMODB_WRU,
                ),
                _ => ("other", 0.0),
            };
            *cost.entry(service).or_default() += dollars;
        }
        cost
    }
}

/// A running emulator started by the benchmark; stopped on drop.
struct OwnEmulator(std::process::Child);

impl Drop for OwnEmulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> Result<(OwnEmulator, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("bench --aws needs --endpoint-url or moto_server on the PATH (pip install 'moto[server]')")?;
    let emulator = OwnEmulator(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("moto_server did not listen on port {port} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((emulator, format!("http://127.0.0.1:{port}")))
}

/// Count the calls of healing `messages` dead letters at each batch size, each on fresh
/// resources. Starts `moto_server` when no endpoint is given.
pub fn run(args: &AwsArgs, messages: usize, batch_sizes: &[usize]) -> Result<Vec<AwsCallFigures>> {
    let mut args = args.clone();
    let _emulator = match &args.endpoint_url {
        Some(_) => None,
        None => {
            let (emulator, endpoint) = start_moto()?;
            args.endpoint_url = Some(endpoint);
            Some(emulator)
        }
    };
    if args.region.is_none() {
        args.region = Some("us-east-1".into());
    }
    // An emulator takes any credentials; set dummy ones if the environment has none.
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // SAFETY: set before the runtime and any SDK client exist, on this single thread.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "bench");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut figures = Vec::new();
        for &batch_size in batch_sizes {
            figures.push(count_calls(&args, messages, batch_size).await?);
        }
        Ok(figures)
    })
}

async fn count_calls(args: &AwsArgs, messages: usize, batch_size: usize) -> Result<AwsCallFigures> {
    let plain = aws::connect(args, None).await?;
    let prefix = format!(
        "bench-{}-{batch_size}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis() % 1_000_000
    );
    let resources = dlq_healer_aws::provision(&plain, &prefix).await?;
    seed(
        &plain,
        &resources.dlq_url,
        &resources.main_queue_url,
        messages,
    )
    .await?;
    let counter = CallCounter::default();
    let counted = aws::connect(args, Some(counter.clone())).await?;
    let engine = aws::engine(
        &counted,
        &AwsResources {
            dlq_url: resources.dlq_url.clone(),
            bucket: resources.bucket.clone(),
            table: resources.table.clone(),
            topic_arn: resources.topic_arn.clone(),
        },
        Arc::new(RuleSet::defaults()),
        EngineConfig {
            default_target: Some(resources.main_queue_url.clone()),
            jitter_seed: Some(1),
            ..EngineConfig::default()
        },
        DEFAULT_ALERT_WINDOW,
        Arc::new(MemoryMetrics::default()),
    );
    let summary = heal_loop(
        &engine,
        LoopSettings {
            batch_size,
            wait: Duration::ZERO,
            until_empty: true,
            keep_alive: None,
        },
        &Shutdown::default(),
    )
    .await;
    let t = summary.tally;
    let healed = t.requeued + t.archived + t.parked;
    anyhow::ensure!(
        healed == messages && t.failed == 0,
        "the AWS call benchmark healed {healed} of {messages} messages ({} failed)",
        t.failed
    );
    Ok(AwsCallFigures {
        messages,
        batch_size,
        counts: counter.snapshot(),
    })
}

async fn seed(clients: &AwsClients, dlq: &str, source: &str, messages: usize) -> Result<()> {
    let sender = SqsSender::new(clients.sqs.clone());
    let outgoing = dlq_healer_demo::dead_letters_as_sent(messages, 7, source, chrono::Utc::now());
    for chunk in outgoing.chunks(10) {
        for result in sender.send(dlq, chunk).await? {
            result.context("seeding the DLQ")?;
        }
    }
    Ok(())
}

/// The table rows of the AWS figures.
pub fn print_rows(figures: &[AwsCallFigures]) {
    for f in figures {
        let target = target(f.batch_size).map_or("(report)".to_string(), |t| format!("<= {t}"));
        println!(
            "| AWS calls per DLQ message, batch {} ({} messages of the original's mix, receives and deletes included; counted on an emulator) | {:.3} calls/msg | {target} calls/msg (original design: ~2) |",
            f.batch_size,
            f.messages,
            f.calls_per_message()
        );
        let by_operation: Vec<String> = f
            .counts
            .operations
            .iter()
            .map(|(operation, count)| {
                let units = f
                    .counts
                    .units
                    .get(operation)
                    .map_or(String::new(), |u| format!(" ({u} units)"));
                format!("{operation} {count}{units}")
            })
            .collect();
        println!(
            "| AWS calls by operation, batch {} | {} | (report) |",
            f.batch_size,
            by_operation.join(", ")
        );
        let cost = f.cost_per_million();
        let total: f64 = cost.values().sum();
        let parts: Vec<String> = cost
            .iter()
            .map(|(service, dollars)| format!("{service} ${dollars:.2}"))
            .collect();
        println!(
            "| AWS cost per million DLQ messages, batch {} (list prices: SQS $0.40/M requests, S3 PUT $0.005/1k, DynamoDB on-demand $0.625/M WRU and $0.125/M RRU, SNS $0.50/M publishes) | ${total:.2} ({}) | (report) |",
            f.batch_size,
            parts.join(", ")
        );
    }
}
