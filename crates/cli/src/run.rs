//! `dlq-healer run`: the long-running healer worker, on the local backend or on AWS (for ECS,
//! EKS, EC2 and cron jobs), with long polling, a concurrency limit, visibility extension for slow
//! batches and graceful shutdown.

use crate::aws::{self, AwsArgs, AwsResources};
use crate::local::{LocalBackend, LocalSettings};
use crate::worker::{self, KeepAlive, LoopSettings, Shutdown};
use anyhow::{Context, Result};
use dlq_healer_core::alert::DigestsDue;
use dlq_healer_core::engine::{Engine, EngineConfig};
use dlq_healer_core::ports::SystemClock;
use dlq_healer_core::records::DEFAULT_RETENTION_DAYS;
use dlq_healer_core::rules::RuleSet;
use dlq_healer_local::RetentionSweeper;
use dlq_healer_local::queue::QueueInfo;
use std::sync::Arc;
use std::time::Duration;

/// Which backend a command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The embedded backend: one SQLite file and an archive directory.
    Local,
    /// SQS, S3, DynamoDB, SNS; metrics as CloudWatch EMF lines on standard output.
    Aws,
}

/// What `run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The backend.
    pub backend: Backend,
    /// Local backend settings.
    pub local: LocalSettings,
    /// AWS backend settings.
    pub aws: AwsArgs,
    /// The DLQ to heal: a local queue name, or an SQS queue URL.
    pub dlq: String,
    /// Where to re-queue messages with no known source.
    pub main_queue: Option<String>,
    /// Messages per engine batch.
    pub batch_size: usize,
    /// Batches healed at once.
    pub concurrency: usize,
    /// Stop once the DLQ is empty.
    pub until_empty: bool,
    /// Long-poll wait.
    pub wait: Duration,
    /// Rules.
    pub rules: Arc<RuleSet>,
    /// Where the rules come from, for the start-up log: a file, or the shipped defaults.
    pub rules_origin: String,
    /// Archive object prefix.
    pub archive_prefix: String,
    /// How long the local backend keeps ledger records, sent alerts and metrics (`None`: for
    /// ever).
    pub retention: Option<chrono::Duration>,
    /// Heal the queue even if it looks like a source queue rather than a DLQ (local backend).
    pub source_queue_allowed: bool,
}

/// The retention of `run --retention-days` on `backend`: the local default when absent, `None`
/// for 0. On AWS the flag is refused: DynamoDB's TTL removes the ledger's items.
pub fn retention(backend: Backend, days: Option<u32>) -> Result<Option<chrono::Duration>> {
    match (backend, days) {
        (Backend::Aws, Some(_)) => anyhow::bail!(
            "--retention-days is for the local backend; on AWS the ledger's items expire {} days \
             after their decision (DynamoDB TTL on expires_at)",
            DEFAULT_RETENTION_DAYS
        ),
        (Backend::Aws, None) | (Backend::Local, Some(0)) => Ok(None),
        (Backend::Local, days) => Ok(Some(chrono::Duration::days(i64::from(
            days.unwrap_or(DEFAULT_RETENTION_DAYS),
        )))),
    }
}

/// Run the worker until the DLQ is empty (with `until_empty`) or a signal arrives.
pub async fn run(options: RunOptions) -> Result<worker::RunSummary> {
    let mut config = EngineConfig {
        default_target: options.main_queue.clone(),
        archive_prefix: options.archive_prefix.clone(),
        ..EngineConfig::default()
    };
    let mut local_backend = None;
    let mut retention_sweeper = None;
    let mut aws_resources = None;
    let engine = match options.backend {
        Backend::Local => {
            refuse_aws_names_on_local(&options.dlq)?;
            let db = &options.local.db;
            if !db.exists() {
                anyhow::bail!(
                    "the local store {} does not exist, so it holds no DLQ {:?}: give the store's \
                     --db (or DLQ_HEALER_DB), or create the queue in a new store with \
                     `dlq-healer queue --db {} create {}`",
                    db.display(),
                    options.dlq,
                    db.display(),
                    dlq_healer_local::queue::queue_name(&options.dlq)
                );
            }
            let backend = LocalBackend::open(&options.local, Arc::new(SystemClock))?;
            if !options.source_queue_allowed {
                refuse_a_source_queue(&backend.queues.list_queues()?, &options.dlq)?;
            }
            if config.default_target.is_none() {
                config.default_target = the_redrive_source(
                    &backend.queues.dead_letter_sources(&options.dlq)?,
                    &options.dlq,
                );
            }
            let engine = backend.engine(&options.dlq, options.rules.clone(), config)?;
            if let Some(retention) = options.retention {
                retention_sweeper = Some(
                    RetentionSweeper::start(backend.store.clone(), retention)
                        .context("cannot start the retention sweeper")?,
                );
            }
            local_backend = Some(backend);
            engine
        }
        Backend::Aws => {
            let resources = AwsResources::from_args(&options.dlq, &options.aws)?;
            let clients = aws::connect(&options.aws, None).await?;
            let engine = aws::engine(
                &clients,
                &resources,
                options.rules.clone(),
                config,
                options.local.alert_window,
                aws::emf_metrics(),
            );
            aws_resources = Some((clients, resources));
            engine
        }
    };
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    // The DLQ first: credentials it refuses would fail every other lookup too.
    let keep_alive = keep_alive_for(&engine).await?;
    if let Some((clients, resources)) = &aws_resources {
        aws::refuse_missing_resources(clients, resources, options.main_queue.as_deref()).await?;
    }
    tracing::info!(
        dlq = %options.dlq,
        backend = ?options.backend,
        batch_size = options.batch_size,
        concurrency = options.concurrency,
        until_empty = options.until_empty,
        wait_seconds = options.wait.as_secs(),
        retention_days = options.retention.map(|r| r.num_days()),
        rules = %options.rules_origin,
        rule_count = options.rules.rule_names().count(),
        "healer started"
    );
    let settings = LoopSettings {
        batch_size: options.batch_size,
        wait: options.wait,
        until_empty: options.until_empty,
        keep_alive,
    };
    let engine = Arc::new(engine);
    let mut summary =
        worker::heal_concurrently(engine.clone(), settings, &shutdown, options.concurrency).await;
    drop(retention_sweeper);
    // Repeats held back in a window would wait for the window's next alert to be reported.
    if let Err(error) = engine.send_alert_digests(DigestsDue::HeldBackNow).await {
        tracing::warn!(%error, "sending the alert digests held back failed; they go out when their windows next alert");
    }
    if let Some(backend) = &local_backend {
        backend.alerter.wait_for_webhooks(Duration::from_secs(10));
        if options.until_empty && !summary.stopped_early && !summary.gave_up {
            summary.blocked_in_fifo_groups = blocked_in_fifo_groups(backend, &options.dlq)?;
        }
    }
    let t = summary.tally;
    eprintln!(
        "healed {} {}: {} requeued, {} parked, {} archived, {} already handled, {} failed (left in the DLQ){}",
        summary.batches,
        crate::noun(summary.batches, "batch", "batches"),
        t.requeued,
        t.parked,
        t.archived,
        t.duplicates,
        t.failed,
        if summary.stopped_early {
            "; stopped before the DLQ was empty".to_string()
        } else if summary.blocked_in_fifo_groups > 0 {
            format!(
                "; {} left visible behind messages of their FIFO groups that are in flight (parked until their retry is due): run again then",
                summary.blocked_in_fifo_groups
            )
        } else {
            String::new()
        }
    );
    Ok(summary)
}

/// The messages still visible in `dlq` after a drain found nothing to receive, when it is a
/// FIFO queue: a receive skips a group while a message of it is in flight, so a message parked
/// until its retry is due holds back the rest of its group. 0 for a standard queue.
fn blocked_in_fifo_groups(backend: &LocalBackend, dlq: &str) -> Result<u64> {
    let fifo = backend
        .queues
        .queue_settings(dlq)?
        .is_some_and(|settings| settings.fifo);
    Ok(if fifo {
        backend.queues.depth(dlq)?.visible
    } else {
        0
    })
}

/// Where `run` re-queues the messages of `dlq` that do not say their source, without
/// `--main-queue`: the one queue that dead-letters into it (`sources`), as `redrive` does. With
/// several none is guessed, and a warning says what becomes of those messages.
fn the_redrive_source(sources: &[String], dlq: &str) -> Option<String> {
    match sources {
        [] => None,
        [only] => {
            tracing::info!(
                "messages of {dlq} that do not say their source queue go back to {only}, the one \
                 queue that dead-letters into it (--main-queue chooses another)"
            );
            Some(only.clone())
        }
        several => {
            tracing::warn!(
                "{} queues dead-letter into {dlq} ({}): messages of it that do not say their \
                 source queue are archived, as they cannot be re-queued; --main-queue chooses \
                 where they go",
                several.len(),
                several.join(", ")
            );
            None
        }
    }
}

/// Refuse to heal a queue that looks like a source queue rather than a DLQ: it dead-letters
/// into a queue of its own, and no queue dead-letters into it (`--dlq orders` for
/// `--dlq orders-dlq`). Healing it would take its live messages for failures.
fn refuse_a_source_queue(queues: &[QueueInfo], dlq: &str) -> Result<()> {
    let name = dlq_healer_local::queue::queue_name(dlq);
    let Some(own_dlq) = queues
        .iter()
        .find(|q| q.name == name)
        .and_then(|q| q.settings.redrive.as_ref())
        .map(|r| r.dead_letter_queue.clone())
    else {
        return Ok(());
    };
    if queues.iter().any(|q| q.dead_letters_into(name)) {
        return Ok(());
    }
    anyhow::bail!(
        "{name:?} looks like a source queue, not a DLQ: it dead-letters into {own_dlq:?}, and no \
         queue dead-letters into it. Healing it would archive its live messages as failures. \
         Did you mean --dlq {own_dlq}? (If {name:?} is a DLQ all the same, pass \
         --allow-source-queue.)"
    )
}

/// An SQS queue URL or ARN given to the local backend, whose queues have plain names: the
/// backend was meant to be aws. Refused before a database file is made for it.
fn refuse_aws_names_on_local(dlq: &str) -> Result<()> {
    if dlq.starts_with("https://") || dlq.starts_with("http://") || dlq.starts_with("arn:") {
        anyhow::bail!(
            "{dlq:?} is an SQS queue URL or ARN, and the backend is local, whose queues have plain \
             names: give --backend aws (or DLQ_HEALER_BACKEND=aws in the environment or the \
             configuration file)"
        );
    }
    Ok(())
}

/// The keep-alive for the DLQ's visibility timeout, read once at start; SQS's default timeout
/// when it cannot be read.
/// A DLQ that cannot be read for a reason that will not pass (it does not exist, access is
/// denied) is refused here, before any loop starts polling it. One that cannot be read for now
/// (a 503, an endpoint that does not answer) is left to the loop, which retries it, and in a
/// drain gives up after [`worker::DRAIN_RECEIVE_TRIES`] failed receives in a row.
async fn keep_alive_for(engine: &Engine) -> Result<Option<KeepAlive>> {
    Ok(match engine.ports().dlq.visibility_timeout().await {
        Ok(Some(timeout)) => {
            let keep_alive = KeepAlive::for_visibility_timeout(timeout);
            if keep_alive.is_none() {
                tracing::warn!(
                    "the DLQ's visibility timeout is 0 seconds: a message can be received again while it is being healed, and be acted on twice"
                );
            }
            keep_alive
        }
        Ok(None) => Some(KeepAlive::default()),
        Err(error) if !error.retryable => {
            anyhow::bail!("cannot heal the DLQ: {error}")
        }

        Err(error) => {
            tracing::warn!(%error, "cannot read the DLQ's visibility timeout; keeping batches invisible as for SQS's default of 30 seconds");
            Some(KeepAlive::default())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlq_healer_local::queue::QueueSettings;

    fn queue(name: &str, dlq: Option<&str>) -> QueueInfo {
        let settings = QueueSettings::default();
        QueueInfo {
            name: name.into(),
            settings: match dlq {
                Some(dlq) => settings.with_redrive(dlq, 3),
                None => settings,
            },
        }
    }

    #[test]
    fn a_queue_that_only_dead_letters_elsewhere_is_refused_as_a_dlq() {
        let queues = [
            queue("orders", Some("orders-dlq")),
            queue("orders-dlq", None),
            queue("plain", None),
            queue("chained-dlq", Some("last-resort")),
            queue("feeds-chained", Some("chained-dlq")),
            queue("last-resort", None),
        ];
        let error = refuse_a_source_queue(&queues, "orders")
            .unwrap_err()
            .to_string();
        assert!(error.contains("--dlq orders-dlq"), "{error}");
        assert!(error.contains("--allow-source-queue"), "{error}");
        assert!(refuse_a_source_queue(&queues, "local://orders").is_err());
        for dlq in [
            "orders-dlq",
            "plain",
            "chained-dlq",
            "last-resort",
            "missing",
        ] {
            assert!(refuse_a_source_queue(&queues, dlq).is_ok(), "{dlq}");
        }
    }
}
