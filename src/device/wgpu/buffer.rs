//! Device memory: one `wgpu::Buffer` per ggml buffer, its size rounded up to a whole word so that
//! copies of any byte range can be widened to word boundaries.

use std::any::Any;
use std::sync::Arc;

use super::gpu::{Gpu, WORD, align_down, align_up};
use super::kernels;
use crate::device::{Buffer, DeviceError, Usage};

pub struct WgpuBuffer {
    pub(crate) gpu: Arc<Gpu>,
    pub(crate) buf: wgpu::Buffer,
    /// The size the client asked for; `buf` may be up to 3 bytes larger.
    len: usize,
    /// The owning device's usage, given back on drop.
    used: Arc<Usage>,
}

impl WgpuBuffer {
    /// Creates a buffer of `len` bytes (zeroed by wgpu); `None` when the device refuses.
    pub(crate) fn new(gpu: Arc<Gpu>, len: usize, used: Arc<Usage>) -> Option<Self> {
        let size = align_up((len as u64).max(WORD), WORD);
        if size > gpu.limits.max_buffer_size {
            return None;
        }
        let buf = gpu
            .scoped("alloc", || {
                gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("ggrpc"),
                    size,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .map_err(|e| tracing::warn!("wgpu allocation of {size} bytes failed: {e}"))
            .ok()?;
        used.buffer_created();
        Some(WgpuBuffer {
            gpu,
            buf,
            len,
            used,
        })
    }

    pub(crate) fn check(&self, offset: usize, len: usize) -> Result<(), DeviceError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(DeviceError::OutOfRange {
                offset,
                len,
                size: self.len,
            }),
        }
    }
}

impl Drop for WgpuBuffer {
    fn drop(&mut self) {
        self.used.buffer_dropped(self.len as u64);
    }
}

impl Buffer for WgpuBuffer {
    fn size(&self) -> usize {
        self.len
    }

    fn write(&self, offset: usize, data: &[u8]) -> Result<(), DeviceError> {
        self.check(offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let (start, end) = (offset as u64, (offset + data.len()) as u64);
        let (a0, a1) = (align_down(start, WORD), align_up(end, WORD));
        if a0 == start && a1 == end {
            return self
                .gpu
                .scoped("write", || self.gpu.queue.write_buffer(&self.buf, a0, data));
        }
        // Unaligned edges: widen to whole words, keeping the bytes around the range as they are.
        let mut words = vec![0u8; (a1 - a0) as usize];
        let head = self.gpu.read_words(&self.buf, a0, WORD)?;
        words[..4].copy_from_slice(&head);
        let tail = self.gpu.read_words(&self.buf, a1 - WORD, WORD)?;
        let n = words.len();
        words[n - 4..].copy_from_slice(&tail);
        let at = (start - a0) as usize;
        words[at..at + data.len()].copy_from_slice(data);
        self.gpu.scoped("write", || {
            self.gpu.queue.write_buffer(&self.buf, a0, &words)
        })
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), DeviceError> {
        self.check(offset, out.len())?;
        if out.is_empty() {
            return Ok(());
        }
        let (start, end) = (offset as u64, (offset + out.len()) as u64);
        let a0 = align_down(start, WORD);
        let words = self
            .gpu
            .read_words(&self.buf, a0, align_up(end, WORD) - a0)?;
        let at = (start - a0) as usize;
        out.copy_from_slice(&words[at..at + out.len()]);
        Ok(())
    }

    fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), DeviceError> {
        self.check(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let (start, end) = (offset as u64, (offset + len) as u64);
        if value == 0 && start % WORD == 0 && end % WORD == 0 {
            return self.gpu.scoped("fill", || {
                let mut enc = self
                    .gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
                enc.clear_buffer(&self.buf, start, Some(end - start));
                self.gpu.submit(enc.finish(), 0);
            });
        }
        kernels::fill::call_fill(&self.gpu, &self.buf, start, end, value)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
