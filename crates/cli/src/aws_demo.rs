//! `dlq-healer demo --backend aws`: the original scenario against an emulator (or a real
//! account), on real time: resources created as `setup` does, orders produced to SQS, consumed,
//! dead-lettered, healed into SQS, S3, DynamoDB and SNS, then accounted for.

use crate::aws::{self, AwsArgs, AwsResources};
use crate::demo::{Accounting, DemoOptions};
use crate::panels::{self, DepthRow, SharedTotals};
use crate::worker::{self, LoopSettings, Shutdown};
use anyhow::{Context, Result, bail};
use aws_sdk_sqs::types::QueueAttributeName;
use dlq_healer_aws::{AwsClients, DynamoLedger, SqsQueue, SqsSender};
use dlq_healer_core::FailureClass;
use dlq_healer_core::alert::DigestsDue;
use dlq_healer_core::consumer::Consumer;
use dlq_healer_core::engine::EngineConfig;
use dlq_healer_core::policy::ClassPolicy;
use dlq_healer_core::ports::SystemClock;
use dlq_healer_core::records::RecordedAction;
use dlq_healer_core::rules::RuleSet;
use dlq_healer_demo::OrderConsumer;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the demo waits for re-queued messages to come back before it gives up and reports
/// them as still queued.
const MAX_WALL_TIME: Duration = Duration::from_secs(180);

/// The demo's rules: the given ones with backoffs of seconds, not minutes, because AWS time is
/// real.
fn with_short_backoffs(rules: &RuleSet) -> Result<RuleSet> {
    let mut short = rules.clone();
    for class in FailureClass::ALL {
        let policy = rules.policy(class);
        if policy.max_attempts > 0 && policy.action == dlq_healer_core::policy::BaseAction::Requeue
        {
            let mut fast = ClassPolicy::requeue(policy.max_attempts, 1, 4);
            fast.alert = policy.alert;
            fast.alert_when_exhausted = policy.alert_when_exhausted;
            short
                .set_policy(class, fast)
                .map_err(|e| anyhow::anyhow!(e))?;
        }
    }
    Ok(short)
}

/// Run the demo on AWS; prints the panels and the accounting, returns the accounting.
pub async fn run(options: DemoOptions, args: &AwsArgs, prefix: &str) -> Result<Accounting> {
    if options.orders == 0 {
        bail!("--orders must be at least 1");
    }
    let clients = aws::connect(args, None).await?;
    let resources = dlq_healer_aws::provision(&clients, prefix)
        .await
        .with_context(|| format!("creating the demo's resources under the prefix {prefix:?}"))?;
    purge(&clients, &[&resources.main_queue_url, &resources.dlq_url]).await?;
    // Only this run's decisions count: an earlier run under the same prefix left its own.
    let since = chrono::Utc::now();
    let rules = Arc::new(with_short_backoffs(&options.rules)?);
    let totals = Arc::new(SharedTotals::default());
    let sender = Arc::new(SqsSender::new(clients.sqs.clone()));

    let handler = OrderConsumer::new();
    let (order_ids, orders) = crate::demo::make_orders(&options, &handler);
    crate::demo::produce(sender.as_ref(), &resources.main_queue_url, &orders).await?;

    let consumer = Consumer {
        queue: Arc::new(SqsQueue::new(
            clients.sqs.clone(),
            resources.main_queue_url.clone(),
        )),
        sender: sender.clone(),
        dlq: resources.dlq_url.clone(),
        name: "orders-consumer".to_string(),
        clock: Arc::new(SystemClock),
        metrics: totals.clone(),
    };
    let healer_resources = AwsResources {
        dlq_url: resources.dlq_url.clone(),
        bucket: resources.bucket.clone(),
        table: resources.table.clone(),
        topic_arn: resources.topic_arn.clone(),
    };
    let engine = aws::engine(
        &clients,
        &healer_resources,
        rules,
        EngineConfig {
            default_target: Some(resources.main_queue_url.clone()),
            jitter_seed: Some(options.seed),
            ..EngineConfig::default()
        },
        dlq_healer_core::engine::DEFAULT_ALERT_WINDOW,
        totals.clone(),
    );
    let settings = LoopSettings {
        batch_size: options.batch_size,
        wait: Duration::ZERO,
        until_empty: true,
        keep_alive: None,
    };
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    let started = Instant::now();
    let queues = [
        resources.main_queue_url.as_str(),
        resources.dlq_url.as_str(),
    ];
    while started.elapsed() < MAX_WALL_TIME && !shutdown.requested() {
        while consumer
            .poll_once(&handler, 10, Duration::ZERO)
            .await
            .received
            > 0
        {}
        worker::heal_loop(&engine, settings, &shutdown).await;
        let depths = depth_rows(&clients, &queues).await?;
        if depths
            .iter()
            .all(|d| d.visible + d.in_flight + d.delayed == 0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    engine
        .send_alert_digests(DigestsDue::OfClosedWindows)
        .await
        .ok();

    let depths = depth_rows(&clients, &queues).await?;
    print!("{}", panels::render(&totals.snapshot(), &depths));
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), resources.table.clone());
    let mut archived_keys = BTreeSet::new();
    for class in FailureClass::ALL {
        for record in ledger.query(class, Some(since), None, None).await? {
            if record.action == RecordedAction::Archived {
                archived_keys.insert(record.key);
            }
        }
    }
    let accounting = Accounting::of(&order_ids, &handler, archived_keys.len(), &depths);
    println!();
    println!(
        "wall time: {} s; archive: s3://{}; ledger: {}; alerts: {}",
        started.elapsed().as_secs(),
        resources.bucket,
        resources.table,
        resources.topic_arn
    );
    println!("{}", accounting.line());
    Ok(accounting)
}

/// Empty the demo's queues, so that a second run under the same prefix starts clean.
async fn purge(clients: &AwsClients, queues: &[&str]) -> Result<()> {
    for url in queues {
        // SQS allows one purge per queue per minute; a refused purge of an empty queue is fine.
        if let Err(error) = clients.sqs.purge_queue().queue_url(*url).send().await {
            tracing::debug!(%url, error = %dlq_healer_aws::retry::error_chain(&error), "purge refused");
        }
    }
    Ok(())
}

/// Depth rows of SQS queues, from their approximate counts.
pub async fn depth_rows(clients: &AwsClients, urls: &[&str]) -> Result<Vec<DepthRow>> {
    let mut rows = Vec::new();
    for url in urls {
        let attributes = clients
            .sqs
            .get_queue_attributes()
            .queue_url(*url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "reading the depth of {url}: {}",
                    dlq_healer_aws::retry::error_chain(&e)
                )
            })?;
        let count = |name: QueueAttributeName| -> u64 {
            attributes
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        rows.push(DepthRow {
            queue: url.rsplit('/').next().unwrap_or(url).to_string(),
            visible: count(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        });
    }
    Ok(rows)
}
