//! Device memory: one `wgpu::Buffer` per ggml buffer, its size rounded up to a whole word so that
//! copies of any byte range can be widened to word boundaries.
//!
//! Each buffer keeps a host *shadow* of the small ranges the host last wrote (SET_TENSOR of token
//! positions) or read back, so that planning a graph can use a leaf's values (ROPE's positions)
//! without a GPU round trip. Whatever writes device memory otherwise (a graph's kernels, device-side
//! copies, fills) invalidates the ranges it touches.

use std::any::Any;
use std::sync::{Arc, Mutex};

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
    /// (offset, bytes) of ranges whose current contents the host knows, oldest first.
    shadow: Mutex<Vec<(u64, Vec<u8>)>>,
}

/// Largest range kept in a shadow, and most ranges kept per buffer (the oldest go first).
const SHADOW_BYTES: usize = 64 << 10;
const SHADOW_RANGES: usize = 16;

/// Whether `[a, a + la)` and `[b, b + lb)` share a byte.
fn overlaps(a: u64, la: u64, b: u64, lb: u64) -> bool {
    a < b.saturating_add(lb) && b < a.saturating_add(la) && la > 0 && lb > 0
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
            shadow: Mutex::default(),
        })
    }

    /// Records that bytes `[offset, offset + data.len())` now hold `data` (after a host write, or a
    /// readback with no GPU work pending).
    pub(crate) fn shadow_store(&self, offset: u64, data: &[u8]) {
        if data.len() > SHADOW_BYTES {
            return self.invalidate(offset, data.len() as u64);
        }
        let Ok(mut sh) = self.shadow.lock() else {
            return;
        };
        let len = data.len() as u64;
        // Inside a known range: patch it (a partial update of a position tensor).
        if let Some((o, b)) = sh
            .iter_mut()
            .find(|(o, b)| *o <= offset && offset + len <= *o + b.len() as u64)
        {
            let at = (offset - *o) as usize;
            b[at..at + data.len()].copy_from_slice(data);
            return;
        }
        sh.retain(|(o, b)| !overlaps(*o, b.len() as u64, offset, len));
        if sh.len() >= SHADOW_RANGES {
            sh.remove(0);
        }
        sh.push((offset, data.to_vec()));
    }

    /// The host's copy of bytes `[offset, offset + len)`, if a shadow range holds them all.
    pub(crate) fn shadow_get(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let sh = self.shadow.lock().ok()?;
        let (o, b) = sh
            .iter()
            .find(|(o, b)| *o <= offset && offset + len <= *o + b.len() as u64)?;
        let at = (offset - o) as usize;
        Some(b[at..at + len as usize].to_vec())
    }

    /// Forgets what the host knew of bytes `[offset, offset + len)`: something on the GPU writes them.
    pub(crate) fn invalidate(&self, offset: u64, len: u64) {
        if let Ok(mut sh) = self.shadow.lock() {
            sh.retain(|(o, b)| !overlaps(*o, b.len() as u64, offset, len));
        }
    }

    /// Writes `data` at `offset`; `shadow` says whether to keep a host copy (SET_TENSOR) or only
    /// forget the range (a fallback node's result, which later kernels of its graph may overwrite).
    pub(crate) fn write_at(
        &self,
        offset: usize,
        data: &[u8],
        shadow: bool,
    ) -> Result<(), DeviceError> {
        self.check(offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let (start, end) = (offset as u64, (offset + data.len()) as u64);
        let (a0, a1) = (align_down(start, WORD), align_up(end, WORD));
        if a0 == start && a1 == end {
            self.gpu
                .scoped("write", || self.gpu.queue.write_buffer(&self.buf, a0, data))?;
            self.remember(start, data, shadow);
            return Ok(());
        }
        // Unaligned edges: the whole words go as a queue write, the partial edge words through the
        // fill kernel, which keeps the bytes around the range as they are (no readback).
        let (m0, m1) = (align_up(start, WORD), align_down(end, WORD));
        if m0 < m1 {
            let mid = &data[(m0 - start) as usize..(m1 - start) as usize];
            self.gpu
                .scoped("write", || self.gpu.queue.write_buffer(&self.buf, m0, mid))?;
        }
        let mut edges = Vec::new();
        for w in [a0, a1 - WORD] {
            let (lo, hi) = (start.max(w), end.min(w + WORD));
            if (lo, hi) == (w, w + WORD) || edges.iter().any(|&(l, _, _)| l == lo) {
                continue;
            }
            let mut word = [0u8; 4];
            for b in lo..hi {
                word[(b - w) as usize] = data[(b - start) as usize];
            }
            edges.push((lo, hi, u32::from_le_bytes(word)));
        }
        kernels::fill::call_edges(&self.gpu, &self.buf, &edges)?;
        self.remember(start, data, shadow);
        Ok(())
    }

    fn remember(&self, offset: u64, data: &[u8], shadow: bool) {
        if shadow {
            self.shadow_store(offset, data);
        } else {
            self.invalidate(offset, data.len() as u64);
        }
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
        self.write_at(offset, data, true)
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
        self.invalidate(start, end - start);
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
