//! School slugs and database names: which are well formed, and how one maps onto the
//! other.
//!
//! A slug is the database name with `_` written as `-` (API.md), so the two map one to one
//! and a slug can be resolved without guessing. Well formed is not known: only the catalog
//! says whether a school exists. Nothing here does I/O.

use std::fmt;

/// PostgreSQL truncates identifiers longer than this many bytes (with only a NOTICE).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The longest slug: PostgreSQL's identifier limit, since a slug maps onto a database name.
pub const MAX_SLUG_BYTES: usize = MAX_IDENTIFIER_BYTES;

/// A well-formed school slug: `[a-z0-9-]`, 1..=63 bytes, starting with a letter.
/// Well formed is not known: only the catalog says whether the school exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slug<'a>(&'a str);

impl<'a> Slug<'a> {
    /// The slug if `text` is well formed.
    pub fn parse(text: &'a str) -> Option<Slug<'a>> {
        let bytes = text.as_bytes();
        let well_formed = (1..=MAX_SLUG_BYTES).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        well_formed.then_some(Slug(text))
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl fmt::Display for Slug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// `pinewood_elementary` -> `pinewood-elementary`.
pub fn database_to_slug(database: &str) -> String {
    database.replace('_', "-")
}

/// Why a database name from the catalog or an operator is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("database name is empty")]
    Empty,
    #[error("database name {0:?} is longer than 63 bytes (PostgreSQL would truncate it)")]
    TooLong(String),
    #[error("database name {0:?} must start with a lowercase letter")]
    BadStart(String),
    #[error("database name {0:?} may only contain lowercase letters, digits and _")]
    BadCharacter(String),
    #[error("database name {0:?} is reserved")]
    Reserved(String),
}

/// Accepts lowercase ASCII letters, digits and `_`, starting with a letter, at most 63
/// bytes, and not one of PostgreSQL's own databases. Never truncates or rewrites.
pub fn validate_database_name(name: &str) -> Result<(), NameError> {
    let Some(first) = name.bytes().next() else {
        return Err(NameError::Empty);
    };
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(NameError::TooLong(name.into()));
    }
    if !first.is_ascii_lowercase() {
        return Err(NameError::BadStart(name.into()));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(NameError::BadCharacter(name.into()));
    }
    if matches!(name, "postgres" | "template0" | "template1") {
        return Err(NameError::Reserved(name.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names() {
        let long_ok = "a".repeat(63);
        let too_long = "a".repeat(64);
        let cases: &[(&str, bool)] = &[
            ("pinewood_elementary", true),
            ("a", true),
            ("school2", true),
            (&long_ok, true),
            (&too_long, false),
            ("", false),
            ("Bad-Name", false),
            ("bad-name", false),
            ("2school", false),
            ("_school", false),
            ("x\"; drop", false),
            ("école", false),
            ("postgres", false),
            ("template1", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_database_name(name).is_ok(), *ok, "{name:?}");
        }
    }

    #[test]
    fn database_names_convert_to_slugs() {
        let cases = [
            ("pinewood-elementary", "pinewood_elementary"),
            ("pinewood", "pinewood"),
            ("ps-118-north", "ps_118_north"),
        ];
        for (slug, database) in cases {
            assert_eq!(database_to_slug(database), slug);
        }
        let slug = Slug::parse("pinewood-elementary").unwrap();
        assert_eq!(slug.as_str(), "pinewood-elementary");
        assert_eq!(slug.to_string(), "pinewood-elementary");
    }
}
