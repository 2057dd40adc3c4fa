//! `dlq-healer demo`: the original scenario end to end on the local backend, on simulated time.
//! Orders are produced, consumed (failing the original's five ways), dead-lettered with their
//! context, healed by the same engine and loop as `run`, and accounted for.

use crate::local::{LocalBackend, LocalSettings};
use crate::panels::{self, DepthRow, MetricTotals};
use crate::worker::{self, LoopSettings, Shutdown};
use anyhow::{Context, Result, bail};
use chrono::{TimeZone, Utc};
use dlq_healer_core::consumer::Consumer;
use dlq_healer_core::engine::EngineConfig;
use dlq_healer_core::message::OutgoingMessage;
use dlq_healer_core::ports::{Alerter, Clock, ManualClock, QueueSender};
use dlq_healer_core::records::RecordedAction;
use dlq_healer_core::rules::RuleSet;
use dlq_healer_demo::{FailureMix, OrderConsumer, OrderFactory};
use dlq_healer_local::QueueSettings;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The main queue of the scenario.
pub const MAIN_QUEUE: &str = "orders";
/// Its dead-letter queue.
pub const DLQ: &str = "orders-dlq";
/// Simulated time after which the demo stops waiting for delayed and parked messages.
const MAX_SIMULATED: chrono::Duration = chrono::Duration::days(2);
/// Simulated seconds per idle step.
const STEP: chrono::Duration = chrono::Duration::seconds(10);

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Orders to produce.
    pub orders: usize,
    /// Failure percentages.
    pub mix: FailureMix,
    /// Random seed.
    pub seed: u64,
    /// Directory for the database and archive (fresh temporary one when absent).
    pub dir: Option<PathBuf>,
    /// Healer batch size.
    pub batch_size: usize,
    /// Rules (defaults when absent).
    pub rules: Arc<RuleSet>,
}

/// The accounting of a demo run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accounting {
    /// Orders sent.
    pub sent: u64,
    /// Orders processed by the consumer.
    pub processed: u64,
    /// Distinct messages archived.
    pub archived: u64,
    /// Messages still in the main queue or the DLQ.
    pub still_queued: u64,
}

impl Accounting {
    /// Count what became of the orders: processed by the handler, archived (distinct keys), or
    /// still in the queues.
    pub fn of(
        order_ids: &BTreeSet<u64>,
        handler: &OrderConsumer,
        archived_keys: usize,
        depths: &[DepthRow],
    ) -> Self {
        Accounting {
            sent: order_ids.len() as u64,
            processed: handler.processed().intersection(order_ids).count() as u64,
            archived: archived_keys as u64,
            still_queued: depths
                .iter()
                .map(|d| d.visible + d.in_flight + d.delayed)
                .sum(),
        }
    }

    /// The accounting line both demos print.
    pub fn line(&self) -> String {
        format!(
            "ACCOUNTING: sent {} = processed {} + archived {} + still queued {}; unaccounted {}",
            self.sent,
            self.processed,
            self.archived,
            self.still_queued,
            self.unaccounted()
        )
    }

    /// Sent minus everything found; zero when nothing is lost or duplicated.
    pub fn unaccounted(&self) -> i64 {
        self.sent as i64 - (self.processed + self.archived + self.still_queued) as i64
    }
}

/// The run's orders, each registered with the handler's simulated downstream: their ids and the
/// messages to produce.
pub fn make_orders(
    options: &DemoOptions,
    handler: &OrderConsumer,
) -> (BTreeSet<u64>, Vec<OutgoingMessage>) {
    let mut factory = OrderFactory::new(options.mix, options.seed);
    let mut order_ids = BTreeSet::new();
    let mut messages = Vec::with_capacity(options.orders);
    for _ in 0..options.orders {
        let (order_id, body, fate) = factory.next_order();
        handler.expect(order_id, fate);
        order_ids.insert(order_id);
        messages.push(OutgoingMessage::new(format!("o{order_id}"), body));
    }
    (order_ids, messages)
}

/// Run the demo; prints the panels and the accounting, returns the accounting.
pub async fn run(options: DemoOptions) -> Result<Accounting> {
    if options.orders == 0 {
        bail!("--orders must be at least 1");
    }
    let dir = match &options.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            if std::fs::read_dir(dir)?.next().is_some() {
                bail!(
                    "{} is not empty; the demo needs a fresh directory (or leave out --dir)",
                    dir.display()
                );
            }
            dir.clone()
        }
        None => new_directory(
            &std::env::temp_dir(),
            &format!("dlq-healer-demo-{}-{}", std::process::id(), options.seed),
        )?,
    };
    let start = Utc
        .with_ymd_and_hms(2026, 11, 27, 10, 0, 0)
        .single()
        .context("start time")?;
    let clock = Arc::new(ManualClock::new(start));
    let settings = LocalSettings {
        db: dir.join("demo.db"),
        archive_dir: dir.join("archive"),
        webhook_url: None,
        alert_window: dlq_healer_core::engine::DEFAULT_ALERT_WINDOW,
    };
    let backend = LocalBackend::open(&settings, clock.clone())?;
    backend.queues.create_queue(DLQ, QueueSettings::default())?;
    backend
        .queues
        .create_queue(MAIN_QUEUE, QueueSettings::default().with_redrive(DLQ, 5))?;

    // Producer.
    let handler = OrderConsumer::new();
    let (order_ids, orders) = make_orders(&options, &handler);
    produce(backend.queues.as_ref(), MAIN_QUEUE, &orders).await?;

    let consumer = Consumer {
        queue: Arc::new(backend.queues.queue(MAIN_QUEUE)?),
        sender: backend.queues.clone(),
        dlq: DLQ.to_string(),
        name: "orders-consumer".to_string(),
        clock: clock.clone(),
        metrics: backend.metrics.clone(),
    };
    let engine = backend.engine(
        DLQ,
        options.rules.clone(),
        EngineConfig {
            default_target: Some(MAIN_QUEUE.to_string()),
            jitter_seed: Some(options.seed),
            ..EngineConfig::default()
        },
    )?;
    let loop_settings = LoopSettings {
        batch_size: options.batch_size,
        wait: Duration::ZERO,
        until_empty: true,
        keep_alive: None,
    };
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    while clock.now() - start < MAX_SIMULATED && !shutdown.requested() {
        while consumer
            .poll_once(&handler, 10, Duration::ZERO)
            .await
            .received
            > 0
        {}
        worker::heal_loop(&engine, loop_settings, &shutdown).await;
        let outstanding: u64 = [MAIN_QUEUE, DLQ]
            .iter()
            .map(|q| backend.queues.depth(q).map(|d| d.total()))
            .sum::<Result<u64, _>>()?;
        if outstanding == 0 {
            break;
        }
        clock.advance(STEP);
    }
    backend
        .alerter
        .flush_digests(clock.now() + chrono::Duration::days(1))
        .await?;

    let totals = metric_totals(&backend)?;
    let depths = depth_rows(&backend, &[MAIN_QUEUE, DLQ])?;
    print!("{}", panels::render(&totals, &depths));

    let archived_keys: BTreeSet<String> = backend
        .ledger
        .query(&Default::default())?
        .into_iter()
        .filter(|r| r.action == RecordedAction::Archived)
        .map(|r| r.key)
        .collect();
    let accounting = Accounting::of(&order_ids, &handler, archived_keys.len(), &depths);
    println!();
    println!(
        "simulated time: {} min; alerts sent: {}; archive: {}",
        (clock.now() - start).num_minutes(),
        backend.alerter.sent_count()?,
        settings.archive_dir.display()
    );
    println!("{}", accounting.line());
    Ok(accounting)
}

/// A directory under `parent` that did not exist before: `stem`, or `stem-2`, `stem-3`, ... when
/// an earlier run left one behind (a process id is reused sooner or later, and a demo that opened
/// an old run's database would count that run's messages too).
fn new_directory(parent: &std::path::Path, stem: &str) -> Result<PathBuf> {
    for attempt in 1..=1000 {
        let dir = match attempt {
            1 => parent.join(stem),
            n => parent.join(format!("{stem}-{n}")),
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("cannot create {}", dir.display()));
            }
        }
    }
    bail!(
        "{} holds 1000 directories named {stem}-*; remove them or pass --dir",
        parent.display()
    )
}

/// Produce the orders to `queue`, ten per send as SQS takes them.
pub async fn produce(
    sender: &dyn QueueSender,
    queue: &str,
    orders: &[OutgoingMessage],
) -> Result<()> {
    for chunk in orders.chunks(10) {
        for result in sender.send(queue, chunk).await? {
            result.context("producing an order")?;
        }
    }
    Ok(())
}

/// Every metric of the store, summed.
pub fn metric_totals(backend: &LocalBackend) -> Result<MetricTotals> {
    let mut totals = MetricTotals::default();
    for row in backend.metrics.totals()? {
        totals.add(&row.name, row.class, row.sum, row.samples);
    }
    Ok(totals)
}

/// Depth rows for some queues.
pub fn depth_rows(backend: &LocalBackend, queues: &[&str]) -> Result<Vec<DepthRow>> {
    queues
        .iter()
        .map(|q| {
            let depth = backend.queues.depth(q)?;
            Ok(DepthRow {
                queue: q.to_string(),
                visible: depth.visible,
                in_flight: depth.in_flight,
                delayed: depth.delayed,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_never_reuses_one_an_earlier_run_left_behind() {
        let parent = tempfile::tempdir().unwrap();
        let first = new_directory(parent.path(), "dlq-healer-demo-7-5").unwrap();
        assert_eq!(first, parent.path().join("dlq-healer-demo-7-5"));
        std::fs::write(first.join("demo.db"), "an earlier run").unwrap();

        let second = new_directory(parent.path(), "dlq-healer-demo-7-5").unwrap();
        assert_eq!(second, parent.path().join("dlq-healer-demo-7-5-2"));
        assert_eq!(std::fs::read_dir(&second).unwrap().count(), 0);
        assert!(
            first.join("demo.db").exists(),
            "the earlier run's files stay"
        );
    }

    #[test]
    fn a_directory_that_cannot_be_created_is_a_clear_error() {
        let parent = tempfile::tempdir().unwrap();
        let file = parent.path().join("not-a-directory");
        std::fs::write(&file, "").unwrap();
        let error = new_directory(&file, "demo").unwrap_err();
        assert!(format!("{error:#}").contains("cannot create"), "{error:#}");
    }
}
