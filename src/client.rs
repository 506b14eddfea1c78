//! A blocking Rust client for ggml RPC v7: the library API the tests and examples drive the server with.
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
use crate::proto::{Command, WireGraph, WireTensor, hash::fnv1a};

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
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Client {
    /// Connects and performs the HELLO handshake (checks for protocol 7.0.x).
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let mut c = Self::connect_raw(addr)?;
        let r = c.call(Command::Hello as u8, &[0u8; 24], Some(28))?;
        if r.first() != Some(&7) || r.get(1) != Some(&0) {
            return Err(bad(format!("server version {r:?} is not 7.0.x")));
        }
        Ok(c)
    }

    /// Connects without any handshake (for tests that send raw bytes).
    pub fn connect_raw(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::new(s.try_clone()?),
            writer: BufWriter::new(s),
        })
    }

    /// Sends one request frame (no reply read).
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

    fn call(&mut self, cmd: u8, payload: &[u8], expect: Option<usize>) -> io::Result<Vec<u8>> {
        self.send(cmd, payload)?;
        self.recv(expect)
    }

    fn call_u64(&mut self, cmd: Command, payload: &[u8]) -> io::Result<u64> {
        let r = self.call(cmd as u8, payload, Some(8))?;
        Ok(u64::from_le_bytes(r.try_into().map_err(|_| bad("short"))?))
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
        let r = self.call(Command::DeviceCount as u8, &[], Some(4))?;
        Ok(u32::from_le_bytes(r.try_into().map_err(|_| bad("short"))?))
    }

    pub fn alignment(&mut self, dev: u32) -> io::Result<u64> {
        self.call_u64(Command::GetAlignment, &dev.to_le_bytes())
    }

    pub fn max_size(&mut self, dev: u32) -> io::Result<u64> {
        self.call_u64(Command::GetMaxSize, &dev.to_le_bytes())
    }

    /// `(free, total)` bytes.
    pub fn memory(&mut self, dev: u32) -> io::Result<(u64, u64)> {
        let r = self.call(Command::GetDeviceMemory as u8, &dev.to_le_bytes(), Some(16))?;
        let (f, t) = r.split_at(8);
        Ok((
            u64::from_le_bytes(f.try_into().map_err(|_| bad("short"))?),
            u64::from_le_bytes(t.try_into().map_err(|_| bad("short"))?),
        ))
    }

    /// ALLOC_BUFFER + BUFFER_GET_BASE; an allocation failure is `ErrorKind::OutOfMemory`.
    pub fn alloc(&mut self, dev: u32, size: u64) -> io::Result<RemoteBuffer> {
        let mut p = dev.to_le_bytes().to_vec();
        p.extend_from_slice(&size.to_le_bytes());
        let r = self.call(Command::AllocBuffer as u8, &p, Some(16))?;
        let handle = u64::from_le_bytes(r[..8].try_into().map_err(|_| bad("short"))?);
        let size = u64::from_le_bytes(r[8..].try_into().map_err(|_| bad("short"))?);
        if handle == 0 {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "server refused the allocation",
            ));
        }
        let base = self.call_u64(Command::BufferGetBase, &handle.to_le_bytes())?;
        Ok(RemoteBuffer { handle, base, size })
    }

    pub fn free(&mut self, buf: RemoteBuffer) -> io::Result<()> {
        self.send(Command::FreeBuffer as u8, &buf.handle.to_le_bytes())
    }

    pub fn clear(&mut self, buf: RemoteBuffer, value: u8) -> io::Result<()> {
        let mut p = buf.handle.to_le_bytes().to_vec();
        p.push(value);
        self.send(Command::BufferClear as u8, &p)
    }

    /// SET_TENSOR of `data` at byte `offset` of the tensor.
    pub fn set_tensor(
        &mut self,
        t: &WireTensor,
        offset: u64,
        data: &[u8],
        cache: bool,
    ) -> io::Result<()> {
        let mut p = t.encode().to_vec();
        p.push(cache as u8);
        p.extend_from_slice(&offset.to_le_bytes());
        p.extend_from_slice(data);
        self.send(Command::SetTensor as u8, &p)
    }

    /// SET_TENSOR_HASH: true when the server loaded `data` from its cache.
    pub fn set_tensor_hash(
        &mut self,
        t: &WireTensor,
        offset: u64,
        data: &[u8],
    ) -> io::Result<bool> {
        let mut p = t.encode().to_vec();
        p.extend_from_slice(&offset.to_le_bytes());
        p.extend_from_slice(&fnv1a(data).to_le_bytes());
        Ok(self.call(Command::SetTensorHash as u8, &p, Some(1))? == [1])
    }

    pub fn get_tensor(&mut self, t: &WireTensor, offset: u64, size: u64) -> io::Result<Vec<u8>> {
        let mut p = t.encode().to_vec();
        p.extend_from_slice(&offset.to_le_bytes());
        p.extend_from_slice(&size.to_le_bytes());
        self.call(Command::GetTensor as u8, &p, usize::try_from(size).ok())
    }

    pub fn copy_tensor(&mut self, src: &WireTensor, dst: &WireTensor) -> io::Result<bool> {
        let mut p = src.encode().to_vec();
        p.extend_from_slice(&dst.encode());
        Ok(self.call(Command::CopyTensor as u8, &p, Some(1))? == [1])
    }

    pub fn memset(&mut self, t: &WireTensor, offset: u64, size: u64, value: u8) -> io::Result<()> {
        let mut p = t.encode().to_vec();
        p.extend_from_slice(&offset.to_le_bytes());
        p.extend_from_slice(&size.to_le_bytes());
        p.push(value);
        self.send(Command::MemsetTensor as u8, &p)
    }

    pub fn init_tensor(&mut self, t: &WireTensor) -> io::Result<()> {
        self.send(Command::InitTensor as u8, &t.encode())
    }

    pub fn alloc_size(&mut self, dev: u32, t: &WireTensor, srcs: &[WireTensor]) -> io::Result<u64> {
        let mut p = dev.to_le_bytes().to_vec();
        p.extend_from_slice(&t.encode());
        for i in 0..10 {
            p.extend_from_slice(&srcs.get(i).map(WireTensor::encode).unwrap_or([0; 296]));
        }
        self.call_u64(Command::GetAllocSize, &p)
    }

    pub fn graph_compute(&mut self, dev: u32, g: &WireGraph) -> io::Result<()> {
        let mut g = WireGraph {
            device: dev,
            node_ids: g.node_ids.clone(),
            tensors: g.tensors.clone(),
        };
        g.device = dev;
        self.send(Command::GraphCompute as u8, &g.encode())
    }

    pub fn graph_recompute(&mut self, dev: u32) -> io::Result<()> {
        self.send(Command::GraphRecompute as u8, &dev.to_le_bytes())
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

/// Builds graphs of tensors placed in one remote buffer: a bump allocator plus ids and sources.
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

    /// The GRAPH_COMPUTE payload running `nodes` (every tensor built so far is sent, leaves first).
    pub fn graph(&self, nodes: &[TensorId]) -> WireGraph {
        WireGraph {
            device: 0,
            node_ids: nodes.iter().map(|n| self.tensors[n.0].id).collect(),
            tensors: self.tensors.clone(),
        }
    }
}
