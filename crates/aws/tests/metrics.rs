//! EmfMetrics: every line is a valid CloudWatch Embedded Metric Format document. No AWS call is
//! made (CloudWatch Logs extracts the metrics from the log lines), so no emulator is needed.

use chrono::{TimeZone, Utc};
use dlq_healer_aws::EmfMetrics;
use dlq_healer_core::FailureClass;
use dlq_healer_core::metrics as names;
use dlq_healer_core::ports::{MetricEvent, Metrics};
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A writer the test can read back.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).expect("UTF-8");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "lines end in newlines"
        );
        text.lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect()
    }
}

fn event(name: &'static str, class: Option<FailureClass>, value: f64) -> MetricEvent {
    MetricEvent { name, class, value }
}

/// Check the EMF structure of one document and return (dimension sets, metric names) by
/// directive.
fn check_emf(
    document: &Value,
    namespace: &str,
    at_ms: i64,
) -> Vec<(Vec<Vec<String>>, Vec<String>)> {
    let root = document.as_object().expect("an object");
    let aws = root.get("_aws").and_then(Value::as_object).expect("_aws");
    assert_eq!(
        aws.get("Timestamp").and_then(Value::as_i64),
        Some(at_ms),
        "Timestamp in ms"
    );
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .expect("CloudWatchMetrics array");
    assert!(!directives.is_empty());
    let mut out = Vec::new();
    for directive in directives {
        assert_eq!(directive["Namespace"], namespace);
        let dimensions: Vec<Vec<String>> = directive["Dimensions"]
            .as_array()
            .expect("Dimensions array")
            .iter()
            .map(|set| {
                set.as_array()
                    .expect("a dimension set is an array")
                    .iter()
                    .map(|d| {
                        let name = d.as_str().expect("dimension names are strings");
                        assert!(
                            root.get(name).is_some_and(Value::is_string),
                            "dimension {name} has a value"
                        );
                        name.to_string()
                    })
                    .collect()
            })
            .collect();
        let metrics: Vec<String> = directive["Metrics"]
            .as_array()
            .expect("Metrics array")
            .iter()
            .map(|m| {
                let name = m["Name"].as_str().expect("metric name").to_string();
                let unit = m["Unit"].as_str().expect("metric unit");
                assert!(["Count", "Milliseconds", "Seconds"].contains(&unit));
                assert!(
                    root.get(&name).is_some_and(Value::is_number),
                    "metric {name} has a value"
                );
                name
            })
            .collect();
        out.push((dimensions, metrics));
    }
    out
}

#[test]
fn one_call_about_one_class_is_one_emf_line_with_summed_values_and_units() {
    let buffer = Buffer::default();
    let metrics = EmfMetrics::new(buffer.clone());
    let at = Utc.with_ymd_and_hms(2026, 11, 27, 10, 15, 1).unwrap();
    metrics.record(
        at,
        &[
            event(names::RECEIVED, Some(FailureClass::Timeout), 1.0),
            event(names::RECEIVED, Some(FailureClass::Timeout), 1.0),
            event(names::REQUEUED, Some(FailureClass::Timeout), 2.0),
            event(
                names::MESSAGE_AGE_SECONDS,
                Some(FailureClass::Timeout),
                42.5,
            ),
            event(names::HEALER_INVOCATIONS, None, 1.0),
            event(names::HEALER_DURATION_MS, None, 12.0),
            event(names::HEALER_DURATION_MS, None, 3.0),
        ],
    );
    let lines = buffer.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    let directives = check_emf(line, "DlqHealer", at.timestamp_millis());
    assert_eq!(
        directives,
        vec![
            (
                vec![vec!["Class".to_string()]],
                vec![
                    "message_age_seconds".into(),
                    "received".into(),
                    "requeued".into()
                ]
            ),
            (
                vec![vec![]],
                vec!["healer_duration_ms".into(), "healer_invocations".into()]
            ),
        ]
    );
    assert_eq!(line["Class"], "timeout");
    assert_eq!(line["received"], 2.0);
    assert_eq!(line["requeued"], 2.0);
    assert_eq!(line["healer_duration_ms"], 15.0);
    let units: Vec<(&str, &str)> = line["_aws"]["CloudWatchMetrics"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["Metrics"].as_array().unwrap().iter())
        .map(|m| (m["Name"].as_str().unwrap(), m["Unit"].as_str().unwrap()))
        .collect();
    assert!(units.contains(&("message_age_seconds", "Seconds")));
    assert!(units.contains(&("healer_duration_ms", "Milliseconds")));
    assert!(units.contains(&("received", "Count")));
}

#[test]
fn several_classes_get_a_line_each_in_the_configured_namespace() {
    let buffer = Buffer::default();
    let metrics = EmfMetrics::new(buffer.clone()).with_namespace("Orders/Healer");
    let at = Utc::now();
    metrics.record(
        at,
        &[
            event(names::ARCHIVED, Some(FailureClass::Auth), 1.0),
            event(names::ALERTED, Some(FailureClass::Auth), 1.0),
            event(names::ARCHIVED, Some(FailureClass::BadPayload), 3.0),
            // Same name with and without a class: cannot share a document with the class.
            event(names::ARCHIVED, None, 4.0),
            event(names::HEALER_ERRORS, None, 0.0),
            event(names::RECEIVED, None, f64::NAN),
        ],
    );
    let lines = buffer.lines();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for line in &lines {
        check_emf(line, "Orders/Healer", at.timestamp_millis());
        assert!(
            line.get("received").is_none(),
            "non-finite values are dropped"
        );
    }
    assert_eq!(lines[0]["Class"], "auth");
    assert_eq!(lines[0]["archived"], 1.0);
    assert_eq!(lines[1]["Class"], "bad_payload");
    assert_eq!(lines[1]["archived"], 3.0);
    assert!(lines[2].get("Class").is_none());
    assert_eq!(lines[2]["archived"], 4.0);
    assert_eq!(lines[2]["healer_errors"], 0.0);

    // Nothing to record, nothing written.
    metrics.record(at, &[]);
    assert_eq!(buffer.lines().len(), 3);
}
