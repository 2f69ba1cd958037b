//! What text orderhost stores, decided once.
//!
//! - **Every** string that enters — JSON bodies, path segments, query values, CLI and
//!   import fields — may hold any Unicode scalar except the control characters: C0
//!   (U+0000–U+001F) other than tab, line feed and carriage return, DEL (U+007F) and C1
//!   (U+0080–U+009F). PostgreSQL cannot store U+0000 at all (the original symptom: a 500
//!   on 17 routes), and the others are terminal escapes and log forgery waiting to happen.
//!   The HTTP edge refuses them before any handler runs ([`scan_json`],
//!   [`first_forbidden`] on decoded paths and queries), so no route can forget it.
//! - **Single-line** fields (names, reasons) hold no control character at all
//!   ([`single_line`]).
//! - **Identifiers** that must be unique (emails, skus, slugs) are NFKC-normalized and may
//!   not hold invisible format characters (Unicode category Cf: zero-width spaces and
//!   joiners, bidi overrides, soft hyphens, …) ([`identifier`]): `ｄｕｐ@x.io` is
//!   `dup@x.io`, and `dup@x.io` followed by U+200B is refused, so no lookalike account or
//!   sku can sit next to the real one.

use unicode_normalization::UnicodeNormalization as _;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

/// A field that does not parse: which one and why — the error of every domain parser
/// (catalog fields, emails, names, slugs, passwords). Rendered as 422 `VALIDATION_FAILED`
/// by the API, as a line of the import report, and as a plain message by the CLI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// The field, as the client spelled it.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }

    /// `field` refused for holding what `error` says.
    pub fn text(field: &'static str, error: TextError) -> Self {
        Self::new(field, error.to_string())
    }
}

impl From<FieldError> for crate::http::error::ApiError {
    fn from(err: FieldError) -> Self {
        Self::validation(err.field, err.problem)
    }
}

/// Whether `c` may never be stored: C0 controls other than tab/LF/CR, DEL, C1 controls.
pub fn is_forbidden(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// The first forbidden character of `s`, with its byte offset.
pub fn first_forbidden(s: &str) -> Option<(usize, char)> {
    s.char_indices().find(|&(_, c)| is_forbidden(c))
}

/// Why a piece of text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A control character (any, in a single-line field).
    #[error("holds the control character U+{:04X}", *.0 as u32)]
    Control(char),
    /// An invisible format character in an identifier.
    #[error("holds the invisible character U+{:04X}", *.0 as u32)]
    Invisible(char),
}

/// A single-line field: no control character at all (not even tab or line feed).
pub fn single_line(s: &str) -> Result<&str, TextError> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(TextError::Control(c)),
        None => Ok(s),
    }
}

/// A multi-line field: tab, line feed and carriage return allowed, no other control.
pub fn multi_line(s: &str) -> Result<&str, TextError> {
    match first_forbidden(s) {
        Some((_, c)) => Err(TextError::Control(c)),
        None => Ok(s),
    }
}

/// An identifier compared for uniqueness: trimmed, NFKC-normalized, without control or
/// invisible format characters. Callers apply their own shape (and case) rules after.
pub fn identifier(raw: &str) -> Result<String, TextError> {
    let normalized: String = raw.trim().nfkc().collect();
    for c in normalized.chars() {
        if c.is_control() {
            return Err(TextError::Control(c));
        }
        if c.general_category() == GeneralCategory::Format {
            return Err(TextError::Invisible(c));
        }
    }
    Ok(normalized.trim().to_owned())
}

/// A forbidden character found in a JSON document: its code point and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden {
    /// The code point.
    pub code_point: u32,
    /// Byte offset in the document.
    pub offset: usize,
}

/// Finds a forbidden character in a JSON document, raw or escaped (`\u0000`, `\b`, `\f`),
/// without parsing it: one pass over the bytes, run on every JSON body before serde sees
/// it. Malformed JSON is left for the parser to report.
pub fn scan_json(bytes: &[u8]) -> Result<(), Forbidden> {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' => {
                let found = match bytes.get(i + 1) {
                    Some(b'u') => bytes
                        .get(i + 2..i + 6)
                        .and_then(|hex| std::str::from_utf8(hex).ok())
                        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                        .and_then(char::from_u32)
                        .filter(|&c| is_forbidden(c))
                        .map(|c| c as u32),
                    Some(b'b') => Some(0x08),
                    Some(b'f') => Some(0x0c),
                    _ => None,
                };
                if let Some(code_point) = found {
                    return Err(Forbidden {
                        code_point,
                        offset: i,
                    });
                }
                // An escape is at least two bytes; skipping both keeps `\\u0000` (an
                // escaped backslash, then plain text) from being read as an escape.
                i += 2;
            }
            // Raw C0 (JSON whitespace aside) and DEL.
            0x00..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x7f => {
                return Err(Forbidden {
                    code_point: u32::from(b),
                    offset: i,
                });
            }
            // C1 controls are U+0080–U+009F, encoded in UTF-8 as C2 80 – C2 9F.
            0xc2 if matches!(bytes.get(i + 1), Some(0x80..=0x9f)) => {
                return Err(Forbidden {
                    code_point: u32::from(bytes[i + 1]),
                    offset: i,
                });
            }
            _ => i += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_scan_finds_escaped_and_raw_controls_only() {
        assert!(scan_json(br#"{"a":"plain \u00e9 \n\t\r \"q\" \\u0000"}"#).is_ok());
        assert!(scan_json("{\"a\":\"caf\u{e9} \u{200b}\"}".as_bytes()).is_ok());
        let nul = scan_json(br#"{"a":"x\u0000"}"#).unwrap_err();
        assert_eq!((nul.code_point, nul.offset), (0, 7));
        assert_eq!(
            scan_json(br#"{"a":"\u001B[31m"}"#).unwrap_err().code_point,
            0x1b
        );
        assert_eq!(
            scan_json(br#"{"a":"\u007f"}"#).unwrap_err().code_point,
            0x7f
        );
        assert_eq!(
            scan_json(br#"{"a":"\u0085"}"#).unwrap_err().code_point,
            0x85
        );
        assert_eq!(scan_json(br#"{"a":"\b"}"#).unwrap_err().code_point, 8);
        assert_eq!(scan_json(b"{\"a\":\"\x1b\"}").unwrap_err().code_point, 0x1b);
        assert_eq!(
            scan_json("{\"a\":\"\u{9b}\"}".as_bytes())
                .unwrap_err()
                .code_point,
            0x9b
        );
        // Escaped backslash then "u0000" is text, and a truncated escape is the parser's.
        assert!(scan_json(br#"["\\u0000", "\u00"]"#).is_ok());
    }

    #[test]
    fn identifiers_are_nfkc_without_invisible_characters() {
        assert_eq!(
            identifier(" \u{ff44}\u{ff55}\u{ff50}@x.io ").unwrap(),
            "dup@x.io"
        );
        assert_eq!(
            identifier("dup@x.io\u{200b}"),
            Err(TextError::Invisible('\u{200b}'))
        );
        assert_eq!(
            identifier("MUG\u{202e}1"),
            Err(TextError::Invisible('\u{202e}'))
        );
        assert_eq!(identifier("a\u{0}b"), Err(TextError::Control('\u{0}')));
        assert_eq!(identifier("Café").unwrap(), "Café");
    }

    #[test]
    fn single_and_multi_line() {
        assert!(single_line("Blue mug").is_ok());
        assert_eq!(single_line("a\nb"), Err(TextError::Control('\n')));
        assert!(multi_line("line one\nline two\ttab").is_ok());
        assert_eq!(multi_line("x\u{1b}[2J"), Err(TextError::Control('\u{1b}')));
    }
}
