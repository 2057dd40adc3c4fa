//! What to do with each class: re-queue with backoff up to a number of attempts, or archive;
//! with or without an alert. Pure functions of the class, the attempt and a random draw.

use crate::class::FailureClass;
use serde::{Deserialize, Serialize};

/// SQS's longest per-message delay; longer waits park the message in the DLQ instead.
pub const MAX_SEND_DELAY_SECONDS: u32 = 900;
/// SQS's longest visibility timeout: the longest a message can be parked.
pub const MAX_PARK_SECONDS: u32 = 12 * 60 * 60;

/// The first thing a class's messages get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseAction {
    /// Send back to the source queue with backoff, until `max_attempts`; then archive.
    Requeue,
    /// Archive at once.
    Archive,
}

/// The policy of one class, as written under `[policy.<class>]` in a rules file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassPolicy {
    /// Re-queue or archive.
    pub action: BaseAction,
    /// Alert on every message of this class.
    #[serde(default)]
    pub alert: bool,
    /// Re-queues before giving up (only for `requeue`).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Backoff of the first re-queue, in seconds; doubles each attempt.
    #[serde(default = "default_base_delay")]
    pub base_delay_seconds: u32,
    /// Longest backoff, in seconds (up to 12 hours; beyond 15 minutes the message is parked).
    #[serde(default = "default_max_delay")]
    pub max_delay_seconds: u32,
    /// Alert when the attempts run out and the message is archived.
    #[serde(default)]
    pub alert_when_exhausted: bool,
}

/// Re-queues before giving up, when a re-queue policy does not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The first re-queue's backoff in seconds, when a re-queue policy does not say.
pub const DEFAULT_BASE_DELAY_SECONDS: u32 = 2;

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}
fn default_base_delay() -> u32 {
    DEFAULT_BASE_DELAY_SECONDS
}
fn default_max_delay() -> u32 {
    MAX_SEND_DELAY_SECONDS
}

impl ClassPolicy {
    /// A policy that archives, with or without an alert.
    pub fn archive(alert: bool) -> Self {
        ClassPolicy {
            action: BaseAction::Archive,
            alert,
            max_attempts: 0,
            base_delay_seconds: default_base_delay(),
            max_delay_seconds: default_max_delay(),
            alert_when_exhausted: false,
        }
    }

    /// A policy that re-queues with backoff.
    pub fn requeue(max_attempts: u32, base_delay_seconds: u32, max_delay_seconds: u32) -> Self {
        ClassPolicy {
            action: BaseAction::Requeue,
            alert: false,
            max_attempts,
            base_delay_seconds,
            max_delay_seconds,
            alert_when_exhausted: false,
        }
    }

    /// Check the numbers; the error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.action == BaseAction::Requeue && self.max_attempts == 0 {
            return Err("max_attempts must be at least 1 for action \"requeue\" (or use action \"archive\")".into());
        }
        if self.max_attempts > 100 {
            return Err(format!(
                "max_attempts {} is more than 100",
                self.max_attempts
            ));
        }
        if self.max_delay_seconds > MAX_PARK_SECONDS {
            return Err(format!(
                "max_delay_seconds {} is more than 12 hours ({MAX_PARK_SECONDS}), the longest a message can wait in a queue",
                self.max_delay_seconds
            ));
        }
        if self.base_delay_seconds > self.max_delay_seconds {
            return Err(format!(
                "base_delay_seconds {} is more than max_delay_seconds {}",
                self.base_delay_seconds, self.max_delay_seconds
            ));
        }
        Ok(())
    }

    /// The backoff ceiling before the given attempt (1-based): `base * 2^(attempt-1)`, capped.
    pub fn backoff_ceiling(&self, attempt: u32) -> u32 {
        let factor = 1u64 << attempt.saturating_sub(1).min(32);
        (self.base_delay_seconds as u64 * factor).min(self.max_delay_seconds as u64) as u32
    }

    /// Full-jitter backoff: uniform in `[0, ceiling]`, from a draw in `[0, 1)`.
    pub fn backoff(&self, attempt: u32, unit_draw: f64) -> u32 {
        let ceiling = self.backoff_ceiling(attempt) as f64;
        (unit_draw.clamp(0.0, 1.0) * (ceiling + 1.0))
            .floor()
            .min(ceiling) as u32
    }
}

/// Where a message goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Disposition {
    /// Send back to its source queue, visible after `delay_seconds` (at most 900).
    Requeue {
        /// Per-message send delay.
        delay_seconds: u32,
    },
    /// Leave in the DLQ, invisible for `seconds`, then re-queue.
    Park {
        /// Visibility timeout to set on the DLQ message.
        seconds: u32,
    },
    /// Store in the archive with its full context.
    Archive,
}

/// The decision for one message: what happens, whether to alert, and which attempt this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Where the message goes.
    pub disposition: Disposition,
    /// Whether an alert goes out for it.
    pub alert: bool,
    /// Whether it is archived because its re-queue attempts ran out.
    pub exhausted: bool,
    /// This handling's attempt number: re-queues before it plus one.
    pub attempt: u32,
}

impl Verdict {
    /// The action as `classify` prints it: `requeue`, `park`, `archive` or `alert+archive`.
    pub fn action_name(&self) -> &'static str {
        match (self.disposition, self.alert) {
            (Disposition::Requeue { .. }, false) => "requeue",
            (Disposition::Requeue { .. }, true) => "alert+requeue",
            (Disposition::Park { .. }, false) => "park",
            (Disposition::Park { .. }, true) => "alert+park",
            (Disposition::Archive, false) => "archive",
            (Disposition::Archive, true) => "alert+archive",
        }
    }
}

/// Decide for a message with `prior_requeues` re-queues behind it. FIFO queues take no
/// per-message delay, so their backoff always parks.
pub fn decide(policy: &ClassPolicy, prior_requeues: u32, fifo: bool, unit_draw: f64) -> Verdict {
    let attempt = prior_requeues.saturating_add(1);
    if policy.action == BaseAction::Requeue && prior_requeues < policy.max_attempts {
        let delay = policy.backoff(attempt, unit_draw);
        let disposition = if delay > MAX_SEND_DELAY_SECONDS || (fifo && delay > 0) {
            Disposition::Park {
                seconds: delay.min(MAX_PARK_SECONDS),
            }
        } else {
            Disposition::Requeue {
                delay_seconds: delay,
            }
        };
        return Verdict {
            disposition,
            alert: policy.alert,
            exhausted: false,
            attempt,
        };
    }
    let exhausted = policy.action == BaseAction::Requeue;
    Verdict {
        disposition: Disposition::Archive,
        alert: policy.alert || (exhausted && policy.alert_when_exhausted),
        exhausted,
        attempt,
    }
}

/// The policy of every class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTable {
    policies: [ClassPolicy; 6],
}

impl Default for PolicyTable {
    /// The defaults of DESIGN.md: auth alert+archive; validation, bad_payload, unknown archive;
    /// timeout re-queue 5 times; dependency re-queue 6 times with longer backoff, then alert.
    fn default() -> Self {
        let mut dependency = ClassPolicy::requeue(6, 10, 3600);
        dependency.alert_when_exhausted = true;
        PolicyTable {
            policies: [
                ClassPolicy::archive(true),
                ClassPolicy::archive(false),
                ClassPolicy::requeue(5, 2, MAX_SEND_DELAY_SECONDS),
                ClassPolicy::archive(false),
                dependency,
                ClassPolicy::archive(false),
            ],
        }
    }
}

impl PolicyTable {
    fn slot(class: FailureClass) -> usize {
        FailureClass::ALL
            .iter()
            .position(|c| *c == class)
            .expect("every class is in ALL")
    }

    /// The policy of a class.
    pub fn get(&self, class: FailureClass) -> &ClassPolicy {
        &self.policies[Self::slot(class)]
    }

    /// Replace the policy of a class.
    pub fn set(&mut self, class: FailureClass, policy: ClassPolicy) {
        self.policies[Self::slot(class)] = policy;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults_follow_the_design_table() {
        let table = PolicyTable::default();
        assert_eq!(
            decide(table.get(FailureClass::Auth), 0, false, 0.5).action_name(),
            "alert+archive"
        );
        assert_eq!(
            decide(table.get(FailureClass::Validation), 0, false, 0.5).action_name(),
            "archive"
        );
        assert_eq!(
            decide(table.get(FailureClass::Timeout), 0, false, 0.5).action_name(),
            "requeue"
        );
        assert_eq!(
            decide(table.get(FailureClass::BadPayload), 0, false, 0.5).action_name(),
            "archive"
        );
        assert_eq!(
            decide(table.get(FailureClass::Unknown), 0, false, 0.5).action_name(),
            "archive"
        );
        let dependency = table.get(FailureClass::Dependency);
        assert_eq!(decide(dependency, 0, false, 0.5).action_name(), "requeue");
        let exhausted = decide(dependency, dependency.max_attempts, false, 0.5);
        assert_eq!(exhausted.action_name(), "alert+archive");
        assert!(exhausted.exhausted);
    }

    #[test]
    fn the_largest_count_of_requeues_is_exhausted_and_its_attempt_does_not_wrap() {
        let dependency = PolicyTable::default().get(FailureClass::Dependency).clone();
        let verdict = decide(&dependency, u32::MAX, false, 0.5);
        assert_eq!(verdict.attempt, u32::MAX);
        assert!(verdict.exhausted);
        assert_eq!(verdict.disposition, Disposition::Archive);
    }

    #[test]
    fn long_backoff_parks_and_fifo_always_parks() {
        let policy = ClassPolicy::requeue(10, 600, 7200);
        let verdict = decide(&policy, 3, false, 0.999);
        assert!(
            matches!(verdict.disposition, Disposition::Park { seconds } if seconds > 900 && seconds <= 4800),
            "{verdict:?}"
        );
        let fifo = decide(&ClassPolicy::requeue(3, 2, 60), 0, true, 0.99);
        assert!(matches!(fifo.disposition, Disposition::Park { .. }));
    }

    #[test]
    fn invalid_policies_say_why() {
        assert!(
            ClassPolicy::requeue(0, 1, 10)
                .validate()
                .unwrap_err()
                .contains("max_attempts")
        );
        assert!(
            ClassPolicy::requeue(3, 1, 50_000)
                .validate()
                .unwrap_err()
                .contains("12 hours")
        );
        assert!(
            ClassPolicy::requeue(3, 100, 10)
                .validate()
                .unwrap_err()
                .contains("base_delay")
        );
    }

    proptest! {
        #[test]
        fn attempts_never_exceed_max(max in 1u32..20, prior in 0u32..40, draw in 0.0f64..1.0, fifo: bool) {
            let policy = ClassPolicy::requeue(max, 1, 900);
            let verdict = decide(&policy, prior, fifo, draw);
            let requeues = !matches!(verdict.disposition, Disposition::Archive);
            prop_assert_eq!(requeues, prior < max);
            prop_assert_eq!(verdict.exhausted, prior >= max);
        }

        #[test]
        fn backoff_stays_within_its_ceiling(base in 0u32..100, cap in 100u32..43_200, attempt in 1u32..64, draw in 0.0f64..1.0) {
            let policy = ClassPolicy::requeue(5, base, cap);
            let delay = policy.backoff(attempt, draw);
            prop_assert!(delay <= policy.backoff_ceiling(attempt));
            prop_assert!(policy.backoff_ceiling(attempt) <= cap);
        }
    }
}
