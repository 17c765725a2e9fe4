//! LISTEN for the catalog trigger's notifications on a dedicated connection.
//!
//! A notification names the school whose row changed (`INSERT name`, `UPDATE name`,
//! `UPDATE old new` when the database name changed, `DELETE name`): the control loop
//! re-reads only the named rows. When the connection drops, it reconnects with backoff and
//! then asks for a full refresh, because notifications sent while it was away are lost.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Config as PgConfig, NoTls};
use tokio_util::sync::CancellationToken;

/// The channel the catalog trigger notifies (catalog_sql/0001_schools.sql).
pub const CHANNEL: &str = "tenant_edge_catalog";

/// The catalog changes heard but not yet read, coalesced: however many notifications
/// arrive while the control loop reads, it takes them all at once and reads once.
#[derive(Default)]
pub struct CatalogChanges {
    pending: Mutex<Pending>,
    ready: Notify,
}

/// What [`CatalogChanges::take`] hands over.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Anything may have changed (a reconnect, an unreadable payload): read every row.
    pub everything: bool,
    /// The schools (database names) whose rows changed.
    pub schools: HashSet<String>,
}

impl CatalogChanges {
    /// Records one notification's payload; one that names no valid school asks for a full
    /// read.
    pub fn heard(&self, payload: &str) {
        let mut words = payload.split(' ');
        let op = words.next().unwrap_or_default();
        let names: Vec<&str> = words.collect();
        let named = matches!(op, "INSERT" | "UPDATE" | "DELETE")
            && !names.is_empty()
            && names
                .iter()
                .all(|name| crate::domain::names::validate_database_name(name).is_ok());
        let mut pending = self.lock();
        if named {
            pending.schools.extend(names.into_iter().map(str::to_owned));
        } else {
            pending.everything = true;
        }
        drop(pending);
        self.ready.notify_one();
    }

    /// Asks for a full read (after a reconnect).
    pub fn everything(&self) {
        self.lock().everything = true;
        self.ready.notify_one();
    }

    /// Waits until something is pending.
    pub async fn wait(&self) {
        self.ready.notified().await;
    }

    /// Takes everything pending.
    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Held for an insert or a swap; a panic elsewhere leaves the set itself intact.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs until `stop` is cancelled; records every notification in `changed`, and asks for
/// a full read after every (re)connect.
pub async fn run(
    catalog: PgConfig,
    connect_timeout: Duration,
    changed: Arc<CatalogChanges>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut config = catalog.clone();
        config.connect_timeout(connect_timeout);
        config.application_name("tenant-edge listener");
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            connected = tokio::time::timeout(connect_timeout + Duration::from_millis(250), config.connect(NoTls)) => connected,
        };
        match connected {
            Ok(Ok((client, mut connection))) => {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                // The connection must be driven while LISTEN runs, so issue it from a task.
                let listen = tokio::spawn(async move {
                    let result = client.batch_execute(&format!("listen {CHANNEL}")).await;
                    (client, result)
                });
                let mut listening = false;
                let mut client_slot = None;
                let mut listen = Some(listen);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        done = async { listen.as_mut().unwrap().await }, if listen.is_some() => {
                            listen = None;
                            match done {
                                Ok((client, Ok(()))) => {
                                    client_slot = Some(client);
                                    listening = true;
                                    backoff = Duration::from_millis(100);
                                    // Anything that changed while we were not listening.
                                    changed.everything();
                                }
                                _ => break,
                            }
                        }
                        message = messages.next() => match message {
                            Some(Ok(AsyncMessage::Notification(note))) => changed.heard(note.payload()),
                            Some(Ok(_)) => {}
                            Some(Err(err)) => {
                                tracing::warn!(error = %err, "catalog notification connection failed");
                                break;
                            }
                            None => break,
                        },
                    }
                }
                drop(client_slot);
                if listening {
                    tracing::warn!("catalog notification connection lost; reconnecting");
                }
            }
            Ok(Err(err)) => {
                tracing::debug!(error = %crate::pg::error_text(&err), "catalog listener cannot connect");
            }
            Err(_) => tracing::debug!("catalog listener connect timed out"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_schools_or_ask_for_everything() {
        let changes = CatalogChanges::default();
        changes.heard("INSERT school_a");
        changes.heard("UPDATE school_b school_c");
        changes.heard("DELETE school_a");
        let pending = changes.take();
        assert!(!pending.everything);
        let mut schools: Vec<_> = pending.schools.into_iter().collect();
        schools.sort();
        assert_eq!(schools, ["school_a", "school_b", "school_c"]);
        assert_eq!(changes.take(), Pending::default());

        for payload in ["", "INSERT", "TRUNCATE x", "UPDATE Bad Name"] {
            changes.heard(payload);
            assert!(changes.take().everything, "{payload:?}");
        }
    }
}
