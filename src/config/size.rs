//! Sizes in `proxy.toml`: a number of bytes, or `"512KiB"`, `"64MiB"`, `"1GiB"`.
//!
//! Parsed while deserializing, like durations, so a bad value is reported by the TOML
//! parser with its line and key; serialized in the largest unit that divides it.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer};
use serde::{Serialize, Serializer};

/// A size in bytes as written in the configuration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanSize(pub u64);

const UNITS: [(&str, u64); 4] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

/// Parses `"<digits><unit>"` with unit one of `B`, `KiB`, `MiB`, `GiB` (or no unit: bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "invalid size {text:?}: expected a whole number of bytes or one followed by KiB, MiB or GiB, e.g. \"64MiB\""
        ));
    }
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}: number too large"))?;
    let per_unit = match unit {
        "" => 1,
        unit => UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, bytes)| *bytes)
            .ok_or_else(|| {
                format!("invalid size {text:?}: unknown unit {unit:?} (use B, KiB, MiB or GiB)")
            })?,
    };
    amount
        .checked_mul(per_unit)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// Formats a size the way the configuration file writes it.
pub fn format_size(bytes: u64) -> String {
    let (name, per_unit) = UNITS
        .iter()
        .find(|(_, per_unit)| bytes > 0 && bytes % per_unit == 0)
        .copied()
        .unwrap_or(("B", 1));
    format!("{}{name}", bytes / per_unit)
}

impl<'de> Deserialize<'de> for HumanSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = HumanSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"512KiB\", \"64MiB\", \"1GiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<HumanSize, E> {
                parse_size(value).map(HumanSize).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<HumanSize, E> {
                u64::try_from(value)
                    .map(HumanSize)
                    .map_err(|_| E::custom(format!("invalid size {value}: must not be negative")))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<HumanSize, E> {
                Ok(HumanSize(value))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Written the way it is read: `"64MiB"`.
impl Serialize for HumanSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_size(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_rejects_the_rest() {
        let cases: &[(&str, Result<u64, &str>)] = &[
            ("512KiB", Ok(512 << 10)),
            ("64MiB", Ok(64 << 20)),
            ("1GiB", Ok(1 << 30)),
            ("100B", Ok(100)),
            ("4096", Ok(4096)),
            ("64MB", Err("unknown unit")),
            ("64 MiB", Err("unknown unit")),
            ("MiB", Err("expected a whole number")),
            ("-1MiB", Err("expected a whole number")),
            ("1.5GiB", Err("unknown unit")),
            ("99999999999999999999", Err("number too large")),
            ("18446744073709551615GiB", Err("too large")),
        ];
        for (input, expected) in cases {
            let got = parse_size(input);
            match expected {
                Ok(bytes) => assert_eq!(got, Ok(*bytes), "{input}"),
                Err(fragment) => {
                    let err = got.expect_err(input);
                    assert!(err.contains(fragment), "{input}: {err}");
                }
            }
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["512KiB", "64MiB", "1GiB", "1000B", "0B"] {
            assert_eq!(format_size(parse_size(text).unwrap()), text);
        }
    }
}
