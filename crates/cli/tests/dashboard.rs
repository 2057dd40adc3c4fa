//! The web dashboard in a real headless Chromium, driven over WebDriver (chromedriver) from here:
//! the panels and failure groups show the backend's numbers, a decision links to its archived
//! record, a group's dry run changes nothing, and the confirmed move moves exactly that group.
//! Leaves a screenshot at `<target dir>/dashboard-screenshot.png`.
//!
//! Needs `chromium` and `chromedriver` (scripts/install-test-deps.sh installs them).

mod operator_fixture;

use operator_fixture::{bin, build, run_ok};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The target directory: the binary is `<target>/<profile>/dlq-healer`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_BIN_EXE_dlq-healer"))
                .parent()
                .and_then(|p| p.parent())
                .expect("the binary lives in <target>/<profile>")
                .to_path_buf()
        })
}

/// Start `serve` on a free port; returns the process and its base URL.
fn serve(args: &[String]) -> (Guard, String) {
    let mut child = bin()
        .arg("serve")
        .args(args)
        .args(["--bind", "127.0.0.1:0", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("serve prints its address");
    let url = line
        .trim()
        .strip_prefix("dashboard on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim_end_matches('/')
        .to_string();
    (Guard(child), url)
}

/// A tiny WebDriver client.
struct Driver {
    base: String,
    session: String,
    _process: Guard,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let chromedriver = which("chromedriver");
        let chromium = which("chromium");
        let port = free_port();
        let process = Guard(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("a profile directory");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1400,1400",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let answer: Value = ureq::post(&format!("{base}/session"))
            .send_json(capabilities)
            .expect("a browser session")
            .into_json()
            .expect("session JSON");
        let session = answer["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Driver {
            base,
            session,
            _process: process,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let response = match method {
            "GET" => ureq::get(&url).call(),
            _ => ureq::post(&url).send_json(body),
        };
        match response {
            Ok(r) => r.into_json::<Value>().expect("WebDriver JSON")["value"].take(),
            Err(ureq::Error::Status(code, r)) => {
                panic!(
                    "WebDriver {method} {path}: {code} {}",
                    r.into_string().unwrap_or_default()
                )
            }
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// Open the dashboard at `url` and wait until it has shown its data.
    fn load(&self, url: &str) {
        self.goto(url);
        self.wait_for(
            "the page to load its data",
            "return document.body.getAttribute('data-loaded') === '1';",
        );
    }

    /// The headings of the panels wider than their box.
    fn overflowing_panels(&self) -> Value {
        self.script(
            "return [...document.querySelectorAll('main > section')].filter(s => s.scrollWidth > s.clientWidth).map(s => s.querySelector('h2').textContent + ' ' + s.scrollWidth + '/' + s.clientWidth);",
        )
    }

    /// How many of the groups' dry-run buttons end beyond the window's right edge.
    fn dry_run_buttons_out_of_view(&self) -> Value {
        self.script(
            "return [...document.querySelectorAll('button.dry-run')].filter(b => b.getBoundingClientRect().right > window.innerWidth).length;",
        )
    }

    /// Run a script in the page; its return value.
    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    /// Wait until a script returns something truthy; its value.
    fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.script(script);
            if !(value.is_null() || value == json!(false) || value == json!("")) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, selector: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent : null;",
            json!(selector)
        );
        self.wait_for(selector, &script)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn click(&self, selector: &str) {
        let found = self.call(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": selector }),
        );
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {selector}"))
            .to_string();
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// Accept the `confirm()` dialog once it is open.
    fn accept_dialog(&self) {
        let url = format!("{}/session/{}/alert/accept", self.base, self.session);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ureq::post(&url).send_json(json!({})).is_err() {
            assert!(Instant::now() < deadline, "no confirm dialog opened");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let data = self.call("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("screenshot data"))
            .expect("base64 PNG");
        std::fs::write(path, png).expect("screenshot written");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
    }
}

fn which(program: &str) -> String {
    let output = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .expect("sh runs");
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "{program} is missing: run scripts/install-test-deps.sh (apt-get install chromium chromium-driver)"
    );
    path
}

#[test]
fn dashboard_in_headless_chromium_shows_the_backend_and_redrives_a_group() {
    let fixture = build();
    // What the backend says, read by the CLI (not through the page).
    let stats: Value =
        serde_json::from_slice(&run_ok(&mut fixture.cmd(&["stats", "--json"])).stdout)
            .expect("stats JSON");
    let received = |class: &str| {
        stats["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["class"] == class)
            .map_or(0, |c| c["received"].as_u64().unwrap())
    };
    let total_received: u64 = stats["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["received"].as_u64().unwrap())
        .sum();
    assert!(total_received > 0 && received("auth") > 0, "{stats}");

    let mut args = fixture.store_args();
    args.extend(["--dlq".to_string(), "orders-dlq".to_string()]);
    let (_server, url) = serve(&args);
    let driver = Driver::start();
    driver.load(&format!("{url}/"));

    // Panel 1: messages status, per class and in total.
    for class in ["auth", "validation", "timeout", "bad_payload", "dependency"] {
        if received(class) > 0 {
            let cell = driver.text(&format!("td[data-class='{class}'][data-field='received']"));
            assert_eq!(cell, received(class).to_string(), "{class} received");
        }
    }
    assert_eq!(driver.text("#total-received"), total_received.to_string());
    assert_eq!(driver.text("#processed"), stats["processed"].to_string());
    // Panel 2: function health.
    let healer_invocations = stats["functions"][1]["invocations"].to_string();
    assert_eq!(
        driver.text("tr[data-function='healer'] td[data-field='invocations']"),
        healer_invocations
    );
    // Panel 3: queue depth: the five unhealed dead letters, visible again after the peek.
    assert_eq!(
        driver.text("td[data-queue='orders-dlq'][data-field='visible']"),
        "5"
    );
    let bars = driver.script(
        "return document.querySelectorAll('#status-chart rect, #depth-chart rect').length;",
    );
    assert!(bars.as_u64().unwrap_or(0) > 0, "the charts draw bars");
    // Each bar colour is named, and at this width (1400 px) no panel's table is cut off.
    let legends = driver.script(
        "return [...document.querySelectorAll('#status-legend [data-field], #depth-legend [data-field]')].map(e => e.textContent);",
    );
    assert_eq!(
        legends,
        json!([
            "received",
            "requeued",
            "archived",
            "alerted",
            "visible",
            "in flight",
            "delayed"
        ])
    );
    assert_eq!(
        driver.overflowing_panels(),
        json!([]),
        "panels wider than their box"
    );

    // Failure groups: 3 auth of one fingerprint, 2 timeouts of another.
    assert_eq!(driver.text("#groups-total"), "5");
    assert_eq!(driver.text("tr.group[data-class='auth'] .count"), "3");
    assert_eq!(driver.text("tr.group[data-class='timeout'] .count"), "2");
    driver.screenshot(&target_dir().join("dashboard-screenshot.png"));

    // A recent decision links to its archived record.
    let key = driver.text("a.archive-link");
    driver.click("a.archive-link");
    driver.wait_for(
        "the archived record page",
        "return document.querySelector('#record') !== null;",
    );
    assert_eq!(driver.text("#key"), key);
    let record: Value = serde_json::from_str(&driver.text("#record")).expect("the record is JSON");
    assert_eq!(record["key"], key.as_str());

    // A group's dry run lists the group and changes nothing.
    driver.load(&format!("{url}/"));
    driver.click("tr.group[data-class='auth'] button.dry-run");
    assert_eq!(driver.text("#would-move"), "3");
    assert_eq!(fixture.depth("orders-dlq").0, 5, "a dry run moves nothing");
    let orders_before = fixture.depth("orders").0;

    // The move itself needs the confirmation step.
    driver.click("#confirm-move");
    driver.accept_dialog();
    assert_eq!(driver.text("#moved"), "moved 3; 0 failed");
    assert_eq!(fixture.depth("orders-dlq").0, 2, "only the auth group left");
    assert_eq!(fixture.depth("orders").0, orders_before + 3);
}

#[test]
fn api_refuses_unconfirmed_moves_big_bodies_and_missing_tokens() {
    let fixture = build();
    let mut args = fixture.store_args();
    args.extend(["--dlq".to_string(), "orders-dlq".to_string()]);
    let (_server, url) = serve(&args);

    let metrics = ureq::get(&format!("{url}/metrics"))
        .call()
        .expect("metrics")
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("# TYPE dlq_healer_messages_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dlq_healer_queue_messages{queue=\"orders-dlq\",state=\"visible\"} 5"),
        "{metrics}"
    );
    // The retention sweep forgets old metrics: the counters must not go down (Prometheus would
    // take the drop for a restart and the whole total for new).
    let received_auth = |metrics: &str| -> Option<u64> {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("dlq_healer_messages_total{class=\"auth\",action=\"received\"} ")
            })
            .and_then(|v| v.parse().ok())
    };
    let before = received_auth(&metrics).filter(|&n| n > 0);
    assert!(before.is_some(), "{metrics}");
    rusqlite::Connection::open(&fixture.db)
        .unwrap()
        .execute("DELETE FROM metrics", [])
        .unwrap();
    let swept = ureq::get(&format!("{url}/metrics"))
        .call()
        .expect("metrics")
        .into_string()
        .unwrap();
    assert_eq!(received_auth(&swept), before, "{swept}");

    let post = |body: &str| match ureq::post(&format!("{url}/api/redrive"))
        .set("content-type", "application/json")
        .send_string(body)
    {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    };
    let (status, body) = post(r#"{"class":"auth","dry_run":false}"#);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("dry run first"), "{body}");
    let (status, body) = post(r#"{"class":"authz"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("class \\\"authz\\\" is not a failure class") && !body.contains("--class"),
        "the error names the request's field, not the CLI's flag: {body}"
    );
    // A body announced over the limit is refused at once, before any of it is read.
    {
        use std::io::{Read, Write};
        let address = url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        write!(
            stream,
            "POST /api/redrive HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{{"
        )
        .unwrap();
        let mut answer = [0u8; 512];
        let read = stream.read(&mut answer).expect("an answer within 3 s");
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    // A body announced longer than it is sent is waited for a few seconds, not for ever.
    {
        use std::io::{Read, Write};
        let address = url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "POST /api/redrive HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"class\":"
        )
        .unwrap();
        let mut answer = [0u8; 512];
        let read = stream
            .read(&mut answer)
            .expect("an answer before the read timeout");
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    // Over the 16 KiB limit, yet small enough to sit whole in the loopback socket's buffers:
    // the client has written all of it before the server answers 413 and closes, so it reads
    // the answer instead of failing its write with a broken pipe (a larger body did that once).
    let (status, body) = post(&format!(
        r#"{{"class":"auth","pad":"{}"}}"#,
        "x".repeat(17 * 1024)
    ));
    assert_eq!(status, 413);
    let answer: Value = serde_json::from_str(&body).expect("errors are JSON");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("over 16384 bytes"),
        "{body}"
    );
    match ureq::get(&format!("{url}/api/nope")).call() {
        Err(ureq::Error::Status(404, r)) => {
            let body: Value = r.into_json().expect("a 404 in JSON");
            assert!(body["error"].as_str().unwrap().contains("/api/nope"));
        }
        other => panic!("expected 404, got {other:?}"),
    }
    match ureq::post(&format!("{url}/api/stats")).send_string("") {
        Err(ureq::Error::Status(405, r)) => {
            assert!(r.header("allow").is_some_and(|a| a.contains("GET")));
            let body: Value = r.into_json().expect("a 405 in JSON");
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("does not take POST")
            );
        }
        other => panic!("expected 405, got {other:?}"),
    }
    // Other web sites are kept out: a name that resolves to 127.0.0.1 (DNS rebinding), a form's
    // plain-text POST, a POST from another origin; and no answer may be framed.
    match ureq::get(&format!("{url}/api/decisions"))
        .set("Host", "attacker.example.com")
        .call()
    {
        Err(ureq::Error::Status(421, r)) => {
            assert!(r.into_string().unwrap().contains("loopback host"));
        }
        other => panic!("expected 421, got {other:?}"),
    }
    let send = |content_type: &str, origin: Option<&str>| {
        let mut request =
            ureq::post(&format!("{url}/api/redrive")).set("content-type", content_type);
        if let Some(origin) = origin {
            request = request.set("origin", origin);
        }
        match request.send_string(r#"{"class":"auth","dry_run":true}"#) {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(send("text/plain", None), 415);
    assert_eq!(
        send("application/json", Some("http://attacker.example.com")),
        403
    );
    assert_eq!(send("application/json; charset=utf-8", Some(&url)), 200);
    let page = ureq::get(&format!("{url}/")).call().expect("the page");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));

    let (status, body) = post(r#"{"class":"auth","dry_run":true}"#);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["report"]["moved"].as_array().unwrap().len(), 3);
    let (status, body) = post(&format!(
        r#"{{"class":"timeout","dry_run":false,"confirm":{}}}"#,
        answer["confirm"]
    ));
    assert_eq!(
        status, 409,
        "a token confirms only its own selection: {body}"
    );
    assert_eq!(fixture.depth("orders-dlq").0, 5, "nothing moved");

    // The confirmed move takes what its dry run listed, not what arrived in the group since,
    // and its token confirms one move.
    fixture.dead_letter(
        r#"{"order":6,"tier":"gold"}"#,
        "ExpiredTokenException",
        "token expired for user 6",
        &[],
    );
    let confirm = format!(
        r#"{{"class":"auth","dry_run":false,"confirm":{}}}"#,
        answer["confirm"]
    );
    let (status, body) = post(&confirm);
    assert_eq!(status, 200, "{body}");
    let done: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(done["report"]["moved"], answer["report"]["moved"], "{body}");
    assert_eq!(fixture.depth("orders").0, 3);
    assert_eq!(
        fixture.depth("orders-dlq").0,
        3,
        "the new one and the timeouts stay"
    );
    let (status, body) = post(&confirm);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("used already"), "{body}");
    assert_eq!(fixture.depth("orders").0, 3, "nothing moved twice");

    // Beyond loopback without a token: refused at start.
    let output = bin()
        .arg("serve")
        .args(fixture.store_args())
        .args(["--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("without --token"));

    // With a token, requests without it are refused.
    let mut args = fixture.store_args();
    args.extend(["--token".to_string(), "s3cret-token".to_string()]);
    let (_guarded, url) = serve(&args);
    match ureq::get(&format!("{url}/api/stats")).call() {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    let ok = ureq::get(&format!("{url}/api/stats"))
        .set("authorization", "Bearer s3cret-token")
        .call()
        .expect("the token opens the API");
    assert_eq!(ok.status(), 200);
}

#[test]
fn a_dry_run_of_a_big_group_lists_a_hundred_moves_and_counts_them_all() {
    let fixture = build();
    let letters: Vec<String> = (0..130)
        .map(|n| format!(r#"{{"body":"{{\"order\":{n}}}","error":"503 Service Unavailable","attributes":{{}}}}"#))
        .collect();
    let file = fixture.dir.path().join("letters.jsonl");
    std::fs::write(&file, letters.join("\n")).unwrap();
    run_ok(&mut fixture.cmd(&["queue", "load", "orders-dlq", file.to_str().unwrap()]));
    let mut args = fixture.store_args();
    args.extend(["--dlq".to_string(), "orders-dlq".to_string()]);
    let (_server, url) = serve(&args);
    let post = |body: &str| -> Value {
        ureq::post(&format!("{url}/api/redrive"))
            .set("content-type", "application/json")
            .send_string(body)
            .expect("an answer")
            .into_json()
            .unwrap()
    };
    let answer = post(r#"{"class":"dependency","dry_run":true}"#);
    assert_eq!(answer["moves"], 130, "{answer}");
    assert_eq!(answer["report"]["moved"].as_array().unwrap().len(), 100);
    let done = post(&format!(
        r#"{{"class":"dependency","dry_run":false,"confirm":{}}}"#,
        answer["confirm"]
    ));
    assert_eq!(done["moves"], 130, "{done}");
    assert_eq!(fixture.depth("orders").0, 130);
}

/// POST a redrive request; the status and the answer.
fn post_redrive(url: &str, body: &str) -> (u16, Value) {
    let answer = match ureq::post(&format!("{url}/api/redrive"))
        .set("content-type", "application/json")
        .send_string(body)
    {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    };
    let value = serde_json::from_str(&answer.1)
        .unwrap_or_else(|e| panic!("{e}: the answer is not JSON: {}", answer.1));
    (answer.0, value)
}

/// A 503 dead letter whose context names `source` as the queue it came from.
fn dependency_letter_from(fixture: &operator_fixture::Fixture, source: &str, error: &str) {
    let context = json!({
        "v": 1,
        "error": { "message": error },
        "source": source,
        "failed_at": "2026-01-01T10:00:00Z"
    });
    let line = json!({
        "body": "{\"order\":9}",
        "attributes": { "dlq-context": context.to_string() }
    });
    let file = fixture.dir.path().join(format!("{source}.jsonl"));
    std::fs::write(&file, line.to_string()).unwrap();
    run_ok(&mut fixture.cmd(&["queue", "load", "orders-dlq", file.to_str().unwrap()]));
}

#[test]
fn dashboard_moves_fail_in_the_dry_run_when_their_queue_is_missing_and_a_failed_move_keeps_its_token()
 {
    let fixture = build();
    dependency_letter_from(&fixture, "no-such-queue", "503 Service Unavailable");
    let mut args = fixture.store_args();
    args.extend(["--dlq".to_string(), "orders-dlq".to_string()]);
    let (_server, url) = serve(&args);

    // As in the CLI's dry run, a move to a queue that cannot be read is a failure, not a move
    // to confirm.
    let (status, answer) = post_redrive(&url, r#"{"class":"dependency","dry_run":true}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["moves"], 0, "{answer}");
    let failed = answer["report"]["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{answer}");
    assert!(answer["confirm"].is_null(), "nothing to confirm: {answer}");
    let (status, answer) = post_redrive(&url, r#"{"class":"auth","dry_run":true,"limit":0}"#);
    assert_eq!(status, 400, "{answer}");
    assert!(
        failed[0].as_str().unwrap().contains("no-such-queue"),
        "{answer}"
    );

    // A move that fails before it moves anything (the store locked by another process) gives
    // its token back: the same confirmation works once the lock is gone.
    let (_, dry_run) = post_redrive(&url, r#"{"class":"auth","dry_run":true}"#);
    assert_eq!(dry_run["moves"], 3, "{dry_run}");
    let confirm = format!(
        r#"{{"class":"auth","dry_run":false,"confirm":{}}}"#,
        dry_run["confirm"]
    );
    let lock = rusqlite::Connection::open(&fixture.db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, answer) = post_redrive(&url, &confirm);
    assert_eq!(status, 500, "{answer}");
    lock.execute_batch("ROLLBACK").unwrap();
    let (status, answer) = post_redrive(&url, &confirm);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["moves"], 3, "{answer}");
    assert_eq!(
        fixture.depth("orders-dlq").0,
        3,
        "the timeouts and the 503 stay"
    );

    // A move says how many of its dry run's messages had left the DLQ meanwhile.
    let (_, dry_run) = post_redrive(&url, r#"{"class":"timeout","dry_run":true}"#);
    assert_eq!(dry_run["moves"], 2, "{dry_run}");
    run_ok(&mut fixture.cmd(&[
        "redrive",
        "--dlq",
        "orders-dlq",
        "--class",
        "timeout",
        "--limit",
        "1",
    ]));
    let (status, answer) = post_redrive(
        &url,
        &format!(
            r#"{{"class":"timeout","dry_run":false,"confirm":{}}}"#,
            dry_run["confirm"]
        ),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["moves"].as_u64(), answer["left_meanwhile"].as_u64()),
        (Some(1), Some(1)),
        "{answer}"
    );

    // A store removed from under the dashboard is not shown as if it were still there.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", fixture.db.display()));
    }
    match ureq::get(&format!("{url}/api/stats")).call() {
        Err(ureq::Error::Status(503, r)) => {
            let body = r.into_string().unwrap();
            assert!(body.contains("was removed after serve started"), "{body}");
        }
        other => panic!("expected 503, got {other:?}"),
    }
}

#[test]
fn archived_records_on_the_dashboard_have_their_secrets_redacted() {
    let fixture = build();
    fixture.dead_letter(
        r#"{"order":7,"password":"hunter2"}"#,
        "ExpiredTokenException",
        "token expired; retried with password=hunter2",
        &["api_key=AKIAIOSFODNN7EXAMPLE"],
    );
    fixture.heal();
    let listing: Value = serde_json::from_slice(
        &run_ok(&mut fixture.cmd(&[
            "archive", "list", "--json", "--class", "auth", "--limit", "0",
        ]))
        .stdout,
    )
    .unwrap();
    let key = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"]["key"].as_str().unwrap().to_string())
        .find(|key| {
            let shown = run_ok(&mut fixture.cmd(&["archive", "show", key])).stdout;
            String::from_utf8_lossy(&shown).contains("hunter2")
        })
        .expect("the CLI shows the record with the secret as stored");

    let mut args = fixture.store_args();
    args.extend(["--token".to_string(), "s3cret-token".to_string()]);
    let (_server, url) = serve(&args);
    let get = |path: &str| {
        ureq::get(&format!("{url}{path}"))
            .set("authorization", "bearer s3cret-token")
            .call()
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .into_string()
            .unwrap()
    };
    let path = format!("/archive/{key}");
    for (what, text) in [("page", get(&path)), ("API", get(&format!("/api{path}")))] {
        assert!(
            !text.contains("hunter2") && !text.contains("AKIAIOSFODNN7EXAMPLE"),
            "{what}: {text}"
        );
        assert!(text.contains("[REDACTED"), "{what}: {text}");
    }
    assert!(
        get(&path).contains("archive show KEY"),
        "the page says where the full record is"
    );
    // A page opened with the token in its address is sent on without it.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let opened = agent
        .get(&format!("{url}{path}?token=s3cret-token"))
        .call()
        .expect("the archive page opens with its token");
    assert_eq!(
        (opened.status(), opened.header("location")),
        (303, Some(path.as_str()))
    );

    // Opening the page with its token sets the cookie and leaves the token out of the address.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let opened = agent
        .get(&format!("{url}/?token=s3cret-token"))
        .call()
        .expect("the page opens with its token");
    assert_eq!(opened.status(), 303);
    assert_eq!(opened.header("location"), Some("/"));
    assert!(
        opened
            .header("set-cookie")
            .is_some_and(|c| c.starts_with("dlq_healer_token=s3cret-token;")),
        "{:?}",
        opened.header("set-cookie")
    );
}

#[test]
fn in_the_browser_long_errors_wrap_charts_label_their_bars_and_a_move_is_one_click() {
    let fixture = build();
    // An error with a 3,000-character word (a URL, a token, a minified payload).
    dependency_letter_from(
        &fixture,
        "no-such-queue",
        &format!(
            "503 Service Unavailable: upstream said {}",
            "x".repeat(3000)
        ),
    );
    let mut args = fixture.store_args();
    args.extend(["--dlq".to_string(), "orders-dlq".to_string()]);
    let (_server, url) = serve(&args);
    let driver = Driver::start();
    driver.load(&format!("{url}/"));

    // The long word wraps: no panel is wider than its box, and every group's dry-run button
    // is in the window.
    assert_eq!(
        driver.overflowing_panels(),
        json!([]),
        "panels wider than their box"
    );
    assert_eq!(driver.dry_run_buttons_out_of_view(), json!(0));
    // Each bar chart names its bars inside the drawing.
    let labels = driver.script(
        "return [...document.querySelectorAll('svg text.bar-label')].map(t => [t.textContent, t.getBBox().y + t.getBBox().height <= t.ownerSVGElement.viewBox.baseVal.height]);",
    );
    let labels = labels.as_array().unwrap();
    assert!(
        labels.iter().any(|l| l[0] == "orders-dlq"),
        "the depth chart names its queues: {labels:?}"
    );
    assert!(labels.iter().all(|l| l[1] == true), "{labels:?}");

    // On a phone-sized window the groups become cards: still no panel wider than its box,
    // and every dry-run button in view.
    driver.call(
        "POST",
        "/window/rect",
        json!({ "width": 400, "height": 1000 }),
    );
    driver.load(&format!("{url}/"));
    assert!(driver.script("return window.innerWidth;").as_u64().unwrap() <= 400);
    assert_eq!(
        driver.overflowing_panels(),
        json!([]),
        "panels wider than their box"
    );
    assert_eq!(driver.dry_run_buttons_out_of_view(), json!(0));
    driver.call(
        "POST",
        "/window/rect",
        json!({ "width": 1400, "height": 1400 }),
    );
    driver.load(&format!("{url}/"));

    // A group whose queue is missing: the dry run shows why, and offers no move.
    driver.click("tr.group[data-class='dependency'] button.dry-run");
    let failures = driver.text(".failures");
    assert!(failures.contains("no-such-queue"), "{failures}");
    let offered = driver.script("return document.querySelector('#confirm-move') !== null;");
    assert_eq!(offered, json!(false));

    // A move is one click: the button goes away with it.
    driver.click("tr.group[data-class='auth'] button.dry-run");
    assert_eq!(driver.text("#would-move"), "3");
    driver.click("#confirm-move");
    driver.accept_dialog();
    assert_eq!(driver.text("#moved"), "moved 3; 0 failed");
    let button_left = driver.script("return document.querySelector('#confirm-move') !== null;");
    assert_eq!(button_left, json!(false));
    assert!(fixture.depth("orders").0 >= 3);
}
