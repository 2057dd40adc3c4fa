//! The `dlq-healer` command: thin glue that reads configuration, picks adapters and runs the
//! engine. All healing logic lives in `dlq-healer-core`.
//!
//! # Layout
//! - `main.rs`: the command line and its dispatch.
//! - `classify.rs`: `classify`, a dry run of the rules over JSON Lines.
//! - `demo.rs`: `demo`, the original scenario end to end on the local backend.
//! - `aws_demo.rs`: `demo --backend aws`, the same scenario on SQS, S3, DynamoDB and SNS.
//! - `run.rs`: `run`, the long-running healer worker.
//! - `queue.rs`: `queue`, managing and feeding local queues.
//! - `worker.rs`: the polling loop shared by `run` and `demo`, with graceful shutdown.
//! - `local.rs`: wiring of the local backend's adapters into an engine.
//! - `aws.rs`: wiring of the AWS backend's adapters into an engine.
//! - `panels.rs`: the original dashboard's three panels as tables.
//! - `config.rs`: the configuration file (the environment variables, in TOML).
//! - `bench.rs`: `bench`, the benchmark table of the README.
//! - `inspect.rs`: `inspect`, a peek at a DLQ grouped by class and fingerprint.
//! - `redrive.rs`: `redrive`, moving selected DLQ messages back at a safe rate, resumably.
//! - `archive.rs`: `archive list | show | replay`.
//! - `stats.rs`: `stats`, the three panels for any backend, and their Prometheus text.
//! - `serve.rs`: `serve`, the web dashboard and its JSON API.
//! - `ops.rs`: what the operator commands need from a backend (local, aws), and the move journal.
//! - `filter.rs`: message selection (class, fingerprint, source, time, keys, JSON pointer); pure.
//! - `rate.rs`: token-bucket rate limiter and ramp on an injected clock; pure.
//! - `aws_bench.rs`: `bench --aws`, AWS calls and cost per DLQ message, counted on an emulator.

mod allocator;
mod archive;
mod aws;
mod aws_bench;
mod aws_demo;
mod bench;
mod classify;
mod config;
mod demo;
mod filter;
mod inspect;
mod local;
mod ops;
mod panels;
mod queue;
mod rate;
mod redrive;
mod run;
mod serve;
mod stats;
mod worker;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dlq_healer_core::rules::RuleSet;
use std::path::{Path, PathBuf};

/// `run`'s messages per batch unless `--batch-size` says otherwise: at 10 (one SQS receive) the
/// local healer managed about 1,900 messages a second in `bench`, at 100 about 8,900 in the same
/// minutes; on AWS 100 makes 0.34 calls per message against 0.95.
const RUN_BATCH_SIZE: u32 = 100;

/// `run`'s batches healed at once unless `--concurrency` says otherwise. While one batch waits
/// for its archive files to reach the disk (or for the network), the other does its database
/// work: with a competing writer syncing the same disk, `bench` healed 20,300-22,200 messages a
/// second at batch 100 with two loops against 14,700-16,500 with one, in the same minutes.
const RUN_CONCURRENCY: u32 = 2;

/// How long `run` long-polls an empty DLQ: SQS's longest wait, as few empty receives as can be.
const RUN_WAIT_SECONDS: u64 = 20;

/// How long `run --until-empty` long-polls before it takes the DLQ for drained. Any wait above
/// zero is a long poll, which on SQS asks every server (a short poll samples some and may answer
/// empty while messages wait); a longer one would only keep a cron job waiting.
const UNTIL_EMPTY_WAIT_SECONDS: u64 = 1;

/// The longest `run --retention-days`: a century, far inside the range of times there are.
const MAX_RETENTION_DAYS: i64 = 36_500;

/// Classify, heal, alert on and archive dead-lettered messages. Nothing is lost.
#[derive(Debug, Parser)]
#[command(name = "dlq-healer", version, about, long_about = None)]
struct Cli {
    /// Log level: error, warn (or warning), info, debug or trace, in any case; or a filter
    /// such as info,dlq_healer_core=debug.
    #[arg(long, global = true, env = "LOG_LEVEL", default_value = "info",
          value_parser = dlq_healer_core::log_level::log_filter)]
    log_level: String,
    /// Configuration file (TOML) whose keys are the environment variables' names (DLQ_URL,
    /// MAIN_QUEUE_URL, ARCHIVE_BUCKET, FAILED_TABLE, ALERT_TOPIC_ARN, LOG_LEVEL, DLQ_HEALER_DB, ...);
    /// flags win over the environment, the environment over the file. Relative paths in it
    /// (DLQ_HEALER_DB, DLQ_HEALER_ARCHIVE_DIR, DLQ_HEALER_RULES) are taken from its directory.
    #[arg(long, global = true, env = "DLQ_HEALER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dry-run the rules: read messages as JSON Lines, print one classification per line.
    ///
    /// Each input line is an object with optional fields `body` (string or null), `body_b64`
    /// (base64, for bodies that are not UTF-8), `error` (the error text), `attributes` (object of
    /// strings; may hold a `dlq-context`) and `receive_count`. Each output line is
    /// {"class": ..., "action": ..., "rule": ...}, or {"error": ...} for a line that cannot be read.
    Classify {
        /// Rules file (TOML); the shipped defaults when absent.
        #[arg(long, env = "DLQ_HEALER_RULES")]
        rules: Option<PathBuf>,
        /// Input file; standard input when absent.
        #[arg(long)]
        input: Option<PathBuf>,
        /// For a single message: print every rule tried and why it did or did not match.
        #[arg(long)]
        explain: bool,
    },
    /// Print the benchmark table: classification speed, local healing speed and memory, and with
    /// --aws the AWS calls and cost per DLQ message.
    Bench {
        /// Messages for the classification benchmark.
        #[arg(long, default_value_t = 1_000_000)]
        classify_messages: usize,
        /// Dead letters for the local healing benchmark.
        #[arg(long, default_value_t = 20_000)]
        healing_messages: usize,
        /// Messages per healer batch in the healing benchmark; several sizes separated by commas
        /// give one set of healing rows each (`--healing-only` uses the first).
        #[arg(long, value_delimiter = ',', default_values_t = [100, 500],
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: Vec<u32>,
        /// Batches healed at once in the healing benchmark, as `run --concurrency`; several
        /// values separated by commas give one set of healing rows each, for every batch size
        /// (`--healing-only` uses the first).
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2],
              value_parser = clap::value_parser!(u32).range(1..=64))]
        concurrency: Vec<u32>,
        /// Run only the healing benchmark and print its figures as JSON (used by `bench` itself,
        /// to measure the healer's peak memory in a process of its own).
        #[arg(long, hide = true)]
        healing_only: bool,
        /// With --healing-only: leave the benchmark's files for the caller to remove.
        #[arg(long, hide = true, requires = "healing_only")]
        leave_files: bool,
        /// The directory to heal in: the healing benchmark keeps its database and archive files
        /// in a directory of its own under this one, removed at the end. The current directory
        /// by default, where `run` keeps its database by default: the figures are those of that
        /// disk. A temporary directory may be in memory (tmpfs), where syncing files costs
        /// nothing; and on ext4 without a journal, creating files right after many were deleted
        /// nearby (a build, another benchmark) is slower for some minutes.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// Add the AWS rows: calls per DLQ message (by operation) and cost per million while the
        /// `run` loop drains a DLQ of the original's mix, at 100 and at 10 per batch, counted on
        /// an emulator: --endpoint-url, or a moto_server the benchmark starts from the PATH.
        #[arg(long)]
        aws: bool,
        /// Print only the AWS rows (implies --aws).
        #[arg(long)]
        aws_only: bool,
        /// Dead letters per AWS run.
        #[arg(long, default_value_t = 500)]
        aws_messages: usize,
        /// The emulator's endpoint for --aws; a moto_server is started when absent.
        #[arg(long, env = "AWS_ENDPOINT_URL")]
        endpoint_url: Option<String>,
    },
    /// Run the original scenario end to end and account for every order (local backend, or aws).
    ///
    /// Orders are produced, consumed by a consumer whose downstream fails the original's five ways
    /// (expired token, missing user, slow warehouse, corrupt JSON, payment gateway outage),
    /// dead-lettered with their context, then classified, re-queued, alerted on and archived by
    /// the healer. Time is simulated, so backoffs of minutes take milliseconds. Prints the three
    /// dashboard panels and `sent = processed + archived + still queued`; exits 1 if anything is
    /// unaccounted.
    Demo {
        /// Orders to produce.
        #[arg(long, default_value_t = 100)]
        orders: usize,
        /// Failure percentages, e.g. "auth=10,validation=10,timeout=10,bad_payload=10,dependency=10".
        #[arg(
            long,
            default_value = "auth=10,validation=10,timeout=10,bad_payload=10,dependency=10"
        )]
        mix: dlq_healer_demo::FailureMix,
        /// Random seed; the same seed gives the same run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Empty directory for the database and archive; a fresh temporary one when absent.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Messages per healer batch.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
        /// Rules file (TOML); the shipped defaults when absent.
        #[arg(long, env = "DLQ_HEALER_RULES")]
        rules: Option<PathBuf>,
        /// The backend: local (simulated time) or aws (real time; backoffs shortened to seconds).
        #[arg(long, value_enum, default_value = "local")]
        backend: run::Backend,
        /// Name prefix of the AWS resources the demo creates (aws backend).
        #[arg(long, default_value = "dlq-healer-demo")]
        prefix: String,
        #[command(flatten)]
        aws: aws::AwsArgs,
    },
    /// Heal a DLQ: poll, classify, re-queue, alert, archive; stop on SIGINT/SIGTERM after the batch in hand.
    ///
    /// On the local backend the DLQ is a queue name of the SQLite file; on aws it is an SQS queue
    /// URL, and the archive bucket, ledger table and alert topic come from ARCHIVE_BUCKET,
    /// FAILED_TABLE and ALERT_TOPIC_ARN (or the flags). Messages go back to the queue they came
    /// from (from their dlq-context, or the DLQ's redrive source), MAIN_QUEUE_URL being the fallback.
    Run {
        /// The backend.
        #[arg(long, value_enum, env = "DLQ_HEALER_BACKEND", default_value = "local")]
        backend: run::Backend,
        #[command(flatten)]
        local: LocalArgs,
        #[command(flatten)]
        aws: aws::AwsArgs,
        /// The DLQ to heal: a local queue name (or local://name), or an SQS queue URL.
        #[arg(long, env = "DLQ_URL")]
        dlq: String,
        /// Batches healed at once, each gathered and handled independently: while one waits on
        /// the disk or the network, another does its work. Each loop also receives its next batch
        /// while the one in hand heals, so up to twice this many batches are held in memory.
        #[arg(long, default_value_t = RUN_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..=64))]
        concurrency: u32,
        /// Where to re-queue messages whose source queue is unknown; on the local backend, when
        /// absent, the one queue that dead-letters into the DLQ (with several, none is guessed).
        #[arg(long, env = "MAIN_QUEUE_URL")]
        main_queue: Option<String>,
        /// Messages per engine batch (on SQS gathered from several receives of up to 10, without
        /// waiting for more once a receive comes back short; the local backend receives a whole
        /// batch in one transaction). Each batch writes one archive object per class, so larger
        /// batches heal faster (locally about 5 times as many messages per second at 100 as at
        /// 10) and make fewer AWS calls; a batch is held in memory, and redelivered whole if the
        /// process dies mid-batch.
        #[arg(long, default_value_t = RUN_BATCH_SIZE, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
        /// Drain the DLQ, then exit: 0 when every message was handled; 1 when one stayed in the
        /// DLQ, a signal stopped the drain first, or the DLQ could not be read (8 receives in a
        /// row failed, about a minute); 2 when it is missing or refused at start (for cron jobs
        /// and scripts).
        #[arg(long)]
        until_empty: bool,
        /// Long-poll wait for an empty DLQ, in seconds (0 to 20): 20 unless --until-empty, 1 with
        /// it (the drain ends at the first receive that waited this long for nothing). SIGINT and
        /// SIGTERM end the wait at once.
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=20))]
        wait_seconds: Option<u64>,
        /// Rules file (TOML); the shipped defaults when absent.
        #[arg(long, env = "DLQ_HEALER_RULES")]
        rules: Option<PathBuf>,
        /// Prefix of archive objects.
        #[arg(long, default_value = "archive")]
        archive_prefix: String,
        /// Slack-compatible webhook URL for alerts, http:// or https:// (refused at start otherwise);
        /// alerts always go to the log as well.
        #[arg(long, env = "ALERT_WEBHOOK_URL")]
        webhook_url: Option<String>,
        /// Seconds an alert fingerprint stays quiet after firing; repeats become one digest.
        #[arg(long, default_value_t = 600)]
        alert_window_seconds: u32,
        /// Local backend: days ledger records, sent alerts and metric minutes are kept (removed
        /// at start and hourly, in short transactions; archived messages are always kept); 0 keeps
        /// everything. [default: 90, as the AWS ledger's items, which DynamoDB's TTL removes]
        #[arg(long, env = "DLQ_HEALER_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(0..=MAX_RETENTION_DAYS))]
        retention_days: Option<u32>,
        /// Local backend: heal the queue even though it looks like a source queue rather than a
        /// DLQ (it dead-letters into a queue of its own and no queue dead-letters into it).
        /// Healing a live queue archives its messages as unknown failures, so `run` refuses it
        /// without this flag.
        #[arg(long)]
        allow_source_queue: bool,
    },
    /// Create what the healer needs on AWS (or an emulator), idempotently, and print one
    /// KEY=value line per environment variable: MAIN_QUEUE_URL, DLQ_URL, ARCHIVE_BUCKET,
    /// FAILED_TABLE, ALERT_TOPIC_ARN.
    ///
    /// Creates the main queue `<prefix>-orders` with a redrive policy to the DLQ `<prefix>-dlq`,
    /// the topic `<prefix>-alerts`, the bucket `<prefix>-archive` and the ledger table
    /// `<prefix>-ledger` with its class+time index. For users without SAM.
    Setup {
        /// The backend (only aws needs set-up; the local backend creates its file on first use).
        #[arg(long, value_enum)]
        backend: run::Backend,
        /// Name prefix of every resource.
        #[arg(long)]
        prefix: String,
        #[command(flatten)]
        aws: aws::AwsArgs,
    },
    /// Create, list and feed queues of the local backend.
    Queue {
        #[command(flatten)]
        local: LocalArgs,
        #[command(subcommand)]
        action: queue::QueueAction,
    },
    /// Print the shipped default rules file.
    DefaultRules,
    /// Peek at a DLQ without consuming it: failures grouped by class and fingerprint.
    Inspect(inspect::InspectArgs),
    /// Move selected messages from a DLQ back to their source queue (dry run, rate, resumable).
    ///
    /// Without a selection (--class, --fingerprint, --source, --since, --until, --key,
    /// --keys-file, --where) every message of the DLQ is moved: see it first with --dry-run.
    /// Exits 0 when every selected message was moved, 1 when one was not (its move failed, it
    /// has no target queue, or the run stopped early), 2 on a usage or configuration error.
    Redrive(redrive::RedriveArgs),
    /// List, show and replay archived messages.
    Archive(archive::ArchiveArgs),
    /// Print the three dashboard panels for any backend.
    Stats(stats::StatsArgs),
    /// Serve the web dashboard, its JSON API and Prometheus metrics.
    Serve(serve::ServeArgs),
}

/// Where the local backend keeps its state.
#[derive(Debug, Clone, clap::Args)]
struct LocalArgs {
    /// The SQLite file of the local backend (`queue create` creates it when missing; the other
    /// commands, `run` too, need an existing one).
    // Global, so that it may come after a subcommand too (`queue list --db FILE`).
    #[arg(
        long,
        global = true,
        env = "DLQ_HEALER_DB",
        default_value = "dlq-healer.db"
    )]
    db: PathBuf,
    /// Directory of archived messages; `<db name>-archive` beside the database when absent.
    #[arg(long, global = true, env = "DLQ_HEALER_ARCHIVE_DIR")]
    archive_dir: Option<PathBuf>,
}

impl LocalArgs {
    fn settings(
        &self,
        webhook_url: Option<String>,
        alert_window_seconds: u32,
    ) -> local::LocalSettings {
        local::LocalSettings {
            db: self.db.clone(),
            archive_dir: self
                .archive_dir
                .clone()
                .unwrap_or_else(|| local::default_archive_dir(&self.db)),
            webhook_url,
            alert_window: chrono::Duration::seconds(alert_window_seconds as i64),
        }
    }
}

#[global_allocator]
static ALLOCATOR: allocator::Mimalloc = allocator::Mimalloc;

fn main() {
    allocator::return_freed_memory_promptly();
    restore_default_sigpipe();
    keep_memory_in_small_pages();
    let command = <Cli as clap::CommandFactory>::command();
    // SAFETY: the start of main, before the runtime or any other thread exists.
    unsafe { config::unset_empty(&config::variables(&command)) };
    let from_file = match config::load_into_environment() {
        Ok(from_file) => from_file,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(2);
        }
    };
    // Parsed by a command built anew: clap takes the environment's values when it builds one,
    // and `command` was built before the empty variables were unset and the file was loaded.
    let cli = match <Cli as clap::Parser>::try_parse() {
        Ok(cli) => cli,
        Err(error) => match from_file.note_for(&error, &command) {
            Some(note) => {
                eprint!("{}", error.render());
                eprintln!("{note}");
                std::process::exit(2);
            }
            None => error.exit(),
        },
    };
    init_logging(&cli.log_level);
    match dispatch(cli.command) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(2);
        }
    }
}

/// Die quietly when the reader of our output goes away (`dlq-healer inspect | head`), as command
/// line tools do, instead of panicking on the broken pipe.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// mimalloc asks for transparent huge pages on the arenas it reserves, and then touching a few
/// bytes makes a whole 2 MiB page resident: the healer's peak RSS goes from 30 to 42 MiB at
/// batch 100 and from 34 to 66 MiB at batch 500, for no measurable speed (`bench`). Turning huge
/// pages off for this process keeps its memory in 4 KiB pages.
fn keep_memory_in_small_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this process; failure (an old
    // kernel) just leaves the default.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `filter` is a [`dlq_healer_core::log_level::log_filter`]. The HTTP client of the alert
/// webhook logs whole request URLs at debug level, and a webhook's URL is its credential: it is
/// held at info unless the filter names it.
fn init_logging(filter: &str) {
    let filter = if filter.contains("ureq") {
        filter.to_string()
    } else {
        format!("{filter},ureq=info")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Run a command; the exit code on success.
fn dispatch(command: Command) -> Result<i32> {
    match command {
        Command::Classify {
            rules,
            input,
            explain,
        } => {
            let rules = load_rules(rules.as_deref())?;
            let stdout = std::io::stdout().lock();
            match input {
                Some(path) => {
                    let file = std::fs::File::open(&path).with_context(|| {
                        format!("cannot open the input file {}", path.display())
                    })?;
                    classify::run(&rules, std::io::BufReader::new(file), stdout, explain)?
                }
                None => classify::run(&rules, std::io::stdin().lock(), stdout, explain)?,
            }
            Ok(0)
        }
        Command::Demo {
            orders,
            mix,
            seed,
            dir,
            batch_size,
            rules,
            backend,
            prefix,
            aws,
        } => {
            let options = demo::DemoOptions {
                orders,
                mix,
                seed,
                dir,
                batch_size: batch_size as usize,
                rules: std::sync::Arc::new(load_rules(rules.as_deref())?),
            };
            let accounting = match backend {
                run::Backend::Local => runtime()?.block_on(demo::run(options))?,
                run::Backend::Aws => runtime()?.block_on(aws_demo::run(options, &aws, &prefix))?,
            };
            Ok(if accounting.unaccounted() == 0 { 0 } else { 1 })
        }
        Command::Run {
            backend,
            local,
            aws,
            dlq,
            concurrency,
            main_queue,
            batch_size,
            until_empty,
            wait_seconds,
            rules,
            archive_prefix,
            webhook_url,
            alert_window_seconds,
            retention_days,
            allow_source_queue,
        } => {
            let options = run::RunOptions {
                backend,
                local: local.settings(webhook_url, alert_window_seconds),
                aws,
                dlq,
                concurrency: concurrency as usize,
                main_queue,
                batch_size: batch_size as usize,
                until_empty,
                wait: std::time::Duration::from_secs(wait_seconds.unwrap_or(if until_empty {
                    UNTIL_EMPTY_WAIT_SECONDS
                } else {
                    RUN_WAIT_SECONDS
                })),
                rules: std::sync::Arc::new(load_rules(rules.as_deref())?),
                rules_origin: rules.as_deref().map_or_else(
                    || "the shipped defaults".to_string(),
                    |path| path.display().to_string(),
                ),
                archive_prefix,
                retention: run::retention(backend, retention_days)?,
                source_queue_allowed: allow_source_queue,
            };
            let summary = runtime()?.block_on(run::run(options))?;
            Ok(
                if until_empty
                    && (summary.tally.failed > 0
                        || summary.gave_up
                        || summary.stopped_early
                        || summary.blocked_in_fifo_groups > 0)
                {
                    1
                } else {
                    0
                },
            )
        }
        Command::Setup {
            backend,
            prefix,
            aws,
        } => {
            if backend == run::Backend::Local {
                anyhow::bail!(
                    "the local backend needs no set-up: `dlq-healer queue create NAME` creates queues"
                );
            }
            let resources = runtime()?.block_on(async {
                let clients = aws::connect(&aws, None).await?;
                anyhow::Ok(dlq_healer_aws::provision(&clients, &prefix).await?)
            })?;
            for line in resources.env_lines() {
                println!("{line}");
            }
            Ok(0)
        }
        Command::Queue { local, action } => {
            runtime()?.block_on(queue::run(local.settings(None, 600), action))?;
            Ok(0)
        }
        Command::Bench {
            classify_messages,
            healing_messages,
            batch_size,
            concurrency,
            healing_only,
            leave_files,
            dir,
            aws,
            aws_only,
            aws_messages,
            endpoint_url,
        } => {
            if healing_only {
                let work = bench::BenchDir::create(&dir, !leave_files)?;
                let figures = bench::healing_figures(
                    work.path(),
                    healing_messages,
                    batch_size[0] as usize,
                    concurrency[0] as usize,
                )?;
                println!("{}", serde_json::to_string(&figures)?);
                return Ok(0);
            }
            if aws_only {
                println!("| benchmark | figure | target |");
                println!("| --- | --- | --- |");
            } else {
                let batch_sizes: Vec<usize> = batch_size.iter().map(|&b| b as usize).collect();
                let concurrencies: Vec<usize> = concurrency.iter().map(|&c| c as usize).collect();
                bench::run(
                    classify_messages,
                    healing_messages,
                    &batch_sizes,
                    &concurrencies,
                    &dir,
                )?;
            }
            if aws || aws_only {
                let args = aws::AwsArgs {
                    endpoint_url,
                    ..aws::AwsArgs::default()
                };
                let figures = aws_bench::run(&args, aws_messages, &[100, 10])?;
                aws_bench::print_rows(&figures);
            }
            Ok(0)
        }
        Command::DefaultRules => {
            print!("{}", dlq_healer_core::rules::DEFAULT_RULES_TOML);
            Ok(0)
        }
        Command::Inspect(args) => inspect::command(args),
        Command::Redrive(args) => redrive::command(args),
        Command::Archive(args) => archive::command(args),
        Command::Stats(args) => stats::command(args),
        Command::Serve(args) => serve::command(args),
    }
}

/// The noun for `count` of a thing: `one` for 1, else `many` ("1 batch", "0 batches").
fn noun<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}

/// The rules from a file, or the defaults.
fn load_rules(path: Option<&Path>) -> Result<RuleSet> {
    match path {
        None => Ok(RuleSet::defaults()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the rules file {}", path.display()))?;
            RuleSet::from_toml(&text, &path.display().to_string())
                .map_err(|e| anyhow::anyhow!("invalid rules: {e}"))
        }
    }
}
