//! How a message's attributes are stored in the `attributes` column of the queue table.
//!
//! Schema version 3 stores them as a BLOB of length-prefixed fields, which is copied rather than
//! escaped and parsed: a `dlq-context` attribute is JSON inside a string, which as JSON text
//! costs an escape per quote on every send and an unescape per quote on every receive. Rows
//! written by earlier versions hold JSON text and are still read.
//!
//! The BLOB is [`FORMAT`], then per attribute, in name order: the name, the data type, the string
//! value and the binary value. Each is a presence byte (`0` absent, `1` present; the name and
//! data type are always present) followed, when present, by its length as a little-endian `u32`
//! and its bytes.

use dlq_healer_core::message::{Attribute, Attributes};
use rusqlite::types::ValueRef;

/// The first byte of an encoded BLOB: the layout's version.
const FORMAT: u8 = 1;

/// The `attributes` column of a row, as stored: a BLOB, or JSON text from an earlier version.
pub(crate) enum StoredAttributes {
    Blob(Vec<u8>),
    Json(String),
}

impl StoredAttributes {
    /// The column `index` of `row`.
    pub(crate) fn column(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Self> {
        match row.get_ref(index)? {
            ValueRef::Blob(blob) => Ok(StoredAttributes::Blob(blob.to_vec())),
            ValueRef::Text(text) => std::str::from_utf8(text)
                .map(|text| StoredAttributes::Json(text.to_owned()))
                .map_err(rusqlite::Error::Utf8Error),
            other => Err(rusqlite::Error::InvalidColumnType(
                index,
                "attributes".into(),
                other.data_type(),
            )),
        }
    }

    /// The attributes; the reason when they cannot be read.
    pub(crate) fn decode(&self) -> Result<Attributes, String> {
        match self {
            StoredAttributes::Blob(blob) => decode(blob),
            StoredAttributes::Json(text) => serde_json::from_str(text).map_err(|e| e.to_string()),
        }
    }
}

/// The attributes as a BLOB.
pub(crate) fn encode(attributes: &Attributes) -> Vec<u8> {
    let size: usize = attributes
        .iter()
        .map(|(name, attribute)| {
            20 + name.len()
                + attribute.data_type.len()
                + attribute.string_value.as_ref().map_or(0, String::len)
                + attribute.binary_value.as_ref().map_or(0, Vec::len)
        })
        .sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(FORMAT);
    for (name, attribute) in attributes {
        put(&mut out, Some(name.as_bytes()));
        put(&mut out, Some(attribute.data_type.as_bytes()));
        put(
            &mut out,
            attribute.string_value.as_deref().map(str::as_bytes),
        );
        put(&mut out, attribute.binary_value.as_deref());
    }
    out
}

fn put(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            // Attributes are far below 4 GiB: a message is at most 1 MiB.
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// Attributes from a BLOB written by [`encode`]; the reason when it is not one.
pub(crate) fn decode(mut blob: &[u8]) -> Result<Attributes, String> {
    match blob.split_first() {
        Some((&FORMAT, rest)) => blob = rest,
        Some((other, _)) => return Err(format!("unknown attribute layout {other}")),
        None => return Err("empty attribute blob".into()),
    }
    let mut attributes = Attributes::new();
    while !blob.is_empty() {
        let name = text(take(&mut blob)?, "name")?;
        let data_type = text(take(&mut blob)?, "data type")?;
        let string_value = take(&mut blob)?
            .map(|value| text(Some(value), "string value"))
            .transpose()?;
        let binary_value = take(&mut blob)?.map(<[u8]>::to_vec);
        attributes.insert(
            name,
            Attribute {
                data_type,
                string_value,
                binary_value,
            },
        );
    }
    Ok(attributes)
}

/// The next field, moving past it.
fn take<'a>(blob: &mut &'a [u8]) -> Result<Option<&'a [u8]>, String> {
    let (&present, rest) = blob.split_first().ok_or("an attribute is cut short")?;
    match present {
        0 => {
            *blob = rest;
            Ok(None)
        }
        1 => {
            let (length, rest) = rest
                .split_first_chunk::<4>()
                .ok_or("an attribute's length is cut short")?;
            let length = u32::from_le_bytes(*length) as usize;
            if length > rest.len() {
                return Err(format!(
                    "an attribute field of {length} bytes runs past the end ({} left)",
                    rest.len()
                ));
            }
            let (field, rest) = rest.split_at(length);
            *blob = rest;
            Ok(Some(field))
        }
        other => Err(format!("bad field marker {other}")),
    }
}

fn text(field: Option<&[u8]>, what: &str) -> Result<String, String> {
    let bytes = field.ok_or_else(|| format!("an attribute's {what} is missing"))?;
    String::from_utf8(bytes.to_vec()).map_err(|e| format!("an attribute's {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attribute() -> impl Strategy<Value = Attribute> {
        (
            "(String|Number|Binary)(\\.[a-z]{0,5})?",
            proptest::option::of("\\PC{0,40}"),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        )
            .prop_map(|(data_type, string_value, binary_value)| Attribute {
                data_type,
                string_value,
                binary_value,
            })
    }

    proptest! {
        #[test]
        fn attributes_read_back_as_written(
            attributes in proptest::collection::btree_map("\\PC{0,20}", attribute(), 0..8)
                .prop_map(Attributes::from_iter)
        ) {
            prop_assert_eq!(decode(&encode(&attributes)).unwrap(), attributes);
        }

        #[test]
        fn a_damaged_blob_is_an_error_or_other_attributes_never_a_panic(
            attributes in proptest::collection::btree_map("[a-z]{1,8}", attribute(), 1..4)
                .prop_map(Attributes::from_iter),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let blob = encode(&attributes);
            let cut = cut.index(blob.len());
            // Cut between two attributes, it is the ones before; cut elsewhere, an error.
            if let Ok(read) = decode(&blob[..cut]) {
                prop_assert!(read.len() < attributes.len());
                prop_assert!(read.iter().all(|(name, a)| attributes.get(name) == Some(a)));
            }
            let mut damaged = blob.clone();
            damaged[flip.index(blob.len())] = byte;
            let _ = decode(&damaged);
        }
    }

    #[test]
    fn a_context_in_a_string_is_stored_as_its_bytes() {
        let context = r#"{"v":1,"error":{"type":"ValueError","message":"a \"quoted\" word"}}"#;
        let mut attributes = Attributes::new();
        attributes.insert("dlq-context".into(), Attribute::string(context));
        let blob = encode(&attributes);
        assert!(
            blob.windows(context.len()).any(|w| w == context.as_bytes()),
            "unescaped"
        );
        assert_eq!(decode(&blob).unwrap(), attributes);
        assert_eq!(decode(&[FORMAT]).unwrap(), Attributes::new());
        assert!(decode(&[]).unwrap_err().contains("empty"));
        assert!(decode(&[7]).unwrap_err().contains("layout 7"));
        assert!(
            decode(&[FORMAT, 1, 200, 0, 0, 0, b'a'])
                .unwrap_err()
                .contains("runs past")
        );
        assert!(
            decode(&[FORMAT, 0, 0, 0, 0])
                .unwrap_err()
                .contains("name is missing")
        );
        assert!(
            decode(&[FORMAT, 1, 1, 0, 0, 0, 0xff, 1, 0, 0, 0, 0, 0, 0])
                .unwrap_err()
                .contains("name")
        );
    }
}
