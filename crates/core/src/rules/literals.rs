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
    bytes: Box<[u8]>,
    /// Where its first word starts in it.
    first_word_at: usize,
    needs_start_boundary: bool,
    needs_end_boundary: bool,
}

/// The literals of a rule set, ready to be found in texts.
#[derive(Debug, Clone, Default)]
pub(crate) struct LiteralMatcher {
    literals: Vec<Literal>,
    /// Literal indices by the hash of their lowercased first word.
    by_first_word: HashMap<u64, Vec<u32>, BuildHasherDefault<AlreadyHashed>>,
    /// Bit `n` is set when some first word has `n` bytes: words of other lengths are skipped
    /// without hashing.
    first_word_lengths: u64,
    /// The literals that are not found by word, and their indices.
    automaton: Option<(AhoCorasick, Vec<u32>)>,
}

impl LiteralMatcher {
    /// Prepare `literals` (none may be empty).
    pub(crate) fn new(literals: &[String]) -> Result<LiteralMatcher, aho_corasick::BuildError> {
        let mut matcher = LiteralMatcher::default();
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
                bytes: bytes.into(),
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
                matcher.first_word_lengths |= 1 << (first_word_end - first_word_at);
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
        let mut i = 0;
        while i < bytes.len() {
            if !is_word_byte(bytes[i]) {
                i += 1;
                continue;
            }
            let word_start = i;
            while i < bytes.len() && is_word_byte(bytes[i]) {
                i += 1;
            }
            let length = i - word_start;
            if length > MAX_FIRST_WORD || self.first_word_lengths & (1 << length) == 0 {
                continue;
            }
            let Some(candidates) = self
                .by_first_word
                .get(&lowercase_hash(&bytes[word_start..i]))
            else {
                continue;
            };
            for &literal in candidates {
                let literal = literal as usize;
                let Literal {
                    bytes: pattern,
                    first_word_at,
                    ..
                } = &self.literals[literal];
                let Some(start) = word_start.checked_sub(*first_word_at) else {
                    continue;
                };
                let end = start + pattern.len();
                let matches = bytes
                    .get(start..end)
                    .is_some_and(|candidate| candidate.eq_ignore_ascii_case(pattern));
                if matches && self.bounded(literal, bytes, start, end) {
                    found(Occurrence {
                        literal,
                        start,
                        end,
                    });
                }
            }
        }
    }

    /// Whether an occurrence of `literal` at `start..end` of `bytes` is word-bounded where the
    /// literal needs it.
    fn bounded(&self, literal: usize, bytes: &[u8], start: usize, end: usize) -> bool {
        let literal = &self.literals[literal];
        let start_ok =
            !literal.needs_start_boundary || start == 0 || !is_word_byte(bytes[start - 1]);
        let end_ok = !literal.needs_end_boundary || end == bytes.len() || !is_word_byte(bytes[end]);
        start_ok && end_ok
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

/// A hash of a word that ignores ASCII case: its length and its first and last eight bytes,
/// each with bit 5 set (which lowercases ASCII letters; other bytes that become equal only make
/// more candidates, which are then compared in full).
fn lowercase_hash(word: &[u8]) -> u64 {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let take = word.len().min(8);
    let mut head = [0u8; 8];
    head[..take].copy_from_slice(&word[..take]);
    let mut tail = [0u8; 8];
    tail[8 - take..].copy_from_slice(&word[word.len() - take..]);
    let mut hash = (u64::from_le_bytes(head) | FOLD)
        ^ (u64::from_le_bytes(tail) | FOLD).rotate_left(29)
        ^ (word.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
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
    fn every_default_text_is_found_by_word() {
        let defaults = crate::rules::RuleSet::defaults();
        assert!(defaults.literals.automaton.is_none());
        assert!(!defaults.literals.is_empty());
    }

    proptest! {
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
