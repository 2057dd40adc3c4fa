//! The original dashboard's three panels as text tables: messages status, function health,
//! queue depth.

use dlq_healer_core::FailureClass;
use dlq_healer_core::metrics as m;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Metric sums and sample counts by (name, class).
#[derive(Debug, Clone, Default)]
pub struct MetricTotals {
    sums: BTreeMap<(String, Option<FailureClass>), (f64, u64)>,
}

impl MetricTotals {
    /// Add a sum of `samples` samples.
    pub fn add(&mut self, name: &str, class: Option<FailureClass>, sum: f64, samples: u64) {
        let entry = self.sums.entry((name.to_string(), class)).or_default();
        entry.0 += sum;
        entry.1 += samples;
    }

    /// Sum of a metric for one class (or for no class).
    pub fn sum(&self, name: &str, class: Option<FailureClass>) -> f64 {
        self.sums
            .get(&(name.to_string(), class))
            .map_or(0.0, |v| v.0)
    }

    /// Sum of a count metric for one class, as a whole number.
    pub fn count(&self, name: &str, class: Option<FailureClass>) -> u64 {
        self.sum(name, class).round().max(0.0) as u64
    }

    /// Sum of a metric over every class.
    pub fn total(&self, name: &str) -> f64 {
        self.sums
            .iter()
            .filter(|((n, _), _)| n == name)
            .fold(0.0, |sum, (_, v)| sum + v.0)
    }

    /// Sum of a count metric over every class, as a whole number.
    pub fn total_count(&self, name: &str) -> u64 {
        self.total(name).round().max(0.0) as u64
    }

    /// Mean of a metric's samples over every class.
    pub fn mean(&self, name: &str) -> f64 {
        let (sum, samples) = self
            .sums
            .iter()
            .filter(|((n, _), _)| n == name)
            .fold((0.0, 0u64), |(s, c), (_, v)| (s + v.0, c + v.1));
        if samples == 0 {
            0.0
        } else {
            sum / samples as f64
        }
    }
}

/// Metric totals kept in memory, as a metrics port (for runs whose metrics live in the process).
#[derive(Debug, Default)]
pub struct SharedTotals(std::sync::Mutex<MetricTotals>);

impl SharedTotals {
    /// A copy of the totals so far.
    pub fn snapshot(&self) -> MetricTotals {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl dlq_healer_core::ports::Metrics for SharedTotals {
    fn record(
        &self,
        _at: chrono::DateTime<chrono::Utc>,
        events: &[dlq_healer_core::ports::MetricEvent],
    ) {
        let mut totals = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for event in events {
            totals.add(event.name, event.class, event.value, 1);
        }
    }
}

/// Depth of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepthRow {
    /// Queue name.
    pub queue: String,
    /// Visible now.
    pub visible: u64,
    /// Received, not yet deleted.
    pub in_flight: u64,
    /// Delayed (sent with a delay, not yet visible).
    pub delayed: u64,
}

/// Render the three panels.
pub fn render(totals: &MetricTotals, depths: &[DepthRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "MESSAGES STATUS");
    let _ = writeln!(
        out,
        "  {:<12} {:>9} {:>9} {:>7} {:>9} {:>8} {:>11}",
        "class", "received", "requeued", "parked", "archived", "alerted", "suppressed"
    );
    for class in FailureClass::ALL {
        let c = Some(class);
        let received = totals.count(m::RECEIVED, c);
        if received == 0 && totals.count(m::ALERTS_SUPPRESSED, c) == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<12} {:>9} {:>9} {:>7} {:>9} {:>8} {:>11}",
            class.as_str(),
            received,
            totals.count(m::REQUEUED, c),
            totals.count(m::PARKED, c),
            totals.count(m::ARCHIVED, c),
            totals.count(m::ALERTED, c),
            totals.count(m::ALERTS_SUPPRESSED, c),
        );
    }
    let _ = writeln!(
        out,
        "  {:<12} {:>9} {:>9} {:>7} {:>9} {:>8} {:>11}",
        "all",
        totals.total_count(m::RECEIVED),
        totals.total_count(m::REQUEUED),
        totals.total_count(m::PARKED),
        totals.total_count(m::ARCHIVED),
        totals.total_count(m::ALERTED),
        totals.total_count(m::ALERTS_SUPPRESSED),
    );
    let _ = writeln!(
        out,
        "  orders processed: {}",
        totals.total_count(m::PROCESSED)
    );
    let already_handled = totals.total_count(m::DUPLICATES);
    if already_handled > 0 {
        let _ = writeln!(
            out,
            "  deliveries already handled (redelivered, found in the ledger, only deleted): {already_handled}"
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "FUNCTION HEALTH");
    let _ = writeln!(
        out,
        "  {:<10} {:>12} {:>8} {:>16}",
        "function", "invocations", "errors", "avg duration ms"
    );
    let _ = writeln!(
        out,
        "  {:<10} {:>12} {:>8} {:>16.2}",
        "consumer",
        totals.total_count(m::CONSUMER_INVOCATIONS),
        totals.total_count(m::CONSUMER_ERRORS),
        totals.mean(m::CONSUMER_DURATION_MS)
    );
    let _ = writeln!(
        out,
        "  {:<10} {:>12} {:>8} {:>16.2}",
        "healer",
        totals.total_count(m::HEALER_INVOCATIONS),
        totals.total_count(m::HEALER_ERRORS),
        totals.mean(m::HEALER_DURATION_MS)
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "QUEUE DEPTH");
    let width = depths
        .iter()
        .map(|r| r.queue.len())
        .max()
        .unwrap_or(0)
        .max(16);
    let _ = writeln!(
        out,
        "  {:<width$} {:>8} {:>10} {:>8}",
        "queue", "visible", "in flight", "delayed"
    );
    for row in depths {
        let _ = writeln!(
            out,
            "  {:<width$} {:>8} {:>10} {:>8}",
            row.queue, row.visible, row.in_flight, row.delayed
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_show_class_rows_totals_and_depths() {
        let mut totals = MetricTotals::default();
        totals.add(m::RECEIVED, Some(FailureClass::Auth), 5.0, 2);
        totals.add(m::ARCHIVED, Some(FailureClass::Auth), 5.0, 2);
        totals.add(m::ALERTED, Some(FailureClass::Auth), 5.0, 2);
        totals.add(m::RECEIVED, Some(FailureClass::Timeout), 3.0, 1);
        totals.add(m::REQUEUED, Some(FailureClass::Timeout), 3.0, 1);
        totals.add(m::HEALER_DURATION_MS, None, 30.0, 3);
        let text = render(
            &totals,
            &[DepthRow {
                queue: "orders-dlq".into(),
                visible: 1,
                in_flight: 0,
                delayed: 2,
            }],
        );
        assert!(
            text.contains("MESSAGES STATUS")
                && text.contains("FUNCTION HEALTH")
                && text.contains("QUEUE DEPTH")
        );
        let auth = text
            .lines()
            .find(|l| l.trim_start().starts_with("auth"))
            .unwrap();
        assert_eq!(
            auth.split_whitespace().collect::<Vec<_>>(),
            ["auth", "5", "0", "0", "5", "5", "0"]
        );
        let all = text
            .lines()
            .find(|l| l.trim_start().starts_with("all"))
            .unwrap();
        assert_eq!(all.split_whitespace().nth(1), Some("8"));
        assert!(
            !text.contains("validation"),
            "classes with nothing are left out"
        );
        let healer = text
            .lines()
            .find(|l| l.trim_start().starts_with("healer"))
            .unwrap();
        assert!(healer.ends_with("10.00"), "{healer}");
        assert!(text.contains("orders-dlq"));
    }
}
