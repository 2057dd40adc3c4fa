//! Metrics as CloudWatch Embedded Metric Format (EMF) log lines. Lambda ships stdout to
//! CloudWatch Logs, which turns each EMF line into metrics, so no CloudWatch API call is made
//! (and none is needed on an emulator, whose CloudWatch lacks the CBOR protocol of the current
//! SDK).
//!
//! One `record` call writes one JSON line. Values are summed per (name, class) within the call.
//! Events with a class get the dimension `Class`, events without one none; each dimension set has
//! its own directive in `_aws.CloudWatchMetrics`. An EMF line holds one value per dimension
//! name, so a call about several classes writes one line per class (class-less metrics ride on
//! the first).

use chrono::{DateTime, Utc};
use dlq_healer_core::FailureClass;
use dlq_healer_core::ports::{MetricEvent, Metrics};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

/// The default CloudWatch namespace.
pub const DEFAULT_NAMESPACE: &str = "DlqHealer";

/// The dimension that carries the failure class.
pub const CLASS_DIMENSION: &str = "Class";

/// The CloudWatch unit of a metric, from its name: `_ms` → Milliseconds, `_seconds` → Seconds,
/// anything else → Count.
pub fn unit_of(name: &str) -> &'static str {
    if name.ends_with("_ms") {
        "Milliseconds"
    } else if name.ends_with("_seconds") {
        "Seconds"
    } else {
        "Count"
    }
}

/// The [`Metrics`] port as EMF lines on stdout (or any writer). Writing never fails the caller:
/// errors are logged.
pub struct EmfMetrics {
    namespace: String,
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for EmfMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmfMetrics")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Default for EmfMetrics {
    fn default() -> Self {
        EmfMetrics::stdout()
    }
}

impl EmfMetrics {
    /// EMF lines on stdout, in the namespace [`DEFAULT_NAMESPACE`].
    pub fn stdout() -> Self {
        EmfMetrics::new(std::io::stdout())
    }

    /// EMF lines on `out` (a file, a buffer in tests), in the namespace [`DEFAULT_NAMESPACE`].
    pub fn new(out: impl Write + Send + 'static) -> Self {
        EmfMetrics {
            namespace: DEFAULT_NAMESPACE.to_string(),
            out: Mutex::new(Box::new(out)),
        }
    }

    /// Use another CloudWatch namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The namespace metrics go to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The EMF documents of one call: see the module documentation.
    pub fn documents(&self, at: DateTime<Utc>, events: &[MetricEvent]) -> Vec<Value> {
        let mut classless: BTreeMap<&'static str, f64> = BTreeMap::new();
        let mut by_class: BTreeMap<FailureClass, BTreeMap<&'static str, f64>> = BTreeMap::new();
        for event in events {
            if !event.value.is_finite() {
                tracing::warn!(
                    metric = event.name,
                    value = event.value,
                    "non-finite metric value dropped"
                );
                continue;
            }
            let sums = match event.class {
                Some(class) => by_class.entry(class).or_default(),
                None => &mut classless,
            };
            *sums.entry(event.name).or_default() += event.value;
        }
        let mut documents = Vec::new();
        let mut pending_classless = (!classless.is_empty()).then_some(classless);
        for (class, metrics) in by_class {
            let riders = pending_classless
                .take_if(|c| c.keys().all(|name| !metrics.contains_key(name)))
                .unwrap_or_default();
            documents.push(self.document(at, Some(class), &metrics, &riders));
        }
        if let Some(classless) = pending_classless {
            documents.push(self.document(at, None, &BTreeMap::new(), &classless));
        }
        documents
    }

    fn document(
        &self,
        at: DateTime<Utc>,
        class: Option<FailureClass>,
        class_metrics: &BTreeMap<&'static str, f64>,
        classless: &BTreeMap<&'static str, f64>,
    ) -> Value {
        let definitions = |metrics: &BTreeMap<&'static str, f64>| -> Vec<Value> {
            metrics
                .keys()
                .map(|name| json!({"Name": name, "Unit": unit_of(name)}))
                .collect()
        };
        let mut directives = Vec::new();
        if !class_metrics.is_empty() {
            directives.push(json!({
                "Namespace": self.namespace,
                "Dimensions": [[CLASS_DIMENSION]],
                "Metrics": definitions(class_metrics),
            }));
        }
        if !classless.is_empty() {
            directives.push(json!({
                "Namespace": self.namespace,
                "Dimensions": [[]],
                "Metrics": definitions(classless),
            }));
        }
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({"Timestamp": at.timestamp_millis(), "CloudWatchMetrics": directives}),
        );
        if let Some(class) = class.filter(|_| !class_metrics.is_empty()) {
            root.insert(CLASS_DIMENSION.into(), json!(class.as_str()));
        }
        for (name, value) in class_metrics.iter().chain(classless) {
            root.insert((*name).into(), json!(value));
        }
        Value::Object(root)
    }
}

impl Metrics for EmfMetrics {
    fn record(&self, at: DateTime<Utc>, events: &[MetricEvent]) {
        let documents = self.documents(at, events);
        if documents.is_empty() {
            return;
        }
        let mut text = String::new();
        for document in documents {
            text.push_str(&document.to_string());
            text.push('\n');
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            tracing::warn!(%error, "writing EMF metrics failed; these samples are lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_name() {
        assert_eq!(unit_of("healer_duration_ms"), "Milliseconds");
        assert_eq!(unit_of("message_age_seconds"), "Seconds");
        assert_eq!(unit_of("received"), "Count");
    }
}
