//! A fault-injecting HTTP/1.1 proxy in front of the emulator. The SDK speaks plain HTTP/1.1 to
//! an `http://` endpoint, so the proxy reads each request whole (headers, then a Content-Length
//! or chunked body), and then, on a seeded random fraction of requests:
//!
//! - answers `500` or `503` with the service's own error shape (JSON for DynamoDB and SQS, query
//!   XML for SNS, REST XML for S3),
//! - answers a throttling error (`400` `ProvisionedThroughputExceededException` for DynamoDB,
//!   `RequestThrottled` for SQS, `Throttling` for SNS; `503 SlowDown` for S3, its only one),
//! - drops the connection before forwarding (nothing happened), or
//! - forwards, lets the emulator act, and drops the connection instead of answering: the call
//!   took effect but the client saw an error.
//!
//! Every other request is forwarded as is, after a delay where one is set for its operation (a
//! slow service). One request per connection (`Connection: close` both
//! ways), so a dropped connection never hides a second request.

#![allow(dead_code)]

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// `500` with an internal error.
    Status500,
    /// `503` service unavailable.
    Status503,
    /// The service's throttling error.
    Throttle,
    /// Connection dropped before forwarding.
    DropBefore,
    /// Forwarded and acted on, then the connection dropped without an answer.
    DropAfter,
}

const FAULTS: [Fault; 5] = [
    Fault::Status500,
    Fault::Status503,
    Fault::Throttle,
    Fault::DropBefore,
    Fault::DropAfter,
];

/// What the proxy saw.
#[derive(Debug, Clone, Default)]
pub struct ProxyStats {
    /// Requests by `Service.Operation`.
    pub requests: BTreeMap<String, u64>,
    /// Faults by operation and kind.
    pub faults: BTreeMap<(String, Fault), u64>,
    /// Entries of `SQS.SendMessageBatch` requests that reached the emulator but whose answer
    /// was dropped: sends that happened without the client knowing.
    pub unacknowledged_send_entries: u64,
}

impl ProxyStats {
    /// All faults injected.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }

    /// All requests.
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
}

struct Shared {
    upstream: String,
    rate: f64,
    rng: Mutex<SmallRng>,
    stats: Mutex<ProxyStats>,
    enabled: AtomicBool,
    forced: Mutex<Vec<(String, Fault, u32)>>,
    delays: Mutex<BTreeMap<String, Duration>>,
}

/// A running proxy.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy to `upstream` (`http://host:port`) failing `rate` of the requests, seeded.
    pub async fn start(upstream: &str, rate: f64, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            upstream: upstream.trim_start_matches("http://").to_string(),
            rate,
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            stats: Mutex::new(ProxyStats::default()),
            enabled: AtomicBool::new(true),
            forced: Mutex::new(Vec::new()),
            delays: Mutex::new(BTreeMap::new()),
        });
        let accept = shared.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = accept.clone();
                tokio::spawn(async move {
                    let _ = handle(shared, client).await;
                });
            }
        });
        FaultProxy { endpoint, shared }
    }

    /// What the proxy saw so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats.lock().unwrap().clone()
    }

    /// Give the next `times` requests of `operation` (`Service.Operation`) `fault`, whatever the
    /// rate says (and even while random faults are off).
    pub fn force(&self, operation: &str, fault: Fault, times: u32) {
        self.shared
            .forced
            .lock()
            .unwrap()
            .push((operation.to_string(), fault, times));
    }

    /// Hold every request of `operation` (`Service.Operation`) for `by` before handling it.
    pub fn slow_down(&self, operation: &str, by: Duration) {
        self.shared
            .delays
            .lock()
            .unwrap()
            .insert(operation.to_string(), by);
    }

    /// Turn random fault injection on or off.
    pub fn set_enabled(&self, on: bool) {
        self.shared.enabled.store(on, Ordering::SeqCst);
    }
}

struct Request {
    raw: Vec<u8>,
    operation: String,
    service: &'static str,
    body: Vec<u8>,
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Replace any `Connection` header of a message head by `Connection: close`.
fn close_after(head: &str) -> String {
    let mut out = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

async fn read_request(client: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let mut body = Vec::new();
    if header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        // Keep the chunked framing as is; only find its end.
        loop {
            let mut size_line = String::new();
            client.read_line(&mut size_line).await?;
            body.extend_from_slice(size_line.as_bytes());
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if size == 0 {
                // Trailers, then an empty line.
                loop {
                    let mut trailer = String::new();
                    client.read_line(&mut trailer).await?;
                    body.extend_from_slice(trailer.as_bytes());
                    if trailer == "\r\n" || trailer.is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            client.read_exact(&mut chunk).await?;
            body.extend_from_slice(&chunk);
        }
    } else if let Some(length) = header(&head, "content-length").and_then(|v| v.parse().ok()) {
        body = vec![0; length];
        client.read_exact(&mut body).await?;
    }
    let (service, operation) = if let Some(target) = header(&head, "x-amz-target") {
        let (prefix, name) = target.split_once('.').unwrap_or((target, ""));
        let service = if prefix.starts_with("DynamoDB") {
            "DynamoDB"
        } else {
            "SQS"
        };
        (service, format!("{service}.{name}"))
    } else if body.starts_with(b"Action=") {
        let text = String::from_utf8_lossy(&body);
        let action = text
            .split('&')
            .next()
            .and_then(|a| a.strip_prefix("Action="))
            .unwrap_or("")
            .to_string();
        ("SNS", format!("SNS.{action}"))
    } else {
        let method = head.split(' ').next().unwrap_or("").to_string();
        ("S3", format!("S3.{method}"))
    };
    let mut raw = close_after(&head).into_bytes();
    raw.extend_from_slice(&body);
    Ok(Some(Request {
        raw,
        operation,
        service,
        body,
    }))
}

/// The service's own error answer for a fault.
fn error_response(service: &str, fault: Fault) -> Vec<u8> {
    let (status, reason) = match (service, fault) {
        (_, Fault::Status500) => (500, "Internal Server Error"),
        (_, Fault::Status503) | ("S3", Fault::Throttle) => (503, "Service Unavailable"),
        _ => (400, "Bad Request"),
    };
    let (content_type, extra, body) = match service {
        "DynamoDB" | "SQS" => {
            let code = match (service, fault) {
                ("DynamoDB", Fault::Throttle) => "ProvisionedThroughputExceededException",
                ("SQS", Fault::Throttle) => "RequestThrottled",
                (_, Fault::Status503) => "ServiceUnavailable",
                ("DynamoDB", _) => "InternalServerError",
                _ => "InternalError",
            };
            let namespace = if service == "DynamoDB" {
                "com.amazonaws.dynamodb.v20120810"
            } else {
                "com.amazonaws.sqs"
            };
            let extra = if service == "SQS" {
                let fault_side = if status == 400 { "Sender" } else { "Receiver" };
                format!("x-amzn-query-error: {code};{fault_side}\r\n")
            } else {
                String::new()
            };
            (
                "application/x-amz-json-1.0",
                extra,
                format!(
                    r#"{{"__type":"{namespace}#{code}","message":"injected by the fault proxy"}}"#
                ),
            )
        }
        "SNS" => {
            let code = match fault {
                Fault::Throttle => "Throttling",
                Fault::Status503 => "ServiceUnavailable",
                _ => "InternalFailure",
            };
            (
                "text/xml",
                String::new(),
                format!(
                    r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>{}</Type><Code>{code}</Code><Message>injected by the fault proxy</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"#,
                    if status == 400 { "Sender" } else { "Receiver" }
                ),
            )
        }
        _ => {
            let code = match fault {
                Fault::Throttle => "SlowDown",
                Fault::Status503 => "ServiceUnavailable",
                _ => "InternalError",
            };
            (
                "application/xml",
                String::new(),
                format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>injected by the fault proxy</Message><RequestId>fault-proxy</RequestId></Error>"#
                ),
            )
        }
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{extra}x-amzn-RequestId: fault-proxy\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Entries of an `SQS.SendMessageBatch` JSON request.
fn send_entries(body: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("Entries")?.as_array().map(|a| a.len() as u64))
        .unwrap_or(0)
}

async fn forward(shared: &Shared, request: &Request) -> std::io::Result<Vec<u8>> {
    let mut upstream = TcpStream::connect(&shared.upstream).await?;
    upstream.write_all(&request.raw).await?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).await?;
    // Make the client close its side too: the proxy serves one request per connection.
    if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&response[..end + 4]).to_string();
        let mut out = close_after(&head).into_bytes();
        out.extend_from_slice(&response[end + 4..]);
        response = out;
    }
    Ok(response)
}

async fn handle(shared: Arc<Shared>, client: TcpStream) -> std::io::Result<()> {
    let mut client = BufReader::new(client);
    let Some(request) = read_request(&mut client).await? else {
        return Ok(());
    };
    let forced = {
        let mut forced = shared.forced.lock().unwrap();
        let found = forced
            .iter_mut()
            .find(|(operation, _, times)| *operation == request.operation && *times > 0);
        found.map(|(_, fault, times)| {
            *times -= 1;
            *fault
        })
    };
    let fault = forced.or_else(|| {
        let mut rng = shared.rng.lock().unwrap();
        let roll: f64 = rng.r#gen();
        let kind = FAULTS[rng.gen_range(0..FAULTS.len())];
        (shared.enabled.load(Ordering::SeqCst) && roll < shared.rate).then_some(kind)
    });
    {
        let mut stats = shared.stats.lock().unwrap();
        *stats.requests.entry(request.operation.clone()).or_default() += 1;
        if let Some(fault) = fault {
            *stats
                .faults
                .entry((request.operation.clone(), fault))
                .or_default() += 1;
        }
    }
    let delay = shared
        .delays
        .lock()
        .unwrap()
        .get(&request.operation)
        .copied();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut client = client.into_inner();
    match fault {
        None => {
            let response = forward(&shared, &request).await?;
            client.write_all(&response).await?;
            client.shutdown().await?;
        }
        Some(Fault::DropBefore) => drop(client),
        Some(Fault::DropAfter) => {
            forward(&shared, &request).await?;
            if request.operation == "SQS.SendMessageBatch" {
                shared.stats.lock().unwrap().unacknowledged_send_entries +=
                    send_entries(&request.body);
            }
            drop(client);
        }
        Some(fault) => {
            client
                .write_all(&error_response(request.service, fault))
                .await?;
            client.shutdown().await?;
        }
    }
    Ok(())
}
