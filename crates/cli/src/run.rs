//! `dlq-healer run`: the long-running healer worker on a DLQ of the local backend.

use crate::local::{LocalBackend, LocalSettings};
use crate::worker::{self, LoopSettings, Shutdown};
use anyhow::Result;
use dlq_healer_core::engine::EngineConfig;
use dlq_healer_core::ports::SystemClock;
use dlq_healer_core::rules::RuleSet;
use std::sync::Arc;
use std::time::Duration;

/// What `run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Local backend settings.
    pub local: LocalSettings,
    /// The DLQ to heal.
    pub dlq: String,
    /// Where to re-queue messages with no known source.
    pub main_queue: Option<String>,
    /// Messages per engine batch.
    pub batch_size: usize,
    /// Stop once the DLQ is empty.
    pub until_empty: bool,
    /// Long-poll wait.
    pub wait: Duration,
    /// Rules.
    pub rules: Arc<RuleSet>,
    /// Archive object prefix.
    pub archive_prefix: String,
}

/// Run the worker until the DLQ is empty (with `until_empty`) or a signal arrives.
pub async fn run(options: RunOptions) -> Result<worker::RunSummary> {
    let backend = LocalBackend::open(&options.local, Arc::new(SystemClock))?;
    let engine = backend.engine(
        &options.dlq,
        options.rules.clone(),
        EngineConfig {
            default_target: options.main_queue.clone(),
            archive_prefix: options.archive_prefix.clone(),
            ..EngineConfig::default()
        },
    )?;
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    tracing::info!(dlq = %options.dlq, batch_size = options.batch_size, until_empty = options.until_empty, "healer started");
    let summary = worker::heal_loop(
        &engine,
        LoopSettings {
            batch_size: options.batch_size,
            wait: options.wait,
            until_empty: options.until_empty,
        },
        &shutdown,
    )
    .await;
    backend.alerter.wait_for_webhooks(Duration::from_secs(10));
    let t = summary.tally;
    println!(
        "healed {} batches: {} requeued, {} parked, {} archived, {} already handled, {} failed (left in the DLQ)",
        summary.batches, t.requeued, t.parked, t.archived, t.duplicates, t.failed
    );
    Ok(summary)
}
