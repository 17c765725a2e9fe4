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
use crate::domain::names;
use crate::pg;
use crate::tenancy::migrate::{self, lock::MigrationLock, Applied, MigrationSet};
use crate::tenancy::store;

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
    pub async fn provision(&self, database: &str) -> Result<Applied, String> {
        names::validate_database_name(database).map_err(|err| err.to_string())?;
        let lock = MigrationLock::acquire(&self.catalog, self.connect_timeout, database)
            .await
            .map_err(|err| err.to_string())?;
        let result = self.provision_locked(database).await;
        lock.release().await;
        result
    }

    async fn provision_locked(&self, database: &str) -> Result<Applied, String> {
        let target = pg::with_database(&self.tenants, database);
        let mut client = match pg::connect(&target, self.connect_timeout).await {
            Ok(client) => client,
            Err(err) if err.is_missing_database() => {
                let admin = pg::connect(&self.tenants, self.connect_timeout)
                    .await
                    .map_err(|err| err.to_string())?;
                store::create_database(&admin, database)
                    .await
                    .map_err(|message| format!("creating database {database}: {message}"))?;
                pg::connect(&target, self.connect_timeout)
                    .await
                    .map_err(|err| err.to_string())?
            }
            Err(err) => return Err(err.to_string()),
        };
        // A migrator killed while its statement waits is noticed by the server within a second.
        client
            .batch_execute("set client_connection_check_interval = '1s'")
            .await
            .map_err(|err| pg::error_text(&err))?;
        migrate::apply(&mut client, &self.migrations)
            .await
            .map_err(|err| err.to_string())
    }

    /// Provisions every school in `databases`, `concurrency` at a time, calling `on_result`
    /// as each finishes (for progress display). Results come back in input order.
    pub async fn provision_all(
        &self,
        databases: Vec<String>,
        mut on_result: impl FnMut(&str, &Result<Applied, String>),
    ) -> Vec<(String, Result<Applied, String>)> {
        let mut results: Vec<(usize, String, Result<Applied, String>)> =
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
