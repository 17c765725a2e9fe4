//! School names, database names and slugs: how one is derived from another.
//!
//! A slug is the database name with `_` written as `-` (API.md), so the two map one to one
//! and a slug can be resolved without guessing.

use crate::domain::names;

/// The longest display name accepted.
pub const MAX_SCHOOL_NAME_CHARS: usize = 200;

/// Checks a display name: not blank, not too long, no control characters.
pub fn validate_school_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("school name is empty".into());
    }
    if name.chars().count() > MAX_SCHOOL_NAME_CHARS {
        return Err(format!(
            "school name is longer than {MAX_SCHOOL_NAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("school name contains control characters".into());
    }
    Ok(())
}

/// `Pinewood Elementary` -> `pinewood_elementary`: ASCII letters and digits lowercased,
/// every run of anything else one `_`. Refuses rather than guesses when the result would
/// not be a valid database name (non-ASCII letters, a leading digit, too long).
pub fn derive_database_name(school_name: &str) -> Result<String, String> {
    if let Some(c) = school_name
        .chars()
        .find(|c| c.is_alphanumeric() && !c.is_ascii())
    {
        return Err(format!(
            "cannot derive a database name from {school_name:?} (it contains {c:?}); pass --database"
        ));
    }
    let mut database = String::with_capacity(school_name.len());
    for c in school_name.chars() {
        if c.is_ascii_alphanumeric() {
            database.push(c.to_ascii_lowercase());
        } else if !database.is_empty() && !database.ends_with('_') {
            database.push('_');
        }
    }
    while database.ends_with('_') {
        database.pop();
    }
    names::validate_database_name(&database).map_err(|err| {
        format!("cannot derive a database name from {school_name:?}: {err}; pass --database")
    })?;
    Ok(database)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Pinewood Elementary", Some("pinewood_elementary")),
            (
                "  St. Mary's -- High School  ",
                Some("st_mary_s_high_school"),
            ),
            ("School 42", Some("school_42")),
            ("42 Academy", None),
            ("École Saint-Jean", None),
            ("!!!", None),
            (&"a".repeat(64), None),
        ];
        for (name, expected) in cases {
            assert_eq!(
                derive_database_name(name).ok().as_deref(),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn school_names() {
        assert!(validate_school_name("Pinewood Elementary").is_ok());
        assert!(validate_school_name("  ").is_err());
        assert!(validate_school_name("a\u{0}b").is_err());
        assert!(validate_school_name(&"x".repeat(201)).is_err());
    }
}
