//! The operator commands on the local backend, driven as a user would: inspect, redrive and
//! archive with good and bad input. Bad input gets an error that names the thing and what to do,
//! and nothing moves.

mod operator_fixture;

use operator_fixture::{bin, build, run_ok};
use serde_json::Value;

fn fails_with(command: &mut std::process::Command, needles: &[&str]) {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{command:?}: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}

#[test]
fn inspect_groups_by_class_and_fingerprint_without_consuming() {
    let fixture = build();
    let output = run_ok(&mut fixture.cmd(&["inspect", "--dlq", "orders-dlq", "--json"]));
    let inspection: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspection["total"], 5);
    let classes = inspection["classes"].as_array().unwrap();
    let auth = classes.iter().find(|c| c["class"] == "auth").unwrap();
    assert_eq!(auth["count"], 3);
    assert_eq!(
        auth["groups"].as_array().unwrap().len(),
        1,
        "one fingerprint: numbers normalized"
    );
    assert_eq!(
        auth["groups"][0]["sample_keys"].as_array().unwrap().len(),
        3
    );
    assert!(auth["oldest_age_seconds"].as_i64().unwrap() > 0);
    let timeout = classes.iter().find(|c| c["class"] == "timeout").unwrap();
    assert_eq!(timeout["count"], 2);
    assert_eq!(
        fixture.depth("orders-dlq"),
        (5, 0, 0),
        "visible again at once"
    );
    // The filters of `redrive` narrow the view.
    let output = run_ok(&mut fixture.cmd(&[
        "inspect",
        "--dlq",
        "orders-dlq",
        "--class",
        "auth",
        "--json",
    ]));
    let narrowed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (narrowed["total"].as_u64(), narrowed["read"].as_u64()),
        (Some(3), Some(5))
    );
    assert_eq!(
        narrowed["classes"].as_array().unwrap().len(),
        1,
        "{narrowed}"
    );
    let text =
        run_ok(&mut fixture.cmd(&["inspect", "--dlq", "orders-dlq", "--where", "/tier=silver"]))
            .stdout;
    assert!(
        String::from_utf8_lossy(&text)
            .contains("DLQ orders-dlq: 2 messages selected by the filter, of the 5 in it"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    let text = run_ok(&mut fixture.cmd(&["inspect", "--dlq", "orders-dlq"])).stdout;
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("DLQ orders-dlq: 5 messages") && text.contains("ExpiredTokenException"),
        "{text}"
    );
    // Peeking reads without receiving: a DLQ with a DLQ of its own keeps its messages however
    // often it is inspected (a receive would count toward its max receive count).
    run_ok(&mut fixture.cmd(&["queue", "create", "last-resort"]));
    run_ok(&mut fixture.cmd(&[
        "queue",
        "create",
        "first-dlq",
        "--dlq",
        "last-resort",
        "--max-receive-count",
        "2",
    ]));
    run_ok(&mut fixture.cmd(&["queue", "send", "first-dlq", "--body", "{}"]));
    for _ in 0..3 {
        let text = run_ok(&mut fixture.cmd(&["inspect", "--dlq", "first-dlq"])).stdout;
        assert!(String::from_utf8_lossy(&text).contains("DLQ first-dlq: 1 message"));
    }
    assert_eq!(fixture.depth("first-dlq"), (1, 0, 0));
    assert_eq!(fixture.depth("last-resort"), (0, 0, 0));
    let text = run_ok(&mut fixture.cmd(&["inspect", "--dlq", "orders-dlq", "--limit", "1"])).stdout;
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains(
            "DLQ orders-dlq: the first 1 message (--limit, or 100,000 on SQS; it may hold more)"
        ),
        "{text}"
    );
}

#[test]
fn inspect_and_redrive_say_how_many_messages_are_in_flight_and_not_shown() {
    use dlq_healer_core::ports::MessageSource;
    let fixture = build();
    // A healer holds two: received, or parked until their retry is due.
    let store = dlq_healer_local::LocalStore::open(&fixture.db).unwrap();
    let dlq = store.queues().queue("orders-dlq").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let held = runtime
        .block_on(dlq.receive(2, std::time::Duration::ZERO))
        .unwrap();
    assert_eq!(held.len(), 2);
    let text = run_ok(&mut fixture.cmd(&["inspect", "--dlq", "orders-dlq"])).stdout;
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("DLQ orders-dlq: 3 messages\nand 2 in flight, not shown"),
        "{text}"
    );
    let output = run_ok(&mut fixture.cmd(&["inspect", "--dlq", "orders-dlq", "--json"]));
    let inspection: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspection["in_flight"], 2);
    let text = run_ok(&mut fixture.cmd(&["redrive", "--dlq", "orders-dlq", "--dry-run"])).stdout;
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("(3 looked at)") && text.contains("2 in flight, not looked at"),
        "{text}"
    );
}

#[test]
fn redrive_moves_the_selection_once_and_reruns_move_nothing() {
    let fixture = build();
    let receives = || -> i64 {
        rusqlite::Connection::open(&fixture.db)
            .unwrap()
            .query_row("SELECT sum(receive_count) FROM messages", [], |row| {
                row.get(0)
            })
            .unwrap()
    };
    let receives_before = receives();
    let dry = run_ok(&mut fixture.cmd(&[
        "redrive",
        "--dlq",
        "orders-dlq",
        "--class",
        "auth",
        "--where",
        "/tier=gold",
        "--dry-run",
        "--json",
    ]));
    let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["moved"].as_array().unwrap().len(), 3);
    assert_eq!(fixture.depth("orders-dlq").0, 5, "dry run moved nothing");
    assert_eq!(
        receives(),
        receives_before,
        "a dry run on the local backend reads without receiving"
    );
    let before = fixture.depth("orders").0;
    let done = run_ok(&mut fixture.cmd(&[
        "redrive",
        "--dlq",
        "orders-dlq",
        "--class",
        "auth",
        "--rate",
        "20",
        "--json",
    ]));
    let report: Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(report["moved"].as_array().unwrap().len(), 3);
    assert!(
        report["moved"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["target"] == "orders")
    );
    assert_eq!(fixture.depth("orders").0, before + 3);
    assert_eq!(fixture.depth("orders-dlq").0, 2);
    let again = run_ok(&mut fixture.cmd(&[
        "redrive",
        "--dlq",
        "orders-dlq",
        "--class",
        "auth",
        "--json",
    ]));
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["moved"].as_array().unwrap().len(), 0);
    assert_eq!(fixture.depth("orders").0, before + 3);
    // --key with a keys file, --to another queue.
    let inspection: Value = serde_json::from_slice(
        &run_ok(&mut fixture.cmd(&["inspect", "--dlq", "orders-dlq", "--json"])).stdout,
    )
    .unwrap();
    let key = inspection["classes"][0]["groups"][0]["sample_keys"][0]
        .as_str()
        .unwrap()
        .to_string();
    let keys_file = fixture.dir.path().join("keys.txt");
    std::fs::write(&keys_file, format!("# one key\n{key}\n")).unwrap();
    run_ok(
        operator_fixture::bin()
            .args(["queue", "--db"])
            .arg(&fixture.db)
            .args(["create", "side"]),
    );
    let keys_file = keys_file.display().to_string();
    let moved = run_ok(&mut fixture.cmd(&[
        "redrive",
        "--dlq",
        "orders-dlq",
        "--to",
        "side",
        "--keys-file",
        &keys_file,
    ]));
    assert!(String::from_utf8_lossy(&moved.stdout).contains("did redrive 1 of 1"));
    assert_eq!(fixture.depth("side").0, 1);
}

#[test]
fn bad_input_names_the_problem_and_moves_nothing() {
    let fixture = build();
    fails_with(
        &mut fixture.cmd(&["redrive", "--dlq", "orders-dlq", "--class", "authz"]),
        &["authz", "expected one of"],
    );
    fails_with(
        &mut fixture.cmd(&["redrive", "--dlq", "orders-dlq", "--where", "tier=gold"]),
        &["--where", "must start with '/'"],
    );
    fails_with(
        &mut fixture.cmd(&["redrive", "--dlq", "orders-dlq", "--since", "last tuesday"]),
        &["--since", "RFC 3339"],
    );
    fails_with(
        &mut fixture.cmd(&["redrive", "--dlq", "orders-dlq", "--fingerprint", "zz"]),
        &["--fingerprint", "hex"],
    );
    fails_with(
        &mut fixture.cmd(&["redrive", "--dlq", "orders-dlq", "--rate", "0"]),
        &["--rate"],
    );
    fails_with(
        &mut fixture.cmd(&["redrive", "--dlq", "no-such-dlq"]),
        &["no-such-dlq", "queue list"],
    );
    fails_with(
        &mut fixture.cmd(&["inspect", "--dlq", "no-such-dlq"]),
        &["no-such-dlq"],
    );
    fails_with(
        &mut fixture.cmd(&[
            "redrive",
            "--dlq",
            "orders-dlq",
            "--to",
            "no-such-queue",
            "--dry-run",
        ]),
        &[
            "--to no-such-queue",
            "queue \"no-such-queue\" does not exist in",
        ],
    );
    fails_with(
        &mut fixture.cmd(&["redrive", "--dlq", "orders-dlq", "--to", "orders-dlq"]),
        &["is the DLQ the messages are taken from"],
    );
    fails_with(
        &mut fixture.cmd(&[
            "archive",
            "replay",
            "--class",
            "auth",
            "--to",
            "no-such-queue",
        ]),
        &["--to no-such-queue"],
    );
    fails_with(
        operator_fixture::bin().args(["inspect", "--db", "/nonexistent/x.db", "--dlq", "q"]),
        &["/nonexistent/x.db", "--db"],
    );
    // An empty file (a typo'd path touched by something else) is not taken for a store and
    // written into.
    let empty = fixture.dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let empty_arg = empty.display().to_string();
    fails_with(
        operator_fixture::bin().args(["stats", "--db", &empty_arg]),
        &["is empty", "--db"],
    );
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "nothing written"
    );
    assert_eq!(fixture.depth("orders-dlq").0, 5);

    // A corrupt archive record: show names it; replay of its class moves nothing at all.
    let listing: Value = serde_json::from_slice(
        &run_ok(&mut fixture.cmd(&["archive", "list", "--json", "--class", "validation"])).stdout,
    )
    .unwrap();
    let key = damage_archived_record(&fixture, &listing[0]["entry"]);
    let key = key.as_str();
    // The list goes on past the damaged record: the rest of the archive, and the damaged entry
    // marked, with the reason on standard error.
    let everything = run_ok(&mut fixture.cmd(&["archive", "list"]));
    let table = String::from_utf8_lossy(&everything.stdout);
    let damaged_row = table
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no row for {key}: {table}"));
    assert!(damaged_row.contains("(unreadable)"), "{table}");
    let readable = table
        .lines()
        .skip(1)
        .filter(|l| !l.contains("(unreadable)") && !l.contains("archived messages"))
        .filter(|l| !l.contains("cannot be read"))
        .count();
    assert!(readable > 1, "the other records are listed: {table}");
    assert!(
        table.contains("1 more whose archived records cannot be read (the first:"),
        "{table}"
    );
    assert!(
        String::from_utf8_lossy(&everything.stderr).contains(key),
        "the damaged one is named on standard error"
    );
    fails_with(
        &mut fixture.cmd(&["archive", "show", key]),
        &[key, "not a valid archive record", "restore"],
    );
    let before = fixture.depth("orders").0;
    fails_with(
        &mut fixture.cmd(&["archive", "replay", "--class", "validation"]),
        &[key],
    );
    assert_eq!(fixture.depth("orders").0, before, "nothing replayed");
    fails_with(
        &mut fixture.cmd(&["archive", "show", "no-such-key"]),
        &["no-such-key", "archive list"],
    );
    fails_with(
        &mut fixture.cmd(&["archive", "replay"]),
        &["needs a filter"],
    );
}

/// Overwrite the archived record of a listed `entry` with a truncated line; its key.
fn damage_archived_record(fixture: &operator_fixture::Fixture, entry: &Value) -> String {
    let (object, line) = entry["reference"]
        .as_str()
        .unwrap()
        .rsplit_once('#')
        .unwrap();
    let path = fixture.archive.join(object);
    let text = std::fs::read_to_string(&path).unwrap();
    let line: usize = line.parse().unwrap();
    let damaged: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                "{\"key\": truncated".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&path, damaged.join("\n") + "\n").unwrap();
    entry["key"].as_str().unwrap().to_string()
}

#[test]
fn a_record_is_shown_and_replayed_only_under_its_own_key_when_its_file_was_reordered() {
    let fixture = build();
    let entries = fixture.archive_listing(&["--limit", "0"]);
    let place = |entry: &Value| {
        let (object, line) = entry["entry"]["reference"]
            .as_str()
            .unwrap()
            .rsplit_once('#')
            .unwrap();
        (object.to_string(), line.parse::<usize>().unwrap())
    };
    // An archive file of two records or more, its first two lines swapped.
    let (object, _) = entries
        .iter()
        .map(place)
        .find(|(_, line)| *line == 2)
        .expect("a file of two records");
    let key_at = |wanted: usize| {
        entries
            .iter()
            .find(|e| place(e) == (object.clone(), wanted))
            .map(|e| e["entry"]["key"].as_str().unwrap().to_string())
            .unwrap()
    };
    let (first, second) = (key_at(1), key_at(2));
    let path = fixture.archive.join(&object);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(0, 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    fails_with(
        &mut fixture.cmd(&["archive", "show", &first]),
        &[&format!("holds the key {second}"), &format!("not {first}")],
    );
    fails_with(
        &mut fixture.cmd(&["archive", "replay", "--key", &first, "--dry-run"]),
        &[&format!("holds the key {second}")],
    );
}

/// In WAL a reader does not wait for a writer: the read-only commands answer while another
/// process holds a write transaction (they waited 5 s for it and failed, naming the schema).
#[test]
fn read_only_commands_answer_while_another_process_holds_a_write() {
    let fixture = build();
    let holder = rusqlite::Connection::open(&fixture.db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    for words in [
        &["stats"][..],
        &["queue", "list"],
        &["inspect", "--dlq", "orders-dlq"],
        &["archive", "list"],
        &["redrive", "--dlq", "orders-dlq", "--dry-run"],
    ] {
        let output = fixture.cmd(words).output().unwrap();
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "{words:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    holder.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn a_replay_with_a_limit_reads_the_archive_only_as_far_as_its_limit() {
    let fixture = build();
    let entries = fixture.archive_listing(&["--class", "auth"]);
    assert!(entries.len() >= 3, "{entries:?}");
    // The oldest record is damaged: a replay that stops before it moves; one that reaches it
    // moves nothing.
    let damaged = damage_archived_record(&fixture, &entries[entries.len() - 1]["entry"]);
    let before = fixture.depth("orders").0;
    let replay = |limit: &str| {
        run_ok(&mut fixture.cmd(&["archive", "replay", "--class", "auth", "--limit", limit]))
    };
    // Records replayed already do not count against the limit: each run moves the next.
    for (run, entry) in entries[..2].iter().enumerate() {
        let report = replay("1");
        let key = entry["entry"]["key"].as_str().unwrap();
        assert!(
            String::from_utf8_lossy(&report.stdout).contains(key),
            "run {run} replays {key}: {}",
            String::from_utf8_lossy(&report.stdout)
        );
        assert_eq!(fixture.depth("orders").0, before + run as u64 + 1);
    }
    fails_with(
        &mut fixture.cmd(&["archive", "replay", "--class", "auth"]),
        &[&damaged],
    );
    assert_eq!(
        fixture.depth("orders").0,
        before + 2,
        "nothing more replayed"
    );
}

#[test]
fn archive_lists_shows_and_replays_once() {
    let fixture = build();
    let entries = fixture.archive_listing(&["--class", "auth"]);
    assert!(entries.len() > 1, "{entries:?}");
    assert!(entries.iter().all(|e| e["entry"]["class"] == "auth"));
    // A listing cut by --limit says so; --limit 0 lists all.
    let footer = |limit: &str, filter: &[&str]| {
        let output = run_ok(
            &mut fixture.cmd(&[&["archive", "list", "--limit", limit][..], filter].concat()),
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    // The index counts what a class and times select; a source needs each record.
    assert_eq!(
        footer("1", &["--class", "auth"]),
        format!(
            "the newest 1 of {} archived messages (--limit 1; --limit 0 lists all)",
            entries.len()
        )
    );
    assert_eq!(
        footer("1", &["--class", "auth", "--source", "orders"]),
        "the newest 1 archived message (--limit 1; there may be more: --limit 0 lists all)"
    );
    assert_eq!(
        footer("0", &["--class", "auth"]),
        format!("{} archived messages", entries.len())
    );
    let key = entries[0]["entry"]["key"].as_str().unwrap();
    let record: Value =
        serde_json::from_slice(&run_ok(&mut fixture.cmd(&["archive", "show", key])).stdout)
            .unwrap();
    assert_eq!(record["key"], key);
    assert!(record["body"].is_string());
    fails_with(
        &mut fixture.cmd(&["archive", "show", key, "--attempt", "99"]),
        &["has no archived attempt 99; its archived attempts:"],
    );
    let before = fixture.depth("orders").0;
    let dry = run_ok(&mut fixture.cmd(&["archive", "replay", "--key", key, "--dry-run"]));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would replay 1 of 1"));
    assert_eq!(fixture.depth("orders").0, before);
    run_ok(&mut fixture.cmd(&["archive", "replay", "--key", key, "--rate", "5"]));
    run_ok(&mut fixture.cmd(&["archive", "replay", "--key", key]));
    assert_eq!(fixture.depth("orders").0, before + 1, "replayed once");
    // The listing tells the replayed record from the others.
    let listing: Value = serde_json::from_slice(
        &run_ok(&mut fixture.cmd(&["archive", "list", "--json", "--class", "auth"])).stdout,
    )
    .unwrap();
    for entry in listing.as_array().unwrap() {
        let replayed = entry["entry"]["key"] == key;
        assert_eq!(entry["replayed"], replayed, "{listing}");
    }
    let table = run_ok(&mut fixture.cmd(&["archive", "list", "--class", "auth"])).stdout;
    let table = String::from_utf8_lossy(&table);
    let marked: Vec<&str> = table
        .lines()
        .filter(|l| l.ends_with("(replayed)"))
        .collect();
    assert!(marked.len() == 1 && marked[0].starts_with(key), "{table}");
    let stats: Value =
        serde_json::from_slice(&run_ok(&mut fixture.cmd(&["stats", "--json"])).stdout).unwrap();
    assert!(
        stats["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["queue"] == "orders-dlq" && q["visible"] == 5)
    );
}

#[test]
fn a_message_that_does_not_say_its_source_goes_back_only_to_the_one_queue_dead_lettering_there() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let queue = |args: &[&str]| {
        run_ok(bin().args(["queue", "--db"]).arg(&db).args(args));
    };
    for dlq in ["shared-dlq", "own-dlq"] {
        queue(&["create", dlq]);
    }
    for (source, dlq) in [
        ("zeta", "shared-dlq"),
        ("alpha", "shared-dlq"),
        ("single", "own-dlq"),
    ] {
        queue(&["create", source, "--dlq", dlq, "--max-receive-count", "3"]);
    }
    for dlq in ["shared-dlq", "own-dlq"] {
        queue(&["send", dlq, "--body", "{\"order\":1}"]);
    }
    // Exit code and report of a dry run on `dlq`.
    let dry_run = |dlq: &str| -> (Option<i32>, Value) {
        let output = bin()
            .args(["redrive", "--db"])
            .arg(&db)
            .args(["--dlq", dlq, "--dry-run", "--json"])
            .output()
            .unwrap();
        let report = serde_json::from_slice(&output.stdout).unwrap();
        (output.status.code(), report)
    };
    let (code, shared) = dry_run("shared-dlq");
    assert_eq!(shared["moved"].as_array().unwrap().len(), 0, "{shared}");
    assert_eq!(shared["no_target"].as_array().unwrap().len(), 1, "{shared}");
    assert_eq!(
        code,
        Some(1),
        "a message left for want of a target is not a success"
    );
    let (code, own) = dry_run("own-dlq");
    assert_eq!(own["moved"][0]["target"], "single", "{own}");
    assert_eq!(code, Some(0), "{own}");
    // A dry run says which moves would fail for want of their queue, as the real run would.
    queue(&[
        "send",
        "own-dlq",
        "--body",
        "{\"order\":2}",
        "--attribute",
        r#"dlq-context={"v":1,"error":{"message":"503"},"source":"gone","failed_at":"2026-01-01T10:00:00Z"}"#,
    ]);
    // The failure of a queue URL with credentials in it names the queue without them.
    queue(&[
        "send",
        "own-dlq",
        "--body",
        "{\"order\":3}",
        "--attribute",
        r#"dlq-context={"v":1,"error":{"message":"503"},"source":"https://app:pw1234@sqs.example/q","failed_at":"2026-01-01T10:00:00Z"}"#,
    ]);
    let output = bin()
        .args(["redrive", "--db"])
        .arg(&db)
        .args(["--dlq", "own-dlq", "--dry-run", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["moved"].as_array().unwrap().len(), 1, "{report}");
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{report}");
    assert!(
        failed.iter().any(|f| f
            .as_str()
            .unwrap()
            .contains("-> gone: queue \"gone\" does not exist")),
        "{report}"
    );
    assert!(!report.to_string().contains("pw1234"), "{report}");
}

#[test]
fn an_archived_message_keeps_the_fingerprint_that_inspect_and_its_alert_gave_it() {
    let fixture = build();
    run_ok(&mut fixture.cmd(&["queue", "purge", "orders-dlq", "--yes"]));
    // An error type that the message starts with, and a truncated context: texts the archive
    // once told differently.
    let letters = [
        serde_json::json!({
            "body": "{\"order\":1}",
            "attributes": {"dlq-context": serde_json::json!({
                "v": 1,
                "error": {"type": "E", "message": "ExpiredTokenException: token expired"},
                "source": "orders",
                "failed_at": "2026-01-01T10:00:00Z"
            }).to_string()}
        }),
        serde_json::json!({
            "body": "{\"order\": 2",
            "attributes": {"dlq-context": "{\"v\":1,\"error\":{"}
        }),
    ];
    let file = fixture.dir.path().join("letters.jsonl");
    let lines: Vec<String> = letters.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    run_ok(&mut fixture.cmd(&["queue", "load", "orders-dlq", file.to_str().unwrap()]));

    let inspection: Value = serde_json::from_slice(
        &run_ok(&mut fixture.cmd(&["inspect", "--dlq", "orders-dlq", "--json"])).stdout,
    )
    .unwrap();
    let mut inspected: Vec<(String, String)> = inspection["classes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|class| class["groups"].as_array().unwrap().clone())
        .map(|group| {
            (
                group["fingerprint"].as_str().unwrap().to_string(),
                group["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    inspected.sort();
    assert_eq!(inspected.len(), 2, "{inspection}");

    fixture.heal();
    let mut archived: Vec<(String, String)> = fixture
        .archive_listing(&["--since", "1h", "--limit", "0"])
        .iter()
        .map(|e| {
            (
                e["fingerprint"].as_str().unwrap().to_string(),
                e["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    archived.sort();
    assert_eq!(archived, inspected);
    // One with no target queue would stay where it is: exit 1, as the real replay.
    for (fingerprint, _) in &inspected {
        let dry_run = fixture
            .cmd(&[
                "archive",
                "replay",
                "--fingerprint",
                fingerprint,
                "--dry-run",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&dry_run.stdout);
        assert!(text.contains("of 1 selected"), "{fingerprint}: {text}");
        let has_target = text.contains("; 0 without a target queue");
        assert_eq!(
            dry_run.status.code(),
            Some(i32::from(!has_target)),
            "{text}"
        );
    }
}

#[test]
fn archive_prune_removes_what_is_older_than_its_age_and_only_when_told_yes() {
    let fixture = build();
    // The demo archived on its simulated clock, a week ago; these are archived now.
    fixture.heal();
    let archived = |filter: &[&str]| fixture.archive_listing(&[&["--limit", "0"], filter].concat());
    let files = || {
        walk_files(&fixture.archive)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .count()
    };
    let prune = |args: &[&str]| -> Value {
        let output = run_ok(&mut fixture.cmd(&[&["archive", "prune", "--json"], args].concat()));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let all = archived(&[]).len();
    let auth = archived(&["--class", "auth"]).len();
    let files_before = files();
    assert!(
        auth > 0 && all > auth && files_before > 1,
        "{all} {auth} {files_before}"
    );

    fails_with(
        &mut fixture.cmd(&["archive", "prune", "--older-than", "0s"]),
        &["--yes", "--dry-run"],
    );
    assert_eq!(prune(&["--older-than", "36500d", "--yes"])["records"], 0);
    // An age that falls in the widest gap between two archive times selects the records before
    // it.
    let mut times: Vec<chrono::DateTime<chrono::Utc>> = archived(&[])
        .iter()
        .map(|e| e["entry"]["archived_at"].as_str().unwrap().parse().unwrap())
        .collect();
    times.sort();
    let (gap, after) = times
        .windows(2)
        .map(|pair| (pair[1] - pair[0], pair[0]))
        .max()
        .unwrap();
    assert!(gap > chrono::Duration::seconds(10), "{times:?}");
    let cutoff = after + gap / 2;
    let older = times.iter().filter(|&&at| at < cutoff).count();
    let age = format!("{}s", (chrono::Utc::now() - cutoff).num_seconds());
    assert_eq!(
        prune(&["--older-than", &age, "--dry-run"])["records"],
        older as u64,
        "{times:?} before {cutoff}"
    );
    let dry_run = prune(&["--older-than", "0s", "--dry-run"]);
    assert_eq!(dry_run["records"], all as u64, "{dry_run}");
    assert_eq!(dry_run["objects"], files_before as u64, "{dry_run}");
    assert_eq!(
        (archived(&[]).len(), files()),
        (all, files_before),
        "a dry run removes nothing"
    );

    let pruned = prune(&["--older-than", "0s", "--class", "auth", "--yes"]);
    assert_eq!(pruned["records"], auth as u64, "{pruned}");
    assert!(archived(&["--class", "auth"]).is_empty());
    let left = archived(&[]);
    assert_eq!(left.len(), all - auth);
    assert_eq!(
        files(),
        files_before - pruned["objects"].as_u64().unwrap() as usize
    );
    // Every record left is still readable: no index line points to a removed file.
    let table = String::from_utf8_lossy(
        &run_ok(&mut fixture.cmd(&["archive", "list", "--limit", "0"])).stdout,
    )
    .into_owned();
    assert!(!table.contains("(unreadable)"), "{table}");
}

/// Every file under `dir`, at any depth.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}
