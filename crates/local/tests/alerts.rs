//! Alerts: the dedup window shared between processes, the alerts table, and the webhook against a
//! tiny HTTP server on 127.0.0.1.

mod common;

use chrono::Duration;
use common::Fixture;
use dlq_healer_core::contract::sample_alert;
use dlq_healer_core::ports::Alerter;
use dlq_healer_local::{AlertSettings, LocalAlerter};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

/// A server that answers each request with the next status of `statuses` (then 200) and keeps
/// the request bodies.
fn webhook_server(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            assert!(request_line.starts_with("POST /hook"), "{request_line}");
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                let content_length = header
                    .split_once(':')
                    .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"));
                if let Some((_, value)) = content_length {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            seen.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            let status = statuses.next().unwrap_or(200);
            let response =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            stream.write_all(response.as_bytes()).unwrap();
        }
    });
    (url, bodies)
}

fn settings(window: Duration, url: Option<String>) -> AlertSettings {
    AlertSettings {
        webhook_backoff: StdDuration::from_millis(10),
        webhook_timeout: StdDuration::from_secs(2),
        ..AlertSettings::new(window, url)
    }
}

#[tokio::test]
async fn the_webhook_gets_slack_json_and_a_500_is_retried() {
    let fixture = Fixture::new();
    let (url, bodies) = webhook_server(vec![500]);
    let alerter = LocalAlerter::with_settings(
        fixture.store.clone(),
        settings(Duration::minutes(10), Some(url)),
    );
    let now = fixture.store.now();
    let mut alert = sample_alert("fp1", "order-7", now);
    alert.error = "401 Unauthorized: Bearer abcdefghijklmnop rejected".into();
    let report = alerter.raise(vec![alert], now).await.unwrap();
    assert_eq!(report.sent, 1);
    assert!(alerter.wait_for_webhooks(StdDuration::from_secs(10)));

    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 2, "one failed try, one retry");
    assert_eq!(bodies[0], bodies[1]);
    let text = bodies[1]["text"].as_str().unwrap();
    assert!(text.contains("auth"), "{text}");
    assert!(text.contains("orders"), "{text}");
    assert!(
        !text.contains("abcdefghijklmnop"),
        "secrets redacted: {text}"
    );
    let details = bodies[1]["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(details.contains("order-7"), "{details}");
    let stats = alerter.webhook_stats();
    assert_eq!((stats.delivered, stats.retries, stats.failed), (1, 1, 0));
}

#[tokio::test]
async fn the_webhook_gives_up_after_three_tries_without_blocking_healing() {
    let fixture = Fixture::new();
    let (url, bodies) = webhook_server(vec![503, 503, 503, 503]);
    let alerter = LocalAlerter::with_settings(
        fixture.store.clone(),
        settings(Duration::minutes(10), Some(url)),
    );
    let now = fixture.store.now();
    let report = alerter
        .raise(vec![sample_alert("fp1", "k", now)], now)
        .await
        .unwrap();
    assert_eq!(report.sent, 1, "raise returns before the webhook answers");
    assert!(alerter.wait_for_webhooks(StdDuration::from_secs(10)));
    assert_eq!(bodies.lock().unwrap().len(), 3);
    assert_eq!(alerter.webhook_stats().failed, 1);
    // The alert is still on record.
    assert_eq!(alerter.sent_count().unwrap(), 1);
}

#[tokio::test]
async fn a_full_webhook_queue_drops_and_counts() {
    let fixture = Fixture::new();
    // A listener that never answers: the worker is stuck on the first alert until it times out.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let alerter = LocalAlerter::with_settings(
        fixture.store.clone(),
        AlertSettings {
            webhook_queue: 1,
            webhook_tries: 1,
            webhook_timeout: StdDuration::from_millis(500),
            ..settings(Duration::minutes(10), Some(url))
        },
    );
    let now = fixture.store.now();
    let alerts = (0..10)
        .map(|i| sample_alert(&format!("fp{i}"), "k", now))
        .collect();
    let started = std::time::Instant::now();
    let report = alerter.raise(alerts, now).await.unwrap();
    assert!(
        started.elapsed() < StdDuration::from_millis(400),
        "never blocks"
    );
    assert_eq!(report.sent, 10);
    let dropped = alerter.webhook_stats().dropped;
    assert!(dropped >= 8, "dropped {dropped}");
    assert!(alerter.wait_for_webhooks(StdDuration::from_secs(10)));
    drop(listener);
}

#[tokio::test]
async fn two_processes_share_one_dedup_window() {
    let fixture = Fixture::new();
    let window = Duration::minutes(10);
    let first = LocalAlerter::new(fixture.store.clone(), window, None);
    let second = LocalAlerter::new(fixture.reopen(), window, None);
    let t0 = fixture.store.now();
    assert_eq!(
        first
            .raise(vec![sample_alert("fp", "k1", t0)], t0)
            .await
            .unwrap()
            .sent,
        1
    );
    let held = second
        .raise(
            vec![sample_alert("fp", "k2", t0 + Duration::minutes(1))],
            t0 + Duration::minutes(1),
        )
        .await
        .unwrap();
    assert_eq!((held.sent, held.suppressed), (0, 1));
    let digest = first
        .flush_digests(t0 + Duration::minutes(11))
        .await
        .unwrap();
    assert_eq!(digest.sent, 1);
    let listed = second.recent(10).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].digest, "newest first: the digest");
    assert_eq!(listed[0].sample_keys, vec!["k2".to_string()]);
    assert_eq!(listed[0].count, 1);
    assert!(!listed[1].digest);
}

#[tokio::test]
async fn a_stopping_process_sends_what_its_open_windows_hold_back_and_they_stay_open() {
    let fixture = Fixture::new();
    let window = Duration::minutes(10);
    let alerter = LocalAlerter::new(fixture.store.clone(), window, None);
    let t0 = fixture.store.now();
    let at = |minutes| t0 + Duration::minutes(minutes);
    alerter
        .raise(vec![sample_alert("fp", "k1", t0)], t0)
        .await
        .unwrap();
    alerter
        .raise(vec![sample_alert("quiet", "q1", t0)], t0)
        .await
        .unwrap();
    for (minute, key) in [(1, "k2"), (2, "k3")] {
        let held = alerter
            .raise(vec![sample_alert("fp", key, at(minute))], at(minute))
            .await
            .unwrap();
        assert_eq!(held.suppressed, 1);
    }
    assert_eq!(
        alerter.flush_digests(at(3)).await.unwrap().sent,
        0,
        "the window is open"
    );
    let sent = alerter.send_held_back_digests(at(3)).await.unwrap();
    assert_eq!(
        sent.sent, 1,
        "one digest, for the window that holds repeats back"
    );
    let digest = &alerter.recent(1).unwrap()[0];
    assert!(digest.digest);
    assert_eq!(digest.count, 2);
    assert_eq!(digest.sample_keys, vec!["k2".to_string(), "k3".to_string()]);
    // Both windows stay open: a repeat is still held back, the quiet one's too.
    for fingerprint in ["fp", "quiet"] {
        let held = alerter
            .raise(vec![sample_alert(fingerprint, "again", at(4))], at(4))
            .await
            .unwrap();
        assert_eq!((held.sent, held.suppressed), (0, 1), "{fingerprint}");
    }
    assert_eq!(alerter.send_held_back_digests(at(5)).await.unwrap().sent, 2);
    assert_eq!(
        alerter.send_held_back_digests(at(5)).await.unwrap().sent,
        0,
        "nothing twice"
    );
}
