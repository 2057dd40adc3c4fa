//! `dlq-healer inspect`: peek at a DLQ without consuming it, and group what failed by class and by
//! fingerprint (class + normalized error + source), with counts, ages and sample keys.
//!
//! Peeking receives every message (each stays invisible until the scan ends, so none is counted
//! twice), then sets their visibility to 0 so they are visible again at once. Like any receive, it
//! raises the messages' receive counts.

use crate::filter::Filter;
use crate::ops::Operator;
use anyhow::Result;
use chrono::{DateTime, Utc};
use dlq_healer_core::FailureClass;
use dlq_healer_core::alert::{fingerprint, shown_error, shown_source};
use dlq_healer_core::letter::OpenedLetter;
use dlq_healer_core::message::ReceivedMessage;
use dlq_healer_core::ports::MessageSource;
use dlq_healer_core::rules::RuleSet;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Sample keys kept per group.
pub const SAMPLE_KEYS: usize = 5;
/// Receives in a row that bring nothing new before a scan ends.
const IDLE_RECEIVES: u32 = 2;

/// One dead letter, opened and classified.
#[derive(Debug, Clone)]
pub struct Examined {
    /// The message exactly as received (with `dlq-context`), to send back byte for byte.
    pub message: ReceivedMessage,
    /// The message taken apart.
    pub letter: OpenedLetter,
    /// Its stable key: the context's, else the DLQ message id.
    pub key: String,
    /// Its class.
    pub class: FailureClass,
    /// The rule that matched.
    pub rule: String,
    /// What is shown of the error: its first line, shortened, redacted, controls escaped.
    pub error: String,
    /// Class + normalized error + source.
    pub fingerprint: String,
    /// When it failed (the context's `failed_at`), else when it was sent.
    pub at: Option<DateTime<Utc>>,
}

impl Examined {
    /// Open and classify a received message.
    pub fn new(message: ReceivedMessage, rules: &RuleSet) -> Examined {
        let letter = OpenedLetter::open(message.clone());
        let classification = rules.classify(&letter.facts());
        let error_text = letter.error_text();
        let error = shown_error(&error_text);
        let fingerprint = fingerprint(classification.class, &error_text, letter.source());
        let at = letter
            .context
            .context()
            .map(|c| c.failed_at)
            .or(message.sent_at);
        Examined {
            key: letter
                .context_key()
                .unwrap_or(&message.message_id)
                .to_string(),
            class: classification.class,
            rule: classification.rule.to_string(),
            error,
            fingerprint,
            at,
            letter,
            message,
        }
    }

    /// What a filter looks at.
    pub fn facts(&self) -> crate::filter::Facts<'_> {
        crate::filter::Facts {
            key: &self.key,
            message_id: &self.message.message_id,
            class: self.class,
            fingerprint: &self.fingerprint,
            source: self.letter.source(),
            at: self.at,
            body: &self.letter.message.body,
        }
    }
}

/// Read up to `limit` messages of a DLQ and make them visible again.
pub async fn peek(
    dlq: &dyn MessageSource,
    limit: Option<usize>,
    wait: Duration,
) -> Result<Vec<ReceivedMessage>> {
    let mut seen: Vec<ReceivedMessage> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut idle = 0;
    while limit.is_none_or(|l| seen.len() < l) && idle < IDLE_RECEIVES {
        let want = limit.map_or(10, |l| (l - seen.len()).min(10));
        let batch = dlq.receive(want, wait).await?;
        if batch.is_empty() {
            break;
        }
        let mut fresh = false;
        for message in batch {
            match index.get(&message.message_id) {
                Some(&i) => seen[i].receipt_handle = message.receipt_handle,
                None => {
                    index.insert(message.message_id.clone(), seen.len());
                    seen.push(message);
                    fresh = true;
                }
            }
        }
        idle = if fresh { 0 } else { idle + 1 };
    }
    release(dlq, seen.iter().map(|m| m.receipt_handle.clone()).collect()).await;
    Ok(seen)
}

/// Make deliveries visible again at once. Failures only delay them by their visibility timeout,
/// so they are logged, not returned.
pub async fn release(dlq: &dyn MessageSource, handles: Vec<String>) {
    for chunk in handles.chunks(10) {
        let entries: Vec<(String, u32)> = chunk.iter().map(|h| (h.clone(), 0)).collect();
        match dlq.change_visibility(&entries).await {
            Ok(results) => {
                for error in results.into_iter().filter_map(Result::err) {
                    tracing::warn!(%error, "a message could not be made visible again; it will be after its visibility timeout");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "messages could not be made visible again; they will be after their visibility timeout")
            }
        }
    }
}

/// One failure group: the messages of one fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureGroup {
    /// Class + normalized error + source, hashed.
    pub fingerprint: String,
    /// The class.
    pub class: FailureClass,
    /// The rule that matched.
    pub rule: String,
    /// What is shown of the error of the first message (see [`shown_error`]).
    pub error: String,
    /// What is shown of the source queue, if known (see [`shown_source`]).
    pub source: Option<String>,
    /// Messages in the group.
    pub count: usize,
    /// Age of the oldest message, seconds.
    pub oldest_age_seconds: Option<i64>,
    /// Age of the newest message, seconds.
    pub newest_age_seconds: Option<i64>,
    /// Some keys.
    pub sample_keys: Vec<String>,
}

/// The groups of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassGroup {
    /// The class.
    pub class: FailureClass,
    /// Messages of the class.
    pub count: usize,
    /// Age of the oldest message, seconds.
    pub oldest_age_seconds: Option<i64>,
    /// Age of the newest message, seconds.
    pub newest_age_seconds: Option<i64>,
    /// Its failure groups, largest first.
    pub groups: Vec<FailureGroup>,
}

/// What `inspect` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    /// The DLQ.
    pub dlq: String,
    /// Messages seen that the filter selected (all of them without one).
    pub total: usize,
    /// Messages seen, selected or not.
    pub read: usize,
    /// Whether a filter selected among the messages seen.
    pub filtered: bool,
    /// Whether reading stopped at `--limit`, so that the DLQ may hold more.
    pub limited: bool,
    /// Messages in flight when reading started (being healed, or parked until due), not seen.
    pub in_flight: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// By class, in class order.
    pub classes: Vec<ClassGroup>,
}

fn ages(
    times: impl Iterator<Item = Option<DateTime<Utc>>>,
    now: DateTime<Utc>,
) -> (Option<i64>, Option<i64>) {
    let times: Vec<DateTime<Utc>> = times.flatten().collect();
    let oldest = times.iter().min().map(|t| (now - *t).num_seconds().max(0));
    let newest = times.iter().max().map(|t| (now - *t).num_seconds().max(0));
    (oldest, newest)
}

/// Group examined messages by class and fingerprint.
pub fn group(dlq: &str, messages: &[Examined], now: DateTime<Utc>) -> Inspection {
    let mut by_class: BTreeMap<FailureClass, BTreeMap<&str, Vec<&Examined>>> = BTreeMap::new();
    for m in messages {
        by_class
            .entry(m.class)
            .or_default()
            .entry(&m.fingerprint)
            .or_default()
            .push(m);
    }
    let classes = by_class
        .into_iter()
        .map(|(class, groups)| {
            let mut groups: Vec<FailureGroup> = groups
                .into_iter()
                .map(|(fingerprint, members)| {
                    let (oldest, newest) = ages(members.iter().map(|m| m.at), now);
                    let mut sample_keys: Vec<String> =
                        members.iter().map(|m| m.key.clone()).collect();
                    sample_keys.sort();
                    sample_keys.dedup();
                    sample_keys.truncate(SAMPLE_KEYS);
                    FailureGroup {
                        fingerprint: fingerprint.to_string(),
                        class,
                        rule: members[0].rule.clone(),
                        error: members[0].error.clone(),
                        source: members[0].letter.source().map(shown_source),
                        count: members.len(),
                        oldest_age_seconds: oldest,
                        newest_age_seconds: newest,
                        sample_keys,
                    }
                })
                .collect();
            groups.sort_by(|a, b| {
                b.count
                    .cmp(&a.count)
                    .then(a.fingerprint.cmp(&b.fingerprint))
            });
            let members = messages.iter().filter(|m| m.class == class);
            let (oldest, newest) = ages(members.map(|m| m.at), now);
            ClassGroup {
                class,
                count: groups.iter().map(|g| g.count).sum(),
                oldest_age_seconds: oldest,
                newest_age_seconds: newest,
                groups,
            }
        })
        .collect();
    Inspection {
        dlq: dlq.to_string(),
        total: messages.len(),
        read: messages.len(),
        filtered: false,
        limited: false,
        in_flight: 0,
        at: now,
        classes,
    }
}

/// Peek at a DLQ and group what is in it that `filter` selects.
pub async fn inspect(
    operator: &dyn Operator,
    dlq: &str,
    rules: &RuleSet,
    limit: Option<usize>,
    filter: &Filter,
) -> Result<Inspection> {
    let source = operator.dlq(dlq).await?;
    // Before the peek: on SQS it receives what it reads, which then counts as in flight.
    let in_flight = operator.in_flight(dlq).await?;
    let messages = match operator.peek(dlq, limit).await? {
        Some(messages) => messages,
        None => peek(source.as_ref(), limit, operator.scan_wait()).await?,
    };
    let read = messages.len();
    let examined: Vec<Examined> = messages
        .into_iter()
        .map(|m| Examined::new(m, rules))
        .filter(|examined| filter.matches(&examined.facts()))
        .collect();
    let mut inspection = group(dlq, &examined, Utc::now());
    inspection.read = read;
    inspection.filtered = !filter.is_empty();
    inspection.limited = limit.is_some_and(|limit| read >= limit);
    inspection.in_flight = in_flight;
    Ok(inspection)
}

/// A duration in seconds, short: `45s`, `12m`, `3h`, `2d`.
pub fn short_age(seconds: Option<i64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

/// The inspection as text for a person.
pub fn render(inspection: &Inspection) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let messages = crate::noun(inspection.total, "message", "messages");
    if inspection.filtered {
        let _ = writeln!(
            out,
            "DLQ {}: {} {messages} selected by the filter, of the {}{} {}",
            inspection.dlq,
            inspection.total,
            if inspection.limited { "first " } else { "" },
            inspection.read,
            if inspection.limited {
                "read (--limit; it may hold more)"
            } else {
                "in it"
            }
        );
    } else if inspection.limited {
        let _ = writeln!(
            out,
            "DLQ {}: the first {} {messages} (--limit; it may hold more)",
            inspection.dlq, inspection.total
        );
    } else {
        let _ = writeln!(
            out,
            "DLQ {}: {} {messages}",
            inspection.dlq, inspection.total
        );
    }
    if inspection.in_flight > 0 {
        let _ = writeln!(
            out,
            "and {} in flight, not shown: being healed, or parked until their retry is due",
            inspection.in_flight
        );
    }
    for class in &inspection.classes {
        let _ = writeln!(
            out,
            "\n{} — {} {}, oldest {}, newest {}",
            class.class,
            class.count,
            crate::noun(class.count, "message", "messages"),
            short_age(class.oldest_age_seconds),
            short_age(class.newest_age_seconds)
        );
        for g in &class.groups {
            let _ = writeln!(
                out,
                "  {}  {:>6}  oldest {:>5}  newest {:>5}  source {}",
                g.fingerprint,
                g.count,
                short_age(g.oldest_age_seconds),
                short_age(g.newest_age_seconds),
                g.source.as_deref().unwrap_or("(unknown)")
            );
            let _ = writeln!(out, "      error: {}", g.error);
            let _ = writeln!(out, "      keys:  {}", g.sample_keys.join(", "));
        }
    }
    if inspection.total > 0 {
        let _ = writeln!(
            out,
            "\nmove a group back with: dlq-healer redrive --dlq {} --fingerprint FINGERPRINT --dry-run",
            inspection.dlq
        );
    }
    out
}

/// Flags of `inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    ops: crate::ops::OpsArgs,
    /// The DLQ: a local queue name, or an SQS queue URL or name.
    #[arg(long, env = "DLQ_URL")]
    dlq: String,
    /// Print JSON (for scripts).
    #[arg(long)]
    json: bool,
    /// Look at most at this many messages.
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    filter: crate::filter::FilterArgs,
    /// Rules file (TOML); the shipped defaults when absent.
    #[arg(long, env = "DLQ_HEALER_RULES")]
    rules: Option<std::path::PathBuf>,
}

/// Run `inspect`.
pub fn command(args: InspectArgs) -> Result<i32> {
    let rules = crate::load_rules(args.rules.as_deref())?;
    let filter = args.filter.build(Utc::now())?;
    let inspection = crate::runtime()?.block_on(async {
        let operator = crate::ops::open(&args.ops).await?;
        inspect(operator.as_ref(), &args.dlq, &rules, args.limit, &filter).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print!("{}", render(&inspection));
    }
    Ok(0)
}
