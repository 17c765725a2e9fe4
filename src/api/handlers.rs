//! The school-lunch endpoints: one function per route, each running its prepared
//! statements on the caller's own school connection and returning the JSON body.
//!
//! A handler only ever sees one school's connection, handed to it by the server after
//! the tenant was resolved; there is no other way to reach a database from here, which
//! is what keeps one school's rows out of another school's responses.

use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use crate::api::date::Date;
use crate::api::json::WriteJson;
use crate::api::model::{Day, DayInput, NewDayId, NewWeekId, Week, WeekInput, WeekWithDays};
use crate::http::error::ApiError;
use crate::pools::TenantConnection;

/// A handler's successful result.
pub enum Reply {
    /// 200 with a JSON body.
    Json(Vec<u8>),
    /// 200 with an empty body (PUT and DELETE, as the original answered).
    Empty,
}

fn json<T: serde::Serialize>(value: &T) -> Reply {
    // Serializing these plain structs cannot fail.
    Reply::Json(serde_json::to_vec(value).unwrap_or_default())
}

/// The week and day bodies, written by hand (json.rs): the hot responses.
fn written<T: WriteJson + ?Sized>(value: &T) -> Reply {
    Reply::Json(value.to_json())
}

/// Wraps a driver error, retiring the connection when it can no longer be trusted.
fn db_error(conn: &TenantConnection, err: tokio_postgres::Error) -> ApiError {
    // 0A000: a migration changed a table under a prepared plan; a fresh connection
    // prepares again.
    if err.is_closed() || err.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) {
        conn.mark_broken();
    }
    ApiError::Database(err)
}

fn week_from(row: &Row) -> Week {
    Week {
        lunch_week_id: row.get(0),
        week_of: row.get(1),
        is_published: row.get(2),
    }
}

fn day_from(row: &Row) -> Day {
    Day {
        lunch_day_id: row.get(0),
        lunch_week_id: row.get(1),
        day: row.get(2),
        menu_details: row.get(3),
    }
}

/// Folds the rows of the week-with-days join (one row per day, or one row of nulls for a
/// week without days) into the nested form.
fn week_with_days(rows: &[Row]) -> Option<WeekWithDays> {
    let first = rows.first()?;
    let week = week_from(first);
    let lunch_days = rows
        .iter()
        .filter_map(|row| {
            let lunch_day_id: Option<i32> = row.get(3);
            Some(Day {
                lunch_day_id: lunch_day_id?,
                lunch_week_id: week.lunch_week_id,
                day: row.get(4),
                menu_details: row.get(5),
            })
        })
        .collect();
    Some(WeekWithDays { week, lunch_days })
}

pub async fn list_weeks(conn: &TenantConnection) -> Result<Reply, ApiError> {
    let rows = conn
        .client
        .query(&conn.statements.list_weeks, &[])
        .await
        .map_err(|e| db_error(conn, e))?;
    let weeks: Vec<Week> = rows.iter().map(week_from).collect();
    Ok(written(&weeks))
}

pub async fn get_week(conn: &TenantConnection, id: i32) -> Result<Reply, ApiError> {
    let rows = conn
        .client
        .query(&conn.statements.get_week, &[&id])
        .await
        .map_err(|e| db_error(conn, e))?;
    let week = week_with_days(&rows).ok_or(ApiError::WeekNotFound(id))?;
    Ok(written(&week))
}

pub async fn public_week(conn: &TenantConnection, week_of: Date) -> Result<Reply, ApiError> {
    let rows = conn
        .client
        .query(&conn.statements.public_week, &[&week_of])
        .await
        .map_err(|e| db_error(conn, e))?;
    let week = week_with_days(&rows).ok_or(ApiError::NoPublishedWeek(week_of))?;
    Ok(written(&week))
}

pub async fn create_week(conn: &TenantConnection, input: WeekInput) -> Result<Reply, ApiError> {
    let row = conn
        .client
        .query_one(
            &conn.statements.insert_week,
            &[&input.week_of, &input.is_published],
        )
        .await
        .map_err(|e| db_error(conn, e))?;
    Ok(json(&NewWeekId {
        lunch_week_id: row.get(0),
    }))
}

pub async fn update_week(
    conn: &TenantConnection,
    id: i32,
    input: WeekInput,
) -> Result<Reply, ApiError> {
    conn.client
        .execute(
            &conn.statements.update_week,
            &[&id, &input.week_of, &input.is_published],
        )
        .await
        .map_err(|e| db_error(conn, e))?;
    Ok(Reply::Empty)
}

pub async fn delete_week(conn: &TenantConnection, id: i32) -> Result<Reply, ApiError> {
    conn.client
        .execute(&conn.statements.delete_week, &[&id])
        .await
        .map_err(|e| db_error(conn, e))?;
    Ok(Reply::Empty)
}

pub async fn list_days(conn: &TenantConnection, week_id: i32) -> Result<Reply, ApiError> {
    let rows = conn
        .client
        .query(&conn.statements.list_days, &[&week_id])
        .await
        .map_err(|e| db_error(conn, e))?;
    let days: Vec<Day> = rows.iter().map(day_from).collect();
    Ok(written(&days))
}

pub async fn create_day(
    conn: &TenantConnection,
    week_id: i32,
    input: DayInput,
) -> Result<Reply, ApiError> {
    let result = conn
        .client
        .query_one(
            &conn.statements.insert_day,
            &[&week_id, &input.day, &input.menu_details],
        )
        .await;
    match result {
        Ok(row) => Ok(json(&NewDayId {
            lunch_day_id: row.get(0),
        })),
        // The week does not exist: the client's mistake, not a server error.
        Err(err) if err.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
            Err(ApiError::WeekNotFound(week_id))
        }
        Err(err) => Err(db_error(conn, err)),
    }
}

pub async fn update_day(
    conn: &TenantConnection,
    week_id: i32,
    day_id: i32,
    input: DayInput,
) -> Result<Reply, ApiError> {
    conn.client
        .execute(
            &conn.statements.update_day,
            &[&week_id, &day_id, &input.day, &input.menu_details],
        )
        .await
        .map_err(|e| db_error(conn, e))?;
    Ok(Reply::Empty)
}

pub async fn delete_day(
    conn: &TenantConnection,
    week_id: i32,
    day_id: i32,
) -> Result<Reply, ApiError> {
    conn.client
        .execute(&conn.statements.delete_day, &[&week_id, &day_id])
        .await
        .map_err(|e| db_error(conn, e))?;
    Ok(Reply::Empty)
}
