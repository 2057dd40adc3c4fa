//! `dlq-healer archive list | show | replay`: find archived messages by key, class, source and
//! time; print one in full; send archived messages back to their source queue with the same
//! safety as `redrive` (dry run, rate, limit, journal).

use crate::filter::{Facts, FilterArgs};
use crate::ops::{ArchiveQuery, ArchivedEntry, Operator};
use crate::rate::Pacer;
use crate::redrive::{
    MoveItem, MoveOptions, MoveReport, Mover, PlannedMove, Progress, deduplication_id,
};
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use dlq_healer_core::FailureClass;
use dlq_healer_core::alert::{fingerprint, shown_error, shown_source};
use dlq_healer_core::context::{ContextReading, HealState};
use dlq_healer_core::message::{Attribute, CONTEXT_ATTRIBUTE, MAX_ATTRIBUTES, OutgoingMessage};
use dlq_healer_core::records::ArchiveRecord;
use serde::Serialize;

/// An archived record with what filters look at.
#[derive(Debug, Clone)]
pub struct Archived {
    /// Where it is.
    pub entry: ArchivedEntry,
    /// Its fingerprint.
    pub fingerprint: String,
    /// What is shown of the error its context tells (see [`shown_error`]).
    pub error: String,
    /// The record.
    pub record: ArchiveRecord,
    body: Vec<u8>,
}

/// What `archive list` shows of an archived record: not its body or context, so that a listing
/// of the whole archive takes the memory of its index.
#[derive(Debug, Clone, Serialize)]
struct Listed {
    /// Where it is (its source as [`shown_source`] shows it).
    entry: ArchivedEntry,
    /// Its fingerprint.
    fingerprint: String,
    /// What is shown of its error.
    error: String,
    /// Whether `archive replay` sent it back already (its move journal); absent where the
    /// journal cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    replayed: Option<bool>,
    #[serde(skip)]
    journal_id: String,
}

impl Listed {
    fn of(archived: Archived) -> Listed {
        let journal_id = archived.journal_id();
        Listed {
            entry: shown_entry(archived.entry),
            fingerprint: archived.fingerprint,
            error: archived.error,
            replayed: None,
            journal_id,
        }
    }
}

impl Archived {
    fn new(entry: ArchivedEntry, record: ArchiveRecord) -> Result<Archived> {
        let body = record.body_bytes().map_err(|e| {
            anyhow::anyhow!("the archived record {} is damaged: {e}", entry.reference)
        })?;
        let error = archived_error(&record);
        let source = record.source.clone().or(entry.source.clone());
        Ok(Archived {
            fingerprint: fingerprint(record.class, &error, source.as_deref()),
            error: shown_error(&error),
            entry,
            record,
            body,
        })
    }

    fn facts(&self) -> Facts<'_> {
        Facts {
            key: &self.record.key,
            message_id: &self.record.message_id,
            class: self.record.class,
            fingerprint: &self.fingerprint,
            source: self
                .record
                .source
                .as_deref()
                .or(self.entry.source.as_deref()),
            at: Some(self.entry.archived_at),
            body: &self.body,
        }
    }

    /// The message a replay sends: the archived body and attributes, plus the failure context
    /// with its `heal` block (key and attempts carried forward) when an attribute slot is free.
    pub fn outgoing(&self) -> OutgoingMessage {
        let record = &self.record;
        let mut attributes = record.attributes.clone();
        if attributes.len() < MAX_ATTRIBUTES
            && let Some(ContextReading::Valid(mut context)) =
                record.context.clone().map(ContextReading::from_value)
        {
            let first_failed_at = context
                .heal
                .as_ref()
                .map(|h| h.first_failed_at)
                .or(record.first_failed_at)
                .unwrap_or(context.failed_at);
            context.heal = Some(HealState {
                key: record.key.clone(),
                attempts: record.attempt,
                first_failed_at,
                last_class: record.class,
                extra: Default::default(),
            });
            if context.source.is_none() {
                context.source = record.source.clone();
            }
            attributes.insert(
                CONTEXT_ATTRIBUTE.into(),
                Attribute::string(context.to_json()),
            );
        }
        OutgoingMessage {
            entry_id: String::new(),
            body: self.body.clone(),
            attributes,
            delay_seconds: 0,
            group_id: record.group_id.clone(),
            deduplication_id: record
                .group_id
                .as_ref()
                .map(|_| deduplication_id(&self.journal_id())),
        }
    }

    fn journal_id(&self) -> String {
        replay_journal_id(&self.record.key, self.record.attempt)
    }
}

/// The error of an archived record, as the healer saw it when it archived the record (the same
/// text, and so the same fingerprint, as its alert and `inspect`): why its context could not be
/// used, else the context's error.
pub fn archived_error(record: &ArchiveRecord) -> String {
    if let Some(problem) = &record.context_problem {
        return problem.clone();
    }
    match record.context.clone() {
        Some(context) => ContextReading::from_value(context).error_text(),
        None => ContextReading::Missing.error_text(),
    }
}

/// The entry as listings show it: its source as [`shown_source`] shows it.
fn shown_entry(mut entry: ArchivedEntry) -> ArchivedEntry {
    entry.source = entry.source.as_deref().map(shown_source);
    entry
}

/// Whether the filter looks at more than the index holds (class, time, key): fingerprints,
/// sources and body matches need each record.
fn needs_records(filter: &crate::filter::Filter) -> bool {
    !filter.fingerprints.is_empty() || !filter.wheres.is_empty() || !filter.sources.is_empty()
}

/// The archive query for filter flags (the rest of the filter is applied to the records).
fn query(filter: &crate::filter::Filter, limit: Option<usize>) -> ArchiveQuery {
    ArchiveQuery {
        classes: filter.classes.iter().copied().collect(),
        since: filter.since,
        until: filter.until,
        keys: filter.keys.as_ref().map(|k| k.iter().cloned().collect()),
        limit,
    }
}

/// An entry of the archive index whose record could not be read.
struct Unreadable {
    entry: ArchivedEntry,
    /// Why its record could not be read.
    problem: anyhow::Error,
}

/// What [`select_readable`] found.
struct Selection<T> {
    /// What is kept of the records that match the filter, newest first.
    matched: Vec<T>,
    /// The entries, in the same order, whose records could not be read, so that the filter
    /// could not be tried on them (beyond the index's class and time).
    unreadable: Vec<Unreadable>,
}

/// What is kept (`keep`) of the archived records matching the filter, newest first, with the
/// entries whose records could not be read set aside. Up to `limit` of both together. Records
/// are read one at a time and only what `keep` makes of them stays.
async fn select_readable<T>(
    operator: &dyn Operator,
    filter: &crate::filter::Filter,
    limit: Option<usize>,
    mut keep: impl FnMut(Archived) -> T,
) -> Result<Selection<T>> {
    // When the filter needs the records, the limit applies after it.
    let entries = operator
        .archived(&query(
            filter,
            if needs_records(filter) { None } else { limit },
        ))
        .await?;
    let mut selection = Selection {
        matched: Vec::new(),
        unreadable: Vec::new(),
    };
    for entry in entries {
        if limit.is_some_and(|l| selection.matched.len() + selection.unreadable.len() >= l) {
            break;
        }
        let read = operator
            .fetch_archived(&entry)
            .await
            .and_then(|record| Archived::new(entry.clone(), record));
        match read {
            Ok(archived) if filter.matches(&archived.facts()) => {
                selection.matched.push(keep(archived));
            }
            Ok(_) => {}
            Err(problem) => {
                selection.unreadable.push(Unreadable { entry, problem });
            }
        }
    }
    Ok(selection)
}

/// `archive list`.
pub async fn list(
    operator: &dyn Operator,
    filter: &FilterArgs,
    limit: usize,
    json: bool,
) -> Result<String> {
    let filter = filter.build(Utc::now())?;
    let Selection {
        matched: mut selected,
        unreadable,
    } = select_readable(operator, &filter, (limit > 0).then_some(limit), Listed::of).await?;
    // One damaged or missing file does not hide the rest of the archive: its entries are
    // listed as unreadable (in the table) and named on standard error.
    for u in &unreadable {
        tracing::warn!(key = %u.entry.key, attempt = u.entry.attempt, "cannot read the archived record: {:#}", u.problem);
    }
    mark_replayed(operator, &mut selected).await;
    if json {
        return Ok(serde_json::to_string_pretty(&selected)?);
    }
    let mut out = format!(
        "{:<40} {:>3} {:<12} {:<20} {:<16} {}\n",
        "key", "try", "class", "archived at", "fingerprint", "source"
    );
    let row = |entry: &ArchivedEntry, fingerprint: &str, replayed: bool| {
        format!(
            "{:<40} {:>3} {:<12} {:<20} {:<16} {}{}\n",
            entry.key,
            entry.attempt,
            entry.class.as_str(),
            entry.archived_at.format("%Y-%m-%d %H:%M:%S"),
            fingerprint,
            entry.source.as_deref().unwrap_or("-"),
            if replayed { "  (replayed)" } else { "" }
        )
    };
    // Newest first, the unreadable entries among the others.
    let unreadable_entries: Vec<ArchivedEntry> = unreadable
        .iter()
        .map(|u| shown_entry(u.entry.clone()))
        .collect();
    let mut rows: Vec<(&ArchivedEntry, &str, bool)> = selected
        .iter()
        .map(|a| (&a.entry, a.fingerprint.as_str(), a.replayed == Some(true)))
        .chain(
            unreadable_entries
                .iter()
                .map(|e| (e, "(unreadable)", false)),
        )
        .collect();
    rows.sort_by_key(|(entry, _, _)| std::cmp::Reverse(entry.archived_at));
    for (entry, fingerprint, replayed) in rows {
        out.push_str(&row(entry, fingerprint, replayed));
    }
    let listed = selected.len() + unreadable.len();
    let messages = crate::noun(selected.len(), "archived message", "archived messages");
    // The index counts what its classes and times select.
    let countable = filter.keys.is_none() && !needs_records(&filter);
    let total = match countable {
        true => operator.archived_count(&query(&filter, None)).await?,
        false => None,
    };
    if limit > 0 && listed >= limit {
        match total {
            Some(total) => out.push_str(&format!(
                "the newest {} of {total} {} (--limit {limit}; --limit 0 lists all)\n",
                selected.len(),
                crate::noun(total as usize, "archived message", "archived messages"),
            )),
            None => out.push_str(&format!(
                "the newest {} {messages} (--limit {limit}; there may be more: --limit 0 lists all)\n",
                selected.len()
            )),
        }
    } else {
        out.push_str(&format!("{} {messages}\n", selected.len()));
    }
    if let Some(first) = unreadable.first() {
        out.push_str(&format!(
            "{} more whose archived records cannot be read (the first: {:#})\n",
            unreadable.len(),
            first.problem
        ));
    }
    Ok(out)
}

/// Mark the listed records that `archive replay` sent back already, from the move journal;
/// where the journal cannot be read, none is marked either way (a warning says why).
async fn mark_replayed(operator: &dyn Operator, listed: &mut [Listed]) {
    if listed.is_empty() {
        return;
    }
    let ids: Vec<String> = listed.iter().map(|l| l.journal_id.clone()).collect();
    let done = match operator.journal() {
        Ok(journal) => journal.done(&ids).await.map_err(anyhow::Error::from),
        Err(error) => Err(error),
    };
    match done {
        Ok(done) => {
            for one in listed {
                one.replayed = Some(done.contains(&one.journal_id));
            }
        }
        Err(error) => {
            tracing::warn!("cannot tell which archived messages were replayed already: {error:#}")
        }
    }
}

/// `archive show KEY`: the newest archived record of a key (or the given attempt), in full.
pub async fn show(
    operator: &dyn Operator,
    key: &str,
    attempt: Option<u32>,
) -> Result<ArchiveRecord> {
    let entries = operator
        .archived(&ArchiveQuery {
            keys: Some(vec![key.to_string()]),
            ..ArchiveQuery::default()
        })
        .await?;
    if entries.is_empty() {
        bail!("no archived message has the key {key:?}; list them with `dlq-healer archive list`");
    }
    let attempts: Vec<String> = entries.iter().map(|e| e.attempt.to_string()).collect();
    let entry = entries
        .into_iter()
        .find(|e| attempt.is_none_or(|a| e.attempt == a))
        .with_context(|| {
            format!(
                "the key {key:?} has no archived attempt {}; its archived attempts: {}",
                attempt.unwrap_or_default(),
                attempts.join(", ")
            )
        })?;
    operator.fetch_archived(&entry).await
}

/// `archive replay`: send selected archived messages back to their source queue (or `--to`).
pub async fn replay(
    operator: &dyn Operator,
    filter: &crate::filter::Filter,
    options: &MoveOptions,
    pacer: &dyn Pacer,
    progress: &mut Progress,
    interrupted: &(dyn Fn() -> bool + Sync),
) -> Result<MoveReport> {
    if filter.is_empty() && !options.dry_run {
        bail!(
            "replay needs a filter (--class, --key, --since, ...) so that the whole archive is not replayed by accident; \
             try --dry-run first"
        );
    }
    let journal = operator.journal()?;
    let plan = plan_replay(operator, filter, options, journal.as_ref()).await?;
    let mut report = plan.report;
    if options.dry_run {
        report.moved = plan.selected.into_iter().map(|one| one.planned).collect();
        return Ok(report);
    }
    let sender = operator.sender();
    let mut mover = Mover::new(
        sender.as_ref(),
        journal.as_ref(),
        pacer,
        options.rate,
        options.ramp,
    );
    for chunk in plan.selected.chunks(10) {
        if interrupted() {
            report.stopped = Some("interrupted; rerun the same command to go on".into());
            break;
        }
        let mut items = Vec::new();
        let mut plans = Vec::new();
        for one in chunk {
            let plan = &one.planned;
            let read = operator
                .fetch_archived(&one.entry)
                .await
                .and_then(|record| Archived::new(one.entry.clone(), record));
            match read {
                Ok(archived) => {
                    items.push(MoveItem {
                        journal_id: one.journal_id.clone(),
                        target: plan.target.clone(),
                        message: archived.outgoing(),
                    });
                    plans.push(plan);
                }
                Err(error) => report.failed.push(format!(
                    "{}: the archived record cannot be read again: {}",
                    plan.key,
                    crate::redrive::shown_failure(&format!("{error:#}"))
                )),
            }
        }
        if items.is_empty() {
            continue;
        }
        let results = mover.send(&items).await?;
        let mut sent = 0;
        for (plan, result) in plans.into_iter().zip(results) {
            match result {
                Ok(_) => {
                    report.moved.push(plan.clone());
                    sent += 1;
                }
                Err(error) => report.failed.push(format!(
                    "{} -> {}: {}",
                    plan.key,
                    shown_source(&plan.target),
                    crate::redrive::shown_failure(&error.to_string())
                )),
            }
        }
        progress.add(sent);
    }
    progress.finish();
    Ok(report)
}

/// The move journal's id of replaying attempt `attempt` of `key`.
fn replay_journal_id(key: &str, attempt: u32) -> String {
    format!("replay:{key}#{attempt}")
}

/// Index entries [`plan_replay`] asks the move journal about at a time.
const PLAN_PAGE: usize = 500;

/// What a replay will move, and its report so far.
struct ReplayPlan {
    /// The records to move, newest first, each with its move.
    selected: Vec<Selected>,
    report: MoveReport,
}

/// Plan a replay: the archived records matching the filter, newest first, that an earlier replay
/// has not sent back, until `--limit` moves are planned. Each record is read once here, so that
/// a damaged one stops the replay before anything moves; only what the plan needs is kept of it
/// (the records are read again, ten at a time, as they are sent). With `--limit`, the archive is
/// read only as far as the limit's records.
async fn plan_replay(
    operator: &dyn Operator,
    filter: &crate::filter::Filter,
    options: &MoveOptions,
    journal: &dyn crate::ops::Journal,
) -> Result<ReplayPlan> {
    let entries = operator.archived(&query(filter, None)).await?;
    let mut plan = ReplayPlan {
        selected: Vec::new(),
        report: MoveReport {
            dry_run: options.dry_run,
            ..MoveReport::default()
        },
    };
    let report = &mut plan.report;
    'pages: for page in entries.chunks(PLAN_PAGE) {
        let ids: Vec<String> = page
            .iter()
            .map(|entry| replay_journal_id(&entry.key, entry.attempt))
            .collect();
        let done = journal.done(&ids).await?;
        for (entry, journal_id) in page.iter().zip(ids) {
            if options.limit.is_some_and(|l| plan.selected.len() >= l) {
                break 'pages;
            }
            report.scanned += 1;
            let moved_before = done.contains(&journal_id);
            if moved_before && !needs_records(filter) {
                report.matched += 1;
                report.already_moved += 1;
                continue;
            }
            let archived = operator
                .fetch_archived(entry)
                .await
                .and_then(|record| Archived::new(entry.clone(), record))?;
            if !filter.matches(&archived.facts()) {
                continue;
            }
            report.matched += 1;
            if moved_before {
                report.already_moved += 1;
                continue;
            }
            let target = options
                .to
                .clone()
                .or_else(|| archived.record.source.clone())
                .or_else(|| archived.entry.source.clone());
            let Some(target) = target else {
                report.no_target.push(archived.record.key);
                continue;
            };
            plan.selected.push(Selected {
                planned: PlannedMove {
                    id: format!("{}#{}", archived.record.key, archived.record.attempt),
                    key: archived.record.key,
                    class: archived.record.class,
                    fingerprint: archived.fingerprint,
                    target,
                },
                journal_id,
                entry: archived.entry,
            });
        }
    }
    Ok(plan)
}

/// What a replay keeps of a selected record between reading it and sending it.
struct Selected {
    /// Where it is, to read it again.
    entry: ArchivedEntry,
    journal_id: String,
    /// Its move.
    planned: PlannedMove,
}

/// What to do with the archive.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ArchiveAction {
    /// List archived messages (newest first) by key, class, source and time.
    List {
        #[command(flatten)]
        ops: crate::ops::OpsArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many, the newest (0: all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print one archived record in full, as JSON.
    Show {
        #[command(flatten)]
        ops: crate::ops::OpsArgs,
        /// The message key.
        key: String,
        /// The attempt that archived it (the newest when absent).
        #[arg(long)]
        attempt: Option<u32>,
    },
    /// Send archived messages back to their source queue (or --to): body, attributes, and the
    /// failure context with the key and attempts carried forward.
    Replay {
        #[command(flatten)]
        ops: crate::ops::OpsArgs,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        moves: crate::redrive::MoveArgs,
    },
    /// Remove archived messages older than an age, for good (local backend; on aws the bucket's
    /// lifecycle rule expires them). Needs --yes, or --dry-run to count only.
    Prune(PruneArgs),
}

/// Flags of `archive prune`, kept apart from the other actions' (its classes are a plain list, its
/// time an age).
#[derive(Debug, Clone, clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    ops: crate::ops::OpsArgs,
    /// Remove what was archived longer ago than this: e.g. 90d (units s, m, h, d).
    #[arg(long, value_name = "AGE")]
    older_than: String,
    /// Only this class (repeatable): auth, validation, timeout, bad_payload, dependency, unknown.
    #[arg(long = "class", value_name = "CLASS")]
    classes: Vec<String>,
    /// Count what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove for good: archived messages cannot be replayed once pruned.
    #[arg(long)]
    yes: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `archive prune`: what was (or would be) removed, in a sentence or as JSON.
async fn prune(operator: &dyn Operator, args: &PruneArgs, now: DateTime<Utc>) -> Result<String> {
    if !args.yes && !args.dry_run {
        bail!(
            "archive prune removes archived messages for good (they can no longer be replayed): \
             add --yes, or --dry-run to see what it would remove"
        );
    }
    let age = crate::filter::parse_duration(&args.older_than)
        .map_err(|e| anyhow::anyhow!("--older-than: {e}"))?;
    let classes = args
        .classes
        .iter()
        .map(|c| {
            c.parse::<FailureClass>().map_err(|_| {
                anyhow::anyhow!(
                    "--class {c:?} is not a failure class (auth, validation, timeout, bad_payload, dependency, unknown)"
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let before = now - age;
    let pruned = operator
        .prune_archive(before, &classes, args.dry_run)
        .await?;
    if args.json {
        return Ok(format!(
            "{}\n",
            serde_json::json!({
                "dry_run": args.dry_run,
                "archived_before": before,
                "records": pruned.records,
                "objects": pruned.objects,
                "bytes": pruned.bytes,
            })
        ));
    }
    Ok(format!(
        "{} {} archived {} in {} {} ({:.1} MB), archived before {}{}\n",
        if args.dry_run {
            "would prune"
        } else {
            "pruned"
        },
        pruned.records,
        crate::noun(pruned.records as usize, "message", "messages"),
        pruned.objects,
        crate::noun(pruned.objects as usize, "file", "files"),
        pruned.bytes as f64 / 1e6,
        before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        if args.dry_run {
            "; nothing was changed"
        } else {
            ""
        }
    ))
}

/// Flags of `archive`.
#[derive(Debug, Clone, clap::Args)]
pub struct ArchiveArgs {
    #[command(subcommand)]
    action: ArchiveAction,
}

/// Run `archive`.
pub fn command(args: ArchiveArgs) -> Result<i32> {
    let ops = match &args.action {
        ArchiveAction::List { ops, .. }
        | ArchiveAction::Show { ops, .. }
        | ArchiveAction::Replay { ops, .. }
        | ArchiveAction::Prune(PruneArgs { ops, .. }) => ops.clone(),
    };
    crate::runtime()?.block_on(async {
        let operator = crate::ops::open(&ops).await?;
        match args.action {
            ArchiveAction::List {
                filter,
                limit,
                json,
                ..
            } => {
                print!("{}", list(operator.as_ref(), &filter, limit, json).await?);
                if json {
                    println!();
                }
                Ok(0)
            }
            ArchiveAction::Prune(prune_args) => {
                print!(
                    "{}",
                    prune(operator.as_ref(), &prune_args, Utc::now()).await?
                );
                Ok(0)
            }
            ArchiveAction::Show { key, attempt, .. } => {
                let record = show(operator.as_ref(), &key, attempt).await?;
                println!("{}", serde_json::to_string_pretty(&record)?);
                Ok(0)
            }
            ArchiveAction::Replay { filter, moves, .. } => {
                let options = moves.options(filter.build(Utc::now())?)?;
                crate::redrive::check_target(operator.as_ref(), options.to.as_deref(), None)
                    .await?;
                let shutdown = crate::worker::Shutdown::default();
                shutdown.on_signals();
                let pacer = crate::rate::RealPacer::default();
                let mut progress = Progress::new(None, options.dry_run || moves.json);
                let mut report = replay(
                    operator.as_ref(),
                    &options.filter,
                    &options,
                    &pacer,
                    &mut progress,
                    &|| shutdown.requested(),
                )
                .await?;
                crate::redrive::fail_moves_to_missing_queues(operator.as_ref(), &mut report).await;
                if moves.json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", crate::redrive::render(&report, "replay"));
                }
                Ok(crate::redrive::exit_code(&report))
            }
        }
    })
}
