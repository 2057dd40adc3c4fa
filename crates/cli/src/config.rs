//! The configuration file: the same settings as the environment variables, in TOML, with the
//! variables' own names as keys. Flags win over the environment, the environment over the file.
//!
//! ```toml
//! DLQ_HEALER_BACKEND = "aws"
//! DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-dlq"
//! MAIN_QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
//! ARCHIVE_BUCKET = "orders-archive"
//! FAILED_TABLE = "orders-ledger"
//! ALERT_TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:orders-alerts"
//! LOG_LEVEL = "info"
//! ```

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The variables a configuration file may set.
pub const SETTINGS: [&str; 14] = [
    "DLQ_HEALER_BACKEND",
    "DLQ_URL",
    "MAIN_QUEUE_URL",
    "ARCHIVE_BUCKET",
    "FAILED_TABLE",
    "ALERT_TOPIC_ARN",
    "LOG_LEVEL",
    "DLQ_HEALER_DB",
    "DLQ_HEALER_ARCHIVE_DIR",
    "DLQ_HEALER_RULES",
    "ALERT_WEBHOOK_URL",
    "DLQ_HEALER_RETENTION_DAYS",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
];

/// The variable naming the configuration file when `--config` is not given.
pub const CONFIG_VARIABLE: &str = "DLQ_HEALER_CONFIG";

/// The configuration file named by `--config FILE` / `--config=FILE` in `args`, else by
/// `DLQ_HEALER_CONFIG`.
pub fn config_path(args: &[String], variable: Option<String>) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    variable.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Read a configuration file: `(variable, value)` pairs, checked against [`SETTINGS`].
pub fn read(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    parse(&text).with_context(|| format!("invalid configuration file {}", path.display()))
}

/// Parse configuration text.
pub fn parse(text: &str) -> Result<Vec<(String, String)>> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?;
    let mut settings = Vec::new();
    for (key, value) in table {
        if !SETTINGS.contains(&key.as_str()) {
            bail!(
                "unknown setting {key:?}; the settings are {}",
                SETTINGS.join(", ")
            );
        }
        let value = match value {
            toml::Value::String(text) => text,
            // As the environment would hold them: `DLQ_HEALER_RETENTION_DAYS = 30`.
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            other => bail!(
                "{key} must be a string or a number, not {}",
                other.type_str()
            ),
        };
        settings.push((key, value));
    }
    Ok(settings)
}

/// Load the configuration file, if one is named, into the environment of this process for the
/// variables the environment does not set already. Call before any thread starts.
pub fn load_into_environment() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = config_path(&args, std::env::var(CONFIG_VARIABLE).ok()) else {
        return Ok(());
    };
    for (key, value) in read(&path)? {
        if std::env::var_os(&key).is_none() {
            // SAFETY: called at the start of main, before the runtime or any other thread exists.
            unsafe { std::env::set_var(&key, value) };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_named_by_flag_or_variable() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            config_path(&args(&["x", "run", "--config", "a.toml"]), None),
            Some("a.toml".into())
        );
        assert_eq!(
            config_path(&args(&["x", "--config=b.toml", "run"]), Some("c".into())),
            Some("b.toml".into())
        );
        assert_eq!(
            config_path(&args(&["x", "run"]), Some("c.toml".into())),
            Some("c.toml".into())
        );
        assert_eq!(
            config_path(&args(&["x", "run", "--", "--config", "d"]), None),
            None
        );
        assert_eq!(config_path(&args(&["x"]), Some(String::new())), None);
    }

    #[test]
    fn settings_are_the_variables_with_strings_or_numbers() {
        let settings = parse("DLQ_URL = \"q\"\nLOG_LEVEL = \"debug\"\n").unwrap();
        assert_eq!(
            settings,
            vec![
                ("DLQ_URL".into(), "q".into()),
                ("LOG_LEVEL".into(), "debug".into())
            ]
        );
        assert!(
            parse("DLQ_URLS = \"q\"")
                .unwrap_err()
                .to_string()
                .contains("unknown setting \"DLQ_URLS\"")
        );
        assert_eq!(
            parse("DLQ_HEALER_RETENTION_DAYS = 30\nDLQ_HEALER_BACKEND = \"aws\"").unwrap(),
            vec![
                ("DLQ_HEALER_BACKEND".into(), "aws".into()),
                ("DLQ_HEALER_RETENTION_DAYS".into(), "30".into())
            ],
            "numbers as the environment would hold them"
        );
        assert!(
            parse("DLQ_URL = [5]")
                .unwrap_err()
                .to_string()
                .contains("must be a string or a number, not array")
        );
        assert!(parse("DLQ_URL = ").is_err());
    }
}
