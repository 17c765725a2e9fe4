//! The SQL of the school-lunch API, prepared once per connection.
//!
//! Every statement names its columns (never `SELECT *`): a migration that adds a column
//! then cannot invalidate a prepared plan's result type. Each is prepared when a pooled
//! connection is opened, so a request costs one round trip per query (Bind + Execute of
//! a named statement), never a Parse. Dates travel as the binary `date` type, which is
//! far cheaper for PostgreSQL than `to_char`.

use tokio_postgres::{Client, Error, Statement};

/// The week list, ordered as the front end shows it.
const LIST_WEEKS: &str =
    "select lunch_week_id, week_of, is_published from lunch_week order by week_of, lunch_week_id";
/// A week and its days in one round trip; a week without days yields one row of nulls.
const GET_WEEK: &str =
    "select w.lunch_week_id, w.week_of, w.is_published, d.lunch_day_id, d.day, d.menu_details
    from lunch_week w left join lunch_day d on d.lunch_week_id = w.lunch_week_id
    where w.lunch_week_id = $1 order by d.day, d.lunch_day_id";
/// The published week of a date, with its days (the lowest id wins if a date repeats).
const PUBLIC_WEEK: &str =
    "select w.lunch_week_id, w.week_of, w.is_published, d.lunch_day_id, d.day, d.menu_details
    from (select lunch_week_id, week_of, is_published from lunch_week
          where week_of = $1 and is_published order by lunch_week_id limit 1) w
    left join lunch_day d on d.lunch_week_id = w.lunch_week_id
    order by d.day, d.lunch_day_id";
const INSERT_WEEK: &str =
    "insert into lunch_week (week_of, is_published) values ($1, $2) returning lunch_week_id";
const UPDATE_WEEK: &str =
    "update lunch_week set week_of = $2, is_published = $3 where lunch_week_id = $1";
const DELETE_WEEK: &str = "delete from lunch_week where lunch_week_id = $1";
const LIST_DAYS: &str = "select lunch_day_id, lunch_week_id, day, menu_details from lunch_day
    where lunch_week_id = $1 order by day, lunch_day_id";
const INSERT_DAY: &str = "insert into lunch_day (lunch_week_id, day, menu_details) values ($1, $2, $3) returning lunch_day_id";
const UPDATE_DAY: &str = "update lunch_day set day = $3, menu_details = $4
    where lunch_day_id = $2 and lunch_week_id = $1";
const DELETE_DAY: &str = "delete from lunch_day where lunch_day_id = $2 and lunch_week_id = $1";

/// The statements of one connection.
pub struct Statements {
    pub list_weeks: Statement,
    pub get_week: Statement,
    pub public_week: Statement,
    pub insert_week: Statement,
    pub update_week: Statement,
    pub delete_week: Statement,
    pub list_days: Statement,
    pub insert_day: Statement,
    pub update_day: Statement,
    pub delete_day: Statement,
}

impl Statements {
    /// Prepares every statement, pipelined: the Parse messages go out together, so
    /// opening a connection costs about one round trip for all of them.
    pub async fn prepare(client: &Client) -> Result<Self, Error> {
        let (list_weeks, get_week, public_week, insert_week, update_week) = tokio::try_join!(
            client.prepare(LIST_WEEKS),
            client.prepare(GET_WEEK),
            client.prepare(PUBLIC_WEEK),
            client.prepare(INSERT_WEEK),
            client.prepare(UPDATE_WEEK),
        )?;
        let (delete_week, list_days, insert_day, update_day, delete_day) = tokio::try_join!(
            client.prepare(DELETE_WEEK),
            client.prepare(LIST_DAYS),
            client.prepare(INSERT_DAY),
            client.prepare(UPDATE_DAY),
            client.prepare(DELETE_DAY),
        )?;
        Ok(Self {
            list_weeks,
            get_week,
            public_week,
            insert_week,
            update_week,
            delete_week,
            list_days,
            insert_day,
            update_day,
            delete_day,
        })
    }
}
