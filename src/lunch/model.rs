//! The JSON wire types of API.md: the responses (weeks, days, new ids) and the validated
//! request bodies ([`WeekInput`], [`DayInput`]).
//!
//! This module owns the rules a body must meet before any of it reaches SQL: which fields
//! are required, their types, the `menuDetails` length, and that ids in a body agree with
//! the path (a client never chooses an id). It must not do I/O, choose HTTP statuses, or
//! put serde_json's error text (which can echo input) into a [`BodyError`].

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::domain::date::Date;

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
    /// JSON text is UTF-8 (RFC 8259 8.1), even inside a field this API ignores.
    #[error("request body is not utf-8")]
    NotUtf8,
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
    /// A string or `null`.
    TextOrNull,
    /// Text without NUL characters: PostgreSQL text cannot hold them, and letting one
    /// through would turn a client mistake into a database error.
    NoNulCharacters,
}

impl BodyError {
    /// The stable machine-readable code, for the `code` field of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::MalformedJson => "malformed_json",
            BodyError::NotUtf8 => "body_not_utf8",
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
            BodyError::NotUtf8 => "Request body must be UTF-8 encoded JSON".into(),
            BodyError::NotAnObject => "Request body must be a JSON object".into(),
            BodyError::MissingField { field } => format!("Missing field {field}"),
            BodyError::InvalidField { field, expected } => {
                let what = match expected {
                    Expected::Date => "a date (YYYY-MM-DD)",
                    Expected::Boolean => "a boolean",
                    Expected::Integer => "an integer",
                    Expected::TextOrNull => "a string or null",
                    Expected::NoNulCharacters => "text without NUL characters",
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
    // serde_json checks UTF-8 only in the strings it keeps: a field it skips could carry
    // any bytes. One pass over the whole body refuses them all; parsing from `str` then
    // skips serde_json's own checks.
    let body = std::str::from_utf8(body).map_err(|_| BodyError::NotUtf8)?;
    let first = body.bytes().find(|b| !b.is_ascii_whitespace());
    if first != Some(b'{') {
        // A derived struct would also accept a JSON array positionally; refuse anything
        // that is not an object, telling valid JSON of another kind from garbage.
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(body) {
            Ok(_) => BodyError::NotAnObject,
            Err(_) => BodyError::MalformedJson,
        });
    }
    // Syntax errors, trailing data and duplicate keys all land here; serde_json's text
    // is dropped because it can quote the input.
    serde_json::from_str(body).map_err(|_| BodyError::MalformedJson)
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
        Some(Value::String(text)) if text.contains('\0') => {
            return Err(BodyError::InvalidField {
                field: FIELD,
                expected: Expected::NoNulCharacters,
            })
        }
        Some(Value::String(text)) => text,
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
mod tests;

#[cfg(test)]
mod proptests;
