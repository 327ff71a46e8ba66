//! [`ValueFilter`]: how a GetRange or GetAll of [`super::LogClient`] selects records by value,
//! and its translation into the wire's filter mode and pattern (docs/protocol.md §7.3).
//!
//! The node does the matching; the client only checks what it can check without the node (the
//! 4096-byte limit) and builds the pattern for a case-insensitive substring, which the wire has
//! no mode for: it is sent as a case-insensitive regular expression that matches the substring
//! literally ([`literal_pattern`]).

use crate::error::ClientError;
use node_core::protocol::logfiles::{Filter, FilterMode, MAX_FILTER_LEN};

/// Which records a read returns, by value. An empty substring or pattern matches every value,
/// so it is sent as no filter at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ValueFilter {
    /// Every record.
    #[default]
    All,
    /// Records whose value contains these bytes (case-sensitive, byte for byte).
    Substring(Vec<u8>),
    /// Records whose value matches this regular expression: Rust `regex` syntax, matched
    /// anywhere in the value (anchor with `^`/`$`), by the node. A pattern that does not compile
    /// fails the read before any record arrives.
    Regex(String),
    /// As [`ValueFilter::Regex`], ignoring case (Unicode simple case folding).
    RegexIgnoreCase(String),
}

impl ValueFilter {
    /// Records whose value contains `bytes`, ignoring case: a case-insensitive regular
    /// expression matching `bytes` literally. Case folding applies to the parts of `bytes` that
    /// are UTF-8 text; other bytes match only themselves.
    pub fn substring_ignore_case(bytes: &[u8]) -> ValueFilter {
        ValueFilter::RegexIgnoreCase(literal_pattern(bytes))
    }

    /// The filter as sent, or `ClientError::Setup` when its text exceeds the protocol's limit.
    pub(crate) fn wire(&self) -> Result<Filter<'_>, ClientError> {
        let (mode, pattern) = match self {
            ValueFilter::All => return Ok(Filter::NONE),
            ValueFilter::Substring(bytes) => (FilterMode::Substring, bytes.as_slice()),
            ValueFilter::Regex(pattern) => (FilterMode::Regex, pattern.as_bytes()),
            ValueFilter::RegexIgnoreCase(pattern) => {
                (FilterMode::RegexCaseInsensitive, pattern.as_bytes())
            }
        };
        if pattern.is_empty() {
            return Ok(Filter::NONE);
        }
        if pattern.len() > MAX_FILTER_LEN {
            return Err(ClientError::Setup(format!(
                "value filter of {} bytes exceeds the limit of {MAX_FILTER_LEN} bytes",
                pattern.len()
            )));
        }
        Ok(Filter { mode, pattern })
    }
}

/// A regular expression (Rust `regex` syntax, as the node compiles it for byte strings) that
/// matches exactly the byte string `bytes`: UTF-8 text with its meta characters escaped, and
/// every byte that is not part of valid UTF-8 as `(?-u:\xNN)`, which matches that one byte.
pub fn literal_pattern(bytes: &[u8]) -> String {
    let mut pattern = String::with_capacity(bytes.len() * 2);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_meta(c) {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        for byte in chunk.invalid() {
            pattern.push_str(&format!("(?-u:\\x{byte:02X})"));
        }
    }
    pattern
}

/// The characters the `regex` crate gives a meaning (its `escape` escapes exactly these).
fn is_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_filters_are_no_filter_and_long_ones_are_refused() {
        assert_eq!(ValueFilter::All.wire().expect("all"), Filter::NONE);
        for empty in [
            ValueFilter::Substring(Vec::new()),
            ValueFilter::Regex(String::new()),
            ValueFilter::RegexIgnoreCase(String::new()),
        ] {
            assert_eq!(empty.wire().expect("empty"), Filter::NONE, "{empty:?}");
        }
        let filter = ValueFilter::Substring(b"0".to_vec());
        assert_eq!(
            filter.wire().expect("substring"),
            Filter {
                mode: FilterMode::Substring,
                pattern: b"0"
            }
        );
        let at_limit = ValueFilter::Regex("a".repeat(MAX_FILTER_LEN));
        assert_eq!(
            at_limit.wire().expect("at the limit").mode,
            FilterMode::Regex
        );
        let error = ValueFilter::Regex("a".repeat(MAX_FILTER_LEN + 1))
            .wire()
            .expect_err("too long")
            .to_string();
        assert_eq!(
            error,
            "value filter of 4097 bytes exceeds the limit of 4096 bytes"
        );
    }

    /// The pattern is compiled the way the node compiles it (a `regex::bytes` expression,
    /// optionally case-insensitive) and must match the literal text and nothing looser.
    #[test]
    fn literal_patterns_match_exactly_their_bytes() {
        let cases: [&[u8]; 7] = [
            b"a.b*c",
            b"\\d+ (x|y) [z] {1} ^$ #&-~ ?",
            b"plain text",
            "grüße".as_bytes(),
            b"\xff\x00raw\x80",
            b"tab\there\nnewline",
            b"",
        ];
        for literal in cases {
            let pattern = literal_pattern(literal);
            let regex = regex::bytes::Regex::new(&pattern)
                .unwrap_or_else(|e| panic!("{pattern:?} compiles: {e}"));
            let mut haystack = b"prefix ".to_vec();
            haystack.extend_from_slice(literal);
            haystack.extend_from_slice(b" suffix");
            assert!(regex.is_match(&haystack), "{pattern:?} in {haystack:?}");
            if !literal.is_empty() {
                let mut changed = literal.to_vec();
                changed[0] = changed[0].wrapping_add(1);
                assert!(
                    !regex.is_match(&changed),
                    "{pattern:?} must not match {changed:?}"
                );
            }
        }
        assert!(!regex::bytes::Regex::new(&literal_pattern(b"a.c"))
            .expect("compiles")
            .is_match(b"abc"));
    }

    #[test]
    fn ignoring_case_folds_text_but_not_raw_bytes() {
        let ValueFilter::RegexIgnoreCase(pattern) =
            ValueFilter::substring_ignore_case("GRÜSSE aus\u{ff}".as_bytes())
        else {
            panic!("a case-insensitive regex");
        };
        let regex = regex::bytes::RegexBuilder::new(&pattern)
            .case_insensitive(true)
            .build()
            .expect("compiles");
        assert!(regex.is_match("viele grüsse AUSÿ!".as_bytes()));
        assert!(!regex.is_match(b"viele gruesse aus"));
        let ValueFilter::RegexIgnoreCase(raw) = ValueFilter::substring_ignore_case(b"A\xff") else {
            panic!("a case-insensitive regex");
        };
        let regex = regex::bytes::RegexBuilder::new(&raw)
            .case_insensitive(true)
            .build()
            .expect("compiles");
        assert!(regex.is_match(b"xa\xffx"));
        assert!(!regex.is_match("xaÿx".as_bytes()), "the raw byte is not ÿ");
    }
}
