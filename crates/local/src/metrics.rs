//! Metrics in the SQLite file: per-minute sums and sample counts by name and class, upserted, so a
//! dashboard in another process reads what the healer and consumers record.

use crate::error::LocalError;
use crate::store::LocalStore;
use chrono::{DateTime, Utc};
use dlq_healer_core::FailureClass;
use dlq_healer_core::ports::{MetricEvent, Metrics};
use rusqlite::params;
use std::collections::BTreeMap;

/// One metric summed over time, for one class (or none).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricTotal {
    /// The metric's name (see `dlq_healer_core::metrics`).
    pub name: String,
    /// The class it is about, if any.
    pub class: Option<FailureClass>,
    /// The sum of the values.
    pub sum: f64,
    /// How many samples were recorded.
    pub samples: u64,
}

/// One metric in one minute, for one class (or none).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// The start of the minute.
    pub minute: DateTime<Utc>,
    /// The metric's name.
    pub name: String,
    /// The class it is about, if any.
    pub class: Option<FailureClass>,
    /// The sum of the values in the minute.
    pub sum: f64,
    /// How many samples were recorded in the minute.
    pub samples: u64,
}

/// The [`Metrics`] of the local backend. Recording never fails the caller: errors are logged.
#[derive(Debug, Clone)]
pub struct LocalMetrics {
    store: LocalStore,
}

fn class_column(class: Option<FailureClass>) -> &'static str {
    class.map_or("", FailureClass::as_str)
}

fn class_of(text: &str) -> rusqlite::Result<Option<FailureClass>> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| crate::store::conversion(format!("metric class: {e}")))
}

/// The `minute` column of the minute holding `at`: seconds since the epoch at its start.
pub(crate) fn minute_holding(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60) * 60
}

impl LocalMetrics {
    /// The metrics of `store`.
    pub fn new(store: LocalStore) -> Self {
        LocalMetrics { store }
    }

    /// Record samples, reporting errors instead of logging them.
    pub fn try_record(&self, at: DateTime<Utc>, events: &[MetricEvent]) -> Result<(), LocalError> {
        let minute = minute_holding(at);
        self.store.write("record", "metrics", |tx| {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO metrics (minute, name, class, sum, samples) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT(minute, name, class)
                 DO UPDATE SET sum = sum + excluded.sum, samples = samples + 1",
            )?;
            for event in events {
                upsert.execute(params![
                    minute,
                    event.name,
                    class_column(event.class),
                    event.value
                ])?;
            }
            Ok(())
        })
    }

    /// Every metric summed over all time, by name and class.
    pub fn totals(&self) -> Result<Vec<MetricTotal>, LocalError> {
        self.store.read("read", "metrics", |tx| {
            let mut statement = tx.prepare_cached(
                "SELECT name, class, SUM(sum), SUM(samples) FROM metrics
                 GROUP BY name, class ORDER BY name, class",
            )?;
            statement
                .query_map([], |row| {
                    let class: String = row.get(1)?;
                    Ok(MetricTotal {
                        name: row.get(0)?,
                        class: class_of(&class)?,
                        sum: row.get(2)?,
                        samples: row.get(3)?,
                    })
                })?
                .collect()
        })
    }

    /// One metric summed over all time, by class (`None`: samples without a class).
    pub fn totals_of(&self, name: &str) -> Result<BTreeMap<Option<FailureClass>, f64>, LocalError> {
        Ok(self
            .totals()?
            .into_iter()
            .filter(|t| t.name == name)
            .map(|t| (t.class, t.sum))
            .collect())
    }

    /// Every per-minute point from the minute holding `since` on, oldest first.
    pub fn series(&self, since: DateTime<Utc>) -> Result<Vec<MetricPoint>, LocalError> {
        let from = minute_holding(since);
        self.store.read("read", "metrics", |tx| {
            let mut statement = tx.prepare_cached(
                "SELECT minute, name, class, sum, samples FROM metrics WHERE minute >= ?1
                 ORDER BY minute, name, class",
            )?;
            statement
                .query_map([from], |row| {
                    let minute: i64 = row.get(0)?;
                    let class: String = row.get(2)?;
                    Ok(MetricPoint {
                        minute: DateTime::from_timestamp(minute, 0).ok_or_else(|| {
                            crate::store::conversion(format!("metric minute {minute}"))
                        })?,
                        name: row.get(1)?,
                        class: class_of(&class)?,
                        sum: row.get(3)?,
                        samples: row.get(4)?,
                    })
                })?
                .collect()
        })
    }
}

impl Metrics for LocalMetrics {
    fn record(&self, at: DateTime<Utc>, events: &[MetricEvent]) {
        if let Err(error) = self.try_record(at, events) {
            tracing::warn!(target: "dlq_healer::metrics", %error, dropped = events.len(), "metrics not recorded");
        }
    }
}
