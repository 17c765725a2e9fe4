//! A throwaway database on the local PostgreSQL (127.0.0.1:5432, user postgres) for the
//! unit tests of this module that need real SQL. Dropped when the value is dropped.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio_postgres::{Client, Config as PgConfig};

use crate::pg;

const TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct ScratchDatabase {
    pub name: String,
    maintenance: PgConfig,
}

fn server() -> PgConfig {
    pg::parse_target("postgres://postgres@127.0.0.1:5432/postgres", &|_| None).expect("a valid URL")
}

impl ScratchDatabase {
    /// Creates an empty, uniquely named database. PostgreSQL must be running: a test that
    /// cannot reach it fails.
    pub async fn create(label: &str) -> (Self, Client) {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("te_unit_{label}_{}_{n}", std::process::id());
        let maintenance = server();
        let admin = pg::connect(&maintenance, TIMEOUT)
            .await
            .expect("PostgreSQL must be running on 127.0.0.1:5432");
        // Two statements: a multi-statement string runs as one transaction, which
        // DROP/CREATE DATABASE refuse.
        let quoted = pg::quote_ident(&name);
        admin
            .batch_execute(&format!("drop database if exists {quoted} with (force)"))
            .await
            .expect("drop a leftover scratch database");
        admin
            .batch_execute(&format!("create database {quoted}"))
            .await
            .expect("create the scratch database");
        let client = pg::connect(&pg::with_database(&maintenance, &name), TIMEOUT)
            .await
            .expect("connect to the scratch database");
        (Self { name, maintenance }, client)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let maintenance = self.maintenance.clone();
        let sql = format!(
            "drop database if exists {} with (force)",
            pg::quote_ident(&self.name)
        );
        // Drop may run inside the test's runtime: clean up on a thread with its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                if let Ok(admin) = pg::connect(&maintenance, TIMEOUT).await {
                    let _ = admin.batch_execute(&sql).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
