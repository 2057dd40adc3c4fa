//! Serde helpers that write bytes as standard base64 strings.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Encode bytes as standard base64.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decode standard base64.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(text)
}

/// `Option<Vec<u8>>` as an optional base64 string.
pub mod option {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as base64 or null.
    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_str(&super::encode(bytes)),
            None => s.serialize_none(),
        }
    }

    /// Deserialize from base64 or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| super::decode(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}
