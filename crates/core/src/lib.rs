//! The pure domain of dlq-healer: no I/O here, only the model, the rules and the engine that
//! drives the ports.
//!
//! # Layout
//! - [`class`]: the six failure classes.
//! - [`message`]: received and outgoing messages, attributes.
//! - [`context`]: the `dlq-context` failure context (the public wire contract).
//! - [`json_check`]: a fast, allocation-free JSON validator for message bodies.
//! - [`letter`]: opening a dead letter (envelope, context, source, body digest).
//! - [`rules`]: the rules engine and its TOML format; `default_rules.toml` ships the defaults.
//! - [`policy`]: per-class policy, full-jitter backoff, the decision for one message.
//! - [`records`]: ledger and archive records.
//! - [`alert`]: alert fingerprints, secret redaction, the dedup window.
//! - [`ports`]: the async traits adapters implement, and the clock.
//! - [`metrics`]: metric names.
//! - [`engine`]: the healing engine (act, record, delete).
//! - [`consumer`]: the consumer library that dead-letters failures with their context.
//! - [`testing`]: in-memory fakes of every port, for unit tests of the engine and its users.
//! - [`contract`]: the port contract suite every adapter (and every fake) must pass.

pub mod alert;
pub mod attributes;
pub mod class;
pub mod consumer;
pub mod context;
pub mod contract;
pub mod engine;
pub mod json_check;
pub mod letter;
pub mod log_level;
pub mod message;
pub mod metrics;
pub mod policy;
pub mod ports;
pub mod records;
pub mod rules;
pub mod serde_b64;
pub mod testing;

pub use class::FailureClass;
pub use engine::{BatchReport, Engine, EngineConfig, Outcome, Ports};
pub use message::{Attribute, Attributes, OutgoingMessage, ReceivedMessage};
pub use rules::RuleSet;
