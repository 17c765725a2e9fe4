//! The data path's threads: one single-threaded tokio runtime per worker, each accepting
//! on a listener socket of its own and serving its connections from start to end.
//!
//! Why not tokio's multi-threaded runtime: its work stealing moves a request's tasks
//! between threads, and every move is a futex wake-up and a context switch. On 2 cores
//! shared with PostgreSQL that costs more than the parallelism gains (BENCHMARKS.md,
//! Findings). With a runtime per thread, a request, the task of the PostgreSQL
//! connection it uses (lanes prefer connections their own worker opened,
//! pool/lanes.rs) and the client's socket stay on one thread.
//!
//! The listeners share the address with SO_REUSEPORT, so the kernel spreads new
//! connections over the workers. Before that, one plain bind of the address checks that
//! no other process holds it (with SO_REUSEPORT alone a second tenant-edge on the same
//! port would silently take half the connections).
//!
//! The control path (catalog refresh, provisioning, admin API, signals) stays on the
//! process's main runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::edge::server;
use crate::edge::service::Site;

/// How many workers `worker_threads` asks for (0: one per core).
pub fn count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Binds `count` listeners to `address` (the first one's port when `address` asks for
/// port 0). Must be called inside a tokio runtime.
pub fn bind(address: SocketAddr, count: usize) -> Result<Vec<std::net::TcpListener>, String> {
    let failed = |err: std::io::Error| format!("cannot listen on {address}: {err}");
    // The plain bind: fails if anyone listens there, SO_REUSEPORT or not.
    let probe = std::net::TcpListener::bind(address).map_err(failed)?;
    let address = probe.local_addr().map_err(failed)?;
    drop(probe);
    (0..count.max(1))
        .map(|_| {
            let socket = if address.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(failed)?;
            socket.set_reuseaddr(true).map_err(failed)?;
            socket.set_reuseport(true).map_err(failed)?;
            socket.bind(address).map_err(failed)?;
            socket
                .listen(1024)
                .and_then(TcpListener::into_std)
                .map_err(failed)
        })
        .collect()
}

/// The running workers.
pub struct Workers {
    threads: Vec<Worker>,
    stop: CancellationToken,
    release: CancellationToken,
}

struct Worker {
    drained: Option<oneshot::Receiver<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Workers {
    /// One thread per listener, each serving until `stop` is cancelled.
    pub fn start(
        listeners: Vec<std::net::TcpListener>,
        site: Arc<Site>,
        stop: CancellationToken,
        connections: Arc<Semaphore>,
    ) -> Result<Workers, String> {
        let release = CancellationToken::new();
        let mut workers = Workers {
            threads: Vec::with_capacity(listeners.len()),
            stop: stop.clone(),
            release: release.clone(),
        };
        for (index, listener) in listeners.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| format!("cannot start worker {index}: {err}"))?;
            let listener = {
                let _context = runtime.enter();
                TcpListener::from_std(listener)
                    .map_err(|err| format!("cannot start worker {index}: {err}"))?
            };
            let (drained_tx, drained) = oneshot::channel();
            let (site, stop, release, connections) = (
                site.clone(),
                stop.clone(),
                release.clone(),
                connections.clone(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("tenant-edge-w{index}"))
                .spawn(move || {
                    crate::pool::worker::enter(index);
                    runtime.block_on(async move {
                        server::serve(listener, site.app.clone(), site, stop, connections).await;
                        let _ = drained_tx.send(());
                        // The runtime stays up until the pools are closed: the tasks of
                        // this worker's PostgreSQL connections run on it and must send
                        // their Terminate.
                        release.cancelled().await;
                    });
                })
                .map_err(|err| format!("cannot start worker {index}: {err}"))?;
            workers.threads.push(Worker {
                drained: Some(drained),
                thread: Some(thread),
            });
        }
        Ok(workers)
    }

    /// Waits until every worker has stopped accepting and drained its connections (after
    /// `stop` was cancelled).
    pub async fn drained(&mut self) {
        for worker in &mut self.threads {
            if let Some(drained) = worker.drained.take() {
                let _ = drained.await;
            }
        }
    }

    /// Lets the threads end and waits for them.
    pub async fn join(mut self) {
        self.release.cancel();
        let threads: Vec<JoinHandle<()>> = self
            .threads
            .iter_mut()
            .filter_map(|worker| worker.thread.take())
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

impl Drop for Workers {
    /// A server dropped without a shutdown (a test that ends early) must not leave its
    /// threads serving.
    fn drop(&mut self) {
        self.stop.cancel();
        self.release.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_share_one_port_that_nobody_else_can_take() {
        let listeners = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_eq!(listeners.len(), 3);
        let address = listeners[0].local_addr().unwrap();
        assert_ne!(address.port(), 0);
        for listener in &listeners {
            assert_eq!(listener.local_addr().unwrap(), address);
        }
        // A second server on the same address is refused, SO_REUSEPORT or not.
        let err = bind(address, 2).unwrap_err();
        assert!(
            err.starts_with(&format!("cannot listen on {address}: ")),
            "{err}"
        );
        let err = std::net::TcpListener::bind(address).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }

    #[test]
    fn zero_workers_means_one_per_core() {
        assert!(count(0) >= 1);
        assert_eq!(count(3), 3);
    }
}
