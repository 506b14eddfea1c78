//! Accepts connections and runs each in its own task until shutdown.
//!
//! Admission happens in two stages, so silent sockets cannot lock real clients out: a new connection
//! first waits in a bounded pre-HELLO pool (it must send HELLO within `--hello-timeout`; when the pool
//! is full the oldest waiting connection is dropped to make room), and only a completed HELLO takes
//! one of the `--max-connections` session slots.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};

use super::Shared;
use super::connection::Connection;
use super::metrics::Refusal;

pub struct ServerConfig {
    /// Most sessions (connections past HELLO) served at once; further ones are refused with a log line.
    pub max_connections: usize,
    /// Most connections waiting for their HELLO at once.
    pub max_pending: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 256,
            max_pending: 256,
        }
    }
}

/// Connections that have not said HELLO yet, oldest first, each with a way to drop it.
struct Pending {
    waiting: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
    cap: usize,
    next: AtomicU64,
}

impl Pending {
    /// Takes a place, evicting the oldest waiter when full; the receiver fires on eviction.
    fn enter(&self) -> (u64, oneshot::Receiver<()>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            while w.len() >= self.cap.max(1) {
                match w.pop_front() {
                    Some((_, evict)) => {
                        let _ = evict.send(());
                    }
                    None => break,
                }
            }
            w.push_back((id, tx));
        }
        (id, rx)
    }

    fn leave(&self, id: u64) {
        if let Ok(mut w) = self.waiting.lock() {
            w.retain(|(i, _)| *i != id);
        }
    }
}

pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    sessions: Arc<Semaphore>,
    pending: Arc<Pending>,
}

impl Server {
    /// Binds `addr` (host names are resolved; the first address that binds wins).
    /// A communicator's rank 0 listens on the bound address (clients reach us there), and a server
    /// bound to loopback only talks to loopback peers.
    pub async fn bind(
        addr: &str,
        mut shared: Shared,
        config: ServerConfig,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let ip = listener.local_addr()?.ip();
        shared.comm.listen_ip = ip;
        shared.comm.loopback_only = ip.is_loopback();
        Ok(Server {
            listener,
            shared: Arc::new(shared),
            sessions: Arc::new(Semaphore::new(config.max_connections)),
            pending: Arc::new(Pending {
                waiting: Mutex::new(VecDeque::new()),
                cap: config.max_pending,
                next: AtomicU64::new(0),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The state all connections share (its metrics, for `--metrics`).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves until `shutdown` turns true. Each connection runs concurrently with its own state.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                _ = shutdown.changed() => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::warn!(%peer, "TCP_NODELAY failed: {e}");
            }
            self.shared.metrics.accepted();
            let shared = self.shared.clone();
            let sessions = self.sessions.clone();
            let pending = self.pending.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut conn = Connection::new(stream, peer, shared.clone());
                let (id, evicted) = pending.enter();
                let deadline = shared.limits.hello_timeout;
                let mut stop_hello = stop.clone();
                let hello = tokio::select! {
                    r = tokio::time::timeout(deadline, conn.read_hello()) => Some(r),
                    _ = evicted => None,
                    _ = stop_hello.changed() => return,
                };
                pending.leave(id);
                match hello {
                    None => {
                        tracing::warn!(%peer, "closing connection: still no HELLO and the pre-HELLO pool is full");
                        shared.metrics.refused(Refusal::Evicted);
                        return;
                    }
                    Some(Err(_)) => {
                        tracing::warn!(%peer, "closing connection: no HELLO within {deadline:?} (--hello-timeout)");
                        shared.metrics.refused(Refusal::NoHello);
                        return;
                    }
                    Some(Ok(Err(e))) => {
                        tracing::warn!(%peer, command = "HELLO", "closing connection: {e}");
                        shared.metrics.closed_on_error("HELLO");
                        return;
                    }
                    Some(Ok(Ok(()))) => {}
                }
                let Ok(permit) = sessions.try_acquire_owned() else {
                    tracing::warn!(%peer, "connection refused: too many concurrent sessions (--max-connections)");
                    shared.metrics.refused(Refusal::TooManySessions);
                    return;
                };
                let _open = shared.metrics.session();
                tracing::info!(%peer, "Accepted client connection");
                conn.serve(stop).await;
                tracing::info!(%peer, "Client connection closed");
                drop(permit);
            });
        }
    }
}
