//! The JSON wire types of API.md: the responses (weeks, days, new ids) and the validated
//! request bodies ([`WeekInput`], [`DayInput`]).
//!
//! This module owns the rules a body must meet before any of it reaches SQL: which fields
//! are required, their types, the `menuDetails` length, and that ids in a body agree with
//! the path (a client never chooses an id). It must not do I/O, choose HTTP statuses, or
//! put serde_json's error text (which can echo input) into a [`BodyError`].

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::date::Date;

/// `lunch_day.menu_details` is `varchar(1000)`: PostgreSQL counts characters, not bytes.
pub const MAX_MENU_DETAILS_CHARS: usize = 1000;

/// A lunch week: `{"lunchWeekId":7,"weekOf":"2020-11-16","isPublished":false}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Week {
    pub lunch_week_id: i32,
    pub week_of: Date,
    pub is_published: bool,
}

/// A lunch day:
/// `{"lunchDayId":31,"lunchWeekId":7,"day":"2020-11-16","menuDetails":"Pizza"}`.
/// `menuDetails` is written as `null` when absent, never left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Day {
    pub lunch_day_id: i32,
    pub lunch_week_id: i32,
    pub day: Date,
    pub menu_details: Option<String>,
}

/// A week with its days nested as `lunchDays`, the week's fields first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WeekWithDays {
    #[serde(flatten)]
    pub week: Week,
    pub lunch_days: Vec<Day>,
}

/// The answer to `POST /api/lunch-week`: `{"lunchWeekId":7}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewWeekId {
    pub lunch_week_id: i32,
}

/// The answer to `POST /api/lunch-week/:id/lunch-day`: `{"lunchDayId":31}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewDayId {
    pub lunch_day_id: i32,
}

/// The writable fields of a week, validated. The id comes from the path or the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekInput {
    pub week_of: Date,
    pub is_published: bool,
}

/// The writable fields of a day, validated. Both ids come from the path or the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayInput {
    pub day: Date,
    pub menu_details: Option<String>,
}

/// Why a request body was refused. Every variant is the client's fault (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("malformed json body")]
    MalformedJson,
    #[error("request body is not a json object")]
    NotAnObject,
    #[error("missing field {field}")]
    MissingField { field: &'static str },
    #[error("field {field} has the wrong type or format")]
    InvalidField {
        field: &'static str,
        expected: Expected,
    },
    #[error("field {field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("body id does not match the path")]
    IdsDoNotMatch,
}

/// What an invalid field should have been, for the client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Date,
    Boolean,
    /// A whole number that fits a 32-bit signed integer.
    Integer,
    /// A string or `null`, without NUL characters (PostgreSQL text cannot hold them).
    TextOrNull,
}

impl BodyError {
    /// The stable machine-readable code, for the `code` field of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::MalformedJson => "malformed_json",
            BodyError::NotAnObject => "body_not_object",
            BodyError::MissingField { .. } => "missing_field",
            BodyError::InvalidField { .. } => "invalid_field",
            BodyError::TooLong { .. } => "field_too_long",
            BodyError::IdsDoNotMatch => "ids_do_not_match",
        }
    }

    /// The text safe to show a client, for the `message` field of the error body.
    /// It names fields but never repeats their values.
    pub fn client_message(&self) -> String {
        match self {
            BodyError::MalformedJson => "Malformed JSON body".into(),
            BodyError::NotAnObject => "Request body must be a JSON object".into(),
            BodyError::MissingField { field } => format!("Missing field {field}"),
            BodyError::InvalidField { field, expected } => {
                let what = match expected {
                    Expected::Date => "a date (YYYY-MM-DD)",
                    Expected::Boolean => "a boolean",
                    Expected::Integer => "an integer",
                    Expected::TextOrNull => "a string or null",
                };
                format!("Field {field} must be {what}")
            }
            BodyError::TooLong { field, max } => {
                format!("Field {field} must be at most {max} characters")
            }
            BodyError::IdsDoNotMatch => "Bad request, IDs do not match".into(),
        }
    }
}

/// The fields this API reads from any body; everything else (e.g. `lunchDays`) is
/// skipped by serde without being kept.
///
/// Each is `None` when absent and `Some(Value::Null)` when sent as `null`, so the two can
/// be told apart.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBody {
    #[serde(default, deserialize_with = "present")]
    lunch_week_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    lunch_day_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    week_of: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    is_published: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    day: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    menu_details: Option<Value>,
}

/// A present field, even a `null` one (plain `Option<Value>` would read `null` as absent).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Decodes the body as a JSON object, mapping every failure to a message of our own.
fn decode(body: &[u8]) -> Result<RawBody, BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // A derived struct would also accept a JSON array positionally; refuse anything
        // that is not an object, telling valid JSON of another kind from garbage.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => BodyError::NotAnObject,
                Err(_) => BodyError::MalformedJson,
            },
        );
    }
    // Syntax errors, trailing data and duplicate keys all land here; serde_json's text
    // is dropped because it can quote the input.
    serde_json::from_slice(body).map_err(|_| BodyError::MalformedJson)
}

fn require<'v>(value: &'v Option<Value>, field: &'static str) -> Result<&'v Value, BodyError> {
    value.as_ref().ok_or(BodyError::MissingField { field })
}

fn date_field(value: &Option<Value>, field: &'static str) -> Result<Date, BodyError> {
    require(value, field)?
        .as_str()
        .and_then(Date::parse)
        .ok_or(BodyError::InvalidField {
            field,
            expected: Expected::Date,
        })
}

fn bool_field(value: &Option<Value>, field: &'static str) -> Result<bool, BodyError> {
    require(value, field)?
        .as_bool()
        .ok_or(BodyError::InvalidField {
            field,
            expected: Expected::Boolean,
        })
}

/// A body id that must agree with the path.
///
/// `required`: the original compared `body.id != path.id`, so an absent (or `null`) id
/// did not match. When not required, an absent or `null` id makes no claim. A present id
/// must be a JSON integer fitting i32 (a string `"7"`, `7.5` or `1e10` is a wrong type).
fn check_id(
    value: &Option<Value>,
    field: &'static str,
    path_id: i32,
    required: bool,
) -> Result<(), BodyError> {
    let value = match value {
        None | Some(Value::Null) if required => return Err(BodyError::IdsDoNotMatch),
        None | Some(Value::Null) => return Ok(()),
        Some(value) => value,
    };
    let id =
        value
            .as_i64()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or(BodyError::InvalidField {
                field,
                expected: Expected::Integer,
            })?;
    if id == path_id {
        Ok(())
    } else {
        Err(BodyError::IdsDoNotMatch)
    }
}

fn menu_details_field(value: &Option<Value>) -> Result<Option<String>, BodyError> {
    const FIELD: &str = "menuDetails";
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if !text.contains('\0') => text,
        Some(_) => {
            return Err(BodyError::InvalidField {
                field: FIELD,
                expected: Expected::TextOrNull,
            })
        }
    };
    // Bytes bound characters from above, so most texts skip the count.
    if text.len() > MAX_MENU_DETAILS_CHARS && text.chars().count() > MAX_MENU_DETAILS_CHARS {
        return Err(BodyError::TooLong {
            field: FIELD,
            max: MAX_MENU_DETAILS_CHARS,
        });
    }
    Ok(Some(text.clone()))
}

/// `POST /api/lunch-week`: `weekOf` and `isPublished` are required. A `lunchWeekId` is
/// ignored whatever it holds: the database chooses the new id.
pub fn parse_new_week(body: &[u8]) -> Result<WeekInput, BodyError> {
    let raw = decode(body)?;
    Ok(WeekInput {
        week_of: date_field(&raw.week_of, "weekOf")?,
        is_published: bool_field(&raw.is_published, "isPublished")?,
    })
}

/// `PUT /api/lunch-week/:lunchWeekId`: the whole week, whose `lunchWeekId` must equal the
/// path's (absent counts as different), then `weekOf` and `isPublished`.
pub fn parse_week_update(path_id: i32, body: &[u8]) -> Result<WeekInput, BodyError> {
    let raw = decode(body)?;
    check_id(&raw.lunch_week_id, "lunchWeekId", path_id, true)?;
    Ok(WeekInput {
        week_of: date_field(&raw.week_of, "weekOf")?,
        is_published: bool_field(&raw.is_published, "isPublished")?,
    })
}

/// `POST /api/lunch-week/:lunchWeekId/lunch-day`: `day` is required, `menuDetails` is a
/// string, `null` or absent. A body `lunchWeekId`, if sent, must equal the path's; a
/// `lunchDayId` is ignored.
pub fn parse_new_day(week_id: i32, body: &[u8]) -> Result<DayInput, BodyError> {
    let raw = decode(body)?;
    check_id(&raw.lunch_week_id, "lunchWeekId", week_id, false)?;
    Ok(DayInput {
        day: date_field(&raw.day, "day")?,
        menu_details: menu_details_field(&raw.menu_details)?,
    })
}

/// `PUT /api/lunch-week/:lunchWeekId/lunch-day/:lunchDayId`: the body's `lunchDayId` must
/// equal the path's (absent counts as different); a body `lunchWeekId`, if sent, must
/// equal the path's; then `day` and `menuDetails` as for a new day.
pub fn parse_day_update(week_id: i32, day_id: i32, body: &[u8]) -> Result<DayInput, BodyError> {
    let raw = decode(body)?;
    check_id(&raw.lunch_day_id, "lunchDayId", day_id, true)?;
    check_id(&raw.lunch_week_id, "lunchWeekId", week_id, false)?;
    Ok(DayInput {
        day: date_field(&raw.day, "day")?,
        menu_details: menu_details_field(&raw.menu_details)?,
    })
}

#[cfg(test)]
mod tests {
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
                serde_json::to_string(&day(1, 1, "2020-01-06", Some("Taco \"Tuesday\" é")))
                    .unwrap(),
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
        // Invalid UTF-8 is malformed, not a panic.
        assert_eq!(
            parse_new_week(b"{\"weekOf\":\"\xff\"}"),
            Err(BodyError::MalformedJson)
        );
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
                Err(invalid("menuDetails", Expected::TextOrNull)),
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
}
