//! Finding the rules' literal texts and error types in an error text: case-insensitively (ASCII),
//! word-bounded, every occurrence, in one pass for all rules together.
//!
//! The first word of a literal can only occur as a whole word of the error text: `access denied`
//! occurs only at a word `access`, `: EOF` only two bytes before a word `EOF`. So texts are found
//! by walking the error text word by word and looking each word up among the literals' first
//! words — a few hash lookups per error text instead of an automaton step per byte through a
//! multi-megabyte automaton. The few literals that do not fit this (no word at all, a very long
//! first word, or a first or last character that is neither a word character nor a boundary,
//! such as `→`) are found by an Aho-Corasick automaton over just them.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// First words of at most this many bytes are looked up by word; longer ones go to the automaton.
const MAX_FIRST_WORD: usize = 63;

/// One occurrence of a literal in a text, with its word boundaries checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Occurrence {
    /// The index of the literal, in the order given to [`LiteralMatcher::new`].
    pub(crate) literal: usize,
    /// Where it starts in the text.
    pub(crate) start: usize,
    /// Where it ends (exclusive).
    pub(crate) end: usize,
}

#[derive(Debug, Clone)]
struct Literal {
    /// Its bytes, with ASCII letters lowercased.
    lowercase: Box<[u8]>,
    /// Where its first word starts in it.
    first_word_at: usize,
    needs_start_boundary: bool,
    needs_end_boundary: bool,
}

/// The literals of a rule set, ready to be found in texts.
#[derive(Debug, Clone)]
pub(crate) struct LiteralMatcher {
    literals: Vec<Literal>,
    /// Literal indices by the hash of their lowercased first word.
    by_first_word: HashMap<u64, Vec<u32>, BuildHasherDefault<AlreadyHashed>>,
    /// Bit `n` of entry `shape_slot(first, last)` is set when some first word has `n` bytes and
    /// begins with `first` and ends with `last` (up to ASCII case): most words of an error text
    /// are skipped with this, without hashing.
    first_word_shapes: Box<[u64; 1024]>,
    /// The literals that are not found by word, and their indices.
    automaton: Option<(AhoCorasick, Vec<u32>)>,
}

impl LiteralMatcher {
    /// Prepare `literals` (none may be empty).
    pub(crate) fn new(literals: &[String]) -> Result<LiteralMatcher, aho_corasick::BuildError> {
        let mut matcher = LiteralMatcher {
            literals: Vec::new(),
            by_first_word: HashMap::default(),
            first_word_shapes: Box::new([0; 1024]),
            automaton: None,
        };
        let mut others: Vec<(&str, u32)> = Vec::new();
        for (index, text) in literals.iter().enumerate() {
            let bytes = text.as_bytes();
            let first_word_at = bytes
                .iter()
                .position(|&b| is_word_byte(b))
                .unwrap_or(bytes.len());
            let first_word_end = first_word_at
                + bytes[first_word_at..]
                    .iter()
                    .take_while(|&&b| is_word_byte(b))
                    .count();
            let literal = Literal {
                lowercase: bytes.to_ascii_lowercase().into(),
                first_word_at,
                needs_start_boundary: text.chars().next().is_some_and(is_word_char),
                needs_end_boundary: text.chars().last().is_some_and(is_word_char),
            };
            // Found by word exactly when the text's word at an occurrence must equal the first
            // word: it starts where the literal's word starts (after the literal's non-word
            // bytes, or at a boundary the literal needs), and ends where it ends (before a
            // non-word byte of the literal, or at a boundary the literal needs).
            let by_first_word = (1..=MAX_FIRST_WORD).contains(&(first_word_end - first_word_at))
                && (first_word_at > 0 || literal.needs_start_boundary)
                && (first_word_end < bytes.len() || literal.needs_end_boundary);
            let index = u32::try_from(index).expect("fewer than 2^32 literals");
            if by_first_word {
                let first_word = &bytes[first_word_at..first_word_end];
                let slot = shape_slot(first_word[0], first_word[first_word.len() - 1]);
                matcher.first_word_shapes[slot] |= 1 << first_word.len();
                matcher
                    .by_first_word
                    .entry(lowercase_hash(&bytes[first_word_at..first_word_end]))
                    .or_default()
                    .push(index);
            } else {
                others.push((text.as_str(), index));
            }
            matcher.literals.push(literal);
        }
        if !others.is_empty() {
            let automaton = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::DFA))
                .build(others.iter().map(|&(text, _)| text))?;
            matcher.automaton = Some((automaton, others.iter().map(|&(_, i)| i).collect()));
        }
        Ok(matcher)
    }

    /// Whether there are no literals at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.literals.is_empty()
    }

    /// Call `found` with every word-bounded occurrence of every literal in `text` (in no
    /// particular order).
    pub(crate) fn for_each_occurrence(&self, text: &str, mut found: impl FnMut(Occurrence)) {
        let bytes = text.as_bytes();
        if !self.by_first_word.is_empty() {
            self.by_words(bytes, &mut found);
        }
        if let Some((automaton, indices)) = &self.automaton {
            for hit in automaton.find_overlapping_iter(text) {
                let literal = indices[hit.pattern().as_usize()] as usize;
                if self.bounded(literal, bytes, hit.start(), hit.end()) {
                    found(Occurrence {
                        literal,
                        start: hit.start(),
                        end: hit.end(),
                    });
                }
            }
        }
    }

    fn by_words(&self, bytes: &[u8], found: &mut impl FnMut(Occurrence)) {
        for_each_word(bytes, |word_start, word_end| {
            // Most words are no literal's first word; this test, kept small so that it stays in
            // the word loop, skips them.
            let length = word_end - word_start;
            let slot = shape_slot(bytes[word_start], bytes[word_end - 1]);
            if length <= MAX_FIRST_WORD && self.first_word_shapes[slot] & (1 << length) != 0 {
                self.literals_at_word(bytes, word_start, word_end, found);
            }
        });
    }

    /// Report the literals whose first word is the word at `word_start..word_end` of `bytes`.
    #[inline(never)]
    fn literals_at_word(
        &self,
        bytes: &[u8],
        word_start: usize,
        word_end: usize,
        found: &mut impl FnMut(Occurrence),
    ) {
        let Some(candidates) = self
            .by_first_word
            .get(&lowercase_hash_in(bytes, word_start, word_end))
        else {
            return;
        };
        for &literal in candidates {
            let literal = literal as usize;
            let Literal {
                lowercase,
                first_word_at,
                ..
            } = &self.literals[literal];
            let Some(start) = word_start.checked_sub(*first_word_at) else {
                continue;
            };
            let end = start + lowercase.len();
            if end <= bytes.len()
                && lowercases_to(bytes, start, lowercase)
                && self.bounded(literal, bytes, start, end)
            {
                found(Occurrence {
                    literal,
                    start,
                    end,
                });
            }
        }
    }

    /// Whether an occurrence of `literal` at `start..end` of `bytes` is word-bounded where the
    /// literal needs it.
    fn bounded(&self, literal: usize, bytes: &[u8], start: usize, end: usize) -> bool {
        let literal = &self.literals[literal];
        let start_ok =
            !literal.needs_start_boundary || start == 0 || !is_word_byte(bytes[start - 1]);
        let end_ok = !literal.needs_end_boundary || ends_word(bytes, end);
        start_ok && end_ok
    }
}

/// Whether the bytes of `text` from `start` equal `lowercase` once their ASCII letters are
/// lowercased (`text[start..]` is at least as long as `lowercase`). Eight bytes are compared at a
/// time; a literal's last eight bytes may overlap the ones before them.
fn lowercases_to(text: &[u8], start: usize, lowercase: &[u8]) -> bool {
    let length = lowercase.len();
    debug_assert!(start + length <= text.len());
    if length >= 8 {
        let mut at = 0;
        while at + 8 < length {
            if ascii_lowercase(eight_bytes_at(text, start + at)) != eight_bytes_at(lowercase, at) {
                return false;
            }
            at += 8;
        }
        return ascii_lowercase(eight_bytes_at(text, start + length - 8))
            == eight_bytes_at(lowercase, length - 8);
    }
    text[start..start + length]
        .iter()
        .zip(lowercase)
        .all(|(&t, &l)| t.to_ascii_lowercase() == l)
}

/// The eight bytes of `word` with their ASCII letters lowercased.
fn ascii_lowercase(word: u64) -> u64 {
    use crate::json_check::HIGHS;
    // Bytes from 0x80 up are not letters, whatever their low bits say.
    let upper = ascii_bytes_in_range(word & !HIGHS, b'A', b'Z') & !word;
    word | upper >> 2
}

/// The high bit of each byte of `ascii` (whose high bits are clear) that is in `low..=high`.
fn ascii_bytes_in_range(ascii: u64, low: u8, high: u8) -> u64 {
    use crate::json_check::{HIGHS, ONES};
    // Each byte is below 0x80, so adding up to 0x80 to it never carries into the next byte: the
    // high bit of `ascii + (0x80 - low)` says `byte >= low`.
    let at_least = |low: u8| ascii.wrapping_add(ONES * u64::from(0x80 - low)) & HIGHS;
    at_least(low) & !at_least(high + 1)
}

/// The eight bytes of `bytes` from `at`, little-endian.
fn eight_bytes_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// Call `word` with the start and end (exclusive) of every run of word bytes in `bytes`, in order.
/// Sixteen bytes are classified at a time, and words are found from the bit mask of word bytes.
fn for_each_word(bytes: &[u8], mut word: impl FnMut(usize, usize)) {
    let mut word_start = None;
    let mut edges_in = |base: usize, sixteen: &[u8; 16]| {
        let words = word_byte_mask(sixteen);
        // Bit i of `before` says whether the byte before byte i is a word byte.
        let before = (words << 1) | u32::from(word_start.is_some());
        let mut edges = (words ^ before) & 0xFFFF;
        while edges != 0 {
            let at = base + edges.trailing_zeros() as usize;
            match word_start.take() {
                Some(start) => word(start, at),
                None => word_start = Some(at),
            }
            edges &= edges - 1;
        }
    };
    let chunks = bytes.chunks_exact(16);
    let rest = chunks.remainder();
    for (index, chunk) in chunks.enumerate() {
        edges_in(index * 16, chunk.try_into().expect("sixteen bytes"));
    }
    if !rest.is_empty() {
        // Zero bytes are not word bytes, so the padding ends a word that runs to the end.
        let mut sixteen = [0u8; 16];
        sixteen[..rest.len()].copy_from_slice(rest);
        edges_in(bytes.len() - rest.len(), &sixteen);
    }
    if let Some(start) = word_start {
        word(start, bytes.len());
    }
}

/// Bit i is set when byte i of `sixteen` is a word byte (see [`is_word_byte`]).
fn word_byte_mask(sixteen: &[u8; 16]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of every x86_64 CPU.
        unsafe { word_byte_mask_sse2(sixteen) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let (low, high) = sixteen.split_at(8);
        word_byte_mask_swar(low.try_into().expect("eight bytes"))
            | word_byte_mask_swar(high.try_into().expect("eight bytes")) << 8
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn word_byte_mask_sse2(sixteen: &[u8; 16]) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: `sixteen` has 16 readable bytes, and `loadu` allows any alignment.
    let v = unsafe { _mm_loadu_si128(sixteen.as_ptr().cast()) };
    // Signed compares: bytes from 0x80 up are negative, so they fall outside every ASCII range
    // and are taken from their sign bits instead.
    let in_range = |x: __m128i, low: u8, high: u8| {
        _mm_and_si128(
            _mm_cmpgt_epi8(x, _mm_set1_epi8(low as i8 - 1)),
            _mm_cmplt_epi8(x, _mm_set1_epi8(high as i8 + 1)),
        )
    };
    let folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
    let ascii_words = _mm_or_si128(
        _mm_or_si128(in_range(v, b'0', b'9'), in_range(folded, b'a', b'z')),
        _mm_cmpeq_epi8(v, _mm_set1_epi8(b'_' as i8)),
    );
    (_mm_movemask_epi8(ascii_words) | _mm_movemask_epi8(v)) as u32
}

/// Bit i is set when byte i (little-endian) of `eight` is a word byte.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn word_byte_mask_swar(eight: &[u8; 8]) -> u32 {
    use crate::json_check::{HIGHS, ONES};
    let eight = u64::from_le_bytes(*eight);
    let ascii = eight & !HIGHS;
    let folded = ascii | (ONES * 0x20);
    let marks = (eight & HIGHS)
        | ascii_bytes_in_range(ascii, b'0', b'9')
        | ascii_bytes_in_range(folded, b'a', b'z')
        | ascii_bytes_in_range(ascii, b'_', b'_');
    // Gather the eight high bits into the low byte.
    (((marks >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56) as u32
}

/// Whether a word of `bytes` ends at `end`. A word that goes on as a name does not: one before
/// `=` names a parameter (`timeout=10`), one before `.` and a word is a package
/// (`io.netty.handler.timeout.IdleStateHandler`), while `java.net.SocketTimeoutException:` ends
/// with its last name.
fn ends_word(bytes: &[u8], end: usize) -> bool {
    match bytes.get(end) {
        None => true,
        Some(b'=') => false,
        Some(b'.') => !bytes.get(end + 1).is_some_and(|&b| is_word_byte(b)),
        Some(&b) => !is_word_byte(b),
    }
}

/// A character that continues a word: a literal beginning (ending) with one needs a word
/// boundary before (after) it.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A byte that continues a word in an error text; bytes of non-ASCII characters count as word
/// bytes, so a boundary is never found inside one.
fn is_word_byte(b: u8) -> bool {
    WORD_BYTES[usize::from(b)]
}

const WORD_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80;
        b += 1;
    }
    table
};

/// Where the lengths of words with these first and last bytes are kept in
/// [`LiteralMatcher::first_word_shapes`]: the same slot for both cases of an ASCII letter.
fn shape_slot(first: u8, last: u8) -> usize {
    usize::from(first & 0x1F) << 5 | usize::from(last & 0x1F)
}

/// A hash of a word that ignores ASCII case: its length and its first and last eight bytes,
/// each with bit 5 set (which lowercases ASCII letters; other bytes that become equal only make
/// more candidates, which are then compared in full).
fn lowercase_hash(word: &[u8]) -> u64 {
    match (word.first_chunk::<8>(), word.last_chunk::<8>()) {
        (Some(head), Some(tail)) => mix_lowercase_hash(
            u64::from_le_bytes(*head),
            u64::from_le_bytes(*tail),
            word.len(),
        ),
        _ => {
            let head = word
                .iter()
                .rev()
                .fold(0u64, |value, &b| value << 8 | u64::from(b));
            short_lowercase_hash(head, word.len())
        }
    }
}

/// [`lowercase_hash`] of the word at `start..end` of `text`. A word shorter than eight bytes is
/// read with one load from the text around it when the text is long enough.
fn lowercase_hash_in(text: &[u8], start: usize, end: usize) -> u64 {
    let length = end - start;
    if length >= 8 {
        return lowercase_hash(&text[start..end]);
    }
    let head = if start + 8 <= text.len() {
        eight_bytes_at(text, start) & (u64::MAX >> (8 * (8 - length)))
    } else if end >= 8 {
        eight_bytes_at(text, end - 8) >> (8 * (8 - length))
    } else {
        return lowercase_hash(&text[start..end]);
    };
    short_lowercase_hash(head, length)
}

/// The hash of a word shorter than eight bytes, `head` (little-endian, zero above the word):
/// its tail is the head moved to the top.
fn short_lowercase_hash(head: u64, length: usize) -> u64 {
    mix_lowercase_hash(head, head << (8 * (8 - length)), length)
}

fn mix_lowercase_hash(head: u64, tail: u64, length: usize) -> u64 {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let mut hash = (head | FOLD)
        ^ (tail | FOLD).rotate_left(29)
        ^ (length as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    hash = (hash ^ (hash >> 32)).wrapping_mul(0xd6e8_feb8_6659_fd93);
    hash ^ (hash >> 32)
}

/// A hasher for keys that already are good hashes.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every word-bounded occurrence, found by an overlapping Aho-Corasick search over all the
    /// literals: what the matcher must answer.
    fn reference(literals: &[String], text: &str) -> Vec<Occurrence> {
        let matcher = LiteralMatcher::new(literals).unwrap();
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(literals)
            .unwrap();
        let mut out: Vec<Occurrence> = automaton
            .find_overlapping_iter(text)
            .filter(|hit| {
                matcher.bounded(
                    hit.pattern().as_usize(),
                    text.as_bytes(),
                    hit.start(),
                    hit.end(),
                )
            })
            .map(|hit| Occurrence {
                literal: hit.pattern().as_usize(),
                start: hit.start(),
                end: hit.end(),
            })
            .collect();
        out.sort_by_key(|o| (o.start, o.end, o.literal));
        out
    }

    fn found(literals: &[String], text: &str) -> Vec<Occurrence> {
        let mut out = Vec::new();
        LiteralMatcher::new(literals)
            .unwrap()
            .for_each_occurrence(text, |o| out.push(o));
        out.sort_by_key(|o| (o.start, o.end, o.literal));
        out
    }

    fn strings(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn finds_words_phrases_and_odd_literals_like_the_automaton() {
        let literals = strings(&[
            "timed out",
            "Timeout",
            "ExpiredToken",
            "ExpiredTokenException",
            "invalid character '",
            ": 503",
            ": EOF",
            "(timeout)",
            "→x",
            "JSON.parse",
            "token",
            "token",
            "naïve",
            "x→",
            "a",
        ]);
        let texts = [
            "Task TIMED OUT after 30.00 seconds",
            "ExpiredTokenException: The security token is expired",
            "ExpiredToken",
            "invalid character 'x' looking for beginning of value",
            "HTTP status: 503 Service Unavailable",
            "SyntaxError: JSON.parse: unexpected character",
            "timeouts and timeout_ms and timeout",
            "the naïve parser; naïveté",
            "x→y x→ →",
            "a b ab a_ _a a",
            "read: EOF; read:EOF; x: EOFs; : eof",
            "(timeout) (timeout)s x(timeout)",
            "→x →xy y→x",
            "",
        ];
        for text in texts {
            assert_eq!(
                found(&literals, text),
                reference(&literals, text),
                "{text:?}"
            );
        }
        let hits = found(&literals, "token token");
        assert_eq!(
            hits.len(),
            4,
            "both copies of a literal, at both places: {hits:?}"
        );
    }

    #[test]
    fn words_are_the_runs_of_word_bytes() {
        for text in [
            "",
            "a",
            " a ",
            "abcdefgh",
            "abcdefg h",
            "abcdefgh ijklmnop",
            "é→x_1 \u{7f}z",
        ] {
            let mut words = Vec::new();
            for_each_word(text.as_bytes(), |start, end| words.push(&text[start..end]));
            let expected: Vec<&str> = text
                .split(|c: char| c.is_ascii() && !is_word_byte(c as u8))
                .filter(|w| !w.is_empty())
                .collect();
            assert_eq!(words, expected, "{text:?}");
        }
    }

    #[test]
    fn every_default_text_is_found_by_word() {
        let defaults = crate::rules::RuleSet::defaults();
        assert!(defaults.literals.automaton.is_none());
        assert!(!defaults.literals.is_empty());
    }

    proptest! {
        #[test]
        fn words_are_lowercased_like_bytes(word in any::<[u8; 8]>()) {
            let expected = u64::from_le_bytes(word.map(|b| b.to_ascii_lowercase()));
            prop_assert_eq!(ascii_lowercase(u64::from_le_bytes(word)), expected);
        }

        #[test]
        fn lowercased_comparison_agrees_with_ignoring_case(
            text in prop::collection::vec(prop::sample::select(b"aAzZ@[`{_ 9\x80\xc3\xe9".to_vec()), 1..40),
            start in any::<prop::sample::Index>(),
            length in any::<prop::sample::Index>(),
            flips in prop::collection::vec(any::<bool>(), 40),
        ) {
            let start = start.index(text.len());
            let length = length.index(text.len() - start + 1);
            // The text's own bytes with bit 5 flipped in some: equal up to case where only
            // letters flip, different where `@` becomes a backtick or `[` a `{`.
            let pattern: Vec<u8> = text[start..start + length]
                .iter()
                .zip(&flips)
                .map(|(&b, &flip)| if flip { b ^ 0x20 } else { b })
                .collect();
            prop_assert_eq!(
                lowercases_to(&text, start, &pattern.to_ascii_lowercase()),
                text[start..start + length].eq_ignore_ascii_case(&pattern)
            );
        }

        #[test]
        fn words_hash_the_same_in_their_text_as_alone(
            text in prop::collection::vec(any::<u8>(), 1..24),
            start in any::<prop::sample::Index>(),
            length in any::<prop::sample::Index>(),
        ) {
            let start = start.index(text.len());
            let end = start + 1 + length.index(text.len() - start);
            prop_assert_eq!(
                lowercase_hash_in(&text, start, end),
                lowercase_hash(&text[start..end])
            );
        }

        #[test]
        fn word_byte_masks_match_the_table(sixteen in any::<[u8; 16]>()) {
            let expected = sixteen
                .iter()
                .enumerate()
                .fold(0u32, |mask, (i, &b)| mask | u32::from(is_word_byte(b)) << i);
            prop_assert_eq!(word_byte_mask(&sixteen), expected);
            let (low, high) = sixteen.split_at(8);
            let swar = word_byte_mask_swar(low.try_into().unwrap())
                | word_byte_mask_swar(high.try_into().unwrap()) << 8;
            prop_assert_eq!(swar, expected);
        }

        #[test]
        fn words_are_found_at_every_offset(bytes in prop::collection::vec(prop::sample::select(b"aZ9_ .-\x80\xff\x7f@[`{/:".to_vec()), 0..70)) {
            let mut words = Vec::new();
            for_each_word(&bytes, |start, end| words.push((start, end)));
            let mut expected = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if is_word_byte(bytes[i]) {
                    let start = i;
                    while i < bytes.len() && is_word_byte(bytes[i]) {
                        i += 1;
                    }
                    expected.push((start, i));
                } else {
                    i += 1;
                }
            }
            prop_assert_eq!(words, expected);
        }

        #[test]
        fn agrees_with_the_automaton_on_texts_made_of_the_literals(
            literals in prop::collection::vec("[a-cA-C_ .:'→é]{1,20}", 1..12),
            picks in prop::collection::vec((any::<prop::sample::Index>(), "[a-c .:\n→é_]{0,3}"), 0..10),
        ) {
            let literals: Vec<String> = literals.into_iter().filter(|l| !l.is_empty()).collect();
            prop_assume!(!literals.is_empty());
            let text: String = picks
                .iter()
                .map(|(index, glue)| format!("{}{glue}", index.get(&literals).to_uppercase()))
                .collect();
            prop_assert_eq!(found(&literals, &text), reference(&literals, &text));
        }
    }
}
