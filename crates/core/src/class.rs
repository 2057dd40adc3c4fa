//! The six failure classes every dead letter falls into.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a message failed, as far as the healer can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Credentials missing, invalid or expired: a person must fix them.
    Auth,
    /// The message is well-formed but its content was refused.
    Validation,
    /// Something took too long; usually transient.
    Timeout,
    /// The body cannot be parsed at all (not JSON, not UTF-8, truncated).
    BadPayload,
    /// A downstream service failed or throttled us; usually transient.
    Dependency,
    /// Nothing matched.
    Unknown,
}

impl FailureClass {
    /// Every class, in display order.
    pub const ALL: [FailureClass; 6] = [
        FailureClass::Auth,
        FailureClass::Validation,
        FailureClass::Timeout,
        FailureClass::BadPayload,
        FailureClass::Dependency,
        FailureClass::Unknown,
    ];

    /// The wire name, as used in rules files, ledger records and archive paths.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Auth => "auth",
            FailureClass::Validation => "validation",
            FailureClass::Timeout => "timeout",
            FailureClass::BadPayload => "bad_payload",
            FailureClass::Dependency => "dependency",
            FailureClass::Unknown => "unknown",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A class name that is not one of the six.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown failure class {0:?}: expected one of auth, validation, timeout, bad_payload, dependency, unknown"
)]
pub struct UnknownClass(pub String);

impl FromStr for FailureClass {
    type Err = UnknownClass;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownClass(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for class in FailureClass::ALL {
            assert_eq!(class.as_str().parse::<FailureClass>().unwrap(), class);
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
        }
        assert!("Auth".parse::<FailureClass>().is_err());
    }
}
