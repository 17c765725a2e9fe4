//! The migration runner: versioned, checksummed SQL files applied in order, each in its own
//! transaction together with its history row.
//!
//! This module applies a [`MigrationSet`] to one connected database and nothing else: it
//! does not create databases, take cross-process locks or know about schools (see
//! [`lock`] and [`crate::tenancy::provision`]). Why not `refinery`: it has no hook for a lock held in
//! *another* database (the catalog) across replicas, pins its own tokio-postgres version,
//! and reports a changed migration without the file name we must show; the runner below is
//! ~150 lines and does exactly what DESIGN.md asks.

pub mod lock;

use std::sync::LazyLock;

use sha2::{Digest, Sha256};
use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, Row};

use crate::pg;

/// One SQL file compiled into the binary (see build.rs).
pub struct EmbeddedMigration {
    pub version: i32,
    pub name: &'static str,
    pub file: &'static str,
    pub sql: &'static str,
}

mod embedded {
    use super::EmbeddedMigration;
    include!(concat!(env!("OUT_DIR"), "/embedded_sql.rs"));
}

/// A migration ready to apply: its SQL and the checksum recorded when it is applied.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i32,
    pub name: String,
    /// Where it came from, e.g. `app_sql/0001_lunch.sql`, for messages.
    pub file: String,
    pub sql: String,
    pub checksum: String,
}

impl Migration {
    pub fn new(version: i32, name: &str, file: &str, sql: &str) -> Self {
        let checksum = Sha256::digest(sql.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            version,
            name: name.into(),
            file: file.into(),
            sql: sql.into(),
            checksum,
        }
    }
}

/// An ordered list of migrations for one kind of database.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    pub migrations: Vec<Migration>,
}

impl MigrationSet {
    pub fn new(mut migrations: Vec<Migration>) -> Self {
        migrations.sort_by_key(|m| m.version);
        Self { migrations }
    }

    fn embedded(files: &[EmbeddedMigration]) -> Self {
        Self::new(
            files
                .iter()
                .map(|m| Migration::new(m.version, m.name, m.file, m.sql))
                .collect(),
        )
    }

    /// The version a database is at once every migration here is applied.
    pub fn latest_version(&self) -> i32 {
        self.migrations.last().map_or(0, |m| m.version)
    }
}

/// `catalog_sql/`, as compiled into this binary.
pub fn catalog_migrations() -> &'static MigrationSet {
    static SET: LazyLock<MigrationSet> =
        LazyLock::new(|| MigrationSet::embedded(embedded::CATALOG));
    &SET
}

/// `app_sql/`, as compiled into this binary.
pub fn app_migrations() -> &'static MigrationSet {
    static SET: LazyLock<MigrationSet> = LazyLock::new(|| MigrationSet::embedded(embedded::APP));
    &SET
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Migrations applied by this call (0: the database was up to date).
    pub count: usize,
    /// The version the database is at now.
    pub version: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{file} has changed since it was applied (checksum {applied} recorded, {current} now); restore the file or add a new migration instead")]
    Changed {
        file: String,
        applied: String,
        current: String,
    },
    #[error("the database is at migration {version} ({name}), which this binary does not know: it was migrated by a newer tenant-edge")]
    Unknown { version: i32, name: String },
    #[error("{file} failed: {message}")]
    Failed {
        file: String,
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("reading the migration history failed: {message}")]
    History {
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("reading column {column} of {HISTORY_TABLE} failed: {message}")]
    HistoryColumn {
        column: &'static str,
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

const HISTORY_TABLE: &str = "tenant_edge_migrations";

/// Applies every migration of `set` that `client`'s database has not applied yet.
///
/// The caller holds the cross-process lock for this database ([`lock::MigrationLock`]);
/// without it two processes could both see a migration as pending, and one would fail.
pub async fn apply(client: &mut Client, set: &MigrationSet) -> Result<Applied, MigrateError> {
    let history_error = |source: tokio_postgres::Error| MigrateError::History {
        message: pg::error_text(&source),
        source,
    };
    client
        .batch_execute(&format!(
            "create table if not exists {HISTORY_TABLE} (
                 version integer primary key,
                 name text not null,
                 checksum text not null,
                 applied_at timestamptz not null default now())"
        ))
        .await
        .map_err(history_error)?;
    let rows = client
        .query(
            &format!("select version, name, checksum from {HISTORY_TABLE} order by version"),
            &[],
        )
        .await
        .map_err(history_error)?;

    let mut applied_versions = Vec::with_capacity(rows.len());
    for row in &rows {
        let version: i32 = history_column(row, "version")?;
        let name: String = history_column(row, "name")?;
        let checksum: String = history_column(row, "checksum")?;
        let Some(known) = set.migrations.iter().find(|m| m.version == version) else {
            return Err(MigrateError::Unknown { version, name });
        };
        if known.checksum != checksum {
            return Err(MigrateError::Changed {
                file: known.file.clone(),
                applied: checksum,
                current: known.checksum.clone(),
            });
        }
        applied_versions.push(version);
    }

    let mut count = 0;
    for migration in &set.migrations {
        if applied_versions.contains(&migration.version) {
            continue;
        }
        let failed = |source: tokio_postgres::Error| MigrateError::Failed {
            file: migration.file.clone(),
            message: pg::error_text(&source),
            source,
        };
        // The migration and its history row commit together or not at all, so a process
        // killed halfway leaves the database exactly at the previous version.
        let transaction = client.transaction().await.map_err(failed)?;
        transaction
            .batch_execute(&migration.sql)
            .await
            .map_err(failed)?;
        transaction
            .execute(
                &format!(
                    "insert into {HISTORY_TABLE} (version, name, checksum) values ($1, $2, $3)"
                ),
                &[&migration.version, &migration.name, &migration.checksum],
            )
            .await
            .map_err(failed)?;
        transaction.commit().await.map_err(failed)?;
        count += 1;
    }
    // Every known migration is applied now and unknown ones were refused above.
    let version = set.latest_version();
    Ok(Applied { count, version })
}

/// One column of a history row. A table created by something else may have other types;
/// that is an error naming the column, never a panic.
fn history_column<'a, T: FromSql<'a>>(
    row: &'a Row,
    column: &'static str,
) -> Result<T, MigrateError> {
    row.try_get(column)
        .map_err(|source| MigrateError::HistoryColumn {
            column,
            message: pg::error_text(&source),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_sets_are_ordered_and_named() {
        for set in [catalog_migrations(), app_migrations()] {
            assert!(!set.migrations.is_empty());
            let versions: Vec<i32> = set.migrations.iter().map(|m| m.version).collect();
            let mut sorted = versions.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(versions, sorted, "versions are unique and ordered");
            for m in &set.migrations {
                assert!(m.file.ends_with(".sql"));
                assert_eq!(m.checksum.len(), 64);
            }
        }
        assert_eq!(
            app_migrations().migrations[0].file,
            "app_sql/0001_lunch.sql"
        );
    }

    #[tokio::test]
    async fn a_history_column_of_another_type_is_named() {
        let (_database, mut client) =
            crate::tenancy::scratch::ScratchDatabase::create("history").await;
        client
            .batch_execute(&format!(
                "create table {HISTORY_TABLE} (version bigint primary key, name text not null,
                     checksum text not null, applied_at timestamptz not null default now());
                 insert into {HISTORY_TABLE} (version, name, checksum) values (1, 'x', 'y');"
            ))
            .await
            .unwrap();
        let err = apply(&mut client, catalog_migrations()).await.unwrap_err();
        assert!(
            matches!(
                err,
                MigrateError::HistoryColumn {
                    column: "version",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("reading column version of tenant_edge_migrations failed: "),
            "{err}"
        );
    }
}
