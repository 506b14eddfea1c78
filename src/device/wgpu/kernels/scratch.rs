//! Per-graph scratch memory for values a kernel derives from a tensor (MUL_MAT's rounded activations):
//! regions of one pooled device buffer per run. A region is keyed by (tensor, kind), so activations
//! that several products share (the Q, K and V projections) are derived once.
//! With `flags`, the first bytes hold a word kernels set (atomicOr) when a tensor's *contents* would
//! make them index out of bounds (GET_ROWS/SET_ROWS rows): they skip the access, and the run fails
//! once the GPU is done, so the client's connection closes as it does for the CPU device. The word is
//! copied to a small mappable buffer by the graph's last command buffer and mapped with the graph's
//! final fence: checking it costs no submission and no wait of its own.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Window;
use crate::device::DeviceError;
use crate::device::wgpu::gpu::{Gpu, align_up};

/// A pending map of the flag word (`Scratch::map_flags`).
pub struct FlagMap(std::sync::mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>);

/// Region alignment: any storage offset alignment wgpu allows divides it.
const ALIGN: u64 = 256;

/// Bytes reserved at the start of the buffer for the flag word.
const FLAGS: u64 = ALIGN;

/// Flag bits, one per kernel that checks indices.
pub const FLAG_GET_ROWS: u32 = 1;
pub const FLAG_SET_ROWS: u32 = 2;

pub struct Scratch {
    buf: Option<wgpu::Buffer>,
    /// Whether the buffer starts with the (zeroed) flag word.
    flags: bool,
    /// Where the last command buffer copies the flag word for the host (with `flags`).
    staging: Option<wgpu::Buffer>,
    max_binding: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    regions: HashMap<(usize, u32), u64>,
}

impl Scratch {
    /// Room for regions totalling `bytes` (each rounded up by `region_bytes`), and the flag word when
    /// `flags`, from `gpu`'s pool.
    pub fn new(gpu: &Gpu, bytes: u64, flags: bool) -> Scratch {
        let first = if flags { FLAGS } else { 0 };
        let total = bytes + first;
        let buf = (total > 0).then(|| gpu.take_scratch(total)).flatten();
        if let (Some(b), true) = (&buf, flags) {
            // Ordered before any later submission, so every kernel starts from a clear word.
            gpu.queue.write_buffer(b, 0, &[0u8; 4]);
        }
        let flags = flags && buf.is_some();
        let staging = flags
            .then(|| {
                gpu.scoped("scratch", || {
                    gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("ggrpc-flags"),
                        size: 4,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                })
                .ok()
            })
            .flatten();
        Scratch {
            flags: flags && staging.is_some(),
            staging,
            buf,
            max_binding: gpu.limits.max_storage_buffer_binding_size.min(1 << 31),
            state: Mutex::new(State {
                next: first,
                regions: HashMap::new(),
            }),
        }
    }

    /// The flag word's window, `None` when there is none (the kernel then runs on the CPU).
    pub fn flags(&self) -> Option<Window> {
        let buf = self.buf.as_ref().filter(|_| self.flags)?;
        Some(Window {
            buffer: buf.clone(),
            offset: 0,
            size: FLAGS,
        })
    }

    /// Zeroes the flag word again (before a replayed run).
    pub fn clear_flags(&self, gpu: &Gpu) {
        if let Some(b) = self.buf.as_ref().filter(|_| self.flags) {
            gpu.queue.write_buffer(b, 0, &[0u8; 4]);
        }
    }

    /// Records the copy of the flag word for `map_flags` into `enc`; whether there was one to copy.
    pub fn record_flag_copy(&self, enc: &mut wgpu::CommandEncoder) -> bool {
        let (Some(buf), Some(staging), true) = (&self.buf, &self.staging, self.flags) else {
            return false;
        };
        enc.copy_buffer_to_buffer(buf, 0, staging, 0, 4);
        true
    }

    /// Starts mapping the copied flag word; the graph's final `Gpu::wait` completes it, and
    /// `read_flags` reads it. `None` without flags.
    pub fn map_flags(&self) -> Option<FlagMap> {
        let staging = self.staging.as_ref().filter(|_| self.flags)?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| drop(tx.send(r)));
        Some(FlagMap(rx))
    }

    /// The flag word mapped by `map_flags` (call once the GPU is idle); 0 when no kernel raised one.
    pub fn read_flags(&self, map: Option<FlagMap>) -> Result<u32, DeviceError> {
        let (Some(FlagMap(rx)), Some(staging)) = (map, &self.staging) else {
            return Ok(0);
        };
        rx.recv()
            .map_err(|_| DeviceError::op("read", "map callback dropped"))?
            .map_err(|e| DeviceError::op("read", e.to_string()))?;
        let w = {
            let range = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| DeviceError::op("read", e.to_string()))?;
            u32::from_le_bytes([range[0], range[1], range[2], range[3]])
        };
        staging.unmap();
        Ok(w)
    }

    /// Bytes to reserve for a region of `len` bytes.
    pub fn region_bytes(len: u64) -> u64 {
        align_up(len.max(4), ALIGN)
    }

    /// The region for `key`, `len` bytes, and whether it is new (its contents still to be written).
    /// `None` when the scratch buffer is missing or full, or the region is too large to bind.
    pub fn region(&self, key: (usize, u32), len: u64) -> Option<(Window, bool)> {
        let buf = self.buf.as_ref()?;
        let size = Self::region_bytes(len);
        if size > self.max_binding {
            return None;
        }
        let mut st = self.state.lock().ok()?;
        let (offset, fresh) = match st.regions.get(&key) {
            Some(&o) => (o, false),
            None => {
                let o = st.next;
                if o + size > buf.size() {
                    return None;
                }
                st.next = o + size;
                st.regions.insert(key, o);
                (o, true)
            }
        };
        let window = Window {
            buffer: buf.clone(),
            offset,
            size,
        };
        Some((window, fresh))
    }

    /// Returns the buffer to the pool (call once the GPU is done with it).
    pub fn release(self, gpu: &Gpu) {
        if let Some(b) = self.buf {
            gpu.give_scratch(b);
        }
    }
}
