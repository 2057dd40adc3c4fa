//! [`Attributes`]: a message's attributes by name, in name order.
//!
//! A message carries a handful of attributes (SQS allows ten), so they are kept in one vector
//! sorted by name rather than in a `BTreeMap`, whose smallest node holds room for eleven (about
//! 1 KB a message). Taking the `dlq-context` out of a received message and dropping the rest
//! cost about 650 instructions with the map and about 430 with the vector (callgrind, over the
//! benchmark's mix). Lookups are binary searches; building from many entries at once (an
//! iterator, or a JSON object) sorts once, so that even a hostile number of attributes costs
//! `n log n`, not `n²`. When a name comes twice, the last value wins, as in a map.

use crate::message::Attribute;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Message attributes by name, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// Sorted by name, each name once.
    entries: Vec<(String, Attribute)>,
}

impl Attributes {
    /// No attributes.
    pub const fn new() -> Self {
        Attributes {
            entries: Vec::new(),
        }
    }

    /// How many attributes there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remove them all.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|(entry, _)| entry.as_str().cmp(name))
    }

    /// The attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&Attribute> {
        self.position(name).ok().map(|at| &self.entries[at].1)
    }

    /// Whether there is an attribute called `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Set the attribute `name`, giving back the value it replaces.
    pub fn insert(&mut self, name: String, value: Attribute) -> Option<Attribute> {
        match self.position(&name) {
            Ok(at) => Some(std::mem::replace(&mut self.entries[at].1, value)),
            Err(at) => {
                self.entries.insert(at, (name, value));
                None
            }
        }
    }

    /// Take out the attribute `name`.
    pub fn remove(&mut self, name: &str) -> Option<Attribute> {
        self.position(name).ok().map(|at| self.entries.remove(at).1)
    }

    /// The attributes in name order.
    pub fn iter(&self) -> Iter<'_> {
        self.into_iter()
    }
}

/// The attributes of an [`Attributes`] in name order, by reference.
pub type Iter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, Attribute)>,
    fn(&'a (String, Attribute)) -> (&'a String, &'a Attribute),
>;

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a String, &'a Attribute);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(name, value)| (name, value))
    }
}

impl IntoIterator for Attributes {
    type Item = (String, Attribute);
    type IntoIter = std::vec::IntoIter<(String, Attribute)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl FromIterator<(String, Attribute)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (String, Attribute)>>(entries: I) -> Self {
        let mut entries: Vec<(String, Attribute)> = entries.into_iter().collect();
        // A stable sort keeps equal names in their order; of each run of equal names the first
        // entry stays, given the value of the last.
        entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        Attributes { entries }
    }
}

impl std::ops::Index<&str> for Attributes {
    type Output = Attribute;

    /// The attribute called `name`; panics when there is none, like a map's index.
    fn index(&self, name: &str) -> &Attribute {
        self.get(name)
            .unwrap_or_else(|| panic!("no attribute called {name:?}"))
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, value) in &self.entries {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AttributesVisitor;

        impl<'de> Visitor<'de> for AttributesVisitor {
            type Value = Attributes;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of message attributes by name")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Attributes, M::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry::<String, Attribute>()? {
                    entries.push(entry);
                }
                Ok(entries.into_iter().collect())
            }
        }

        deserializer.deserialize_map(AttributesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn attribute(value: &str) -> Attribute {
        Attribute::string(value)
    }

    #[test]
    fn inserts_replace_and_removes_take_out_by_name() {
        let mut attributes = Attributes::new();
        assert_eq!(attributes.insert("b".into(), attribute("1")), None);
        assert_eq!(attributes.insert("a".into(), attribute("2")), None);
        assert_eq!(
            attributes.insert("b".into(), attribute("3")),
            Some(attribute("1"))
        );
        assert_eq!(attributes.len(), 2);
        assert_eq!(attributes["b"], attribute("3"));
        assert!(attributes.contains_key("a") && !attributes.contains_key("c"));
        assert_eq!(attributes.remove("a"), Some(attribute("2")));
        assert_eq!(attributes.remove("a"), None);
        let names: Vec<&String> = attributes.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn json_is_an_object_in_name_order_and_the_last_of_a_repeated_name_wins() {
        let attributes: Attributes = serde_json::from_str(
            r#"{"z":{"data_type":"String","string_value":"1"},"a":{"data_type":"String","string_value":"2"},"z":{"data_type":"String","string_value":"3"}}"#,
        )
        .unwrap();
        assert_eq!(attributes.len(), 2);
        assert_eq!(attributes["z"], attribute("3"));
        assert_eq!(
            serde_json::to_string(&attributes).unwrap(),
            r#"{"a":{"data_type":"String","string_value":"2"},"z":{"data_type":"String","string_value":"3"}}"#
        );
        assert!(serde_json::from_str::<Attributes>("[]").is_err());
    }

    #[test]
    fn a_hundred_thousand_attributes_are_built_without_quadratic_work() {
        let attributes: Attributes = (0..100_000)
            .rev()
            .map(|i| (format!("name-{i:06}"), attribute("v")))
            .collect();
        assert_eq!(attributes.len(), 100_000);
        assert_eq!(attributes.iter().next().unwrap().0, "name-000000");
        assert!(attributes.get("name-099999").is_some());
    }

    proptest! {
        /// Whatever is inserted and removed, in whatever order, the attributes hold what a
        /// `BTreeMap` holds, in the same order.
        #[test]
        fn behaves_like_a_map(operations in prop::collection::vec((any::<bool>(), 0u8..12, 0u8..4), 0..60)) {
            let mut attributes = Attributes::new();
            let mut map = BTreeMap::new();
            for (insert, name, value) in operations {
                let name = format!("n{name}");
                if insert {
                    let value = attribute(&value.to_string());
                    prop_assert_eq!(attributes.insert(name.clone(), value.clone()), map.insert(name, value));
                } else {
                    prop_assert_eq!(attributes.remove(&name), map.remove(&name));
                }
                prop_assert_eq!(attributes.len(), map.len());
            }
            let ours: Vec<_> = attributes.iter().collect();
            let theirs: Vec<_> = map.iter().collect();
            prop_assert_eq!(ours, theirs);
            let collected: Attributes = map.clone().into_iter().collect();
            prop_assert_eq!(collected, attributes);
        }
    }
}
