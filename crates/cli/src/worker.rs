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

/// Heal one batch, extending its visibility while the engine works on it, and meanwhile receive
/// the next one (unless `receive_next` is false): its receive goes on while the batch waits on
/// the disk or the network, instead of after it. The next batch's visibility is extended too,
/// from its arrival until this batch is done. An extension that lands after the engine parked a
/// message only shortens the park: the ledger re-parks it.
async fn heal_and_receive_next(
    engine: &Engine,
    batch: Vec<ReceivedMessage>,
    settings: LoopSettings,
    receive_next: bool,
) -> (BatchReport, Option<Received>) {
    let handles = |batch: &[ReceivedMessage], seconds: u32| -> Vec<(String, u32)> {
        batch
            .iter()
            .map(|m| (m.receipt_handle.clone(), seconds))
            .collect()
    };
    let extend_to = settings.keep_alive.map_or(0, |k| k.extend_to_seconds);
    // The handles to keep invisible: this batch's until it is healed, then the next one's.
    let in_hand = std::sync::Mutex::new(handles(&batch, extend_to));
    let in_hand = || {
        in_hand
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    let heal = async {
        let report = engine.heal_batch(batch).await;
        in_hand().clear();
        report
    };
    let next = async {
        if !receive_next {
            return None;
        }
        let received = engine
            .ports()
            .dlq
            .receive_batch(settings.batch_size, settings.wait)
            .await;
        if let Ok(next) = &received {
            in_hand().extend(handles(next, extend_to));
        }
        Some(received)
    };
    // The heal first: its work up to its first wait comes before the next receive.
    let both = async { tokio::join!(biased; heal, next) };
    let Some(keep_alive) = settings.keep_alive else {
        return both.await;
    };
    tokio::pin!(both);
    loop {
        tokio::select! {
            done = &mut both => return done,
            _ = tokio::time::sleep(keep_alive.every) => {
                let extend = in_hand().clone();
                if extend.is_empty() {
                    continue;
                }
                if let Err(error) = engine.ports().dlq.change_visibility(&extend).await {
                    tracing::warn!(%error, "could not extend the visibility of the batches in hand");
                }
            }
        }
    }
}

/// What a receive from the DLQ answered.
type Received = Result<Vec<ReceivedMessage>, dlq_healer_core::ports::PortError>;

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

/// Heal batches until the DLQ is empty (with `until_empty`) or a shutdown is requested; a batch
/// received before the request is healed too.
pub async fn heal_loop(engine: &Engine, settings: LoopSettings, shutdown: &Shutdown) -> RunSummary {
    let mut summary = RunSummary::default();
    let mut backoff = Duration::from_millis(200);
    let mut received: Option<Received> = None;
    while received.is_some() || !shutdown.requested() {
        let answer = match received.take() {
            Some(answer) => answer,
            None => {
                engine
                    .ports()
                    .dlq
                    .receive_batch(settings.batch_size, settings.wait)
                    .await
            }
        };
        let batch = match answer {
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
        let (report, next) =
            heal_and_receive_next(engine, batch, settings, !shutdown.requested()).await;
        received = next;
        for failed in report.not_settled() {
            if let dlq_healer_core::Outcome::Failed { reason } = &failed.outcome {
                tracing::warn!(message_id = %failed.message_id, key = %failed.key, %reason, "not healed; it stays in the DLQ");
            }
        }
        summary.add(&report);
    }
    summary
}
