//! The demo domain: the order-processing scenario of the original design. A producer validates
//! and sends orders; a consumer processes them against simulated downstream services that fail
//! in the original's five ways:
//!
//! | fate | what the downstream does | class |
//! | --- | --- | --- |
//! | `auth` | the customer's payment token expired: `401 Unauthorized` | auth |
//! | `validation` | the order names no user | validation |
//! | `timeout` | the warehouse is slow on the first attempts, then answers | timeout |
//! | `bad_payload` | the producer's client sent truncated JSON | bad_payload |
//! | `dependency` | the payment gateway answers `503` for a few attempts, then recovers | dependency |
//!
//! Everything is decided by a seeded random generator, so a run is reproducible.
//!
//! # Layout
//! - [`Order`] and [`validate_order_request`]: the order and the producer's validation.
//! - [`FailureMix`] and [`Fate`]: which orders fail and how.
//! - [`OrderFactory`]: makes the bodies a producer sends.
//! - [`OrderConsumer`]: the consumer's handler, a [`MessageHandler`].

use async_trait::async_trait;
use dlq_healer_core::consumer::MessageHandler;
use dlq_healer_core::context::{ContextReading, ErrorInfo};
use dlq_healer_core::message::{CONTEXT_ATTRIBUTE, ReceivedMessage};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Mutex;

/// An order, as the producer's HTTP API accepts it and the consumer processes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id.
    pub order_id: u64,
    /// The customer; the consumer refuses orders without one.
    pub user: Option<String>,
    /// Total in cents.
    pub amount_cents: u64,
    /// Items ordered.
    pub items: Vec<OrderItem>,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Quantity.
    pub quantity: u32,
}

/// Why the producer refused an order request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid order: {0}")]
pub struct InvalidOrder(pub String);

/// The producer's validation of a request body: JSON, an `order_id`, at least one item. (The
/// user is checked by the consumer, as in the original, so that validation failures reach the DLQ.)
pub fn validate_order_request(body: &[u8]) -> Result<Order, InvalidOrder> {
    let order: Order = serde_json::from_slice(body).map_err(|e| InvalidOrder(e.to_string()))?;
    if order.items.is_empty() {
        return Err(InvalidOrder("an order needs at least one item".into()));
    }
    if order.items.iter().any(|i| i.quantity == 0) {
        return Err(InvalidOrder("item quantities must be at least 1".into()));
    }
    Ok(order)
}

/// What happens to one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fate {
    /// Processed on the first try.
    Ok,
    /// Expired payment token.
    Auth,
    /// No user.
    Validation,
    /// Slow warehouse for `slow_attempts` tries.
    Timeout {
        /// Tries that time out before one succeeds.
        slow_attempts: u32,
    },
    /// Truncated JSON.
    BadPayload,
    /// Payment gateway 503 for `failing_attempts` tries.
    Dependency {
        /// Tries that fail before the gateway recovers.
        failing_attempts: u32,
    },
}

/// Percentages of each fate; the rest are processed on the first try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureMix {
    /// Percent with an expired token.
    pub auth: u32,
    /// Percent without a user.
    pub validation: u32,
    /// Percent that time out first.
    pub timeout: u32,
    /// Percent with truncated JSON.
    pub bad_payload: u32,
    /// Percent that hit the gateway outage.
    pub dependency: u32,
}

impl Default for FailureMix {
    /// 10% each: half the orders fail at first, as in the original's dashboard.
    fn default() -> Self {
        FailureMix {
            auth: 10,
            validation: 10,
            timeout: 10,
            bad_payload: 10,
            dependency: 10,
        }
    }
}

impl FromStr for FailureMix {
    type Err = String;

    /// `auth=10,validation=10,timeout=10,bad_payload=10,dependency=10`; missing names are 0.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut mix = FailureMix {
            auth: 0,
            validation: 0,
            timeout: 0,
            bad_payload: 0,
            dependency: 0,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not name=percent"))?;
            let value: u32 = value
                .trim()
                .parse()
                .map_err(|_| format!("{value:?} in {part:?} is not a whole percentage"))?;
            let slot = match name.trim() {
                "auth" => &mut mix.auth,
                "validation" => &mut mix.validation,
                "timeout" => &mut mix.timeout,
                "bad_payload" => &mut mix.bad_payload,
                "dependency" => &mut mix.dependency,
                other => {
                    return Err(format!(
                        "unknown fate {other:?}: use auth, validation, timeout, bad_payload, dependency"
                    ));
                }
            };
            *slot = value;
        }
        let total = mix.auth + mix.validation + mix.timeout + mix.bad_payload + mix.dependency;
        if total > 100 {
            return Err(format!("the percentages add up to {total}, more than 100"));
        }
        Ok(mix)
    }
}

impl FailureMix {
    fn draw(&self, rng: &mut SmallRng) -> Fate {
        let roll = rng.gen_range(0..100);
        let mut bound = 0;
        for (share, fate) in [
            (self.auth, Fate::Auth),
            (self.validation, Fate::Validation),
            (
                self.timeout,
                Fate::Timeout {
                    slow_attempts: rng.gen_range(1..=2),
                },
            ),
            (self.bad_payload, Fate::BadPayload),
            (
                self.dependency,
                Fate::Dependency {
                    failing_attempts: rng.gen_range(1..=4),
                },
            ),
        ] {
            bound += share;
            if roll < bound {
                return fate;
            }
        }
        Fate::Ok
    }
}

/// Makes orders with their fates, from a seed.
pub struct OrderFactory {
    rng: SmallRng,
    mix: FailureMix,
    next_id: u64,
}

impl OrderFactory {
    /// A factory with a failure mix and a seed.
    pub fn new(mix: FailureMix, seed: u64) -> Self {
        OrderFactory {
            rng: SmallRng::seed_from_u64(seed),
            mix,
            next_id: 10_001,
        }
    }

    /// The next order's body and fate.
    pub fn next_order(&mut self) -> (u64, Vec<u8>, Fate) {
        let order_id = self.next_id;
        self.next_id += 1;
        let fate = self.mix.draw(&mut self.rng);
        let items = (0..self.rng.gen_range(1..=3))
            .map(|_| OrderItem {
                sku: format!("SKU-{:04}", self.rng.gen_range(0..10_000)),
                quantity: self.rng.gen_range(1..=4),
            })
            .collect();
        let order = Order {
            order_id,
            user: (fate != Fate::Validation)
                .then(|| format!("user-{}", self.rng.gen_range(1..500))),
            amount_cents: self.rng.gen_range(500..50_000),
            items,
        };
        let mut body = serde_json::to_vec(&order).expect("an order always serializes");
        if fate == Fate::BadPayload {
            body.truncate(body.len() / 2);
        }
        (order_id, body, fate)
    }
}

/// The order consumer: processes orders against the simulated downstream services.
pub struct OrderConsumer {
    fates: Mutex<HashMap<u64, Fate>>,
    processed: Mutex<BTreeSet<u64>>,
}

impl Default for OrderConsumer {
    fn default() -> Self {
        Self::new()
    }
}

impl OrderConsumer {
    /// A consumer that knows no fates yet (every order succeeds).
    pub fn new() -> Self {
        OrderConsumer {
            fates: Mutex::new(HashMap::new()),
            processed: Mutex::new(BTreeSet::new()),
        }
    }

    /// Tell the simulated downstream what it will do with an order.
    pub fn expect(&self, order_id: u64, fate: Fate) {
        self.fates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(order_id, fate);
    }

    /// Ids of the orders processed successfully.
    pub fn processed(&self) -> BTreeSet<u64> {
        self.processed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn fate_of(&self, order_id: u64) -> Fate {
        self.fates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&order_id)
            .copied()
            .unwrap_or(Fate::Ok)
    }
}

/// How many times the healer has re-queued this message, from its `dlq-context`.
fn heal_attempts(message: &ReceivedMessage) -> u32 {
    message
        .attributes
        .get(CONTEXT_ATTRIBUTE)
        .and_then(|a| a.as_str())
        .map(ContextReading::parse)
        .and_then(|reading| {
            reading
                .context()
                .and_then(|c| c.heal.as_ref())
                .map(|h| h.attempts)
        })
        .unwrap_or(0)
}

fn error(error_type: &str, message: &str, status: Option<u16>) -> ErrorInfo {
    ErrorInfo {
        error_type: Some(error_type.to_string()),
        status,
        ..ErrorInfo::message(message)
    }
}

#[async_trait]
impl MessageHandler for OrderConsumer {
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), ErrorInfo> {
        let order: Order = serde_json::from_slice(&message.body)
            .map_err(|e| error("JSONDecodeError", &format!("cannot parse order: {e}"), None))?;
        let Some(_user) = &order.user else {
            return Err(error(
                "ValidationError",
                &format!(
                    "1 validation error for Order {}\nuser\n  Field required [type=missing]",
                    order.order_id
                ),
                None,
            ));
        };
        let attempts = heal_attempts(message);
        match self.fate_of(order.order_id) {
            Fate::Auth => {
                return Err(error(
                    "HTTPError",
                    "401 Unauthorized: payment token expired (Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.c2lnbmF0dXJl)",
                    Some(401),
                ));
            }
            Fate::Timeout { slow_attempts } if attempts < slow_attempts => {
                return Err(error(
                    "TimeoutError",
                    "Task timed out after 30.00 seconds",
                    None,
                ));
            }
            Fate::Dependency { failing_attempts } if attempts < failing_attempts => {
                return Err(error(
                    "HTTPError",
                    "503 Service Unavailable: payment gateway is not responding",
                    Some(503),
                ));
            }
            _ => {}
        }
        self.processed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(order.order_id);
        Ok(())
    }
}

/// The classes of the original dashboard's dead letters, in percent, for benchmarks and fault
/// tests: auth 25, bad payload 25, validation 20, timeout 10, dependency 10, unknown 10.
pub const DEAD_LETTER_MIX: [(&str, u32); 6] = [
    ("auth", 25),
    ("bad_payload", 25),
    ("validation", 20),
    ("timeout", 10),
    ("dependency", 10),
    ("unknown", 10),
];

/// One dead letter of [`dead_letter_mix`]: the body the consumer got, the error it failed with,
/// and the class the default rules should give it.
#[derive(Debug, Clone)]
pub struct MixedDeadLetter {
    /// The order body (truncated JSON for `bad_payload`).
    pub body: Vec<u8>,
    /// The consumer's error, as [`OrderConsumer`] reports it.
    pub error: ErrorInfo,
    /// The expected class name.
    pub class: &'static str,
}

/// `count` dead letters in the proportions of [`DEAD_LETTER_MIX`] (rounded; the remainder is
/// auth), shuffled by `seed`. Every body is distinct; callers attach the `dlq-context` with
/// `dlq_healer_core::consumer::dead_letter_for`, as the consumer library does.
pub fn dead_letter_mix(count: usize, seed: u64) -> Vec<MixedDeadLetter> {
    let mut classes: Vec<&'static str> = Vec::with_capacity(count);
    for &(class, percent) in &DEAD_LETTER_MIX[1..] {
        let n = count * percent as usize / 100;
        classes.extend(std::iter::repeat_n(class, n));
    }
    classes.extend(std::iter::repeat_n("auth", count - classes.len()));
    let mut rng = SmallRng::seed_from_u64(seed);
    for i in (1..classes.len()).rev() {
        classes.swap(i, rng.gen_range(0..=i));
    }
    classes
        .into_iter()
        .enumerate()
        .map(|(i, class)| {
            let order_id = 20_001 + i as u64;
            let order = Order {
                order_id,
                user: (class != "validation").then(|| format!("user-{}", rng.gen_range(1..500))),
                amount_cents: rng.gen_range(500..50_000),
                items: vec![OrderItem {
                    sku: format!("SKU-{:04}", rng.gen_range(0..10_000)),
                    quantity: rng.gen_range(1..=4),
                }],
            };
            let mut body = serde_json::to_vec(&order).expect("an order always serializes");
            let error = match class {
                "auth" => error(
                    "HTTPError",
                    "401 Unauthorized: payment token expired (Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.c2lnbmF0dXJl)",
                    Some(401),
                ),
                "bad_payload" => {
                    body.truncate(body.len() / 2);
                    error(
                        "JSONDecodeError",
                        "cannot parse order: EOF while parsing an object",
                        None,
                    )
                }
                "validation" => error(
                    "ValidationError",
                    &format!(
                        "1 validation error for Order {order_id}\nuser\n  Field required [type=missing]"
                    ),
                    None,
                ),
                "timeout" => error("TimeoutError", "Task timed out after 30.00 seconds", None),
                "dependency" => error(
                    "HTTPError",
                    "503 Service Unavailable: payment gateway is not responding",
                    Some(503),
                ),
                _ => error(
                    "InventoryError",
                    "order rejected by the inventory reservation step",
                    None,
                ),
            };
            MixedDeadLetter { body, error, class }
        })
        .collect()
}

/// [`dead_letter_mix`] as the consumer library sends it to a DLQ: each message with its
/// `dlq-context` (the error, `source` as the source queue, the consumer, `failed_at`), originally
/// the message `order-<i>`, sent as entry `m<i>`.
pub fn dead_letters_as_sent(
    count: usize,
    seed: u64,
    source: &str,
    failed_at: chrono::DateTime<chrono::Utc>,
) -> Vec<dlq_healer_core::message::OutgoingMessage> {
    dead_letter_mix(count, seed)
        .into_iter()
        .enumerate()
        .map(|(i, letter)| {
            let original = ReceivedMessage {
                message_id: format!("order-{i}"),
                receipt_handle: String::new(),
                body: letter.body,
                attributes: Default::default(),
                receive_count: 1,
                redrive_source: None,
                sent_at: None,
                group_id: None,
            };
            let mut out = dlq_healer_core::consumer::dead_letter_for(
                &original,
                letter.error,
                "orders-consumer",
                source,
                failed_at,
            );
            out.entry_id = format!("m{i}");
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlq_healer_core::message::Attributes;
    use dlq_healer_core::rules::RuleSet;
    use dlq_healer_core::{FailureClass, letter::OpenedLetter};

    fn received(body: Vec<u8>) -> ReceivedMessage {
        ReceivedMessage {
            message_id: "m".into(),
            receipt_handle: "r".into(),
            body,
            attributes: Attributes::new(),
            receive_count: 1,
            redrive_source: None,
            sent_at: None,
            group_id: None,
        }
    }

    #[test]
    fn mixes_parse_and_refuse_nonsense() {
        assert_eq!(
            "auth=5, timeout=20".parse::<FailureMix>().unwrap().timeout,
            20
        );
        assert!(
            "auth=60,timeout=60"
                .parse::<FailureMix>()
                .unwrap_err()
                .contains("more than 100")
        );
        assert!(
            "oops=1"
                .parse::<FailureMix>()
                .unwrap_err()
                .contains("unknown fate")
        );
        assert!("auth".parse::<FailureMix>().is_err());
    }

    #[test]
    fn factories_are_deterministic_per_seed() {
        let take = |seed| {
            let mut factory = OrderFactory::new(FailureMix::default(), seed);
            (0..50).map(|_| factory.next_order()).collect::<Vec<_>>()
        };
        assert_eq!(take(1), take(1));
        assert_ne!(take(1), take(2));
    }

    #[tokio::test]
    async fn every_fate_fails_the_way_its_class_says() {
        let rules = RuleSet::defaults();
        let consumer = OrderConsumer::new();
        let mut factory = OrderFactory::new(FailureMix::default(), 3);
        let mut seen = BTreeSet::new();
        for _ in 0..200 {
            let (id, body, fate) = factory.next_order();
            consumer.expect(id, fate);
            let message = received(body);
            let result = consumer.handle(&message).await;
            let expected = match fate {
                Fate::Ok => None,
                Fate::Auth => Some(FailureClass::Auth),
                Fate::Validation => Some(FailureClass::Validation),
                Fate::Timeout { .. } => Some(FailureClass::Timeout),
                Fate::BadPayload => Some(FailureClass::BadPayload),
                Fate::Dependency { .. } => Some(FailureClass::Dependency),
            };
            match (result, expected) {
                (Ok(()), None) => {}
                (Err(error), Some(class)) => {
                    let dead = dlq_healer_core::consumer::dead_letter_for(
                        &message,
                        error,
                        "c",
                        "orders",
                        chrono::Utc::now(),
                    );
                    let letter = OpenedLetter::open(ReceivedMessage {
                        body: dead.body,
                        attributes: dead.attributes,
                        ..message
                    });
                    assert_eq!(rules.classify(&letter.facts()).class, class, "{fate:?}");
                    seen.insert(class);
                }
                (result, expected) => panic!("{fate:?}: got {result:?}, expected {expected:?}"),
            }
        }
        assert_eq!(seen.len(), 5, "all five failure classes occur: {seen:?}");
    }

    #[test]
    fn the_dead_letter_mix_has_its_proportions_and_classes() {
        let rules = RuleSet::defaults();
        let mix = dead_letter_mix(100, 9);
        assert_eq!(mix.len(), 100);
        for (class, percent) in DEAD_LETTER_MIX {
            assert_eq!(
                mix.iter().filter(|m| m.class == class).count(),
                percent as usize,
                "{class}"
            );
        }
        let bodies: BTreeSet<&[u8]> = mix.iter().map(|m| m.body.as_slice()).collect();
        assert_eq!(bodies.len(), 100, "every body is distinct");
        for letter in &mix {
            let message = received(letter.body.clone());
            let dead = dlq_healer_core::consumer::dead_letter_for(
                &message,
                letter.error.clone(),
                "orders-consumer",
                "orders",
                chrono::Utc::now(),
            );
            let opened = OpenedLetter::open(ReceivedMessage {
                body: dead.body,
                attributes: dead.attributes,
                ..message
            });
            assert_eq!(
                rules.classify(&opened.facts()).class.as_str(),
                letter.class,
                "{:?}",
                letter.error
            );
        }
        assert_eq!(
            dead_letter_mix(30, 1)[0].body,
            dead_letter_mix(30, 1)[0].body
        );
    }

    #[test]
    fn the_producer_refuses_bad_requests() {
        assert!(validate_order_request(b"{").is_err());
        assert!(
            validate_order_request(br#"{"order_id":1,"user":"u","amount_cents":5,"items":[]}"#)
                .is_err()
        );
        assert!(validate_order_request(br#"{"order_id":1,"user":null,"amount_cents":5,"items":[{"sku":"a","quantity":1}]}"#).is_ok());
    }
}
