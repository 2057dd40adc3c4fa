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
pub const SETTINGS: [&str; 15] = [
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
    "DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS",
];

/// The settings that name files: relative paths in a configuration file are taken from the
/// file's own directory, wherever the command runs.
const PATH_SETTINGS: [&str; 3] = [
    "DLQ_HEALER_DB",
    "DLQ_HEALER_ARCHIVE_DIR",
    "DLQ_HEALER_RULES",
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
    let settings =
        parse(&text).with_context(|| format!("invalid configuration file {}", path.display()))?;
    Ok(relative_to(
        path.parent().unwrap_or(Path::new("")),
        settings,
    ))
}

/// `settings` with the relative paths of [`PATH_SETTINGS`] taken from `dir`.
fn relative_to(dir: &Path, settings: Vec<(String, String)>) -> Vec<(String, String)> {
    settings
        .into_iter()
        .map(|(key, value)| {
            let path = Path::new(&value);
            if PATH_SETTINGS.contains(&key.as_str())
                && path.is_relative()
                && !dir.as_os_str().is_empty()
            {
                let resolved = dir.join(path).display().to_string();
                (key, resolved)
            } else {
                (key, value)
            }
        })
        .collect()
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
            _ if PATH_SETTINGS.contains(&key.as_str()) => {
                bail!("{key} names a file: write it as a string, in quotes")
            }
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
pub fn load_into_environment() -> Result<FromFile> {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = config_path(&args, std::env::var(CONFIG_VARIABLE).ok()) else {
        return Ok(FromFile::default());
    };
    let mut from_file = FromFile {
        path: path.clone(),
        keys: Vec::new(),
    };
    for (key, value) in read(&path)? {
        if std::env::var_os(&key).is_none() {
            // SAFETY: called at the start of main, before the runtime or any other thread exists.
            unsafe { std::env::set_var(&key, value) };
            from_file.keys.push(key);
        }
    }
    Ok(from_file)
}

/// The settings a configuration file gave (those the environment did not set already).
#[derive(Debug, Clone, Default)]
pub struct FromFile {
    /// The file.
    pub path: PathBuf,
    /// The variables it set.
    pub keys: Vec<String>,
}

impl FromFile {
    /// For an error about a flag's value (`invalid value 'ten' for '--retention-days <DAYS>'`)
    /// that the command line did not give, a line that names the environment variable it came
    /// from, and the configuration file if that set it: clap reports such a value under its
    /// flag.
    pub fn note_for(&self, error: &clap::Error, command: &clap::Command) -> Option<String> {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        if !matches!(
            error.kind(),
            ErrorKind::InvalidValue | ErrorKind::ValueValidation
        ) {
            return None;
        }
        let Some(ContextValue::String(flag)) = error.get(ContextKind::InvalidArg) else {
            return None;
        };
        // `--retention-days <RETENTION_DAYS>`: the flag's long name.
        let long = flag.strip_prefix("--")?.split([' ', '=']).next()?;
        let on_command_line = std::env::args()
            .any(|arg| arg == format!("--{long}") || arg.starts_with(&format!("--{long}=")));
        if on_command_line {
            return None;
        }
        let variable = variable_of_flag(command, long)?;
        std::env::var_os(&variable)?;
        Some(if self.keys.contains(&variable) {
            format!(
                "note: that value is {variable} in the configuration file {}",
                self.path.display()
            )
        } else {
            format!("note: that value is the environment variable {variable}")
        })
    }
}

/// The environment variable that the flag `--long` reads, in `command` or its subcommands.
fn variable_of_flag(command: &clap::Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|sub| variable_of_flag(sub, long))
        })
}

/// The environment variables the arguments of `command` (and its subcommands) read.
pub fn variables(command: &clap::Command) -> Vec<String> {
    let mut names: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    for sub in command.get_subcommands() {
        names.extend(variables(sub));
    }
    names.sort();
    names.dedup();
    names
}

/// Unset the variables among `names` that are set to nothing: an empty variable counts as not
/// set (`DLQ_HEALER_RETENTION_DAYS= dlq-healer run` takes the default), where clap would take
/// the empty text for a value and refuse it.
///
/// # Safety
/// No other thread may read or write the environment meanwhile: call it at the start of main.
pub unsafe fn unset_empty(names: &[String]) {
    for name in names {
        if std::env::var_os(name).is_some_and(|value| value.is_empty()) {
            // SAFETY: the caller's promise.
            unsafe { std::env::remove_var(name) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_the_file_are_taken_from_its_directory() {
        let settings = parse(
            "DLQ_HEALER_RULES = \"rules.toml\"\nDLQ_HEALER_DB = \"/var/lib/dlq.db\"\nDLQ_URL = \"orders-dlq\"\n",
        )
        .unwrap();
        let resolved = relative_to(Path::new("/etc/dlq-healer"), settings);
        assert_eq!(
            resolved,
            vec![
                ("DLQ_HEALER_DB".to_string(), "/var/lib/dlq.db".to_string()),
                (
                    "DLQ_HEALER_RULES".to_string(),
                    "/etc/dlq-healer/rules.toml".to_string()
                ),
                ("DLQ_URL".to_string(), "orders-dlq".to_string()),
            ]
        );
        let error = parse("DLQ_HEALER_DB = 5").unwrap_err().to_string();
        assert!(error.contains("names a file"), "{error}");
    }

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
