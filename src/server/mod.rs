//! TCP listener, one task per connection, and the command dispatcher.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod cache;
mod connection;
mod dispatch;
mod listener;
mod session;
mod stall;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use dispatch::Outcome;
pub use listener::{Server, ServerConfig};
pub use session::{Session, StoredGraph};

use crate::device::{Device, DeviceError};
use crate::proto::ProtoError;

/// State shared by all connections.
pub struct Shared {
    /// The devices, in the order clients index them.
    pub devices: Vec<Arc<dyn Device>>,
    /// The local file cache, when `-c` is on.
    pub cache: Option<Arc<cache::Cache>>,
    /// Per-request limits (flags `--max-set-tensor-bytes`, `--max-request-bytes`, `--idle-timeout`).
    pub limits: Limits,
    /// Source of buffer handles: global, so a handle is never reused, even across connections.
    handles: AtomicU64,
}

impl Shared {
    pub fn new(devices: Vec<Arc<dyn Device>>, cache: Option<Arc<cache::Cache>>) -> Self {
        Shared {
            devices,
            cache,
            limits: Limits::default(),
            handles: AtomicU64::new(1),
        }
    }

    fn next_handle(&self) -> u64 {
        self.handles.fetch_add(1, Ordering::Relaxed)
    }
}

/// Limits on what one request or one connection may ask for; past one, the connection is closed.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest SET_TENSOR payload (header + data). Data is streamed, so this bounds time, not memory.
    pub max_set_tensor_bytes: u64,
    /// Largest payload of any other request (in practice GRAPH_COMPUTE, the only other variable one);
    /// it is buffered whole, so this bounds memory per connection.
    pub max_request_bytes: u64,
    /// Close a connection whose client sends nothing for this long while the server waits for it
    /// (between requests or mid-payload). `None`: wait forever, as the reference does.
    pub idle_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_set_tensor_bytes: 4 << 30,
            max_request_bytes: 1 << 30,
            idle_timeout: None,
        }
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
