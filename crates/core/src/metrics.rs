//! Metric names, shared by every adapter and the dashboards. Counts unless the name says otherwise.

/// DLQ deliveries the healer decided on, by class: a parked message counts again when it comes
/// back due, so this is the healer's work, not the DLQ's inflow.
pub const RECEIVED: &str = "received";
/// Re-queued to their source, by class.
pub const REQUEUED: &str = "requeued";
/// Parked in the DLQ for a long backoff, by class.
pub const PARKED: &str = "parked";
/// Archived, by class.
pub const ARCHIVED: &str = "archived";
/// Messages an alert went out for at once, by class.
pub const ALERTED: &str = "alerted";
/// Messages whose alert the dedup window held back for a digest, by class.
pub const ALERTS_SUPPRESSED: &str = "alerts_suppressed";
/// Redelivered DLQ messages found already handled in the ledger.
pub const DUPLICATES: &str = "duplicates";
/// Healer batches handled.
pub const HEALER_INVOCATIONS: &str = "healer_invocations";
/// Messages the healer failed to handle (left in the DLQ for another try).
pub const HEALER_ERRORS: &str = "healer_errors";
/// Time to handle one batch, in milliseconds, up to its delete (which comes after the metrics).
pub const HEALER_DURATION_MS: &str = "healer_duration_ms";
/// Age of a dead letter when handled, in seconds.
pub const MESSAGE_AGE_SECONDS: &str = "message_age_seconds";
/// Messages a consumer handled.
pub const CONSUMER_INVOCATIONS: &str = "consumer_invocations";
/// Messages a consumer failed and dead-lettered.
pub const CONSUMER_ERRORS: &str = "consumer_errors";
/// Time a consumer's handler took, in milliseconds.
pub const CONSUMER_DURATION_MS: &str = "consumer_duration_ms";
/// Messages a consumer processed successfully.
pub const PROCESSED: &str = "processed";
