//! Property tests of [`Date`]: the wire form round-trips, ordering is chronological, and
//! the day arithmetic agrees with a reference written without Hinnant's or Neri and
//! Schneider's tricks.

use proptest::prelude::*;

use super::*;

fn valid_date() -> impl Strategy<Value = Date> {
    (1u16..=9999, 1u8..=12, 1u8..=31)
        .prop_filter_map("not a calendar date", |(y, m, d)| Date::from_ymd(y, m, d))
}

/// Days since 1970-01-01 by counting: whole years from 0001 (leap days by the Gregorian
/// rule), whole months of the year, then the day.
fn reference_unix_days(date: Date) -> i64 {
    let (year, month, day) = (i64::from(date.year()), date.month(), i64::from(date.day()));
    let before = year - 1;
    let mut days = 365 * before + before / 4 - before / 100 + before / 400;
    for earlier in 1..month {
        days += i64::from(days_in_month(date.year(), earlier));
    }
    days += day - 1;
    // 0001-01-01 is 719,162 days before 1970-01-01.
    days - 719_162
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn format_then_parse_is_the_same_date(date in valid_date()) {
        let text = date.to_string();
        prop_assert_eq!(text.len(), DATE_LEN);
        prop_assert_eq!(Date::parse(&text), Some(date));
        prop_assert_eq!(serde_json::from_str::<Date>(&serde_json::to_string(&date).unwrap()).unwrap(), date);
    }

    /// Whatever parses formats back to the same text: there is one wire form.
    #[test]
    fn parse_then_format_is_the_same_text(text in "[0-9]{4}-[0-9]{2}-[0-9]{2}|\\PC{0,12}") {
        if let Some(date) = Date::parse(&text) {
            prop_assert_eq!(date.to_string(), text);
        }
    }

    /// Any text at all: a date or none, never a panic.
    #[test]
    fn any_text_parses_or_is_refused(text in any::<String>()) {
        let _ = Date::parse(&text);
    }

    /// Ordering of dates, of their day numbers and of their wire forms agree.
    #[test]
    fn ordering_is_chronological(a in valid_date(), b in valid_date()) {
        prop_assert_eq!(a.cmp(&b), a.to_unix_days().cmp(&b.to_unix_days()));
        prop_assert_eq!(a.cmp(&b), a.to_string().cmp(&b.to_string()));
        prop_assert_eq!(a.cmp(&b), a.to_pg_days().cmp(&b.to_pg_days()));
    }

    #[test]
    fn days_from_civil_matches_the_reference(date in valid_date()) {
        prop_assert_eq!(date.to_unix_days(), reference_unix_days(date));
        prop_assert_eq!(Date::from_unix_days(date.to_unix_days()), Some(date));
        prop_assert_eq!(Date::from_pg_days(date.to_pg_days()), Some(date));
    }

    /// Any day number: a date in range, `None` outside it, never a panic; a PostgreSQL
    /// day number of any i32 likewise.
    #[test]
    fn any_day_number_is_a_date_or_none(days in any::<i64>(), pg in any::<i32>()) {
        const MIN: i64 = -719_162;
        const MAX: i64 = 2_932_896;
        for days in [days, days % 4_000_000] {
            let date = Date::from_unix_days(days);
            prop_assert_eq!(date.is_some(), (MIN..=MAX).contains(&days));
            if let Some(date) = date {
                prop_assert_eq!(date.to_unix_days(), days);
            }
        }
        if let Some(date) = Date::from_pg_days(pg) {
            prop_assert_eq!(date.to_pg_days(), pg);
        }
    }
}
