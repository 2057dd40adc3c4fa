//! `dlq-healer classify`: dry-run the rules on messages given as JSON Lines.
//!
//! Each input line is an object with optional fields `body` (string or null), `body_b64`,
//! `error`, `attributes` (string to string, may hold a `dlq-context`) and `receive_count`; unknown
//! fields are ignored. Each output line is `{"class","action","rule"}`, or `{"error"}` for a line
//! that cannot be read. Other tools depend on this interface: change it only compatibly.

use anyhow::{Context, Result, bail};
use chrono::Utc;
use dlq_healer_core::context::{ContextReading, ErrorInfo, FailureContext};
use dlq_healer_core::letter::OpenedLetter;
use dlq_healer_core::message::{Attribute, Attributes, CONTEXT_ATTRIBUTE, ReceivedMessage};
use dlq_healer_core::policy::decide;
use dlq_healer_core::rules::RuleSet;
use serde_json::{Map, Value, json};
use std::io::{BufRead, Write};

/// Parse one input line into the message the healer would receive.
pub fn message_from_line(line: &str) -> Result<ReceivedMessage, String> {
    message_from_fields(&fields_of_line(line)?)
}

/// The fields of one input line, which must be a JSON object.
pub fn fields_of_line(line: &str) -> Result<Map<String, Value>, String> {
    if line.trim().is_empty() {
        return Err("the line is blank; give a JSON object".into());
    }
    let value: Value = serde_json::from_str(line).map_err(|e| {
        // serde's position is within the line: "at line 1 column 7" would name the wrong line.
        let reason = e.to_string();
        let reason = reason.rsplit_once(" at line ").map_or(&*reason, |(r, _)| r);
        format!("line is not JSON: {reason} at column {}", e.column())
    })?;
    let Value::Object(fields) = value else {
        return Err("line is not a JSON object".into());
    };
    Ok(fields)
}

/// The message the healer would receive for the fields of one input line.
pub fn message_from_fields(fields: &Map<String, Value>) -> Result<ReceivedMessage, String> {
    let body = match (fields.get("body"), fields.get("body_b64")) {
        (Some(body), _) if !body.is_string() && !body.is_null() => {
            return Err(format!(
                "body must be a string or null, not {}",
                type_name(body)
            ));
        }
        (_, Some(b64)) if !b64.is_string() && !b64.is_null() => {
            return Err(format!("body_b64 must be a string, not {}", type_name(b64)));
        }
        (Some(Value::String(_)), Some(Value::String(_))) => {
            return Err("give either body or body_b64, not both".into());
        }
        (Some(Value::String(text)), _) => text.clone().into_bytes(),
        (_, Some(Value::String(b64))) => dlq_healer_core::serde_b64::decode(b64)
            .map_err(|e| format!("body_b64 is not valid base64: {e}"))?,
        _ => Vec::new(),
    };
    let mut attributes = Attributes::new();
    match fields.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let Value::String(text) = value else {
                    return Err(format!(
                        "attribute {name:?} must be a string, not {}",
                        type_name(value)
                    ));
                };
                attributes.insert(name.clone(), Attribute::string(text.clone()));
            }
        }
        Some(other) => {
            return Err(format!(
                "attributes must be an object, not {}",
                type_name(other)
            ));
        }
    }
    let receive_count = match fields.get("receive_count") {
        None | Some(Value::Null) => 1,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("receive_count must be a non-negative integer, not {n}"))?,
        Some(other) => {
            return Err(format!(
                "receive_count must be an integer, not {}",
                type_name(other)
            ));
        }
    };
    match fields.get("error") {
        None | Some(Value::Null) => {}
        Some(Value::String(error)) => set_error(&mut attributes, error),
        Some(other) => return Err(format!("error must be a string, not {}", type_name(other))),
    }
    Ok(ReceivedMessage {
        message_id: "classify".into(),
        receipt_handle: String::new(),
        body,
        attributes,
        receive_count,
        redrive_source: None,
        sent_at: None,
        group_id: None,
    })
}

/// Put `error` into the message's context: the given `dlq-context` with its message replaced,
/// or a new context.
fn set_error(attributes: &mut Attributes, error: &str) {
    let existing = attributes
        .get(CONTEXT_ATTRIBUTE)
        .and_then(|a| a.as_str())
        .map(ContextReading::parse);
    let context = match existing {
        Some(ContextReading::Valid(mut context)) => {
            context.error.message = error.to_string();
            *context
        }
        Some(_) => return, // an unreadable context stays unreadable: that is what is being tested
        None => FailureContext::new(ErrorInfo::message(error), Utc::now()),
    };
    attributes.insert(
        CONTEXT_ATTRIBUTE.into(),
        Attribute::string(context.to_json()),
    );
}

pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The output object for one message.
pub fn classify_message(rules: &RuleSet, message: ReceivedMessage) -> Value {
    let letter = OpenedLetter::open(message);
    let classification = rules.classify(&letter.facts());
    let verdict = decide(
        rules.policy(classification.class),
        letter.context_attempts(),
        false,
        0.0,
    );
    json!({"class": classification.class, "action": verdict.action_name(), "rule": &*classification.rule})
}

/// Run `classify` over a reader, writing one line per input line.
pub fn run(
    rules: &RuleSet,
    input: impl BufRead,
    mut output: impl Write,
    explain: bool,
) -> Result<()> {
    if explain {
        let lines: Vec<String> = input
            .lines()
            .collect::<std::io::Result<Vec<String>>>()
            .context("reading the input")?
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let [line] = lines.as_slice() else {
            bail!(
                "--explain takes exactly one message (one JSON line); got {}",
                lines.len()
            );
        };
        let message =
            message_from_line(line).map_err(|e| anyhow::anyhow!("cannot read the message: {e}"))?;
        return explain_message(rules, message, output);
    }
    for (number, line) in input.lines().enumerate() {
        let out = match line {
            Ok(line) => {
                // A byte order mark, as some editors on Windows write, does not start a line.
                let line = if number == 0 {
                    line.trim_start_matches('\u{feff}')
                } else {
                    &line
                };
                match message_from_line(line) {
                    Ok(message) => classify_message(rules, message),
                    Err(error) => json!({"error": format!("line {}: {error}", number + 1)}),
                }
            }
            // The line was read whole but is not UTF-8: that line is malformed, the next one
            // may not be.
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                json!({"error": format!("line {}: cannot read: {error}", number + 1)})
            }
            // Any other read error (a directory given as input, a device that failed) would
            // come back on every further read: stop.
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("reading line {} of the input", number + 1));
            }
        };
        writeln!(output, "{out}").context("writing the output")?;
    }
    output.flush().context("writing the output")?;
    Ok(())
}

fn explain_message(
    rules: &RuleSet,
    message: ReceivedMessage,
    mut output: impl Write,
) -> Result<()> {
    let letter = OpenedLetter::open(message);
    let facts = letter.facts();
    writeln!(output, "message:")?;
    writeln!(
        output,
        "  error type:   {}",
        facts.error_type.unwrap_or("(none)")
    )?;
    writeln!(output, "  error text:   {:?}", facts.error_message)?;
    writeln!(
        output,
        "  status:       {} in the context (statuses written in the error text count too)",
        facts.status.map_or("none".into(), |s| s.to_string())
    )?;
    writeln!(
        output,
        "  source:       {}",
        facts.source.unwrap_or("(unknown)")
    )?;
    writeln!(output, "  receives:     {}", facts.receive_count)?;
    let names: Vec<&str> = facts
        .attributes
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    writeln!(
        output,
        "  attributes:   {}",
        if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(", ")
        }
    )?;
    writeln!(
        output,
        "  body:         {} bytes, {:?} expected",
        facts.body.len(),
        rules.body_format(facts.source)
    )?;
    writeln!(output, "  dlq-context:  {:?}", facts.context)?;
    if let Some(problem) = letter.context.problem() {
        writeln!(output, "                {problem}")?;
    }
    writeln!(output, "rules, in order (first match wins):")?;
    let mut decided = None;
    for trial in rules.explain(&facts) {
        let marker = match (&trial.outcome, decided.is_some()) {
            (Ok(_), false) => "=>",
            (Ok(_), true) => " +",
            (Err(_), _) => " -",
        };
        let detail = match &trial.outcome {
            Ok(signal) => format!("matched: {signal}"),
            Err(reason) => format!("no match: {reason}"),
        };
        writeln!(
            output,
            "{marker} {:<22} {:<12} {detail}",
            trial.rule,
            trial.class.as_str()
        )?;
        if trial.outcome.is_ok() && decided.is_none() {
            decided = Some(trial);
        }
    }
    let classification = rules.classify(&facts);
    if decided.is_none() {
        writeln!(
            output,
            "no rule matched, so the message is unknown (handled by [policy.unknown])"
        )?;
    }
    let verdict = decide(
        rules.policy(classification.class),
        letter.context_attempts(),
        false,
        0.0,
    );
    writeln!(
        output,
        "result: {}",
        Value::Object(Map::from_iter([
            ("class".to_string(), json!(classification.class)),
            ("action".to_string(), json!(verdict.action_name())),
            ("rule".to_string(), json!(&*classification.rule)),
        ]))
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_lines(input: &str) -> Vec<Value> {
        let mut out = Vec::new();
        run(&RuleSet::defaults(), input.as_bytes(), &mut out, false).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn one_output_line_per_input_line_with_errors_in_place() {
        let input = [
            r#"{"body": "{\"order\": 1}", "error": "401 Unauthorized"}"#,
            "not json",
            r#"{"body": 5}"#,
            r#"{"body_b64": "/w==", "error": "timed out"}"#,
            r#"{"body": "{}", "attributes": {"x": 1}}"#,
            r#"{"body": "{}", "receive_count": -1}"#,
            "",
            r#"{"body": null, "unknown_field": true}"#,
        ]
        .join("\n");
        let out = classify_lines(&input);
        assert_eq!(out.len(), 8);
        assert_eq!(
            out[0],
            json!({"class": "auth", "action": "alert+archive", "rule": "auth"})
        );
        assert_eq!(
            out[1]["error"], "line 2: line is not JSON: expected ident at column 2",
            "the position is the column within the line"
        );
        assert!(
            out[2]["error"]
                .as_str()
                .unwrap()
                .contains("body must be a string")
        );
        assert_eq!(out[3]["class"], "bad_payload");
        assert!(
            out[4]["error"]
                .as_str()
                .unwrap()
                .contains("attribute \"x\"")
        );
        assert!(out[5]["error"].as_str().unwrap().contains("receive_count"));
        assert_eq!(
            out[6]["error"],
            "line 7: the line is blank; give a JSON object"
        );
        assert_eq!(out[7]["class"], "bad_payload", "an empty body is not JSON");
    }

    /// Input whose reads fail with `kind` after `first` (as a directory's fail from the
    /// start), `failures` times, and then end, so that a reader that keeps reading ends too.
    struct FailingInput {
        kind: std::io::ErrorKind,
        first: Option<&'static [u8]>,
        failures: usize,
    }

    impl std::io::Read for FailingInput {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.first.take() {
                Some(first) => {
                    buf[..first.len()].copy_from_slice(first);
                    Ok(first.len())
                }
                None if self.failures == 0 => Ok(0),
                None => {
                    self.failures -= 1;
                    Err(std::io::Error::from(self.kind))
                }
            }
        }
    }

    #[test]
    fn a_read_error_stops_with_an_error_instead_of_repeating_on_every_line() {
        let input = std::io::BufReader::new(FailingInput {
            kind: std::io::ErrorKind::IsADirectory,
            first: Some(b"{\"body\": \"{}\", \"error\": \"401 Unauthorized\"}\n"),
            failures: 3,
        });
        let mut out = Vec::new();
        let error = run(&RuleSet::defaults(), input, &mut out, false).unwrap_err();
        assert!(
            format!("{error:#}").contains("reading line 2 of the input"),
            "{error:#}"
        );
        let printed = String::from_utf8(out).unwrap();
        assert_eq!(
            printed.lines().count(),
            1,
            "the line read before: {printed}"
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_is_an_error_line_and_the_next_is_classified() {
        let mut input = b"{\"body\": \"\xff\"}\n".to_vec();
        input.extend_from_slice(b"{\"body\": \"{}\", \"error\": \"401 Unauthorized\"}\n");
        let mut out = Vec::new();
        run(&RuleSet::defaults(), input.as_slice(), &mut out, false).unwrap();
        let out: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(out.len(), 2);
        assert!(
            out[0]["error"]
                .as_str()
                .unwrap()
                .starts_with("line 1: cannot read")
        );
        assert_eq!(out[1]["class"], "auth");
    }

    #[test]
    fn a_byte_order_mark_before_the_first_line_is_skipped() {
        let out = classify_lines("\u{feff}{\"body\": \"{}\", \"error\": \"401 Unauthorized\"}");
        assert_eq!(out[0]["class"], "auth", "{out:?}");
    }

    #[test]
    fn a_context_in_attributes_is_used_and_error_overrides_its_message() {
        let context = r#"{"v":1,"error":{"type":"TimeoutError","message":"x"},"failed_at":"2026-01-01T00:00:00Z","heal":{"key":"k","attempts":5,"first_failed_at":"2026-01-01T00:00:00Z","last_class":"timeout"}}"#;
        let line = json!({"body": "{}", "attributes": {"dlq-context": context}}).to_string();
        let out = classify_lines(&line);
        assert_eq!(out[0]["class"], "timeout");
        assert_eq!(out[0]["action"], "archive", "attempts are exhausted");
        let line = json!({"body": "{}", "attributes": {"dlq-context": context}, "error": "connection refused"}).to_string();
        assert_eq!(
            classify_lines(&line)[0]["class"],
            "timeout",
            "the error type still says timeout"
        );
    }

    #[test]
    fn explain_lists_every_rule_and_the_result() {
        let mut out = Vec::new();
        run(
            &RuleSet::defaults(),
            &br#"{"body":"{}","error":"Task timed out after 30.00 seconds"}"#[..],
            &mut out,
            true,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        for name in RuleSet::defaults().rule_names() {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains("=> timeout"));
        assert!(
            text.contains(r#"result: {"action":"requeue","class":"timeout","rule":"timeout"}"#),
            "{text}"
        );
        assert!(!text.contains("no rule matched"), "{text}");
        let two = "{}\n{}\n";
        assert!(run(&RuleSet::defaults(), two.as_bytes(), Vec::new(), true).is_err());
    }

    #[test]
    fn explain_shows_the_guards_facts_and_says_when_no_rule_matched() {
        let rules = RuleSet::from_toml(
            "[[rule]]\nname = \"pay\"\nclass = \"auth\"\nsource = [\"pay*\"]\n",
            "only-pay.toml",
        )
        .unwrap();
        let mut out = Vec::new();
        let line =
            r#"{"body":"{}","error":"boom","receive_count":4,"attributes":{"tenant":"gold"}}"#;
        run(&rules, line.as_bytes(), &mut out, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("receives:     4"), "{text}");
        assert!(text.contains("attributes:   tenant"), "{text}");
        assert!(
            text.contains("no rule matched, so the message is unknown"),
            "{text}"
        );
    }
}
