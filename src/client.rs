//! A blocking Rust client for ggml RPC 7.0 and 8.0 (the server's HELLO reply says which): the library
//! API the tests and examples drive the server with, on the same typed requests as the server.
//!
//! ```no_run
//! use ggrpc::client::{Client, GraphBuilder};
//! use ggrpc::ggml::{GgmlType, Op};
//! let mut c = Client::connect("127.0.0.1:50052")?;
//! let buf = c.alloc(0, 1 << 20)?;
//! let mut g = GraphBuilder::new(buf, 64);
//! let a = g.input(GgmlType::F32, [4, 1, 1, 1]);
//! let b = g.input(GgmlType::F32, [4, 1, 1, 1]);
//! let sum = g.op(Op::Add, GgmlType::F32, [4, 1, 1, 1], &[a, b], [0; 16]);
//! c.set_f32(&g.tensor(a), &[1.0, 2.0, 3.0, 4.0])?;
//! c.set_f32(&g.tensor(b), &[1.0; 4])?;
//! c.graph_compute(0, &g.graph(&[sum]))?;
//! assert_eq!(c.get_f32(&g.tensor(sum))?, vec![2.0, 3.0, 4.0, 5.0]);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use crate::ggml::{GgmlType, Op, TensorFlags, contiguous_strides, nbytes};
use crate::proto::{
    AllocBuffer, BufferClear, CommAllreduce, CommInit, CopyTensor, GetAllocSize, GetTensor,
    GraphRecompute, Major, MemsetTensor, Request, Response, SetTensorHash, SetTensorHeader,
    Tensor2d, WireGraph, WireTensor, hash::fnv1a,
};

/// A buffer on the server: handle, base address and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteBuffer {
    pub handle: u64,
    pub base: u64,
    pub size: u64,
}

pub struct Client {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    /// The major the server announced in HELLO (requests are laid out for it).
    major: Major,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Client {
    /// Connects and performs the HELLO handshake; the server may speak 7.0.x or 8.0.x.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let mut c = Self::connect_raw(addr)?;
        let hello = Request::Hello { caps: [0; 24] };
        let Response::Hello { major, minor, .. } = c.call(&hello)? else {
            return Err(bad("HELLO: unexpected reply"));
        };
        c.major = Major::from_number(major)
            .filter(|_| minor == 0)
            .ok_or_else(|| bad(format!("server version {major}.{minor} is not 7.0 or 8.0")))?;
        Ok(c)
    }

    /// Connects and requires the server to speak `major` (as a real client of that major does).
    pub fn connect_major(addr: impl ToSocketAddrs, major: Major) -> io::Result<Self> {
        let c = Self::connect(addr)?;
        if c.major != major {
            return Err(bad(format!(
                "RPC server version mismatch: {} (want {major})",
                c.major
            )));
        }
        Ok(c)
    }

    /// Connects without any handshake (for tests that send raw bytes); assumes protocol 8.
    pub fn connect_raw(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::new(s.try_clone()?),
            writer: BufWriter::new(s),
            major: Major::V8,
        })
    }

    /// The protocol major in use.
    pub fn major(&self) -> Major {
        self.major
    }

    /// Lays out requests for `major` from now on (tests of raw framing).
    pub fn set_major(&mut self, major: Major) {
        self.major = major;
    }

    /// Sends one request frame (no reply read), laid out for the server's major.
    pub fn request(&mut self, req: &Request) -> io::Result<()> {
        self.send_bytes(&req.frame(self.major))
    }

    /// Sends one raw request frame: `cmd | len | payload`.
    pub fn send(&mut self, cmd: u8, payload: &[u8]) -> io::Result<()> {
        self.writer.write_all(&[cmd])?;
        self.writer
            .write_all(&(payload.len() as u64).to_le_bytes())?;
        self.writer.write_all(payload)?;
        self.writer.flush()
    }

    /// Sends arbitrary bytes as they are.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Reads one reply frame; `expect` checks its length like the real client does.
    pub fn recv(&mut self, expect: Option<usize>) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 8];
        self.reader.read_exact(&mut len)?;
        let len = u64::from_le_bytes(len);
        if let Some(e) = expect
            && e as u64 != len
        {
            return Err(bad(format!("reply of {len} bytes, expected {e}")));
        }
        let mut out = vec![0u8; usize::try_from(len).map_err(|_| bad("reply too large"))?];
        self.reader.read_exact(&mut out)?;
        Ok(out)
    }

    /// Sends a request that has a reply and decodes it (its length checked exactly).
    pub fn call(&mut self, req: &Request) -> io::Result<Response> {
        self.request(req)?;
        let want = Response::expected_len(req)
            .ok_or_else(|| bad(format!("{} has no reply", req.command().name())))?;
        let bytes = self.recv(usize::try_from(want).ok())?;
        Response::decode(req, &bytes).map_err(|e| bad(e.to_string()))
    }

    fn call_u64(&mut self, req: &Request) -> io::Result<u64> {
        match self.call(req)? {
            Response::Alignment(v)
            | Response::MaxSize(v)
            | Response::Base(v)
            | Response::AllocSize(v) => Ok(v),
            r => Err(bad(format!("unexpected reply {r:?}"))),
        }
    }

    fn call_bool(&mut self, req: &Request) -> io::Result<bool> {
        match self.call(req)? {
            Response::SetTensorHash(b) | Response::CopyTensor(b) | Response::CommInit(b) => Ok(b),
            r => Err(bad(format!("unexpected reply {r:?}"))),
        }
    }

    fn call_data(&mut self, req: &Request) -> io::Result<Vec<u8>> {
        match self.call(req)? {
            Response::Data(d) => Ok(d),
            r => Err(bad(format!("unexpected reply {r:?}"))),
        }
    }

    /// Sets a read timeout on the socket (tests use it to avoid hanging on a silent server).
    pub fn set_read_timeout(&mut self, d: Option<std::time::Duration>) {
        let _ = self.reader.get_ref().set_read_timeout(d);
    }

    /// True when the server has closed this connection (a read sees EOF or a reset).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }

    pub fn device_count(&mut self) -> io::Result<u32> {
        match self.call(&Request::DeviceCount)? {
            Response::DeviceCount(n) => Ok(n),
            r => Err(bad(format!("unexpected reply {r:?}"))),
        }
    }

    pub fn alignment(&mut self, device: u32) -> io::Result<u64> {
        self.call_u64(&Request::GetAlignment { device })
    }

    pub fn max_size(&mut self, device: u32) -> io::Result<u64> {
        self.call_u64(&Request::GetMaxSize { device })
    }

    /// `(free, total)` bytes.
    pub fn memory(&mut self, device: u32) -> io::Result<(u64, u64)> {
        match self.call(&Request::GetDeviceMemory { device })? {
            Response::Memory { free, total } => Ok((free, total)),
            r => Err(bad(format!("unexpected reply {r:?}"))),
        }
    }

    /// ALLOC_BUFFER + BUFFER_GET_BASE; an allocation failure is `ErrorKind::OutOfMemory`.
    pub fn alloc(&mut self, device: u32, size: u64) -> io::Result<RemoteBuffer> {
        let Response::Buffer { handle, size } =
            self.call(&Request::AllocBuffer(AllocBuffer { device, size }))?
        else {
            return Err(bad("ALLOC_BUFFER: unexpected reply"));
        };
        if handle == 0 {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "server refused the allocation",
            ));
        }
        let base = self.call_u64(&Request::BufferGetBase { handle })?;
        Ok(RemoteBuffer { handle, base, size })
    }

    pub fn free(&mut self, buf: RemoteBuffer) -> io::Result<()> {
        self.request(&Request::FreeBuffer { handle: buf.handle })
    }

    pub fn clear(&mut self, buf: RemoteBuffer, value: u8) -> io::Result<()> {
        self.request(&Request::BufferClear(BufferClear {
            handle: buf.handle,
            value,
        }))
    }

    /// SET_TENSOR of `data` at byte `offset` of the tensor.
    pub fn set_tensor(
        &mut self,
        t: &WireTensor,
        offset: u64,
        data: &[u8],
        cache: bool,
    ) -> io::Result<()> {
        self.request(&Request::SetTensor {
            header: SetTensorHeader {
                tensor: t.clone(),
                cache_flag: cache,
                offset,
            },
            data,
        })
    }

    /// SET_TENSOR_HASH: true when the server loaded `data` from its cache.
    pub fn set_tensor_hash(
        &mut self,
        t: &WireTensor,
        offset: u64,
        data: &[u8],
    ) -> io::Result<bool> {
        self.call_bool(&Request::SetTensorHash(SetTensorHash {
            tensor: t.clone(),
            offset,
            hash: fnv1a(data),
        }))
    }

    pub fn get_tensor(&mut self, t: &WireTensor, offset: u64, size: u64) -> io::Result<Vec<u8>> {
        self.call_data(&Request::GetTensor(GetTensor {
            tensor: t.clone(),
            offset,
            size,
        }))
    }

    /// SET_TENSOR_2D (v8): `data` holds `n_copies` packed rows of `size` bytes, written `stride`
    /// apart from byte `offset` of the tensor.
    pub fn set_tensor_2d(&mut self, r: &Tensor2d, data: &[u8]) -> io::Result<()> {
        self.request(&Request::SetTensor2d {
            header: r.clone(),
            data,
        })
    }

    /// GET_TENSOR_2D (v8): the rows, packed.
    pub fn get_tensor_2d(&mut self, r: &Tensor2d) -> io::Result<Vec<u8>> {
        self.call_data(&Request::GetTensor2d(r.clone()))
    }

    pub fn copy_tensor(&mut self, src: &WireTensor, dst: &WireTensor) -> io::Result<bool> {
        self.call_bool(&Request::CopyTensor(CopyTensor {
            src: src.clone(),
            dst: dst.clone(),
        }))
    }

    pub fn memset(&mut self, t: &WireTensor, offset: u64, size: u64, value: u8) -> io::Result<()> {
        self.request(&Request::MemsetTensor(MemsetTensor {
            tensor: t.clone(),
            offset,
            size,
            value,
        }))
    }

    pub fn init_tensor(&mut self, t: &WireTensor) -> io::Result<()> {
        self.request(&Request::InitTensor(t.clone()))
    }

    pub fn alloc_size(&mut self, dev: u32, t: &WireTensor, srcs: &[WireTensor]) -> io::Result<u64> {
        let srcs = (0..10)
            .map(|i| srcs.get(i).cloned().unwrap_or_default())
            .collect();
        self.call_u64(&Request::GetAllocSize(GetAllocSize {
            device: dev,
            tensor: t.clone(),
            srcs,
        }))
    }

    /// GRAPH_COMPUTE on `dev` (the graph's uid travels in v8 only).
    pub fn graph_compute(&mut self, dev: u32, g: &WireGraph) -> io::Result<()> {
        self.request(&Request::GraphCompute(WireGraph {
            device: dev,
            uid: g.uid,
            node_ids: g.node_ids.clone(),
            tensors: g.tensors.clone(),
        }))
    }

    /// GRAPH_RECOMPUTE: v7 reruns the device's last graph, v8 the graph sent with `uid`.
    pub fn graph_recompute(&mut self, device: u32, uid: u64) -> io::Result<()> {
        self.request(&Request::GraphRecompute(GraphRecompute { device, uid }))
    }

    /// COMM_INIT (v8): join a pairwise communicator; true when the server joined.
    pub fn comm_init(&mut self, r: &CommInit) -> io::Result<bool> {
        self.call_bool(&Request::CommInit(r.clone()))
    }

    /// COMM_ALLREDUCE (v8): sum `t` with the peer server's in place (no reply).
    pub fn comm_allreduce(&mut self, device: u32, t: &WireTensor) -> io::Result<()> {
        self.request(&Request::CommAllreduce(CommAllreduce {
            device,
            tensor: t.clone(),
        }))
    }

    /// COMM_FREE (v8).
    pub fn comm_free(&mut self, device: u32) -> io::Result<()> {
        self.request(&Request::CommFree { device })
    }

    /// Writes f32 values into a whole (contiguous) tensor.
    pub fn set_f32(&mut self, t: &WireTensor, vals: &[f32]) -> io::Result<()> {
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.set_tensor(t, 0, &bytes, false)
    }

    /// Reads a whole f32 tensor.
    pub fn get_f32(&mut self, t: &WireTensor) -> io::Result<Vec<f32>> {
        let n = wire_nbytes(t).ok_or_else(|| bad("bad tensor"))?;
        let b = self.get_tensor(t, 0, n)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// `nbytes` of a wire tensor (None for invalid types or overflow).
pub fn wire_nbytes(t: &WireTensor) -> Option<u64> {
    let typ = GgmlType::from_u32(t.typ)?;
    nbytes(typ, t.ne.map(|v| v as usize), t.nb.map(|v| v as usize)).map(|n| n as u64)
}

/// Builds graphs of tensors placed in remote buffers: a bump allocator plus ids and sources. A clone
/// shares the tensors built so far (weights, caches) and builds its own graph on top of them.
#[derive(Clone)]
pub struct GraphBuilder {
    buf: RemoteBuffer,
    align: u64,
    next: u64,
    tensors: Vec<WireTensor>,
}

/// A tensor of a `GraphBuilder`, by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorId(usize);

impl GraphBuilder {
    pub fn new(buf: RemoteBuffer, align: u64) -> Self {
        GraphBuilder {
            buf,
            align: align.max(1),
            next: 0,
            tensors: Vec::new(),
        }
    }

    /// Places the tensors built from now on in `buf`, from its start; those built so far stay where
    /// they are (weights, KV cache and activations in buffers of their own, as a llama.cpp client
    /// keeps them).
    pub fn use_buffer(&mut self, buf: RemoteBuffer) {
        self.buf = buf;
        self.next = 0;
    }

    /// Bytes taken in the current buffer so far, alignment included: the size a buffer needs to hold
    /// what was placed in it.
    pub fn bytes_placed(&self) -> u64 {
        self.next
    }

    fn place(&mut self, typ: GgmlType, ne: [usize; 4]) -> WireTensor {
        let nb = contiguous_strides(typ, ne);
        let size = nbytes(typ, ne, nb).unwrap_or(0) as u64;
        let off = self.next.div_ceil(self.align) * self.align;
        self.next = off + size;
        assert!(
            self.next <= self.buf.size,
            "GraphBuilder: buffer of {} bytes is full",
            self.buf.size
        );
        WireTensor {
            id: self.tensors.len() as u64 + 1,
            typ: typ as u32,
            buffer: self.buf.handle,
            ne: ne.map(|v| v as u32),
            nb: nb.map(|v| v as u32),
            data: self.buf.base + off,
            ..Default::default()
        }
    }

    fn push(&mut self, t: WireTensor) -> TensorId {
        self.tensors.push(t);
        TensorId(self.tensors.len() - 1)
    }

    /// A leaf the caller fills with SET_TENSOR.
    pub fn input(&mut self, typ: GgmlType, ne: [usize; 4]) -> TensorId {
        let t = self.place(typ, ne);
        self.push(t.with_name(&format!("input{}", self.tensors.len())))
    }

    /// A computed node with its own memory.
    pub fn op(
        &mut self,
        op: Op,
        typ: GgmlType,
        ne: [usize; 4],
        srcs: &[TensorId],
        params: [i32; 16],
    ) -> TensorId {
        let mut t = self.place(typ, ne);
        t.op = op as u32;
        t.op_params = params;
        t.flags = TensorFlags::COMPUTE;
        for (k, s) in srcs.iter().enumerate() {
            t.src[k] = self.tensors[s.0].id;
        }
        self.push(t.with_name(&format!(
            "{}{}",
            op.name().to_lowercase(),
            self.tensors.len()
        )))
    }

    /// A view of `of` with its own shape/strides at byte offset `offs` (no memory of its own).
    pub fn view(
        &mut self,
        of: TensorId,
        op: Op,
        ne: [usize; 4],
        nb: [usize; 4],
        offs: u64,
    ) -> TensorId {
        let base = self.tensors[of.0].clone();
        let t = WireTensor {
            id: self.tensors.len() as u64 + 1,
            ne: ne.map(|v| v as u32),
            nb: nb.map(|v| v as u32),
            op: op as u32,
            view_src: base.id,
            view_offs: offs,
            data: base.data + offs,
            src: {
                let mut s = [0; 10];
                s[0] = base.id;
                s
            },
            ..base
        };
        self.push(t)
    }

    /// Mutable access, e.g. to clear the COMPUTE flag or point a source at itself.
    pub fn tensor_mut(&mut self, id: TensorId) -> &mut WireTensor {
        &mut self.tensors[id.0]
    }

    pub fn tensor(&self, id: TensorId) -> WireTensor {
        self.tensors[id.0].clone()
    }

    /// The GRAPH_COMPUTE payload running `nodes` (every tensor built so far is sent, leaves first),
    /// with a fresh uid (as ggml gives each graph one; v8 servers keep graphs by it).
    pub fn graph(&self, nodes: &[TensorId]) -> WireGraph {
        static NEXT_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        WireGraph {
            device: 0,
            uid: NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            node_ids: nodes.iter().map(|n| self.tensors[n.0].id).collect(),
            tensors: self.tensors.clone(),
        }
    }
}
