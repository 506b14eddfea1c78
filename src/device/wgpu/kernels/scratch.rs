//! Per-graph scratch memory for values a kernel derives from a tensor (MUL_MAT's rounded activations):
//! regions of one pooled device buffer per run. A region is keyed by (tensor, kind), so activations
//! that several products share (the Q, K and V projections) are derived once.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Window;
use crate::device::wgpu::gpu::{Gpu, align_up};

/// Region alignment: any storage offset alignment wgpu allows divides it.
const ALIGN: u64 = 256;

pub struct Scratch {
    buf: Option<wgpu::Buffer>,
    max_binding: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    regions: HashMap<(usize, u32), u64>,
}

impl Scratch {
    /// Room for regions totalling `bytes` (each rounded up by `region_bytes`), from `gpu`'s pool.
    pub fn new(gpu: &Gpu, bytes: u64) -> Scratch {
        let buf = (bytes > 0).then(|| gpu.take_scratch(bytes)).flatten();
        Scratch {
            buf,
            max_binding: gpu.limits.max_storage_buffer_binding_size.min(1 << 31),
            state: Mutex::default(),
        }
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
