//! Test scaffolding: uniquely named databases that are dropped at the end, a config file
//! per test, and helpers to run the real binary.
//!
//! Every test gets its own name prefix (`te_<pid>_<n>_`), so tests run in parallel and
//! twice in a row without meeting each other. PostgreSQL must be running: a test that
//! cannot reach it fails, it never skips.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

pub const BIN: &str = env!("CARGO_BIN_EXE_tenant-edge");

pub fn pg_url(database: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{database}")
}

pub async fn connect(database: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(&pg_url(database), NoTls)
        .await
        .unwrap_or_else(|err| {
            panic!("PostgreSQL must be running on 127.0.0.1:5432 ({database}): {err}")
        });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Sessions of `database` waiting on a lock now (as `admin`, a connection to another
/// database, sees them in pg_stat_activity).
pub async fn lock_waiters(admin: &Client, database: &str) -> i64 {
    admin
        .query_one(
            "select count(*) from pg_stat_activity where datname = $1 and wait_event_type = 'Lock'",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

/// A test's own namespace of databases and files, cleaned up on drop.
pub struct Scratch {
    pub prefix: String,
    pub dir: PathBuf,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Scratch {
    pub fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            % 100_000;
        let prefix = format!("te_{}_{n}_{nanos}_", std::process::id());
        let dir = std::env::temp_dir().join(format!("tenant-edge-{prefix}"));
        std::fs::create_dir_all(&dir).unwrap();
        Self { prefix, dir }
    }

    /// A database name inside this test's namespace.
    pub fn db(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn catalog(&self) -> String {
        self.db("catalog")
    }

    /// Writes `proxy.toml` for this test: the catalog in its namespace plus `extra` TOML
    /// (appended; sections in `extra` must not repeat `[catalog]`).
    pub fn write_config(&self, extra: &str) -> PathBuf {
        let path = self.dir.join("proxy.toml");
        let text = format!(
            "[catalog]\nurl = \"{}\"\n{extra}\n",
            pg_url(&self.catalog())
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs the binary with `--config` and `args`, in this test's directory.
    pub fn run(&self, config: &PathBuf, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(config)
            .args(args)
            .current_dir(&self.dir)
            .env_remove("TENANT_EDGE_CONFIG")
            .output()
            .expect("run tenant-edge")
    }

    /// Names of the existing databases in this namespace.
    pub async fn databases(&self) -> Vec<String> {
        let admin = connect("postgres").await;
        let rows = admin
            .query(
                "select datname from pg_database where starts_with(datname, $1) order by datname",
                &[&self.prefix],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Inserts schools into the catalog the way the course did: only the original columns.
    pub async fn insert_schools(&self, schools: &[(&str, &str)]) {
        let catalog = connect(&self.catalog()).await;
        for (name, database) in schools {
            catalog
                .execute(
                    "insert into schools (school_name, school_database) values ($1, $2)",
                    &[name, database],
                )
                .await
                .unwrap();
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        // Drop runs outside any runtime the test may have had: use a private one.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let admin = connect("postgres").await;
                let rows = admin
                    .query(
                        "select datname from pg_database where starts_with(datname, $1)",
                        &[&prefix],
                    )
                    .await
                    .unwrap();
                for row in rows {
                    let name: String = row.get(0);
                    let sql = format!(
                        "drop database if exists \"{}\" with (force)",
                        name.replace('"', "\"\"")
                    );
                    let _ = admin.batch_execute(&sql).await;
                }
            });
        });
        let _ = cleanup.join();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Waits until `check` returns Some, polling, up to `deadline`; panics with `what` after.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Table names of a database's public schema.
pub async fn tables(database: &str) -> Vec<String> {
    let client = connect(database).await;
    let rows = client
        .query(
            "select tablename::text from pg_tables where schemaname = 'public' order by 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}
