//! The AWS API emulator for tests: `moto_server` on a free loopback port, started once per test
//! binary and stopped when the test process exits (its stdin pipe closes).

#![allow(dead_code)]

use dlq_healer_aws::{AwsClients, AwsSettings, CallCounter};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running emulator.
pub struct Emulator {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    _process: Child,
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();

/// The emulator of this test binary, started on first use.
pub fn emulator() -> &'static Emulator {
    EMULATOR.get_or_init(start)
}

fn start() -> Emulator {
    // SAFETY: runs once, inside OnceLock initialisation, before any SDK client of this test
    // binary exists; every test calls `emulator()` before it builds clients.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_ENDPOINT_URL");
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    // The shell keeps moto_server alive while our stdin pipe is open, and kills it when the
    // test process exits and the pipe closes.
    let script = format!(
        "moto_server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; echo started; cat >/dev/null; kill $m"
    );
    let mut process = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start moto_server: run scripts/test.sh, which installs it (pip install 'moto[server]')");
    let mut line = String::new();
    BufReader::new(process.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("moto_server wrapper output");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Emulator {
        endpoint: format!("http://127.0.0.1:{port}"),
        _process: process,
    }
}

/// Settings pointing at the emulator.
pub fn settings() -> AwsSettings {
    AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(emulator().endpoint.clone()),
    }
}

/// Clients on the emulator.
pub async fn clients() -> AwsClients {
    AwsClients::connect(&settings(), None).await
}

/// Clients on the emulator that count their calls.
pub async fn counted_clients() -> (AwsClients, CallCounter) {
    let counter = CallCounter::default();
    (
        AwsClients::connect(&settings(), Some(counter.clone())).await,
        counter,
    )
}

/// A name no other test uses: keeps the emulator's queues shallow and fresh per test.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}
