//! Cold start of the healer's Lambda bootstrap, as benchmark rows beside their targets (the table of
//! `dlq-healer bench`): the time from spawning the process to its first
//! `GET /2018-06-01/runtime/invocation/next` — logging set up, environment read, rules compiled,
//! the SQS, S3, DynamoDB and SNS clients built, the runtime ready for its first event — and the
//! size of the stripped binary.
//!
//! The binary measured is the one that ships: the healer built with the `release-lambda` profile
//! (fat LTO, one codegen unit, opt-level "s", stripped) by `cargo lambda build`, as
//! `scripts/build-lambdas.sh` builds it (`$CARGO_TARGET_DIR/lambda/healer/bootstrap`); without
//! cargo-lambda, by plain cargo with the same profile (`$CARGO_TARGET_DIR/release-lambda/healer`).
//! The build runs first, so the figures are those of the current sources; when they changed it
//! takes minutes (fat LTO of the AWS SDK). `--no-build` measures the last build as it is.
//!
//! Each run spawns the bootstrap with a clean Lambda-like environment (function name, version and
//! memory, the healer's variables with dummy values, dummy credentials and region, no AWS profile
//! files), so building the clients makes no network call; a minimal Runtime API on 127.0.0.1
//! notes when the first `next` request arrives, and the process is then killed.
//!
//! Usage: `cargo run -p dlq-healer-lambda --example coldstart [-- --runs 20] [--no-build]
//! [--binary PATH]` (the harness's own build profile does not matter: the measured binary is
//! separate).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The profile of the shipped bootstraps (workspace `Cargo.toml`).
const PROFILE: &str = "release-lambda";
/// The targets.
const COLD_START_TARGET_MS: f64 = 25.0;
const SIZE_TARGET_BYTES: u64 = 12_000_000;
/// A run that is not ready within this is a failure.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);
/// The system CA bundles (Debian, Amazon Linux).
const CA_BUNDLES: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];
const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";

struct Options {
    runs: usize,
    binary: Option<PathBuf>,
    no_build: bool,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        runs: 20,
        binary: None,
        no_build: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                options.runs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--runs needs a positive count")?;
            }
            "--binary" => options.binary = Some(args.next().ok_or("--binary needs a path")?.into()),
            "--no-build" => options.no_build = true,
            other => return Err(format!("unknown argument {other:?}; see the file's header")),
        }
    }
    Ok(options)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn has_cargo_lambda(cargo: &str) -> bool {
    Command::new(cargo)
        .args(["lambda", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Build the healer with the Lambda profile — with cargo-lambda when installed, as
/// `scripts/build-lambdas.sh` does, else with plain cargo — unless `no_build`; the binary and how
/// it was built.
fn build(no_build: bool) -> Result<(PathBuf, String), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let with_cargo_lambda = has_cargo_lambda(&cargo);
    let (binary, tool) = if with_cargo_lambda {
        (
            target_dir().join("lambda/healer/bootstrap"),
            "cargo lambda build",
        )
    } else {
        (target_dir().join(PROFILE).join("healer"), "cargo build")
    };
    let how = format!("profile {PROFILE}, {tool}");
    if no_build {
        return Ok((binary, format!("{how}, as last built")));
    }
    let mut command = Command::new(&cargo);
    command
        .args(if with_cargo_lambda {
            &["lambda", "build"][..]
        } else {
            &["build"][..]
        })
        .args([
            "--profile",
            PROFILE,
            "-p",
            "dlq-healer-lambda",
            "--bin",
            "healer",
        ])
        .current_dir(workspace_root());
    eprintln!("building the healer ({how}; minutes when the sources changed): {command:?}");
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("the build failed ({status})"));
    }
    Ok((binary, how))
}

/// Whether the ELF file has a symbol table or debug info (a stripped binary has neither).
fn has_symbols(path: &Path) -> Result<bool, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let u16_at = |at: usize| {
        data.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    let u64_at = |at: usize| {
        data.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    if data.get(..5) != Some(b"\x7fELF\x02") || data.get(5) != Some(&1) {
        return Err(format!(
            "{} is not a little-endian ELF64 file",
            path.display()
        ));
    }
    let bad = || format!("{}: malformed section headers", path.display());
    let (offset, size, count, names) = (
        u64_at(0x28).ok_or_else(bad)?,
        u16_at(0x3A).ok_or_else(bad)?,
        u16_at(0x3C).ok_or_else(bad)?,
        u16_at(0x3E).ok_or_else(bad)?,
    );
    let header = |i: usize| offset + i * size;
    let names_offset = u64_at(header(names) + 0x18).ok_or_else(bad)?;
    for i in 0..count {
        let name_at = names_offset + u32_at(header(i)).ok_or_else(bad)?;
        let name = data.get(name_at..).ok_or_else(bad)?;
        let name = &name[..name.iter().position(|&b| b == 0).ok_or_else(bad)?];
        if name == b".symtab" || name.starts_with(b".debug_") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An empty directory for `HOME`.
fn empty_home() -> PathBuf {
    let home = std::env::temp_dir().join(format!("coldstart-home-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&home);
    home
}

/// The environment Lambda gives the healer (template.yaml's variables, dummy values), with
/// dummy credentials and no AWS profile files.
fn lambda_env(runtime_api: &str) -> Vec<(&'static str, String)> {
    let account = "123456789012";
    let queue = |name: &str| format!("https://sqs.us-east-1.amazonaws.com/{account}/{name}");
    vec![
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
        ("LANG", "en_US.UTF-8".into()),
        ("TZ", ":UTC".into()),
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.into()),
        ("AWS_LAMBDA_FUNCTION_NAME", "dlq-healer-healer".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/dlq-healer-healer".into(),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2024/01/01/[$LATEST]0".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDCOLDSTARTBENCH00".into()),
        ("AWS_SECRET_ACCESS_KEY", "cold-start-bench-secret".into()),
        ("AWS_SESSION_TOKEN", "cold-start-bench-token".into()),
        // No ~/.aws profile files, as on Lambda.
        ("HOME", empty_home().display().to_string()),
        ("MAIN_QUEUE_URL", queue("dlq-healer-main-queue")),
        ("DLQ_URL", queue("dlq-healer-dlq")),
        ("ARCHIVE_BUCKET", "dlq-healer-archive".into()),
        ("FAILED_TABLE", "dlq-healer-ledger".into()),
        (
            "ALERT_TOPIC_ARN",
            format!("arn:aws:sns:us-east-1:{account}:dlq-healer-alerts"),
        ),
        ("ALERT_WINDOW_SECONDS", "600".into()),
        ("LOG_LEVEL", "INFO".into()),
    ]
}

/// The request line of each connection to the Runtime API, with the time it arrived. The
/// connection is held open (no response) until the next one is accepted: the bootstrap waits.
fn serve(listener: TcpListener, arrivals: mpsc::Sender<(Instant, String)>) {
    let mut held = None;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let arrived = Instant::now();
        if arrivals
            .send((arrived, line.trim_end().to_string()))
            .is_err()
        {
            return;
        }
        if !line.contains(NEXT_PATH) {
            // Anything else (an init error) gets a 202, so the bootstrap can go on and exit.
            let mut rest = vec![0u8; 64 * 1024];
            let _ = reader
                .get_mut()
                .set_read_timeout(Some(Duration::from_millis(50)));
            let _ = reader.read(&mut rest);
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
        }
        held = Some(reader);
    }
    drop(held);
}

/// Milliseconds from spawn to the first `next`, or why the run failed.
fn cold_start(
    binary: &Path,
    runtime_api: &str,
    extra_env: &[(&str, &Path)],
    arrivals: &mpsc::Receiver<(Instant, String)>,
    stderr_file: &Path,
) -> Result<f64, String> {
    while arrivals.try_recv().is_ok() {}
    let stderr = std::fs::File::create(stderr_file).map_err(|e| e.to_string())?;
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(lambda_env(runtime_api))
        .envs(extra_env.iter().copied())
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let spawned = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let outcome = loop {
        match arrivals.recv_timeout(Duration::from_millis(5)) {
            Ok((arrived, line)) if line.starts_with("GET ") && line.contains(NEXT_PATH) => {
                break Ok(arrived.duration_since(spawned).as_secs_f64() * 1e3);
            }
            Ok((_, line)) => break Err(format!("the bootstrap sent {line:?} before `next`")),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    break Err(format!("the bootstrap exited ({status}) before `next`"));
                }
                if spawned.elapsed() > RUN_TIMEOUT {
                    break Err(format!("no `next` within {RUN_TIMEOUT:?}"));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err("the Runtime API stopped".into());
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome.map_err(|why| {
        let log = std::fs::read_to_string(stderr_file).unwrap_or_default();
        format!("{why}; its stderr:\n{log}")
    })
}

/// Milliseconds from spawn to exit when init fails on a missing variable, before any SDK client
/// is built: the floor of process start, logging and the runtime's own setup.
fn failing_init(binary: &Path, runtime_api: &str) -> Result<f64, String> {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(
            lambda_env(runtime_api)
                .into_iter()
                .filter(|(name, _)| *name != "MAIN_QUEUE_URL"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let spawned = Instant::now();
    let status = command.status().map_err(|e| e.to_string())?;
    let elapsed = spawned.elapsed().as_secs_f64() * 1e3;
    if status.success() {
        return Err("the bootstrap started without MAIN_QUEUE_URL".into());
    }
    Ok(elapsed)
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let head = digits.len() % 3;
    let mut groups: Vec<&str> = vec![&digits[..head]];
    groups.extend(
        digits.as_bytes()[head..]
            .chunks(3)
            .map(|g| std::str::from_utf8(g).expect("ASCII digits")),
    );
    groups.retain(|g| !g.is_empty());
    groups.join(",")
}

fn run() -> Result<(), String> {
    let options = options()?;
    let (binary, how) = match options.binary {
        Some(path) => (path, "given binary".to_string()),
        None => build(options.no_build)?,
    };
    if !binary.is_file() {
        return Err(format!("no binary at {}", binary.display()));
    }
    let size = std::fs::metadata(&binary)
        .map_err(|e| format!("{}: {e}", binary.display()))?
        .len();
    let stripped = !has_symbols(&binary)?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let runtime_api = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let (sender, arrivals) = mpsc::channel();
    std::thread::spawn(move || serve(listener, sender));
    let stderr_file = std::env::temp_dir().join(format!("coldstart-{}.log", std::process::id()));

    eprintln!(
        "measuring {} ({} runs; load average {})",
        binary.display(),
        options.runs,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    // One unmeasured run pages the binary in, as a warm host's page cache would have it.
    cold_start(&binary, &runtime_api, &[], &arrivals, &stderr_file)?;
    let mut times = Vec::with_capacity(options.runs);
    for _ in 0..options.runs {
        times.push(cold_start(
            &binary,
            &runtime_api,
            &[],
            &arrivals,
            &stderr_file,
        )?);
    }
    // The same, with the CA store read from its one PEM bundle (`SSL_CERT_FILE`) instead of the
    // bundle and the directory of per-certificate files the TLS setup finds on its own.
    let bundle = CA_BUNDLES.iter().map(Path::new).find(|p| p.is_file());
    let mut bundle_only = Vec::new();
    if let Some(bundle) = bundle {
        for _ in 0..options.runs {
            let env = [("SSL_CERT_FILE", bundle)];
            bundle_only.push(cold_start(
                &binary,
                &runtime_api,
                &env,
                &arrivals,
                &stderr_file,
            )?);
        }
    }
    let mut floor = Vec::with_capacity(options.runs);
    for _ in 0..options.runs {
        floor.push(failing_init(&binary, &runtime_api)?);
    }
    let _ = std::fs::remove_file(&stderr_file);
    let _ = std::fs::remove_dir_all(empty_home());
    times.sort_by(f64::total_cmp);
    floor.sort_by(f64::total_cmp);
    bundle_only.sort_by(f64::total_cmp);
    let (median, p90) = (percentile(&times, 50.0), percentile(&times, 90.0));
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };

    let runs = options.runs;
    println!("| benchmark | figure | target |");
    println!("| --- | --- | --- |");
    println!(
        "| Lambda cold start of the healer: spawn to first `next` (SDK clients built), median of {runs} | {median:.1} ms | < {COLD_START_TARGET_MS} ms ({}) |",
        verdict(median < COLD_START_TARGET_MS)
    );
    println!(
        "| Lambda cold start of the healer, p90 of {runs} (min {:.1}, max {:.1}) | {p90:.1} ms | < {COLD_START_TARGET_MS} ms ({}) |",
        times[0],
        times[times.len() - 1],
        verdict(p90 < COLD_START_TARGET_MS)
    );
    if let Some(bundle) = bundle {
        println!(
            "| reference: the same with the CA store read from {} alone (SSL_CERT_FILE), median / p90 | {:.1} / {:.1} ms | (reference) |",
            bundle.display(),
            percentile(&bundle_only, 50.0),
            percentile(&bundle_only, 90.0)
        );
    }
    println!(
        "| reference: spawn to exit when init fails before the SDK clients, median of {runs} | {:.1} ms | (reference) |",
        percentile(&floor, 50.0)
    );
    println!(
        "| healer bootstrap size, {} ({how}) | {} B ({:.2} MB) | < 12 MB ({}) |",
        if stripped { "stripped" } else { "NOT stripped" },
        thousands(size),
        size as f64 / 1e6,
        verdict(stripped && size < SIZE_TARGET_BYTES)
    );
    eprintln!(
        "binary: {} (modified {:?} ago)",
        binary.display(),
        std::fs::metadata(&binary)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.elapsed().ok())
            .map(|d| Duration::from_secs(d.as_secs()))
            .unwrap_or_default()
    );
    Ok(())
}

fn main() {
    if let Err(error) = run() {
        eprintln!("coldstart: {error}");
        std::process::exit(1);
    }
}
