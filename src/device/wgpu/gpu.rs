//! The opened wgpu device shared by the `Device`, its buffers and the executor: queue, limits, kernel
//! registry, and the two primitives everything else uses (error-scoped work, readback).

use std::sync::Mutex;

use crate::device::{DeviceError, GraphCounts, Tally};

use super::kernels::Kernels;

/// wgpu's copy granularity: offsets and sizes of buffer copies and `write_buffer` are multiples of 4.
pub const WORD: u64 = 4;

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// The limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
    /// Compiled pipelines, created on first use.
    pub kernels: Kernels,
    /// ggml's GELU and GELU_QUICK f16 tables (`cpu::ops::gelu_tables_f16`), bound by the unary kernels.
    pub gelu_tables: wgpu::Buffer,
    /// Scratch buffers no graph is using (see `kernels::scratch`).
    pub scratch_pool: Mutex<Vec<wgpu::Buffer>>,
    /// Work counters; submissions and readbacks are counted here, where they happen.
    pub tally: Tally,
    /// Whether block-type products take the kernels shaped for GPUs (rows split over invocations for
    /// one column, workgroup tiles for more) rather than an invocation per row (for CPU adapters).
    pub gpu_kernels: std::sync::atomic::AtomicBool,
}

/// Scratch buffers kept for reuse; more concurrent graphs than this allocate and drop their own.
const SCRATCH_POOL: usize = 4;

impl Gpu {
    /// Runs `f` inside validation and out-of-memory error scopes and turns a captured error into a
    /// `DeviceError`. Scopes are per thread, so concurrent sessions never see each other's errors.
    pub fn scoped<T>(&self, what: &'static str, f: impl FnOnce() -> T) -> Result<T, DeviceError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let e1 = pollster::block_on(val.pop());
        let e2 = pollster::block_on(oom.pop());
        match e1.or(e2) {
            Some(e) => Err(DeviceError::op(what, format!("wgpu: {e}"))),
            None => Ok(out),
        }
    }

    /// A storage buffer of at least `bytes` for one graph's scratch: the smallest pooled one that is
    /// large enough, else a new one (`None` when the device cannot hold it).
    pub fn take_scratch(&self, bytes: u64) -> Option<wgpu::Buffer> {
        if let Ok(mut pool) = self.scratch_pool.lock() {
            let best = (0..pool.len())
                .filter(|&i| pool[i].size() >= bytes)
                .min_by_key(|&i| pool[i].size());
            if let Some(i) = best {
                return Some(pool.swap_remove(i));
            }
        }
        let size = bytes.next_power_of_two().max(1 << 16);
        if size > self.limits.max_buffer_size {
            return None;
        }
        self.scoped("scratch", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("ggrpc-scratch"),
                size,
                // COPY_DST for zeroing the flag word, COPY_SRC for reading it back.
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        })
        .ok()
    }

    /// Puts a scratch buffer back for the next graph, keeping the largest few.
    pub fn give_scratch(&self, buf: wgpu::Buffer) {
        if let Ok(mut pool) = self.scratch_pool.lock() {
            pool.push(buf);
            pool.sort_by_key(|b| std::cmp::Reverse(b.size()));
            pool.truncate(SCRATCH_POOL);
        }
    }

    /// Submits `cmd`, which records `dispatches` compute dispatches. Every queue submission goes
    /// through here, so the counters see them all.
    pub fn submit(&self, cmd: wgpu::CommandBuffer, dispatches: u64) {
        self.queue.submit([cmd]);
        self.tally.add(GraphCounts {
            dispatches,
            submits: 1,
            ..Default::default()
        });
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> Result<(), DeviceError> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map(|_| ())
            .map_err(|e| DeviceError::op("poll", e.to_string()))
    }

    /// Copies `len` bytes at `offset` (both multiples of 4) of `buf` to host memory.
    pub fn read_words(
        &self,
        buf: &wgpu::Buffer,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, DeviceError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let staging = self.scoped("read", || {
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("ggrpc-readback"),
                size: len,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            enc.copy_buffer_to_buffer(buf, offset, &staging, 0, len);
            self.submit(enc.finish(), 0);
            staging
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| drop(tx.send(r)));
        self.wait()?;
        // The one place the host waits for data from the GPU: every readback is counted here.
        self.tally.add(GraphCounts {
            readbacks: 1,
            ..Default::default()
        });
        rx.recv()
            .map_err(|_| DeviceError::op("read", "map callback dropped"))?
            .map_err(|e| DeviceError::op("read", e.to_string()))?;
        let out = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| DeviceError::op("read", e.to_string()))?
            .to_vec();
        staging.unmap();
        Ok(out)
    }
}

/// Rounds down to a multiple of `a` (a power of two).
pub fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}

/// Rounds up to a multiple of `a` (a power of two).
pub fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}
