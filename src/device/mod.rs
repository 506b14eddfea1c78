//! The `Device` trait every backend implements, and device discovery.

#[cfg(test)]
pub mod conformance;
mod counters;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
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

/// The buffer holding `t`, the tensor's byte offset in it and its byte length (not yet checked
/// against the buffer's size: the device's own buffer type does that).
pub fn locate<'a>(
    t: &crate::ggml::Tensor,
    buffers: &'a BufferSet,
) -> Result<(&'a Arc<dyn Buffer>, usize, usize), DeviceError> {
    let data = t.data.ok_or_else(|| {
        DeviceError::op(
            t.op.name(),
            format!("tensor '{}' has no memory here", t.name),
        )
    })?;
    let buf = buffers
        .get(&data.buffer)
        .ok_or(DeviceError::MissingBuffer(data.buffer))?;
    let len = t
        .nbytes()
        .ok_or_else(|| DeviceError::op(t.op.name(), "size overflow"))?;
    Ok((buf, data.offset, len))
}

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
    /// PCI address (`dddd:bb:dd.f`), where the API reports one: how one GPU seen through two APIs
    /// is recognised.
    pub pci: Option<String>,
    /// PCI vendor id, where known.
    pub vendor: Option<u32>,
    /// Whether this is a CUDA device (it serves an NVIDIA GPU natively).
    pub cuda: bool,
    pub open: Opener,
}

/// NVIDIA's PCI vendor id.
pub const NVIDIA: u32 = 0x10de;

/// Whether `c` is a GPU that a CUDA candidate among `all` serves already: same PCI address, or (when
/// the other API reports none) an NVIDIA GPU on a machine with usable CUDA devices.
pub fn served_by_cuda(c: &Candidate, all: &[&Candidate]) -> bool {
    if c.cuda {
        return false;
    }
    let cudas: Vec<&&Candidate> = all
        .iter()
        .filter(|o| o.cuda && o.kind == DeviceKind::Gpu)
        .collect();
    match c.pci.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => cudas
            .iter()
            .any(|o| o.pci.as_deref().is_some_and(|q| q.eq_ignore_ascii_case(p))),
        None => c.vendor == Some(NVIDIA) && !cudas.is_empty(),
    }
}

/// Every device this build can serve, in registry order.
pub fn discover() -> Vec<Candidate> {
    #[cfg(feature = "wgpu")]
    let mut all = wgpu::discovery::candidates();
    #[cfg(not(feature = "wgpu"))]
    let mut all = Vec::new();
    #[cfg(feature = "cuda")]
    {
        // CUDA first: the default device order puts the native path ahead of Vulkan.
        let mut cuda = cuda::discovery::candidates();
        cuda.extend(cuda::discovery::emulator_candidate());
        cuda.append(&mut all);
        all = cuda;
    }
    all.push(Candidate {
        name: "CPU".into(),
        kind: DeviceKind::Cpu,
        pci: None,
        vendor: None,
        cuda: false,
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
        // A GPU seen through CUDA and another API is served once by default, through CUDA.
        let all: Vec<&Candidate> = found.iter().flatten().collect();
        let shadowed: Vec<bool> = all.iter().map(|c| served_by_cuda(c, &all)).collect();
        picked.extend(
            found
                .iter_mut()
                .zip(shadowed)
                .filter_map(|(c, s)| c.take_if(|c| c.kind == want && !s)),
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

#[cfg(test)]
mod select_tests {
    use super::*;

    fn cand(name: &str, kind: DeviceKind, pci: Option<&str>, vendor: u32, cuda: bool) -> Candidate {
        Candidate {
            name: name.into(),
            kind,
            pci: pci.map(str::to_string),
            vendor: Some(vendor),
            cuda,
            open: Box::new(|_| Err(DeviceError::op("open", "test candidate"))),
        }
    }

    /// One GPU seen through CUDA and Vulkan is served once by default (by CUDA); other GPUs, and
    /// NVIDIA GPUs on machines without a usable CUDA device, keep their Vulkan device.
    #[test]
    fn a_gpu_seen_through_cuda_is_not_served_twice() {
        let cuda = cand("CUDA0", DeviceKind::Gpu, Some("0000:01:00.0"), NVIDIA, true);
        let same = cand(
            "Vulkan0",
            DeviceKind::Gpu,
            Some("0000:01:00.0"),
            NVIDIA,
            false,
        );
        let other = cand(
            "Vulkan1",
            DeviceKind::Gpu,
            Some("0000:02:00.0"),
            NVIDIA,
            false,
        );
        let amd = cand("Vulkan2", DeviceKind::Gpu, None, 0x1002, false);
        let unknown = cand("Vulkan3", DeviceKind::Gpu, None, NVIDIA, false);
        let all = [&cuda, &same, &other, &amd, &unknown];
        assert!(!served_by_cuda(&cuda, &all));
        assert!(served_by_cuda(&same, &all));
        assert!(!served_by_cuda(&other, &all));
        assert!(!served_by_cuda(&amd, &all));
        assert!(served_by_cuda(&unknown, &all));
        // CUDA without libnvrtc is not a usable GPU: the Vulkan device stays.
        let no_nvrtc = cand(
            "CUDA0",
            DeviceKind::Software,
            Some("0000:01:00.0"),
            NVIDIA,
            true,
        );
        assert!(!served_by_cuda(&same, &[&no_nvrtc, &same]));
    }
}
