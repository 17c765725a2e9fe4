//! Provisioning: bringing one school's database into existence and up to `app_sql/`, and
//! doing that for many schools with bounded concurrency.
//!
//! Used by `tenant-edge migrate`, `tenants add` and the control loop. Each school is
//! provisioned under its own migration lock in the catalog, so replicas racing on the same
//! school create its database once and apply each migration once. One school's failure is
//! returned as that school's result and never stops the others.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio_postgres::Config as PgConfig;

use crate::config::Config;
use crate::domain::names::{self, NameError};
use crate::pg;
use crate::tenancy::migrate::lock::{LockError, MigrationLock};
use crate::tenancy::migrate::{self, Applied, MigrateError, MigrationSet};
use crate::tenancy::store::{self, CreateDatabaseError};

/// Why one school could not be provisioned. The text is what `migrate`, `tenants add` and
/// the control loop's log show, and what the catalog records as the school's last error.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Connect(#[from] pg::ConnectError),
    #[error("creating database {database}: {source}")]
    Create {
        database: String,
        #[source]
        source: CreateDatabaseError,
    },
    /// Setting up the migrating session failed.
    #[error("{message}")]
    Session {
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// A suspended school's database is migrated when it exists, never created.
    #[error("database {database} does not exist; it is not created while the school is suspended (resume the school to create it)")]
    Missing { database: String },
}

/// Whether provisioning may create a missing database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    /// Create it when missing (a new or an active school).
    Allowed,
    /// Migrate it only if it exists (a suspended school).
    ExistingOnly,
}

/// Where provisioning connects.
#[derive(Debug, Clone)]
pub struct Provisioner {
    /// The catalog database (holds the migration locks).
    pub catalog: PgConfig,
    /// The school server, connected to its maintenance database.
    pub tenants: PgConfig,
    pub connect_timeout: Duration,
    pub concurrency: usize,
    pub migrations: MigrationSet,
}

impl Provisioner {
    pub fn from_config(config: &Config) -> Self {
        Self {
            catalog: config.catalog.target.clone(),
            tenants: pg::with_database(
                &config.tenants.target,
                config.tenants.maintenance_database(),
            ),
            // Creating a database can queue behind a checkpoint: allow more than a request would.
            connect_timeout: config.tenants.connect_timeout.max(Duration::from_secs(5)),
            concurrency: config.tenants.provision_concurrency,
            migrations: migrate::app_migrations().clone(),
        }
    }

    /// Creates `database` if it is missing and applies every pending migration to it.
    /// `database` is validated here again: provisioning never acts on an unchecked name.
    pub async fn provision(&self, database: &str) -> Result<Applied, ProvisionError> {
        self.provision_with(database, Creation::Allowed).await
    }

    /// [`Provisioner::provision`], creating the database only when `creation` allows it.
    pub async fn provision_with(
        &self,
        database: &str,
        creation: Creation,
    ) -> Result<Applied, ProvisionError> {
        names::validate_database_name(database)?;
        let lock = MigrationLock::acquire(&self.catalog, self.connect_timeout, database).await?;
        let result = self.provision_locked(database, creation).await;
        lock.release().await;
        result
    }

    async fn provision_locked(
        &self,
        database: &str,
        creation: Creation,
    ) -> Result<Applied, ProvisionError> {
        let target = pg::with_database(&self.tenants, database);
        let mut client = match pg::connect(&target, self.connect_timeout).await {
            Ok(client) => client,
            Err(err) if err.is_missing_database() && creation == Creation::ExistingOnly => {
                return Err(ProvisionError::Missing {
                    database: database.to_string(),
                });
            }
            Err(err) if err.is_missing_database() => {
                let admin = pg::connect(&self.tenants, self.connect_timeout).await?;
                store::create_database(&admin, database)
                    .await
                    .map_err(|source| ProvisionError::Create {
                        database: database.to_string(),
                        source,
                    })?;
                pg::connect(&target, self.connect_timeout).await?
            }
            Err(err) => return Err(err.into()),
        };
        // A migrator killed while its statement waits is noticed by the server within a second.
        client
            .batch_execute("set client_connection_check_interval = '1s'")
            .await
            .map_err(|source| ProvisionError::Session {
                message: pg::error_text(&source),
                source,
            })?;
        Ok(migrate::apply(&mut client, &self.migrations).await?)
    }

    /// Provisions every school in `databases`, `concurrency` at a time, calling `on_result`
    /// as each finishes (for progress display). Results come back in input order.
    pub async fn provision_all(
        &self,
        databases: Vec<String>,
        mut on_result: impl FnMut(&str, &Result<Applied, ProvisionError>),
    ) -> Vec<(String, Result<Applied, ProvisionError>)> {
        let mut results: Vec<(usize, String, Result<Applied, ProvisionError>)> =
            stream::iter(databases.into_iter().enumerate())
                .map(|(index, database)| async move {
                    let result = self.provision(&database).await;
                    (index, database, result)
                })
                .buffer_unordered(self.concurrency.max(1))
                .inspect(|(_, database, result)| on_result(database, result))
                .collect()
                .await;
        results.sort_by_key(|(index, _, _)| *index);
        results
            .into_iter()
            .map(|(_, database, result)| (database, result))
            .collect()
    }
}
