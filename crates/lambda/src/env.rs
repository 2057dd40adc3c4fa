//! Reading a function's environment (the original's variable names) and setting up logging.
//! Every reader takes a lookup function, so that tests need not touch the process environment.

use std::path::PathBuf;

/// A variable is missing or unusable: init fails with this message, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A required variable is unset or empty.
    #[error("environment variable {name} is not set: {what}")]
    Missing {
        /// The variable.
        name: &'static str,
        /// What it should hold.
        what: &'static str,
    },
    /// A variable holds something unusable.
    #[error("environment variable {name}={value:?} is not usable: {why}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong and what is expected.
        why: String,
    },
}

/// Reads variables by name; `None` for unset (an empty value counts as unset).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment as a [`Lookup`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn optional(lookup: Lookup<'_>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn required(
    lookup: Lookup<'_>,
    name: &'static str,
    what: &'static str,
) -> Result<String, EnvError> {
    optional(lookup, name).ok_or(EnvError::Missing { name, what })
}

/// `DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS`: how long one attempt of an AWS call may take, 1 to 300
/// seconds (the template sets it so that a call with its three attempts ends within the function's
/// timeout). Unset, or not such a number (logged as a warning), the SDK clients' default.
pub fn call_timeout(lookup: Lookup<'_>) -> Option<std::time::Duration> {
    let value = optional(lookup, "DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS")?;
    match value.parse::<u64>() {
        Ok(seconds) if (1..=dlq_healer_aws::MAX_CALL_TIMEOUT_SECONDS).contains(&seconds) => {
            Some(std::time::Duration::from_secs(seconds))
        }
        _ => {
            tracing::warn!(
                DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS = %value,
                "not a number of seconds from 1 to 300; using the default call timeout"
            );
            None
        }
    }
}

/// The healer function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealerSettings {
    /// `MAIN_QUEUE_URL`: where messages of unknown source are re-queued.
    pub main_queue_url: String,
    /// `ARCHIVE_BUCKET`: the S3 bucket of the archive.
    pub archive_bucket: String,
    /// `FAILED_TABLE`: the DynamoDB ledger table.
    pub failed_table: String,
    /// `ALERT_TOPIC_ARN`: the SNS topic alerts go to.
    pub alert_topic_arn: String,
    /// `DLQ_URL`: the DLQ, for parking; derived from the event source ARN when unset.
    pub dlq_url: Option<String>,
    /// `DLQ_HEALER_RULES`: a rules file packaged with the function; the shipped defaults when unset.
    pub rules_path: Option<PathBuf>,
    /// `ALERT_WINDOW_SECONDS`: the alert dedup window (default 600).
    pub alert_window_seconds: u32,
    /// `LOG_LEVEL` (default `INFO`).
    pub log_level: String,
}

impl HealerSettings {
    /// Read the settings; the error names the first missing or bad variable.
    pub fn from_lookup(lookup: Lookup<'_>) -> Result<HealerSettings, EnvError> {
        let alert_window_seconds = match optional(lookup, "ALERT_WINDOW_SECONDS") {
            None => 600,
            Some(value) => match value.parse::<u32>() {
                Ok(seconds) if seconds > 0 => seconds,
                _ => {
                    return Err(EnvError::Invalid {
                        name: "ALERT_WINDOW_SECONDS",
                        value,
                        why: "expected a whole number of seconds, at least 1".into(),
                    });
                }
            },
        };
        Ok(HealerSettings {
            main_queue_url: required(
                lookup,
                "MAIN_QUEUE_URL",
                "the URL of the main queue messages are re-queued to",
            )?,
            archive_bucket: required(
                lookup,
                "ARCHIVE_BUCKET",
                "the S3 bucket archived messages are stored in",
            )?,
            failed_table: required(lookup, "FAILED_TABLE", "the DynamoDB table of the ledger")?,
            alert_topic_arn: required(
                lookup,
                "ALERT_TOPIC_ARN",
                "the ARN of the SNS topic alerts are published to",
            )?,
            dlq_url: optional(lookup, "DLQ_URL"),
            rules_path: optional(lookup, "DLQ_HEALER_RULES").map(PathBuf::from),
            alert_window_seconds,
            log_level: log_level(lookup),
        })
    }
}

/// The consumer function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// `DLQ_URL`: where failed orders are dead-lettered.
    pub dlq_url: String,
    /// `LOG_LEVEL` (default `INFO`).
    pub log_level: String,
    /// `AWS_LAMBDA_FUNCTION_NAME`, written into `dlq-context.consumer` (default `orders-consumer`).
    pub consumer_name: String,
}

impl ConsumerSettings {
    /// Read the settings; the error names the missing variable.
    pub fn from_lookup(lookup: Lookup<'_>) -> Result<ConsumerSettings, EnvError> {
        Ok(ConsumerSettings {
            dlq_url: required(
                lookup,
                "DLQ_URL",
                "the URL of the dead-letter queue failed orders are sent to",
            )?,
            log_level: log_level(lookup),
            consumer_name: optional(lookup, "AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|| "orders-consumer".to_string()),
        })
    }
}

/// The producer function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSettings {
    /// `MAIN_QUEUE_URL`: where accepted orders are sent.
    pub main_queue_url: String,
    /// `LOG_LEVEL` (default `INFO`).
    pub log_level: String,
}

impl ProducerSettings {
    /// Read the settings; the error names the missing variable.
    pub fn from_lookup(lookup: Lookup<'_>) -> Result<ProducerSettings, EnvError> {
        Ok(ProducerSettings {
            main_queue_url: required(
                lookup,
                "MAIN_QUEUE_URL",
                "the URL of the main queue orders are sent to",
            )?,
            log_level: log_level(lookup),
        })
    }
}

fn log_level(lookup: Lookup<'_>) -> String {
    optional(lookup, "LOG_LEVEL").unwrap_or_else(|| "INFO".to_string())
}

/// Log to stdout (CloudWatch Logs) without colours or timestamps, which Lambda adds itself.
/// An unusable `LOG_LEVEL` falls back to `info` with a warning rather than failing init.
pub fn init_logging(level: &str) {
    let filter = dlq_healer_core::log_level::log_filter(level)
        .ok()
        .and_then(|filter| tracing_subscriber::EnvFilter::try_new(filter).ok());
    let bad = filter.is_none();
    let filter = filter.unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
    if bad {
        tracing::warn!(
            LOG_LEVEL = level,
            "LOG_LEVEL is not a level or filter; logging at INFO"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_call_timeout_is_taken_from_1_to_300_seconds() {
        let with = |value: &'static str| {
            move |name: &str| {
                (name == "DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS").then(|| value.to_string())
            }
        };
        assert_eq!(
            call_timeout(&with("15")),
            Some(std::time::Duration::from_secs(15))
        );
        for bad in ["0", "301", "ten", "", " "] {
            assert_eq!(call_timeout(&with(bad)), None, "{bad:?}");
        }
        assert_eq!(call_timeout(&|_: &str| None), None);
    }

    fn lookup_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_healer_needs_the_originals_four_variables_and_names_the_missing_one() {
        let full = [
            ("MAIN_QUEUE_URL", "http://q/main"),
            ("ARCHIVE_BUCKET", "bucket"),
            ("FAILED_TABLE", "table"),
            ("ALERT_TOPIC_ARN", "arn:aws:sns:us-east-1:1:t"),
        ];
        let settings = HealerSettings::from_lookup(&lookup_of(&full)).unwrap();
        assert_eq!(settings.alert_window_seconds, 600);
        assert_eq!(settings.dlq_url, None);
        assert_eq!(settings.log_level, "INFO");
        for skipped in 0..full.len() {
            let partial: Vec<_> = full
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skipped)
                .map(|(_, p)| *p)
                .collect();
            let error = HealerSettings::from_lookup(&lookup_of(&partial))
                .unwrap_err()
                .to_string();
            assert!(error.contains(full[skipped].0), "{error}");
        }
        let mut bad = full.to_vec();
        bad.push(("ALERT_WINDOW_SECONDS", "ten"));
        let error = HealerSettings::from_lookup(&lookup_of(&bad))
            .unwrap_err()
            .to_string();
        assert!(error.contains("ALERT_WINDOW_SECONDS=\"ten\""), "{error}");
    }

    #[test]
    fn consumer_and_producer_name_their_variable() {
        let error = ConsumerSettings::from_lookup(&lookup_of(&[("DLQ_URL", "  ")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("DLQ_URL"), "{error}");
        let error = ProducerSettings::from_lookup(&lookup_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("MAIN_QUEUE_URL"), "{error}");
    }
}
