//! The rules engine: an ordered list of rules read from TOML, first match wins.
//!
//! A rule names a class and says when it applies. Its *guards* (`source`, `min_receive_count`)
//! must all hold; then any one of its *signals* (`error_type`, `status`, `text`, `regex`,
//! `body_invalid`, `json_missing`, `attributes`, `context`) makes it match. A rule with no
//! signals matches everything its guards let through.
//!
//! Literal texts and error types are matched case-insensitively and word-bounded, in one pass
//! over the error text for all rules together; numbers in `status` match HTTP statuses (the
//! context's `error.status`, or a status written as such in the text), never digits inside ids.

use crate::class::FailureClass;
use crate::context::ContextState;
use crate::message::Attributes;
use crate::policy::{
    BaseAction, ClassPolicy, DEFAULT_BASE_DELAY_SECONDS, DEFAULT_MAX_ATTEMPTS,
    MAX_SEND_DELAY_SECONDS, PolicyTable,
};
use regex::{Regex, RegexSet, RegexSetBuilder};
use serde::Deserialize;
use serde_json::Value;
use smallvec::{SmallVec, smallvec};
use std::cell::OnceCell;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

mod literals;

use literals::{LiteralMatcher, Occurrence};

/// The rules shipped with dlq-healer, used when no rules file is given.
pub const DEFAULT_RULES_TOML: &str = include_str!("default_rules.toml");

/// How bodies on a source queue are expected to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// A JSON document (the default).
    Json,
    /// UTF-8 text of any shape.
    Text,
    /// Any bytes.
    Binary,
}

/// What the rules look at when they classify one message.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The original body (unwrapped from any envelope).
    pub body: &'a [u8],
    /// The error type or code from the context.
    pub error_type: Option<&'a str>,
    /// The error text from the context (empty when there is none).
    pub error_message: &'a str,
    /// The HTTP status from the context.
    pub status: Option<u16>,
    /// The message attributes.
    pub attributes: &'a Attributes,
    /// The source queue (URL, ARN or name), if known.
    pub source: Option<&'a str>,
    /// How many times the DLQ has delivered the message.
    pub receive_count: u32,
    /// Whether the context was present and readable.
    pub context: ContextState,
}

/// Which signal of a rule matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// The error type equals, or the text names, one of the rule's error types.
    ErrorType(Arc<str>),
    /// The HTTP status is one of the rule's statuses.
    Status(u16),
    /// A literal text appears in the error text.
    Text(Arc<str>),
    /// A regex matches the error text.
    Regex(Arc<str>),
    /// The body is not valid for the source's body format.
    BodyInvalid(BodyFormat),
    /// A JSON pointer is missing or null in the body.
    JsonMissing(Arc<str>),
    /// The listed attributes have the listed values.
    Attributes,
    /// The context is in one of the listed states.
    Context(ContextState),
    /// The rule has no signals: it matches whatever its guards let through.
    Always,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signal::ErrorType(t) => write!(f, "error type {t:?}"),
            Signal::Status(s) => write!(f, "HTTP status {s}"),
            Signal::Text(t) => write!(f, "error text contains {t:?}"),
            Signal::Regex(r) => write!(f, "error text matches /{r}/"),
            Signal::BodyInvalid(BodyFormat::Json) => f.write_str("body is not valid JSON"),
            Signal::BodyInvalid(_) => f.write_str("body is not valid UTF-8"),
            Signal::JsonMissing(p) => write!(f, "body has no value at {p}"),
            Signal::Attributes => f.write_str("attributes match"),
            Signal::Context(state) => write!(f, "dlq-context is {}", context_state_name(*state)),
            Signal::Always => f.write_str("catch-all"),
        }
    }
}

fn context_state_name(state: ContextState) -> &'static str {
    match state {
        ContextState::Missing => "missing",
        ContextState::Valid => "valid",
        ContextState::UnsupportedVersion => "of an unsupported version",
        ContextState::Corrupt => "corrupt",
    }
}

/// The outcome of classifying one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The class.
    pub class: FailureClass,
    /// The name of the rule that matched, or [`NO_RULE`].
    pub rule: Arc<str>,
    /// Why it matched.
    pub signal: Option<Signal>,
}

impl Classification {
    /// A one-line reason, e.g. `rule lambda-timeout: error text contains "timed out"`.
    pub fn reason(&self) -> String {
        match &self.signal {
            Some(signal) => format!("rule {}: {signal}", self.rule),
            None => "no rule matched".to_string(),
        }
    }
}

/// One rule tried by [`RuleSet::explain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrial {
    /// The rule's name.
    pub rule: String,
    /// The rule's class.
    pub class: FailureClass,
    /// The signal that matched, or why it did not match.
    pub outcome: Result<Signal, String>,
}

/// A rules file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{location}: {reason}")]
pub struct RulesError {
    /// The file name, or `<default rules>`.
    pub origin: String,
    /// `:line:column`, when known.
    pub location: String,
    /// What is wrong, and what to do.
    pub reason: String,
}

/// The rules file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    settings: Settings,
    #[serde(default)]
    body_format: Vec<BodyFormatEntry>,
    #[serde(default)]
    policy: BTreeMap<FailureClass, PolicySpec>,
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_body")]
    default_body: BodyFormat,
    /// Try the shipped default rules after this file's own.
    #[serde(default)]
    extend_defaults: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_body: BodyFormat::Json,
            extend_defaults: false,
        }
    }
}

fn default_body() -> BodyFormat {
    BodyFormat::Json
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyFormatEntry {
    source: String,
    format: BodyFormat,
}

/// A `[[rule]]` as written. A key that is there but holds nothing (`text = []`,
/// `body_invalid = false`) is refused rather than taken for absent: a rule without signals
/// matches every message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: toml::Spanned<String>,
    class: FailureClass,
    source: Option<Vec<String>>,
    min_receive_count: Option<u32>,
    error_type: Option<Vec<String>>,
    status: Option<Vec<u16>>,
    text: Option<Vec<String>>,
    regex: Option<Vec<String>>,
    body_invalid: Option<bool>,
    json_missing: Option<Vec<String>>,
    attributes: Option<BTreeMap<String, String>>,
    context: Option<Vec<ContextState>>,
}

impl RuleSpec {
    /// The first key that is written but holds nothing.
    fn empty_key(&self) -> Option<&'static str> {
        let empty = |key: &'static str, is_empty: bool| is_empty.then_some(key);
        empty("source", self.source.as_ref().is_some_and(Vec::is_empty))
            .or_else(|| {
                empty(
                    "error_type",
                    self.error_type.as_ref().is_some_and(Vec::is_empty),
                )
            })
            .or_else(|| empty("status", self.status.as_ref().is_some_and(Vec::is_empty)))
            .or_else(|| empty("text", self.text.as_ref().is_some_and(Vec::is_empty)))
            .or_else(|| empty("regex", self.regex.as_ref().is_some_and(Vec::is_empty)))
            .or_else(|| empty("body_invalid", self.body_invalid == Some(false)))
            .or_else(|| {
                empty(
                    "json_missing",
                    self.json_missing.as_ref().is_some_and(Vec::is_empty),
                )
            })
            .or_else(|| {
                empty(
                    "attributes",
                    self.attributes.as_ref().is_some_and(BTreeMap::is_empty),
                )
            })
            .or_else(|| empty("context", self.context.as_ref().is_some_and(Vec::is_empty)))
    }
}

/// A `[policy.<class>]` table as written: the keys left out keep the class's default policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySpec {
    action: Option<BaseAction>,
    alert: Option<bool>,
    max_attempts: Option<u32>,
    base_delay_seconds: Option<u32>,
    max_delay_seconds: Option<u32>,
    alert_when_exhausted: Option<bool>,
}

impl PolicySpec {
    /// `default` with the keys this table sets. A retry key on a class that archives is refused:
    /// it would be ignored.
    fn over(self, default: &ClassPolicy) -> Result<ClassPolicy, String> {
        let action = self.action.unwrap_or(default.action);
        if action == BaseAction::Archive {
            let retry_keys = [
                ("max_attempts", self.max_attempts.is_some()),
                ("base_delay_seconds", self.base_delay_seconds.is_some()),
                ("max_delay_seconds", self.max_delay_seconds.is_some()),
                ("alert_when_exhausted", self.alert_when_exhausted.is_some()),
            ];
            if let Some((key, _)) = retry_keys.into_iter().find(|(_, set)| *set) {
                return Err(format!(
                    "{key} is for action = \"requeue\": an archived message is not retried, so it \
                     would be ignored; remove it, or set action = \"requeue\""
                ));
            }
        }
        let mut policy = if action == BaseAction::Requeue && default.action == BaseAction::Archive {
            ClassPolicy {
                alert: default.alert,
                ..ClassPolicy::requeue(
                    DEFAULT_MAX_ATTEMPTS,
                    DEFAULT_BASE_DELAY_SECONDS,
                    MAX_SEND_DELAY_SECONDS,
                )
            }
        } else {
            default.clone()
        };
        policy.action = action;
        policy.alert = self.alert.unwrap_or(policy.alert);
        policy.max_attempts = self.max_attempts.unwrap_or(policy.max_attempts);
        policy.base_delay_seconds = self.base_delay_seconds.unwrap_or(policy.base_delay_seconds);
        policy.max_delay_seconds = self.max_delay_seconds.unwrap_or(policy.max_delay_seconds);
        policy.alert_when_exhausted = self
            .alert_when_exhausted
            .unwrap_or(policy.alert_when_exhausted);
        policy.validate()?;
        Ok(policy)
    }
}

/// Which rule a literal of the shared matcher belongs to.
#[derive(Debug, Clone)]
struct LiteralOwner {
    rule: usize,
    text: Arc<str>,
    is_error_type: bool,
}

/// The literal a rule matched with, and where: the first occurrence in the order an overlapping
/// scan reports them (the error text before the error type, then by end, the longer first, then
/// by literal), so that the reported signal does not depend on how occurrences are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct LiteralHit {
    haystack: u8,
    end: usize,
    length: Reverse<usize>,
    literal: usize,
}

#[derive(Debug, Clone)]
struct Rule {
    name: Arc<str>,
    class: FailureClass,
    sources: Vec<String>,
    min_receive_count: Option<u32>,
    statuses: Vec<u16>,
    regexes: Vec<(usize, Arc<str>)>,
    body_invalid: bool,
    json_missing: Vec<Arc<str>>,
    attributes: BTreeMap<String, String>,
    context: Vec<ContextState>,
    has_literals: bool,
}

impl Rule {
    /// No signals and no guards: every message.
    fn matches_everything(&self) -> bool {
        !self.has_signals() && self.sources.is_empty() && self.min_receive_count.is_none()
    }

    fn has_signals(&self) -> bool {
        self.has_literals
            || !self.statuses.is_empty()
            || !self.regexes.is_empty()
            || self.body_invalid
            || !self.json_missing.is_empty()
            || !self.attributes.is_empty()
            || !self.context.is_empty()
    }
}

/// A compiled, validated list of rules plus the per-class policies.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    literals: LiteralMatcher,
    literal_owners: Vec<LiteralOwner>,
    regex_set: Option<RegexSet>,
    regex_sources: Vec<String>,
    body_formats: Vec<(String, BodyFormat)>,
    default_body: BodyFormat,
    policies: PolicyTable,
    needs_status_scan: bool,
}

/// Why a rule did not match, cheap to make; [`RuleSet::explain`] spells it out.
enum Miss {
    Source,
    ReceiveCount(u32),
    NoSignal,
}

/// How large the rules' regexes may be once compiled together (the regex crate's default is
/// 10 MiB: about a hundred patterns with a Unicode `\w` in them).
const REGEX_SET_SIZE_LIMIT: usize = 64 << 20;

/// Rule sets of up to this many rules (the defaults have 8) keep the per-message evaluation
/// off the heap.
const INLINE_RULES: usize = 16;

/// Per-message scratch state, so each expensive fact is computed at most once.
struct Evaluation<'f, 'a> {
    facts: &'f Facts<'a>,
    /// The best hit of each rule, by rule index.
    literal_hits: SmallVec<[Option<LiteralHit>; INLINE_RULES]>,
    regex_hits: OnceCell<Vec<bool>>,
    statuses: OnceCell<Vec<u16>>,
    body_valid: OnceCell<(BodyFormat, bool)>,
    body_json: OnceCell<Option<Value>>,
}

impl RuleSet {
    /// The shipped default rules.
    pub fn defaults() -> RuleSet {
        RuleSet::from_toml(DEFAULT_RULES_TOML, "<default rules>")
            .expect("the shipped default rules are valid")
    }

    /// Parse and validate a rules file; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<RuleSet, RulesError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| {
            let location = e
                .span()
                .map(|span| {
                    let (line, column) = line_column(text, span.start);
                    format!(":{line}:{column}")
                })
                .unwrap_or_default();
            RulesError {
                origin: origin.to_string(),
                location,
                reason: e.message().trim().to_string(),
            }
        })?;
        let own_rules = file.rule.len();
        if !file.settings.extend_defaults {
            return Self::compile(file, text, origin, own_rules);
        }
        let mut file = file;
        let defaults: RulesFile =
            toml::from_str(DEFAULT_RULES_TOML).expect("the shipped default rules are valid TOML");
        file.rule.extend(defaults.rule);
        Self::compile(file, text, origin, own_rules)
    }

    /// Compile `file`, whose first `own_rules` rules are written in `text`; the rest are the
    /// shipped defaults it extends.
    fn compile(
        file: RulesFile,
        text: &str,
        origin: &str,
        own_rules: usize,
    ) -> Result<RuleSet, RulesError> {
        let error_at = |needle: &str, reason: String| {
            let location = text
                .find(needle)
                .map(|offset| {
                    let (line, column) = line_column(text, offset);
                    format!(":{line}:{column}")
                })
                .unwrap_or_default();
            RulesError {
                origin: origin.to_string(),
                location,
                reason,
            }
        };
        if own_rules == 0 && !file.settings.extend_defaults {
            return Err(error_at(
                "",
                "the file has no [[rule]] entries; add at least one, or set extend_defaults = true under [settings] to keep the shipped rules (and change only policies), or leave out --rules to use the defaults".into(),
            ));
        }
        let mut policies = PolicyTable::default();
        for (class, spec) in file.policy {
            let policy = spec.over(policies.get(class)).map_err(|reason| {
                let header = format!("[policy.{class}]");
                let offset = policy_key_offset(text, &header, &reason)
                    .or_else(|| text.find(&header))
                    .unwrap_or(0);
                let (line, column) = line_column(text, offset);
                RulesError {
                    origin: origin.to_string(),
                    location: format!(":{line}:{column}"),
                    reason: format!("policy for {class}: {reason}"),
                }
            })?;
            policies.set(class, policy);
        }
        let mut rules = Vec::with_capacity(file.rule.len());
        let mut literal_patterns = Vec::new();
        let mut literal_owners = Vec::new();
        let mut regex_sources = Vec::new();
        let mut seen_names = std::collections::HashSet::new();
        // Errors about a rule point at its name, which toml tells us the place of; about a
        // default rule, at `extend_defaults`.
        let extend_at = text.find("extend_defaults").unwrap_or(0);
        let mut name_offsets = Vec::with_capacity(file.rule.len());
        for (index, spec) in file.rule.into_iter().enumerate() {
            let name_offset = if index < own_rules {
                spec.name.span().start
            } else {
                extend_at
            };
            name_offsets.push(name_offset);
            let empty_key = spec.empty_key();
            let name = spec.name.into_inner();
            let error_at_offset = |offset: usize, reason: String| {
                let (line, column) = line_column(text, offset);
                RulesError {
                    origin: origin.to_string(),
                    location: format!(":{line}:{column}"),
                    reason,
                }
            };
            let rule_error = |reason: String| error_at_offset(name_offset, reason);
            // An error about a value of one of this file's rules points at the value.
            let value_error = |key: &str, needle: &str, reason: String| {
                let offset = if index < own_rules {
                    rule_value_offset(text, name_offset, key, needle)
                } else {
                    name_offset
                };
                error_at_offset(offset, reason)
            };
            if name.trim().is_empty() {
                return Err(rule_error(format!(
                    "rule #{} has an empty name; give every rule a unique name",
                    index + 1
                )));
            }
            if let Some(problem) = name_problem(&name) {
                return Err(rule_error(format!(
                    "rule name {name:?} {problem}; names show up in the ledger, the archive, logs \
                     and `classify`"
                )));
            }
            if !seen_names.insert(name.clone()) {
                return Err(rule_error(if index < own_rules {
                    format!("rule name {name:?} is used twice; rule names must be unique")
                } else {
                    format!(
                        "rule name {name:?} is a default rule's, and extend_defaults adds the \
                         default rules after yours; name yours differently"
                    )
                }));
            }
            if let Some(key) = empty_key {
                return Err(value_error(
                    key,
                    "",
                    format!(
                        "rule {name:?}: {key} holds nothing, and a rule without signals matches every \
                     message; remove the key or give it a value"
                    ),
                ));
            }
            let sources = spec.source.unwrap_or_default();
            let statuses = spec.status.unwrap_or_default();
            let json_missing = spec.json_missing.unwrap_or_default();
            for status in &statuses {
                if !(100..=599).contains(status) {
                    return Err(value_error(
                        "status",
                        &status.to_string(),
                        format!(
                            "rule {:?}: status {status} is not an HTTP status (100-599)",
                            name
                        ),
                    ));
                }
            }
            for pointer in &json_missing {
                if !pointer.starts_with('/') {
                    return Err(value_error(
                        "json_missing",
                        pointer,
                        format!(
                            "rule {:?}: json_missing {pointer:?} is not a JSON pointer; write it like \"/user/id\"",
                            name
                        ),
                    ));
                }
                if pointer
                    .split('~')
                    .skip(1)
                    .any(|rest| !rest.starts_with(['0', '1']))
                {
                    return Err(value_error(
                        "json_missing",
                        pointer,
                        format!(
                            "rule {name:?}: json_missing {pointer:?} has a `~` that is not `~0` \
                             (for `~`) or `~1` (for `/`), the only escapes of a JSON pointer"
                        ),
                    ));
                }
            }
            let mut regexes = Vec::new();
            for pattern in spec.regex.iter().flatten() {
                if pattern.trim().is_empty() {
                    return Err(value_error(
                        "regex",
                        &format!("{pattern:?}"),
                        format!(
                            "rule {name:?}: an empty regex matches every message; remove it or write the pattern to match"
                        ),
                    ));
                }
                let full = format!("(?i){pattern}");
                Regex::new(&full).map_err(|e| {
                    value_error("regex", pattern, format!(
                        "rule {name:?}: invalid regex {pattern:?}; fix the pattern (Rust regex syntax, escape special characters with \\): {e}"
                    ))
                })?;
                regexes.push((regex_sources.len(), pattern.as_str().into()));
                regex_sources.push(full);
            }
            let mut has_literals = false;
            for (texts, is_error_type) in [(&spec.text, false), (&spec.error_type, true)] {
                for literal in texts.iter().flatten() {
                    if literal.trim().is_empty() {
                        let key = if is_error_type { "error_type" } else { "text" };
                        return Err(value_error(
                            key,
                            &format!("{literal:?}"),
                            format!(
                                "rule {name:?}: empty text or error_type; remove it or write the text to match"
                            ),
                        ));
                    }
                    has_literals = true;
                    literal_patterns.push(literal.clone());
                    literal_owners.push(LiteralOwner {
                        rule: index,
                        text: literal.as_str().into(),
                        is_error_type,
                    });
                }
            }
            rules.push(Rule {
                name: name.into(),
                class: spec.class,
                sources,
                min_receive_count: spec.min_receive_count,
                statuses,
                regexes,
                body_invalid: spec.body_invalid.unwrap_or(false),
                json_missing: json_missing.into_iter().map(Arc::from).collect(),
                attributes: spec.attributes.unwrap_or_default(),
                context: spec.context.unwrap_or_default(),
                has_literals,
            });
        }
        if let Some(catch_all) = rules.iter().position(Rule::matches_everything)
            && let Some(unreachable) = rules.get(catch_all + 1)
        {
            let catch_all_name = &rules[catch_all].name;
            let (line, _) = line_column(text, name_offsets[catch_all]);
            let reason = if catch_all + 1 < own_rules {
                format!(
                    "rule {:?} can never match: rule {catch_all_name:?} before it (line {line}) has \
                     no signals and no guards, so it matches every message; move {:?} above it",
                    unreachable.name, unreachable.name
                )
            } else {
                format!(
                    "rule {catch_all_name:?} has no signals and no guards, so it matches every \
                     message, and the default rules that extend_defaults adds after it could never \
                     match; give it a signal or a guard, or leave out extend_defaults"
                )
            };
            let offset = if catch_all + 1 < own_rules {
                name_offsets[catch_all + 1]
            } else {
                name_offsets[catch_all]
            };
            let (line, column) = line_column(text, offset);
            return Err(RulesError {
                origin: origin.to_string(),
                location: format!(":{line}:{column}"),
                reason,
            });
        }
        let literals = LiteralMatcher::new(&literal_patterns)
            .map_err(|e| error_at("", format!("cannot compile the rule texts: {e}")))?;
        let regex_set = if regex_sources.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(&regex_sources)
                    .size_limit(REGEX_SET_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        error_at(
                            "regex",
                            format!(
                                "cannot compile the rules' {} regexes together ({e}); `\\w`, `\\d` \
                                 and `\\s` match all of Unicode and make large regexes: ASCII \
                                 classes such as `[a-z0-9_]` are far smaller, and literal `text` \
                                 signals cost nothing of it",
                                regex_sources.len()
                            ),
                        )
                    })?,
            )
        };
        let mut formats_seen = std::collections::HashSet::new();
        for entry in &file.body_format {
            if !formats_seen.insert(entry.source.as_str()) {
                return Err(error_at(
                    &format!("{:?}", entry.source),
                    format!(
                        "[[body_format]] for source {:?} is given twice; the first would win, so \
                         keep one",
                        entry.source
                    ),
                ));
            }
        }
        let needs_status_scan = rules.iter().any(|r| !r.statuses.is_empty());
        Ok(RuleSet {
            rules,
            literals,
            literal_owners,
            regex_set,
            regex_sources,
            body_formats: file
                .body_format
                .into_iter()
                .map(|entry| (entry.source, entry.format))
                .collect(),
            default_body: file.settings.default_body,
            policies,
            needs_status_scan,
        })
    }

    /// The policy for each class.
    pub fn policies(&self) -> &PolicyTable {
        &self.policies
    }

    /// Replace the policy of one class (e.g. shorter backoffs for a demo on real time).
    pub fn set_policy(&mut self, class: FailureClass, policy: ClassPolicy) -> Result<(), String> {
        policy.validate()?;
        self.policies.set(class, policy);
        Ok(())
    }

    /// The policy for one class.
    pub fn policy(&self, class: FailureClass) -> &ClassPolicy {
        self.policies.get(class)
    }

    /// The names of the rules, in order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.name)
    }

    /// The body format expected from a source.
    pub fn body_format(&self, source: Option<&str>) -> BodyFormat {
        source
            .and_then(|source| {
                self.body_formats
                    .iter()
                    .find(|(pattern, _)| source_matches(pattern, source))
                    .map(|(_, format)| *format)
            })
            .unwrap_or(self.default_body)
    }

    /// Classify one message: the first rule that matches decides.
    pub fn classify(&self, facts: &Facts<'_>) -> Classification {
        let evaluation = self.evaluate(facts);
        for (index, rule) in self.rules.iter().enumerate() {
            if let Ok(signal) = self.try_rule(index, &evaluation) {
                return Classification {
                    class: rule.class,
                    rule: rule.name.clone(),
                    signal: Some(signal),
                };
            }
        }
        Classification {
            class: FailureClass::Unknown,
            rule: NO_RULE.into(),
            signal: None,
        }
    }

    /// Try every rule against one message and say why each did or did not match.
    pub fn explain(&self, facts: &Facts<'_>) -> Vec<RuleTrial> {
        let evaluation = self.evaluate(facts);
        self.rules
            .iter()
            .enumerate()
            .map(|(index, rule)| RuleTrial {
                rule: rule.name.to_string(),
                class: rule.class,
                outcome: self
                    .try_rule(index, &evaluation)
                    .map_err(|miss| self.miss_reason(index, facts, miss)),
            })
            .collect()
    }

    fn miss_reason(&self, index: usize, facts: &Facts<'_>, miss: Miss) -> String {
        match miss {
            Miss::Source => format!(
                "source {:?} is not one of {:?}",
                facts.source.unwrap_or(""),
                self.rules[index].sources
            ),
            Miss::ReceiveCount(min) => {
                format!("receive count {} is below {min}", facts.receive_count)
            }
            Miss::NoSignal => "no signal matched".to_string(),
        }
    }

    fn evaluate<'f, 'a>(&self, facts: &'f Facts<'a>) -> Evaluation<'f, 'a> {
        let mut literal_hits: SmallVec<[Option<LiteralHit>; INLINE_RULES]> =
            smallvec![None; self.rules.len()];
        if !self.literals.is_empty() {
            // Error types are literals too, looked for in the error type as well as in the text:
            // a type equal to the context's `error.type`, or to its last part after `.`, `:`,
            // `/` or `\` (`java.net.SocketTimeoutException`), is a word-bounded occurrence in it.
            for (haystack, text) in [facts.error_message, facts.error_type.unwrap_or("")]
                .into_iter()
                .enumerate()
            {
                self.literals.for_each_occurrence(
                    text,
                    |Occurrence {
                         literal,
                         start,
                         end,
                     }| {
                        let hit = LiteralHit {
                            haystack: haystack as u8,
                            end,
                            length: Reverse(end - start),
                            literal,
                        };
                        let best = &mut literal_hits[self.literal_owners[literal].rule];
                        if best.is_none_or(|best| hit < best) {
                            *best = Some(hit);
                        }
                    },
                );
            }
        }
        Evaluation {
            facts,
            literal_hits,
            regex_hits: OnceCell::new(),
            statuses: OnceCell::new(),
            body_valid: OnceCell::new(),
            body_json: OnceCell::new(),
        }
    }

    fn try_rule(&self, index: usize, evaluation: &Evaluation<'_, '_>) -> Result<Signal, Miss> {
        let rule = &self.rules[index];
        let facts = evaluation.facts;
        if !rule.sources.is_empty() {
            let source = facts.source.unwrap_or("");
            if !rule
                .sources
                .iter()
                .any(|pattern| source_matches(pattern, source))
            {
                return Err(Miss::Source);
            }
        }
        if let Some(min) = rule.min_receive_count
            && facts.receive_count < min
        {
            return Err(Miss::ReceiveCount(min));
        }
        if !rule.has_signals() {
            return Ok(Signal::Always);
        }
        if rule.body_invalid {
            let (format, valid) = *evaluation.body_valid.get_or_init(|| {
                let format = self.body_format(facts.source);
                (format, body_is_valid(facts.body, format))
            });
            if !valid {
                return Ok(Signal::BodyInvalid(format));
            }
        }
        if !rule.context.is_empty() && rule.context.contains(&facts.context) {
            return Ok(Signal::Context(facts.context));
        }
        if let Some(hit) = evaluation.literal_hits[index] {
            let owner = &self.literal_owners[hit.literal];
            return Ok(if owner.is_error_type {
                Signal::ErrorType(owner.text.clone())
            } else {
                Signal::Text(owner.text.clone())
            });
        }
        if !rule.statuses.is_empty() {
            let statuses = evaluation.statuses.get_or_init(|| {
                let mut found: Vec<u16> = facts.status.into_iter().collect();
                if self.needs_status_scan {
                    found.extend(statuses_in_text(facts.error_message));
                }
                found
            });
            if let Some(status) = statuses.iter().find(|s| rule.statuses.contains(s)) {
                return Ok(Signal::Status(*status));
            }
        }
        if !rule.regexes.is_empty() {
            let hits = evaluation.regex_hits.get_or_init(|| match &self.regex_set {
                Some(set) => {
                    let matches = set.matches(facts.error_message);
                    (0..self.regex_sources.len())
                        .map(|i| matches.matched(i))
                        .collect()
                }
                None => Vec::new(),
            });
            if let Some((_, pattern)) = rule.regexes.iter().find(|(i, _)| hits[*i]) {
                return Ok(Signal::Regex(pattern.clone()));
            }
        }
        if !rule.json_missing.is_empty() {
            let json = evaluation
                .body_json
                .get_or_init(|| serde_json::from_slice::<Value>(facts.body).ok());
            if let Some(json) = json
                && let Some(pointer) = rule
                    .json_missing
                    .iter()
                    .find(|p| json.pointer(p).is_none_or(Value::is_null))
            {
                return Ok(Signal::JsonMissing(pointer.clone()));
            }
        }
        if !rule.attributes.is_empty()
            && rule.attributes.iter().all(|(name, value)| {
                facts.attributes.get(name).and_then(|a| a.as_str()) == Some(value)
            })
        {
            return Ok(Signal::Attributes);
        }
        Err(Miss::NoSignal)
    }
}

/// Where, in the table that starts with `header`, the key that `reason` (a policy's validation
/// error, which starts with the key at fault) is set; `None` when it cannot be found there.
/// The rule name of a classification no rule made.
pub const NO_RULE: &str = "(none)";

/// The longest rule name.
const MAX_RULE_NAME_CHARS: usize = 100;

/// What is wrong with a (non-empty) rule name, if anything.
fn name_problem(name: &str) -> Option<String> {
    if name.trim() != name {
        Some("starts or ends with spaces".into())
    } else if name.chars().any(char::is_control) {
        Some("holds a control character (a line break, a tab)".into())
    } else if name.chars().count() > MAX_RULE_NAME_CHARS {
        Some(format!("is longer than {MAX_RULE_NAME_CHARS} characters"))
    } else if name == NO_RULE {
        Some("is what `classify` shows when no rule matched".into())
    } else {
        None
    }
}

fn policy_key_offset(text: &str, header: &str, reason: &str) -> Option<usize> {
    let key = reason.split_whitespace().next()?;
    key_offset(text, text.find(header)? + header.len(), key)
}

/// Where `key` is set in the table whose body starts at `table_start` (up to the next header).
fn key_offset(text: &str, table_start: usize, key: &str) -> Option<usize> {
    let table = &text[table_start..];
    let end = table.find("\n[").unwrap_or(table.len());
    let mut offset = table_start;
    for line in table[..end].split_inclusive('\n') {
        let trimmed = line.trim_start();
        let is_key = trimmed
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if is_key {
            return Some(offset + (line.len() - trimmed.len()));
        }
        offset += line.len();
    }
    None
}

/// Where the rule whose name is at `name_offset` gives `key` the value written as `needle`: the
/// needle after the key, else the key, else the name.
fn rule_value_offset(text: &str, name_offset: usize, key: &str, needle: &str) -> usize {
    let table_start = text[..name_offset]
        .rfind("[[rule]]")
        .map_or(name_offset, |at| at + "[[rule]]".len());
    let Some(key_at) = key_offset(text, table_start, key) else {
        return name_offset;
    };
    let line_end = text[key_at..]
        .find("\n[")
        .map_or(text.len(), |i| key_at + i);
    text[key_at..line_end]
        .find(needle)
        .filter(|_| !needle.is_empty())
        .map_or(key_at, |i| key_at + i)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

pub use crate::json_check::MAX_JSON_DEPTH;

/// Whether a body is acceptable for its format. JSON is checked by
/// [`crate::json_check::is_valid_json`], which accepts what serde_json's `Value` accepts: UTF-8
/// throughout, no lone surrogates in `\u` escapes, and nesting deeper than [`MAX_JSON_DEPTH`]
/// (serde_json's own limit) counts as invalid. The check is iterative, so hostile bodies never
/// reach a recursive parser.
pub fn body_is_valid(body: &[u8], format: BodyFormat) -> bool {
    match format {
        BodyFormat::Binary => true,
        BodyFormat::Text => std::str::from_utf8(body).is_ok(),
        BodyFormat::Json => crate::json_check::is_valid_json(body),
    }
}

/// Glob match (`*` only) of a source pattern against a queue URL, ARN or name. A pattern with no
/// `/` or `:` is matched against the queue name (the last path or ARN segment).
pub fn source_matches(pattern: &str, source: &str) -> bool {
    let subject = if pattern.contains(['/', ':']) {
        source
    } else {
        source.rsplit(['/', ':']).next().unwrap_or(source)
    };
    glob_match(pattern.as_bytes(), subject.as_bytes())
}

fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    let (mut p, mut s) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while s < subject.len() {
        if p < pattern.len() && pattern[p] != b'*' && pattern[p] == subject[s] {
            p += 1;
            s += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = s;
            p += 1;
        } else if let Some(star_at) = star {
            p = star_at + 1;
            mark += 1;
            s = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

const STATUS_KEYWORDS: [&str; 13] = [
    "http",
    "status",
    "code",
    "statuscode",
    "status_code",
    "httpstatus",
    "httpstatuscode",
    "http_status",
    "response",
    "returned",
    "got",
    "error",
    "responded",
];

fn is_status_keyword(word: &str) -> bool {
    STATUS_KEYWORDS
        .iter()
        .any(|keyword| word.eq_ignore_ascii_case(keyword))
        || word
            .get(..5)
            .is_some_and(|start| start.eq_ignore_ascii_case("http/"))
}

/// Whether `word` can start the reason phrase of `status` (`401 Unauthorized`, `503 Service
/// Unavailable`, `404 Client Error`), so that `user 401 not found` is not read as a 401.
fn reason_phrase_fits(status: u16, word: &str) -> bool {
    let class_word = match status / 100 {
        4 => Some("client"),
        5 => Some("server"),
        _ => None,
    };
    if class_word.is_some_and(|class_word| word.eq_ignore_ascii_case(class_word)) {
        return true;
    }
    let starts: &[&str] = match status {
        100 => &["continue"],
        101 => &["switching"],
        200 => &["ok"],
        201 => &["created"],
        202 => &["accepted"],
        204 => &["no"],
        301 => &["moved"],
        302 => &["found"],
        304 => &["not"],
        307 => &["temporary"],
        308 => &["permanent"],
        400 => &["bad"],
        401 => &["unauthorized", "unauthorised"],
        402 => &["payment"],
        403 => &["forbidden"],
        404 => &["not"],
        405 => &["method"],
        406 => &["not"],
        407 => &["proxy"],
        408 => &["request"],
        409 => &["conflict"],
        410 => &["gone"],
        411 => &["length"],
        412 | 428 => &["precondition"],
        413 => &["payload", "request", "content"],
        414 => &["uri", "request"],
        415 => &["unsupported"],
        416 => &["range", "requested"],
        417 => &["expectation"],
        421 => &["misdirected"],
        422 => &["unprocessable"],
        423 => &["locked"],
        424 => &["failed"],
        425 | 429 => &["too"],
        426 => &["upgrade"],
        431 => &["request"],
        451 => &["unavailable"],
        500 => &["internal"],
        501 | 510 => &["not"],
        502 => &["bad"],
        503 => &["service"],
        504 => &["gateway"],
        505 => &["http"],
        506 => &["variant"],
        507 => &["insufficient"],
        508 => &["loop"],
        509 => &["bandwidth"],
        511 | 598 | 599 => &["network"],
        520 => &["web", "unknown"],
        521 => &["web"],
        522 => &["connection"],
        523 => &["origin"],
        524 => &["a"],
        529 => &["site"],
        _ => &[],
    };
    starts.iter().any(|start| word.eq_ignore_ascii_case(start))
}

/// HTTP statuses written as such in a text: `429 Too Many Requests`, `HTTP/1.1 503`, `status code 401`,
/// `Status Code: 403`, `status=500`, `{"code":503}`. A three-digit number that is part of a longer
/// number or an id (`order 14013`, `id-401x`, `401.5`), or that is followed by words that are not its
/// reason phrase (`user 401 not found`, `503 messages`), or after a `code` that is not a status
/// code (`promo code 401`), is not a status.
pub fn statuses_in_text(text: &str) -> Vec<u16> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    loop {
        i = next_digit(bytes, i);
        if i == bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let end = i;
        if end - start != 3 || !(b'1'..=b'5').contains(&bytes[start]) {
            continue;
        }
        let bounded_before = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')));
        let mut rest = text[end..].chars();
        let bounded_after = match rest.next() {
            None => true,
            Some('.') => !rest.next().is_some_and(|c| c.is_ascii_digit()),
            Some(c) => !(c.is_alphanumeric() || matches!(c, '_' | '-')),
        };
        if !bounded_before || !bounded_after {
            continue;
        }
        let status = (bytes[start] - b'0') as u16 * 100
            + (bytes[start + 1] - b'0') as u16 * 10
            + (bytes[start + 2] - b'0') as u16;
        let before = word_before(text, start);
        let keyword_before = before.is_some_and(|(word, at)| {
            is_status_keyword(word)
                && (!word.eq_ignore_ascii_case("code")
                    || word_before(text, at)
                        .is_none_or(|(previous, _)| is_status_keyword(previous)))
        });
        let after = word_after(text, end);
        let phrase_after = after.is_some_and(|w| reason_phrase_fits(status, w));
        // `returned 500 rows`, `got 404 results`: after a verb that also counts things, a number
        // followed by a plural noun is a count, not a status (`got 504 from upstream` stays one).
        let counted = before.is_some_and(|(word, _)| {
            word.eq_ignore_ascii_case("returned") || word.eq_ignore_ascii_case("got")
        }) && text[end..].starts_with(' ')
            && after.is_some_and(|w| {
                w.len() > 2
                    && w.ends_with(['s', 'S'])
                    && !w.eq_ignore_ascii_case("status")
                    && !reason_phrase_fits(status, w)
            });
        if (keyword_before && !counted) || phrase_after {
            found.push(status);
        }
    }
    found
}

/// The index of the first ASCII digit at or after `i`, or `bytes.len()`. Error texts are mostly
/// letters, so it skips eight bytes at a time.
fn next_digit(bytes: &[u8], mut i: usize) -> usize {
    use crate::json_check::{HIGHS, ONES};
    while let Some(chunk) = bytes.get(i..i + 8) {
        // Digits become 0..=9; the lowest flagged byte of `value < 10` is exact (the borrows of
        // the subtraction only flag bytes above it).
        let offsets = u64::from_le_bytes(chunk.try_into().expect("eight bytes")) ^ (ONES * 0x30);
        let digits = offsets.wrapping_sub(ONES * 10) & !offsets & HIGHS;
        if digits != 0 {
            return i + (digits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && !bytes[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// The word before `index` (skipping separators such as `: = ( "`), and where it starts. Words and
/// separators are ASCII, so the text is walked by bytes: a byte of a non-ASCII character ends a
/// word, just as the whole character would.
fn word_before(text: &str, index: usize) -> Option<(&str, usize)> {
    let bytes = text.as_bytes();
    let mut end = index;
    while end > 0
        && matches!(
            bytes[end - 1],
            b' ' | b':' | b'=' | b'#' | b'(' | b'[' | b'\t' | b'"' | b'\''
        )
    {
        end -= 1;
    }
    let mut start = end;
    while start > 0
        && (bytes[start - 1].is_ascii_alphanumeric()
            || matches!(bytes[start - 1], b'_' | b'/' | b'.'))
    {
        start -= 1;
    }
    (start < end).then(|| (&text[start..end], start))
}

fn word_after(text: &str, index: usize) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut start = index;
    while start < bytes.len()
        && matches!(
            bytes[start],
            b' ' | b'\t' | b':' | b'-' | b'(' | b'\'' | b'"'
        )
    {
        start += 1;
    }
    let mut end = start;
    while end < bytes.len() && bytes[end].is_ascii_alphabetic() {
        end += 1;
    }
    (start < end).then(|| &text[start..end])
}

#[cfg(test)]
mod tests;
