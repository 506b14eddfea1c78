//! TCP listener, one task per connection, and the command dispatcher.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod cache;
mod comm;
mod connection;
mod dispatch;
mod graphs;
mod listener;
pub mod metrics;
mod session;
mod stall;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use comm::CommPolicy;
pub use dispatch::Outcome;
pub use graphs::StoredGraph;
pub use listener::{Server, ServerConfig};
pub use session::Session;

use crate::device::{Device, DeviceError};
use crate::proto::{Major, ProtoError};

/// State shared by all connections.
pub struct Shared {
    /// The devices, in the order clients index them.
    pub devices: Vec<Arc<dyn Device>>,
    /// The local file cache, when `-c` is on.
    pub cache: Option<Arc<cache::Cache>>,
    /// Per-request limits (flags `--max-set-tensor-bytes`, `--max-request-bytes`, `--idle-timeout`).
    pub limits: Limits,
    /// The protocol major served (`--protocol`).
    pub major: Major,
    /// Whether and where COMM_INIT may listen and connect (`--no-comm`).
    pub comm: CommPolicy,
    /// Counters for `--metrics` (always kept).
    pub metrics: Arc<metrics::Metrics>,
    /// Source of buffer handles: global, so a handle is never reused, even across connections.
    handles: AtomicU64,
}

impl Shared {
    /// Devices and cache with the default limits, protocol 8 and communicators allowed on loopback.
    pub fn new(devices: Vec<Arc<dyn Device>>, cache: Option<Arc<cache::Cache>>) -> Self {
        let metrics = Arc::new(metrics::Metrics::new(&devices, Major::V8));
        Shared {
            devices,
            cache,
            limits: Limits::default(),
            major: Major::V8,
            comm: CommPolicy::default(),
            metrics,
            handles: AtomicU64::new(handle_seed()),
        }
    }

    /// Handles from 1 up, as a fresh reference server's would look in a recording (fuzz seeds replay
    /// recorded traffic, whose handles must match).
    pub fn with_sequential_handles(self) -> Self {
        self.handles.store(1, Ordering::Relaxed);
        self
    }

    /// The same, speaking `major`.
    pub fn with_major(mut self, major: Major) -> Self {
        self.major = major;
        self.metrics = Arc::new(metrics::Metrics::new(&self.devices, major));
        self
    }

    fn next_handle(&self) -> u64 {
        self.handles.fetch_add(1, Ordering::Relaxed)
    }
}

/// First buffer handle: random high bits, so two servers of one client (layer or tensor split) do
/// not hand out the same handles (the client may send one server's handle to the other, e.g. in
/// GET_ALLOC_SIZE sources, and a colliding handle would be taken for ours).
fn handle_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    ((r & 0x7fff_ffff) << 32) | 1
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
    /// A new connection must complete HELLO within this; until then it holds no session slot.
    pub hello_timeout: Duration,
    /// Bound on the wire bytes of the graphs one session keeps for GRAPH_RECOMPUTE (v8 keeps up to
    /// 1024 per device).
    pub max_graph_cache_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_set_tensor_bytes: 4 << 30,
            max_request_bytes: 1 << 30,
            idle_timeout: None,
            hello_timeout: Duration::from_secs(5),
            max_graph_cache_bytes: 2 << 30,
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
    #[error("no stored graph for device {device} (uid {uid})")]
    NoStoredGraph { device: u32, uid: u64 },
    #[error("{0}")]
    Protocol(String),
}
