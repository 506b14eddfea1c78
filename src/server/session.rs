//! One connection's state: its buffers and stored graphs, and the semantics of every command.
//! No I/O here beyond device memory and the cache files; `connection` does the socket side (and the
//! server-to-server links of COMM_*).

use std::collections::HashMap;
use std::sync::Arc;

use super::graphs::{GraphStore, StoredGraph};
use super::{SessionError, Shared};
use crate::device::{Buffer, BufferSet, Device};
use crate::ggml::{GgmlType, Tensor};
use crate::proto::{
    AllocBuffer, BufferLookup, CommAllreduce, CopyTensor, GetAllocSize, GetTensor, Major,
    MemsetTensor, ProtoError, SetTensorHash, SetTensorHeader, Tensor2d, WireGraph, WireTensor,
    build_graph, decode_tensor,
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

/// Where a SET_TENSOR's data goes once validated.
pub struct WriteTarget {
    pub buf: Arc<dyn Buffer>,
    pub offset: usize,
}

/// Where SET_TENSOR_2D's rows go (or GET_TENSOR_2D's come from): row `i` at `offset + i * stride`.
pub struct Rows {
    pub buf: Arc<dyn Buffer>,
    pub offset: usize,
    pub size: usize,
    pub n_copies: usize,
    pub stride: usize,
}

impl Rows {
    pub fn row_offset(&self, i: usize) -> usize {
        self.offset + i * self.stride
    }
}

/// The f32 tensor a COMM_ALLREDUCE sums in place, validated.
pub struct AllreduceTarget {
    pub device: usize,
    pub buf: Arc<dyn Buffer>,
    pub offset: usize,
    pub elements: usize,
}

pub struct Session {
    shared: Arc<Shared>,
    buffers: HashMap<u64, SessionBuffer>,
    graphs: GraphStore,
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
        let graphs = GraphStore::new(
            shared.major,
            shared.devices.len(),
            shared.limits.max_graph_cache_bytes,
        );
        Session {
            shared,
            buffers: HashMap::new(),
            graphs,
        }
    }

    /// The protocol major this session speaks.
    pub fn major(&self) -> Major {
        self.shared.major
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
        self.graphs.invalidate_all();
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

    /// Validates a 2D transfer: rows inside the tensor (and so inside its buffer), as the reference
    /// checks them. A read may also not return more bytes than the tensor holds (the reference would
    /// allocate whatever `size * n_copies` says).
    pub fn rows(&self, r: &Tensor2d, reading: bool) -> Result<Rows, SessionError> {
        let packed = r.packed_len()?;
        let span = r.span()?;
        let (t, b, start) = self.placed_tensor(&r.tensor)?;
        let nbytes = t.nbytes().unwrap_or(usize::MAX) as u64;
        let end = r.offset.checked_add(span).ok_or(ProtoError::Overflow)?;
        if end > nbytes || (reading && packed > nbytes) {
            return Err(ProtoError::OutOfTensor {
                offset: r.offset,
                len: span.max(if reading { packed } else { 0 }),
                nbytes,
            }
            .into());
        }
        let usize_of = |v: u64| usize::try_from(v).map_err(|_| ProtoError::Overflow);
        Ok(Rows {
            buf: b.buf.clone(),
            offset: start + usize_of(r.offset)?,
            size: usize_of(r.size)?,
            n_copies: usize_of(r.n_copies)?,
            stride: usize_of(r.stride)?,
        })
    }

    /// GET_TENSOR_2D: the rows, packed.
    pub fn get_tensor_2d(&self, r: &Tensor2d) -> Result<Vec<u8>, SessionError> {
        let rows = self.rows(r, true)?;
        let mut out = vec![0u8; rows.size * rows.n_copies];
        for (i, chunk) in out.chunks_exact_mut(rows.size).enumerate() {
            rows.buf.read(rows.row_offset(i), chunk)?;
        }
        Ok(out)
    }

    /// SET_TENSOR_2D with its data in hand (the connection streams large ones through `rows`).
    pub fn set_tensor_2d(&self, r: &Tensor2d, data: &[u8]) -> Result<(), SessionError> {
        let rows = self.rows(r, false)?;
        if data.len() as u64 != r.packed_len()? {
            return Err(ProtoError::Invalid(format!(
                "SET_TENSOR_2D: {} data bytes for {} rows of {}",
                data.len(),
                r.n_copies,
                r.size
            ))
            .into());
        }
        for (i, row) in data.chunks_exact(rows.size).enumerate() {
            rows.buf.write(rows.row_offset(i), row)?;
        }
        Ok(())
    }

    /// COMM_ALLREDUCE: a contiguous f32 tensor in one of this session's buffers on `device`.
    pub fn allreduce_target(&self, r: &CommAllreduce) -> Result<AllreduceTarget, SessionError> {
        self.device(r.device)?;
        let (t, b, offset) = self.placed_tensor(&r.tensor)?;
        if b.device != r.device as usize {
            return Err(SessionError::Protocol(format!(
                "COMM_ALLREDUCE: tensor lives on device {}, not {}",
                b.device, r.device
            )));
        }
        if t.typ != GgmlType::F32 || !t.is_contiguous() {
            return Err(SessionError::Protocol(format!(
                "COMM_ALLREDUCE: tensor '{}' must be contiguous f32 (is {})",
                t.name,
                t.typ.name()
            )));
        }
        Ok(AllreduceTarget {
            device: b.device,
            buf: b.buf.clone(),
            offset,
            elements: t.nelements(),
        })
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
        // The sources are not checked: the client serializes them with whatever buffer they live in,
        // possibly another server's, whose handle may collide with one of ours.
        let t = decode_tensor(&req.tensor, self)?;
        Ok(t.nbytes().ok_or(ProtoError::Overflow)? as u64)
    }

    /// GRAPH_COMPUTE, first half: decode, link and check the graph; the caller runs `compute` off the
    /// async runtime and then calls `store_graph`.
    pub fn prepare_graph(
        &self,
        wg: &WireGraph,
        wire_bytes: usize,
    ) -> Result<(usize, StoredGraph), SessionError> {
        let device = self.device(wg.device)?;
        let graph = build_graph(wg, self)?;
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
                wire_bytes,
            },
        ))
    }

    /// Where a GRAPH_COMPUTE of `uid` will be kept, if at all (see `GraphStore::key_for_compute`).
    pub fn graph_key(&mut self, device: usize, uid: u64) -> Option<u64> {
        self.graphs.key_for_compute(device, uid)
    }

    pub fn store_graph(
        &mut self,
        device: usize,
        key: u64,
        g: StoredGraph,
    ) -> Result<(), SessionError> {
        self.graphs.insert(device, key, g)
    }

    /// GRAPH_RECOMPUTE: the stored graph, or an error if there is none.
    pub fn stored_graph(&mut self, dev: u32, uid: u64) -> Result<StoredGraph, SessionError> {
        self.device(dev)?;
        self.graphs.get(dev as usize, uid)
    }

    pub fn device_arc(&self, dev: usize) -> Option<Arc<dyn Device>> {
        self.shared.devices.get(dev).cloned()
    }

    /// The cache, if `-c` was given.
    pub fn cache(&self) -> Option<&super::cache::Cache> {
        self.shared.cache.as_deref()
    }
}
