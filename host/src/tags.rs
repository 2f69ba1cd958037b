//! Tags: the short labels a tenant puts on its customers (`wholesale`, `b2b-gold`) and on
//! its products, for its rules to read on the order path. One rule for both, decided
//! here: each tag is trimmed, NFKC-normalized and lower-cased, then 1–64 characters of
//! `a-z 0-9 - _ . :`; a list holds at most 32 distinct tags, kept sorted. The shape is
//! narrow on purpose: tags are compared by rules, so `Wholesale`, `wholesale ` and
//! `ｗｈｏｌｅｓａｌｅ` must be one tag, and nothing invisible or spaced may look like
//! another.

use crate::{store::TextList, text::FieldError};

/// Most tags on one customer or product.
pub const MAX_TAGS: usize = 32;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;

/// The characters a tag may hold besides `a-z` and `0-9`.
const PUNCTUATION: [char; 4] = ['-', '_', '.', ':'];

/// A parsed tag list: normalized, distinct, sorted, at most [`MAX_TAGS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Vec<String>);

impl Tags {
    /// Parses a list as a client sent it; `field` names it in errors (`tags`). Duplicates
    /// (after normalization) count once; an empty list is no tags.
    pub fn parse<S: AsRef<str>>(field: &'static str, raw: &[S]) -> Result<Self, FieldError> {
        let mut tags = raw
            .iter()
            .enumerate()
            .map(|(i, tag)| parse_one(field, i + 1, tag.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        tags.sort_unstable();
        tags.dedup();
        Self::bounded(field, tags)
    }

    /// Parses the tags of one string, split at `separator`: a CSV import's `tags` cell
    /// (`wholesale|b2b-gold`). Each piece is a tag, so an empty piece is refused.
    pub fn parse_separated(
        field: &'static str,
        raw: &str,
        separator: char,
    ) -> Result<Self, FieldError> {
        Self::parse(field, &raw.split(separator).collect::<Vec<_>>())
    }

    /// Tags read back from the database (parsed when they were stored).
    pub fn trusted(stored: Vec<String>) -> Self {
        Self(stored)
    }

    /// These tags and `more`, still at most [`MAX_TAGS`].
    pub fn with(&self, field: &'static str, more: &Tags) -> Result<Self, FieldError> {
        let mut tags: Vec<String> = self.0.iter().chain(&more.0).cloned().collect();
        tags.sort_unstable();
        tags.dedup();
        Self::bounded(field, tags)
    }

    /// These tags without any of `gone`.
    pub fn without(&self, gone: &Tags) -> Self {
        Self(
            self.0
                .iter()
                .filter(|tag| !gone.0.contains(tag))
                .cloned()
                .collect(),
        )
    }

    /// The tags, sorted.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The tags, sorted.
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }

    /// The tags as a column value.
    pub fn stored(&self) -> TextList {
        TextList(self.0.clone())
    }

    fn bounded(field: &'static str, tags: Vec<String>) -> Result<Self, FieldError> {
        if tags.len() > MAX_TAGS {
            return Err(FieldError::new(
                field,
                format!("{} distinct tags; at most {MAX_TAGS}", tags.len()),
            ));
        }
        Ok(Self(tags))
    }
}

/// One tag, the `position`-th (1-based) of its list.
fn parse_one(field: &'static str, position: usize, raw: &str) -> Result<String, FieldError> {
    let tag = crate::text::identifier(raw)
        .map_err(|e| FieldError::new(field, format!("tag {position} {e}")))?
        .to_lowercase();
    let len = tag.chars().count();
    if !(1..=MAX_TAG_CHARS).contains(&len) {
        return Err(FieldError::new(
            field,
            format!("tag {position} has {len} characters; each tag has 1-{MAX_TAG_CHARS}"),
        ));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || PUNCTUATION.contains(c)))
    {
        return Err(FieldError::new(
            field,
            format!(
                "tag {position} ({tag:?}) holds {c:?}; tags hold only a-z, 0-9, '-', '_', '.', ':'"
            ),
        ));
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_normalized_distinct_and_sorted() {
        let tags = Tags::parse(
            "tags",
            &[" Wholesale", "b2b-gold", "wholesale", "\u{ff37}x:1"],
        )
        .unwrap();
        assert_eq!(tags.as_slice(), ["b2b-gold", "wholesale", "wx:1"]);
        assert_eq!(Tags::parse::<&str>("tags", &[]).unwrap(), Tags::default());
        let cell = Tags::parse_separated("tags", "sale | new|sale", '|').unwrap();
        assert_eq!(cell.as_slice(), ["new", "sale"]);
    }

    #[test]
    fn bad_tags_name_the_field_and_the_tag() {
        let problem = |raw: &[&str]| Tags::parse("tags", raw).unwrap_err();
        let spaced = problem(&["ok", "b2b gold"]);
        assert_eq!(spaced.field, "tags");
        assert!(
            spaced.problem.starts_with("tag 2 (\"b2b gold\") holds ' '"),
            "{spaced}"
        );
        assert!(problem(&[""]).problem.contains("tag 1 has 0 characters"));
        assert!(
            problem(&[&"x".repeat(65)])
                .problem
                .contains("has 65 characters")
        );
        assert!(problem(&["caf\u{e9}"]).problem.contains("holds 'é'"));
        assert!(problem(&["a\u{200b}b"]).problem.contains("invisible"));
        let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        assert!(
            Tags::parse("tags", &many)
                .unwrap_err()
                .problem
                .contains("at most 32")
        );
        // Duplicates count once.
        let repeated: Vec<String> = (0..40).map(|i| format!("t{}", i % 32)).collect();
        assert_eq!(Tags::parse("tags", &repeated).unwrap().as_slice().len(), 32);
    }

    #[test]
    fn adding_and_removing_keep_the_bound() {
        let base = Tags::parse("tags", &["a", "b"]).unwrap();
        let more = Tags::parse("tags", &["c", "a"]).unwrap();
        assert_eq!(base.with("add", &more).unwrap().as_slice(), ["a", "b", "c"]);
        assert_eq!(base.without(&more).as_slice(), ["b"]);
        let full = Tags::parse(
            "tags",
            &(0..32).map(|i| format!("t{i}")).collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(full.with("add", &more).is_err());
        assert_eq!(full.with("add", &Tags::default()).unwrap(), full);
    }
}
