//! The opened wgpu device shared by the `Device`, its buffers and the executor: queue, limits, kernel
//! registry, and the two primitives everything else uses (error-scoped work, readback).

use crate::device::DeviceError;

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
}

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
            self.queue.submit([enc.finish()]);
            staging
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| drop(tx.send(r)));
        self.wait()?;
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
