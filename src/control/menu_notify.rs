//! The published-menu cache across replicas: one catalog connection that LISTENs on
//! [`CHANNEL`] and sends a `NOTIFY` for every school whose menus were written here.
//!
//! The data path drops a written school's entries itself and hands the school to this task
//! through a channel (never waiting); the task sends the pending schools in one round trip
//! (`pg_notify` over an array), so a burst of writes costs one statement. Every replica
//! drops the entries of a school named in a notification; its own notifications (same
//! backend) are skipped, since it dropped them already. The channel is not the catalog's
//! ([`super::listener::CHANNEL`]), so menu writes never trigger catalog refreshes.
//!
//! The cache is live only while this connection listens: when it drops, the cache turns
//! off (every public week is read from the database) until the connection is back, then
//! it is cleared (notifications sent meanwhile are lost) and the catalog re-read. Schools
//! written while it was down are notified after the reconnect. Its own connection (not
//! `pg::connect`) because notifications arrive through the connection's message stream.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tokio_util::sync::CancellationToken;

use crate::lunch::menu_cache::Origin;
use crate::state::{App, ControlEvent};

/// The channel of menu writes.
pub const CHANNEL: &str = "tenant_edge_menu";

/// The `application_name` of the connection (operators and tests find it by this).
pub const APPLICATION_NAME: &str = "tenant-edge menu notify";

/// Runs until `stop` is cancelled: listens, forwards writes, reconnects with backoff.
pub async fn run(
    app: Arc<App>,
    mut writes: mpsc::UnboundedReceiver<Arc<str>>,
    stop: CancellationToken,
) {
    let mut pending: BTreeSet<Arc<str>> = BTreeSet::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = tokio::select! {
            _ = stop.cancelled() => return,
            session = connect(&app) => session,
        };
        match session {
            Ok((client, notifications, pid)) => {
                backoff = Duration::from_millis(100);
                app.menu_cache.set_live(true);
                // Slugs and statuses may have changed while nobody listened.
                let _ = app.control.send(ControlEvent::Refresh(None));
                tracing::info!("menu cache notifications connected");
                let ended = listen(&app, &client, notifications, pid, &mut writes, &mut pending);
                let stopped = tokio::select! {
                    _ = stop.cancelled() => true,
                    () = ended => false,
                };
                app.menu_cache.set_live(false);
                if stopped {
                    return;
                }
                tracing::warn!("menu cache notification connection lost; serving public weeks from the databases until it is back");
            }
            Err(err) => tracing::debug!(error = %err, "menu cache notifications cannot connect"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A listening connection: the client, its notifications, and its backend's pid.
async fn connect(
    app: &App,
) -> Result<(Client, mpsc::UnboundedReceiver<(i32, String)>, i32), String> {
    let config = app.config.load_full();
    let mut target = config.catalog.target.clone();
    let timeout = config.catalog.connect_timeout;
    target.connect_timeout(timeout);
    target.application_name(APPLICATION_NAME);
    let (client, mut connection) =
        match tokio::time::timeout(timeout + Duration::from_millis(250), target.connect(NoTls))
            .await
        {
            Ok(Ok(connected)) => connected,
            Ok(Err(err)) => return Err(crate::pg::error_text(&err)),
            Err(_) => return Err("connect timed out".into()),
        };
    // The connection is driven by its own task, which forwards notifications and ends
    // (dropping the sender) when the connection does.
    let (tx, notifications) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send((n.process_id(), n.payload().to_owned()));
            }
        }
    });
    let listen = async {
        client.batch_execute(&format!("listen {CHANNEL}")).await?;
        let row = client.query_one("select pg_backend_pid()", &[]).await?;
        row.try_get::<_, i32>(0)
    };
    match tokio::time::timeout(timeout, listen).await {
        Ok(Ok(pid)) => Ok((client, notifications, pid)),
        Ok(Err(err)) => Err(crate::pg::error_text(&err)),
        Err(_) => Err("LISTEN timed out".into()),
    }
}

/// Serves one connection until it fails: drops the schools other replicas name, sends the
/// schools written here.
async fn listen(
    app: &App,
    client: &Client,
    mut notifications: mpsc::UnboundedReceiver<(i32, String)>,
    own_pid: i32,
    writes: &mut mpsc::UnboundedReceiver<Arc<str>>,
    pending: &mut BTreeSet<Arc<str>>,
) {
    loop {
        if !pending.is_empty() {
            let schools: Vec<&str> = pending.iter().map(|s| &**s).collect();
            let sent = client
                .execute(
                    "select pg_notify($1, school) from unnest($2::text[]) as school",
                    &[&CHANNEL, &schools],
                )
                .await;
            match sent {
                Ok(_) => pending.clear(),
                Err(err) => {
                    tracing::warn!(error = %crate::pg::error_text(&err), "sending menu notifications failed");
                    return;
                }
            }
        }
        tokio::select! {
            notification = notifications.recv() => match notification {
                Some((pid, school)) if pid != own_pid => {
                    app.menu_cache.drop_school(&school, Origin::Remote);
                }
                Some(_) => {}
                None => return,
            },
            Some(school) = writes.recv() => {
                pending.insert(school);
                // Everything already queued goes in the same statement.
                while let Ok(school) = writes.try_recv() {
                    pending.insert(school);
                }
            }
        }
    }
}
