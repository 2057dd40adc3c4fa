//! Alerts: never the raw body; secrets redacted; one alert per fingerprint per window, the rest
//! folded into a digest.

use crate::class::FailureClass;
use chrono::{DateTime, Duration, Utc};
use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// How many sample keys an alert carries.
pub const MAX_SAMPLE_KEYS: usize = 5;

/// Which windows' digests to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestsDue {
    /// Those of windows that have closed (the repeats they held back, or none).
    OfClosedWindows,
    /// Every window's that holds repeats back, closed or not: for a process that stops, whose
    /// windows would otherwise wait for their fingerprint's next alert. An open window stays
    /// open, so later repeats are still held back, into another digest.
    HeldBackNow,
}

impl DigestsDue {
    /// Whether the digest of a window that is `closed` (or open) is due.
    pub fn takes(self, closed: bool) -> bool {
        closed || self == DigestsDue::HeldBackNow
    }
}

/// What became of a message's alert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AlertOutcome {
    /// No alert: the rules asked for none, or raising it failed.
    #[default]
    None,
    /// The alert about it went out.
    Sent,
    /// The dedup window held it back; it goes out in the window's digest.
    HeldBack,
}

/// One alert about one or more messages that share a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Class + normalized error + source, hashed.
    pub fingerprint: String,
    /// Failure class.
    pub class: FailureClass,
    /// Source queue, if known.
    pub source: Option<String>,
    /// Messages this alert stands for.
    pub count: u64,
    /// Some of their keys.
    pub sample_keys: Vec<String>,
    /// The error, with secrets redacted.
    pub error: String,
    /// Whether this is a digest of alerts held back during a window.
    pub digest: bool,
    /// When the first of these messages was seen.
    pub first_seen: DateTime<Utc>,
    /// When the last of these messages was seen.
    pub last_seen: DateTime<Utc>,
}

impl Alert {
    /// A one-line summary for logs, chat and e-mail subjects.
    pub fn headline(&self) -> String {
        let source = self.source.as_deref().unwrap_or("an unknown source");
        let what = match (self.digest, self.count) {
            (true, 1) => "more message",
            (true, _) => "more messages",
            (false, 1) => "message",
            (false, _) => "messages",
        };
        format!(
            "dlq-healer: {} {what} failed with {} from {source}: {}",
            self.count, self.class, self.error
        )
    }
}

/// What the dedup window remembers about one fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowState {
    /// When the window opened (the time of the alert that went out).
    pub opened_at: DateTime<Utc>,
    /// Messages held back since then.
    pub suppressed: u64,
    /// Sample keys of the held-back messages.
    pub sample_keys: Vec<String>,
    /// When the last held-back message was seen.
    pub last_seen: DateTime<Utc>,
}

/// What to do with an alert after consulting the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateOutcome {
    /// Alerts to send now: a digest of the closed window, then the new alert (either may be absent).
    pub send: Vec<Alert>,
    /// The new state to store for the fingerprint.
    pub state: WindowState,
    /// Messages held back by this call.
    pub suppressed: u64,
}

/// Pass an alert through its fingerprint's window: the first in a window goes out at once, the
/// rest are counted; when a new alert arrives after the window closed, the count goes out as a
/// digest before it.
pub fn gate(
    alert: Alert,
    state: Option<WindowState>,
    now: DateTime<Utc>,
    window: Duration,
) -> GateOutcome {
    match state {
        Some(mut open) if now < open.opened_at + window => {
            open.suppressed += alert.count;
            open.last_seen = now;
            for key in alert.sample_keys {
                if open.sample_keys.len() < MAX_SAMPLE_KEYS && !open.sample_keys.contains(&key) {
                    open.sample_keys.push(key);
                }
            }
            GateOutcome {
                send: Vec::new(),
                state: open,
                suppressed: alert.count,
            }
        }
        closed => {
            let mut send = Vec::new();
            if let Some(digest) = closed.and_then(|c| digest_of(&alert, c)) {
                send.push(digest);
            }
            let state = WindowState {
                opened_at: now,
                suppressed: 0,
                sample_keys: Vec::new(),
                last_seen: now,
            };
            send.push(alert);
            GateOutcome {
                send,
                state,
                suppressed: 0,
            }
        }
    }
}

/// The digest for a window that has closed, if anything was held back in it.
pub fn digest_of(template: &Alert, closed: WindowState) -> Option<Alert> {
    (closed.suppressed > 0).then(|| Alert {
        count: closed.suppressed,
        sample_keys: closed.sample_keys,
        digest: true,
        first_seen: closed.opened_at,
        last_seen: closed.last_seen,
        ..template.clone()
    })
}

/// Whether a window is over and its digest is due.
pub fn window_closed(state: &WindowState, now: DateTime<Utc>, window: Duration) -> bool {
    now >= state.opened_at + window
}

/// The secret patterns with their replacements, applied in order, and all of them as one set,
/// which tells in one pass over a text whether any applies (most texts hold no secret).
struct SecretPatterns {
    any: RegexSet,
    each: Vec<(Regex, &'static str)>,
    /// What may be a payment card number: 13 to 19 digits, in groups or not; those whose
    /// check digit is right are redacted.
    card: Regex,
}

/// The candidates of [`SecretPatterns::card`].
const CARD_CANDIDATE: &str = r"\b[2-6](?:[ -]?[0-9]){12,18}\b";

fn secret_patterns() -> &'static SecretPatterns {
    static PATTERNS: OnceLock<SecretPatterns> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let each: Vec<(Regex, &'static str)> = [
            // An Authorization header's whole value: its scheme word (`ApiKey`, `Token`, a short
            // `Bearer`) is followed by the credential.
            (
                r#"(?i)(\\?"?(?:proxy-)?authorization\\?"?\s*[:=]\s*)(\\"(?:[^"\\]|\\[^"])*\\"|"[^"]*"|'[^']*'|[^\r\n,;}]+)"#,
                "$1[REDACTED]",
            ),
            (r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", "$1 [REDACTED]"),
            (r"\b(AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b", "[REDACTED-AWS-KEY]"),
            (r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", "[REDACTED-JWT]"),
            (
                r#"(?i)(\\?"?(?:password|passwd|passphrase|pwd|secret|(?:secret|secret[_-]?access|private|account|shared[_-]?access|api|master)[_-]?key|access[_-]?token|refresh[_-]?token|session[_-]?token|client[_-]?secret|token|x-api-key)\\?"?\s*[:=]\s*)(\\"(?:[^"\\]|\\[^"])*\\"|"[^"]*"|'[^']*'|[^\s,;&}]+)"#,
                "$1[REDACTED]",
            ),
            // URL-encoded, as in a logged query string: `password%3Dhunter2`.
            (
                r"(?i)\b(password|passwd|passphrase|pwd|secret|token|api_?key)(%3D)[^\s&%]+",
                "$1$2[REDACTED]",
            ),
            // `pass=`, and signatures of presigned URLs and SAS tokens: whole words only, unlike
            // the names above (`compass=` and `design=` hold no secret).
            (
                r"(?i)\b(pass|x-amz-signature|signature|sig)(\s*[:=]\s*)[^\s,;&}]+",
                "$1$2[REDACTED]",
            ),
            // In prose, a value with a digit or a symbol: `password is hunter2` (not `password is
            // required`).
            (
                r"(?i)\b(password|passwd|passphrase|secret)(\s+(?:is|was)\s+)\S*[0-9!@#$%^&*+=/]\S*",
                "$1$2[REDACTED]",
            ),
            // A 40-character AWS secret access key after the word `secret` or `key`.
            (
                r"(?i)\b(secret|key)(\s+)[A-Za-z0-9/+]{40}\b",
                "$1$2[REDACTED]",
            ),
            // Cookies: the whole header value.
            (
                r#"(?i)(\\?"?(?:set-)?cookie\\?"?\s*[:=]\s*)(\\"(?:[^"\\]|\\[^"])*\\"|"[^"]*"|'[^']*'|[^\r\n]+)"#,
                "$1[REDACTED]",
            ),
            // Tokens with a known prefix: Slack, GitHub, Stripe, npm, GitLab, Google API keys,
            // SendGrid, OpenAI and Anthropic (`sk-`, `sk-proj-`, `sk-ant-`).
            (
                r"\b(?:xox[abposr]-[A-Za-z0-9-]{10,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|npm_[A-Za-z0-9]{30,}|glpat-[A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{30,}|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}|sk-[A-Za-z0-9_-]{20,})",
                "[REDACTED-TOKEN]",
            ),
            // Incoming-webhook URLs (Slack's, Discord's): the path is the credential.
            (
                r"(?i)\b(hooks\.slack\.com/(?:services|workflows|triggers)/|discord(?:app)?\.com/api/webhooks/)[^\s\x22'<>]+",
                "$1[REDACTED]",
            ),
            // PEM private keys, to their end (or the end of the text, when it was cut).
            (
                r"(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\z)",
                "[REDACTED-PRIVATE-KEY]",
            ),
            // URL credentials, also with an empty user name (`redis://:password@host`).
            (r"(?i)(\w+://[^:/\s@]*:)[^@\s/]+@", "$1[REDACTED]@"),
        ]
        .into_iter()
        .map(|(pattern, replacement)| (Regex::new(pattern).expect("secret patterns compile"), replacement))
        .collect();
        let any = RegexSet::new(
            each.iter()
                .map(|(pattern, _)| pattern.as_str())
                .chain([CARD_CANDIDATE]),
        )
        .expect("secret patterns compile as a set");
        let card = Regex::new(CARD_CANDIDATE).expect("the card pattern compiles");
        SecretPatterns { any, each, card }
    })
}

/// The text with bearer tokens, AWS keys, JWTs, passwords and other secrets replaced.
pub fn redact(text: &str) -> String {
    let patterns = secret_patterns();
    if !patterns.any.is_match(text) {
        return text.to_string();
    }
    redact_in_turn(text, patterns)
}

/// Each pattern applied to what the ones before it left, then card numbers.
fn redact_in_turn(text: &str, patterns: &SecretPatterns) -> String {
    let mut out = text.to_string();
    for (pattern, replacement) in &patterns.each {
        if pattern.is_match(&out) {
            out = pattern.replace_all(&out, *replacement).into_owned();
        }
    }
    patterns
        .card
        .replace_all(&out, |found: &regex::Captures<'_>| {
            if is_card_number(&found[0]) {
                "[REDACTED-CARD]".to_string()
            } else {
                found[0].to_string()
            }
        })
        .into_owned()
}

/// Whether the digits of `text` (spaces and dashes aside) pass the Luhn check of card numbers.
fn is_card_number(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2 == 1, d * 2) {
            (false, _) => d,
            (true, doubled) if doubled > 9 => doubled - 9,
            (true, doubled) => doubled,
        })
        .sum();
    (13..=19).contains(&digits.len()) && sum.is_multiple_of(10)
}

/// The characters of an error's first line (or of a source) that alerts, the ledger and the
/// operator's views show.
pub const SHOWN_CHARS: usize = 300;

/// What alerts, the ledger and the operator's views show of an error text: its first line (later
/// lines are where payload dumps and stacks go), at most [`SHOWN_CHARS`] characters, secrets
/// redacted, control characters escaped.
pub fn shown_error(error: &str) -> String {
    let first_line = error.lines().next().unwrap_or("");
    escape_controls(&redact(&shortened(first_line, SHOWN_CHARS))).into_owned()
}

/// What alerts, the ledger and the operator's views show of a source queue (a URL may carry
/// credentials): at most [`SHOWN_CHARS`] characters, secrets redacted, control characters
/// escaped.
pub fn shown_source(source: &str) -> String {
    escape_controls(&redact(&shortened(source, SHOWN_CHARS))).into_owned()
}

/// At most `max` characters of `text`, ending in `…` when it was longer.
pub fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// `text` with its control characters (other than tab) and the invisible characters that
/// reorder text written as escapes (`\r`, `\u{1b}`, `\u{202e}`): text from a message cannot
/// move a terminal's cursor, overwrite a log line, change a window's title or disguise what it
/// says.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let escaped = |c: char| {
        c != '\t'
            && (c.is_control()
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    };
    if !text.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The error text with the parts that vary between occurrences (numbers, ids, hex) blanked, so
/// that the same failure on different messages has the same fingerprint.
pub fn normalize_error(text: &str) -> String {
    static VARIABLE: OnceLock<Regex> = OnceLock::new();
    let variable = VARIABLE.get_or_init(|| {
        Regex::new(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b|\b0x[0-9a-f]+\b|\b[0-9a-f]*[0-9][0-9a-f]*\b")
            .expect("normalization pattern compiles")
    });
    let first_line = text.lines().next().unwrap_or("");
    let short: String = first_line.chars().take(300).collect();
    variable
        .replace_all(&redact(&short).to_lowercase(), "#")
        .into_owned()
}

/// Class + normalized error + source, as a short hex hash.
pub fn fingerprint(class: FailureClass, error: &str, source: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(class.as_str());
    hasher.update([0]);
    hasher.update(normalize_error(error));
    hasher.update([0]);
    hasher.update(source.unwrap_or(""));
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn alert(count: u64, key: &str) -> Alert {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        Alert {
            fingerprint: "f".into(),
            class: FailureClass::Auth,
            source: Some("orders".into()),
            count,
            sample_keys: vec![key.into()],
            error: "401 Unauthorized".into(),
            digest: false,
            first_seen: t,
            last_seen: t,
        }
    }

    #[test]
    fn the_headline_counts_in_words_that_agree() {
        let one = alert(1, "k1");
        assert_eq!(
            one.headline(),
            "dlq-healer: 1 message failed with auth from orders: 401 Unauthorized"
        );
        let digest = Alert {
            digest: true,
            ..alert(4, "k2")
        };
        assert_eq!(
            digest.headline(),
            "dlq-healer: 4 more messages failed with auth from orders: 401 Unauthorized"
        );
        let one_more = Alert {
            digest: true,
            ..one
        };
        assert!(one_more.headline().contains(" 1 more message failed "));
    }

    #[test]
    fn secrets_are_redacted() {
        let cases = [
            ("Authorization: Bearer abc.def.ghijklmnop failed", "abc.def"),
            (
                "Authorization: ApiKey sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                "sk_live",
            ),
            ("Authorization: Token abcdef1234567890", "abcdef1234567890"),
            ("Authorization: Bearer s3cr3t", "s3cr3t"),
            (
                "proxy-authorization=Basic dXNlcjpwYXNz rejected",
                "dXNlcjpwYXNz",
            ),
            (r#"{"Authorization": "Bearer abc.def"}"#, "abc.def"),
            ("key AKIAIOSFODNN7EXAMPLE rejected", "AKIAIOSFODNN7EXAMPLE"),
            ("password=hunter22 for user bob", "hunter22"),
            (r#"{"password": "s3cr3t!", "user": "x"}"#, "s3cr3t!"),
            (
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "wJalrXUtnFEMI",
            ),
            (
                "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_nature ok",
                "eyJzdWIi",
            ),
            (
                "postgres://app:pa55word@db:5432/orders unreachable",
                "pa55word",
            ),
            ("api_key: sk_live_123456", "sk_live_123456"),
            ("redis://:REDISPW18@cache:6379 refused", "REDISPW18"),
            (
                "Cookie: session=SESSIONSECRET123; theme=dark",
                "SESSIONSECRET123",
            ),
            ("set-cookie: sid=COOKIEVAL9", "COOKIEVAL9"),
            (
                "slack said invalid_auth for xoxb-1234567890-abcdefghij",
                "xoxb-1234567890",
            ),
            (
                "GitHub 401 with ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                "ghp_abcdefghij",
            ),
            (
                "charge failed: key sk_test_abcdefghijklmnop is revoked",
                "sk_test_abcdefghijklmnop",
            ),
            (
                "bad key\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nend",
                "MIIEowIBAAKCAQEA",
            ),
            (
                "cut short -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq",
                "MIIEvQIBADANBgkq",
            ),
            (
                "secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY rejected",
                "wJalrXUtnFEMI",
            ),
            (
                "GET /o?X-Amz-Signature=abcdef0123456789&X-Amz-Date=1 denied",
                "abcdef0123456789",
            ),
            ("login pass=PWVAL13 refused", "PWVAL13"),
            ("the password is PWVAL8abc, rejected", "PWVAL8abc"),
            ("passphrase=correcthorse rejected", "correcthorse"),
            (
                "GET /login?user=a&password%3Dhunter2x&next=/ 401",
                "hunter2x",
            ),
            (
                "maps said REQUEST_DENIED for key=AIzaSyA1234567890abcdefghijklmnopqrstuv",
                "AIzaSyA1234567890",
            ),
            (
                r#"assumed role: {"AccessKeyId":"ASIAIOSFODNN7EXAMPLE","SecretAccessKey":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY","SessionToken":"FwoGZXIvYXdzEBYaDSESSION"}"#,
                "wJalrXUtnFEMI",
            ),
            (
                r#"sent body "{\"user\":\"bob\",\"password\":\"two words hunter2\"}" got 401"#,
                "hunter2",
            ),
            (
                r#"Authorization header {\"authorization\": \"Bearer s3cr3tt0k3n\"}"#,
                "s3cr3tt0k3n",
            ),
            (
                "POST https://hooks.slack.com/services/T0AAA/B0BBB/XyZwebhookSecret12 failed",
                "XyZwebhookSecret12",
            ),
            (
                "sendgrid SG.abcdefghijklmnopqr.abcdefghijklmnopqrstuvwxyz0123 forbidden",
                "abcdefghijklmnopqrstuvwxyz0123",
            ),
            (
                "openai sk-proj-abcdefghijklmnopqrstuvwxyz0123 invalid",
                "abcdefghijklmnopqrstuvwxyz",
            ),
            (
                "anthropic sk-ant-api03-abcdefghijklmnopqrstuvwxyz invalid",
                "abcdefghijklmnopqrstuvwxyz",
            ),
            (
                "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0a2V5+abc==;EndpointSuffix=core.windows.net",
                "c2VjcmV0a2V5",
            ),
            (
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=c2hhcmVka2V5=",
                "c2hhcmVka2V5",
            ),
            (
                "declined for card 4111 1111 1111 1111 exp 12/28",
                "4111 1111",
            ),
            (
                "declined for card 4111111111111111 exp 12/28",
                "4111111111111111",
            ),
            ("declined for card 5500-0000-0000-0004", "5500-0000"),
        ];
        for (text, secret) in cases {
            let redacted = redact(text);
            assert!(!redacted.contains(secret), "{text} -> {redacted}");
            assert!(redacted.contains("REDACTED"), "{text} -> {redacted}");
        }
        for innocent in [
            "order 14013 failed",
            "password authentication failed for user \"app\"",
            "connect to https://api.example.com:8443/v1/orders@latest timed out",
            "commit 3f786850e387550fdab836ed7e6dc881de23001b not found",
            "the compass=north setting is invalid",
            "The security token included in the request is expired; the token is expired",
            "validation failed: password is required; password is too short",
            "order 4111111111111112 failed at 1733328000000",
            "the AccessKeyId field is missing",
            "sk-learn model failed",
        ] {
            assert_eq!(redact(innocent), innocent);
        }
    }

    proptest::proptest! {
        #[test]
        fn the_one_pass_check_changes_no_redaction(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    "\\PC{0,12}",
                    proptest::strategy::Just("Bearer abcdefgh12345".to_string()),
                    proptest::strategy::Just("AKIAABCDEFGHIJKLMNOP".to_string()),
                    proptest::strategy::Just("eyJabcdef.eyJabcdef.sig".to_string()),
                    proptest::strategy::Just("password=hunter2".to_string()),
                    proptest::strategy::Just("https://u:p@host".to_string()),
                    proptest::strategy::Just(" ".to_string()),
                ],
                0..6,
            )
        ) {
            let text = parts.concat();
            proptest::prop_assert_eq!(redact(&text), redact_in_turn(&text, secret_patterns()));
        }
    }

    #[test]
    fn fingerprints_ignore_ids_but_not_class_or_source() {
        let a = fingerprint(
            FailureClass::Auth,
            "token expired for order 123 (req 9f8e7d6c)",
            Some("q"),
        );
        let b = fingerprint(
            FailureClass::Auth,
            "token expired for order 456 (req 1a2b3c4d)",
            Some("q"),
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            fingerprint(
                FailureClass::Timeout,
                "token expired for order 123",
                Some("q")
            )
        );
        assert_ne!(
            a,
            fingerprint(
                FailureClass::Auth,
                "token expired for order 123",
                Some("other")
            )
        );
    }

    #[test]
    fn first_alert_goes_out_rest_become_one_digest() {
        let window = Duration::minutes(10);
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let first = gate(alert(1, "k1"), None, t0, window);
        assert_eq!(first.send.len(), 1);
        let second = gate(
            alert(3, "k2"),
            Some(first.state),
            t0 + Duration::minutes(1),
            window,
        );
        assert!(second.send.is_empty());
        assert_eq!(second.suppressed, 3);
        let third = gate(
            alert(2, "k3"),
            Some(second.state),
            t0 + Duration::minutes(2),
            window,
        );
        assert_eq!(third.state.suppressed, 5);
        assert!(window_closed(
            &third.state,
            t0 + Duration::minutes(10),
            window
        ));
        let after = gate(
            alert(1, "k4"),
            Some(third.state),
            t0 + Duration::minutes(11),
            window,
        );
        assert_eq!(after.send.len(), 2);
        assert!(after.send[0].digest);
        assert_eq!(after.send[0].count, 5);
        assert_eq!(
            after.send[0].sample_keys,
            vec!["k2".to_string(), "k3".to_string()]
        );
        assert!(!after.send[1].digest);
    }
}
