//! `dlq-healer stats`: the original dashboard's three panels (messages status, function health,
//! queue depth) for any backend, as text or JSON.

use crate::ops::Operator;
use crate::panels::{DepthRow, MetricTotals};
use anyhow::Result;
use chrono::{DateTime, Utc};
use dlq_healer_core::FailureClass;
use dlq_healer_core::metrics as m;
use serde::Serialize;
use std::collections::HashMap;

/// One class row of the messages-status panel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassRow {
    /// The class.
    pub class: FailureClass,
    /// Dead letters received.
    pub received: u64,
    /// Re-queued.
    pub requeued: u64,
    /// Parked.
    pub parked: u64,
    /// Archived.
    pub archived: u64,
    /// Alerted on.
    pub alerted: u64,
    /// Held back by the alert window.
    pub suppressed: u64,
}

impl ClassRow {
    /// A class with nothing to count.
    fn nothing(class: FailureClass) -> ClassRow {
        ClassRow {
            class,
            received: 0,
            requeued: 0,
            parked: 0,
            archived: 0,
            alerted: 0,
            suppressed: 0,
        }
    }

    /// The figures by what was done, named as the panel's columns.
    fn by_action(&self) -> [(&'static str, u64); 6] {
        [
            ("received", self.received),
            ("requeued", self.requeued),
            ("parked", self.parked),
            ("archived", self.archived),
            ("alerted", self.alerted),
            ("suppressed", self.suppressed),
        ]
    }
}

/// One function of the function-health panel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionRow {
    /// `consumer` or `healer`.
    pub function: String,
    /// Invocations.
    pub invocations: u64,
    /// Errors.
    pub errors: u64,
    /// Mean duration, ms.
    pub avg_duration_ms: f64,
}

/// One queue of the queue-depth panel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueRow {
    /// Queue name.
    pub queue: String,
    /// Visible.
    pub visible: u64,
    /// In flight.
    pub in_flight: u64,
    /// Delayed.
    pub delayed: u64,
}

/// The three panels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Messages status, by class (classes with nothing left out).
    pub classes: Vec<ClassRow>,
    /// Orders processed by the consumer.
    pub processed: u64,
    /// DLQ deliveries found handled already in the ledger (redelivered after a crash or a
    /// visibility timeout that ran out): only deleted, and not counted in the classes.
    pub already_handled: u64,
    /// Function health.
    pub functions: Vec<FunctionRow>,
    /// Queue depth.
    pub queues: Vec<QueueRow>,
    /// When the figures were read.
    pub at: DateTime<Utc>,
}

/// The panels from metric totals and depths.
pub fn from_totals(totals: &MetricTotals, depths: &[DepthRow]) -> Stats {
    let classes = FailureClass::ALL
        .into_iter()
        .map(|class| {
            let c = Some(class);
            ClassRow {
                class,
                received: totals.count(m::RECEIVED, c),
                requeued: totals.count(m::REQUEUED, c),
                parked: totals.count(m::PARKED, c),
                archived: totals.count(m::ARCHIVED, c),
                alerted: totals.count(m::ALERTED, c),
                suppressed: totals.count(m::ALERTS_SUPPRESSED, c),
            }
        })
        .filter(|r| r.received > 0 || r.suppressed > 0)
        .collect();
    let function = |name: &str, invocations, errors, duration| FunctionRow {
        function: name.into(),
        invocations: totals.total_count(invocations),
        errors: totals.total_count(errors),
        avg_duration_ms: totals.mean(duration),
    };
    Stats {
        classes,
        processed: totals.total_count(m::PROCESSED),
        already_handled: totals.total_count(m::DUPLICATES),
        functions: vec![
            function(
                "consumer",
                m::CONSUMER_INVOCATIONS,
                m::CONSUMER_ERRORS,
                m::CONSUMER_DURATION_MS,
            ),
            function(
                "healer",
                m::HEALER_INVOCATIONS,
                m::HEALER_ERRORS,
                m::HEALER_DURATION_MS,
            ),
        ],
        queues: depths
            .iter()
            .map(|d| QueueRow {
                queue: d.queue.clone(),
                visible: d.visible,
                in_flight: d.in_flight,
                delayed: d.delayed,
            })
            .collect(),
        at: Utc::now(),
    }
}

/// Read the panels from a backend.
pub async fn read(
    operator: &dyn Operator,
    dlq: Option<&str>,
    since: DateTime<Utc>,
) -> Result<(Stats, MetricTotals, Vec<DepthRow>)> {
    let (totals, depths) = operator.stats(dlq, since).await?;
    Ok((from_totals(&totals, &depths), totals, depths))
}

/// What the message counts of a backend's panels are, and so how `/metrics` exposes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageCounts {
    /// Everything the store holds (local): counters.
    AllTime,
    /// The decisions of a trailing window (aws, e.g. `24h`): they leave it as it moves on, so a
    /// gauge, `dlq_healer_messages_in_window`.
    InWindow(String),
}

/// Keeps the counters of `/metrics` from going down while the source of their figures forgets:
/// the local retention sweep removes old metrics, and Prometheus would read the drop as a restart
/// and the whole total as new. A counter starts at its first figure and then rises by what each
/// figure adds to the one before; a figure below the one before adds nothing.
#[derive(Debug, Default)]
pub struct CounterGuard {
    /// The last figure and the value exposed, by series.
    series: HashMap<String, (u64, u64)>,
}

impl CounterGuard {
    /// The value to expose for `series` whose source reads `figure` now.
    pub fn count(&mut self, series: &str, figure: u64) -> u64 {
        match self.series.get_mut(series) {
            Some((last, exposed)) => {
                *exposed += figure.saturating_sub(*last);
                *last = figure;
                *exposed
            }
            None => {
                self.series.insert(series.to_string(), (figure, figure));
                figure
            }
        }
    }
}

/// The panels in Prometheus text format; `guard` keeps the counters from going down.
pub fn prometheus(stats: &Stats, counts: &MessageCounts, guard: &mut CounterGuard) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let (family, help, kind) = match counts {
        MessageCounts::AllTime => (
            "dlq_healer_messages_total",
            "Dead letters by class and what was done.".to_string(),
            "counter",
        ),
        MessageCounts::InWindow(window) => (
            "dlq_healer_messages_in_window",
            format!("Dead letters decided in the last {window}, by class and what was done."),
            "gauge",
        ),
    };
    let _ = writeln!(out, "# HELP {family} {help}");
    let _ = writeln!(out, "# TYPE {family} {kind}");
    // Every class, those with nothing too: a series that comes and goes is no counter.
    for class in FailureClass::ALL {
        let row = stats.classes.iter().find(|r| r.class == class);
        let figures = row.map_or_else(|| ClassRow::nothing(class), Clone::clone);
        for (action, figure) in figures.by_action() {
            let series = format!("{family}{{class=\"{class}\",action=\"{action}\"}}");
            let value = match counts {
                MessageCounts::AllTime => guard.count(&series, figure),
                MessageCounts::InWindow(_) => figure,
            };
            let _ = writeln!(out, "{series} {value}");
        }
    }
    let mut counter = |name: &str, help: &str, series: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (labels, figure) in series {
            let series = format!("{name}{labels}");
            let _ = writeln!(out, "{series} {}", guard.count(&series, figure));
        }
    };
    counter(
        "dlq_healer_processed_total",
        "Messages the consumer processed.",
        vec![(String::new(), stats.processed)],
    );
    counter(
        "dlq_healer_already_handled_total",
        "DLQ deliveries found handled already in the ledger (redelivered), only deleted.",
        vec![(String::new(), stats.already_handled)],
    );
    let by_function = |figure: fn(&FunctionRow) -> u64| -> Vec<(String, u64)> {
        stats
            .functions
            .iter()
            .map(|f| (format!("{{function=\"{}\"}}", f.function), figure(f)))
            .collect()
    };
    counter(
        "dlq_healer_invocations_total",
        "Function invocations.",
        by_function(|f| f.invocations),
    );
    counter(
        "dlq_healer_errors_total",
        "Function errors.",
        by_function(|f| f.errors),
    );
    let _ = writeln!(
        out,
        "# HELP dlq_healer_duration_ms_avg Mean handling duration in milliseconds."
    );
    let _ = writeln!(out, "# TYPE dlq_healer_duration_ms_avg gauge");
    for f in &stats.functions {
        let _ = writeln!(
            out,
            "dlq_healer_duration_ms_avg{{function=\"{}\"}} {}",
            f.function, f.avg_duration_ms
        );
    }
    let _ = writeln!(
        out,
        "# HELP dlq_healer_queue_messages Messages in a queue by state."
    );
    let _ = writeln!(out, "# TYPE dlq_healer_queue_messages gauge");
    for q in &stats.queues {
        let queue = q.queue.replace(['\\', '"', '\n'], "_");
        for (state, value) in [
            ("visible", q.visible),
            ("in_flight", q.in_flight),
            ("delayed", q.delayed),
        ] {
            let _ = writeln!(
                out,
                "dlq_healer_queue_messages{{queue=\"{queue}\",state=\"{state}\"}} {value}"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_panel() {
        let mut totals = MetricTotals::default();
        totals.add(m::RECEIVED, Some(FailureClass::Auth), 3.0, 3);
        totals.add(m::ARCHIVED, Some(FailureClass::Auth), 3.0, 3);
        totals.add(m::HEALER_INVOCATIONS, None, 2.0, 2);
        totals.add(m::DUPLICATES, None, 5.0, 1);
        let stats = from_totals(
            &totals,
            &[DepthRow {
                queue: "orders-dlq".into(),
                visible: 4,
                in_flight: 0,
                delayed: 1,
            }],
        );
        let text = prometheus(
            &stats,
            &MessageCounts::AllTime,
            &mut CounterGuard::default(),
        );
        assert!(
            text.contains("dlq_healer_messages_total{class=\"auth\",action=\"archived\"} 3"),
            "{text}"
        );
        assert!(text.contains("dlq_healer_invocations_total{function=\"healer\"} 2"));
        assert_eq!(stats.already_handled, 5);
        assert!(
            text.contains("dlq_healer_already_handled_total 5"),
            "{text}"
        );
        assert!(
            text.contains("dlq_healer_queue_messages{queue=\"orders-dlq\",state=\"visible\"} 4")
        );
        assert_eq!(stats.classes.len(), 1);
        let text = prometheus(
            &stats,
            &MessageCounts::InWindow("24h".into()),
            &mut CounterGuard::default(),
        );
        assert!(
            text.contains("# TYPE dlq_healer_messages_in_window gauge"),
            "{text}"
        );
        assert!(
            text.contains("dlq_healer_messages_in_window{class=\"auth\",action=\"archived\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn counters_do_not_go_down_when_old_figures_are_forgotten() {
        let mut guard = CounterGuard::default();
        assert_eq!(
            guard.count("a", 10),
            10,
            "a counter starts at its first figure"
        );
        assert_eq!(guard.count("a", 15), 15);
        assert_eq!(
            guard.count("a", 4),
            15,
            "a retention sweep forgot old figures: nothing is taken off"
        );
        assert_eq!(guard.count("a", 6), 17, "what is added after counts on");
        assert_eq!(guard.count("b", 2), 2, "each series on its own");
    }
}

/// Flags of `stats`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    ops: crate::ops::OpsArgs,
    /// The DLQ whose depth (and its source queue's) to show on aws; local shows every queue.
    #[arg(long, env = "DLQ_URL")]
    dlq: Option<String>,
    /// On aws: count ledger decisions over this window (e.g. 24h, 7d). Local shows all time.
    #[arg(long, default_value = "24h")]
    window: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Run `stats`.
pub fn command(args: StatsArgs) -> Result<i32> {
    let window = crate::filter::parse_duration(&args.window)
        .map_err(|e| anyhow::anyhow!("--window: {e}"))?;
    let (stats, totals, depths) = crate::runtime()?.block_on(async {
        let operator = crate::ops::open(&args.ops).await?;
        read(operator.as_ref(), args.dlq.as_deref(), Utc::now() - window).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", crate::panels::render(&totals, &depths));
    }
    Ok(0)
}
