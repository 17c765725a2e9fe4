//! The SQL of the school-lunch API, prepared once per pooled connection.
//!
//! Every statement names its columns (never `SELECT *`): a migration that adds a column
//! then cannot invalidate a prepared plan's result type. Each is prepared when a pooled
//! connection is opened, so a request costs one round trip per query (Bind + Execute of
//! a named statement), never a Parse. Dates travel as the binary `date` type, which is
//! far cheaper for PostgreSQL than `to_char`.

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

/// Every statement of the API, in the order a connection prepares them
/// (`PoolSettings::statements`); [`Query`] names each by its index.
pub static STATEMENTS: [&str; 10] = [
    LIST_WEEKS,
    GET_WEEK,
    PUBLIC_WEEK,
    INSERT_WEEK,
    UPDATE_WEEK,
    DELETE_WEEK,
    LIST_DAYS,
    INSERT_DAY,
    UPDATE_DAY,
    DELETE_DAY,
];

/// A statement of [`STATEMENTS`], by its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    ListWeeks,
    GetWeek,
    PublicWeek,
    InsertWeek,
    UpdateWeek,
    DeleteWeek,
    ListDays,
    InsertDay,
    UpdateDay,
    DeleteDay,
}

impl Query {
    /// Every query, in the order of [`STATEMENTS`].
    pub const ALL: [Query; 10] = [
        Query::ListWeeks,
        Query::GetWeek,
        Query::PublicWeek,
        Query::InsertWeek,
        Query::UpdateWeek,
        Query::DeleteWeek,
        Query::ListDays,
        Query::InsertDay,
        Query::UpdateDay,
        Query::DeleteDay,
    ];

    /// Its index in [`STATEMENTS`] (and in a connection's prepared statements).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The SQL text, named here rather than by position, for the test below.
    pub const fn sql(self) -> &'static str {
        match self {
            Query::ListWeeks => LIST_WEEKS,
            Query::GetWeek => GET_WEEK,
            Query::PublicWeek => PUBLIC_WEEK,
            Query::InsertWeek => INSERT_WEEK,
            Query::UpdateWeek => UPDATE_WEEK,
            Query::DeleteWeek => DELETE_WEEK,
            Query::ListDays => LIST_DAYS,
            Query::InsertDay => INSERT_DAY,
            Query::UpdateDay => UPDATE_DAY,
            Query::DeleteDay => DELETE_DAY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_query_names_its_own_statement() {
        assert_eq!(Query::ALL.len(), STATEMENTS.len());
        for query in Query::ALL {
            assert_eq!(STATEMENTS[query.index()], query.sql(), "{query:?}");
        }
    }
}
