//! The healer's polling loop, shared by `run` and `demo`: receive a batch from the DLQ
//! ([`MessageSource::receive_batch`]: several receives of up to 10 on SQS, one transaction on the
//! local backend), heal it, repeat; stop between batches when asked to, so the batch in hand is
//! always finished.

use dlq_healer_core::engine::{BatchReport, Engine, Tally};
use dlq_healer_core::message::ReceivedMessage;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A flag the signal handler sets and the loop reads between batches.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// Ask the loop to stop after the batch in hand.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Set the flag on SIGINT or SIGTERM.
    pub fn on_signals(&self) {
        let flag = self.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested; finishing the batch in hand");
            flag.request();
        });
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Totals of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Batches healed.
    pub batches: usize,
    /// Outcomes over all batches.
    pub tally: Tally,
    /// Receives that failed.
    pub receive_errors: usize,
}

impl RunSummary {
    fn merge(&mut self, other: &RunSummary) {
        self.batches += other.batches;
        self.receive_errors += other.receive_errors;
        self.tally.requeued += other.tally.requeued;
        self.tally.parked += other.tally.parked;
        self.tally.archived += other.tally.archived;
        self.tally.duplicates += other.tally.duplicates;
        self.tally.failed += other.tally.failed;
    }

    fn add(&mut self, report: &BatchReport) {
        let t = report.tally();
        self.batches += 1;
        self.tally.requeued += t.requeued;
        self.tally.parked += t.parked;
        self.tally.archived += t.archived;
        self.tally.duplicates += t.duplicates;
        self.tally.failed += t.failed;
    }
}

/// How the loop runs.
#[derive(Debug, Clone, Copy)]
pub struct LoopSettings {
    /// Messages per engine batch.
    pub batch_size: usize,
    /// Long-poll wait of the first receive of a batch.
    pub wait: Duration,
    /// Stop when a receive finds the DLQ empty.
    pub until_empty: bool,
    /// Keep a slow batch invisible: every `every`, extend the visibility of the batch in hand.
    pub keep_alive: Option<KeepAlive>,
}

/// Visibility extension for batches that take longer than the DLQ's visibility timeout.
#[derive(Debug, Clone, Copy)]
pub struct KeepAlive {
    /// How often to extend.
    pub every: Duration,
    /// The visibility timeout to set each time, in seconds.
    pub extend_to_seconds: u32,
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive {
            every: Duration::from_secs(20),
            extend_to_seconds: 60,
        }
    }
}

/// Heal one batch, extending its visibility while the engine works on it. An extension that
/// lands after the engine parked a message only shortens the park: the ledger re-parks it.
async fn heal_with_keep_alive(
    engine: &Engine,
    batch: Vec<ReceivedMessage>,
    keep_alive: Option<KeepAlive>,
) -> BatchReport {
    let Some(keep_alive) = keep_alive else {
        return engine.heal_batch(batch).await;
    };
    let handles: Vec<(String, u32)> = batch
        .iter()
        .map(|m| (m.receipt_handle.clone(), keep_alive.extend_to_seconds))
        .collect();
    let heal = engine.heal_batch(batch);
    tokio::pin!(heal);
    loop {
        tokio::select! {
            report = &mut heal => return report,
            _ = tokio::time::sleep(keep_alive.every) => {
                if let Err(error) = engine.ports().dlq.change_visibility(&handles).await {
                    tracing::warn!(%error, "could not extend the visibility of a slow batch");
                }
            }
        }
    }
}

/// Run `concurrency` heal loops on one engine at once and add up their totals.
pub async fn heal_concurrently(
    engine: Arc<Engine>,
    settings: LoopSettings,
    shutdown: &Shutdown,
    concurrency: usize,
) -> RunSummary {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let engine = engine.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move { heal_loop(&engine, settings, &shutdown).await });
    }
    let mut total = RunSummary::default();
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(summary) => total.merge(&summary),
            Err(error) => tracing::error!(%error, "a heal loop stopped unexpectedly"),
        }
    }
    total
}

/// Heal batches until the DLQ is empty (with `until_empty`) or a shutdown is requested.
pub async fn heal_loop(engine: &Engine, settings: LoopSettings, shutdown: &Shutdown) -> RunSummary {
    let mut summary = RunSummary::default();
    let mut backoff = Duration::from_millis(200);
    while !shutdown.requested() {
        let batch = match engine
            .ports()
            .dlq
            .receive_batch(settings.batch_size, settings.wait)
            .await
        {
            Ok(batch) => batch,
            Err(error) => {
                summary.receive_errors += 1;
                tracing::warn!(%error, "receive from the DLQ failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        if batch.is_empty() {
            if let Err(error) = engine.flush_alert_digests().await {
                tracing::warn!(%error, "sending alert digests failed");
            }
            if settings.until_empty {
                break;
            }
            continue;
        }
        let report = heal_with_keep_alive(engine, batch, settings.keep_alive).await;
        for failed in report.not_settled() {
            if let dlq_healer_core::Outcome::Failed { reason } = &failed.outcome {
                tracing::warn!(message_id = %failed.message_id, key = %failed.key, %reason, "not healed; it stays in the DLQ");
            }
        }
        summary.add(&report);
    }
    summary
}
