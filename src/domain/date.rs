//! [`Date`]: the calendar date of the API (`weekOf`, `day`), with no time zone.
//!
//! This module owns the one wire form of a date (strict `YYYY-MM-DD`, years 0001-9999),
//! its JSON form and its PostgreSQL `DATE` binary form (days since 2000-01-01). The
//! day-number arithmetic is Howard Hinnant's `days_from_civil` one way and Neri and
//! Schneider's `to_date` the other (the hot direction: every date of every response).
//! It must not do I/O, read a clock or know a time zone: a date is never shifted.

use std::fmt;
use std::str::FromStr;

use bytes::BytesMut;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};
use tokio_postgres::types::{accepts, to_sql_checked, FromSql, IsNull, ToSql, Type};

/// Days from 1970-01-01 (Hinnant's epoch) to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_FROM_UNIX_DAYS: i64 = 10_957;

/// The length of the wire form `YYYY-MM-DD`.
pub const DATE_LEN: usize = 10;

/// A calendar date between 0001-01-01 and 9999-12-31.
///
/// Fields are ordered year, month, day so the derived ordering is chronological.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// The date, if it exists in the calendar and its year is 1..=9999.
    pub const fn from_ymd(year: u16, month: u8, day: u8) -> Option<Date> {
        if year < 1 || year > 9999 || month < 1 || month > 12 {
            return None;
        }
        if day < 1 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    pub const fn year(self) -> u16 {
        self.year
    }

    pub const fn month(self) -> u8 {
        self.month
    }

    pub const fn day(self) -> u8 {
        self.day
    }

    /// Strict `YYYY-MM-DD`: exactly ten ASCII bytes, zero-padded, a real calendar date.
    /// No signs, spaces, time parts or other separators.
    pub fn parse(text: &str) -> Option<Date> {
        let bytes: &[u8; DATE_LEN] = text.as_bytes().try_into().ok()?;
        if bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        let year = digits(&bytes[0..4])?;
        let month = digits(&bytes[5..7])?;
        let day = digits(&bytes[8..10])?;
        // The digit counts bound the values, so the narrowing casts cannot truncate.
        Date::from_ymd(year as u16, month as u8, day as u8)
    }

    /// Days since 1970-01-01 (negative before it).
    pub fn to_unix_days(self) -> i64 {
        days_from_civil(i64::from(self.year), self.month.into(), self.day.into())
    }

    /// The date `days` after 1970-01-01, if its year is 1..=9999.
    pub fn from_unix_days(days: i64) -> Option<Date> {
        // Outside this window the year is certainly out of range; checking first also keeps
        // the arithmetic below far from overflow.
        const MIN: i64 = -719_162; // 0001-01-01
        const MAX: i64 = 2_932_896; // 9999-12-31
        if !(MIN..=MAX).contains(&days) {
            return None;
        }
        let (year, month, day) = date_from_days(days as i32);
        Date::from_ymd(year, month, day)
    }

    /// Days since 2000-01-01, PostgreSQL's binary `DATE`.
    pub fn to_pg_days(self) -> i32 {
        // 0001-01-01..=9999-12-31 is about -730,000..=2,900,000: always fits.
        (self.to_unix_days() - PG_EPOCH_FROM_UNIX_DAYS) as i32
    }

    /// The date of a PostgreSQL binary `DATE`, if representable. `infinity` and
    /// `-infinity` (i32::MAX / i32::MIN) and years outside 1..=9999 are `None`.
    pub fn from_pg_days(days: i32) -> Option<Date> {
        if days == i32::MAX || days == i32::MIN {
            return None;
        }
        Date::from_unix_days(i64::from(days) + PG_EPOCH_FROM_UNIX_DAYS)
    }

    /// The wire form as bytes, without allocating.
    pub fn to_bytes(self) -> [u8; DATE_LEN] {
        let mut out = *b"0000-00-00";
        let year = self.year;
        out[0] = b'0' + (year / 1000) as u8;
        out[1] = b'0' + (year / 100 % 10) as u8;
        out[2] = b'0' + (year / 10 % 10) as u8;
        out[3] = b'0' + (year % 10) as u8;
        out[5] = b'0' + self.month / 10;
        out[6] = b'0' + self.month % 10;
        out[8] = b'0' + self.day / 10;
        out[9] = b'0' + self.day % 10;
        out
    }
}

const fn is_leap_year(year: u16) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

const fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The value of a run of ASCII digits (at most four here, so no overflow).
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Hinnant's `days_from_civil`: days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400; // [0, 399]
    let month_from_march = (month + 9) % 12; // March = 0
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1; // [0, 365]
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Neri and Schneider's `to_date` ("Euclidean affine functions and their application to
/// calendar algorithms", 2022): the proleptic Gregorian date `days` after 1970-01-01, in
/// 32-bit multiplies and shifts (Hinnant's version needs four 64-bit divisions, which the
/// week list ran 52 times per request: 2.5% of tenant-edge's CPU in a profile).
/// Exact for every `days` of years 1..=9999 (`from_unix_days` checks that first); the
/// tests compare it with `days_from_civil` on each of those days.
fn date_from_days(days: i32) -> (u16, u8, u8) {
    // Shifts the epoch by 82 cycles of 400 years, so every day handled is positive.
    const CYCLES: u32 = 82;
    const SHIFT_DAYS: u32 = 719_468 + 146_097 * CYCLES;
    const SHIFT_YEARS: u32 = 400 * CYCLES;
    let n = (days as u32).wrapping_add(SHIFT_DAYS);
    // Century, and the day within it.
    let n1 = 4 * n + 3;
    let century = n1 / 146_097;
    let day_of_century = n1 % 146_097 / 4;
    // Year within the century, and the day within the year (from March 1).
    let n2 = 4 * day_of_century + 3;
    let p2 = 2_939_745_u64 * u64::from(n2);
    let year_of_century = (p2 >> 32) as u32;
    let day_of_year = (p2 as u32) / 2_939_745 / 4;
    let year = 100 * century + year_of_century;
    // Month (March = 3 .. February = 14) and day.
    let n3 = 2141 * day_of_year + 197_913;
    let month = n3 >> 16;
    let day = (n3 & 0xFFFF) / 2141 + 1;
    // January and February belong to the next year.
    let january_or_later = day_of_year >= 306;
    let year = year.wrapping_sub(SHIFT_YEARS) + u32::from(january_or_later);
    let month = if january_or_later { month - 12 } else { month };
    (year as u16, month as u8, day as u8)
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.to_bytes();
        // Only ASCII digits and '-' were written.
        f.pad(std::str::from_utf8(&bytes).map_err(|_| fmt::Error)?)
    }
}

/// A string that is not a strict `YYYY-MM-DD` calendar date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a date in YYYY-MM-DD format")]
pub struct ParseDateError;

impl FromStr for Date {
    type Err = ParseDateError;

    fn from_str(text: &str) -> Result<Date, ParseDateError> {
        Date::parse(text).ok_or(ParseDateError)
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.to_bytes();
        let text = std::str::from_utf8(&bytes).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
        struct DateVisitor;

        impl Visitor<'_> for DateVisitor {
            type Value = Date;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date in YYYY-MM-DD format")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Date, E> {
                // The input is not echoed: error text can reach logs or clients.
                Date::parse(text).ok_or_else(|| E::custom("expected a date in YYYY-MM-DD format"))
            }
        }

        deserializer.deserialize_str(DateVisitor)
    }
}

/// A PostgreSQL `DATE` that has no [`Date`]: infinite, or a year outside 1..=9999.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgDateError {
    #[error("date value is infinite")]
    Infinite,
    #[error("date is outside the years 0001-9999 ({days} days from 2000-01-01)")]
    OutOfRange { days: i32 },
    #[error("binary date has {len} bytes, expected 4")]
    BadLength { len: usize },
}

impl<'a> FromSql<'a> for Date {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Date, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 4] = raw
            .try_into()
            .map_err(|_| PgDateError::BadLength { len: raw.len() })?;
        let days = i32::from_be_bytes(bytes);
        if days == i32::MAX || days == i32::MIN {
            return Err(PgDateError::Infinite.into());
        }
        Ok(Date::from_pg_days(days).ok_or(PgDateError::OutOfRange { days })?)
    }

    accepts!(DATE);
}

impl ToSql for Date {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.to_pg_days().to_be_bytes());
        Ok(IsNull::No)
    }

    accepts!(DATE);
    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> Date {
        Date::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn parses_valid_dates() {
        let cases: &[(&str, (u16, u8, u8))] = &[
            ("2020-11-16", (2020, 11, 16)),
            ("2000-01-01", (2000, 1, 1)),
            ("2000-02-29", (2000, 2, 29)),
            ("2024-02-29", (2024, 2, 29)),
            ("0001-01-01", (1, 1, 1)),
            ("9999-12-31", (9999, 12, 31)),
            ("1999-12-31", (1999, 12, 31)),
            ("2021-04-30", (2021, 4, 30)),
        ];
        for &(text, (y, m, d)) in cases {
            let parsed = date(text);
            assert_eq!(
                (parsed.year(), parsed.month(), parsed.day()),
                (y, m, d),
                "{text}"
            );
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn rejects_bad_dates() {
        let cases = [
            "",
            "2020-02-30",
            "2020-1-6",
            "20200106",
            "2020-01-6",
            "2020-13-01",
            "2020-00-10",
            "2020-01-00",
            "2020-01-32",
            "2021-02-29",
            "1900-02-29",
            "2100-02-29",
            "2020-04-31",
            "0000-01-01",
            "10000-01-01",
            "+2020-01-01",
            "2020/01/06",
            "2020-01-06T00:00:00Z",
            " 2020-01-06",
            "2020-01-06 ",
            "2020-0a-06",
            "２020-01-06",
            "-020-01-06",
            "2020--1-06",
        ];
        for text in cases {
            assert_eq!(Date::parse(text), None, "{text:?}");
            assert_eq!(text.parse::<Date>(), Err(ParseDateError), "{text:?}");
        }
    }

    #[test]
    fn from_ymd_checks_the_calendar() {
        let cases: &[((u16, u8, u8), bool)] = &[
            ((2000, 2, 29), true),
            ((1900, 2, 29), false),
            ((2004, 2, 29), true),
            ((2003, 2, 29), false),
            ((2400, 2, 29), true),
            ((0, 1, 1), false),
            ((10000, 1, 1), false),
            ((2020, 6, 31), false),
            ((2020, 12, 31), true),
        ];
        for &((y, m, d), ok) in cases {
            assert_eq!(Date::from_ymd(y, m, d).is_some(), ok, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn known_day_numbers() {
        let cases: &[(&str, i32)] = &[
            ("2000-01-01", 0),
            ("2000-01-02", 1),
            ("1999-12-31", -1),
            ("2020-01-06", 7310),
            ("2000-03-01", 60),
            ("1970-01-01", -10_957),
            ("0001-01-01", -730_119),
            ("9999-12-31", 2_921_939),
        ];
        for &(text, days) in cases {
            assert_eq!(date(text).to_pg_days(), days, "{text}");
            assert_eq!(Date::from_pg_days(days), Some(date(text)), "{days}");
        }
        assert_eq!(date("1970-01-01").to_unix_days(), 0);
    }

    #[test]
    fn every_day_1900_to_2100_round_trips() {
        let first = date("1900-01-01").to_pg_days();
        let last = date("2100-12-31").to_pg_days();
        let mut previous: Option<Date> = None;
        for days in first..=last {
            let day = Date::from_pg_days(days).expect("in range");
            assert_eq!(day.to_pg_days(), days);
            let text = day.to_string();
            assert_eq!(Date::parse(&text), Some(day), "{text}");
            if let Some(previous) = previous {
                assert!(previous < day, "{previous} < {day}");
            }
            previous = Some(day);
        }
        // 201 years, 49 of them leap (1900 and 2100 are not).
        assert_eq!(last - first + 1, 201 * 365 + 49);
    }

    /// Hinnant's `civil_from_days`, the textbook form, as the reference for the fast one.
    fn reference_civil_from_days(days: i64) -> (i64, i64, i64) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        };
        (year_of_era + era * 400 + i64::from(month <= 2), month, day)
    }

    #[test]
    fn every_day_of_years_1_to_9999_matches_the_reference() {
        let first = date("0001-01-01").to_unix_days();
        let last = date("9999-12-31").to_unix_days();
        for days in first..=last {
            let (year, month, day) = date_from_days(days as i32);
            let expected = reference_civil_from_days(days);
            assert_eq!(
                (i64::from(year), i64::from(month), i64::from(day)),
                expected,
                "{days}"
            );
            assert_eq!(
                days_from_civil(year.into(), month.into(), day.into()),
                days,
                "{year}-{month}-{day}"
            );
        }
    }

    #[test]
    fn out_of_range_day_numbers_are_none() {
        let cases = [
            i32::MAX,
            i32::MIN,
            -730_120,  // 0000-12-31
            2_921_940, // 10000-01-01
            i32::MAX - 1,
            i32::MIN + 1,
        ];
        for days in cases {
            assert_eq!(Date::from_pg_days(days), None, "{days}");
        }
        assert_eq!(Date::from_unix_days(i64::MAX), None);
        assert_eq!(Date::from_unix_days(i64::MIN), None);
    }

    #[test]
    fn to_bytes_is_the_wire_form() {
        assert_eq!(&date("0042-03-09").to_bytes(), b"0042-03-09");
        assert_eq!(format!("{:>12}", date("2020-01-06")), "  2020-01-06");
    }

    #[test]
    fn serde_uses_the_string_form() {
        assert_eq!(
            serde_json::to_string(&date("2020-11-16")).unwrap(),
            "\"2020-11-16\""
        );
        let parsed: Date = serde_json::from_str("\"2020-11-16\"").unwrap();
        assert_eq!(parsed, date("2020-11-16"));

        for bad in [
            "\"2020-02-30\"",
            "\"secret-input\"",
            "20201116",
            "null",
            "[]",
        ] {
            let err = serde_json::from_str::<Date>(bad).unwrap_err().to_string();
            assert!(err.contains("YYYY-MM-DD"), "{bad}: {err}");
            assert!(!err.contains("secret"), "{bad}: {err}");
        }
    }

    #[test]
    fn postgres_binary_form() {
        let day = date("2020-01-06");
        let mut out = BytesMut::new();
        assert!(matches!(day.to_sql(&Type::DATE, &mut out), Ok(IsNull::No)));
        assert_eq!(&out[..], &7310i32.to_be_bytes());
        assert_eq!(Date::from_sql(&Type::DATE, &out).unwrap(), day);

        assert!(<Date as ToSql>::accepts(&Type::DATE));
        assert!(!<Date as ToSql>::accepts(&Type::TIMESTAMP));
        assert!(<Date as FromSql>::accepts(&Type::DATE));
        assert!(!<Date as FromSql>::accepts(&Type::TEXT));

        let errors: &[(&[u8], &str)] = &[
            (&i32::MAX.to_be_bytes(), "infinite"),
            (&i32::MIN.to_be_bytes(), "infinite"),
            (&3_000_000i32.to_be_bytes(), "outside"),
            (&(-800_000i32).to_be_bytes(), "outside"),
            (&[0, 0, 0], "expected 4"),
            (&[0, 0, 0, 0, 0], "expected 4"),
        ];
        for &(raw, expected) in errors {
            let err = Date::from_sql(&Type::DATE, raw).unwrap_err().to_string();
            assert!(err.contains(expected), "{raw:?}: {err}");
        }
    }
}

#[cfg(test)]
mod proptests;
