//! The wgpu device: ggml graphs as WGSL compute shaders on Vulkan, Metal or DX12.
//!
//! Ops with a native kernel (see `kernels::supports`) run on the GPU, batched into one command buffer;
//! every other op the CPU device implements runs through the shared runner (`device::runner`) on host copies of its tensors.

mod buffer;
pub mod discovery;
pub mod exec;
mod gpu;
pub mod kernels;
pub mod probe;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use buffer::WgpuBuffer;
use gpu::{Gpu, WORD};

use super::{
    Buffer, BufferSet, Device, DeviceCounters, DeviceError, DeviceOptions, GraphCache, GraphCounts,
    Memory, Tally, Usage,
};
use crate::device::host_kernels as cpu_ops;
use crate::ggml::Graph;

pub struct WgpuDevice {
    /// `Vulkan0`, `Metal0`, ...
    name: String,
    info: wgpu::AdapterInfo,
    gpu: Arc<Gpu>,
    /// Reported total (see `discovery::total_memory`), already capped by `-m`.
    total: u64,
    /// `-m` cap in bytes, if any (enforced on allocation).
    cap: Option<u64>,
    /// Bytes and buffers allocated by all sessions.
    used: Arc<Usage>,
    /// Runs the CPU fallback kernels (`-t` threads).
    pool: rayon::ThreadPool,
}

impl WgpuDevice {
    /// Opens `adapter` as device `name`.
    pub fn open(
        name: &str,
        adapter: &wgpu::Adapter,
        opts: &DeviceOptions,
    ) -> Result<Self, DeviceError> {
        Self::open_limited(name, adapter, opts, None)
    }

    /// Opens `adapter` with its largest storage binding lowered to `binding` bytes (tests use this to
    /// exercise the paths for tensors larger than one binding on small data).
    pub fn open_limited(
        name: &str,
        adapter: &wgpu::Adapter,
        opts: &DeviceOptions,
        binding: Option<u64>,
    ) -> Result<Self, DeviceError> {
        let info = adapter.get_info();
        let mut limits = adapter.limits();
        if let Some(b) = binding {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(b);
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("ggrpc"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| DeviceError::op("open", format!("{name}: {e}")))?;
        let dev_name = name.to_string();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            tracing::error!(device = dev_name, "wgpu error outside an error scope: {e}");
        }));
        let gelu_tables = upload_gelu_tables(&device, &queue);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads.max(1))
            .thread_name(|i| format!("ggrpc-wgpu-{i}"))
            .build()
            .map_err(|e| DeviceError::op("open", e.to_string()))?;
        let mut gpu = Gpu {
            device,
            queue,
            limits: limits.clone(),
            kernels: Default::default(),
            gelu_tables,
            scratch_pool: Default::default(),
            tally: Tally::default(),
            gpu_kernels: gpu_kernels(&info).into(),
        };
        // The probe's own pipeline does not depend on the flag it decides.
        let fused = probe::fma_is_fused(&gpu);
        gpu.kernels.set_fused_fma(fused);
        // The counters start with the opened device, not with its own probe.
        gpu.tally = Tally::default();
        tracing::debug!(
            device = name,
            fused,
            "fma(): hardware if fused, else emulated"
        );
        let total = discovery::total_memory(&info, &limits, opts.mem_cap);
        // A software adapter allocates host memory: bound it like the CPU device, `-m` or not.
        let cap = if info.device_type == wgpu::DeviceType::Cpu {
            Some(total)
        } else {
            opts.mem_cap
        };
        Ok(WgpuDevice {
            name: name.to_string(),
            total,
            info,
            gpu: Arc::new(gpu),
            cap,
            used: Default::default(),
            pool,
        })
    }

    /// The adapter as wgpu describes it.
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Runs a graph with `host` as the fallback kernel (tests inject their own).
    pub fn compute_with(
        &self,
        graph: &Graph,
        buffers: &BufferSet,
        host: cpu_ops::HostKernel,
    ) -> Result<exec::Report, DeviceError> {
        self.pool.install(|| {
            counted(self.gpu.tally.graph_counts(|| {
                exec::Plan::new(&self.gpu, graph, buffers)?.run(graph, buffers, host, true)
            }))
        })
    }

    /// `compute_with`, reusing the plan kept in `cache` from an earlier run of the same stored graph
    /// (GRAPH_RECOMPUTE), or planning and keeping it there.
    pub fn compute_cached_with(
        &self,
        graph: &Graph,
        buffers: &BufferSet,
        host: cpu_ops::HostKernel,
        cache: &GraphCache,
    ) -> Result<exec::Report, DeviceError> {
        let mut slot = cache
            .0
            .lock()
            .map_err(|_| DeviceError::op("wgpu", "graph cache poisoned"))?;
        let kept = slot
            .as_ref()
            .and_then(|b| b.downcast_ref::<exec::Plan>())
            .filter(|p| p.is_for(&self.gpu));
        if let Some(plan) = kept {
            return self.pool.install(|| {
                counted(
                    self.gpu
                        .tally
                        .graph_counts(|| plan.run(graph, buffers, host, false)),
                )
            });
        }
        // Planning reads leaves back: it belongs to the graph's numbers, on the same thread.
        let ((plan, mut report), counts) = self.pool.install(|| {
            self.gpu.tally.graph_counts(|| {
                let plan = exec::Plan::new(&self.gpu, graph, buffers)?;
                let report = plan.run(graph, buffers, host, true)?;
                Ok::<_, DeviceError>((plan, report))
            })
        })?;
        report.counts = counts;
        *slot = Some(Box::new(plan));
        Ok(report)
    }
}

/// A run's report with the numbers its graph scope counted.
fn counted(
    r: Result<(exec::Report, GraphCounts), DeviceError>,
) -> Result<exec::Report, DeviceError> {
    r.map(|(report, counts)| exec::Report { counts, ..report })
}

/// ggml's GELU tables in a storage buffer (256 KiB), so GELU on the GPU is the CPU's value exactly.
fn upload_gelu_tables(device: &wgpu::Device, queue: &wgpu::Queue) -> wgpu::Buffer {
    let table = cpu_ops::gelu_tables_f16();
    let bytes: &[u8] = bytemuck::cast_slice(&table);
    let buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("ggrpc-gelu-tables"),
        size: bytes.len() as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&buf, 0, bytes);
    buf
}

/// The error for a raised index flag: the same words as the CPU kernels' checks.
fn index_error(flags: u32) -> DeviceError {
    use kernels::scratch::{FLAG_GET_ROWS, FLAG_SET_ROWS};
    let op = if flags & FLAG_GET_ROWS != 0 {
        "GET_ROWS"
    } else if flags & FLAG_SET_ROWS != 0 {
        "SET_ROWS"
    } else {
        "wgpu"
    };
    DeviceError::op(op, "row index out of range (found by the GPU kernel)")
}

impl Device for WgpuDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> String {
        self.info.name.clone()
    }

    fn details(&self) -> Option<String> {
        let i = &self.info;
        let served = if discovery::kind_of(i) == super::DeviceKind::Software {
            ", software: served only when named with --device"
        } else {
            ""
        };
        Some(format!(
            "type {:?}, {:?}, driver {} {}{served}",
            i.device_type, i.backend, i.driver, i.driver_info
        ))
    }

    fn memory(&self) -> Memory {
        let used = self.used.bytes();
        Memory {
            free: self.total.saturating_sub(used),
            total: self.total,
        }
    }

    fn alignment(&self) -> u64 {
        // Tensors at this alignment can be bound directly (storage offsets), and it is a word.
        u64::from(self.gpu.limits.min_storage_buffer_offset_alignment).max(WORD)
    }

    fn max_size(&self) -> u64 {
        self.gpu.limits.max_buffer_size
    }

    fn alloc(&self, size: usize) -> Option<Arc<dyn Buffer>> {
        super::reserve_and_alloc(&self.used, self.cap, size, |used| {
            WgpuBuffer::new(self.gpu.clone(), size, used)
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
            src.as_any().downcast_ref::<WgpuBuffer>(),
            dst.as_any().downcast_ref::<WgpuBuffer>(),
        ) else {
            return Ok(false);
        };
        s.check(src_offset, len)?;
        d.check(dst_offset, len)?;
        let aligned = [src_offset, dst_offset, len].iter().all(|v| v % 4 == 0);
        // wgpu copies whole words between distinct buffers; the session goes through the host otherwise.
        if !aligned || s.buf == d.buf || !Arc::ptr_eq(&s.gpu, &self.gpu) {
            return Ok(false);
        }
        if len == 0 {
            return Ok(true);
        }
        d.invalidate(dst_offset as u64, len as u64);
        self.gpu.scoped("copy", || {
            let mut enc = self
                .gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            enc.copy_buffer_to_buffer(
                &s.buf,
                src_offset as u64,
                &d.buf,
                dst_offset as u64,
                len as u64,
            );
            self.gpu.submit(enc.finish(), 0);
        })?;
        Ok(true)
    }

    fn check_graph(&self, graph: &Graph) -> Result<(), DeviceError> {
        for node in graph.compute_nodes() {
            if kernels::supports(graph, node) {
                continue;
            }
            cpu_ops::check(graph, node)
                .map_err(|reason| DeviceError::op(graph.tensors[node].op.name(), reason))?;
        }
        Ok(())
    }

    fn compute(&self, graph: &Graph, buffers: &BufferSet) -> Result<(), DeviceError> {
        log_report(&self.compute_with(graph, buffers, cpu_ops::run)?);
        Ok(())
    }

    fn compute_cached(
        &self,
        graph: &Graph,
        buffers: &BufferSet,
        cache: &GraphCache,
    ) -> Result<(), DeviceError> {
        log_report(&self.compute_cached_with(graph, buffers, cpu_ops::run, cache)?);
        Ok(())
    }

    fn counters(&self) -> DeviceCounters {
        self.gpu.tally.snapshot(&self.used)
    }
}

/// Whether block-type products take the kernels shaped for GPUs: on GPUs, not on CPU adapters (each
/// lane of lavapipe's SIMD is better off with a row of its own); `GGRPC_WGPU_GPU_KERNELS=0|1` overrides
/// (to compare the two on one adapter).
fn gpu_kernels(info: &wgpu::AdapterInfo) -> bool {
    match std::env::var("GGRPC_WGPU_GPU_KERNELS").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => info.device_type != wgpu::DeviceType::Cpu,
    }
}

/// One debug line per graph: where its nodes ran and what it cost the GPU (counted, not timed).
fn log_report(report: &exec::Report) {
    let c = &report.counts;
    tracing::debug!(
        native = report.native,
        fallback = ?report.fallback,
        replayed = report.replayed,
        dispatches = c.dispatches,
        submits = c.submits,
        readbacks = c.readbacks,
        "wgpu graph done"
    );
}
