//! `dlq-healer stats`: the original dashboard's three panels (messages status, function health,
//! queue depth) for any backend, as text or JSON.

use crate::ops::Operator;
use crate::panels::{DepthRow, MetricTotals};
use anyhow::Result;
use chrono::{DateTime, Utc};
use dlq_healer_core::FailureClass;
use dlq_healer_core::metrics as m;
use serde::Serialize;

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

/// The panels in Prometheus text format.
pub fn prometheus(stats: &Stats) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP dlq_healer_messages_total Dead letters by class and what was done."
    );
    let _ = writeln!(out, "# TYPE dlq_healer_messages_total counter");
    for r in &stats.classes {
        for (action, value) in [
            ("received", r.received),
            ("requeued", r.requeued),
            ("parked", r.parked),
            ("archived", r.archived),
            ("alerted", r.alerted),
            ("suppressed", r.suppressed),
        ] {
            let _ = writeln!(
                out,
                "dlq_healer_messages_total{{class=\"{}\",action=\"{action}\"}} {value}",
                r.class
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP dlq_healer_processed_total Messages the consumer processed."
    );
    let _ = writeln!(out, "# TYPE dlq_healer_processed_total counter");
    let _ = writeln!(out, "dlq_healer_processed_total {}", stats.processed);
    /// Name, help, type and value of one metric family per function.
    type Family = (
        &'static str,
        &'static str,
        &'static str,
        fn(&FunctionRow) -> String,
    );
    let function_families: [Family; 3] = [
        (
            "dlq_healer_invocations_total",
            "Function invocations.",
            "counter",
            |f| f.invocations.to_string(),
        ),
        (
            "dlq_healer_errors_total",
            "Function errors.",
            "counter",
            |f| f.errors.to_string(),
        ),
        (
            "dlq_healer_duration_ms_avg",
            "Mean handling duration in milliseconds.",
            "gauge",
            |f| f.avg_duration_ms.to_string(),
        ),
    ];
    for (name, help, kind, value) in function_families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for f in &stats.functions {
            let _ = writeln!(out, "{name}{{function=\"{}\"}} {}", f.function, value(f));
        }
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
        let stats = from_totals(
            &totals,
            &[DepthRow {
                queue: "orders-dlq".into(),
                visible: 4,
                in_flight: 0,
                delayed: 1,
            }],
        );
        let text = prometheus(&stats);
        assert!(
            text.contains("dlq_healer_messages_total{class=\"auth\",action=\"archived\"} 3"),
            "{text}"
        );
        assert!(text.contains("dlq_healer_invocations_total{function=\"healer\"} 2"));
        assert!(
            text.contains("dlq_healer_queue_messages{queue=\"orders-dlq\",state=\"visible\"} 4")
        );
        assert_eq!(stats.classes.len(), 1);
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
