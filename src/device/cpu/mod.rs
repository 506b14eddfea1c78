//! The CPU device: host memory and the reference kernels, run on a `-t`-sized thread pool.

mod buffer;
mod exec;
pub mod ops;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use buffer::{CPU_BUFFER_ALIGN, CpuBuffer};

use super::{Buffer, BufferSet, Device, DeviceError, Memory};
use crate::ggml::Graph;

pub struct CpuDevice {
    description: String,
    /// `-m` cap in bytes, if any.
    cap: Option<u64>,
    /// Bytes allocated by all sessions.
    used: Arc<AtomicU64>,
    pool: rayon::ThreadPool,
}

impl CpuDevice {
    /// A CPU device with `threads` workers and an optional memory cap in bytes.
    pub fn new(threads: usize, cap: Option<u64>) -> Result<Self, DeviceError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("ggrpc-cpu-{i}"))
            .build()
            .map_err(|e| DeviceError::op("init", e.to_string()))?;
        Ok(CpuDevice {
            description: cpu_model(),
            cap,
            used: Arc::new(AtomicU64::new(0)),
            pool,
        })
    }

    /// Bytes currently allocated on this device.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

impl Device for CpuDevice {
    fn name(&self) -> &str {
        "CPU"
    }

    fn description(&self) -> String {
        self.description.clone()
    }

    fn memory(&self) -> Memory {
        let total = physical_memory();
        match self.cap {
            Some(cap) => Memory {
                free: cap.saturating_sub(self.used()).min(total),
                total: cap.min(total),
            },
            None => Memory { free: total, total },
        }
    }

    fn alignment(&self) -> u64 {
        CPU_BUFFER_ALIGN as u64
    }

    fn max_size(&self) -> u64 {
        u64::MAX
    }

    fn alloc(&self, size: usize) -> Option<Arc<dyn Buffer>> {
        super::reserve_and_alloc(&self.used, self.cap, size, |used| {
            CpuBuffer::new(size, used)
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
            src.as_any().downcast_ref::<CpuBuffer>(),
            dst.as_any().downcast_ref::<CpuBuffer>(),
        ) else {
            return Ok(false);
        };
        let from = s.ptr_at(src_offset, len)?;
        let to = d.ptr_at(dst_offset, len)?;
        // SAFETY: both ranges were checked against their buffers; `copy` allows overlap.
        unsafe { std::ptr::copy(from, to, len) };
        Ok(true)
    }

    fn check_graph(&self, graph: &Graph) -> Result<(), DeviceError> {
        for node in graph.compute_nodes() {
            ops::check(graph, node)
                .map_err(|reason| DeviceError::op(graph.tensors[node].op.name(), reason))?;
        }
        Ok(())
    }

    fn compute(&self, graph: &Graph, buffers: &BufferSet) -> Result<(), DeviceError> {
        self.pool.install(|| exec::run_graph(graph, buffers))
    }
}

/// The CPU model name from /proc/cpuinfo, as the reference banner shows it.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Physical RAM in bytes (the reference reports pages x page size, free == total).
fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(8 << 30)
}
