//! Accepts connections and runs each in its own task until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::Shared;
use super::connection::Connection;

pub struct ServerConfig {
    /// Most connections served at once; further ones are refused with a log line.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 256,
        }
    }
}

pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
}

impl Server {
    /// Binds `addr` (host names are resolved; the first address that binds wins).
    pub async fn bind(addr: &str, shared: Shared, config: ServerConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server {
            listener,
            shared: Arc::new(shared),
            limit: Arc::new(Semaphore::new(config.max_connections)),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
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
            let Ok(permit) = self.limit.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "connection refused: too many concurrent connections");
                continue;
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::warn!(%peer, "TCP_NODELAY failed: {e}");
            }
            let shared = self.shared.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                tracing::info!(%peer, "Accepted client connection");
                Connection::new(stream, shared).serve(stop).await;
                tracing::info!(%peer, "Client connection closed");
                drop(permit);
            });
        }
    }
}
