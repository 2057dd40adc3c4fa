//! `dlq-healer queue`: create, list and feed queues of the local backend.

use crate::local::{LocalBackend, LocalSettings};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use dlq_healer_core::message::{Attribute, OutgoingMessage};
use dlq_healer_core::ports::{QueueSender, SystemClock};
use dlq_healer_local::QueueSettings;
use std::sync::Arc;

/// What to do with queues.
#[derive(Debug, Clone, Subcommand)]
pub enum QueueAction {
    /// Create a queue. Creating one that exists with the same settings does nothing; with
    /// other settings it is refused unless --update is given.
    Create {
        /// Queue name.
        name: String,
        /// Move messages to this DLQ after --max-receive-count deliveries (with --update alone,
        /// keeping the queue's count).
        #[arg(long)]
        dlq: Option<String>,
        /// With --update: remove the queue's DLQ (its messages are then never dead-lettered).
        #[arg(long, requires = "update", conflicts_with_all = ["dlq", "max_receive_count"])]
        no_dlq: bool,
        /// Deliveries before a message moves to the DLQ (1 to 1000; with --update alone, keeping
        /// the queue's DLQ).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_receive_count: Option<u32>,
        /// Seconds a received message stays invisible (0 to 43200) [default: 30 for a new queue]
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=43_200))]
        visibility_timeout: Option<u32>,
        /// A FIFO queue (message groups, deduplication ids, no per-message delay).
        #[arg(long)]
        fifo: bool,
        /// If the queue exists, change the settings given (--visibility-timeout, --dlq with
        /// --max-receive-count, --no-dlq) and keep the others, as SQS SetQueueAttributes does.
        /// A queue's type, standard or FIFO, cannot change.
        #[arg(long)]
        update: bool,
    },
    /// List queues with their depths.
    List,
    /// Send one message.
    Send {
        /// Queue name.
        name: String,
        /// The message body.
        #[arg(
            long,
            required_unless_present = "body_file",
            conflicts_with = "body_file"
        )]
        body: Option<String>,
        /// Read the message body from this file (`-` for standard input), for bodies too long
        /// for a command line or not UTF-8.
        #[arg(long, value_name = "FILE")]
        body_file: Option<std::path::PathBuf>,
        /// The message group of a FIFO queue (required there).
        #[arg(long)]
        group_id: Option<String>,
        /// The deduplication id of a FIFO message (SQS's content-based deduplication is not
        /// emulated: a message without one is never taken for a duplicate).
        #[arg(long, requires = "group_id")]
        deduplication_id: Option<String>,
        /// A String attribute as name=value (repeatable; at most 10).
        #[arg(long = "attribute", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
        /// Seconds before the message becomes visible (0 to 900).
        #[arg(long, default_value_t = 0)]
        delay: u32,
    },
    /// Send every message of a JSON Lines file, ten to a batch: one object a line, as `classify`
    /// reads them (`body` or `body_b64`, `error`, which becomes the `dlq-context`, and
    /// `attributes`), with `group_id` and `deduplication_id` for a FIFO queue and
    /// `delay_seconds` (0 to 900). Stops at the first line that cannot be read or sent, and says
    /// which lines were sent.
    Load {
        /// Queue name.
        name: String,
        /// The JSON Lines file; standard input when absent or `-`.
        #[arg(value_name = "FILE")]
        file: Option<std::path::PathBuf>,
    },
    /// Delete every message of a queue, visible, in flight or delayed, for good. Refused
    /// without --yes.
    Purge {
        /// Queue name.
        name: String,
        /// Yes, delete them: they are not archived and cannot be replayed.
        #[arg(long)]
        yes: bool,
    },
}

/// Carry out a queue action.
pub async fn run(settings: LocalSettings, action: QueueAction) -> Result<()> {
    // Only `create` starts a store: a mistyped --db for a list or a send is an error, not a new,
    // empty store that seems to hold no queues.
    if !matches!(action, QueueAction::Create { .. }) && !settings.db.exists() {
        bail!(
            "the local store {} does not exist; give the healer's --db (or DLQ_HEALER_DB), or \
             create a queue in a new store with `dlq-healer queue --db {} create NAME`",
            settings.db.display(),
            settings.db.display()
        );
    }
    let backend = LocalBackend::open(&settings, Arc::new(SystemClock))?;
    match action {
        QueueAction::Create {
            name,
            dlq,
            no_dlq,
            max_receive_count,
            visibility_timeout,
            fifo,
            update,
        } => {
            // The settings given, over `base`: a DLQ or a receive count alone changes the one of
            // `base`'s redrive policy, which must then exist.
            let given = |base: QueueSettings| -> Result<QueueSettings> {
                let mut settings = base;
                if let Some(seconds) = visibility_timeout {
                    settings = settings.with_visibility_timeout(seconds);
                }
                let current = settings.redrive.clone();
                match (&dlq, max_receive_count, current) {
                    (Some(dlq), Some(max), _) => settings = settings.with_redrive(dlq, max),
                    (Some(dlq), None, Some(r)) => {
                        settings = settings.with_redrive(dlq, r.max_receive_count);
                    }
                    (None, Some(max), Some(r)) => {
                        settings = settings.with_redrive(&r.dead_letter_queue, max);
                    }
                    (Some(_), None, None) => bail!(
                        "--dlq needs --max-receive-count (the deliveries before a message moves there)"
                    ),
                    (None, Some(_), None) => bail!(
                        "--max-receive-count needs --dlq (the queue messages move to after that many deliveries)"
                    ),
                    (None, None, _) => {}
                }
                if no_dlq {
                    settings.redrive = None;
                }
                if fifo {
                    settings = settings.fifo();
                }
                Ok(settings)
            };
            let existing = backend.queues.queue_settings(&name)?;
            if let Some(existing) = existing.clone().filter(|_| update) {
                let updated = given(existing.clone())?;
                if updated == existing {
                    println!(
                        "queue {name} already has these settings ({}) in {}",
                        describe(&existing),
                        settings.db.display()
                    );
                    return Ok(());
                }
                backend.queues.create_queue(&name, updated.clone())?;
                println!(
                    "queue {name} updated in {}: {} (was {})",
                    settings.db.display(),
                    describe(&updated),
                    describe(&existing)
                );
                return Ok(());
            }
            let queue_settings = given(QueueSettings::default())?;
            match existing {
                Some(existing) if existing == queue_settings => {
                    println!(
                        "queue {name} already exists with these settings in {}",
                        settings.db.display()
                    );
                    return Ok(());
                }
                Some(existing) if !update => bail!(
                    "queue {name} already exists with other settings ({}; asked for {}): \
                     run again with --update to change them",
                    describe(&existing),
                    describe(&queue_settings)
                ),
                _ => {}
            }
            backend.queues.create_queue(&name, queue_settings)?;
            println!("queue {name} ready in {}", settings.db.display());
        }
        QueueAction::List => {
            println!(
                "{:<24} {:>8} {:>10} {:>8}  settings",
                "queue", "visible", "in flight", "delayed"
            );
            for (queue, depth) in backend.queues.depths()? {
                println!(
                    "{:<24} {:>8} {:>10} {:>8}  {}",
                    queue.name,
                    depth.visible,
                    depth.in_flight,
                    depth.delayed,
                    describe(&queue.settings)
                );
            }
        }
        QueueAction::Send {
            name,
            body,
            body_file,
            group_id,
            deduplication_id,
            attributes,
            delay,
        } => {
            let body = match (body, body_file) {
                (Some(body), _) => body.into_bytes(),
                (None, Some(path)) if path.as_os_str() == "-" => {
                    let mut body = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)
                        .context("reading the body from standard input")?;
                    body
                }
                (None, Some(path)) => std::fs::read(&path)
                    .with_context(|| format!("reading the body from {}", path.display()))?,
                (None, None) => bail!("give the body with --body or --body-file"),
            };
            let mut message = OutgoingMessage::new("cli", body);
            message.delay_seconds = delay;
            message.group_id = group_id;
            message.deduplication_id = deduplication_id;
            for pair in attributes {
                let Some((key, value)) = pair.split_once('=') else {
                    bail!("attribute {pair:?} is not NAME=VALUE");
                };
                if key.is_empty() {
                    bail!("attribute {pair:?} has no name; write NAME=VALUE");
                }
                if message.attributes.get(key).is_some() {
                    bail!("attribute {key:?} is given twice");
                }
                message
                    .attributes
                    .insert(key.to_string(), Attribute::string(value));
            }
            let id = backend
                .queues
                .send(&name, &[message])
                .await?
                .remove(0)
                .with_context(|| format!("sending to {name}"))?;
            println!("{id}");
        }
        QueueAction::Load { name, file } => {
            let input: Box<dyn std::io::BufRead> = match &file {
                Some(path) if path.as_os_str() != "-" => Box::new(std::io::BufReader::new(
                    std::fs::File::open(path)
                        .with_context(|| format!("opening {}", path.display()))?,
                )),
                _ => Box::new(std::io::stdin().lock()),
            };
            let sent = load(backend.queues.as_ref(), &name, input).await?;
            println!(
                "sent {sent} {} to {name} in {}",
                crate::noun(sent, "message", "messages"),
                settings.db.display()
            );
        }
        QueueAction::Purge { name, yes } => {
            let depth = backend.queues.depth(&name)?;
            if !yes {
                bail!(
                    "purging {name} deletes its {} messages for good (they are not archived); \
                     run again with --yes",
                    depth.total()
                );
            }
            let deleted = backend.queues.purge(&name)?;
            println!(
                "deleted {deleted} {} from {name}",
                crate::noun(deleted as usize, "message", "messages")
            );
        }
    }
    Ok(())
}

/// Send the messages of JSON Lines `input` to `queue`, ten to a batch; how many were sent. The
/// first line that cannot be read stops it after the lines before it are sent, and the first that
/// cannot be sent stops it too, each with an error that says which lines were sent.
async fn load(
    queues: &dyn QueueSender,
    queue: &str,
    input: impl std::io::BufRead,
) -> Result<usize> {
    let mut sent = 0;
    let mut batch: Vec<(usize, OutgoingMessage)> = Vec::new();
    let mut lines = input.lines().enumerate();
    loop {
        let next = lines.next();
        let at_end = next.is_none();
        // A line that cannot be read: the lines before it are sent, and the load stops there.
        let mut bad_line = None;
        if let Some((index, line)) = next {
            let number = index + 1;
            let line = line.with_context(|| {
                format!(
                    "reading line {number} (the {sent} lines before the batch in hand were sent)"
                )
            })?;
            if line.trim().is_empty() {
                continue;
            }
            match outgoing_of_line(&line) {
                Ok(message) => {
                    batch.push((number, message));
                    if batch.len() < 10 {
                        continue;
                    }
                }
                Err(why) => bad_line = Some(format!("line {number}: {why}")),
            }
        }
        if !batch.is_empty() {
            sent = send_batch(queues, queue, &batch, sent).await?;
            batch.clear();
        }
        if let Some(bad_line) = bad_line {
            bail!(
                "{bad_line}; the {sent} {} of the lines before it were sent, none from it on",
                crate::noun(sent, "message", "messages")
            );
        }
        if at_end {
            return Ok(sent);
        }
    }
}

/// Send one batch of `queue load`'s lines; the count sent so far, `sent` before it.
async fn send_batch(
    queues: &dyn QueueSender,
    queue: &str,
    batch: &[(usize, OutgoingMessage)],
    mut sent: usize,
) -> Result<usize> {
    let messages: Vec<OutgoingMessage> = batch.iter().map(|(_, m)| m.clone()).collect();
    let results = queues
        .send(queue, &messages)
        .await
        .with_context(|| format!("sending to {queue} ({sent} messages sent before)"))?;
    let mut failed = Vec::new();
    for ((number, _), result) in batch.iter().zip(results) {
        match result {
            Ok(_) => sent += 1,
            Err(error) => failed.push(format!("line {number}: {error}")),
        }
    }
    if !failed.is_empty() {
        bail!(
            "{}; {sent} {} sent, up to line {}, and none after it",
            failed.join("; "),
            crate::noun(sent, "message", "messages"),
            batch.last().map_or(0, |(n, _)| *n)
        );
    }
    Ok(sent)
}

/// The message to send for one line of `queue load`.
fn outgoing_of_line(line: &str) -> Result<OutgoingMessage, String> {
    use crate::classify::{fields_of_line, message_from_fields, type_name};
    let fields = fields_of_line(line)?;
    if !["body", "body_b64"]
        .iter()
        .any(|name| fields.get(*name).is_some_and(|v| !v.is_null()))
    {
        let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
        names.sort_unstable();
        return Err(format!(
            "no body: give body (text) or body_b64; the line has {}",
            if names.is_empty() {
                "no fields".to_string()
            } else {
                names.join(", ")
            }
        ));
    }
    let received = message_from_fields(&fields)?;
    let mut message = OutgoingMessage::new("load", received.body);
    message.attributes = received.attributes;
    let text = |name: &str| match fields.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(format!("{name} must be a string, not {}", type_name(other))),
    };
    message.group_id = text("group_id")?;
    message.deduplication_id = text("deduplication_id")?;
    message.delay_seconds = match fields.get("delay_seconds") {
        None | Some(serde_json::Value::Null) => 0,
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n <= 900)
            .ok_or_else(|| format!("delay_seconds must be 0 to 900, not {n}"))?,
        Some(other) => {
            return Err(format!(
                "delay_seconds must be a number, not {}",
                type_name(other)
            ));
        }
    };
    Ok(message)
}

/// A queue's settings as `queue create` takes them.
fn describe(settings: &QueueSettings) -> String {
    let mut parts = vec![format!(
        "visibility timeout {} s",
        settings.visibility_timeout_seconds
    )];
    match &settings.redrive {
        Some(redrive) => parts.push(format!(
            "DLQ {} after {} receives",
            redrive.dead_letter_queue, redrive.max_receive_count
        )),
        None => parts.push("no DLQ".into()),
    }
    if settings.fifo {
        parts.push("FIFO".into());
    }
    parts.join(", ")
}
