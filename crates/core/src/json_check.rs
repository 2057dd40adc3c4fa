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
//!
//! On x86_64 CPUs with AVX-512BW or AVX2 (detected at run time, in that order) the check runs 64
//! bytes at a time with SIMD; elsewhere, and for the few inputs the SIMD check leaves to it, a
//! portable scalar check runs. All give the same verdicts (the tests compare them with each
//! other and with serde_json).

use memchr::memchr2;

/// The deepest nesting of arrays and objects that is valid; deeper JSON counts as invalid.
///
/// This is serde_json's limit for `Value`: it starts with a budget of 128 and refuses the
/// container that uses it up, so 127 levels parse and 128 do not.
pub const MAX_JSON_DEPTH: usize = 127;

/// Whether `bytes` is one JSON value with optional surrounding whitespace (see the module docs
/// for the exact rules).
pub fn is_valid_json(bytes: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::avx512_available() {
            // SAFETY: the CPU has the features `check_avx512` is compiled for (checked just above).
            return unsafe { simd::check_avx512(bytes) };
        }
        if simd::avx2_available() {
            // SAFETY: the CPU has the features `check_avx2` is compiled for (checked just above).
            return unsafe { simd::check_avx2(bytes) };
        }
    }
    check_scalar(bytes)
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

/// The AVX2 check, when the CPU has it (for tests that compare it with [`check_scalar`]).
#[cfg(test)]
fn check_avx2(b: &[u8]) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    if simd::avx2_available() {
        // SAFETY: the CPU has the features `check_avx2` is compiled for (checked just above).
        return Some(unsafe { simd::check_avx2(b) });
    }
    None
}

/// The AVX-512BW check, when the CPU has it (for tests that compare it with [`check_scalar`]).
#[cfg(test)]
fn check_avx512(b: &[u8]) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    if simd::avx512_available() {
        // SAFETY: the CPU has the features `check_avx512` is compiled for (checked just above).
        return Some(unsafe { simd::check_avx512(b) });
    }
    None
}

/// The portable check: one pass, value by value.
///
/// Outside strings the grammar allows only ASCII, so checking that every string is UTF-8 (done
/// in `string_end`, only for strings that are not plain ASCII) checks the whole input.
fn check_scalar(b: &[u8]) -> bool {
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

/// Every byte 0x01: `ONES * b` repeats byte `b` eight times (SWAR, eight bytes in a `u64`).
pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte.
pub(crate) const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A mask whose lowest set bit is the high bit of the first byte of `word` (little-endian)
/// that is `"`, `\` or a control character: a byte that ends the plain run of a JSON string.
/// Bits above it may be false positives.
#[inline(always)]
pub(crate) fn string_stops(word: u64) -> u64 {
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = zero_in(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_in(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    quote | backslash | control
}

/// [`string_stops`], and also the first byte that is not ASCII.
#[inline(always)]
fn special_bytes(word: u64) -> u64 {
    string_stops(word) | (word & HIGHS)
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
pub(crate) fn no_control_bytes(bytes: &[u8]) -> bool {
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

/// The value of the four hex digits at `i`.
pub(crate) fn hex4(b: &[u8], i: usize) -> Option<u16> {
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

/// The check with AVX2 or AVX-512BW, 64 bytes at a time, after simdjson (Langdale and Lemire,
/// "Parsing Gigabytes of JSON per Second") but checking the grammar mostly with bit masks,
/// without visiting every token.
///
/// For each block, vector comparisons give bit masks of backslashes, quotes, whitespace,
/// digits and structural characters (the only part that differs between AVX2, with two 32-byte
/// halves, and AVX-512BW, whose comparisons give the 64-bit masks directly); from them come the
/// escaped bytes (carried across blocks), the inside of strings (a prefix XOR of the unescaped
/// quotes), and the tokens:
/// - the structural characters `{` `[` `}` `]` `,` outside strings;
/// - keys: a `:`, which must directly follow the closing quote of the key's string (other
///   inputs, like `"key" : 1`, are left to [`check_scalar`], which gives the same verdicts);
/// - values that are one token: the closing quote of each string that is not a key, and the
///   first byte of each scalar run (a maximal run of bytes outside strings that are not
///   whitespace, quotes or structural characters), which must be exactly one number or
///   literal.
///
/// So every byte outside strings is whitespace, a quote, a token or part of a checked scalar
/// run; inside strings the bytes decide alone (control characters, escapes, UTF-8).
///
/// The grammar is then two checks. Which token may follow which is local, so it is checked on
/// masks: for each token, whether the previous token was `{`/`[`, a key or a `,` (masks
/// carried from each such token to the next one by an addition through the bytes between), and
/// so on. What depends on the container comes from walking the brackets only, with the nesting
/// kept in a 64-bit word: brackets match, and each bracket marks whether the innermost
/// container after it is an object (or the top level). An addition carries those marks through
/// the bytes up to the next bracket, which gives every token its container at once: arrays
/// hold no keys, objects hold no values that do not follow a key, and the top-level value is
/// the only one. Nesting deeper than `SIMD_DEPTH` (62) is left to [`check_scalar`], which
/// enforces [`MAX_JSON_DEPTH`].
///
/// A grammar error hands the input to [`check_scalar`] for the verdict: only there can a key
/// with whitespace before its `:` that is in a later block have been taken for a value. (So
/// such invalid inputs cost both checks; errors in the bytes, such as bad UTF-8, escapes,
/// numbers, control characters or an unclosed string, are refused at once.)
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{MAX_JSON_DEPTH, check_scalar, escape_end, number_end};
    use std::arch::x86_64::*;

    /// Whether the CPU has the features [`check_avx2`] needs (the answers are cached by std).
    #[inline]
    pub(super) fn avx2_available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("pclmulqdq")
            && is_x86_feature_detected!("popcnt")
    }

    /// Whether the CPU has the features [`check_avx512`] needs (std also checks that the OS
    /// saves the AVX-512 registers).
    #[inline]
    pub(super) fn avx512_available() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && avx2_available()
    }

    /// Bytes that can follow a number or literal: whitespace, structural characters and `"`
    /// (one that the grammar does not allow there is then refused as the next token).
    static ENDS_SCALAR: [bool; 256] = {
        let mut table = [false; 256];
        let ends = b" \t\n\r{}[],:\"";
        let mut i = 0;
        while i < ends.len() {
            table[ends[i] as usize] = true;
            i += 1;
        }
        table
    };

    #[inline(always)]
    fn ends_scalar(b: &[u8], end: usize) -> bool {
        b.get(end).is_none_or(|&c| ENDS_SCALAR[c as usize])
    }

    /// Whether the scalar run starting at `at` is exactly one number or literal.
    #[inline(always)]
    fn scalar_ok(b: &[u8], at: usize) -> bool {
        use super::ONES;
        // The common case first: one to seven digits without a leading zero.
        if let Some(chunk) = b.get(at..at + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let high_nibbles = ONES * 0xf0;
            let digit_high = ONES * 0x30;
            // Nonzero in each byte that is not an ASCII digit (a carry out of a byte above
            // 0xf9 only disturbs the bytes after it).
            let not_digit = ((word & high_nibbles) ^ digit_high)
                | ((word.wrapping_add(ONES * 6) & high_nibbles) ^ digit_high);
            let digits = (not_digit.trailing_zeros() / 8) as usize;
            if (1..8).contains(&digits)
                && (word as u8 != b'0' || digits == 1)
                && ENDS_SCALAR[(word >> (8 * digits)) as u8 as usize]
            {
                return true;
            }
        }
        match b[at] {
            b'-' | b'0'..=b'9' => number_end(b, at).is_some_and(|end| ends_scalar(b, end)),
            b't' => b[at..].starts_with(b"true") && ends_scalar(b, at + 4),
            b'f' => b[at..].starts_with(b"false") && ends_scalar(b, at + 5),
            b'n' => b[at..].starts_with(b"null") && ends_scalar(b, at + 4),
            _ => false,
        }
    }

    /// The deepest nesting that the SIMD check follows itself (the nesting stack is one 64-bit
    /// word with a sentinel); deeper inputs go to [`check_scalar`], which also enforces
    /// [`MAX_JSON_DEPTH`].
    const SIMD_DEPTH: usize = 62;

    /// Bits set at odd positions.
    const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;

    /// Whitespace by a table lookup on the low nibble: the lookup gives back the byte for
    /// whitespace only (and 0 for bytes with the high bit set).
    #[inline(always)]
    fn whitespace_table() -> __m128i {
        // SAFETY: every x86_64 CPU has SSE2.
        unsafe {
            _mm_setr_epi8(
                b' ' as i8,
                100,
                100,
                100,
                17,
                100,
                113,
                2,
                100,
                b'\t' as i8,
                b'\n' as i8,
                112,
                100,
                b'\r' as i8,
                100,
                100,
            )
        }
    }

    /// The per-block classification that [`check_blocks`] needs, one bit per byte of a 64-byte
    /// block. A value exists only once [`Block::load`] (which requires the CPU features of the
    /// implementation) has made it, so the other methods are safe.
    trait Block: Copy {
        /// The 64 bytes of `block`.
        ///
        /// # Safety
        /// The CPU must have the features the implementation uses.
        unsafe fn load(block: &[u8; 64]) -> Self;

        /// The bytes of `rest` (shorter than 64), padded with whitespace.
        ///
        /// # Safety
        /// As for [`Block::load`].
        #[inline(always)]
        unsafe fn load_partial(rest: &[u8]) -> Self {
            let mut padded = [b' '; 64];
            padded[..rest.len()].copy_from_slice(rest);
            // SAFETY: the caller's promise.
            unsafe { Self::load(&padded) }
        }

        /// Whether any byte is `\` (so that a path can skip [`Block::backslash`]).
        #[inline(always)]
        fn any_backslash(self) -> bool {
            self.backslash() != 0
        }
        /// The bytes equal to `c`.
        fn eq(self, c: u8) -> u64;
        /// The bytes that equal `c` once bit 5 is set (`{` and `[` for `{`).
        fn eq_folded(self, c: u8) -> u64;
        #[inline(always)]
        fn backslash(self) -> u64 {
            self.eq(b'\\')
        }
        #[inline(always)]
        fn quote(self) -> u64 {
            self.eq(b'"')
        }
        /// `{` and `[`.
        #[inline(always)]
        fn open(self) -> u64 {
            self.eq_folded(b'{')
        }
        /// `}` and `]`.
        #[inline(always)]
        fn close(self) -> u64 {
            self.eq_folded(b'}')
        }
        #[inline(always)]
        fn comma(self) -> u64 {
            self.eq(b',')
        }
        #[inline(always)]
        fn colon(self) -> u64 {
            self.eq(b':')
        }
        /// Space, tab, line feed and carriage return.
        fn whitespace(self) -> u64;
        /// `0` to `9`.
        fn digit(self) -> u64;
        /// `0`.
        #[inline(always)]
        fn zero(self) -> u64 {
            self.eq(b'0')
        }
        /// The bytes below 0x20 (it may give 0 at once when there are none).
        fn control(self) -> u64;
        /// The bytes of both blocks OR-ed together, for [`Block::is_ascii`] (the accumulator
        /// starts from the first block).
        fn or(self, other: Self) -> Self;
        fn is_ascii(self) -> bool;
    }

    /// A block as two 256-bit halves (AVX2).
    #[derive(Clone, Copy)]
    struct Avx2 {
        lo: __m256i,
        hi: __m256i,
    }

    impl Avx2 {
        /// The 64 bits, one per byte, of `f` applied to both halves.
        #[inline(always)]
        fn bits(self, f: impl Fn(__m256i) -> __m256i) -> u64 {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Block`).
            unsafe {
                let lo = _mm256_movemask_epi8(f(self.lo)) as u32 as u64;
                let hi = _mm256_movemask_epi8(f(self.hi)) as u32 as u64;
                lo | hi << 32
            }
        }
    }

    impl Block for Avx2 {
        #[inline(always)]
        fn eq(self, c: u8) -> u64 {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Block`).
            self.bits(|x| unsafe { _mm256_cmpeq_epi8(x, _mm256_set1_epi8(c as i8)) })
        }

        #[inline(always)]
        fn eq_folded(self, c: u8) -> u64 {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Block`).
            self.bits(|x| unsafe {
                let folded = _mm256_or_si256(x, _mm256_set1_epi8(0x20));
                _mm256_cmpeq_epi8(folded, _mm256_set1_epi8(c as i8))
            })
        }

        #[inline(always)]
        unsafe fn load(block: &[u8; 64]) -> Self {
            let p = block.as_ptr().cast::<__m256i>();
            // SAFETY: `block` has 64 readable bytes, unaligned loads are allowed, and the
            // caller promises AVX2.
            unsafe {
                Self {
                    lo: _mm256_loadu_si256(p),
                    hi: _mm256_loadu_si256(p.add(1)),
                }
            }
        }

        #[inline(always)]
        fn any_backslash(self) -> bool {
            let c = b'\\' as i8;
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Block`).
            unsafe {
                let lo = _mm256_cmpeq_epi8(self.lo, _mm256_set1_epi8(c));
                let hi = _mm256_cmpeq_epi8(self.hi, _mm256_set1_epi8(c));
                _mm256_movemask_epi8(_mm256_or_si256(lo, hi)) != 0
            }
        }
        #[inline(always)]
        fn whitespace(self) -> u64 {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Block`).
            self.bits(|x| unsafe {
                let table = _mm256_broadcastsi128_si256(whitespace_table());
                _mm256_cmpeq_epi8(x, _mm256_shuffle_epi8(table, x))
            })
        }
        #[inline(always)]
        fn digit(self) -> u64 {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Block`).
            self.bits(|x| unsafe {
                let nine = _mm256_set1_epi8(9);
                let value = _mm256_sub_epi8(x, _mm256_set1_epi8(b'0' as i8));
                _mm256_cmpeq_epi8(_mm256_max_epu8(value, nine), nine)
            })
        }
        #[inline(always)]
        fn control(self) -> u64 {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Block`).
            unsafe {
                let least = _mm256_min_epu8(self.lo, self.hi);
                let below_space = _mm256_subs_epu8(_mm256_set1_epi8(0x20), least);
                if _mm256_testz_si256(below_space, below_space) != 0 {
                    return 0;
                }
            }
            // SAFETY: as above.
            self.bits(|x| unsafe {
                _mm256_cmpeq_epi8(_mm256_min_epu8(x, _mm256_set1_epi8(0x1f)), x)
            })
        }
        #[inline(always)]
        fn or(self, other: Self) -> Self {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Block`).
            unsafe {
                Self {
                    lo: _mm256_or_si256(self.lo, other.lo),
                    hi: _mm256_or_si256(self.hi, other.hi),
                }
            }
        }
        #[inline(always)]
        fn is_ascii(self) -> bool {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Block`).
            unsafe { _mm256_movemask_epi8(_mm256_or_si256(self.lo, self.hi)) == 0 }
        }
    }

    /// A block as one 512-bit vector (AVX-512BW): each comparison gives its 64-bit mask.
    #[derive(Clone, Copy)]
    struct Avx512(__m512i);

    impl Block for Avx512 {
        #[inline(always)]
        fn eq(self, c: u8) -> u64 {
            // SAFETY: `self` exists, so the CPU has AVX-512BW (see `Block`).
            unsafe { _mm512_cmpeq_epi8_mask(self.0, _mm512_set1_epi8(c as i8)) }
        }

        #[inline(always)]
        fn eq_folded(self, c: u8) -> u64 {
            // SAFETY: `self` exists, so the CPU has AVX-512BW (see `Block`).
            unsafe {
                let folded = _mm512_or_si512(self.0, _mm512_set1_epi8(0x20));
                _mm512_cmpeq_epi8_mask(folded, _mm512_set1_epi8(c as i8))
            }
        }

        #[inline(always)]
        unsafe fn load(block: &[u8; 64]) -> Self {
            // SAFETY: `block` has 64 readable bytes, unaligned loads are allowed, and the
            // caller promises AVX-512F.
            unsafe { Self(_mm512_loadu_si512(block.as_ptr().cast())) }
        }

        #[inline(always)]
        unsafe fn load_partial(rest: &[u8]) -> Self {
            debug_assert!(rest.len() < 64);
            let mask = (1u64 << rest.len()) - 1;
            // SAFETY: the masked load reads only the bytes of `rest` (faults are suppressed for
            // the others, which come from the whitespace vector), and the caller promises
            // AVX-512BW.
            unsafe {
                Self(_mm512_mask_loadu_epi8(
                    _mm512_set1_epi8(b' ' as i8),
                    mask,
                    rest.as_ptr().cast(),
                ))
            }
        }

        #[inline(always)]
        fn whitespace(self) -> u64 {
            // SAFETY: `self` exists, so the CPU has AVX-512BW (see `Block`).
            unsafe {
                let table = _mm512_broadcast_i32x4(whitespace_table());
                _mm512_cmpeq_epi8_mask(self.0, _mm512_shuffle_epi8(table, self.0))
            }
        }
        #[inline(always)]
        fn digit(self) -> u64 {
            // SAFETY: `self` exists, so the CPU has AVX-512BW (see `Block`).
            unsafe {
                let value = _mm512_sub_epi8(self.0, _mm512_set1_epi8(b'0' as i8));
                _mm512_cmplt_epu8_mask(value, _mm512_set1_epi8(10))
            }
        }
        #[inline(always)]
        fn control(self) -> u64 {
            // SAFETY: `self` exists, so the CPU has AVX-512BW (see `Block`).
            unsafe { _mm512_cmplt_epu8_mask(self.0, _mm512_set1_epi8(0x20)) }
        }
        #[inline(always)]
        fn or(self, other: Self) -> Self {
            // SAFETY: `self` exists, so the CPU has AVX-512F (see `Block`).
            unsafe { Self(_mm512_or_si512(self.0, other.0)) }
        }
        #[inline(always)]
        fn is_ascii(self) -> bool {
            // SAFETY: `self` exists, so the CPU has AVX-512BW (see `Block`).
            unsafe { _mm512_movepi8_mask(self.0) == 0 }
        }
    }

    /// Bit `i` of the result is the XOR of bits `0..=i` of `x`.
    #[inline]
    #[target_feature(enable = "pclmulqdq")]
    fn prefix_xor(x: u64) -> u64 {
        let product = _mm_clmulepi64_si128(_mm_set_epi64x(0, x as i64), _mm_set1_epi8(-1), 0);
        _mm_cvtsi128_si64(product) as u64
    }

    /// Carries a mark from each token in `from` to the next token: the tokens whose previous
    /// token is in `from`. `carry` is 1 when a mark is on its way from an earlier block (or,
    /// at the start, from the start of the input); `tokens` is not 0, and `last_shift` is the
    /// number of its leading zeros.
    #[inline(always)]
    fn follows(from: u64, tokens: u64, last_shift: u32, carry: &mut u64) -> u64 {
        // Adding a bit just after a token to the bytes between tokens (all ones) carries it
        // through them to the next token; the mark of the last token goes on to the next block.
        let sum = (!tokens).wrapping_add(from << 1 | *carry);
        *carry = (from << last_shift) >> 63;
        sum & tokens
    }

    /// The sentinel of the nesting stack at the top level (see [`check_blocks`]).
    const TOP: u64 = 2;
    const _: () = assert!(SIMD_DEPTH + 2 == u64::BITS as usize && SIMD_DEPTH < MAX_JSON_DEPTH);

    /// For each byte, whether it is after a byte of `from` with no byte of `stops` in between
    /// (the byte of `stops` that ends a run counts as in it); `carry` 1 counts as a byte of
    /// `from` just before the block. Bytes of `from` must be in `stops`.
    #[inline(always)]
    fn fill_after(from: u64, stops: u64, carry: u64) -> u64 {
        // Adding a bit just after each byte of `from` to the bytes that are not stops carries
        // it through them, flipping them, up to (and setting) the next stop.
        !stops ^ (!stops).wrapping_add(from << 1 | carry)
    }

    /// Checks the escapes whose backslashes are the bits of `escapes` (in the block at `base`),
    /// except those before `checked_to`, and moves `checked_to` past them; `false` for a bad
    /// escape. (`checked_to` is behind a reference so that it stays out of the registers of
    /// the block loop, which rarely needs it.)
    #[cold]
    #[inline(never)]
    fn check_escapes(b: &[u8], mut escapes: u64, base: usize, checked_to: &mut usize) -> bool {
        while escapes != 0 {
            let at = base + escapes.trailing_zeros() as usize;
            escapes &= escapes - 1;
            if at >= *checked_to {
                match escape_end(b, at + 1) {
                    Some(end) => *checked_to = end,
                    None => return false,
                }
            }
        }
        true
    }

    /// The check with AVX2 (see the module docs).
    #[target_feature(enable = "avx2,bmi1,pclmulqdq,popcnt")]
    pub(super) fn check_avx2(b: &[u8]) -> bool {
        // SAFETY: this function is compiled for (and so only runs with) the features that
        // `check_blocks::<Avx2>` needs.
        unsafe { check_blocks::<Avx2>(b) }
    }

    /// The check with AVX-512BW (see the module docs).
    #[target_feature(enable = "avx512f,avx512bw,avx2,bmi1,pclmulqdq,popcnt")]
    pub(super) fn check_avx512(b: &[u8]) -> bool {
        // SAFETY: this function is compiled for (and so only runs with) the features that
        // `check_blocks::<Avx512>` needs.
        unsafe { check_blocks::<Avx512>(b) }
    }

    /// The check, with blocks classified by `B` (see the module docs). It is inlined into
    /// [`check_avx2`] and [`check_avx512`], which are compiled for the CPU features it needs.
    ///
    /// # Safety
    /// The CPU must have the features of `B` and bmi1, pclmulqdq and popcnt.
    #[inline(always)]
    unsafe fn check_blocks<B: Block>(b: &[u8]) -> bool {
        // Carried from block to block: whether the next byte is escaped; all ones inside a
        // string; whether the last byte is in a scalar run, or a closing quote; escapes that
        // start before `escapes_checked_to` were checked as part of an earlier escape (the
        // second half of a surrogate pair); all bytes OR-ed together (for non-ASCII).
        let mut escaped_carry = 0u64;
        let mut in_string_carry = 0u64;
        let mut scalar_carry = 0u64;
        let mut closing_quote_carry = 0u64;
        let mut escapes_checked_to = 0usize;
        // SAFETY: the caller promises the features of `B`.
        let mut or_all = unsafe { B::load(&[0; 64]) };
        // Marks on their way to the next token: from `{`, `[` and `,`, and from keys and `,`.
        // Together they tell the previous token's kind: `{`/`[` (first only), key (second
        // only), `,` (both), or a value or closing bracket (neither). The start of the input
        // counts as a key.
        let (mut after_open_comma, mut after_key_comma) = (0u64, 1u64);

        // The nesting as in `check_scalar`, as a shift register with a sentinel: bit 0 is set
        // when the innermost container is an object, and the sentinel bit above the
        // containers' bits is at bit `depth + 1`, so that the top level (`stack == TOP`)
        // counts as an array (which holds no keys). Deeper than `SIMD_DEPTH` the input goes
        // to `check_scalar`.
        let mut stack: u64 = TOP;
        // Tokens at the top level (outside all containers) so far: the top-level value must
        // be the only one.
        let mut top_tokens = 0u64;

        let mut base = 0usize;
        while base < b.len() {
            // SAFETY: the caller promises the features of `B`.
            let block = unsafe {
                match b.get(base..base + 64) {
                    Some(block) => B::load(block.try_into().expect("64 bytes")),
                    // The last, partial block, padded with whitespace.
                    None => B::load_partial(&b[base..]),
                }
            };
            or_all = or_all.or(block);

            // Escapes: a backslash escapes the next byte unless it is itself escaped.
            let escaped = if escaped_carry == 0 && !block.any_backslash() {
                0
            } else {
                let backslash = block.backslash();
                // simdjson's trick: subtracting the backslashes that may start an escape from
                // the odd bits (with those backslashes shifted in) carries through each run and
                // leaves its escaped bytes marked, whichever the parity of the run's start.
                let starts = backslash & !escaped_carry;
                let code = ((starts << 1 | ODD_BITS).wrapping_sub(starts)) ^ ODD_BITS;
                let escapes = code & backslash;
                let escaped = code ^ (backslash | escaped_carry);
                escaped_carry = escapes >> 63;
                if escapes != 0 && !check_escapes(b, escapes, base, &mut escapes_checked_to) {
                    return false;
                }
                escaped
            };

            // Strings: from an opening quote up to (not including) its closing quote.
            let raw_quote = block.quote();
            let quote = raw_quote & !escaped;
            // SAFETY: the caller promises pclmulqdq.
            let in_string = unsafe { prefix_xor(quote) } ^ in_string_carry;
            in_string_carry = ((in_string as i64) >> 63) as u64;
            let closing_quote = quote & !in_string;

            // Structural characters; bit 5 set folds `[` onto `{` and `]` onto `}`.
            let (open, close) = (block.open(), block.close());
            let (comma, colon) = (block.comma(), block.colon());
            let ws = block.whitespace();
            let not_scalar = open | close | comma | colon | raw_quote | ws;
            let (open, close) = (open & !in_string, close & !in_string);
            let (comma, colon) = (comma & !in_string, colon & !in_string);

            // Control characters: none in strings, only whitespace outside.
            if block.control() & (in_string | !ws) != 0 {
                return false;
            }

            // Keys: each `:` must directly follow a closing quote, which is then not a token.
            if colon & !(closing_quote << 1 | closing_quote_carry) != 0 {
                return check_scalar(b);
            }
            let mut key_quote = closing_quote & colon >> 1;
            closing_quote_carry = closing_quote >> 63;
            if closing_quote_carry != 0 && b.get(base + 64) == Some(&b':') {
                key_quote |= 1 << 63;
            }

            // Scalar runs, and the tokens.
            let scalar = !(not_scalar | in_string);
            let scalar_start = scalar & !(scalar << 1 | scalar_carry);
            scalar_carry = scalar >> 63;
            let value_quote = closing_quote & !key_quote;
            let value = scalar_start | value_quote;
            // A grammar error. If only whitespace follows a string taken for a value to the end
            // of the block, a `:` after more whitespace would make it a key (see the module
            // docs), so `check_scalar` decides.
            macro_rules! grammar_error {
                () => {
                    return check_scalar(b)
                };
            }
            let tokens = open | close | comma | colon | value;

            if tokens != 0 {
                // Which token may follow which.
                let last_shift = tokens.leading_zeros();
                let prev_open_comma =
                    follows(open | comma, tokens, last_shift, &mut after_open_comma);
                let prev_key_comma =
                    follows(colon | comma, tokens, last_shift, &mut after_key_comma);
                let prev_open_key_comma = prev_open_comma | prev_key_comma;
                let prev_key = prev_key_comma & !prev_open_comma;
                // After a value or a closing bracket only `,` or a closing bracket; a key only
                // after `{`/`[` or `,` (a key in an array is refused below).
                let misplaced = (comma & prev_open_key_comma)
                    | (close & prev_key_comma)
                    | (colon & !prev_open_comma)
                    | ((open | value) & !prev_open_key_comma);
                if misplaced != 0 {
                    grammar_error!();
                }

                // Scalar runs. When all those that start in this block are digits only and end in
                // it, they are checked here on the masks; otherwise one by one (a run that reaches
                // the end of the block may go on).
                if scalar_start != 0 {
                    // Adding each run's first bit to the digits carries it through the run's
                    // leading digits; it stops inside the run at a byte that is not a digit.
                    let digits = scalar & block.digit();
                    let stopped = digits.wrapping_add(scalar_start) & scalar & !digits;
                    if stopped == 0 && scalar_carry == 0 {
                        // Every run that starts here is digits only and ends in this block (at
                        // a byte that may end a number): valid unless it has a leading zero.
                        if scalar_start & block.zero() & scalar >> 1 != 0 {
                            return false;
                        }
                    } else {
                        let mut scalars = scalar_start;
                        while scalars != 0 {
                            if !scalar_ok(b, base + scalars.trailing_zeros() as usize) {
                                return false;
                            }
                            scalars &= scalars - 1;
                        }
                    }
                }

                // The brackets, in order: they match, and the nesting stays within
                // `SIMD_DEPTH`. `inner_object` marks the brackets after which the innermost
                // container is an object, `inner_top` those after which it is the top level.
                let at_top = stack == TOP;
                let in_object_before = stack & 1;
                let mut inner_object = 0u64;
                let mut inner_top = 0u64;
                let brackets = open | close;
                // SAFETY: `base` is within the input (or at its end, for no bytes).
                let block_bytes = unsafe { b.as_ptr().add(base) };
                let mut rest = brackets;
                while rest != 0 {
                    let at = rest.trailing_zeros();
                    rest &= rest - 1;
                    debug_assert!(base + (at as usize) < b.len());
                    // SAFETY: token bits are only set for bytes of the input: the padding of the
                    // last block is whitespace, which is never a token.
                    let c = unsafe { *block_bytes.add(at as usize) };
                    let is_object = u64::from(c >> 5 & 1);
                    if c & 2 != 0 {
                        // `{` or `[`; past `SIMD_DEPTH` (the sentinel in bit 63) the scalar
                        // check decides.
                        if stack >> 63 != 0 {
                            return check_scalar(b);
                        }
                        stack = stack << 1 | is_object;
                    } else {
                        // `}` or `]`.
                        if (stack ^ is_object) & 1 != 0 {
                            grammar_error!();
                        }
                        stack >>= 1;
                        // Closing the top level leaves only half the sentinel.
                        if stack <= TOP {
                            if stack < TOP {
                                grammar_error!();
                            }
                            inner_top |= 1 << at;
                        }
                    }
                    inner_object |= (stack & 1) << at;
                }
                // Each token is in the container that is innermost after the last bracket
                // before it (an opening bracket is a value of its parent; a closing one is in
                // the container it closes). No keys in arrays (or at the top level), no values
                // in objects that do not follow a key.
                let in_object = fill_after(inner_object, brackets, in_object_before);
                if (colon & !in_object) | ((value | open) & !prev_key & in_object) != 0 {
                    grammar_error!();
                }
                if at_top || inner_top != 0 {
                    let at_top = fill_after(inner_top, brackets, u64::from(at_top));
                    top_tokens += u64::from((tokens & at_top).count_ones());
                }
            }
            base += 64;
        }
        top_tokens == 1
            && stack == TOP
            && after_open_comma | after_key_comma == 0
            && in_string_carry == 0
            && (or_all.is_ascii() || std::str::from_utf8(b).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The verdict of [`super::is_valid_json`], after checking that all paths agree on it:
    /// the scalar check and (where the CPU has the features) the AVX2 and AVX-512BW ones.
    /// Every test below goes through this.
    fn is_valid_json(bytes: &[u8]) -> bool {
        let scalar = check_scalar(bytes);
        for (path, verdict) in [
            ("AVX2", check_avx2(bytes)),
            ("AVX-512", check_avx512(bytes)),
        ] {
            if let Some(simd) = verdict {
                assert_eq!(
                    simd,
                    scalar,
                    "{path} and scalar checks disagree on {:?}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                );
            }
        }
        assert_eq!(super::is_valid_json(bytes), scalar);
        scalar
    }

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
        let verdict = is_valid_json(bytes);
        if let Some(expected) = serde_verdict(bytes) {
            assert_eq!(
                verdict,
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

    /// The order body of the benchmark (and the classification bench), about 890 bytes.
    fn order_body() -> Vec<u8> {
        let items: Vec<String> = (0..8)
            .map(|i| {
                format!(
                    r#"{{"sku":"SKU-0123{i}","qty":3,"price_cents":12345,"name":"Item number {i} with a longer name"}}"#
                )
            })
            .collect();
        format!(
            r#"{{"order_id":14013,"user":{{"id":"u-123","email":"user456@example.com"}},"currency":"EUR","items":[{}],"shipping":{{"street":"1 Long Street","city":"Springfield","zip":"12345"}}}}"#,
            items.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn the_order_body_is_valid() {
        let body = order_body();
        assert!(is_valid_json(&body));
        assert_agrees(&body);
        let pretty = serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&body).unwrap());
        assert!(is_valid_json(&pretty.unwrap()));
    }

    /// Every length from 0 to 200: documents cut short and padded with whitespace, so that
    /// each kind of byte ends up at every offset of the 64-byte blocks and at the input's end.
    #[test]
    fn every_length_up_to_200_agrees() {
        let doc = br#"{"a":[1,-2.5e+3,true,false,null,"s\"\\\u00e9\ud83d\ude00",{"k":{}},[]],"b":"caf\xc3\xa9 \xf0\x9f\x98\x80","c":0}"#;
        for len in 0..=200 {
            assert_agrees(&doc[..len.min(doc.len())]);
            let mut padded = doc.to_vec();
            padded.resize(len.max(doc.len()), b' ');
            assert_agrees(&padded);
            let mut shifted = vec![b' '; len];
            shifted.extend_from_slice(doc);
            assert_agrees(&shifted);
            assert_agrees(&shifted[..shifted.len() - 1]);
        }
        let body = order_body();
        for len in 0..=body.len() {
            assert_agrees(&body[..len]);
        }
    }

    /// Snippets that stress stage 1 (escapes and their runs, surrogate pairs, UTF-8, control
    /// bytes, numbers and literals and where they end, keys), placed at every offset across
    /// the 32- and 64-byte boundaries of the SIMD check.
    #[test]
    fn snippets_across_block_boundaries_agree() {
        let snippets: &[&[u8]] = &[
            br#""\\""#,
            br#""\"""#,
            br#""\\\"""#,
            br#""\\\\""#,
            br#""\\\\\"x""#,
            br#""\\\\\\\\\\\\\\\\""#,
            br#""\\\\\\\\\\\\\\\\\""#,
            b"\"\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\"",
            br#""a\"b\\c\/d\be\ff\ng\rh\ti""#,
            br#""\u0041\u00e9\u20AC""#,
            br#""\ud83d\ude00""#,
            br#""\ud83d\ude00\ud83d\ude00""#,
            br#""\ud83d""#,
            br#""\ude00""#,
            br#""\ud83d\u0041""#,
            br#""\u12""#,
            br#""\x""#,
            b"\"\\",
            b"\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
            b"\"\xc3\"",
            b"\"\xe2\x82\"",
            b"\"\xf0\x9f\x98\"",
            b"\"\x80\"",
            b"\"\x01\"",
            b"\"\t\"",
            b"\"\x1f\"",
            b"\x7f",
            b"12345",
            b"1234567890123456789",
            b"0",
            b"-0",
            b"01",
            b"-",
            b"1.",
            b"1.5",
            b"1e",
            b"1e+9",
            b"-12.5E-3",
            b"12a",
            b"true",
            b"tru",
            b"truex",
            b"false",
            b"fals",
            b"null",
            b"nullx",
            b"nul",
            b"[]",
            b"{}",
            b"[ ]",
            b"{ }",
            b"[1,]",
            b"[,1]",
            br#"{"k":1}"#,
            br#"{"k" :1}"#,
            br#"{"k": 1 , "l" : [2]}"#,
            br#"{"k"}"#,
            br#"{"k":}"#,
            br#"{:1}"#,
            br#"{"k":1,}"#,
            br#"{"k":"v":1}"#,
            br#"["k":1]"#,
            br#"{1:2}"#,
            br#"{"a""b":1}"#,
            br#""a""b""#,
            br#""a"1"#,
            b"1 2",
            b"[1 2]",
            b"[1}",
            b"{\"a\":1]",
        ];
        for snippet in snippets {
            for pad in 0..=140 {
                let filler = "x".repeat(pad);
                let spaces = " ".repeat(pad);
                let docs: [Vec<u8>; 6] = [
                    [format!(r#"["{filler}","#).as_bytes(), snippet, b"]"].concat(),
                    [format!(r#"{{"{filler}":"#).as_bytes(), snippet, b"}"].concat(),
                    [format!("[{spaces}").as_bytes(), snippet, b"]"].concat(),
                    [spaces.as_bytes(), snippet].concat(),
                    [format!(r#"[{filler:?},"#).as_bytes(), snippet].concat(),
                    [
                        format!(r#"{{"{filler}":["#).as_bytes(),
                        snippet,
                        b",",
                        snippet,
                        b"]}",
                    ]
                    .concat(),
                ];
                for doc in &docs {
                    assert_agrees(doc);
                }
            }
        }
    }

    #[test]
    fn nesting_limit_at_every_offset() {
        for offset in 0..70 {
            for levels in [126, 127, 128] {
                for text in [nested(levels), nested_objects(levels)] {
                    let shifted = [" ".repeat(offset).into_bytes(), text].concat();
                    assert_agrees(&shifted);
                    assert_eq!(is_valid_json(&shifted), levels <= MAX_JSON_DEPTH);
                }
            }
        }
    }

    /// Nesting around the depth past which the SIMD check hands the input to the scalar one
    /// (its nesting stack is one 64-bit word), at every alignment: still valid, and the same
    /// verdicts for unbalanced and mismatched brackets there.
    #[test]
    fn nesting_around_the_simd_stack_depth_at_every_offset() {
        for offset in 0..66 {
            let pad = " ".repeat(offset).into_bytes();
            for levels in 58..=66 {
                for text in [nested(levels), nested_objects(levels)] {
                    let shifted = [pad.clone(), text].concat();
                    assert!(is_valid_json(&shifted), "{levels} levels at {offset}");
                }
                let mismatched =
                    [pad.clone(), "[".repeat(levels).into_bytes(), b"}".to_vec()].concat();
                assert!(!is_valid_json(&mismatched));
                let extra_close = [pad.clone(), nested(levels), b"]".to_vec()].concat();
                assert!(!is_valid_json(&extra_close));
                // Down and up again past the depth, twice.
                let twice = [
                    pad.clone(),
                    b"[".to_vec(),
                    nested(levels),
                    b",".to_vec(),
                    nested_objects(levels),
                    b"]".to_vec(),
                ]
                .concat();
                assert!(is_valid_json(&twice));
            }
        }
    }

    /// Whatever follows the top-level value, or the end of its container, at every alignment
    /// (the top level is followed across blocks by where the brackets leave it).
    #[test]
    fn only_one_top_level_value_at_every_offset() {
        let invalid: &[&[u8]] = &[
            b"[1],[2]",
            b"{},{}",
            b"1,2",
            b"\"a\",1",
            b"[1]]",
            b"[1]}",
            b"{\"a\":1}}",
            b"]",
            b"}[",
            b"[1],",
            b",[1]",
            b"\"k\":1",
            b"{\"a\":[1]},\"b\":2}",
            b"[[1],[2]],[3]",
        ];
        let valid: &[&[u8]] = &[b"[1]", b"{}", b"1", b"\"a\"", b"[[1],[2]]", b"{\"a\":[{}]}"];
        for offset in 0..130 {
            let pad = " ".repeat(offset).into_bytes();
            for (cases, expected) in [(invalid, false), (valid, true)] {
                for &case in cases {
                    let shifted = [pad.as_slice(), case, b" "].concat();
                    assert_eq!(is_valid_json(&shifted), expected, "{offset} {case:?}");
                    // The same inside a long first string, so that it starts in a later block.
                    let late = [b"[\"".as_slice(), &pad, b"\",", case, b"]"].concat();
                    assert_agrees(&late);
                }
            }
        }
    }

    /// Invalid and grammar-relevant bytes replacing, or inserted before, each byte of a
    /// 130-byte document.
    #[test]
    fn a_bad_byte_at_each_position_agrees() {
        let doc = br#"{"id":"u-1","tags":["a","b\"c",true,null],"n":-12.5e3,"s":"caf\u00e9 \ud83d\ude00","m":{"k":[1,2,{}]},"z":0,"t":"a longer tail.."}"#;
        assert_eq!(doc.len(), 130);
        assert!(is_valid_json(doc));
        let bytes = [
            0x80, 0xff, 0xbf, 0xc3, 0xed, 0xf0, 0x00, 0x1f, b'\t', b' ', b'"', b'\\', b':', b',',
            b'{', b'}', b'[', b']', b'0', b'e', b'.', b'-',
        ];
        for at in 0..doc.len() {
            for &byte in &bytes {
                let mut replaced = doc.to_vec();
                replaced[at] = byte;
                assert_agrees(&replaced);
                let mut inserted = doc.to_vec();
                inserted.insert(at, byte);
                assert_agrees(&inserted);
            }
            let mut deleted = doc.to_vec();
            deleted.remove(at);
            assert_agrees(&deleted);
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
        fn one_byte_changes_at_any_alignment_agree(
            value in json_value(),
            pretty in any::<bool>(),
            indent in 0..70usize,
            at in any::<usize>(),
            byte in prop_oneof![prop::sample::select(INTERESTING.to_vec()), any::<u8>()],
            change in 0..4u8,
        ) {
            let text = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            let mut text = [" ".repeat(indent).into_bytes(), text].concat();
            assert_agrees(&text);
            let len = text.len();
            match change {
                0 => text[at % len] ^= 1 << (byte % 8),
                1 => text[at % len] = byte,
                2 => text.insert(at % (len + 1), byte),
                _ => {
                    text.remove(at % len);
                }
            }
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
