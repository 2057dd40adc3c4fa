//! A fast, allocation-free check that bytes are one JSON document (RFC 8259), for validating
//! message bodies without building or even walking a value tree.
//!
//! It accepts exactly what `serde_json::from_slice::<serde_json::Value>` accepts, with one
//! deliberate exception: numbers too large for an `f64` (`1e400`) are valid JSON by the RFC's
//! grammar and are accepted here, where serde_json's `Value` refuses them as out of range.
//! In particular, like serde_json's `Value`:
//! - the whole input must be UTF-8;
//! - `\u` escapes must not leave lone UTF-16 surrogates: a high surrogate (`\uD800`-`\uDBFF`)
//!   must be followed at once by an escaped low surrogate (`\uDC00`-`\uDFFF`), and a low
//!   surrogate may not appear on its own. The RFC's grammar allows lone surrogates but says
//!   their behaviour is unpredictable; serde_json refuses them, and so does this check;
//! - arrays and objects nested deeper than [`MAX_JSON_DEPTH`] are refused (serde_json's
//!   recursion limit), which also keeps hostile bodies cheap: the check is iterative and keeps
//!   its nesting stack in one 128-bit word.

use memchr::memchr2;

/// The deepest nesting of arrays and objects that is valid; deeper JSON counts as invalid.
///
/// This is serde_json's limit for `Value`: it starts with a budget of 128 and refuses the
/// container that uses it up, so 127 levels parse and 128 do not.
pub const MAX_JSON_DEPTH: usize = 127;

/// Whether `bytes` is one JSON value with optional surrounding whitespace (see the module docs
/// for the exact rules).
pub fn is_valid_json(bytes: &[u8]) -> bool {
    // Outside strings the grammar allows only ASCII, so checking that every string is UTF-8
    // (done in `string_end`, only for strings that are not plain ASCII) checks the whole input.
    check(bytes)
}

#[inline(always)]
fn skip_whitespace(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            break;
        }
        i += 1;
    }
    i
}

/// After an object's `{` or `,`: a key string, `:`, and the start of its value.
#[inline(always)]
fn object_key(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let i = skip_whitespace(b, string_end(b, i + 1)?);
    if b.get(i) != Some(&b':') {
        return None;
    }
    Some(skip_whitespace(b, i + 1))
}

/// The structural check.
fn check(b: &[u8]) -> bool {
    // Bit `d` of `stack` is set when the container at depth `d` is an object; `in_object` is
    // the bit of the innermost container.
    let mut stack: u128 = 0;
    let mut depth = 0usize;
    let mut in_object = false;
    let mut i = skip_whitespace(b, 0);
    'value: loop {
        // A value starts at `i`.
        let Some(&c) = b.get(i) else {
            return false;
        };
        match c {
            b'{' | b'[' => {
                if depth == MAX_JSON_DEPTH {
                    return false;
                }
                let is_object = c == b'{';
                let close = if is_object { b'}' } else { b']' };
                i = skip_whitespace(b, i + 1);
                if b.get(i) == Some(&close) {
                    // Empty: nothing to push.
                    i += 1;
                } else if is_object {
                    stack |= 1 << depth;
                    depth += 1;
                    in_object = true;
                    match object_key(b, i) {
                        Some(next) => {
                            i = next;
                            continue 'value;
                        }
                        None => return false,
                    }
                } else {
                    stack &= !(1 << depth);
                    depth += 1;
                    in_object = false;
                    continue 'value;
                }
            }
            b'"' => match string_end(b, i + 1) {
                Some(end) => i = end,
                None => return false,
            },
            b'-' | b'0'..=b'9' => match number_end(b, i) {
                Some(end) => i = end,
                None => return false,
            },
            b't' if b[i..].starts_with(b"true") => i += 4,
            b'f' if b[i..].starts_with(b"false") => i += 5,
            b'n' if b[i..].starts_with(b"null") => i += 4,
            _ => return false,
        }
        // A value ended at `i`: close containers until a `,` opens the next value.
        loop {
            i = skip_whitespace(b, i);
            if depth == 0 {
                return i == b.len();
            }
            match b.get(i) {
                Some(b',') => {
                    i = skip_whitespace(b, i + 1);
                    if in_object {
                        match object_key(b, i) {
                            Some(next) => i = next,
                            None => return false,
                        }
                    }
                    continue 'value;
                }
                Some(&close @ (b'}' | b']')) if (close == b'}') == in_object => {
                    depth -= 1;
                    in_object = depth > 0 && (stack >> (depth - 1)) & 1 == 1;
                    i += 1;
                }
                _ => return false,
            }
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A mask whose lowest set bit is the high bit of the first byte of `word` (little-endian)
/// that is `"`, `\`, a control character or not ASCII. Bits above it may be false positives.
#[inline(always)]
fn special_bytes(word: u64) -> u64 {
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    zero_in(quote) | zero_in(backslash) | control | (word & HIGHS)
}

/// Short strings are scanned eight bytes at a time; after this many bytes the scan switches to
/// `memchr2`, which is faster on long strings.
const SHORT_STRING_BYTES: usize = 64;

/// The index just past the closing quote of a string whose contents start at `start`, if the
/// string is valid: UTF-8, no control characters, valid escapes.
#[inline(always)]
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    let short_until = start + SHORT_STRING_BYTES;
    while i < short_until {
        let Some(chunk) = b.get(i..i + 8) else {
            break;
        };
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let mask = special_bytes(word);
        if mask == 0 {
            i += 8;
            continue;
        }
        i += (mask.trailing_zeros() / 8) as usize;
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => i = escape_end(b, i + 1)?,
            0x80.. => return string_end_long(b, start, i),
            _ => return None,
        }
    }
    string_end_long(b, start, i)
}

/// [`string_end`] for a string that is long, or not ASCII, or at the very end of the input,
/// and whose contents from `start` to `i` have been checked except for UTF-8.
#[cold]
fn string_end_long(b: &[u8], start: usize, mut i: usize) -> Option<usize> {
    loop {
        let rest = b.get(i..)?;
        let offset = memchr2(b'"', b'\\', rest)?;
        if !no_control_bytes(&rest[..offset]) {
            return None;
        }
        i += offset;
        if b[i] == b'"' {
            return std::str::from_utf8(&b[start..i]).is_ok().then_some(i + 1);
        }
        i = escape_end(b, i + 1)?;
    }
}

/// Whether no byte is below 0x20; written as a branch-free reduction so that it vectorizes.
fn no_control_bytes(bytes: &[u8]) -> bool {
    bytes.iter().fold(u8::MAX, |least, &c| least.min(c)) >= 0x20
}

/// The index just past an escape whose character (after the `\`) is at `i`.
#[inline(always)]
fn escape_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 1),
        b'u' => unicode_escape_end(b, i + 1),
        _ => None,
    }
}

/// The index just past a `\u` escape whose hex digits start at `i`; a high surrogate must be
/// followed by an escaped low surrogate, and a low surrogate cannot stand alone.
fn unicode_escape_end(b: &[u8], i: usize) -> Option<usize> {
    let unit = hex4(b, i)?;
    match unit {
        0xDC00..=0xDFFF => None,
        0xD800..=0xDBFF => {
            if b.get(i + 4..i + 6)? != b"\\u" {
                return None;
            }
            matches!(hex4(b, i + 6)?, 0xDC00..=0xDFFF).then_some(i + 10)
        }
        _ => Some(i + 4),
    }
}

fn hex4(b: &[u8], i: usize) -> Option<u16> {
    let digits = b.get(i..i + 4)?;
    let mut value = 0u16;
    for &d in digits {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        value = value << 4 | u16::from(nibble);
    }
    Some(value)
}

/// The index just past a number starting at `i` (`-`? int frac? exp?).
#[inline(always)]
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    if b[i] == b'-' {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits_end(b, i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits_end(b, i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits_end(b, i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

#[inline(always)]
fn digits_end(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// What serde_json's `Value` says, or `None` for the one documented difference (numbers
    /// out of `f64` range), where the two are not compared.
    fn serde_verdict(bytes: &[u8]) -> Option<bool> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(_) => Some(true),
            Err(e) if e.to_string().starts_with("number out of range") => None,
            Err(_) => Some(false),
        }
    }

    fn assert_agrees(bytes: &[u8]) {
        if let Some(expected) = serde_verdict(bytes) {
            assert_eq!(
                is_valid_json(bytes),
                expected,
                "input {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            );
        }
    }

    fn nested(levels: usize) -> Vec<u8> {
        let mut text = "[".repeat(levels).into_bytes();
        text.extend(std::iter::repeat_n(b']', levels));
        text
    }

    fn nested_objects(levels: usize) -> Vec<u8> {
        let mut text = r#"{"a":"#.repeat(levels).into_bytes();
        text.extend(b"1");
        text.extend(std::iter::repeat_n(b'}', levels));
        text
    }

    #[test]
    fn hand_cases_agree_with_serde_json() {
        let valid: &[&[u8]] = &[
            b"0",
            b"-0",
            b"-0.0e-0",
            b"1E+5",
            b"123.456e789",
            b"true",
            b"false",
            b"null",
            b" \t\r\n{ } \n",
            b"[]",
            b"[1, [2, {}], {\"a\": [null]}]",
            br#"{"a":1,"a":2}"#,
            br#""\"\\\/\b\f\n\r\t\u00e9\u0000""#,
            "\"h\u{e9}llo \u{1F600}\"".as_bytes(),
            br#""\ud83d\ude00""#,
            br#""\uD83D\uDE00 tail""#,
            b"\"\x7f\"",
            "[\"\u{e9}\\n\u{20ac}\", {\"cl\u{e9}\": \"\u{1F600} and a long tail past sixty-four bytes (SHORT_STRING_BYTES), which takes a good many more words\"}]"
                .as_bytes(),
            br#"{"ok":"a longer string that goes well past sixty-four bytes (SHORT_STRING_BYTES), which takes a good many more words, with \"escapes\" too"}"#,
        ];
        let invalid: &[&[u8]] = &[
            b"",
            b" ",
            b" \n\t\r ",
            b"01",
            b"-01",
            b"00",
            b"-",
            b"1.",
            b"1.e5",
            b".5",
            b"+1",
            b"1e",
            b"1e+",
            b"1E-",
            b"--1",
            b"[1,]",
            b"{\"a\":1,}",
            b"[,1]",
            b"{,}",
            b"[1 2]",
            b"{\"a\" 1}",
            b"{\"a\":}",
            b"{1:2}",
            b"{\"a\"}",
            b"[",
            b"]",
            b"[}",
            b"{]",
            b"1 2",
            b"tru",
            b"truee",
            b"nul",
            b"True",
            b"\"abc",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"\\u12G4\"",
            b"\"tab\there\"",
            b"\"nl\nhere\"",
            b"\"\x00\"",
            b"\"\xff\"",
            b"\"\xc3\"",
            b"\"\xe2\x82\"",
            b"\"\xc0\xaf\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xf4\x90\x80\x80\"",
            b"\"a string longer than sixty-four bytes (SHORT_STRING_BYTES), which takes a good many more words, then \xff\"",
            b"\"a string longer than sixty-four bytes (SHORT_STRING_BYTES), which takes a good many more words, then \\n\xe9\"",
            b"{\"\xff\":1}",
            b"[1,\xff]",
            b"\xc3\xa9",
            b"[1]\xc2\xa0",
            b"\xef\xbb\xbf{}",
            b"NaN",
            b"Infinity",
            b"{} x",
            b"'a'",
            b"\"a\" \x00",
            // Lone surrogates: serde_json's `Value` refuses them, and so do we.
            br#""\ud800""#,
            br#""\ud800x""#,
            br#""\ud800\n""#,
            br#""\ud800\u0041""#,
            br#""\ud800\ud800""#,
            br#""\udc00""#,
            br#""\uDFFF\uD800""#,
            br#"{"\ud800":1}"#,
        ];
        for &case in valid {
            assert_agrees(case);
            assert!(is_valid_json(case), "{:?}", String::from_utf8_lossy(case));
        }
        for &case in invalid {
            assert_agrees(case);
            assert!(!is_valid_json(case), "{:?}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn numbers_out_of_f64_range_are_valid_json() {
        // The one documented difference from serde_json's `Value`.
        for case in [&b"1e400"[..], b"-1e400", b"[1e99999999999999999999]"] {
            assert!(is_valid_json(case));
            assert_eq!(serde_verdict(case), None);
        }
    }

    #[test]
    fn nesting_limit_matches_serde_json() {
        for levels in [1, 2, 126, 127, 128, 129] {
            for text in [nested(levels), nested_objects(levels)] {
                assert_agrees(&text);
            }
        }
        assert_eq!(MAX_JSON_DEPTH, 127);
        assert!(is_valid_json(&nested(MAX_JSON_DEPTH)));
        assert!(!is_valid_json(&nested(MAX_JSON_DEPTH + 1)));
        assert!(!is_valid_json(&nested(MAX_JSON_DEPTH + 2)));
        assert!(is_valid_json(&nested_objects(MAX_JSON_DEPTH)));
        assert!(!is_valid_json(&nested_objects(MAX_JSON_DEPTH + 1)));
        // Closing and reopening keeps the depth bounded.
        let wide = [nested(127), b",".to_vec(), nested(127)].concat();
        assert!(!is_valid_json(
            &[b"[".to_vec(), wide, b"]".to_vec()].concat()
        ));
        let wide = [nested(126), b",".to_vec(), nested(126)].concat();
        assert!(is_valid_json(
            &[b"[".to_vec(), wide, b"]".to_vec()].concat()
        ));
    }

    #[test]
    fn deep_nesting_is_invalid_without_overflowing_the_stack() {
        assert!(!is_valid_json(&nested(100_000)));
        assert!(!is_valid_json(&"[".repeat(100_000).into_bytes()));
        assert!(!is_valid_json(&r#"{"a":"#.repeat(100_000).into_bytes()));
    }

    #[test]
    fn megabyte_strings() {
        let mut text = b"\"".to_vec();
        text.extend(std::iter::repeat_n(b'x', 1 << 20));
        text.push(b'"');
        assert!(is_valid_json(&text));
        assert_agrees(&text);
        let middle = text.len() / 2;
        text[middle] = 0x1f;
        assert!(!is_valid_json(&text));
        text[middle] = b'\\';
        assert!(!is_valid_json(&text));
        text[middle + 1] = b'n';
        assert!(is_valid_json(&text));
        let last = text.len() - 1;
        text[last] = b'x';
        assert!(!is_valid_json(&text));
        let unicode = serde_json::to_vec(&"é😀\u{1}\"\\".repeat(100_000)).unwrap();
        assert!(is_valid_json(&unicode));
    }

    #[test]
    fn every_truncation_of_a_body_agrees() {
        let body = br#"{"order_id":14013,"user":{"id":"u-1","email":"a@example.com"},"n":-1.5e-3,"t":true,"f":false,"z":null,"s":"\u00e9\ud83d\ude00\n","items":[{"sku":"SKU-00001","qty":2},[]]}"#;
        assert!(is_valid_json(body));
        for end in 0..body.len() {
            assert_agrees(&body[..end]);
            assert_agrees(&body[end..]);
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[a-z\"\\\\\u{0}-\u{1f}é😀]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Bytes that matter to the grammar, for mutations.
    const INTERESTING: &[u8] =
        b"{}[]\",:\\/ \n\t0123456789-+.eEutrfalsn\x00\x1f\x7f\x80\xbf\xc3\xed\xf0\xff";

    #[derive(Debug, Clone)]
    enum Mutation {
        Truncate(usize),
        Replace(usize, u8),
        Insert(usize, u8),
        Delete(usize),
        Splice(usize, &'static str),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let byte = prop_oneof![prop::sample::select(INTERESTING.to_vec()), any::<u8>(),];
        prop_oneof![
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Replace(i, b)),
            (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Delete),
            (
                any::<usize>(),
                prop::sample::select(vec![
                    "\\ud800",
                    "\\udc00",
                    "\\ud83d\\ude00",
                    "\\u00",
                    "1e400",
                    "-0",
                    ".5",
                    "01",
                    "true",
                    "nul",
                    ",",
                    ",]",
                    ",}",
                    "[[",
                    "]]",
                    "\"\":",
                    "\\",
                    "\"",
                ])
            )
                .prop_map(|(i, s)| Mutation::Splice(i, s)),
        ]
    }

    fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
        for m in mutations {
            let len = bytes.len();
            match *m {
                Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
                Mutation::Replace(i, b) if len > 0 => bytes[i % len] = b,
                Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
                Mutation::Delete(i) if len > 0 => {
                    bytes.remove(i % len);
                }
                Mutation::Splice(i, s) => {
                    let at = i % (len + 1);
                    bytes.splice(at..at, s.bytes());
                }
                _ => {}
            }
        }
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn serialized_values_are_valid(value in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            prop_assert!(is_valid_json(&text));
            assert_agrees(&text);
        }

        #[test]
        fn mutated_json_agrees_with_serde_json(
            value in json_value(),
            mutations in prop::collection::vec(mutation(), 1..4),
        ) {
            let text = apply(serde_json::to_vec(&value).unwrap(), &mutations);
            assert_agrees(&text);
        }

        #[test]
        fn arbitrary_bytes_agree_with_serde_json(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            assert_agrees(&bytes);
        }

        #[test]
        fn json_alphabet_soup_agrees_with_serde_json(
            bytes in prop::collection::vec(prop::sample::select(INTERESTING.to_vec()), 0..48),
        ) {
            assert_agrees(&bytes);
        }
    }
}
