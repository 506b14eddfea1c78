//! Host copies of small leaf tensors a kernel needs the *values* of while the graph is planned (ROPE's
//! positions and freq factors), and the scratch regions derived from them, which a replayed plan
//! rewrites before each run. Leaves are set by the client before the compute, so their contents are
//! final when planning starts, unless a node that runs before the consumer writes their memory (then
//! there are no values to plan with). The values come from the buffer's host shadow (what SET_TENSOR
//! wrote, see `buffer`) without touching the GPU; only a leaf the host has not seen (written by a
//! device-side copy or an earlier graph) is read back, once, and then shadowed too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Ctx, Window};
use crate::device::DeviceError;
use crate::device::host_kernels as cpu_ops;
use crate::device::wgpu::gpu::{WORD, align_down, align_up};
use crate::ggml::{DataRef, Graph, MAX_SRC, Op};

/// Largest leaf read back (bytes): positions and freq factors are a few KiB.
const MAX_LEAF: u64 = 1 << 20;

/// What a ROPE cos/sin table depends on: positions and freq-factor tensors, op parameters, shape.
pub type TableKey = (Option<usize>, Option<usize>, [i32; 16], [usize; 4]);

#[derive(Default)]
pub struct HostCopies {
    leaves: Mutex<HashMap<usize, Arc<Vec<u8>>>>,
    /// (ROPE node, its table's region), in planning order.
    refresh: Mutex<Vec<(usize, Window)>>,
    /// Tables already written this run: every layer's ROPE shares one per (positions, parameters).
    tables: Mutex<HashMap<TableKey, Window>>,
}

impl HostCopies {
    /// The region of a table this run already wrote, if any.
    pub fn table(&self, key: &TableKey) -> Option<Window> {
        self.tables.lock().ok()?.get(key).cloned()
    }

    pub fn keep_table(&self, key: TableKey, win: Window) {
        if let Ok(mut t) = self.tables.lock() {
            t.insert(key, win);
        }
    }

    pub fn record_refresh(&self, node: usize, win: Window) {
        if let Ok(mut r) = self.refresh.lock() {
            r.push((node, win));
        }
    }

    /// The regions recorded while planning.
    pub fn take_refresh(&self) -> Vec<(usize, Window)> {
        self.refresh
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

impl Ctx<'_> {
    /// The bytes of leaf tensor `idx` (a graph source that no node computes) as node `consumer`
    /// reads them; `None` for computed tensors, views of them, leaves too large to read back cheaply,
    /// and leaves a node before `consumer` writes.
    pub fn leaf_bytes(
        &self,
        graph: &Graph,
        idx: usize,
        consumer: usize,
    ) -> Result<Option<Arc<Vec<u8>>>, DeviceError> {
        let t = &graph.tensors[idx];
        if t.op != Op::None || written_before(graph, idx, consumer) {
            return Ok(None);
        }
        if let Some(b) = self
            .host
            .leaves
            .lock()
            .ok()
            .and_then(|m| m.get(&idx).cloned())
        {
            return Ok(Some(b));
        }
        let (wb, off, len) = self.place(t)?;
        if len > MAX_LEAF {
            return Ok(None);
        }
        let bytes = match wb.shadow_get(off, len) {
            Some(b) => b,
            None => {
                let start = align_down(off, WORD);
                let end = align_up(off + len, WORD).min(wb.buf.size());
                let words = self.gpu.read_words(&wb.buf, start, end - start)?;
                let skip = (off - start) as usize;
                let Some(bytes) = words.get(skip..skip + len as usize) else {
                    return Ok(None);
                };
                // Nothing of the graph has run yet: these are the memory's contents.
                wb.shadow_store(off, bytes);
                bytes.to_vec()
            }
        };
        let bytes = Arc::new(bytes);
        if let Ok(mut m) = self.host.leaves.lock() {
            m.insert(idx, bytes.clone());
        }
        Ok(Some(bytes))
    }
}

/// Whether a compute node that runs before `consumer` writes memory of tensor `idx`.
pub fn written_before(graph: &Graph, idx: usize, consumer: usize) -> bool {
    let Some(d) = graph.tensors[idx].data else {
        return false;
    };
    let len = graph.tensors[idx].nbytes().unwrap_or(usize::MAX);
    graph
        .compute_nodes()
        .take_while(|&n| n != consumer)
        .flat_map(|n| written_by(graph, n))
        .any(|(w, wl)| {
            w.buffer == d.buffer
                && w.offset < d.offset.saturating_add(len)
                && d.offset < w.offset.saturating_add(wl)
        })
}

/// The memory node `n` writes: its own, and the sources it updates in place.
pub fn written_by(graph: &Graph, n: usize) -> impl Iterator<Item = (DataRef, usize)> + '_ {
    let t = &graph.tensors[n];
    let srcs = (0..MAX_SRC)
        .filter(move |&k| cpu_ops::writes_src(t.op, k))
        .filter_map(move |k| t.src[k]);
    std::iter::once(n).chain(srcs).filter_map(move |i| {
        let s = &graph.tensors[i];
        Some((s.data?, s.nbytes()?))
    })
}
