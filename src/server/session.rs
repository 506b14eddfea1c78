//! One connection's state: its buffers and stored graphs, and the semantics of every command.
//! No I/O here beyond device memory and the cache files; `connection` does the socket side.

use std::collections::HashMap;
use std::sync::Arc;

use super::{SessionError, Shared};
use crate::device::{Buffer, BufferSet, Device, GraphCache};
use crate::ggml::{Graph, Tensor};
use crate::proto::{
    AllocBuffer, BufferLookup, CopyTensor, GetAllocSize, GetTensor, MemsetTensor, ProtoError,
    SetTensorHash, SetTensorHeader, WireGraph, WireTensor, build_graph, decode_tensor,
};

/// Buffers larger than this are refused (each buffer gets a window of this size in the address space).
const WINDOW_BITS: u32 = 40;

/// A buffer allocated by this session.
struct SessionBuffer {
    /// Index of the device that owns it.
    device: usize,
    /// Synthetic base address handed to the client.
    base: u64,
    buf: Arc<dyn Buffer>,
}

/// A graph kept for GRAPH_RECOMPUTE, with the buffers it needs kept alive.
#[derive(Clone)]
pub struct StoredGraph {
    pub graph: Arc<Graph>,
    pub buffers: Arc<BufferSet>,
    /// What the device derived from the graph (see `Device::compute_cached`).
    pub cache: Arc<GraphCache>,
}

/// Where a SET_TENSOR's data goes once validated.
pub struct WriteTarget {
    pub buf: Arc<dyn Buffer>,
    pub offset: usize,
}

pub struct Session {
    shared: Arc<Shared>,
    buffers: HashMap<u64, SessionBuffer>,
    /// Last graph per device (PROTOCOL.md §5.5).
    graphs: Vec<Option<StoredGraph>>,
}

impl BufferLookup for Session {
    fn buffer(&self, handle: u64) -> Option<(u64, u64)> {
        self.buffers
            .get(&handle)
            .map(|b| (b.base, b.buf.size() as u64))
    }
}

impl Session {
    pub fn new(shared: Arc<Shared>) -> Self {
        let n = shared.devices.len();
        Session {
            shared,
            buffers: HashMap::new(),
            graphs: vec![None; n],
        }
    }

    fn device(&self, index: u32) -> Result<&Arc<dyn Device>, SessionError> {
        self.shared
            .devices
            .get(index as usize)
            .ok_or(SessionError::BadDevice(index))
    }

    pub fn device_count(&self) -> u32 {
        self.shared.devices.len() as u32
    }

    pub fn alignment(&self, dev: u32) -> Result<u64, SessionError> {
        Ok(self.device(dev)?.alignment())
    }

    pub fn max_size(&self, dev: u32) -> Result<u64, SessionError> {
        Ok(self.device(dev)?.max_size().min(1 << WINDOW_BITS))
    }

    pub fn memory(&self, dev: u32) -> Result<(u64, u64), SessionError> {
        let m = self.device(dev)?.memory();
        Ok((m.free, m.total))
    }

    /// ALLOC_BUFFER: `(handle, size)`, or `(0, 0)` when the device refuses.
    pub fn alloc(&mut self, req: AllocBuffer) -> Result<(u64, u64), SessionError> {
        let device = self.device(req.device)?.clone();
        if req.size > 1 << WINDOW_BITS {
            return Ok((0, 0));
        }
        let Some(buf) = usize::try_from(req.size)
            .ok()
            .and_then(|size| device.alloc(size))
        else {
            tracing::warn!(
                device = device.name(),
                size = req.size,
                "allocation refused"
            );
            return Ok((0, 0));
        };
        let handle = self.shared.next_handle();
        // A window per live handle; the low 22 bits of the handle cycle through 4M windows.
        let base = if req.size == 0 {
            0
        } else {
            ((handle & ((1 << 22) - 1)) + 1) << WINDOW_BITS
        };
        self.buffers.insert(
            handle,
            SessionBuffer {
                device: req.device as usize,
                base,
                buf,
            },
        );
        Ok((handle, req.size))
    }

    fn session_buffer(&self, handle: u64) -> Result<&SessionBuffer, SessionError> {
        self.buffers
            .get(&handle)
            .ok_or(SessionError::Proto(ProtoError::UnknownBuffer(handle)))
    }

    pub fn buffer_base(&self, handle: u64) -> Result<u64, SessionError> {
        Ok(self.session_buffer(handle)?.base)
    }

    /// FREE_BUFFER: also drops every stored graph (they may point into it).
    pub fn free(&mut self, handle: u64) -> Result<(), SessionError> {
        self.buffers
            .remove(&handle)
            .ok_or(SessionError::Proto(ProtoError::UnknownBuffer(handle)))?;
        self.graphs.iter_mut().for_each(|g| *g = None);
        Ok(())
    }

    pub fn clear(&mut self, handle: u64, value: u8) -> Result<(), SessionError> {
        let b = self.session_buffer(handle)?;
        b.buf.fill(0, b.buf.size(), value)?;
        Ok(())
    }

    /// A tensor that must live in one of this session's buffers.
    fn placed_tensor(
        &self,
        w: &WireTensor,
    ) -> Result<(Tensor, &SessionBuffer, usize), SessionError> {
        let t = decode_tensor(w, self)?;
        let data = t.data.ok_or(ProtoError::UnknownBuffer(w.buffer))?;
        let b = self.session_buffer(data.buffer)?;
        Ok((t, b, data.offset))
    }

    /// Checks `offset..offset+len` inside the tensor and its buffer; returns the buffer offset.
    fn region(
        &self,
        w: &WireTensor,
        offset: u64,
        len: u64,
    ) -> Result<(Arc<dyn Buffer>, usize), SessionError> {
        let (t, b, start) = self.placed_tensor(w)?;
        let nbytes = t.nbytes().unwrap_or(usize::MAX) as u64;
        let end = offset.checked_add(len).ok_or(ProtoError::Overflow)?;
        if end > nbytes {
            return Err(ProtoError::OutOfTensor {
                offset,
                len,
                nbytes,
            }
            .into());
        }
        // decode_tensor already put the whole tensor inside the buffer, so this cannot overflow it.
        let at = (start as u64)
            .checked_add(offset)
            .ok_or(ProtoError::Overflow)?;
        Ok((
            b.buf.clone(),
            usize::try_from(at).map_err(|_| ProtoError::Overflow)?,
        ))
    }

    /// Validates a SET_TENSOR header for `len` data bytes.
    pub fn set_tensor_target(
        &self,
        h: &SetTensorHeader,
        len: u64,
    ) -> Result<WriteTarget, SessionError> {
        let (buf, offset) = self.region(&h.tensor, h.offset, len)?;
        Ok(WriteTarget { buf, offset })
    }

    /// SET_TENSOR_HASH: loads from the cache when a file with this hash exists and verifies.
    pub fn set_tensor_hash(&self, req: &SetTensorHash) -> Result<bool, SessionError> {
        let Some(cache) = &self.shared.cache else {
            return Ok(false);
        };
        let Some(file_len) = cache.len_of(req.hash) else {
            return Ok(false);
        };
        let target = self.region(&req.tensor, req.offset, file_len)?;
        let Some(data) = cache.load(req.hash, file_len) else {
            return Ok(false);
        };
        target.0.write(target.1, &data)?;
        Ok(true)
    }

    pub fn get_tensor(&self, req: &GetTensor) -> Result<Vec<u8>, SessionError> {
        let (buf, offset) = self.region(&req.tensor, req.offset, req.size)?;
        let mut out = vec![0u8; usize::try_from(req.size).map_err(|_| ProtoError::Overflow)?];
        buf.read(offset, &mut out)?;
        Ok(out)
    }

    /// COPY_TENSOR: copies `nbytes(src)` bytes into dst's memory (within dst's buffer).
    pub fn copy_tensor(&self, req: &CopyTensor) -> Result<bool, SessionError> {
        let (src, sb, soff) = self.placed_tensor(&req.src)?;
        let (_, db, doff) = self.placed_tensor(&req.dst)?;
        let len = src.nbytes().ok_or(ProtoError::Overflow)?;
        if doff.checked_add(len).is_none_or(|end| end > db.buf.size()) {
            return Err(ProtoError::OutOfBuffer {
                data: req.dst.data,
                len: len as u64,
                base: db.base,
                size: db.buf.size() as u64,
            }
            .into());
        }
        let device = self
            .shared
            .devices
            .get(db.device)
            .ok_or(SessionError::BadDevice(db.device as u32))?;
        let same_device = sb.device == db.device;
        if !(same_device && device.copy(sb.buf.as_ref(), soff, db.buf.as_ref(), doff, len)?) {
            // Different devices (or a device without a direct path): go through host memory.
            let mut tmp = vec![0u8; len];
            sb.buf.read(soff, &mut tmp)?;
            db.buf.write(doff, &tmp)?;
        }
        Ok(true)
    }

    pub fn memset(&self, req: &MemsetTensor) -> Result<(), SessionError> {
        let (buf, offset) = self.region(&req.tensor, req.offset, req.size)?;
        if req.size > 0 {
            buf.fill(offset, req.size as usize, req.value)?;
        }
        Ok(())
    }

    /// INIT_TENSOR: nothing to initialise on our devices, but the tensor must be valid.
    pub fn init_tensor(&self, w: &WireTensor) -> Result<(), SessionError> {
        let t = decode_tensor(w, self)?;
        if t.data.is_none() {
            tracing::debug!("init_tensor: tensor with null buffer");
        }
        Ok(())
    }

    /// GET_ALLOC_SIZE: our devices need no padding, so `nbytes`.
    pub fn alloc_size(&self, req: &GetAllocSize) -> Result<u64, SessionError> {
        self.device(req.device)?;
        let t = decode_tensor(&req.tensor, self)?;
        Ok(t.nbytes().ok_or(ProtoError::Overflow)? as u64)
    }

    /// GRAPH_COMPUTE, first half: decode, link and check the graph; the caller runs `compute` off the
    /// async runtime and then calls `store_graph`.
    pub fn prepare_graph(&self, payload: &[u8]) -> Result<(usize, StoredGraph), SessionError> {
        let wg = WireGraph::parse(payload)?;
        let device = self.device(wg.device)?;
        let graph = build_graph(&wg, self)?;
        if tracing::enabled!(target: "ggrpc::graph", tracing::Level::TRACE) {
            for &n in &graph.nodes {
                let t = &graph.tensors[n];
                let srcs: Vec<String> = t
                    .src
                    .iter()
                    .flatten()
                    .map(|&s| {
                        let s = &graph.tensors[s];
                        format!("{}:{}{:?}{:?}", s.name, s.typ.name(), s.ne, s.nb)
                    })
                    .collect();
                tracing::trace!(target: "ggrpc::graph", "{} {} {} {:?} {:?} flags={} params={:?} <- {}",
                    t.name, t.op.name(), t.typ.name(), t.ne, t.nb, t.flags, t.op_params, srcs.join(" , "));
            }
        }
        device.check_graph(&graph)?;
        let mut buffers = BufferSet::new();
        for t in &graph.tensors {
            if let Some(b) = t
                .data
                .and_then(|d| self.buffers.get(&d.buffer).map(|b| (d.buffer, b)))
            {
                buffers.entry(b.0).or_insert_with(|| b.1.buf.clone());
            }
        }
        Ok((
            wg.device as usize,
            StoredGraph {
                graph: Arc::new(graph),
                buffers: Arc::new(buffers),
                cache: Default::default(),
            },
        ))
    }

    pub fn store_graph(&mut self, device: usize, g: StoredGraph) {
        if let Some(slot) = self.graphs.get_mut(device) {
            *slot = Some(g);
        }
    }

    /// GRAPH_RECOMPUTE: the stored graph of `dev`, or an error if there is none.
    pub fn stored_graph(&self, dev: u32) -> Result<StoredGraph, SessionError> {
        self.device(dev)?;
        self.graphs
            .get(dev as usize)
            .cloned()
            .flatten()
            .ok_or(SessionError::NoStoredGraph(dev))
    }

    pub fn device_arc(&self, dev: usize) -> Option<Arc<dyn Device>> {
        self.shared.devices.get(dev).cloned()
    }

    /// The cache, if `-c` was given.
    pub fn cache(&self) -> Option<&super::cache::Cache> {
        self.shared.cache.as_deref()
    }
}
