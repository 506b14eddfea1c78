//! TCP listener, one task per connection, and the command dispatcher.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod cache;
mod connection;
mod listener;
mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use listener::{Server, ServerConfig};

use crate::device::{Device, DeviceError};
use crate::proto::ProtoError;

/// State shared by all connections.
pub struct Shared {
    /// The devices, in the order clients index them.
    pub devices: Vec<Arc<dyn Device>>,
    /// The local file cache, when `-c` is on.
    pub cache: Option<Arc<cache::Cache>>,
    /// Largest GRAPH_COMPUTE payload accepted.
    pub max_graph_bytes: u64,
    /// Source of buffer handles: global, so a handle is never reused, even across connections.
    handles: AtomicU64,
}

impl Shared {
    pub fn new(devices: Vec<Arc<dyn Device>>, cache: Option<Arc<cache::Cache>>) -> Self {
        Shared {
            devices,
            cache,
            max_graph_bytes: 1 << 30,
            handles: AtomicU64::new(1),
        }
    }

    fn next_handle(&self) -> u64 {
        self.handles.fetch_add(1, Ordering::Relaxed)
    }
}

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("device index {0} out of range")]
    BadDevice(u32),
    #[error("no stored graph for device {0}")]
    NoStoredGraph(u32),
    #[error("{0}")]
    Protocol(String),
}
