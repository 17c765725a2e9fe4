//! LISTEN for the catalog trigger's notifications on a dedicated connection.
//!
//! A notification only says "something changed": the control loop re-reads the table.
//! When the connection drops, it reconnects with backoff and then asks for a full refresh,
//! because notifications sent while it was away are lost.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Config as PgConfig, NoTls};
use tokio_util::sync::CancellationToken;

/// The channel the catalog trigger notifies (catalog_sql/0001_schools.sql).
pub const CHANNEL: &str = "tenant_edge_catalog";

/// Runs until `stop` is cancelled; signals `changed` for every notification and after
/// every (re)connect.
pub async fn run(
    catalog: PgConfig,
    connect_timeout: Duration,
    changed: Arc<Notify>,
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
                                    changed.notify_one();
                                }
                                _ => break,
                            }
                        }
                        message = messages.next() => match message {
                            Some(Ok(AsyncMessage::Notification(_))) => changed.notify_one(),
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
