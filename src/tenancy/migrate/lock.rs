//! The cross-process migration lock: a PostgreSQL session advisory lock taken in the
//! catalog database, one key per migrated database.
//!
//! Advisory locks are per database, so a lock meant to serialize migrators of a school
//! across replicas must live in one shared place: the catalog. It is held on a dedicated
//! connection (never a pooled one, which would keep the lock after we are done), and that
//! session sets `client_connection_check_interval`, so a migrator killed with SIGKILL while
//! it waits frees its place as soon as the server notices the closed socket.

use std::time::Duration;

use tokio_postgres::{Client, Config as PgConfig};

use crate::pg;

/// Namespace of tenant-edge's advisory locks (the first key of the two-key form).
const LOCK_CLASS: i32 = 0x7465_6467; // "tedg"

/// How long to wait for another process that migrates the same database.
const LOCK_WAIT: Duration = Duration::from_secs(300);

/// A held lock. Dropping it without [`MigrationLock::release`] still frees it: the
/// connection closes and the server drops the session's locks.
pub struct MigrationLock {
    client: Client,
    key: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Connect(#[from] pg::ConnectError),
    #[error("taking the migration lock for {database} in the catalog failed: {message}")]
    Query {
        database: String,
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// A stable key for a database name (FNV-1a): the same in every process and build.
/// Two names sharing a key only serialize their migrations; nothing else happens.
pub fn lock_key(database: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in database.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as i32
}

impl MigrationLock {
    /// Waits (bounded) until no other process migrates `database`, then holds the lock.
    pub async fn acquire(
        catalog: &PgConfig,
        connect_timeout: Duration,
        database: &str,
    ) -> Result<Self, LockError> {
        let client = pg::connect(catalog, connect_timeout).await?;
        let query_error = |source: tokio_postgres::Error| LockError::Query {
            database: database.to_string(),
            message: pg::error_text(&source),
            source,
        };
        client
            .batch_execute(&format!(
                "set client_connection_check_interval = '1s'; set lock_timeout = '{}s'; set application_name = 'tenant-edge migrate lock'",
                LOCK_WAIT.as_secs()
            ))
            .await
            .map_err(query_error)?;
        let key = lock_key(database);
        client
            .execute("select pg_advisory_lock($1, $2)", &[&LOCK_CLASS, &key])
            .await
            .map_err(query_error)?;
        Ok(Self { client, key })
    }

    /// Frees the lock now (rather than when the connection closes).
    pub async fn release(self) {
        // If the unlock fails the connection is dropped right after, which frees it too.
        let _ = self
            .client
            .execute(
                "select pg_advisory_unlock($1, $2)",
                &[&LOCK_CLASS, &self.key],
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable() {
        // Fixed values: changing the hash would let an old and a new replica migrate the
        // same database at once.
        assert_eq!(lock_key(""), 0x811c_9dc5_u32 as i32);
        assert_eq!(lock_key("a"), 0xe40c_292c_u32 as i32);
        assert_ne!(lock_key("school_a"), lock_key("school_b"));
    }
}
