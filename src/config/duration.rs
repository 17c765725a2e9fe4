//! Human durations in `proxy.toml`: `"250ms"`, `"5s"`, `"10m"`, `"1h"`.
//!
//! Parsed while deserializing, so a bad value is reported by the TOML parser together with
//! its line and the key path (see `super::load`); serialized in the same form.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer};
use serde::{Serialize, Serializer};

/// A duration as written in the configuration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
}

/// Parses `"<digits><unit>"` with unit one of `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("invalid duration {text:?}: missing unit (ms, s, m or h)"))?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: expected a whole number followed by ms, s, m or h, e.g. \"5s\""
        ));
    }
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ))
        }
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("invalid duration {text:?}: too large"))
}

/// Formats a duration the way the configuration file writes it.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis % 3_600_000 == 0 && millis > 0 {
        format!("{}h", millis / 3_600_000)
    } else if millis % 60_000 == 0 && millis > 0 {
        format!("{}m", millis / 60_000)
    } else if millis % 1_000 == 0 {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string such as \"250ms\", \"5s\", \"10m\" or \"1h\"")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<HumanDuration, E> {
                parse_duration(value).map(HumanDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Written the way it is read: `"5s"`, `"250ms"`.
impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_rejects_the_rest() {
        let cases: &[(&str, Result<u64, &str>)] = &[
            ("250ms", Ok(250)),
            ("5s", Ok(5_000)),
            ("10m", Ok(600_000)),
            ("1h", Ok(3_600_000)),
            ("0s", Ok(0)),
            ("5", Err("missing unit")),
            ("s", Err("expected a whole number")),
            ("5 s", Err("unknown unit")),
            ("5d", Err("unknown unit")),
            ("-5s", Err("expected a whole number")),
            ("1.5s", Err("unknown unit")),
            ("99999999999999999999s", Err("number too large")),
            ("18446744073709551615h", Err("too large")),
        ];
        for (input, expected) in cases {
            let got = parse_duration(input);
            match expected {
                Ok(ms) => assert_eq!(got, Ok(Duration::from_millis(*ms)), "{input}"),
                Err(fragment) => {
                    let err = got.expect_err(input);
                    assert!(err.contains(fragment), "{input}: {err}");
                }
            }
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["250ms", "5s", "10m", "1h", "90s", "0s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
