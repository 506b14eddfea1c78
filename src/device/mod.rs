//! The `Device` trait every backend implements, and device discovery.

#[cfg(test)]
pub mod conformance;
mod counters;
pub mod cpu;
pub mod host;
pub mod host_kernels;
pub mod runner;
#[cfg(feature = "wgpu")]
pub mod wgpu;

pub use counters::{DeviceCounters, GraphCounts, Tally, Usage};

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ggml::Graph;

/// Errors a device reports; the server turns each into a closed connection with a logged reason.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{op}: {reason}")]
    Op { op: &'static str, reason: String },
    #[error("range {offset}+{len} outside buffer of {size} bytes")]
    OutOfRange {
        offset: usize,
        len: usize,
        size: usize,
    },
    #[error("buffer {0:#x} is not part of this graph")]
    MissingBuffer(u64),
    #[error("buffer belongs to another device")]
    ForeignBuffer,
    #[error("kernel panicked: {0}")]
    Panic(String),
}

impl DeviceError {
    /// Shorthand for an op-level failure.
    pub fn op(op: &'static str, reason: impl Into<String>) -> Self {
        DeviceError::Op {
            op,
            reason: reason.into(),
        }
    }
}

/// Free and total bytes, as GET_DEVICE_MEMORY reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    pub free: u64,
    pub total: u64,
}

/// Memory owned by one device. Offsets are relative to the buffer start; callers check ranges first,
/// implementations check them again and answer `OutOfRange` instead of touching foreign memory.
pub trait Buffer: Send + Sync + Any {
    fn size(&self) -> usize;
    fn write(&self, offset: usize, data: &[u8]) -> Result<(), DeviceError>;
    fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), DeviceError>;
    fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), DeviceError>;
    fn as_any(&self) -> &dyn Any;
}

/// The buffers a graph's tensors live in, by session handle.
pub type BufferSet = HashMap<u64, Arc<dyn Buffer>>;

/// Device state kept with a graph the server stores for GRAPH_RECOMPUTE (a GPU device's planned and
/// encoded work). It lives exactly as long as the stored graph and its buffers, and only the device
/// that computed the graph reads it.
#[derive(Default)]
pub struct GraphCache(pub Mutex<Option<Box<dyn Any + Send>>>);

/// One compute device exposed to clients (a position in the server's device list).
pub trait Device: Send + Sync {
    /// The `--device` name: `CPU`, `Vulkan0`, `CUDA0`, ...
    fn name(&self) -> &str;
    /// Human description for the banner (CPU model, adapter name).
    fn description(&self) -> String;
    /// Extra facts for `--list-devices` (device type, API, driver).
    fn details(&self) -> Option<String> {
        None
    }
    fn memory(&self) -> Memory;
    /// Base-address alignment of buffers (GET_ALIGNMENT).
    fn alignment(&self) -> u64;
    /// Largest single buffer (GET_MAX_SIZE).
    fn max_size(&self) -> u64;
    /// Allocates `size` bytes; `None` when the allocator or the `-m` cap refuses.
    fn alloc(&self, size: usize) -> Option<Arc<dyn Buffer>>;
    /// Copies between two buffers of this device; `Ok(false)` when this device cannot (the client then
    /// falls back to GET + SET).
    fn copy(
        &self,
        src: &dyn Buffer,
        src_offset: usize,
        dst: &dyn Buffer,
        dst_offset: usize,
        len: usize,
    ) -> Result<bool, DeviceError>;
    /// Checks that every compute node of `graph` is an op (and type combination) this device runs.
    fn check_graph(&self, graph: &Graph) -> Result<(), DeviceError>;
    /// Runs the graph's compute nodes in order. `buffers` holds every buffer the graph refers to.
    fn compute(&self, graph: &Graph, buffers: &BufferSet) -> Result<(), DeviceError>;
    /// `compute` for a graph the server keeps for GRAPH_RECOMPUTE: the device may keep what it derived
    /// from the graph in `cache` and reuse it when the same graph runs again.
    fn compute_cached(
        &self,
        graph: &Graph,
        buffers: &BufferSet,
        cache: &GraphCache,
    ) -> Result<(), DeviceError> {
        let _ = cache;
        self.compute(graph, buffers)
    }

    /// Work and memory counters since the device opened; cheap (relaxed atomic loads).
    fn counters(&self) -> DeviceCounters;
}

/// Options that shape the devices at startup.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    /// CPU worker threads (`-t`).
    pub threads: usize,
    /// Per-device memory cap in bytes (`-m`).
    pub mem_cap: Option<u64>,
}

/// What kind of device this is, for the default selection (GPUs first, CPU only when there is none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Gpu,
    /// A GPU API implemented in software (lavapipe's llvmpipe, WARP): listed, served only when named.
    Software,
}

/// Opens a discovered device with the startup options.
pub type Opener = Box<dyn FnOnce(&DeviceOptions) -> Result<Arc<dyn Device>, DeviceError>>;

/// A device found at startup, not yet opened.
pub struct Candidate {
    pub name: String,
    pub kind: DeviceKind,
    pub open: Opener,
}

/// Every device this build can serve, in registry order.
pub fn discover() -> Vec<Candidate> {
    #[cfg(feature = "wgpu")]
    let mut all = wgpu::discovery::candidates();
    #[cfg(not(feature = "wgpu"))]
    let mut all = Vec::new();
    all.push(Candidate {
        name: "CPU".into(),
        kind: DeviceKind::Cpu,
        open: Box::new(|o: &DeviceOptions| {
            Ok(Arc::new(cpu::CpuDevice::new(o.threads, o.mem_cap)?) as Arc<dyn Device>)
        }),
    });
    all
}

/// Picks devices: the named ones in order (case-insensitive), else every GPU, else the CPU.
/// An unknown name is an error that lists what is available.
pub fn select(names: &[String], opts: &DeviceOptions) -> Result<Vec<Arc<dyn Device>>, String> {
    let mut found: Vec<Option<Candidate>> = discover().into_iter().map(Some).collect();
    let available = || found_names(&discover());
    let mut picked = Vec::new();
    if names.is_empty() {
        let any_gpu = found.iter().flatten().any(|c| c.kind == DeviceKind::Gpu);
        let want = if any_gpu {
            DeviceKind::Gpu
        } else {
            DeviceKind::Cpu
        };
        picked.extend(
            found
                .iter_mut()
                .filter_map(|c| c.take_if(|c| c.kind == want)),
        );
    } else {
        for name in names {
            let slot = found.iter_mut().find(|c| {
                c.as_ref()
                    .is_some_and(|c| c.name.eq_ignore_ascii_case(name))
            });
            match slot.and_then(Option::take) {
                Some(c) => picked.push(c),
                None => {
                    return Err(format!(
                        "unknown device: {name}\navailable devices: {}",
                        available()
                    ));
                }
            }
        }
    }
    if picked.is_empty() {
        return Err("No devices found".into());
    }
    picked
        .into_iter()
        .map(|c| (c.open)(opts).map_err(|e| format!("failed to open device {}: {e}", c.name)))
        .collect()
}

fn found_names(c: &[Candidate]) -> String {
    c.iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reserves `size` bytes on a device's `used` counter against its `-m` cap, then builds the buffer with
/// `make` (which receives the counter, to give the bytes back on drop). Reserving first means concurrent
/// sessions cannot both pass the cap; a refused or failed allocation returns its reservation.
pub fn reserve_and_alloc<B: Buffer>(
    used: &Arc<Usage>,
    cap: Option<u64>,
    size: usize,
    make: impl FnOnce(Arc<Usage>) -> Option<B>,
) -> Option<Arc<dyn Buffer>> {
    use std::sync::atomic::Ordering;
    let size64 = size as u64;
    let prev = used.bytes.fetch_add(size64, Ordering::Relaxed);
    if cap.is_some_and(|cap| prev.saturating_add(size64) > cap) {
        used.bytes.fetch_sub(size64, Ordering::Relaxed);
        return None;
    }
    match make(used.clone()) {
        Some(b) => Some(Arc::new(b)),
        None => {
            used.bytes.fetch_sub(size64, Ordering::Relaxed);
            None
        }
    }
}
