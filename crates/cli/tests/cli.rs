//! The `dlq-healer` binary driven as a user would: real processes, real files.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use tempfile::TempDir;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dlq-healer"))
}

/// A fresh directory, removed with everything in it when the test is done.
fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("dlq-healer-cli-{name}-"))
        .tempdir()
        .unwrap()
}

fn run_ok(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Run `command`, which must fail with exit code 2 (a refused input); its standard error.
fn refused(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{command:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn demo_accounts_for_every_order_and_is_deterministic() {
    // The demo's default directory goes under the temporary directory, here one of the test's.
    let tmp = scratch("demo-tmp");
    let a = run_ok(
        bin()
            .env("TMPDIR", tmp.path())
            .args(["demo", "--orders", "120", "--seed", "5"]),
    );
    let text = String::from_utf8(a.stdout).unwrap();
    let demo_dirs = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("dlq-healer-demo-")
            })
            .count()
    };
    assert_eq!(demo_dirs(), 1, "the demo's files go to a new directory");
    let accounting = text
        .lines()
        .find(|l| l.starts_with("ACCOUNTING"))
        .expect("an accounting line");
    assert!(accounting.contains("sent 120 ="), "{accounting}");
    assert!(accounting.ends_with("unaccounted 0"), "{accounting}");
    for panel in ["MESSAGES STATUS", "FUNCTION HEALTH", "QUEUE DEPTH"] {
        assert!(text.contains(panel), "{panel} missing:\n{text}");
    }
    for class in ["auth", "validation", "timeout", "bad_payload", "dependency"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(class)),
            "{class} missing:\n{text}"
        );
    }
    let b = run_ok(
        bin()
            .env("TMPDIR", tmp.path())
            .args(["demo", "--orders", "120", "--seed", "5"]),
    );
    assert_eq!(demo_dirs(), 2, "a second run gets a directory of its own");
    let strip = |t: &str| {
        t.lines()
            .filter(|l| {
                !l.starts_with("simulated time")
                    && !l.contains("avg duration")
                    && !l.starts_with("  consumer")
                    && !l.starts_with("  healer")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(&text),
        strip(&String::from_utf8(b.stdout).unwrap()),
        "same seed, same run"
    );
}

#[test]
fn demo_refuses_a_non_empty_directory_and_a_bad_mix() {
    let dir = scratch("demo-dir");
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let stderr = refused(bin().args(["demo", "--dir"]).arg(dir.path()));
    assert!(stderr.contains("not empty"));
    assert!(dir.path().join("precious.txt").exists());
    let output = bin()
        .args(["demo", "--mix", "auth=90,timeout=20"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("more than 100"));
}

#[test]
fn classify_reads_stdin_and_answers_line_by_line() {
    let mut child = bin()
        .arg("classify")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"body\":\"{}\",\"error\":\"Task timed out after 30.00 seconds\"}\n{oops\n{\"body\":\"{}\",\"error\":\"order 14013 failed\"}\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["class"], "timeout");
    assert_eq!(lines[0]["action"], "requeue");
    assert!(lines[1]["error"].is_string());
    assert_eq!(
        lines[2]["class"], "unknown",
        "14013 is an order id, not a status"
    );
}

/// 546 failure texts as Python, Node, Java, Go, Rust, .NET and Ruby clients, the AWS SDKs,
/// Lambda, HTTP servers and databases print them, each with the class an on-call engineer would
/// expect (`expect`, or one of `alt` where reasonable people differ) and why: the default rules
/// must get every one right.
#[test]
fn the_default_rules_classify_real_failure_texts_as_an_engineer_would() {
    // Embedded rather than read from the source tree at run time: a test binary built in another
    // checkout with the same target directory would read that checkout's copy, or none.
    let corpus = include_str!("fixtures/error_texts.jsonl");
    let dir = scratch("corpus");
    let input = dir.path().join("error_texts.jsonl");
    std::fs::write(&input, corpus).unwrap();
    let output = run_ok(bin().arg("classify").arg("--input").arg(&input));
    let expected: Vec<serde_json::Value> = corpus
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), expected.len(), "one answer per line");
    let wrong: Vec<String> = expected
        .iter()
        .zip(&got)
        .filter(|(case, answer)| {
            let class = &answer["class"];
            *class != case["expect"]
                && !case["alt"]
                    .as_array()
                    .is_some_and(|alt| alt.contains(class))
        })
        .map(|(case, answer)| {
            let error: String = case["error"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(120)
                .collect();
            format!(
                "{}: expected {} ({}), got {answer}: {error:?}",
                case["id"], case["expect"], case["why"]
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn an_invalid_rules_file_fails_at_start_with_file_line_and_reason() {
    let dir = scratch("rules");
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"x\"\nclass = \"auth\"\n\n[[rule]]\nname = \"y\"\nclass = \"nope\"\n",
    )
    .unwrap();
    let stderr = refused(
        bin()
            .arg("classify")
            .arg("--rules")
            .arg(&rules)
            .stdin(Stdio::null()),
    );
    assert!(stderr.contains("rules.toml:7:"), "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
}

#[test]
fn run_until_empty_heals_a_local_dlq_and_exits_zero() {
    let dir = scratch("run");
    let db = dir.path().join("q.db");
    let queue = |args: &[&str]| {
        let mut command = bin();
        command.arg("queue").arg("--db").arg(&db).args(args);
        run_ok(&mut command)
    };
    queue(&["create", "orders-dlq"]);
    queue(&[
        "create",
        "orders",
        "--dlq",
        "orders-dlq",
        "--max-receive-count",
        "3",
    ]);
    let timeout = r#"{"v":1,"error":{"message":"Task timed out after 30.00 seconds"},"source":"orders","failed_at":"2026-11-27T10:00:00Z"}"#;
    let auth = r#"{"v":1,"error":{"message":"401 Unauthorized"},"source":"orders","failed_at":"2026-11-27T10:00:00Z"}"#;
    queue(&[
        "send",
        "orders-dlq",
        "--body",
        "{\"order\":1}",
        "--attribute",
        &format!("dlq-context={timeout}"),
    ]);
    queue(&[
        "send",
        "orders-dlq",
        "--body",
        "{\"order\":2}",
        "--attribute",
        &format!("dlq-context={auth}"),
    ]);
    queue(&["send", "orders-dlq", "--body", "not json"]);
    // A ledger record from long ago, past the default retention of 90 days.
    let ledger_keys = || -> Vec<String> {
        let connection = rusqlite::Connection::open(&db).unwrap();
        let mut keys = connection.prepare("SELECT key FROM ledger").unwrap();
        keys.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO ledger (key, attempt, class, rule, action, alerted, at, error,
                                 dlq_message_id, body_digest)
             VALUES ('long-ago', 1, 'auth', 'auth', 'archived', 0,
                     '2020-01-01T00:00:00.000000000Z', '401', 'm-0', 'd-0')",
            [],
        )
        .unwrap();
    let started = std::time::Instant::now();
    let output = run_ok(bin().arg("run").arg("--db").arg(&db).args([
        "--dlq",
        "orders-dlq",
        "--until-empty",
    ]));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the drain ends without waiting out a 20 s long poll: {:?}",
        started.elapsed()
    );
    let text = String::from_utf8(output.stderr).unwrap();
    assert!(
        text.contains("wait_seconds=1"),
        "a 1 s long poll by default with --until-empty: {text}"
    );
    assert!(text.contains("batch_size=100"), "the default batch: {text}");
    assert!(
        text.contains("concurrency=2"),
        "two batches at once by default: {text}"
    );
    assert!(
        text.contains("retention_days=90"),
        "the default retention: {text}"
    );
    let keys = ledger_keys();
    assert!(!keys.contains(&"long-ago".to_string()), "{keys:?}");
    assert_eq!(keys.len(), 3, "this run's records stay: {keys:?}");
    assert!(text.contains("1 requeued"), "{text}");
    assert!(text.contains("2 archived"), "{text}");
    assert_eq!(queue_counts(&db, "orders-dlq"), [0, 0, 0]);
    assert_eq!(queue_counts(&db, "orders").iter().sum::<u64>(), 1);
    let archived = std::fs::read_dir(dir.path().join("q-archive"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(archived > 0, "archive directory beside the database");
}

#[test]
fn queue_create_again_keeps_the_settings_unless_told_to_update_them() {
    let dir = scratch("create-again");
    let db = dir.path().join("q.db");
    let queue = |args: &[&str]| {
        let mut command = bin();
        command.arg("queue").arg("--db").arg(&db).args(args);
        command
    };
    let with_dlq = [
        "create",
        "orders",
        "--dlq",
        "orders-dlq",
        "--max-receive-count",
        "5",
        "--visibility-timeout",
        "120",
    ];
    // A mistyped --db is not taken for a new, empty store.
    let stderr = refused(&mut queue(&["list"]));
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!db.exists(), "listing created no store");
    run_ok(&mut queue(&["create", "orders-dlq"]));
    // A receive count without a DLQ to move to would be a redrive policy with no target.
    let stderr = refused(&mut queue(&[
        "create",
        "lonely",
        "--max-receive-count",
        "6",
    ]));
    assert!(stderr.contains("--dlq"), "{stderr}");
    run_ok(&mut queue(&with_dlq));
    let again = run_ok(&mut queue(&with_dlq));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already exists with these settings"),
        "the same settings again: nothing to do"
    );
    let stderr = refused(&mut queue(&["create", "orders"]));
    assert!(
        stderr.contains("already exists with other settings (visibility timeout 120 s, DLQ orders-dlq after 5 receives; asked for visibility timeout 30 s, no DLQ)"),
        "{stderr}"
    );
    assert!(stderr.contains("--update"), "{stderr}");
    let stderr = refused(&mut queue(&["create", "orders", "--fifo", "--update"]));
    assert!(stderr.contains("cannot become a FIFO one"), "{stderr}");
    let settings = || {
        let connection = rusqlite::Connection::open(&db).unwrap();
        connection
            .query_row(
                "SELECT visibility_timeout_seconds, dead_letter_queue, fifo FROM queues
                 WHERE name = 'orders'",
                [],
                |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, bool>(2)?,
                    ))
                },
            )
            .unwrap()
    };
    assert_eq!(
        settings(),
        (120, Some("orders-dlq".into()), false),
        "unchanged"
    );
    let updated = run_ok(&mut queue(&[
        "create",
        "orders",
        "--update",
        "--visibility-timeout",
        "60",
    ]));
    assert_eq!(
        settings(),
        (60, Some("orders-dlq".into()), false),
        "what was given is updated, the rest kept"
    );
    assert!(
        String::from_utf8_lossy(&updated.stdout).contains(
            "visibility timeout 60 s, DLQ orders-dlq after 5 receives (was visibility timeout 120 s, DLQ orders-dlq after 5 receives)"
        ),
        "{updated:?}"
    );
    // With --update, a receive count or a DLQ alone changes that part of the redrive policy.
    run_ok(&mut queue(&["create", "other-dlq"]));
    run_ok(&mut queue(&[
        "create",
        "orders",
        "--update",
        "--max-receive-count",
        "7",
    ]));
    run_ok(&mut queue(&[
        "create",
        "orders",
        "--update",
        "--dlq",
        "other-dlq",
    ]));
    let stdout = run_ok(&mut queue(&["list"])).stdout;
    assert!(
        String::from_utf8_lossy(&stdout).contains("DLQ other-dlq after 7 receives"),
        "{}",
        String::from_utf8_lossy(&stdout)
    );
    let stderr = refused(&mut queue(&[
        "create",
        "orders",
        "--update",
        "--no-dlq",
        "--max-receive-count",
        "4",
    ]));
    assert!(stderr.contains("--no-dlq"), "{stderr}");
    run_ok(&mut queue(&["create", "orders", "--update", "--no-dlq"]));
    assert_eq!(settings(), (60, None, false), "the DLQ removed when asked");
    let stderr = refused(&mut queue(&[
        "create",
        "orders",
        "--update",
        "--max-receive-count",
        "4",
    ]));
    assert!(
        stderr.contains("--max-receive-count needs --dlq"),
        "{stderr}"
    );
    let stderr = refused(&mut queue(&["create", "orders", "--no-dlq"]));
    assert!(stderr.contains("--update"), "{stderr}");
}

#[test]
fn run_reports_the_repeats_it_held_back_before_it_exits() {
    let dir = scratch("digest-at-exit");
    let db = dir.path().join("q.db");
    auth_dead_letters(&db, "orders-dlq", 5);
    // One message a batch: alike messages of one batch make one alert of their own.
    let output = run_ok(bin().arg("run").arg("--db").arg(&db).args([
        "--dlq",
        "orders-dlq",
        "--until-empty",
        "--wait-seconds",
        "0",
        "--batch-size",
        "1",
        "--concurrency",
        "1",
    ]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 message failed with auth from orders"),
        "the first at once: {stderr}"
    );
    assert!(
        stderr.contains("4 more messages failed with auth from orders"),
        "the repeats held back, before the run ends rather than at the next one: {stderr}"
    );
}

#[test]
fn queue_send_takes_a_body_from_a_file_or_stdin_and_a_fifo_group() {
    let dir = scratch("send");
    let db = dir.path().join("q.db");
    let queue = || queue_command(&db);
    run_ok(queue().args(["create", "big"]));
    // Too long for a command line (about 128 KiB), within SQS's 1 MiB.
    let body = format!("{{\"blob\":\"{}\"}}", "x".repeat(200_000));
    let file = dir.path().join("body.json");
    std::fs::write(&file, &body).unwrap();
    run_ok(queue().args(["send", "big", "--body-file"]).arg(&file));
    let mut child = queue()
        .args(["send", "big", "--body-file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(queue_counts(&db, "big"), [2, 0, 0]);
    let too_big = "x".repeat(1_100_000);
    std::fs::write(&file, &too_big).unwrap();
    let stderr = refused(queue().args(["send", "big", "--body-file"]).arg(&file));
    assert!(stderr.contains("over the maximum"), "{stderr}");
    let stderr = refused(queue().args([
        "send",
        "big",
        "--body",
        "{}",
        "--attribute",
        "a=1",
        "--attribute",
        "a=2",
    ]));
    assert!(
        stderr.contains("attribute \"a\" is given twice"),
        "{stderr}"
    );

    run_ok(queue().args(["create", "orders.fifo", "--fifo"]));
    let stderr = refused(queue().args(["send", "orders.fifo", "--body", "{}"]));
    assert!(stderr.contains("needs a message group id"), "{stderr}");
    for _ in 0..2 {
        run_ok(queue().args([
            "send",
            "orders.fifo",
            "--body",
            "{}",
            "--group-id",
            "customer-1",
            "--deduplication-id",
            "order-1",
        ]));
    }
    assert_eq!(queue_counts(&db, "orders.fifo"), [1, 0, 0], "deduplicated");
}

#[test]
fn queue_load_sends_json_lines_in_batches_and_stops_at_a_bad_line_and_purge_wants_yes() {
    let dir = scratch("load");
    let db = dir.path().join("q.db");
    let queue = || queue_command(&db);
    run_ok(queue().args(["create", "orders-dlq"]));
    // 23 lines, as `classify` reads them, and a blank one: three batches.
    let mut lines: Vec<String> = (0..23)
        .map(|n| format!(r#"{{"body":"{{\"order\":{n}}}","error":"401 Unauthorized"}}"#))
        .collect();
    lines.insert(5, String::new());
    lines.push(r#"{"body_b64":"/w==","delay_seconds":60}"#.into());
    let file = dir.path().join("letters.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let output = run_ok(queue().args(["load", "orders-dlq"]).arg(&file));
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("sent 24 messages to orders-dlq"),
        "{output:?}"
    );
    assert_eq!(queue_counts(&db, "orders-dlq"), [23, 0, 1]);
    // The `error` became the context the healer reads.
    let inspection = run_ok(
        bin()
            .args(["inspect", "--json", "--dlq", "orders-dlq", "--db"])
            .arg(&db),
    );
    let inspection: serde_json::Value = serde_json::from_slice(&inspection.stdout).unwrap();
    assert_eq!(inspection["classes"][0]["class"], "auth", "{inspection}");
    assert_eq!(inspection["classes"][0]["count"], 23, "{inspection}");

    // A bad line stops the load; every line before it was sent.
    let mut bad: Vec<String> = (0..12).map(|n| format!(r#"{{"body":"{n}"}}"#)).collect();
    bad.push(r#"{"body":"late","delay_seconds":901}"#.into());
    std::fs::write(&file, bad.join("\n")).unwrap();
    let stderr = refused(queue().args(["load", "orders-dlq"]).arg(&file));
    assert!(
        stderr.contains("line 13: delay_seconds must be 0 to 900, not 901; the 12 messages of the lines before it were sent, none from it on"),
        "{stderr}"
    );
    assert_eq!(queue_counts(&db, "orders-dlq"), [35, 0, 1]);

    std::fs::write(&file, r#"{"bdy":"typo"}"#).unwrap();
    let stderr = refused(queue().args(["load", "orders-dlq"]).arg(&file));
    assert!(
        stderr.contains("line 1: no body: give body (text) or body_b64; the line has bdy"),
        "{stderr}"
    );

    let stderr = refused(queue().args(["purge", "orders-dlq"]));
    assert!(
        stderr.contains("deletes its 36 messages for good") && stderr.contains("--yes"),
        "{stderr}"
    );
    assert_eq!(
        queue_counts(&db, "orders-dlq"),
        [35, 0, 1],
        "nothing deleted"
    );
    let output = run_ok(queue().args(["purge", "orders-dlq", "--yes"]));
    assert!(String::from_utf8_lossy(&output.stdout).contains("deleted 36 messages"));
    assert_eq!(queue_counts(&db, "orders-dlq"), [0, 0, 0]);
}

#[test]
fn inspect_lists_the_messages_parked_until_their_retry_is_due() {
    let dir = scratch("parked");
    let db = dir.path().join("q.db");
    let queue = || queue_command(&db);
    run_ok(queue().args(["create", "orders-dlq"]));
    run_ok(queue().args([
        "create",
        "orders",
        "--dlq",
        "orders-dlq",
        "--max-receive-count",
        "3",
    ]));
    // Backoffs of up to an hour for the dependency class: three in four are over 15 minutes and
    // park.
    let rules = String::from_utf8(run_ok(bin().arg("default-rules")).stdout)
        .unwrap()
        .replace("base_delay_seconds = 10\n", "base_delay_seconds = 3600\n");
    let rules_file = dir.path().join("rules.toml");
    std::fs::write(&rules_file, rules).unwrap();
    load_unavailable_orders(&db, 20);
    run_ok(drain_orders_dlq(&db).arg("--rules").arg(&rules_file));

    let parked = count(&db, "SELECT COUNT(*) FROM ledger WHERE action = 'parked'");
    assert!(
        parked > 0,
        "one in 2.2 parks, so twenty are all but sure to park some"
    );
    let output = run_ok(
        bin()
            .args(["inspect", "--json", "--dlq", "orders-dlq", "--db"])
            .arg(&db),
    );
    let inspection: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let listed = inspection["parked"].as_array().unwrap();
    assert_eq!(listed.len() as i64, parked, "{inspection}");
    assert_eq!(inspection["in_flight"].as_i64(), Some(parked));
    let due: Vec<i64> = listed
        .iter()
        .map(|p| p["due_in_seconds"].as_i64().unwrap())
        .collect();
    assert!(
        due.is_sorted() && due[0] > 800,
        "soonest first, over 900 s: {due:?}"
    );
    assert_eq!(listed[0]["class"], "dependency");
    assert_eq!(listed[0]["attempt"], 1);
    // The parked list is filtered by class and key, as the groups are.
    let parked_with = |filter: &[&str]| {
        let output = run_ok(
            bin()
                .args(["inspect", "--json", "--dlq", "orders-dlq", "--db"])
                .arg(&db)
                .args(filter),
        );
        let inspection: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        inspection["parked"].as_array().unwrap().len() as i64
    };
    assert_eq!(parked_with(&["--class", "auth"]), 0);
    assert_eq!(parked_with(&["--class", "dependency"]), parked);
    let first_key = listed[0]["key"].as_str().unwrap();
    assert_eq!(parked_with(&["--key", first_key]), 1);
    let text = run_ok(
        bin()
            .args(["inspect", "--dlq", "orders-dlq", "--db"])
            .arg(&db),
    )
    .stdout;
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains(&format!(
            "parked until their retry is due (from the ledger) — {parked} message"
        )) && text.contains("503 Service Unavailable"),
        "{text}"
    );
}

#[test]
fn run_re_queues_a_letter_without_a_source_to_the_one_queue_that_dead_letters_there() {
    let dir = scratch("redrive-source");
    let db = dir.path().join("q.db");
    let queue = || queue_command(&db);
    run_ok(queue().args(["create", "orders-dlq"]));
    for source in ["orders", "payments"] {
        run_ok(queue().args([
            "create",
            source,
            "--dlq",
            "orders-dlq",
            "--max-receive-count",
            "3",
        ]));
    }
    // Two queues dead-letter into orders-dlq: none is guessed, and the run says so.
    load_unavailable_orders(&db, 2);
    let output = run_ok(&mut drain_orders_dlq(&db));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("2 queues dead-letter into orders-dlq (orders, payments)"),
        "{stderr}"
    );
    assert_eq!(queue_counts(&db, "orders"), [0, 0, 0]);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM archive_index"), 2);
    // One does: the letters go back to it.
    run_ok(queue().args(["create", "payments", "--update", "--no-dlq"]));
    load_unavailable_orders(&db, 3);
    let output = run_ok(&mut drain_orders_dlq(&db));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("go back to orders, the one queue that dead-letters into it"),
        "{stderr}"
    );
    let requeued = queue_counts(&db, "orders");
    assert_eq!(
        requeued[0] + requeued[2],
        3,
        "visible or delayed: {requeued:?}"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM archive_index"), 2);
}

#[test]
fn log_level_takes_python_names_and_refuses_a_word_that_would_silence_the_log() {
    let dir = scratch("log-level");
    let db = dir.path().join("q.db");
    auth_dead_letters(&db, "orders-dlq", 1);
    let stderr = refused(drain_orders_dlq(&db).env("LOG_LEVEL", "loud"));
    assert!(stderr.contains("\"loud\" is not a log level"), "{stderr}");
    assert_eq!(queue_counts(&db, "orders-dlq"), [1, 0, 0], "nothing healed");
    // Python's WARNING, as the original design's functions were configured: the alert, logged
    // at warn, still shows.
    let output = run_ok(
        bin()
            .env("LOG_LEVEL", "WARNING")
            .arg("run")
            .arg("--db")
            .arg(&db)
            .args([
                "--dlq",
                "orders-dlq",
                "--until-empty",
                "--wait-seconds",
                "0",
            ]),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("failed with auth"), "{stderr}");
    assert!(!stderr.contains(" INFO "), "info lines are off: {stderr}");
}

#[test]
fn run_refuses_a_retention_on_aws_where_dynamodb_ttl_decides() {
    let stderr = refused(
        bin()
            .args(["run", "--backend", "aws", "--retention-days", "30"])
            .args([
                "--dlq",
                "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dlq",
            ]),
    );
    assert!(
        stderr.contains("--retention-days is for the local backend"),
        "{stderr}"
    );
    assert!(stderr.contains("90 days"), "{stderr}");
}

#[test]
fn run_refuses_a_retention_beyond_a_century() {
    let dir = scratch("retention");
    let stderr = refused(
        bin()
            .arg("run")
            .arg("--db")
            .arg(dir.path().join("x.db"))
            .args(["--dlq", "dlq", "--retention-days", "99999999"]),
    );
    assert!(stderr.contains("--retention-days"), "{stderr}");
    assert!(stderr.contains("0..=36500"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn run_on_a_missing_dlq_says_what_to_do() {
    let dir = scratch("missing");
    let stderr = refused(
        bin()
            .arg("run")
            .arg("--db")
            .arg(dir.path().join("x.db"))
            .args(["--dlq", "nope", "--until-empty"]),
    );
    let db = dir.path().join("x.db");
    // A store that does not exist is not made for a run that cannot heal anything.
    let suggested = format!("`dlq-healer queue --db {} create nope`", db.display());
    assert!(
        stderr.contains("does not exist") && stderr.contains(&suggested),
        "{stderr}"
    );
    assert!(!db.exists() && !dir.path().join("x-archive").exists());
    // The commands suggested work as written, with --db before or after the action.
    run_ok(
        bin()
            .args(["queue", "--db"])
            .arg(&db)
            .args(["create", "dlq"]),
    );
    let stderr =
        refused(
            bin()
                .arg("run")
                .arg("--db")
                .arg(&db)
                .args(["--dlq", "nope", "--until-empty"]),
        );
    let suggested = format!("`dlq-healer queue --db {} list`", db.display());
    assert!(stderr.contains(&suggested), "{stderr}");
    run_ok(bin().args(["queue", "list", "--db"]).arg(&db));
    let stderr = refused(bin().arg("run").arg("--db").arg(&db).args([
        "--dlq",
        "dlq",
        "--main-queue",
        "ghost",
        "--until-empty",
    ]));
    assert!(
        stderr.contains("cannot re-queue to \"ghost\" (--main-queue): it does not exist"),
        "a re-queue target that does not exist is refused at start, not found by each message: {stderr}"
    );
    // A source queue given as the DLQ (a typo for its DLQ) is refused; healed only when that is
    // intended, with a warning first.
    run_ok(bin().args(["queue", "--db"]).arg(&db).args([
        "create",
        "orders",
        "--dlq",
        "dlq",
        "--max-receive-count",
        "3",
    ]));
    let stderr = refused(bin().arg("run").arg("--db").arg(&db).args([
        "--dlq",
        "orders",
        "--until-empty",
        "--wait-seconds",
        "0",
    ]));
    assert!(
        stderr.contains("looks like a source queue, not a DLQ") && stderr.contains("--dlq dlq"),
        "{stderr}"
    );
    let output = run_ok(bin().arg("run").arg("--db").arg(&db).args([
        "--dlq",
        "orders",
        "--allow-source-queue",
        "--until-empty",
        "--wait-seconds",
        "0",
    ]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"orders\" has a dead-letter queue of its own (\"dlq\" after 3 receives): it looks like a source queue"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn run_stops_gracefully_on_sigterm() {
    let dir = scratch("sigterm");
    let db = dir.path().join("q.db");
    run_ok(
        bin()
            .arg("queue")
            .arg("--db")
            .arg(&db)
            .args(["create", "dlq"]),
    );
    // The default long poll of 20 s: the signal ends it.
    let mut child = bin()
        .arg("run")
        .arg("--db")
        .arg(&db)
        .args(["--dlq", "dlq"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let output = loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            started.elapsed().as_secs() < 10,
            "did not stop after SIGTERM within 10 s, as `docker stop` expects"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("healed 0 batches"));
}

#[cfg(unix)]
#[test]
fn a_second_signal_stops_at_once_a_run_waiting_on_its_webhook() {
    let dir = scratch("second-signal");
    let db = dir.path().join("q.db");
    auth_dead_letters(&db, "dlq", 1);
    // A webhook that takes connections and never answers: the alert's delivery is retried
    // while the run, asked to stop, waits for it (up to 10 s).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let mut child = bin()
        .arg("run")
        .arg("--db")
        .arg(&db)
        .args(["--dlq", "dlq", "--wait-seconds", "1", "--webhook-url", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let signal = |child: &std::process::Child| {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal(&child);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal waits for the webhook"
    );
    signal(&child);
    let started = std::time::Instant::now();
    let output = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            started.elapsed().as_secs() < 5,
            "the second signal did not stop the run"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(output.status.code(), Some(130));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("stopped at once"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        queue_counts(&db, "dlq"),
        [0, 0, 0],
        "the message was healed before"
    );
}

/// With batches of 10,000 both heal loops can keep the runtime's threads busy from one batch to
/// the next; the stop is still seen at the next batch, not when the DLQ is empty.
#[cfg(unix)]
#[test]
fn a_stop_is_seen_at_the_next_batch_while_large_batches_keep_the_runtime_busy() {
    let dir = scratch("busy-stop");
    let db = dir.path().join("q.db");
    run_ok(queue_command(&db).args(["create", "orders-dlq"]));
    const LETTERS: i64 = 120_000;
    load_failed_orders(&db, LETTERS as usize, "ValidationError: user missing");
    let mut child = bin()
        .arg("run")
        .arg("--db")
        .arg(&db)
        .args(["--dlq", "orders-dlq", "--batch-size", "10000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let archived = || count(&db, "SELECT COUNT(*) FROM archive_index");
    let started = std::time::Instant::now();
    while archived() == 0 {
        assert!(started.elapsed().as_secs() < 60, "the run never archived");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let left = queue_counts(&db, "orders-dlq");
    assert_eq!(left[1], 0, "the batches in hand were finished: {stderr}");
    assert!(
        left[0] > 0,
        "the run went on until the DLQ was empty: {stderr}"
    );
    assert_eq!(
        left[0] as i64 + archived(),
        LETTERS,
        "each letter is in the DLQ or in the archive"
    );
}

/// A FIFO DLQ hands out no message of a group while an earlier one is parked: a drain that
/// finds nothing more to receive says how many it left behind them, and exits 1.
#[test]
fn a_drain_of_a_fifo_dlq_says_what_it_left_behind_parked_groups() {
    let dir = scratch("fifo-drain");
    let db = dir.path().join("q.db");
    let queue = || queue_command(&db);
    run_ok(queue().args(["create", "orders-dlq.fifo", "--fifo"]));
    run_ok(queue().args([
        "create",
        "orders.fifo",
        "--fifo",
        "--dlq",
        "orders-dlq.fifo",
        "--max-receive-count",
        "3",
    ]));
    let lines: Vec<String> = (0..30)
        .map(|n| format!(r#"{{"body":"{{\"order\":{n}}}","error":"Task timed out after 30.00 seconds","group_id":"customer-1"}}"#))
        .collect();
    let file = dir.path().join("letters.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    run_ok(queue().args(["load", "orders-dlq.fifo"]).arg(&file));
    let output = bin()
        .arg("run")
        .arg("--db")
        .arg(&db)
        .args([
            "--dlq",
            "orders-dlq.fifo",
            "--until-empty",
            "--batch-size",
            "10",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // Parked for a random part of the backoff: some of the batch may be visible again by now.
    let note = stderr
        .split("; ")
        .find_map(|part| part.strip_suffix(" left visible behind messages of their FIFO groups that are in flight (parked until their retry is due): run again then\n"))
        .unwrap_or_else(|| panic!("no note of what was left: {stderr}"));
    let left: u64 = note.parse().unwrap();
    assert!((20..=30).contains(&left), "{stderr}");
    let dlq = queue_counts(&db, "orders-dlq.fifo");
    let requeued = queue_counts(&db, "orders.fifo")[0];
    assert_eq!(dlq[0] + dlq[1] + requeued, 30, "every letter is somewhere");
}

/// `run` draining `orders-dlq` of the local store at `db`, without waiting for more.
fn drain_orders_dlq(db: &std::path::Path) -> Command {
    let mut command = bin();
    command.arg("run").arg("--db").arg(db).args([
        "--dlq",
        "orders-dlq",
        "--until-empty",
        "--wait-seconds",
        "0",
    ]);
    command
}

/// Create the local queue `dlq` in `db` and send it `count` dead letters of orders that failed
/// with 401 Unauthorized, each with its `dlq-context`.
fn auth_dead_letters(db: &std::path::Path, dlq: &str, count: usize) {
    let queue = || queue_command(db);
    run_ok(queue().args(["create", dlq]));
    let auth = r#"{"v":1,"error":{"message":"401 Unauthorized"},"source":"orders","failed_at":"2026-11-27T10:00:00Z"}"#;
    for order in 0..count {
        run_ok(queue().args([
            "send",
            dlq,
            "--body",
            &format!("{{\"order\":{order}}}"),
            "--attribute",
            &format!("dlq-context={auth}"),
        ]));
    }
}

/// Seed a local DLQ (`orders-dlq`, whose deliveries stay invisible for 2 s) with `count` dead
/// letters of the original's mix, each with its `dlq-context` as the consumer library writes it;
/// create the source queue `orders`. The messages' ids in the DLQ, which are their ledger keys.
fn seed_local_dlq(db: &std::path::Path, count: usize) -> std::collections::BTreeSet<String> {
    use dlq_healer_core::ports::QueueSender;
    use dlq_healer_local::{LocalQueues, LocalStore, QueueSettings};

    let queues = LocalQueues::new(LocalStore::open(db).unwrap());
    let dlq = QueueSettings {
        visibility_timeout_seconds: 2,
        ..QueueSettings::default()
    };
    queues.create_queue("orders-dlq", dlq).unwrap();
    queues
        .create_queue("orders", QueueSettings::default())
        .unwrap();
    let letters = dlq_healer_demo::dead_letters_as_sent(count, 5, "orders", chrono::Utc::now());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for chunk in letters.chunks(10) {
        for sent in runtime.block_on(queues.send("orders-dlq", chunk)).unwrap() {
            ids.insert(sent.unwrap());
        }
    }
    assert_eq!(ids.len(), count);
    ids
}

/// Load `count` dead letters of orders that failed with 503 Service Unavailable, without a
/// source queue in their context, into orders-dlq of the database at `db`.
fn load_unavailable_orders(db: &std::path::Path, count: usize) {
    load_failed_orders(db, count, "503 Service Unavailable");
}

/// Load `count` dead letters of orders that failed with `error`, without a source queue in
/// their context, into orders-dlq of the database at `db`.
fn load_failed_orders(db: &std::path::Path, count: usize, error: &str) {
    let lines: Vec<String> = (0..count)
        .map(|n| format!(r#"{{"body":"{{\"order\":{n}}}","error":"{error}"}}"#))
        .collect();
    let mut load = queue_command(db)
        .args(["load", "orders-dlq"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    load.stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    assert!(load.wait().unwrap().success());
}

/// `dlq-healer queue --db DB`, to which the action is added.
fn queue_command(db: &std::path::Path) -> Command {
    let mut command = bin();
    command.arg("queue").arg("--db").arg(db);
    command
}

/// The counts `queue list` prints for `queue` of the database at `db`: visible, in flight,
/// delayed.
fn queue_counts(db: &std::path::Path, queue: &str) -> Vec<u64> {
    let list = run_ok(bin().arg("queue").arg("--db").arg(db).arg("list")).stdout;
    let list = String::from_utf8(list).unwrap();
    let row = list
        .lines()
        .find(|line| line.split_whitespace().next() == Some(queue))
        .unwrap_or_else(|| panic!("no row for {queue} in {list}"));
    row.split_whitespace()
        .skip(1)
        .take(3)
        .map(|n| n.parse().unwrap())
        .collect()
}

/// One number from the database at `db`, read by a connection of its own.
fn count(db: &std::path::Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |row| row.get(0))
        .unwrap()
}

#[cfg(unix)]
#[test]
fn a_healer_killed_while_it_heals_loses_no_message() {
    const MESSAGES: usize = 3000;
    let dir = scratch("killed");
    let db = dir.path().join("q.db");
    let keys = seed_local_dlq(&db, MESSAGES);
    let healer = || {
        let mut command = bin();
        command.arg("run").arg("--db").arg(&db).args([
            "--dlq",
            "orders-dlq",
            "--wait-seconds",
            "0",
            "--log-level",
            "error",
        ]);
        command
    };
    let mut killed = healer()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while count(&db, "SELECT count(*) FROM ledger") < 300 {
        assert!(
            started.elapsed().as_secs() < 60,
            "the healer made no progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    let decided_before = count(&db, "SELECT count(DISTINCT key) FROM ledger");
    assert!(
        (decided_before as usize) < MESSAGES,
        "killed before it was done: {decided_before} of {MESSAGES} decided"
    );
    let integrity: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");

    // What the killed healer held comes back once the DLQ's visibility timeout has passed.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let output = run_ok(healer().arg("--until-empty"));
    let summary = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        queue_counts(&db, "orders-dlq"),
        [0, 0, 0],
        "the DLQ is empty: {summary}"
    );
    let decided: std::collections::BTreeSet<String> = {
        let connection = rusqlite::Connection::open(&db).unwrap();
        let mut keys = connection
            .prepare("SELECT DISTINCT key FROM ledger")
            .unwrap();
        keys.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let undecided: Vec<_> = keys.difference(&decided).take(5).collect();
    let unknown: Vec<_> = decided.difference(&keys).take(5).collect();
    assert!(
        undecided.is_empty() && unknown.is_empty(),
        "every message was decided, once or more: undecided {undecided:?}, unknown keys {unknown:?}"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(DISTINCT key) FROM ledger WHERE action = 'archived'
             AND key NOT IN (SELECT key FROM archive_index)"
        ),
        0,
        "every archived message is in the archive"
    );
    let requeued = count(
        &db,
        "SELECT count(DISTINCT key) FROM ledger WHERE action = 'requeued'",
    );
    let in_orders = count(&db, "SELECT count(*) FROM messages WHERE queue = 'orders'");
    assert!(
        requeued > 0 && in_orders >= requeued,
        "{in_orders} in orders for {requeued} re-queued"
    );
}

#[test]
fn a_configuration_file_says_what_the_environment_would() {
    let dir = scratch("config");
    let db = dir.path().join("q.db");
    run_ok(
        bin()
            .arg("queue")
            .arg("--db")
            .arg(&db)
            .args(["create", "from-config-dlq"]),
    );
    let config = dir.path().join("healer.toml");
    std::fs::write(
        &config,
        format!(
            "DLQ_URL = \"from-config-dlq\"\nDLQ_HEALER_DB = \"{}\"\n",
            db.display()
        ),
    )
    .unwrap();
    let output = run_ok(
        bin()
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(["--until-empty", "--wait-seconds", "0"])
            .env_remove("DLQ_URL")
            .env_remove("DLQ_HEALER_DB"),
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("healed 0 batches"));
    // The environment wins over the file.
    let stderr = refused(
        bin()
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(["--until-empty", "--wait-seconds", "0"])
            .env("DLQ_URL", "no-such-dlq"),
    );
    assert!(stderr.contains("no-such-dlq"));
    // An SQS URL on the local backend: aws was meant; no database is made in the current
    // directory (the default --db) for it.
    let here = scratch("config-cwd");
    let stderr = refused(
        bin()
            .current_dir(here.path())
            .args(["run", "--until-empty"])
            .env(
                "DLQ_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/orders-dlq",
            )
            .env_remove("DLQ_HEALER_DB")
            .env_remove("DLQ_HEALER_BACKEND"),
    );
    assert!(stderr.contains("give --backend aws"), "{stderr}");
    assert!(
        entries(here.path()).is_empty(),
        "{:?}",
        entries(here.path())
    );

    std::fs::write(&config, "DLQ_URLS = \"x\"\n").unwrap();
    let stderr = refused(bin().arg("run").arg("--config").arg(&config));
    assert!(
        stderr.contains("healer.toml") && stderr.contains("DLQ_URLS"),
        "{stderr}"
    );
    // A value of the file that its flag refuses: the file and the setting are named.
    std::fs::write(
        &config,
        format!(
            "DLQ_URL = \"from-config-dlq\"\nDLQ_HEALER_DB = \"{}\"\nDLQ_HEALER_RETENTION_DAYS = \"ten\"\n",
            db.display()
        ),
    )
    .unwrap();
    let stderr = refused(
        bin()
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--until-empty")
            .env_remove("DLQ_HEALER_RETENTION_DAYS"),
    );
    assert!(
        stderr.contains("invalid value 'ten' for '--retention-days")
            && stderr.contains("that value is DLQ_HEALER_RETENTION_DAYS in the configuration file")
            && stderr.contains("healer.toml"),
        "{stderr}"
    );
    // So is a value of the environment.
    let stderr = refused(
        bin()
            .arg("run")
            .arg("--db")
            .arg(&db)
            .args(["--dlq", "from-config-dlq", "--until-empty"])
            .env("DLQ_HEALER_RETENTION_DAYS", "ten"),
    );
    assert!(
        stderr.contains("note: that value is the environment variable DLQ_HEALER_RETENTION_DAYS"),
        "{stderr}"
    );
    // An empty variable counts as not set: the default applies.
    let output = run_ok(
        bin()
            .arg("run")
            .arg("--db")
            .arg(&db)
            .args([
                "--dlq",
                "from-config-dlq",
                "--until-empty",
                "--wait-seconds",
                "0",
            ])
            .env("DLQ_HEALER_RETENTION_DAYS", ""),
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("healed 0 batches"));
}

/// The names in a directory.
fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_healing_benchmark_heals_every_message_with_batches_healed_at_once() {
    let dir = scratch("bench");
    for concurrency in ["1", "2"] {
        let output = run_ok(bin().current_dir(dir.path()).args([
            "bench",
            "--healing-only",
            "--healing-messages",
            "450",
            "--batch-size",
            "40",
            "--concurrency",
            concurrency,
        ]));
        // It healed in the current directory and removed what it wrote there.
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
        let figures: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        // The benchmark itself fails unless every message was re-queued, archived or parked.
        assert_eq!(figures["messages"], 450);
        assert_eq!(figures["batch_size"], 40);
        assert_eq!(figures["concurrency"].to_string(), concurrency);
        for figure in [
            "healed_per_second",
            "raw_inserts_per_second",
            "peak_rss_mib",
            "file_creation_micros",
        ] {
            let value = figures[figure].as_f64().unwrap();
            assert!(value.is_finite() && value > 0.0, "{figure} = {value}");
        }
    }
}

#[test]
fn the_benchmark_heals_in_the_directory_it_is_given_and_removes_its_files_at_the_end() {
    let dir = scratch("bench-dir");
    let output = run_ok(bin().args([
        "bench",
        "--classify-messages",
        "20",
        "--healing-messages",
        "60",
        "--batch-size",
        "20,30",
        "--concurrency",
        "1,2",
        "--dir",
        dir.path().to_str().unwrap(),
    ]));
    let table = String::from_utf8(output.stdout).unwrap();
    for rows in [
        "batch 20, concurrency 1 |",
        "batch 20, concurrency 2 |",
        "batch 30, concurrency 1 |",
        "batch 30, concurrency 2 |",
        "creating an empty file in the benchmark's directory",
    ] {
        assert!(table.contains(rows), "no {rows} row in\n{table}");
    }
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));

    let missing = dir.path().join("missing");
    let output = bin()
        .args(["bench", "--healing-only", "--dir"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--dir takes an existing directory") && stderr.contains("missing"),
        "{stderr}"
    );
}

#[test]
fn the_benchmark_refuses_a_concurrency_run_does_not_accept() {
    for bad in ["0", "65", "two"] {
        let output = bin()
            .args(["bench", "--healing-only", "--concurrency", bad])
            .output()
            .unwrap();
        assert!(!output.status.success(), "--concurrency {bad} was accepted");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("--concurrency"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_operator_commands_take_the_backend_from_the_configuration_file() {
    let dir = scratch("config-backend");
    let config = dir.path().join("dlq-healer.toml");
    std::fs::write(&config, "DLQ_HEALER_BACKEND = \"aws\"\n").unwrap();
    // On aws, stats needs the ledger table; on local it would have named a missing store.
    let stderr = refused(
        bin()
            .current_dir(dir.path())
            .args(["stats", "--config"])
            .arg(&config)
            .env_remove("DLQ_HEALER_BACKEND")
            .env_remove("FAILED_TABLE")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    );
    assert!(stderr.contains("--failed-table"), "{stderr}");
}

#[test]
fn a_webhook_url_stays_out_of_the_log_even_at_debug_level() {
    use std::io::{Read, Write};
    // A webhook that takes every alert: the HTTP client logs a request it sends.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let posts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = posts.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 8192];
            let _ = stream.read(&mut request);
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let dir = scratch("webhook-debug");
    let db = dir.path().join("q.db");
    auth_dead_letters(&db, "orders-dlq", 1);
    let output = drain_orders_dlq(&db)
        .args(["--log-level", "debug", "--webhook-url"])
        .arg(format!(
            "http://127.0.0.1:{port}/services/T0/B0/webhookSecretPath?token=webhookSecretToken"
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        posts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("webhookSecret"), "{stderr}");
}

#[test]
fn the_aws_backend_without_a_region_or_credentials_is_refused_at_start() {
    let home = scratch("no-aws-config");
    // Nothing to find a region or credentials in: no variables, no ~/.aws, no instance metadata.
    let aws = |args: &[&str], region: Option<&str>| {
        let mut command = bin();
        command
            .args(args)
            .args(["--backend", "aws", "--endpoint-url", "http://127.0.0.1:9"])
            .env("HOME", home.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("ARCHIVE_BUCKET", "b")
            .env("FAILED_TABLE", "t")
            .env("ALERT_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:a");
        for variable in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ] {
            command.env_remove(variable);
        }
        if let Some(region) = region {
            command.env("AWS_REGION", region);
        }
        // Refused at once, or (as before) retrying for ever: killed after 30 s.
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let dlq = "http://127.0.0.1:9/123456789012/shop-dlq";
    // A cron job of `run --until-empty` used to retry the receive for ever.
    let (code, stderr) = aws(&["run", "--until-empty", "--dlq", dlq], Some("us-east-1"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot load AWS credentials") && stderr.contains("AWS_ACCESS_KEY_ID"),
        "{stderr}"
    );
    // The operator commands named the queue as what could not be found.
    let (code, stderr) = aws(&["inspect", "--dlq", "shop-dlq"], None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("no AWS region is configured") && !stderr.contains("cannot be found"),
        "{stderr}"
    );
}
