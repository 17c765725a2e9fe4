//! Table-driven tests of the `model` module: they own its contract's examples and must not
//! do I/O or depend on anything outside the module and its pure dependencies.

use super::*;

fn date(text: &str) -> Date {
    Date::parse(text).unwrap()
}

fn week(id: i32, week_of: &str, is_published: bool) -> Week {
    Week {
        lunch_week_id: id,
        week_of: date(week_of),
        is_published,
    }
}

fn day(id: i32, week_id: i32, on: &str, menu: Option<&str>) -> Day {
    Day {
        lunch_day_id: id,
        lunch_week_id: week_id,
        day: date(on),
        menu_details: menu.map(str::to_owned),
    }
}

fn invalid(field: &'static str, expected: Expected) -> BodyError {
    BodyError::InvalidField { field, expected }
}

fn missing(field: &'static str) -> BodyError {
    BodyError::MissingField { field }
}

#[test]
fn responses_serialize_exactly_as_api_md() {
    let cases: Vec<(String, &str)> = vec![
        (
            serde_json::to_string(&week(7, "2020-11-16", false)).unwrap(),
            r#"{"lunchWeekId":7,"weekOf":"2020-11-16","isPublished":false}"#,
        ),
        (
            serde_json::to_string(&day(31, 7, "2020-11-16", Some("Pizza"))).unwrap(),
            r#"{"lunchDayId":31,"lunchWeekId":7,"day":"2020-11-16","menuDetails":"Pizza"}"#,
        ),
        (
            serde_json::to_string(&day(32, 7, "2020-11-17", None)).unwrap(),
            r#"{"lunchDayId":32,"lunchWeekId":7,"day":"2020-11-17","menuDetails":null}"#,
        ),
        (
            serde_json::to_string(&WeekWithDays {
                week: week(7, "2020-11-16", false),
                lunch_days: vec![
                    day(31, 7, "2020-11-16", Some("Pizza")),
                    day(32, 7, "2020-11-17", None),
                ],
            })
            .unwrap(),
            concat!(
                r#"{"lunchWeekId":7,"weekOf":"2020-11-16","isPublished":false,"lunchDays":["#,
                r#"{"lunchDayId":31,"lunchWeekId":7,"day":"2020-11-16","menuDetails":"Pizza"},"#,
                r#"{"lunchDayId":32,"lunchWeekId":7,"day":"2020-11-17","menuDetails":null}]}"#
            ),
        ),
        (
            serde_json::to_string(&WeekWithDays {
                week: week(8, "2020-11-23", true),
                lunch_days: vec![],
            })
            .unwrap(),
            r#"{"lunchWeekId":8,"weekOf":"2020-11-23","isPublished":true,"lunchDays":[]}"#,
        ),
        (
            serde_json::to_string(&vec![
                week(1, "2020-11-09", true),
                week(2, "2020-11-16", false),
            ])
            .unwrap(),
            r#"[{"lunchWeekId":1,"weekOf":"2020-11-09","isPublished":true},{"lunchWeekId":2,"weekOf":"2020-11-16","isPublished":false}]"#,
        ),
        (
            serde_json::to_string(&NewWeekId { lunch_week_id: 7 }).unwrap(),
            r#"{"lunchWeekId":7}"#,
        ),
        (
            serde_json::to_string(&NewDayId { lunch_day_id: 31 }).unwrap(),
            r#"{"lunchDayId":31}"#,
        ),
        (
            serde_json::to_string(&day(1, 1, "2020-01-06", Some("Taco \"Tuesday\" é"))).unwrap(),
            r#"{"lunchDayId":1,"lunchWeekId":1,"day":"2020-01-06","menuDetails":"Taco \"Tuesday\" é"}"#,
        ),
    ];
    for (actual, expected) in cases {
        assert_eq!(actual, expected);
    }
}

#[test]
fn error_messages_and_codes() {
    let cases: &[(BodyError, &str, &str)] = &[
        (
            BodyError::MalformedJson,
            "Malformed JSON body",
            "malformed_json",
        ),
        (
            BodyError::NotUtf8,
            "Request body must be UTF-8 encoded JSON",
            "body_not_utf8",
        ),
        (
            BodyError::NotAnObject,
            "Request body must be a JSON object",
            "body_not_object",
        ),
        (missing("weekOf"), "Missing field weekOf", "missing_field"),
        (
            invalid("isPublished", Expected::Boolean),
            "Field isPublished must be a boolean",
            "invalid_field",
        ),
        (
            invalid("weekOf", Expected::Date),
            "Field weekOf must be a date (YYYY-MM-DD)",
            "invalid_field",
        ),
        (
            invalid("lunchWeekId", Expected::Integer),
            "Field lunchWeekId must be an integer",
            "invalid_field",
        ),
        (
            invalid("menuDetails", Expected::TextOrNull),
            "Field menuDetails must be a string or null",
            "invalid_field",
        ),
        (
            invalid("menuDetails", Expected::NoNulCharacters),
            "Field menuDetails must be text without NUL characters",
            "invalid_field",
        ),
        (
            BodyError::TooLong {
                field: "menuDetails",
                max: 1000,
            },
            "Field menuDetails must be at most 1000 characters",
            "field_too_long",
        ),
        (
            BodyError::IdsDoNotMatch,
            "Bad request, IDs do not match",
            "ids_do_not_match",
        ),
    ];
    for (error, message, code) in cases {
        assert_eq!(error.client_message(), *message);
        assert_eq!(error.code(), *code);
    }
}

#[test]
fn malformed_and_non_object_bodies() {
    let cases: &[(&str, BodyError)] = &[
        ("", BodyError::MalformedJson),
        ("   ", BodyError::MalformedJson),
        ("{", BodyError::MalformedJson),
        ("{\"weekOf\":", BodyError::MalformedJson),
        ("{'weekOf':'2020-11-16'}", BodyError::MalformedJson),
        ("{\"weekOf\":\"2020-11-16\",}", BodyError::MalformedJson),
        ("{} {}", BodyError::MalformedJson),
        ("{}x", BodyError::MalformedJson),
        ("weekOf=2020-11-16", BodyError::MalformedJson),
        (
            r#"{"weekOf":"2020-11-16","weekOf":"2020-11-23","isPublished":true}"#,
            BodyError::MalformedJson,
        ),
        ("[]", BodyError::NotAnObject),
        (r#"["2020-11-16",false]"#, BodyError::NotAnObject),
        ("null", BodyError::NotAnObject),
        ("7", BodyError::NotAnObject),
        ("\"{}\"", BodyError::NotAnObject),
        (" true ", BodyError::NotAnObject),
    ];
    for (body, expected) in cases {
        assert_eq!(
            parse_new_week(body.as_bytes()).as_ref(),
            Err(expected),
            "{body:?}"
        );
        assert_eq!(
            parse_new_day(7, body.as_bytes()).as_ref(),
            Err(expected),
            "{body:?}"
        );
    }
}

#[test]
fn bodies_that_are_not_utf8_are_refused_wherever_the_bytes_are() {
    let valid_week = br#"{"weekOf":"2020-11-16","isPublished":false"#;
    let valid_day = br#"{"day":"2020-11-16","menuDetails":"Pizza""#;
    // Each bad sequence inside a field the API ignores, a field it reads, a key, and
    // outside any string; then a lone continuation byte, an overlong encoding, a UTF-16
    // surrogate and a truncated sequence.
    for bad in [
        &b"\xff"[..],
        b"\x80",
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xe2\x82",
    ] {
        let mut ignored_field = valid_week.to_vec();
        ignored_field.extend_from_slice(b",\"note\":\"");
        ignored_field.extend_from_slice(bad);
        ignored_field.extend_from_slice(b"\"}");
        assert_eq!(
            parse_new_week(&ignored_field),
            Err(BodyError::NotUtf8),
            "{bad:?}"
        );
        let mut ignored_day = valid_day.to_vec();
        ignored_day.extend_from_slice(b",\"lunchDays\":[\"");
        ignored_day.extend_from_slice(bad);
        ignored_day.extend_from_slice(b"\"]}");
        assert_eq!(
            parse_new_day(7, &ignored_day),
            Err(BodyError::NotUtf8),
            "{bad:?}"
        );
        let mut read_field = br#"{"day":"2020-11-16","menuDetails":""#.to_vec();
        read_field.extend_from_slice(bad);
        read_field.extend_from_slice(b"\"}");
        assert_eq!(
            parse_new_day(7, &read_field),
            Err(BodyError::NotUtf8),
            "{bad:?}"
        );
        let mut key = b"{\"".to_vec();
        key.extend_from_slice(bad);
        key.extend_from_slice(b"\":1}");
        assert_eq!(parse_new_week(&key), Err(BodyError::NotUtf8), "{bad:?}");
        let mut outside = bad.to_vec();
        outside.extend_from_slice(b"{}");
        assert_eq!(parse_new_week(&outside), Err(BodyError::NotUtf8), "{bad:?}");
    }
    // The same bodies with valid text are accepted (the ignored field is skipped).
    let mut good = valid_week.to_vec();
    good.extend_from_slice(",\"note\":\"caf\u{e9} \u{1f355}\"}".as_bytes());
    assert!(parse_new_week(&good).is_ok());
}

#[test]
fn new_week_rules() {
    let ok = |week_of: &str, is_published| {
        Ok(WeekInput {
            week_of: date(week_of),
            is_published,
        })
    };
    let cases: &[(&str, Result<WeekInput, BodyError>)] = &[
        (
            r#"{"weekOf":"2020-11-16","isPublished":false}"#,
            ok("2020-11-16", false),
        ),
        (
            r#" {"isPublished":true,"weekOf":"2020-11-16"} "#,
            ok("2020-11-16", true),
        ),
        // The client cannot choose the id, whatever it sends there.
        (
            r#"{"lunchWeekId":99,"weekOf":"2020-11-16","isPublished":false}"#,
            ok("2020-11-16", false),
        ),
        (
            r#"{"lunchWeekId":"x","weekOf":"2020-11-16","isPublished":false}"#,
            ok("2020-11-16", false),
        ),
        // Unknown fields, including the front end's nested days, are ignored.
        (
            r#"{"weekOf":"2020-11-16","isPublished":true,"lunchDays":[{"lunchDayId":1}],"extra":{"a":[1,2]}}"#,
            ok("2020-11-16", true),
        ),
        (r#"{"isPublished":false}"#, Err(missing("weekOf"))),
        (r#"{}"#, Err(missing("weekOf"))),
        (r#"{"weekOf":"2020-11-16"}"#, Err(missing("isPublished"))),
        (
            r#"{"weekOf":null,"isPublished":false}"#,
            Err(invalid("weekOf", Expected::Date)),
        ),
        (
            r#"{"weekOf":"2020-02-30","isPublished":false}"#,
            Err(invalid("weekOf", Expected::Date)),
        ),
        (
            r#"{"weekOf":"2020-11-16T00:00:00.000Z","isPublished":false}"#,
            Err(invalid("weekOf", Expected::Date)),
        ),
        (
            r#"{"weekOf":20201116,"isPublished":false}"#,
            Err(invalid("weekOf", Expected::Date)),
        ),
        (
            r#"{"weekOf":"2020-11-16","isPublished":"false"}"#,
            Err(invalid("isPublished", Expected::Boolean)),
        ),
        (
            r#"{"weekOf":"2020-11-16","isPublished":0}"#,
            Err(invalid("isPublished", Expected::Boolean)),
        ),
        (
            r#"{"weekOf":"2020-11-16","isPublished":null}"#,
            Err(invalid("isPublished", Expected::Boolean)),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(&parse_new_week(body.as_bytes()), expected, "{body}");
    }
}

#[test]
fn week_update_rules() {
    let ok = Ok(WeekInput {
        week_of: date("2020-11-16"),
        is_published: true,
    });
    let ids = Err(BodyError::IdsDoNotMatch);
    let cases: &[(&str, Result<WeekInput, BodyError>)] = &[
        (
            r#"{"lunchWeekId":7,"weekOf":"2020-11-16","isPublished":true}"#,
            ok.clone(),
        ),
        (
            r#"{"lunchWeekId":7,"weekOf":"2020-11-16","isPublished":true,"lunchDays":[]}"#,
            ok.clone(),
        ),
        (
            r#"{"lunchWeekId":7.0,"weekOf":"2020-11-16","isPublished":true}"#,
            Err(invalid("lunchWeekId", Expected::Integer)),
        ),
        (
            r#"{"lunchWeekId":8,"weekOf":"2020-11-16","isPublished":true}"#,
            ids.clone(),
        ),
        (r#"{"weekOf":"2020-11-16","isPublished":true}"#, ids.clone()),
        (
            r#"{"lunchWeekId":null,"weekOf":"2020-11-16","isPublished":true}"#,
            ids.clone(),
        ),
        (
            r#"{"lunchWeekId":-7,"weekOf":"2020-11-16","isPublished":true}"#,
            ids.clone(),
        ),
        // The id is checked before the other fields, as the original did.
        (r#"{"lunchWeekId":8}"#, ids.clone()),
        (
            r#"{"lunchWeekId":"7","weekOf":"2020-11-16","isPublished":true}"#,
            Err(invalid("lunchWeekId", Expected::Integer)),
        ),
        (
            r#"{"lunchWeekId":7.5,"weekOf":"2020-11-16","isPublished":true}"#,
            Err(invalid("lunchWeekId", Expected::Integer)),
        ),
        (
            r#"{"lunchWeekId":4294967303,"weekOf":"2020-11-16","isPublished":true}"#,
            Err(invalid("lunchWeekId", Expected::Integer)),
        ),
        (
            r#"{"lunchWeekId":1e1,"weekOf":"2020-11-16","isPublished":true}"#,
            Err(invalid("lunchWeekId", Expected::Integer)),
        ),
        (
            r#"{"lunchWeekId":true,"weekOf":"2020-11-16","isPublished":true}"#,
            Err(invalid("lunchWeekId", Expected::Integer)),
        ),
        (
            r#"{"lunchWeekId":7,"isPublished":true}"#,
            Err(missing("weekOf")),
        ),
        (
            r#"{"lunchWeekId":7,"weekOf":"2020-11-16"}"#,
            Err(missing("isPublished")),
        ),
        (
            r#"{"lunchWeekId":7,"weekOf":"16/11/2020","isPublished":true}"#,
            Err(invalid("weekOf", Expected::Date)),
        ),
        ("[7]", Err(BodyError::NotAnObject)),
    ];
    for (body, expected) in cases {
        assert_eq!(&parse_week_update(7, body.as_bytes()), expected, "{body}");
    }
}

#[test]
fn new_day_rules() {
    let ok = |menu: Option<&str>| {
        Ok(DayInput {
            day: date("2020-11-16"),
            menu_details: menu.map(str::to_owned),
        })
    };
    let cases: &[(&str, Result<DayInput, BodyError>)] = &[
        (
            r#"{"lunchWeekId":7,"day":"2020-11-16","menuDetails":"Pizza"}"#,
            ok(Some("Pizza")),
        ),
        (
            r#"{"day":"2020-11-16","menuDetails":"Pizza"}"#,
            ok(Some("Pizza")),
        ),
        (r#"{"day":"2020-11-16","menuDetails":null}"#, ok(None)),
        (r#"{"day":"2020-11-16"}"#, ok(None)),
        (r#"{"day":"2020-11-16","menuDetails":""}"#, ok(Some(""))),
        (r#"{"lunchWeekId":null,"day":"2020-11-16"}"#, ok(None)),
        // The client cannot choose the new day's id.
        (r#"{"lunchDayId":99,"day":"2020-11-16"}"#, ok(None)),
        (
            r#"{"day":"2020-11-16","note":"x","lunchDays":[1]}"#,
            ok(None),
        ),
        (
            r#"{"lunchWeekId":8,"day":"2020-11-16","menuDetails":"Pizza"}"#,
            Err(BodyError::IdsDoNotMatch),
        ),
        (
            r#"{"lunchWeekId":"7","day":"2020-11-16"}"#,
            Err(invalid("lunchWeekId", Expected::Integer)),
        ),
        (r#"{"menuDetails":"Pizza"}"#, Err(missing("day"))),
        (r#"{"day":null}"#, Err(invalid("day", Expected::Date))),
        (
            r#"{"day":"2020-1-16"}"#,
            Err(invalid("day", Expected::Date)),
        ),
        (
            r#"{"day":"2020-11-16","menuDetails":5}"#,
            Err(invalid("menuDetails", Expected::TextOrNull)),
        ),
        (
            r#"{"day":"2020-11-16","menuDetails":["Pizza"]}"#,
            Err(invalid("menuDetails", Expected::TextOrNull)),
        ),
        (
            r#"{"day":"2020-11-16","menuDetails":"Piz\u0000za"}"#,
            Err(invalid("menuDetails", Expected::NoNulCharacters)),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(&parse_new_day(7, body.as_bytes()), expected, "{body}");
    }
}

#[test]
fn menu_details_length_counts_characters() {
    let too_long = Err(BodyError::TooLong {
        field: "menuDetails",
        max: 1000,
    });
    let cases: Vec<(String, bool)> = vec![
        ("a".repeat(1000), true),
        ("a".repeat(1001), false),
        // 1000 two-byte characters: 2000 bytes, still within the limit.
        ("é".repeat(1000), true),
        ("é".repeat(1001), false),
        ("🍕".repeat(1000), true),
        ("🍕".repeat(1001), false),
    ];
    for (text, fits) in cases {
        let body = serde_json::json!({"day": "2020-11-16", "menuDetails": text}).to_string();
        let parsed = parse_new_day(7, body.as_bytes());
        if fits {
            assert_eq!(parsed.unwrap().menu_details.as_deref(), Some(text.as_str()));
        } else {
            assert_eq!(parsed, too_long);
        }
    }
    // Escaped characters count once each.
    let body = format!(
        r#"{{"day":"2020-11-16","menuDetails":"{}"}}"#,
        "\\u00e9".repeat(1000)
    );
    assert_eq!(
        parse_new_day(7, body.as_bytes())
            .unwrap()
            .menu_details
            .unwrap()
            .chars()
            .count(),
        1000
    );
}

#[test]
fn day_update_rules() {
    let ok = |menu: Option<&str>| {
        Ok(DayInput {
            day: date("2020-11-16"),
            menu_details: menu.map(str::to_owned),
        })
    };
    let ids = Err(BodyError::IdsDoNotMatch);
    let cases: &[(&str, Result<DayInput, BodyError>)] = &[
        (
            r#"{"lunchDayId":31,"lunchWeekId":7,"day":"2020-11-16","menuDetails":"Pizza"}"#,
            ok(Some("Pizza")),
        ),
        (r#"{"lunchDayId":31,"day":"2020-11-16"}"#, ok(None)),
        (
            r#"{"lunchDayId":31,"lunchWeekId":null,"day":"2020-11-16","menuDetails":null}"#,
            ok(None),
        ),
        (
            r#"{"lunchDayId":32,"lunchWeekId":7,"day":"2020-11-16"}"#,
            ids.clone(),
        ),
        (
            r#"{"lunchDayId":31,"lunchWeekId":8,"day":"2020-11-16"}"#,
            ids.clone(),
        ),
        (r#"{"lunchWeekId":7,"day":"2020-11-16"}"#, ids.clone()),
        (r#"{"lunchDayId":null,"day":"2020-11-16"}"#, ids.clone()),
        (r#"{"lunchDayId":32}"#, ids.clone()),
        (
            r#"{"lunchDayId":"31","day":"2020-11-16"}"#,
            Err(invalid("lunchDayId", Expected::Integer)),
        ),
        (
            r#"{"lunchDayId":31.5,"day":"2020-11-16"}"#,
            Err(invalid("lunchDayId", Expected::Integer)),
        ),
        (
            r#"{"lunchDayId":31,"lunchWeekId":[7],"day":"2020-11-16"}"#,
            Err(invalid("lunchWeekId", Expected::Integer)),
        ),
        (r#"{"lunchDayId":31}"#, Err(missing("day"))),
        (
            r#"{"lunchDayId":31,"day":"2020-11-31"}"#,
            Err(invalid("day", Expected::Date)),
        ),
        (
            r#"{"lunchDayId":31,"day":"2020-11-16","menuDetails":false}"#,
            Err(invalid("menuDetails", Expected::TextOrNull)),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            &parse_day_update(7, 31, body.as_bytes()),
            expected,
            "{body}"
        );
    }
}

#[test]
fn messages_never_echo_the_input() {
    let bodies = [
        r#"{"weekOf":"<script>secret</script>","isPublished":false}"#,
        r#"{"weekOf":"2020-11-16","isPublished":"secret"}"#,
        r#"{"secret":"#,
        r#"secret"#,
        r#"["secret"]"#,
    ];
    for body in bodies {
        let error = parse_new_week(body.as_bytes()).unwrap_err();
        assert!(!error.client_message().contains("secret"), "{body}");
        assert!(!error.to_string().contains("secret"), "{body}");
    }
}
