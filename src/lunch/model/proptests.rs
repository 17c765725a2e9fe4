//! Property tests of body validation: any bytes give a value or a [`BodyError`], never a
//! panic, and what is accepted keeps the rules a body must meet before it reaches SQL.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;

/// Every parser with the ids a path could give it.
fn parse_all(body: &[u8], week: i32, day: i32) -> Vec<Result<Option<DayInput>, BodyError>> {
    vec![
        parse_new_week(body).map(|_| None),
        parse_week_update(week, body).map(|_| None),
        parse_new_day(week, body).map(Some),
        parse_day_update(week, day, body).map(Some),
    ]
}

/// A JSON value of any type, nested a little.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (1i64..4).prop_map(Value::from),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}".prop_map(Value::String),
        // Real dates, so bodies get past the date checks to the menu's.
        (1u16..=9999, 1u8..=12, 1u8..=28)
            .prop_map(|(y, m, d)| { Value::String(Date::from_ymd(y, m, d).unwrap().to_string()) }),
        any::<String>().prop_map(Value::String),
        // Past the menu's limit, in characters of several byte lengths.
        (995usize..1005, prop::sample::select(vec!['a', 'é', '🍕']))
            .prop_map(|(n, c)| { Value::String(std::iter::repeat_n(c, n).collect()) }),
        Just(Value::String("a\0b".into())),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with some of the fields the API reads (and other keys), each of any type.
fn body_object() -> impl Strategy<Value = Value> {
    let field = prop::sample::select(vec![
        "lunchWeekId",
        "lunchDayId",
        "weekOf",
        "isPublished",
        "day",
        "menuDetails",
        "lunchDays",
        "other",
    ]);
    prop::collection::vec((field, value()), 0..7).prop_map(|fields| {
        let mut object = Map::new();
        for (name, value) in fields {
            object.insert(name.to_string(), value);
        }
        Value::Object(object)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes (invalid UTF-8, NUL, truncated JSON): Ok or a BodyError.
    #[test]
    fn any_bytes_are_parsed_or_refused(body in prop::collection::vec(any::<u8>(), 0..256),
                                       week in any::<i32>(), day in any::<i32>()) {
        let _ = parse_all(&body, week, day);
    }

    /// Bytes that start like an object reach the field checks: still Ok or a BodyError.
    #[test]
    fn object_like_bytes_are_parsed_or_refused(rest in prop::collection::vec(any::<u8>(), 0..128)) {
        let mut body = b"{\"weekOf\":\"2020-11-16\",".to_vec();
        body.extend_from_slice(&rest);
        let _ = parse_all(&body, 1, 1);
    }

    /// Objects with the API's fields of any type: what is accepted has a menu that
    /// PostgreSQL can store and ids that agree with the path; what is refused has a
    /// client message that repeats none of the values.
    #[test]
    fn accepted_bodies_meet_the_rules(object in body_object(), week in 1..4i32, day in 1..4i32) {
        let body = serde_json::to_vec(&object).unwrap();
        for result in parse_all(&body, week, day) {
            match result {
                Ok(Some(input)) => {
                    if let Some(menu) = &input.menu_details {
                        prop_assert!(!menu.contains('\0'));
                        prop_assert!(menu.chars().count() <= MAX_MENU_DETAILS_CHARS);
                    }
                    if let Some(id) = object.get("lunchWeekId").and_then(Value::as_i64) {
                        prop_assert_eq!(id, i64::from(week));
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    let message = error.client_message();
                    prop_assert!(message.len() < 80, "{message}");
                    prop_assert!(!error.code().is_empty());
                }
            }
        }
    }

    /// The menu's limit is in characters, whatever their byte length, at the boundary.
    #[test]
    fn the_menu_limit_counts_characters(
        length in 990usize..1010,
        character in prop::sample::select(vec!['a', 'é', '€', '🍕']),
    ) {
        let menu: String = std::iter::repeat_n(character, length).collect();
        let body = serde_json::to_vec(&json!({"day": "2020-11-16", "menuDetails": menu})).unwrap();
        let result = parse_new_day(1, &body);
        if length <= MAX_MENU_DETAILS_CHARS {
            prop_assert_eq!(result.map(|d| d.menu_details), Ok(Some(menu)));
        } else {
            prop_assert_eq!(result, Err(BodyError::TooLong { field: "menuDetails", max: MAX_MENU_DETAILS_CHARS }));
        }
    }

    /// A well-formed day round-trips through validation unchanged.
    #[test]
    fn a_valid_day_is_accepted_as_sent(
        (y, m, d) in (1u16..=9999, 1u8..=12, 1u8..=28),
        menu in prop::option::of("[^\u{0}]{0,40}"),
        week in 1..=i32::MAX, day in 1..=i32::MAX,
    ) {
        let date = Date::from_ymd(y, m, d).unwrap();
        let body = json!({"lunchDayId": day, "lunchWeekId": week, "day": date, "menuDetails": menu});
        let body = serde_json::to_vec(&body).unwrap();
        let expected = DayInput { day: date, menu_details: menu };
        prop_assert_eq!(parse_day_update(week, day, &body), Ok(expected.clone()));
        prop_assert_eq!(parse_new_day(week, &body), Ok(expected));
    }
}
