//! The school-lunch endpoints: one function per route, each running its prepared
//! statements on the caller's own school connection and returning the JSON body.
//!
//! A handler only ever sees one school's connection, handed to it by the server after
//! the tenant was resolved; there is no other way to reach a database from here, which
//! is what keeps one school's rows out of another school's responses.

use futures_util::StreamExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::domain::date::Date;
use crate::lunch::json::WriteJson;
use crate::lunch::model::{Day, DayInput, NewDayId, NewWeekId, Week, WeekInput, WeekWithDays};
use crate::lunch::queries::Query;
use crate::pool::TenantConnection;

/// A handler's successful result.
pub enum Reply {
    /// 200 with a JSON body.
    Json(Vec<u8>),
    /// 200 with an empty body (PUT and DELETE, as the original answered).
    Empty,
}

/// Why a handler failed. The edge maps each to its status and client message.
#[derive(Debug, thiserror::Error)]
pub enum LunchError {
    #[error("lunch week {0} not found")]
    WeekNotFound(i32),
    #[error("no published week for {0}")]
    NoPublishedWeek(Date),
    #[error("school database query failed")]
    Database(#[source] tokio_postgres::Error),
    #[error("encoding the response body failed")]
    Encode(#[source] serde_json::Error),
}

/// True when `err` says the connection is gone (found closed, or the server ended the
/// session: terminated, crashed, idle too long) rather than that the query failed. A read
/// that fails this way gives the same answer on another connection.
pub fn connection_lost(err: &tokio_postgres::Error) -> bool {
    err.is_closed()
        || err.code().is_some_and(|code| {
            code == &SqlState::ADMIN_SHUTDOWN
                || code == &SqlState::CRASH_SHUTDOWN
                || code == &SqlState::IDLE_SESSION_TIMEOUT
        })
}

/// A body through serde_json. A failure is an error for this request (a 500), never an
/// empty 200.
fn json<T: serde::Serialize>(value: &T) -> Result<Reply, LunchError> {
    serde_json::to_vec(value)
        .map(Reply::Json)
        .map_err(LunchError::Encode)
}

/// The week and day bodies, written by hand (json.rs): the hot responses.
fn written<T: WriteJson + ?Sized>(value: &T) -> Reply {
    Reply::Json(value.to_json())
}

/// Wraps a driver error, retiring the connection when it can no longer be trusted.
fn db_error(conn: &TenantConnection, err: tokio_postgres::Error) -> LunchError {
    // 0A000: a migration changed a table under a prepared plan; a fresh connection
    // prepares again.
    if err.is_closed() || err.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) {
        conn.mark_broken();
    }
    LunchError::Database(err)
}

fn week_from(row: &Row) -> Result<Week, tokio_postgres::Error> {
    Ok(Week {
        lunch_week_id: row.try_get(0)?,
        week_of: row.try_get(1)?,
        is_published: row.try_get(2)?,
    })
}

fn day_from(row: &Row) -> Result<Day, tokio_postgres::Error> {
    Ok(Day {
        lunch_day_id: row.try_get(0)?,
        lunch_week_id: row.try_get(1)?,
        day: row.try_get(2)?,
        menu_details: row.try_get(3)?,
    })
}

/// Runs a prepared statement and hands each row to `each` as it arrives.
///
/// Why not `Client::query`: it collects every row into a growing `Vec<Row>` first, so all
/// 52 rows of the week list (each with its own heap block) are alive at once before any
/// is decoded. Decoding each row as it comes keeps one alive at a time, and the typed
/// values go straight into a vector sized for them. Columns are read with `try_get`: a
/// table changed behind our back is an error for this request, never a panic.
async fn for_each_row(
    conn: &TenantConnection,
    statement: &Statement,
    params: &[&(dyn ToSql + Sync)],
    mut each: impl FnMut(&Row) -> Result<(), tokio_postgres::Error>,
) -> Result<(), LunchError> {
    let rows = conn
        .client
        .query_raw(statement, params.iter().map(|p| *p as &dyn ToSql))
        .await
        .map_err(|e| db_error(conn, e))?;
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.next().await {
        let row = row.map_err(|e| db_error(conn, e))?;
        each(&row).map_err(|e| db_error(conn, e))?;
    }
    Ok(())
}

/// Folds the rows of the week-with-days join (one row per day, or one row of nulls for a
/// week without days) into the nested form; `None` when there is no row at all.
async fn week_with_days(
    conn: &TenantConnection,
    statement: &Statement,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<WeekWithDays>, LunchError> {
    let mut found: Option<WeekWithDays> = None;
    for_each_row(conn, statement, params, |row| {
        let nested = match &mut found {
            Some(nested) => nested,
            None => found.insert(WeekWithDays {
                week: week_from(row)?,
                lunch_days: Vec::with_capacity(DAYS_PER_WEEK),
            }),
        };
        let lunch_day_id: Option<i32> = row.try_get(3)?;
        if let Some(lunch_day_id) = lunch_day_id {
            nested.lunch_days.push(Day {
                lunch_day_id,
                lunch_week_id: nested.week.lunch_week_id,
                day: row.try_get(4)?,
                menu_details: row.try_get(5)?,
            });
        }
        Ok(())
    })
    .await?;
    Ok(found)
}

/// Room for a school year of weeks without growing (the seed data has 52).
const WEEKS_HINT: usize = 64;
/// A school week; more days only grow the vector.
const DAYS_PER_WEEK: usize = 5;

pub async fn list_weeks(conn: &TenantConnection) -> Result<Reply, LunchError> {
    let mut weeks: Vec<Week> = Vec::with_capacity(WEEKS_HINT);
    for_each_row(conn, conn.statement(Query::ListWeeks.index()), &[], |row| {
        weeks.push(week_from(row)?);
        Ok(())
    })
    .await?;
    Ok(written(&weeks))
}

pub async fn get_week(conn: &TenantConnection, id: i32) -> Result<Reply, LunchError> {
    let week = week_with_days(conn, conn.statement(Query::GetWeek.index()), &[&id])
        .await?
        .ok_or(LunchError::WeekNotFound(id))?;
    Ok(written(&week))
}

pub async fn public_week(conn: &TenantConnection, week_of: Date) -> Result<Reply, LunchError> {
    let week = week_with_days(conn, conn.statement(Query::PublicWeek.index()), &[&week_of])
        .await?
        .ok_or(LunchError::NoPublishedWeek(week_of))?;
    Ok(written(&week))
}

pub async fn create_week(conn: &TenantConnection, input: WeekInput) -> Result<Reply, LunchError> {
    let row = conn
        .client
        .query_one(
            conn.statement(Query::InsertWeek.index()),
            &[&input.week_of, &input.is_published],
        )
        .await
        .map_err(|e| db_error(conn, e))?;
    json(&NewWeekId {
        lunch_week_id: row.try_get(0).map_err(|e| db_error(conn, e))?,
    })
}

pub async fn update_week(
    conn: &TenantConnection,
    id: i32,
    input: WeekInput,
) -> Result<Reply, LunchError> {
    conn.client
        .execute(
            conn.statement(Query::UpdateWeek.index()),
            &[&id, &input.week_of, &input.is_published],
        )
        .await
        .map_err(|e| db_error(conn, e))?;
    Ok(Reply::Empty)
}

pub async fn delete_week(conn: &TenantConnection, id: i32) -> Result<Reply, LunchError> {
    conn.client
        .execute(conn.statement(Query::DeleteWeek.index()), &[&id])
        .await
        .map_err(|e| db_error(conn, e))?;
    Ok(Reply::Empty)
}

pub async fn list_days(conn: &TenantConnection, week_id: i32) -> Result<Reply, LunchError> {
    let mut days: Vec<Day> = Vec::with_capacity(DAYS_PER_WEEK);
    for_each_row(
        conn,
        conn.statement(Query::ListDays.index()),
        &[&week_id],
        |row| {
            days.push(day_from(row)?);
            Ok(())
        },
    )
    .await?;
    Ok(written(&days))
}

pub async fn create_day(
    conn: &TenantConnection,
    week_id: i32,
    input: DayInput,
) -> Result<Reply, LunchError> {
    let result = conn
        .client
        .query_one(
            conn.statement(Query::InsertDay.index()),
            &[&week_id, &input.day, &input.menu_details],
        )
        .await;
    match result {
        Ok(row) => json(&NewDayId {
            lunch_day_id: row.try_get(0).map_err(|e| db_error(conn, e))?,
        }),
        // The week does not exist: the client's mistake, not a server error.
        Err(err) if err.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
            Err(LunchError::WeekNotFound(week_id))
        }
        Err(err) => Err(db_error(conn, err)),
    }
}

pub async fn update_day(
    conn: &TenantConnection,
    week_id: i32,
    day_id: i32,
    input: DayInput,
) -> Result<Reply, LunchError> {
    conn.client
        .execute(
            conn.statement(Query::UpdateDay.index()),
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
) -> Result<Reply, LunchError> {
    conn.client
        .execute(
            conn.statement(Query::DeleteDay.index()),
            &[&week_id, &day_id],
        )
        .await
        .map_err(|e| db_error(conn, e))?;
    Ok(Reply::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value whose serialization fails, as a map with a non-string key does.
    struct Unserializable;

    impl serde::Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }

    #[test]
    fn a_body_that_cannot_be_encoded_is_an_error_not_an_empty_reply() {
        assert!(matches!(json(&Unserializable), Err(LunchError::Encode(_))));
        assert!(matches!(
            json(&NewWeekId { lunch_week_id: 7 }),
            Ok(Reply::Json(body)) if body == br#"{"lunchWeekId":7}"#
        ));
    }
}
