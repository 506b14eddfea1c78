//! The CUDA device: ggml graphs as CUDA C kernels through cudarc, on NVIDIA GPUs, with no CUDA
//! toolkit needed at build time (cudarc loads libcuda and libnvrtc at run time; `discovery` probes
//! them first).
//!
//! Ops with a kernel (see `kernels::plan`) run on the GPU; every other op the CPU device implements
//! runs through the shared runner (`device::runner`) on host copies of its tensors.
//!
//! **Faults.** Every tensor range is checked against its buffer before a launch and kernels check
//! the indices they read from tensors (GET_ROWS, SET_ROWS raise a flag instead of touching memory),
//! so a client cannot make a kernel fault. A fault that still happens (a kernel bug) is *sticky* in
//! CUDA: the context is unusable afterwards for every session on this device. The session that hit
//! it gets the error; later calls on the device then fail with the same error, and the server must be
//! restarted to serve that GPU again (other devices are unaffected). This is CUDA's model, not ours.

mod buffer;
pub mod discovery;
pub mod emu;
mod exec;
pub mod kernels;
pub mod nvrtc;
mod stream;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaStream};

pub use buffer::CudaBuffer;
use buffer::driver;

use super::{
    Buffer, BufferSet, Device, DeviceCounters, DeviceError, DeviceOptions, GraphCache, Memory,
    Tally, Usage,
};
use crate::device::host_kernels::{self, HostKernel};
use crate::ggml::Graph;
use exec::Plan;
use stream::StreamQueue;

/// What the device's plans share.
pub struct Shared {
    pub ctx: Arc<CudaContext>,
    pub kernels: nvrtc::Kernels,
    pub tally: Tally,
    /// Idle streams: a compute takes one, so concurrent sessions run on streams of their own.
    streams: Mutex<Vec<Arc<CudaStream>>>,
}

impl Shared {
    fn stream(&self) -> Result<Arc<CudaStream>, DeviceError> {
        if let Some(s) = self.streams.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(s);
        }
        self.ctx.new_stream().map_err(|e| driver("stream", e))
    }

    fn give_back(&self, s: Arc<CudaStream>) {
        if let Ok(mut v) = self.streams.lock() {
            v.push(s);
        }
    }
}

impl kernels::Target for Shared {
    fn addr(&self, buf: &dyn Buffer, offset: usize, len: usize) -> Result<u64, DeviceError> {
        let cb = buf
            .as_any()
            .downcast_ref::<CudaBuffer>()
            .filter(|b| b.is_in(&self.ctx))
            .ok_or(DeviceError::ForeignBuffer)?;
        cb.addr(offset, len)
    }

    fn has(&self, family: kernels::Family) -> bool {
        self.kernels.has(family)
    }

    fn arch(&self) -> u32 {
        self.kernels.arch()
    }
}

pub struct CudaDevice {
    /// `CUDA0`, ...
    name: String,
    found: discovery::Found,
    shared: Arc<Shared>,
    total: u64,
    cap: Option<u64>,
    used: Arc<Usage>,
    /// Runs the host kernels (`-t` threads).
    pool: rayon::ThreadPool,
}

impl CudaDevice {
    /// Opens the device `found` (its primary context) and loads its kernels (compiled with NVRTC,
    /// or from the disk cache).
    pub fn open(found: &discovery::Found, opts: &DeviceOptions) -> Result<Self, DeviceError> {
        let ctx = discovery::context(found.ordinal).map_err(|e| driver("open", e))?;
        let total = ctx.total_mem().map_err(|e| driver("open", e))? as u64;
        let arch = discovery::arch(found);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads.max(1))
            .thread_name(|i| format!("ggrpc-cuda-{i}"))
            .build()
            .map_err(|e| DeviceError::op("open", e.to_string()))?;
        Ok(CudaDevice {
            name: found.name.clone(),
            found: found.clone(),
            shared: Arc::new(Shared {
                kernels: nvrtc::Kernels::load(&ctx, arch),
                ctx,
                tally: Tally::default(),
                streams: Mutex::default(),
            }),
            total: opts.mem_cap.map_or(total, |c| c.min(total)),
            cap: opts.mem_cap,
            used: Default::default(),
            pool,
        })
    }

    /// Runs a graph with `host` as the kernel for nodes without a CUDA kernel (tests inject their
    /// own); `cache` keeps the plan for GRAPH_RECOMPUTE.
    pub fn compute_with(
        &self,
        graph: &Graph,
        buffers: &BufferSet,
        host: HostKernel,
        cache: Option<&GraphCache>,
    ) -> Result<exec::Report, DeviceError> {
        let shared = &self.shared;
        let id = Arc::as_ptr(shared) as usize;
        let target: &dyn kernels::Target = &**shared;
        let plan = || {
            let alloc = |size| {
                CudaBuffer::new(&shared.ctx, size, Arc::default())
                    .map(|b| Arc::new(b) as Arc<dyn Buffer>)
            };
            let queue = StreamQueue::new(shared)?;
            Plan::new(target, id, queue, alloc, &shared.tally, graph, buffers)
        };
        let out = self.pool.install(|| {
            shared.tally.graph_counts(|| match cache {
                Some(cache) => {
                    let mut slot = cache
                        .0
                        .lock()
                        .map_err(|_| DeviceError::op("cuda", "graph cache poisoned"))?;
                    let kept = slot
                        .as_ref()
                        .and_then(|b| b.downcast_ref::<Plan<StreamQueue>>())
                        .filter(|p| p.is_for(id));
                    if let Some(plan) = kept {
                        return plan.run(target, &shared.tally, graph, buffers, host, true);
                    }
                    let plan = plan()?;
                    let report = plan.run(target, &shared.tally, graph, buffers, host, false)?;
                    *slot = Some(Box::new(plan));
                    Ok(report)
                }
                None => plan()?.run(target, &shared.tally, graph, buffers, host, false),
            })
        });
        out.map(|(report, counts)| exec::Report { counts, ..report })
    }
}

impl Device for CudaDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> String {
        self.found.model.clone()
    }

    fn details(&self) -> Option<String> {
        let (maj, min) = self.found.capability;
        let nvrtc = nvrtc::nvrtc_version()
            .map(|(a, b)| format!("{a}.{b}"))
            .unwrap_or_else(|| "?".into());
        Some(format!(
            "compute capability {maj}.{min}, driver CUDA {}, NVRTC {nvrtc}, PCI {}",
            discovery::driver_version().unwrap_or_else(|| "?".into()),
            self.found.pci
        ))
    }

    fn memory(&self) -> Memory {
        // The driver's free memory (other processes count), lowered by what `-m` leaves us.
        let used = self.used.bytes();
        let driver_free = self
            .shared
            .ctx
            .mem_get_info()
            .map(|(free, _)| free as u64)
            .unwrap_or(0);
        Memory {
            free: driver_free.min(self.total.saturating_sub(used)),
            total: self.total,
        }
    }

    fn alignment(&self) -> u64 {
        // ggml-cuda's alignment; also what 16-byte vector loads need.
        128
    }

    fn max_size(&self) -> u64 {
        self.total
    }

    fn alloc(&self, size: usize) -> Option<Arc<dyn Buffer>> {
        super::reserve_and_alloc(&self.used, self.cap, size, |used| {
            CudaBuffer::new(&self.shared.ctx, size, used)
        })
    }

    fn copy(
        &self,
        src: &dyn Buffer,
        src_offset: usize,
        dst: &dyn Buffer,
        dst_offset: usize,
        len: usize,
    ) -> Result<bool, DeviceError> {
        let (Some(s), Some(d)) = (
            src.as_any().downcast_ref::<CudaBuffer>(),
            dst.as_any().downcast_ref::<CudaBuffer>(),
        ) else {
            return Ok(false);
        };
        if !s.is_in(&self.shared.ctx) || !d.is_in(&self.shared.ctx) {
            return Ok(false);
        }
        buffer::copy(s, src_offset, d, dst_offset, len)?;
        Ok(true)
    }

    fn check_graph(&self, graph: &Graph) -> Result<(), DeviceError> {
        crate::device::host_kernels::check_graph(graph)
    }

    fn compute(&self, graph: &Graph, buffers: &BufferSet) -> Result<(), DeviceError> {
        log_report(&self.compute_with(graph, buffers, host_kernels::run, None)?);
        Ok(())
    }

    fn compute_cached(
        &self,
        graph: &Graph,
        buffers: &BufferSet,
        cache: &GraphCache,
    ) -> Result<(), DeviceError> {
        log_report(&self.compute_with(graph, buffers, host_kernels::run, Some(cache))?);
        Ok(())
    }

    fn counters(&self) -> DeviceCounters {
        self.shared.tally.snapshot(&self.used)
    }
}

/// One debug line per graph: where its nodes ran.
fn log_report(report: &exec::Report) {
    let c = &report.counts;
    tracing::debug!(
        native = report.native,
        fallback = ?report.fallback,
        replayed = report.replayed,
        launches = c.dispatches,
        readbacks = c.readbacks,
        "cuda graph done"
    );
}
