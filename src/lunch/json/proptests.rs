//! Property tests of the hand-written bodies: byte-identical to serde_json for any
//! menu text (control characters, quotes, non-BMP characters) and any weeks and days.

use proptest::prelude::*;

use super::*;
use crate::domain::date::Date;

/// Text weighted toward what JSON must escape or encode: C0 controls, DEL, quote and
/// backslash, the JavaScript line separators, surrogate-pair (non-BMP) characters.
fn menu_text() -> impl Strategy<Value = String> {
    let character = prop_oneof![
        prop::char::range('\u{0}', '\u{1f}'),
        prop::sample::select(vec![
            '"', '\\', '/', '\u{7f}', '\u{2028}', '\u{2029}', '\u{feff}'
        ]),
        prop::char::range('\u{10000}', '\u{10ffff}'),
        any::<char>(),
        prop::char::range('a', 'z'),
    ];
    prop::collection::vec(character, 0..48).prop_map(|chars| chars.into_iter().collect())
}

fn date() -> impl Strategy<Value = Date> {
    (1u16..=9999, 1u8..=12, 1u8..=31)
        .prop_filter_map("not a calendar date", |(y, m, d)| Date::from_ymd(y, m, d))
}

fn week() -> impl Strategy<Value = Week> {
    (any::<i32>(), date(), any::<bool>()).prop_map(|(lunch_week_id, week_of, is_published)| Week {
        lunch_week_id,
        week_of,
        is_published,
    })
}

fn day() -> impl Strategy<Value = Day> {
    (
        any::<i32>(),
        any::<i32>(),
        date(),
        prop::option::of(menu_text()),
    )
        .prop_map(|(lunch_day_id, lunch_week_id, day, menu_details)| Day {
            lunch_day_id,
            lunch_week_id,
            day,
            menu_details,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_day_is_serde_jsons_bytes(day in day()) {
        prop_assert_eq!(day.to_json(), serde_json::to_vec(&day).unwrap());
    }

    #[test]
    fn weeks_are_serde_jsons_bytes(weeks in prop::collection::vec(week(), 0..8)) {
        prop_assert_eq!(weeks.to_json(), serde_json::to_vec(&weeks).unwrap());
    }

    #[test]
    fn a_week_with_days_is_serde_jsons_bytes(week in week(), days in prop::collection::vec(day(), 0..6)) {
        let body = WeekWithDays { week, lunch_days: days };
        let json = body.to_json();
        prop_assert_eq!(&json, &serde_json::to_vec(&body).unwrap());
        // The body reads back as what was written.
        let read: serde_json::Value = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(read, serde_json::to_value(&body).unwrap());
    }
}
