//! A local backend holding a known set of failures, built with the real binary: the demo's healed
//! and archived orders, plus unhealed dead letters in `orders-dlq` (3 auth of one fingerprint,
//! 2 timeouts of another).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dlq-healer"))
}

/// Run, asserting success.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("the binary runs");
    assert!(
        output.status.success(),
        "{command:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A built fixture.
pub struct Fixture {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The SQLite file.
    pub db: PathBuf,
    /// The archive directory.
    pub archive: PathBuf,
}

impl Fixture {
    /// `--db D --archive-dir A`.
    pub fn store_args(&self) -> Vec<String> {
        vec![
            "--db".into(),
            self.db.display().to_string(),
            "--archive-dir".into(),
            self.archive.display().to_string(),
        ]
    }

    /// The binary with a subcommand (and sub-subcommand) and the store flags.
    pub fn cmd(&self, words: &[&str]) -> Command {
        let mut command = bin();
        command.args(words).args(self.store_args());
        command
    }

    /// Send one dead letter with a context to orders-dlq.
    pub fn dead_letter(&self, body: &str, error_type: &str, message: &str, extra: &[&str]) {
        let context = format!(
            r#"{{"v":1,"error":{{"type":"{error_type}","message":"{message}"}},"source":"orders","failed_at":"2026-01-01T10:00:00Z"}}"#
        );
        let mut command = bin();
        command
            .args(["queue", "--db"])
            .arg(&self.db)
            .args(["send", "orders-dlq", "--body", body, "--attribute"])
            .arg(format!("dlq-context={context}"));
        for a in extra {
            command.args(["--attribute", a]);
        }
        run_ok(&mut command);
    }

    /// Heal orders-dlq until it is empty.
    pub fn heal(&self) {
        run_ok(&mut self.cmd(&[
            "run",
            "--dlq",
            "orders-dlq",
            "--until-empty",
            "--log-level",
            "error",
        ]));
    }

    /// The entries `archive list --json` gives with `flags`.
    pub fn archive_listing(&self, flags: &[&str]) -> Vec<serde_json::Value> {
        let output = run_ok(&mut self.cmd(&[&["archive", "list", "--json"], flags].concat()));
        let listing: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("archive list --json prints JSON");
        listing.as_array().expect("a JSON array").clone()
    }

    /// Depth of a queue as `queue list` prints it: (visible, in flight, delayed).
    pub fn depth(&self, queue: &str) -> (u64, u64, u64) {
        let output = run_ok(bin().args(["queue", "--db"]).arg(&self.db).arg("list"));
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(queue))
            .unwrap_or_else(|| panic!("no queue {queue} in\n{text}"));
        let n: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(3)
            .map(|w| w.parse().unwrap())
            .collect();
        (n[0], n[1], n[2])
    }
}

/// Build the fixture: demo with 60 orders (seed 3), then the unhealed dead letters.
pub fn build() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let demo = dir.path().join("demo");
    run_ok(
        bin()
            .args([
                "demo",
                "--orders",
                "60",
                "--seed",
                "3",
                "--log-level",
                "error",
                "--dir",
            ])
            .arg(&demo),
    );
    let fixture = Fixture {
        db: demo.join("demo.db"),
        archive: demo.join("archive"),
        dir,
    };
    for n in 1..=3 {
        fixture.dead_letter(
            &format!(r#"{{"order":{n},"tier":"gold"}}"#),
            "ExpiredTokenException",
            &format!("token expired for user {n}"),
            &[&format!("tenant=t{n}")],
        );
    }
    for n in 4..=5 {
        fixture.dead_letter(
            &format!(r#"{{"order":{n},"tier":"silver"}}"#),
            "TimeoutError",
            "Task timed out after 30.00 seconds",
            &[],
        );
    }
    fixture
}
