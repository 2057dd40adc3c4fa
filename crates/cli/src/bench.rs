//! `dlq-healer bench`: measures what the README's benchmark table reports, on this machine, in
//! one run, and prints each figure beside its target.

use anyhow::{Context, Result};
use chrono::Utc;
use dlq_healer_core::context::{ErrorInfo, FailureContext};
use dlq_healer_core::letter::OpenedLetter;
use dlq_healer_core::message::{Attribute, Attributes, CONTEXT_ATTRIBUTE, ReceivedMessage};
use dlq_healer_core::rules::RuleSet;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Error texts of the realistic mix: status lines to multi-line stack traces.
const ERROR_TEXTS: [(&str, Option<&str>); 10] = [
    ("Task timed out after 30.00 seconds", None),
    ("401 Unauthorized", None),
    (
        "An error occurred (ExpiredTokenException) when calling the SendMessage operation: The security token included in the request is expired",
        Some("ClientError"),
    ),
    ("connect ECONNREFUSED 10.0.3.17:5432", Some("Error")),
    ("Request failed with status code 503", Some("AxiosError")),
    (
        "1 validation error for Order\nuser_id\n  Field required [type=missing, input_value={'order_id': 14013}, input_type=dict]",
        Some("ValidationError"),
    ),
    (
        "Expecting value: line 1 column 1 (char 0)",
        Some("JSONDecodeError"),
    ),
    (
        "duplicate key value violates unique constraint \"orders_pkey\"\nDETAIL:  Key (id)=(14013) already exists.",
        Some("UniqueViolation"),
    ),
    (
        "java.net.SocketTimeoutException: Read timed out\n\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:288)\n\tat java.base/sun.nio.ch.NioSocketImpl.implRead(NioSocketImpl.java:314)\n\tat java.base/sun.nio.ch.NioSocketImpl.read(NioSocketImpl.java:355)\n\tat java.base/java.net.Socket$SocketInputStream.read(Socket.java:964)\n\tat com.example.orders.PaymentClient.charge(PaymentClient.java:88)\n\tat com.example.orders.OrderHandler.handle(OrderHandler.java:41)",
        Some("java.net.SocketTimeoutException"),
    ),
    ("order 14013 failed: inventory reservation rejected", None),
];

/// A ~1 KB order body.
fn order_body(rng: &mut SmallRng, id: u32) -> Vec<u8> {
    let items: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"sku":"SKU-{:05}","qty":{},"price_cents":{},"name":"Item number {i} with a longer name"}}"#, rng.gen_range(0..99_999), rng.gen_range(1..5), rng.gen_range(100..99_999)))
        .collect();
    format!(
        r#"{{"order_id":{id},"user":{{"id":"u-{}","email":"user{}@example.com"}},"currency":"EUR","items":[{}],"shipping":{{"street":"1 Long Street","city":"Springfield","zip":"12345"}}}}"#,
        rng.gen_range(0..1_000_000),
        rng.gen_range(0..1_000_000),
        items.join(",")
    )
    .into_bytes()
}

/// A realistic mix of dead letters with their `dlq-context`.
pub fn realistic_mix(count: usize, seed: u64) -> Vec<ReceivedMessage> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let (text, error_type) = ERROR_TEXTS[i % ERROR_TEXTS.len()];
            let mut error = ErrorInfo::message(text);
            error.error_type = error_type.map(str::to_string);
            let mut context = FailureContext::new(error, Utc::now());
            context.source = Some("orders".into());
            context.consumer = Some("orders-consumer".into());
            let mut attributes = Attributes::new();
            attributes.insert(
                CONTEXT_ATTRIBUTE.into(),
                Attribute::string(context.to_json()),
            );
            attributes.insert("tenant".into(), Attribute::string("acme"));
            let body = if i % 50 == 49 {
                b"{\"order_id\": 1, \"items\": [".to_vec()
            } else {
                order_body(&mut rng, i as u32)
            };
            ReceivedMessage {
                message_id: format!("m-{i}"),
                receipt_handle: format!("r-{i}"),
                body,
                attributes,
                receive_count: 1,
                redrive_source: None,
                sent_at: None,
                group_id: None,
            }
        })
        .collect()
}

/// Messages the classification benchmark gives the rules at a time: `run`'s default batch size.
pub const CLASSIFY_BATCH: usize = 100;

/// A classification rate and the messages it counted.
#[derive(Debug, Clone, Copy)]
pub struct ClassificationRate {
    /// Messages classified per second on this thread.
    pub per_second: f64,
    /// Messages classified.
    pub messages: usize,
}

impl ClassificationRate {
    /// `messages` classified in `elapsed`.
    fn over(messages: usize, elapsed: std::time::Duration) -> Self {
        ClassificationRate {
            per_second: messages as f64 / elapsed.as_secs_f64(),
            messages,
        }
    }
}

/// Open, classify and drop each of `messages`, as the engine does; how many were classified.
/// Never inlined, so that a profiler can measure it alone (`callgrind --toggle-collect`).
#[inline(never)]
fn classify_each(rules: &RuleSet, messages: Vec<ReceivedMessage>) -> usize {
    let count = messages.len();
    for message in messages {
        let letter = OpenedLetter::open(message);
        std::hint::black_box(rules.classify(&letter.facts()));
    }
    count
}

/// Classify `sample` once on one thread the way the engine meets messages: a batch of
/// [`CLASSIFY_BATCH`] at a time, each batch copied from the sample just before it is classified,
/// as a receive decodes it; only the classifying is timed.
pub fn classification_rate(rules: &RuleSet, sample: &[ReceivedMessage]) -> ClassificationRate {
    let mut elapsed = std::time::Duration::ZERO;
    let mut messages = 0;
    for batch in sample.chunks(CLASSIFY_BATCH) {
        let received = batch.to_vec();
        let started = Instant::now();
        messages += classify_each(rules, received);
        elapsed += started.elapsed();
    }
    ClassificationRate::over(messages, elapsed)
}

/// `count` with its noun: "1 round", "10,000 messages".
fn counted(count: usize, one: &str, many: &str) -> String {
    format!(
        "{} {}",
        thousands(count as f64),
        crate::noun(count, one, many)
    )
}

/// The median, lowest and highest of `rates` (not empty).
fn median_and_range(mut rates: Vec<f64>) -> (f64, f64, f64) {
    rates.sort_by(f64::total_cmp);
    let middle = rates.len() / 2;
    let median = if rates.len().is_multiple_of(2) {
        (rates[middle - 1] + rates[middle]) / 2.0
    } else {
        rates[middle]
    };
    (median, rates[0], rates[rates.len() - 1])
}

/// Classify a copy of all of `sample` at once, copied before timing starts: every message is
/// then read cold from memory (10,000 messages are about 17 MB), which no receive leaves them.
/// A reference for [`classification_rate`].
pub fn cold_classification_rate(rules: &RuleSet, sample: &[ReceivedMessage]) -> ClassificationRate {
    let messages = sample.to_vec();
    let started = Instant::now();
    let messages = classify_each(rules, messages);
    ClassificationRate::over(messages, started.elapsed())
}

/// Figures of the local healing benchmark, measured in a child process so that its peak memory
/// is its own.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct HealingFigures {
    /// Dead letters handled.
    pub messages: usize,
    /// Messages per engine batch.
    pub batch_size: usize,
    /// Batches healed at once (`run --concurrency`).
    pub concurrency: usize,
    /// Dead letters fully handled per second (receive, classify, act, record, delete).
    pub healed_per_second: f64,
    /// Rows per second of batched inserts into a table shaped like the queue table.
    pub raw_inserts_per_second: f64,
    /// Peak resident memory of the process, in MiB.
    pub peak_rss_mib: f64,
    /// Microseconds to create an empty file in the benchmark's directory, before healing: every
    /// archive object is a new file.
    pub file_creation_micros: f64,
}

/// Files [`file_creation_micros`] creates.
const CREATED_FILES: usize = 32;

/// The mean time, in microseconds, to create an empty file in `dir` ([`CREATED_FILES`] of them,
/// left there with the benchmark's other files). On ext4 without a journal, creating a file
/// skips over every inode freed in the last minutes in its block group, so this is much slower
/// for a while after many files were deleted nearby: the healing rows pay it for each archive
/// object. Removing these files now would free inodes just before the healing run creates its own.
fn file_creation_micros(dir: &Path) -> Result<f64> {
    let files = dir.join("created");
    std::fs::create_dir(&files)?;
    let started = Instant::now();
    for n in 0..CREATED_FILES {
        std::fs::File::create(files.join(n.to_string()))?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / CREATED_FILES as f64)
}

/// A directory of the benchmark's own, `dlq-healer-bench-<process id>` under the one it is given,
/// removed with everything in it when dropped, unless it is to be left for the caller.
pub struct BenchDir {
    path: PathBuf,
    remove_when_dropped: bool,
}

impl BenchDir {
    /// Create the directory under `parent`, which must exist.
    pub fn create(parent: &Path, remove_when_dropped: bool) -> Result<Self> {
        let path = parent.join(format!("dlq-healer-bench-{}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| {
            format!(
                "could not create the benchmark's directory {} (--dir takes an existing directory that can be written to)",
                path.display()
            )
        })?;
        Ok(BenchDir {
            path,
            remove_when_dropped,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        if self.remove_when_dropped {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Fill a fresh store in `dir` with the realistic mix in its DLQ, then heal it with the `run` loop
/// on `run`'s runtime, `concurrency` batches at once; then, in the same run, measure batched
/// inserts into the same kind of table. The files are left in `dir`.
pub fn healing_figures(
    dir: &Path,
    messages: usize,
    batch_size: usize,
    concurrency: usize,
) -> Result<HealingFigures> {
    use crate::local::{LocalBackend, LocalSettings};
    use crate::worker::{LoopSettings, Shutdown, heal_concurrently};
    use dlq_healer_core::message::OutgoingMessage;
    use dlq_healer_core::ports::{QueueSender, SystemClock};
    use std::sync::Arc;

    let file_creation_micros = file_creation_micros(dir)?;
    let settings = LocalSettings {
        db: dir.join("bench.db"),
        archive_dir: dir.join("archive"),
        webhook_url: None,
        alert_window: dlq_healer_core::engine::DEFAULT_ALERT_WINDOW,
    };
    let runtime = crate::runtime()?;
    let backend = LocalBackend::open(&settings, Arc::new(SystemClock))?;
    backend
        .queues
        .create_queue("orders-dlq", dlq_healer_local::QueueSettings::default())?;
    backend
        .queues
        .create_queue("orders", dlq_healer_local::QueueSettings::default())?;
    // Generate and send in chunks, so that the peak memory is the healer's, not the mix's.
    const CHUNK: usize = 100;
    runtime.block_on(async {
        for chunk in 0..messages.div_ceil(CHUNK) {
            let count = CHUNK.min(messages - chunk * CHUNK);
            let outgoing: Vec<OutgoingMessage> = realistic_mix(count, 7 + chunk as u64)
                .into_iter()
                .map(|m| OutgoingMessage {
                    attributes: m.attributes,
                    ..OutgoingMessage::new(m.message_id, m.body)
                })
                .collect();
            for result in backend.queues.send("orders-dlq", &outgoing).await? {
                result?;
            }
        }
        anyhow::Ok(())
    })?;
    let engine = Arc::new(backend.engine(
        "orders-dlq",
        Arc::new(RuleSet::defaults()),
        dlq_healer_core::engine::EngineConfig::default(),
    )?);
    let started = Instant::now();
    let summary = runtime.block_on(heal_concurrently(
        engine.clone(),
        LoopSettings {
            batch_size,
            wait: std::time::Duration::ZERO,
            until_empty: true,
            keep_alive: None,
        },
        &Shutdown::default(),
        concurrency,
    ));
    let healed = summary.tally.requeued + summary.tally.archived + summary.tally.parked;
    let healed_per_second = healed as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        healed == messages && summary.tally.failed == 0,
        "the benchmark healed {healed} of {messages} messages ({} failed)",
        summary.tally.failed
    );
    let raw_inserts_per_second = raw_insert_rate(&dir.join("raw.db"), messages, batch_size)?;
    let peak_rss_mib = peak_rss_kib().map_or(f64::NAN, |kib| kib as f64 / 1024.0);
    Ok(HealingFigures {
        messages,
        batch_size,
        concurrency,
        healed_per_second,
        raw_inserts_per_second,
        peak_rss_mib,
        file_creation_micros,
    })
}

/// Rows per second of inserts, `batch_size` per transaction, into a WAL table shaped like the
/// queue's message table (same indexes, same pragmas).
fn raw_insert_rate(path: &std::path::Path, rows: usize, batch_size: usize) -> Result<f64> {
    let mut connection = rusqlite::Connection::open(path)?;
    connection.pragma_update(None, "page_size", dlq_healer_local::store::PAGE_SIZE)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.execute_batch(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, message_id TEXT NOT NULL,
           body BLOB NOT NULL, attributes TEXT NOT NULL, sent_at_ms INTEGER NOT NULL, visible_at_ms INTEGER NOT NULL,
           receive_count INTEGER NOT NULL DEFAULT 0, receipt_handle TEXT);
         CREATE INDEX messages_by_visibility ON messages(queue, visible_at_ms);",
    )?;
    let body = vec![b'x'; 900];
    let attributes = "{\"dlq-context\":{\"data_type\":\"String\",\"string_value\":\"...\"}}";
    let started = Instant::now();
    let mut written = 0;
    while written < rows {
        let transaction = connection.transaction()?;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO messages (queue, message_id, body, attributes, sent_at_ms, visible_at_ms) VALUES ('q', ?1, ?2, ?3, 0, 0)",
            )?;
            for i in written..(written + batch_size).min(rows) {
                insert.execute(rusqlite::params![format!("m-{i}"), body, attributes])?;
            }
        }
        transaction.commit()?;
        written = (written + batch_size).min(rows);
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// The process's peak resident set size (VmHWM), in KiB, where /proc has it.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Run every benchmark and print the table.
///
/// The healing runs keep their files under `dir` until all of them are done: on ext4 without a
/// journal, creating a file skips over every inode freed in the last minutes, so removing one
/// run's archive (about 800 files at batch 100) before the next slowed the next one's archive.
pub fn run(
    classify_messages: usize,
    healing_messages: usize,
    batch_sizes: &[usize],
    concurrencies: &[usize],
    dir: &Path,
) -> Result<()> {
    let work = BenchDir::create(dir, true)?;
    if std::env::var("BREAKDOWN").is_ok() {
        breakdown();
    }
    let rules = RuleSet::defaults();
    let distinct = 10_000.min(classify_messages.max(1));
    let sample = realistic_mix(distinct, 42);
    let mean_body = sample.iter().map(|m| m.body.len()).sum::<usize>() / sample.len();
    // Warm up, then measure rounds over copies of the sample so that generation is not timed.
    // The median round is the figure: on a shared machine, a round that another tenant slowed
    // down says nothing about the classifier; the range of the rounds is printed beside it.
    classification_rate(&rules, &sample);
    let rounds = classify_messages.div_ceil(distinct).max(1);
    let rates: Vec<f64> = (0..rounds)
        .map(|_| classification_rate(&rules, &sample).per_second)
        .collect();
    let (median, slowest, fastest) = median_and_range(rates);
    let cold = cold_classification_rate(&rules, &sample);
    println!("| benchmark | figure | target |");
    println!("| --- | --- | --- |");
    println!(
        "| classification, default rules, realistic mix (bodies ~{mean_body} B, context parsed, body validated), 1 thread, in batches of {CLASSIFY_BATCH} as received; median of {} of {} (range {} to {}) | {} msg/s | >= 1,000,000 msg/s/core |",
        counted(rounds, "round", "rounds"),
        counted(sample.len(), "message", "messages"),
        thousands(slowest),
        thousands(fastest),
        thousands(median)
    );
    println!(
        "| the same, all {} copied first and read cold from memory | {} msg/s | (reference) |",
        counted(cold.messages, "message", "messages"),
        thousands(cold.per_second)
    );
    for &batch_size in batch_sizes {
        // Each healing run measures the ceiling in its own process, right after healing: its
        // ratio pairs the two figures of that process.
        let mut ceilings = Vec::with_capacity(concurrencies.len());
        let mut creations = Vec::with_capacity(concurrencies.len());
        for &concurrency in concurrencies {
            let healing = healing_in_child(work.path(), healing_messages, batch_size, concurrency)?;
            println!(
                "| local healing end to end (receive, classify, act, record, delete; WAL, archive files fsynced), batch {batch_size}, concurrency {concurrency} | {} msg/s | >= 20,000 msg/s |",
                thousands(healing.healed_per_second)
            );
            println!(
                "| healing / raw ceiling, batch {batch_size}, concurrency {concurrency} | {:.2} | (report) |",
                healing.healed_per_second / healing.raw_inserts_per_second
            );
            println!(
                "| peak RSS of the healing process ({} messages, batch {batch_size}, concurrency {concurrency}) | {:.1} MiB | < 50 MB |",
                healing.messages, healing.peak_rss_mib
            );
            ceilings.push(thousands(healing.raw_inserts_per_second));
            creations.push(format!("{:.0}", healing.file_creation_micros));
        }
        println!(
            "| raw SQLite ceiling: batched inserts into the queue table, {batch_size} per transaction (measured by each healing run above, in its order) | {} rows/s | (reference) |",
            ceilings.join(" / ")
        );
        println!(
            "| creating an empty file in the benchmark's directory, before each healing run above (every archive object is a new file; on ext4 without a journal, slower for minutes after many files were deleted nearby) | {} µs | (reference) |",
            creations.join(" / ")
        );
    }
    Ok(())
}

/// Run [`healing_figures`] in a child process (`bench --healing-only`), so that the peak memory is
/// the healer's alone; its files are left in a directory of its own under `dir`.
fn healing_in_child(
    dir: &Path,
    messages: usize,
    batch_size: usize,
    concurrency: usize,
) -> Result<HealingFigures> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "--healing-only", "--leave-files", "--dir"])
        .arg(dir)
        .args([
            "--healing-messages",
            &messages.to_string(),
            "--batch-size",
            &batch_size.to_string(),
            "--concurrency",
            &concurrency.to_string(),
        ])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "the healing benchmark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8(output.stdout)?;
    Ok(serde_json::from_str(line.trim())?)
}

/// 1234567.8 -> "1,234,568".
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Per-stage rates over the realistic mix (set `BREAKDOWN=1`), each the best of five rounds, to
/// show where classification time goes. The stages overlap: `open letters` includes the context
/// parse, `classify opened` includes the body validation; cloning the input is never timed.
pub fn breakdown() {
    use dlq_healer_core::context::ContextReading;
    use dlq_healer_core::rules::{BodyFormat, body_is_valid};
    use std::hint::black_box;
    let rules = RuleSet::defaults();
    let sample = realistic_mix(10_000, 42);
    let contexts: Vec<&str> = sample
        .iter()
        .map(|m| m.attributes[CONTEXT_ATTRIBUTE].as_str().unwrap())
        .collect();
    let opened: Vec<OpenedLetter> = sample.iter().cloned().map(OpenedLetter::open).collect();
    let count = sample.len() as f64;
    let timed = |run: &mut dyn FnMut() -> usize| {
        let started = Instant::now();
        black_box(run());
        started.elapsed().as_secs_f64()
    };
    let stage = |name: &str, run: &mut dyn FnMut() -> f64| {
        let best = (0..5).map(|_| run()).fold(f64::INFINITY, f64::min);
        println!("{name:<40} {:>10} msg/s", thousands(count / best));
    };
    stage("body UTF-8 check (reference)", &mut || {
        timed(&mut || {
            sample
                .iter()
                .filter(|m| std::str::from_utf8(&m.body).is_ok())
                .count()
        })
    });
    stage("body validation (body_is_valid)", &mut || {
        timed(&mut || {
            sample
                .iter()
                .filter(|m| body_is_valid(&m.body, BodyFormat::Json))
                .count()
        })
    });
    stage("context parse (ContextReading::parse)", &mut || {
        timed(&mut || {
            contexts
                .iter()
                .filter(|c| ContextReading::parse(c).context().is_some())
                .count()
        })
    });
    stage("context as Value (raw_context in open)", &mut || {
        timed(&mut || {
            contexts
                .iter()
                .filter(|c| serde_json::from_str::<serde_json::Value>(c).is_ok())
                .count()
        })
    });
    stage("open letters and drop them", &mut || {
        let mut copy = Some(sample.clone());
        timed(&mut || {
            let copy = copy.take().expect("each round opens its own copy once");
            copy.into_iter()
                .map(OpenedLetter::open)
                .filter(|l| l.enveloped)
                .count()
        })
    });
    stage("classify opened", &mut || {
        timed(&mut || {
            opened
                .iter()
                .map(|l| rules.classify(&l.facts()).rule.len())
                .sum()
        })
    });
    stage("headline loop (classification_rate)", &mut || {
        count / classification_rate(&rules, &sample).per_second
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classification_rates_count_every_message_of_every_batch() {
        let rules = RuleSet::defaults();
        // Two and a half batches, so that the last batch is a partial one.
        let sample = realistic_mix(CLASSIFY_BATCH * 5 / 2, 1);
        let batched = classification_rate(&rules, &sample);
        assert_eq!(batched.messages, sample.len());
        assert!(batched.per_second.is_finite() && batched.per_second > 0.0);
        let cold = cold_classification_rate(&rules, &sample);
        assert_eq!(cold.messages, sample.len());
        assert!(cold.per_second.is_finite() && cold.per_second > 0.0);
    }

    #[test]
    fn the_median_of_an_odd_or_even_number_of_rounds_and_their_range() {
        assert_eq!(median_and_range(vec![3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(median_and_range(vec![4.0, 1.0, 3.0, 2.0]), (2.5, 1.0, 4.0));
        assert_eq!(median_and_range(vec![7.0]), (7.0, 7.0, 7.0));
    }

    #[test]
    fn counts_take_the_singular_only_for_one() {
        assert_eq!(counted(1, "round", "rounds"), "1 round");
        assert_eq!(counted(10_000, "message", "messages"), "10,000 messages");
        assert_eq!(counted(0, "round", "rounds"), "0 rounds");
    }

    #[test]
    fn the_realistic_mix_is_classified_into_more_than_one_class() {
        let rules = RuleSet::defaults();
        let classes: std::collections::BTreeSet<_> = realistic_mix(50, 3)
            .into_iter()
            .map(|message| rules.classify(&OpenedLetter::open(message).facts()).class)
            .collect();
        assert!(classes.len() >= 5, "{classes:?}");
    }
}
