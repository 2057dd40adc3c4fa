//! The DynamoDB ledger table's layout, shared by [`crate::setup`] (which creates the table) and the
//! DynamoDB ledger (which reads and writes it). Change it here, and only here.
//!
//! The table is on-demand (pay per request). Its primary key is (`pk` String, `sk` Number): one
//! item per (message key, attempt). The global secondary index `by_class_time` (`class` String,
//! `at` String, an RFC 3339 time, all attributes projected) answers "what happened to class X
//! between T1 and T2". Items with a numeric `expires_at` (seconds since the epoch) are removed by
//! DynamoDB's TTL some time after that moment.

/// The table's partition key attribute (String): the stable message key.
pub const PARTITION_KEY: &str = "pk";

/// The table's sort key attribute (Number): the attempt, from 1.
pub const SORT_KEY: &str = "sk";

/// The global secondary index by class and time.
pub const CLASS_TIME_INDEX: &str = "by_class_time";

/// The partition key attribute of [`CLASS_TIME_INDEX`] (String): the failure class' wire name.
pub const CLASS_ATTRIBUTE: &str = "class";

/// The sort key attribute of [`CLASS_TIME_INDEX`] (String): the decision time, RFC 3339 in UTC,
/// so that string order is time order.
pub const TIME_ATTRIBUTE: &str = "at";

/// The TTL attribute (Number, seconds since the epoch).
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// The table name `provision` creates for a prefix: `<prefix>-ledger`.
pub fn table_name(prefix: &str) -> String {
    format!("{prefix}-ledger")
}
