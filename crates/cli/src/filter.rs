//! Which dead letters (or archived records) an operator command acts on: a [`Filter`] over the
//! facts of one message, and the parsers of its flags (times, durations, JSON pointer matches).
//! Pure: no I/O, no clock (the caller passes `now`).

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use dlq_healer_core::FailureClass;
use serde_json::Value;
use std::collections::BTreeSet;
use std::str::FromStr;

/// What a filter looks at for one message.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The stable message key.
    pub key: &'a str,
    /// The DLQ message id (keys given with `--key` match it too).
    pub message_id: &'a str,
    /// The class the rules give it.
    pub class: FailureClass,
    /// Class + normalized error + source, see `dlq_healer_core::alert::fingerprint`.
    pub fingerprint: &'a str,
    /// The source queue, if known.
    pub source: Option<&'a str>,
    /// When it failed (or was archived), if known.
    pub at: Option<DateTime<Utc>>,
    /// The original body.
    pub body: &'a [u8],
}

/// A selection of messages. Values of one kind are alternatives (any may match); kinds combine
/// (all must match). An empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Any of these classes.
    pub classes: BTreeSet<FailureClass>,
    /// Any of these fingerprints (or unique prefixes of at least 4 characters).
    pub fingerprints: Vec<String>,
    /// Any of these source patterns (`*` globs; a pattern without `/` or `:` matches the name).
    pub sources: Vec<String>,
    /// Only messages at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only messages before this time.
    pub until: Option<DateTime<Utc>>,
    /// Any of these keys (or DLQ message ids), when given.
    pub keys: Option<BTreeSet<String>>,
    /// Every one of these body matches.
    pub wheres: Vec<JsonWhere>,
}

impl Filter {
    /// Whether the filter selects everything.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether one message is selected.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        if !self.classes.is_empty() && !self.classes.contains(&facts.class) {
            return false;
        }
        if !self.fingerprints.is_empty()
            && !self
                .fingerprints
                .iter()
                .any(|f| facts.fingerprint.starts_with(f.as_str()))
        {
            return false;
        }
        if !self.sources.is_empty() {
            let Some(source) = facts.source else {
                return false;
            };
            if !self
                .sources
                .iter()
                .any(|p| p == source || dlq_healer_core::rules::source_matches(p, source))
            {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(at) = facts.at else {
                return false;
            };
            if self.since.is_some_and(|since| at < since) || self.until.is_some_and(|u| at >= u) {
                return false;
            }
        }
        if let Some(keys) = &self.keys
            && !keys.contains(facts.key)
            && !keys.contains(facts.message_id)
        {
            return false;
        }
        if !self.wheres.is_empty() {
            let Ok(body) = serde_json::from_slice::<Value>(facts.body) else {
                return false;
            };
            if !self.wheres.iter().all(|w| w.matches(&body)) {
                return false;
            }
        }
        true
    }
}

/// The raw filter flags, as typed; [`FilterArgs::build`] checks and parses them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Only this class (repeatable): auth, validation, timeout, bad_payload, dependency, unknown.
    #[arg(long = "class", value_name = "CLASS")]
    pub classes: Vec<String>,
    /// Only this failure group (repeatable): a fingerprint from `inspect`, or a prefix of 4+ characters.
    #[arg(long = "fingerprint", value_name = "FINGERPRINT")]
    pub fingerprints: Vec<String>,
    /// Only messages from this source queue (repeatable; name, URL or ARN; `*` globs).
    #[arg(long = "source", value_name = "QUEUE")]
    pub sources: Vec<String>,
    /// Only messages of this time or later: RFC 3339, or a duration ago like 2h, 30m, 1d. In a
    /// DLQ, when the message failed (its context's failed_at, else when it was sent); in the
    /// archive, when it was archived.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only messages of before this time (RFC 3339, or a duration ago like 2h), as --since.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this message key or DLQ message id (repeatable).
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// Only the keys listed in this file, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub keys_file: Option<std::path::PathBuf>,
    /// Only messages whose JSON body has this value at this JSON pointer (repeatable; all must
    /// match), e.g. '/customer/tier=gold' or '/amount=42'.
    #[arg(long = "where", value_name = "POINTER=VALUE")]
    pub wheres: Vec<String>,
}

impl FilterArgs {
    /// The filter these flags describe, or an error naming the flag that is wrong.
    pub fn build(&self, now: DateTime<Utc>) -> Result<Filter> {
        let mut filter = Filter::default();
        for class in &self.classes {
            let class = FailureClass::from_str(class).with_context(|| {
                format!("--class {class:?} is not a failure class (auth, validation, timeout, bad_payload, dependency, unknown)")
            })?;
            filter.classes.insert(class);
        }
        for fingerprint in &self.fingerprints {
            let valid =
                fingerprint.len() >= 4 && fingerprint.chars().all(|c| c.is_ascii_hexdigit());
            if !valid {
                bail!(
                    "--fingerprint {fingerprint:?} is not a fingerprint: expected 4 to 16 hex digits as `inspect` prints them"
                );
            }
            filter.fingerprints.push(fingerprint.to_ascii_lowercase());
        }
        filter.sources = self.sources.clone();
        filter.since = self
            .since
            .as_deref()
            .map(|t| parse_time(t, now).with_context(|| format!("--since {t:?}")))
            .transpose()?;
        filter.until = self
            .until
            .as_deref()
            .map(|t| parse_time(t, now).with_context(|| format!("--until {t:?}")))
            .transpose()?;
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since >= until
        {
            bail!("--since ({since}) must be before --until ({until})");
        }
        let mut keys: BTreeSet<String> = self.keys.iter().cloned().collect();
        if let Some(path) = &self.keys_file {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the keys file {} (--keys-file)", path.display())
            })?;
            keys.extend(parse_keys(&text));
        }
        if !self.keys.is_empty() || self.keys_file.is_some() {
            filter.keys = Some(keys);
        }
        for text in &self.wheres {
            filter
                .wheres
                .push(text.parse().with_context(|| format!("--where {text:?}"))?);
        }
        Ok(filter)
    }
}

/// The keys of a keys file: one per line, blank lines and `#` comments skipped.
pub fn parse_keys(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

/// A time as given on the command line: RFC 3339 (`2026-11-27T10:00:00Z`), or a duration before
/// `now` (`90s`, `30m`, `2h`, `1d`, `1h30m`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    match parse_duration(text) {
        Ok(ago) => Ok(now - ago),
        Err(_) => bail!(
            "not a time: give RFC 3339 (e.g. 2026-11-27T10:00:00Z) or a duration ago (e.g. 2h, 30m, 1d)"
        ),
    }
}

/// A duration like `90s`, `30m`, `2h`, `1d`, `1h30m` (units s, m, h, d; at least one part).
pub fn parse_duration(text: &str) -> Result<chrono::Duration> {
    let mut total = chrono::Duration::zero();
    let mut digits = String::new();
    let mut parts = 0;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => bail!("{text:?} is not a duration: use units s, m, h, d, e.g. 90s or 1h30m"),
        };
        let amount: i64 = digits.parse().with_context(|| {
            format!("{text:?} is not a duration: a number must come before {c}")
        })?;
        let seconds = amount
            .checked_mul(unit)
            .filter(|s| *s <= 100 * 365 * 86_400)
            .with_context(|| format!("{text:?} is too long a duration"))?;
        total += chrono::Duration::seconds(seconds);
        digits.clear();
        parts += 1;
    }
    if parts == 0 || !digits.is_empty() {
        bail!("{text:?} is not a duration: use units s, m, h, d, e.g. 90s or 1h30m");
    }
    Ok(total)
}

/// `--where /json/pointer=value`: the body's value at the pointer equals the value. The value is
/// read as JSON when it is JSON (`42`, `true`, `"x"`, `null`), else as a string; a string also
/// matches a number or boolean with the same text.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonWhere {
    /// The JSON pointer (RFC 6901), e.g. `/customer/tier`.
    pub pointer: String,
    /// The expected value.
    pub value: Value,
}

impl FromStr for JsonWhere {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> Result<Self> {
        let Some((pointer, value)) = text.split_once('=') else {
            bail!("expected /json/pointer=value, e.g. /customer/tier=gold");
        };
        if !pointer.starts_with('/') {
            bail!("the JSON pointer {pointer:?} must start with '/', e.g. /customer/tier=gold");
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        Ok(JsonWhere {
            pointer: pointer.to_string(),
            value,
        })
    }
}

impl JsonWhere {
    /// Whether a JSON body has the value at the pointer.
    pub fn matches(&self, body: &Value) -> bool {
        let Some(actual) = body.pointer(&self.pointer) else {
            return false;
        };
        if *actual == self.value {
            return true;
        }
        match (&self.value, actual) {
            (Value::String(expected), Value::Number(n)) => *expected == n.to_string(),
            (Value::String(expected), Value::Bool(b)) => *expected == b.to_string(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
    }

    fn facts<'a>(body: &'a [u8], at: Option<DateTime<Utc>>) -> Facts<'a> {
        Facts {
            key: "k1",
            message_id: "m1",
            class: FailureClass::Auth,
            fingerprint: "abcdef0123456789",
            source: Some("arn:aws:sqs:us-east-1:1:orders"),
            at,
            body,
        }
    }

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(
            parse_duration("90s").unwrap(),
            chrono::Duration::seconds(90)
        );
        assert_eq!(
            parse_duration("1h30m").unwrap(),
            chrono::Duration::minutes(90)
        );
        assert_eq!(parse_duration("2d").unwrap(), chrono::Duration::days(2));
        for bad in ["", "2", "h", "2x", "1.5h", "-2h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_time("2h", now()).unwrap(),
            now() - chrono::Duration::hours(2)
        );
        assert_eq!(
            parse_time("2026-11-27T10:00:00+01:00", now()).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap()
        );
        let error = parse_time("yesterday", now()).unwrap_err().to_string();
        assert!(error.contains("RFC 3339"), "{error}");
    }

    #[test]
    fn flags_build_filters_and_bad_flags_say_which() {
        let args = FilterArgs {
            classes: vec!["auth".into()],
            fingerprints: vec!["ABCD".into()],
            since: Some("1d".into()),
            wheres: vec!["/tier=gold".into()],
            ..FilterArgs::default()
        };
        let filter = args.build(now()).unwrap();
        assert!(filter.classes.contains(&FailureClass::Auth));
        assert_eq!(filter.fingerprints, ["abcd"]);
        for (args, needle) in [
            (
                FilterArgs {
                    classes: vec!["authz".into()],
                    ..Default::default()
                },
                "authz",
            ),
            (
                FilterArgs {
                    fingerprints: vec!["xyz!".into()],
                    ..Default::default()
                },
                "xyz!",
            ),
            (
                FilterArgs {
                    since: Some("soon".into()),
                    ..Default::default()
                },
                "--since",
            ),
            (
                FilterArgs {
                    wheres: vec!["tier=gold".into()],
                    ..Default::default()
                },
                "--where",
            ),
            (
                FilterArgs {
                    wheres: vec!["/tier".into()],
                    ..Default::default()
                },
                "--where",
            ),
            (
                FilterArgs {
                    since: Some("1h".into()),
                    until: Some("2h".into()),
                    ..Default::default()
                },
                "before --until",
            ),
            (
                FilterArgs {
                    keys_file: Some("/nonexistent/keys".into()),
                    ..Default::default()
                },
                "/nonexistent/keys",
            ),
        ] {
            let error = format!("{:#}", args.build(now()).unwrap_err());
            assert!(error.contains(needle), "{needle}: {error}");
        }
    }

    #[test]
    fn filters_combine_kinds_and_alternate_values() {
        let body = br#"{"tier":"gold","amount":42,"vip":true}"#;
        let at = Some(now() - chrono::Duration::hours(1));
        let f = facts(body, at);
        assert!(Filter::default().matches(&f));
        let mut filter = Filter::default();
        filter.classes.insert(FailureClass::Timeout);
        assert!(!filter.matches(&f));
        filter.classes.insert(FailureClass::Auth);
        assert!(filter.matches(&f));
        filter.sources = vec!["orders".into()];
        assert!(filter.matches(&f));
        filter.sources = vec!["payments".into()];
        assert!(!filter.matches(&f));
        filter.sources.clear();
        filter.since = Some(now() - chrono::Duration::hours(2));
        filter.until = Some(now() - chrono::Duration::minutes(30));
        assert!(filter.matches(&f));
        assert!(
            !filter.matches(&facts(body, None)),
            "no time, no match on time"
        );
        filter.keys = Some(["m1".to_string()].into());
        assert!(filter.matches(&f));
        filter.keys = Some(["k2".to_string()].into());
        assert!(!filter.matches(&f));
        filter.keys = None;
        for (clause, expected) in [
            ("/tier=gold", true),
            ("/tier=\"gold\"", true),
            ("/amount=42", true),
            ("/amount=\"42\"", true),
            ("/vip=true", true),
            ("/tier=silver", false),
            ("/missing=1", false),
        ] {
            filter.wheres = vec![clause.parse().unwrap()];
            assert_eq!(filter.matches(&f), expected, "{clause}");
        }
        assert!(!filter.matches(&facts(b"not json", at)));
        filter.wheres.clear();
        filter.fingerprints = vec!["abcd".into()];
        assert!(filter.matches(&f));
        filter.fingerprints = vec!["ffff".into()];
        assert!(!filter.matches(&f));
    }

    #[test]
    fn keys_files_skip_blanks_and_comments() {
        let keys: Vec<String> = parse_keys("a\n\n  b  # second\n# all comment\nc").collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }
}
