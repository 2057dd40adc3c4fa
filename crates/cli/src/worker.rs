//! The healer's polling loop, shared by `run` and `demo`: receive a batch from the DLQ
//! ([`MessageSource::receive_batch`]: several receives of up to 10 on SQS, one transaction on the
//! local backend), heal it while receiving the next, repeat; stop between batches when asked to,
//! so the batches in hand are always finished.

use dlq_healer_core::alert::DigestsDue;
use dlq_healer_core::engine::{BatchReport, Engine, Tally};
use dlq_healer_core::message::ReceivedMessage;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A flag the signal handler sets; the loop reads it between batches and stops waiting for an
/// empty DLQ when it is set.
///
/// A signal sets `signalled` in the signal handler itself, so that a loop busy with a large
/// batch on every worker thread of the runtime sees the stop at its next batch, and a second
/// signal exits at once, without waiting for the runtime to poll a task; the task then wakes
/// what waits on `requests` (a long poll, a pause between retries).
#[derive(Debug, Clone)]
pub struct Shutdown {
    requests: Arc<tokio::sync::watch::Sender<bool>>,
    signalled: Arc<AtomicBool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            requests: Arc::new(tokio::sync::watch::Sender::new(false)),
            signalled: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Shutdown {
    /// Ask the loop to stop after the batch in hand.
    pub fn request(&self) {
        self.requests.send_replace(true);
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        *self.requests.borrow() || self.signalled.load(Ordering::SeqCst)
    }

    /// Wait until a stop is asked for.
    pub async fn wait(&self) {
        let mut requests = self.requests.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = requests.wait_for(|&requested| requested).await;
    }

    /// `work`'s answer, or `None` if a stop is asked for first (then `work` is dropped). An
    /// answer that is ready wins over the stop, so that a batch received is healed.
    pub async fn unless_requested<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        tokio::select! {
            biased;
            answer = work => Some(answer),
            () = self.wait() => None,
        }
    }

    /// Set the flag on SIGINT or SIGTERM; exit at once with 130 on a second one, as command line
    /// tools do when a stop takes longer than the person waiting wants. Called inside the
    /// runtime.
    pub fn on_signals(&self) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
                let signalled = self.signalled.clone();
                let second_stops_at_once = move || {
                    if signalled.swap(true, Ordering::SeqCst) {
                        exit_from_signal_handler(130, STOPPED_AT_ONCE);
                    }
                };
                // SAFETY: the action only swaps an atomic flag and, on a second signal, writes
                // to stderr and calls `_exit`, all of which are async-signal-safe.
                let registered = unsafe {
                    signal_hook_registry::register(kind.as_raw_value(), second_stops_at_once)
                };
                if let Err(error) = registered {
                    tracing::warn!(%error, "cannot handle {kind:?}: it ends the process at once");
                }
            }
            // Registered now, not when the task first runs, so that no signal goes unseen.
            let (interrupt, terminate) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            );
            let flag = self.clone();
            tokio::spawn(async move {
                let received = |stream: std::io::Result<tokio::signal::unix::Signal>| async move {
                    match stream {
                        Ok(mut stream) => stream.recv().await,
                        Err(_) => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = received(interrupt) => {}
                    _ = received(terminate) => {}
                }
                tracing::info!(
                    "stop requested: finishing what is in hand (a second SIGINT or SIGTERM stops at once)"
                );
                flag.request();
            });
        }
        #[cfg(not(unix))]
        {
            let flag = self.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("stop requested: finishing what is in hand");
                flag.request();
            });
        }
    }
}

/// What a second signal prints on its way out.
const STOPPED_AT_ONCE: &str = "stopped at once: messages received and not yet deleted come back after their visibility timeout, and are not lost\n";

/// Write `note` to stderr and end the process with `code`, from inside a signal handler: no
/// allocation, no lock, no destructor.
#[cfg(unix)]
fn exit_from_signal_handler(code: i32, note: &str) -> ! {
    // SAFETY: write(2) on a static buffer and _exit(2) are async-signal-safe.
    unsafe {
        libc::write(libc::STDERR_FILENO, note.as_ptr().cast(), note.len());
        libc::_exit(code)
    }
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
    /// Whether a drain (`until_empty`) stopped at a receive error that retrying will not cure
    /// (the DLQ is gone, access is denied) or after [`DRAIN_RECEIVE_TRIES`] failed receives in a
    /// row, with the DLQ perhaps not empty.
    pub gave_up: bool,
    /// Whether a drain was stopped (by a signal) before it found the DLQ empty.
    pub stopped_early: bool,
    /// Messages a drain of a FIFO DLQ left visible behind in-flight messages of their groups.
    pub blocked_in_fifo_groups: u64,
}

impl RunSummary {
    fn merge(&mut self, other: &RunSummary) {
        self.batches += other.batches;
        self.receive_errors += other.receive_errors;
        self.gave_up |= other.gave_up;
        self.stopped_early |= other.stopped_early;
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

/// SQS's visibility timeout for a queue created without one.
const SQS_DEFAULT_VISIBILITY_SECONDS: u32 = 30;

impl Default for KeepAlive {
    /// For a DLQ whose visibility timeout is not known: SQS's default.
    fn default() -> Self {
        KeepAlive::every_third_of(SQS_DEFAULT_VISIBILITY_SECONDS)
    }
}

impl KeepAlive {
    /// The keep-alive for a DLQ whose deliveries stay invisible for `timeout`: set it again
    /// every third of it. A batch is received while the one before is healed, so up to a third
    /// passes before its first extension, and a second third before the next, should one
    /// extension fail; the delivery stays invisible either way, and no other receiver — this
    /// loop's next receive included — handles the message a second time while it is in hand.
    /// `None` for a timeout under one second, which no extension of whole seconds can keep.
    pub fn for_visibility_timeout(timeout: Duration) -> Option<KeepAlive> {
        let seconds = u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX);
        (seconds > 0).then(|| KeepAlive::every_third_of(seconds))
    }

    fn every_third_of(seconds: u32) -> KeepAlive {
        KeepAlive {
            every: Duration::from_secs(u64::from(seconds)) / 3,
            extend_to_seconds: seconds,
        }
    }
}

/// Heal one batch, extending its visibility while the engine works on it, and meanwhile receive
/// the next one (unless a stop is asked for, before or while it waits for messages): its receive
/// goes on while the batch waits on the disk or the network, instead of after it. The next
/// batch's visibility is extended too, from its arrival until this batch is done. An extension
/// that lands after the engine parked a message only shortens the park: the ledger re-parks it.
async fn heal_and_receive_next(
    engine: &Engine,
    batch: Vec<ReceivedMessage>,
    settings: LoopSettings,
    shutdown: &Shutdown,
) -> (BatchReport, Option<Received>) {
    let handles = |batch: &[ReceivedMessage], seconds: u32| -> Vec<(String, u32)> {
        batch
            .iter()
            .map(|m| (m.receipt_handle.clone(), seconds))
            .collect()
    };
    let extend_to = settings.keep_alive.map_or(0, |k| k.extend_to_seconds);
    // The handles to keep invisible: this batch's (first) until it is healed, and the next
    // one's from its arrival.
    let healing = batch.len();
    let in_hand = std::sync::Mutex::new(handles(&batch, extend_to));
    let in_hand = || {
        in_hand
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    let heal = async {
        let report = engine.heal_batch(batch).await;
        in_hand().drain(..healing);
        report
    };
    let next = async {
        if shutdown.requested() {
            return None;
        }
        let received = receive_batch_unless_requested(engine, &settings, shutdown).await?;
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

/// Receive a batch of the loop's size from the DLQ, waiting as the loop's settings say; `None`
/// if a stop is asked for while the first receive still waits for messages, which is then
/// dropped (on the local backend that happens between polls, with nothing received; on SQS,
/// messages an unfinished receive took come back after the DLQ's visibility timeout). A stop
/// asked for once messages have come ends the batch there, and it is returned to be healed,
/// not left in flight.
async fn receive_batch_unless_requested(
    engine: &Engine,
    settings: &LoopSettings,
    shutdown: &Shutdown,
) -> Option<Received> {
    let first_receive_over = std::sync::atomic::AtomicBool::new(false);
    let stop = || {
        first_receive_over.store(true, std::sync::atomic::Ordering::Relaxed);
        shutdown.requested()
    };
    let receive = engine
        .ports()
        .dlq
        .receive_batch(settings.batch_size, settings.wait, &stop);
    tokio::pin!(receive);
    if let Some(answer) = shutdown.unless_requested(&mut receive).await {
        return Some(answer);
    }
    if first_receive_over.load(std::sync::atomic::Ordering::Relaxed) {
        Some(receive.await)
    } else {
        None
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

/// Receives a drain (`until_empty`) tries in a row, waiting 0.2 s, 0.4 s, ... 25.6 s between
/// them, before it gives up on a DLQ it cannot read (an endpoint that does not answer); a worker
/// without `until_empty` retries for as long as it runs, every 30 s at most.
pub const DRAIN_RECEIVE_TRIES: usize = 8;

/// The wait after a failed receive, doubled after each further one; a millisecond in unit tests,
/// which would otherwise wait out the drain's tries.
const FIRST_RETRY: Duration = Duration::from_millis(if cfg!(test) { 1 } else { 200 });

/// The wait after the `failed_in_a_row`th failed receive in a row (from 1): [`FIRST_RETRY`],
/// doubled for each before it, 30 s at most.
fn retry_wait(failed_in_a_row: usize) -> Duration {
    let doublings = u32::try_from(failed_in_a_row.saturating_sub(1)).unwrap_or(u32::MAX);
    FIRST_RETRY
        .saturating_mul(1 << doublings.min(16))
        .min(Duration::from_secs(30))
}

/// Heal batches until the DLQ is empty (with `until_empty`) or a shutdown is requested; a batch
/// received before the request is healed too.
pub async fn heal_loop(engine: &Engine, settings: LoopSettings, shutdown: &Shutdown) -> RunSummary {
    let mut summary = RunSummary::default();
    let mut failed_in_a_row = 0;
    let mut found_empty = false;
    let mut received: Option<Received> = None;
    while received.is_some() || !shutdown.requested() {
        let answer = match received.take() {
            Some(answer) => answer,
            None => match receive_batch_unless_requested(engine, &settings, shutdown).await {
                Some(answer) => answer,
                None => break,
            },
        };
        let batch = match answer {
            Ok(batch) => batch,
            Err(error) => {
                summary.receive_errors += 1;
                failed_in_a_row += 1;
                if settings.until_empty
                    && (!error.retryable || failed_in_a_row >= DRAIN_RECEIVE_TRIES)
                {
                    summary.gave_up = true;
                    if error.retryable {
                        tracing::error!(%error, "receive from the DLQ failed {DRAIN_RECEIVE_TRIES} times in a row; stopping the drain");
                    } else {
                        tracing::error!(%error, "receive from the DLQ failed, and retrying will not help; stopping the drain");
                    }
                    break;
                }
                let backoff = retry_wait(failed_in_a_row);
                tracing::warn!(%error, "receive from the DLQ failed; retrying in {backoff:?}");
                if shutdown
                    .unless_requested(tokio::time::sleep(backoff))
                    .await
                    .is_none()
                {
                    break;
                }
                continue;
            }
        };
        failed_in_a_row = 0;
        if batch.is_empty() {
            if let Err(error) = engine.send_alert_digests(DigestsDue::OfClosedWindows).await {
                tracing::warn!(%error, "sending alert digests failed");
            }
            if settings.until_empty {
                found_empty = true;
                break;
            }
            continue;
        }
        let (report, next) = heal_and_receive_next(engine, batch, settings, shutdown).await;
        received = next;
        for failed in report.not_settled() {
            if let dlq_healer_core::Outcome::Failed { reason } = &failed.outcome {
                tracing::warn!(message_id = %failed.message_id, key = %failed.key, %reason, "not healed; it stays in the DLQ");
            }
        }
        summary.add(&report);
    }
    summary.stopped_early = settings.until_empty && !found_empty && !summary.gave_up;
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use chrono::{TimeZone, Utc};
    use dlq_healer_core::consumer::dead_letter_for;
    use dlq_healer_core::context::ErrorInfo;
    use dlq_healer_core::engine::{EngineConfig, Ports};
    use dlq_healer_core::message::OutgoingMessage;
    use dlq_healer_core::ports::{
        Clock, EntryResults, ManualClock, MessageSource, PortError, QueueSender,
    };
    use dlq_healer_core::rules::RuleSet;
    use dlq_healer_core::testing::{
        MemoryAlerter, MemoryArchive, MemoryLedger, MemoryMetrics, MemoryQueue, MemoryQueues,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The DLQ, counting receives and asking for a shutdown at the `stop_at`th. A receive that
    /// finds nothing waits out its `wait`, as a long poll on an empty queue does; from the
    /// `slow_from`th on, a receive's answer takes 50 ms to arrive after it took its messages, as
    /// over a network; once `gone`, every receive fails as on a deleted queue, and while
    /// `unreachable`, as on an endpoint that does not answer.
    struct CountingDlq {
        inner: Arc<MemoryQueue>,
        gone: std::sync::atomic::AtomicBool,
        unreachable: std::sync::atomic::AtomicBool,
        receives: AtomicUsize,
        stop_at: usize,
        slow_from: AtomicUsize,
        shutdown: Shutdown,
    }

    #[async_trait]
    impl MessageSource for CountingDlq {
        fn queue_id(&self) -> &str {
            self.inner.queue_id()
        }
        async fn receive(
            &self,
            max: usize,
            wait: Duration,
        ) -> Result<Vec<ReceivedMessage>, PortError> {
            let receive = self.receives.fetch_add(1, Ordering::SeqCst) + 1;
            if receive == self.stop_at {
                self.shutdown.request();
            }
            if self.gone.load(Ordering::SeqCst) {
                return Err(PortError::permanent(
                    "receive",
                    "dlq",
                    "the queue does not exist",
                ));
            }
            if self.unreachable.load(Ordering::SeqCst) {
                return Err(PortError::retryable("receive", "dlq", "connection refused"));
            }
            let messages = self.inner.receive(max, wait).await?;
            if messages.is_empty() {
                tokio::time::sleep(wait).await;
            }
            if receive >= self.slow_from.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(messages)
        }
        async fn delete(&self, handles: &[String]) -> Result<EntryResults<()>, PortError> {
            self.inner.delete(handles).await
        }
        async fn change_visibility(
            &self,
            entries: &[(String, u32)],
        ) -> Result<EntryResults<()>, PortError> {
            self.inner.change_visibility(entries).await
        }
    }

    /// A DLQ of `messages` timeouts from `orders`, and an engine healing it.
    async fn world(messages: usize, stop_at: usize) -> (Engine, Arc<CountingDlq>, Shutdown) {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).unwrap(),
        ));
        let queues = MemoryQueues::new(clock.clone());
        queues.create("orders");
        queues.create("dlq");
        let failed_at = clock.now();
        let dead: Vec<OutgoingMessage> = (0..messages)
            .map(|i| {
                let order = ReceivedMessage {
                    message_id: format!("order-{i}"),
                    receipt_handle: String::new(),
                    body: format!("{{\"order\":{i}}}").into_bytes(),
                    attributes: Default::default(),
                    receive_count: 1,
                    redrive_source: None,
                    sent_at: None,
                    group_id: None,
                };
                let error = ErrorInfo::message("ReadTimeout: read timed out");
                dead_letter_for(&order, error, "orders-consumer", "orders", failed_at)
            })
            .collect();
        for chunk in dead.chunks(10) {
            queues.send("dlq", chunk).await.unwrap();
        }
        let shutdown = Shutdown::default();
        let dlq = Arc::new(CountingDlq {
            inner: queues.queue("dlq"),
            receives: AtomicUsize::new(0),
            gone: Default::default(),
            unreachable: Default::default(),
            stop_at,
            slow_from: AtomicUsize::new(usize::MAX),
            shutdown: shutdown.clone(),
        });
        let ports = Ports {
            dlq: dlq.clone(),
            queues: queues.clone(),
            ledger: Arc::new(MemoryLedger::default()),
            archive: Arc::new(MemoryArchive::default()),
            alerter: Arc::new(MemoryAlerter::new(chrono::Duration::minutes(5))),
            metrics: Arc::new(MemoryMetrics::default()),
        };
        let config = EngineConfig {
            jitter_seed: Some(7),
            ..EngineConfig::default()
        };
        let engine = Engine::new(Arc::new(RuleSet::defaults()), ports, clock, config);
        (engine, dlq, shutdown)
    }

    /// How many messages a receive of up to ten finds visible in the DLQ now.
    async fn left_in(dlq: &CountingDlq) -> usize {
        dlq.inner.receive(10, Duration::ZERO).await.unwrap().len()
    }

    fn settings(batch_size: usize) -> LoopSettings {
        LoopSettings {
            batch_size,
            wait: Duration::ZERO,
            until_empty: true,
            keep_alive: Some(KeepAlive::default()),
        }
    }

    #[test]
    fn the_keep_alive_sets_the_visibility_timeout_again_every_third_of_it() {
        let keep_alive = |seconds| KeepAlive::for_visibility_timeout(Duration::from_secs(seconds));
        let thirty = keep_alive(30).expect("a keep-alive for 30 s");
        assert_eq!(
            (thirty.every, thirty.extend_to_seconds),
            (Duration::from_secs(10), 30)
        );
        let two = keep_alive(2).expect("a keep-alive for 2 s");
        assert_eq!(
            (two.every, two.extend_to_seconds),
            (Duration::from_millis(2000) / 3, 2)
        );
        assert!(keep_alive(0).is_none());
        assert!(KeepAlive::for_visibility_timeout(Duration::from_millis(900)).is_none());
        let default = KeepAlive::default();
        assert_eq!(
            Some((default.every, default.extend_to_seconds)),
            keep_alive(30).map(|k| (k.every, k.extend_to_seconds)),
            "without a known timeout, SQS's default of 30 s"
        );
    }

    #[tokio::test]
    async fn the_loop_drains_the_dlq_receiving_each_batch_while_healing_the_one_before() {
        let (engine, dlq, shutdown) = world(25, usize::MAX).await;
        let summary = heal_loop(&engine, settings(10), &shutdown).await;
        assert_eq!(summary.batches, 3);
        assert_eq!(summary.tally.requeued, 25);
        assert!(!summary.stopped_early, "it found the DLQ empty");
        // Three batches and the empty receive that ends the run, nothing more.
        assert_eq!(dlq.receives.load(Ordering::SeqCst), 4);
        assert_eq!(left_in(&dlq).await, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loops_healing_at_once_heal_every_message_once_and_add_up_their_totals() {
        let (engine, dlq, shutdown) = world(95, usize::MAX).await;
        let summary = heal_concurrently(Arc::new(engine), settings(10), &shutdown, 3).await;
        assert_eq!(summary.tally.requeued, 95, "{summary:?}");
        assert_eq!(
            summary.tally.failed + summary.tally.duplicates,
            0,
            "{summary:?}"
        );
        assert_eq!(
            summary.batches, 10,
            "nine batches of ten and one of five, whichever loop took them"
        );
        assert!(
            dlq.receives.load(Ordering::SeqCst) >= 13,
            "each of the three loops ends on an empty receive of its own"
        );
        assert_eq!(left_in(&dlq).await, 0);
    }

    #[tokio::test]
    async fn a_batch_received_before_a_shutdown_is_healed_before_the_loop_stops() {
        // The shutdown comes with the second receive: the one made while the first batch heals.
        let (engine, dlq, shutdown) = world(25, 2).await;
        let summary = heal_loop(&engine, settings(10), &shutdown).await;
        assert_eq!(
            summary.batches, 2,
            "the batch in hand and the one received with it"
        );
        assert_eq!(summary.tally.requeued, 20);
        assert_eq!(
            dlq.receives.load(Ordering::SeqCst),
            2,
            "no receive after the request"
        );
        assert_eq!(
            left_in(&dlq).await,
            5,
            "the rest stays in the DLQ, none in flight"
        );
    }

    #[tokio::test]
    async fn a_stop_while_a_batch_is_gathered_ends_the_batch_there_and_heals_it() {
        // A batch of 30 is gathered from receives of ten; the stop comes during the second,
        // whose answer is still on its way.
        let (engine, dlq, shutdown) = world(35, 2).await;
        dlq.slow_from.store(2, Ordering::SeqCst);
        let summary = heal_loop(&engine, settings(30), &shutdown).await;
        assert_eq!(
            (summary.batches, summary.tally.requeued),
            (1, 20),
            "the messages of both receives are healed, not left in flight"
        );
        assert!(
            summary.stopped_early,
            "a drain stopped before the DLQ was empty says so"
        );
        assert_eq!(
            dlq.receives.load(Ordering::SeqCst),
            2,
            "no receive after the stop"
        );
        let visible = left_in(&dlq).await + left_in(&dlq).await;
        assert_eq!(visible, 15, "the rest stays visible in the DLQ");
    }

    /// Settings that long-poll an empty DLQ for a minute and never stop on their own.
    fn waiting_a_minute() -> LoopSettings {
        LoopSettings {
            wait: Duration::from_secs(60),
            until_empty: false,
            ..settings(10)
        }
    }

    /// Ask `shutdown` for a stop in 50 ms.
    fn stop_soon(shutdown: &Shutdown) {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            shutdown.request();
        });
    }

    #[tokio::test]
    async fn a_drain_stops_at_a_receive_error_that_retrying_will_not_cure() {
        let (engine, dlq, shutdown) = world(5, usize::MAX).await;
        dlq.gone.store(true, Ordering::SeqCst);
        let summary = tokio::time::timeout(
            Duration::from_secs(10),
            heal_loop(&engine, settings(10), &shutdown),
        )
        .await
        .expect("the drain does not retry a queue that is gone");
        assert!(summary.gave_up);
        assert_eq!(summary.receive_errors, 1);
    }

    #[test]
    fn the_wait_after_a_failed_receive_doubles_up_to_thirty_seconds() {
        assert_eq!(retry_wait(1), FIRST_RETRY);
        assert_eq!(retry_wait(2), FIRST_RETRY * 2);
        assert_eq!(retry_wait(4), FIRST_RETRY * 8);
        assert!(retry_wait(usize::MAX) <= Duration::from_secs(30));
    }

    #[tokio::test]
    async fn a_drain_gives_up_on_a_dlq_it_cannot_reach_and_a_worker_does_not() {
        let (engine, dlq, shutdown) = world(5, usize::MAX).await;
        dlq.unreachable.store(true, Ordering::SeqCst);
        let summary = tokio::time::timeout(
            Duration::from_secs(10),
            heal_loop(&engine, settings(10), &shutdown),
        )
        .await
        .expect("the drain does not retry for ever");
        assert!(summary.gave_up);
        assert_eq!(summary.receive_errors, DRAIN_RECEIVE_TRIES);

        let (engine, dlq, shutdown) = world(5, usize::MAX).await;
        dlq.unreachable.store(true, Ordering::SeqCst);
        let worker = LoopSettings {
            until_empty: false,
            ..settings(10)
        };
        let stop = shutdown.clone();
        let healing = tokio::spawn(async move { heal_loop(&engine, worker, &shutdown).await });
        let receives = || dlq.receives.load(Ordering::SeqCst);
        while receives() <= DRAIN_RECEIVE_TRIES {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        dlq.unreachable.store(false, Ordering::SeqCst);
        let reachable_from = receives();
        while receives() < reachable_from + 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.request();
        let summary = healing.await.unwrap();
        assert!(!summary.gave_up, "a worker keeps retrying");
        assert_eq!(summary.tally.requeued, 5, "and heals once the DLQ answers");
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_on_an_empty_dlq_at_once() {
        let (engine, dlq, shutdown) = world(0, usize::MAX).await;
        stop_soon(&shutdown);
        let summary = tokio::time::timeout(
            Duration::from_secs(10),
            heal_loop(&engine, waiting_a_minute(), &shutdown),
        )
        .await
        .expect("the loop stops without waiting out its minute-long poll");
        assert_eq!(summary.batches, 0);
        assert_eq!(dlq.receives.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_for_the_next_batch_after_the_one_in_hand_is_healed() {
        let (engine, dlq, shutdown) = world(5, usize::MAX).await;
        stop_soon(&shutdown);
        let summary = tokio::time::timeout(
            Duration::from_secs(10),
            heal_loop(&engine, waiting_a_minute(), &shutdown),
        )
        .await
        .expect("the loop stops without waiting out the next batch's minute-long poll");
        assert_eq!(summary.batches, 1);
        assert_eq!(summary.tally.requeued, 5, "the batch in hand is healed");
        assert_eq!(left_in(&dlq).await, 0);
    }
}
