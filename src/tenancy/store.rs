//! The catalog database: every SQL statement that reads or writes the `schools` table.
//!
//! Control path only. The data path never queries the catalog; it reads the in-memory
//! snapshot built from [`list_schools`].

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, Config as PgConfig, Row};

use crate::config::CatalogConfig;
use crate::domain::status::{SchoolStatus, UnknownStatus};
use crate::pg;
use crate::tenancy::migrate::{self, lock::MigrationLock, Applied, MigrateError};

/// One row of `schools`, as read. The status is decided here; the other fields are
/// validated by the snapshot builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchoolRecord {
    pub id: i32,
    pub name: String,
    pub database: String,
    pub slug: String,
    /// A status text this build does not know stays an error carrying the text, so the
    /// snapshot builder reports the row instead of the whole read failing.
    pub status: Result<SchoolStatus, UnknownStatus>,
    pub db_version: i32,
    pub last_error: Option<String>,
    pub provision_attempts: i32,
}

impl SchoolRecord {
    /// A column of a surprising type is an error naming the column, never a panic: this
    /// runs on the control loop.
    fn from_row(row: &Row) -> Result<Self, CatalogError> {
        let status: String = column(row, "status")?;
        Ok(Self {
            id: column(row, "school_id")?,
            name: column(row, "school_name")?,
            database: column(row, "school_database")?,
            slug: column(row, "slug")?,
            status: status.parse(),
            db_version: column(row, "db_version")?,
            last_error: column(row, "last_error")?,
            provision_attempts: column(row, "provision_attempts")?,
        })
    }

    /// The status as stored, known or not (for display).
    pub fn status_text(&self) -> &str {
        match &self.status {
            Ok(status) => status.as_str(),
            Err(UnknownStatus(text)) => text,
        }
    }
}

fn column<'a, T: FromSql<'a>>(row: &'a Row, column: &'static str) -> Result<T, CatalogError> {
    row.try_get(column).map_err(|source| CatalogError::Column {
        column,
        message: pg::error_text(&source),
        source,
    })
}

const SCHOOL_COLUMNS: &str = "school_id, school_name, school_database, slug, status, db_version, last_error, provision_attempts";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Connect(#[from] pg::ConnectError),
    #[error(transparent)]
    Lock(#[from] migrate::lock::LockError),
    #[error("migrating the catalog: {0}")]
    Migrate(#[from] MigrateError),
    #[error("catalog query failed: {message}")]
    Query {
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("reading column {column} of schools: {message}")]
    Column {
        column: &'static str,
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("creating the catalog database {database}: {message}")]
    Create {
        database: String,
        /// The server's reason; named `message` like the text it displays.
        #[source]
        message: CreateDatabaseError,
    },
    #[error("a school with database {0} or its slug already exists")]
    Duplicate(String),
}

impl From<tokio_postgres::Error> for CatalogError {
    fn from(source: tokio_postgres::Error) -> Self {
        Self::Query {
            message: pg::error_text(&source),
            source,
        }
    }
}

/// Connects to the catalog, creating its database first when it does not exist yet.
///
/// Every connection to the catalog for queries is opened here, with
/// `[catalog]`'s connect timeout (`CatalogConfig::connect_timeout` says how it is chosen).
pub async fn connect_or_create(catalog: &CatalogConfig) -> Result<Client, CatalogError> {
    let (target, timeout) = (&catalog.target, catalog.connect_timeout);
    match pg::connect(target, timeout).await {
        Ok(client) => Ok(client),
        Err(err) if err.is_missing_database() => {
            let maintenance = pg::with_database(target, "postgres");
            let admin = pg::connect(&maintenance, timeout).await?;
            create_database(&admin, catalog.database())
                .await
                .map_err(|message| CatalogError::Create {
                    database: catalog.database().to_string(),
                    message,
                })?;
            Ok(pg::connect(target, timeout).await?)
        }
        Err(err) => Err(err.into()),
    }
}

/// Why `CREATE DATABASE` failed: the server's text.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CreateDatabaseError {
    message: String,
    #[source]
    source: tokio_postgres::Error,
}

/// `CREATE DATABASE "name" TEMPLATE template0`; a database that already exists (another
/// process won the race) is fine. `name` must have passed `names::validate_database_name`
/// (the catalog name is validated in the configuration).
///
/// template0, because with the default template1 any session connected to template1 makes
/// CREATE DATABASE wait and then fail.
pub async fn create_database(admin: &Client, name: &str) -> Result<bool, CreateDatabaseError> {
    let sql = format!(
        "create database {} template template0",
        pg::quote_ident(name)
    );
    match admin.batch_execute(&sql).await {
        Ok(()) => Ok(true),
        Err(err)
            if err.code() == Some(&SqlState::DUPLICATE_DATABASE)
                || err.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
        {
            Ok(false)
        }
        Err(source) => Err(CreateDatabaseError {
            message: pg::error_text(&source),
            source,
        }),
    }
}

/// Applies `catalog_sql/` under the catalog's own migration lock.
pub async fn migrate_catalog(
    client: &mut Client,
    catalog: &PgConfig,
    connect_timeout: Duration,
) -> Result<Applied, CatalogError> {
    let database = catalog.get_dbname().unwrap_or("catalog");
    let lock = MigrationLock::acquire(catalog, connect_timeout, database).await?;
    let result = migrate::apply(client, migrate::catalog_migrations()).await;
    lock.release().await;
    Ok(result?)
}

/// Every school, ordered by id.
pub async fn list_schools(client: &Client) -> Result<Vec<SchoolRecord>, CatalogError> {
    let rows = client
        .query(
            &format!("select {SCHOOL_COLUMNS} from schools order by school_id"),
            &[],
        )
        .await?;
    rows.iter().map(SchoolRecord::from_row).collect()
}

/// The rows of the schools whose database is in `databases` (one query, whatever their
/// number), ordered by id: what an incremental update re-reads.
pub async fn schools_named(
    client: &Client,
    databases: &[String],
) -> Result<Vec<SchoolRecord>, CatalogError> {
    let rows = client
        .query(
            &format!(
                "select {SCHOOL_COLUMNS} from schools where school_database = any($1) order by school_id"
            ),
            &[&databases],
        )
        .await?;
    rows.iter().map(SchoolRecord::from_row).collect()
}

pub async fn find_school(
    client: &Client,
    database: &str,
) -> Result<Option<SchoolRecord>, CatalogError> {
    let row = client
        .query_opt(
            &format!("select {SCHOOL_COLUMNS} from schools where school_database = $1"),
            &[&database],
        )
        .await?;
    row.as_ref().map(SchoolRecord::from_row).transpose()
}

/// Adds a school in status `provisioning`.
pub async fn add_school(
    client: &Client,
    name: &str,
    database: &str,
    slug: &str,
) -> Result<SchoolRecord, CatalogError> {
    let result = client
        .query_one(
            &format!(
                "insert into schools (school_name, school_database, slug, status)
                 values ($1, $2, $3, 'provisioning') returning {SCHOOL_COLUMNS}"
            ),
            &[&name, &database, &slug],
        )
        .await;
    match result {
        Ok(row) => SchoolRecord::from_row(&row),
        Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            Err(CatalogError::Duplicate(database.to_string()))
        }
        Err(err) => Err(err.into()),
    }
}

/// Sets a school's status; false when no such school exists.
pub async fn set_status(
    client: &Client,
    database: &str,
    status: SchoolStatus,
) -> Result<bool, CatalogError> {
    let changed = client
        .execute(
            "update schools set status = $2 where school_database = $1",
            &[&database, &status.as_str()],
        )
        .await?;
    Ok(changed > 0)
}

/// Takes a school out of the catalog; false when no such school exists.
pub async fn remove_school(client: &Client, database: &str) -> Result<bool, CatalogError> {
    let removed = client
        .execute(
            "delete from schools where school_database = $1",
            &[&database],
        )
        .await?;
    Ok(removed > 0)
}

/// Records that a school's database is migrated to `version`: a school still
/// provisioning becomes active; a suspended one stays suspended. A row already saying so
/// is not touched, because every write fires the change notification (and a refresh).
pub async fn record_provisioned(
    client: &Client,
    database: &str,
    version: i32,
) -> Result<(), CatalogError> {
    client
        .execute(
            "update schools
                set db_version = $2,
                    last_error = null,
                    status = case when status = 'provisioning' then 'active' else status end
              where school_database = $1
                and (db_version <> $2 or last_error is not null or status = 'provisioning')",
            &[&database, &version],
        )
        .await?;
    Ok(())
}

/// Records a failed provisioning attempt with its reason.
pub async fn record_failure(
    client: &Client,
    database: &str,
    reason: &str,
) -> Result<(), CatalogError> {
    client
        .execute(
            "update schools
                set last_error = $2, provision_attempts = provision_attempts + 1
              where school_database = $1",
            &[&database, &reason],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::scratch::ScratchDatabase;

    #[tokio::test]
    async fn unknown_statuses_are_kept_and_odd_columns_are_named() {
        let (_database, client) = ScratchDatabase::create("store").await;
        client
            .batch_execute(
                "create table schools (
                     school_id serial primary key, school_name text not null,
                     school_database text not null, slug text not null, status text not null,
                     db_version integer not null default 0, last_error text,
                     provision_attempts integer not null default 0);
                 insert into schools (school_name, school_database, slug, status)
                 values ('A', 'school_a', 'school-a', 'active'),
                        ('B', 'school_b', 'school-b', 'archived');",
            )
            .await
            .unwrap();
        let schools = list_schools(&client).await.unwrap();
        assert_eq!(schools[0].status, Ok(SchoolStatus::Active));
        assert_eq!(schools[1].status, Err(UnknownStatus("archived".into())));
        assert_eq!(schools[1].status_text(), "archived");

        // A column of another type is an error naming it, not a panic.
        client
            .batch_execute("alter table schools alter column db_version type bigint")
            .await
            .unwrap();
        let err = list_schools(&client).await.unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::Column {
                    column: "db_version",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("reading column db_version of schools: "),
            "{err}"
        );
    }
}
