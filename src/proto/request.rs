//! Fixed-layout request payloads (PROTOCOL.md §3, and the 8.0.0 appendix), each with its parser and
//! encoder. Lengths are checked against the command table before these run.

use super::cmd::TENSOR_2D_SIZE;
use super::tensor::RPC_TENSOR_SIZE;
use super::{ProtoError, WireTensor, u8_at, u32_at, u64_at};

/// A tensor that starts `off` bytes into `b`.
fn tensor_at(b: &[u8], off: usize) -> Result<WireTensor, ProtoError> {
    WireTensor::parse(b.get(off..).ok_or(ProtoError::Short {
        need: off + RPC_TENSOR_SIZE,
        got: b.len(),
    })?)
}

/// Little-endian payload builder for the encoders.
#[derive(Default)]
pub(crate) struct Out(pub Vec<u8>);

impl Out {
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn tensor(mut self, t: &WireTensor) -> Self {
        self.0.extend_from_slice(&t.encode());
        self
    }
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
}

/// ALLOC_BUFFER: `device u32 | size u64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocBuffer {
    pub device: u32,
    pub size: u64,
}

impl AllocBuffer {
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        Ok(AllocBuffer {
            device: u32_at(b, 0)?,
            size: u64_at(b, 4)?,
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        Out::default().u32(self.device).u64(self.size).0
    }
}

/// BUFFER_CLEAR: `remote_ptr u64 | value u8`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferClear {
    pub handle: u64,
    pub value: u8,
}

impl BufferClear {
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        Ok(BufferClear {
            handle: u64_at(b, 0)?,
            value: u8_at(b, 8)?,
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        Out::default().u64(self.handle).u8(self.value).0
    }
}

/// The first 305 bytes of SET_TENSOR; the data follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetTensorHeader {
    pub tensor: WireTensor,
    pub cache_flag: bool,
    pub offset: u64,
}

impl SetTensorHeader {
    pub const SIZE: usize = RPC_TENSOR_SIZE + 9;

    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        Ok(SetTensorHeader {
            tensor: WireTensor::parse(b)?,
            cache_flag: u8_at(b, RPC_TENSOR_SIZE)? != 0,
            offset: u64_at(b, RPC_TENSOR_SIZE + 1)?,
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        Out::default()
            .tensor(&self.tensor)
            .u8(self.cache_flag as u8)
            .u64(self.offset)
            .0
    }
}

/// SET_TENSOR_HASH: `tensor | offset u64 | hash u64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetTensorHash {
    pub tensor: WireTensor,
    pub offset: u64,
    pub hash: u64,
}

impl SetTensorHash {
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        Ok(SetTensorHash {
            tensor: WireTensor::parse(b)?,
            offset: u64_at(b, RPC_TENSOR_SIZE)?,
            hash: u64_at(b, RPC_TENSOR_SIZE + 8)?,
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        Out::default()
            .tensor(&self.tensor)
            .u64(self.offset)
            .u64(self.hash)
            .0
    }
}

/// GET_TENSOR: `tensor | offset u64 | size u64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetTensor {
    pub tensor: WireTensor,
    pub offset: u64,
    pub size: u64,
}

impl GetTensor {
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        Ok(GetTensor {
            tensor: WireTensor::parse(b)?,
            offset: u64_at(b, RPC_TENSOR_SIZE)?,
            size: u64_at(b, RPC_TENSOR_SIZE + 8)?,
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        Out::default()
            .tensor(&self.tensor)
            .u64(self.offset)
            .u64(self.size)
            .0
    }
}

/// SET_TENSOR_2D's header (its rows follow, packed) and GET_TENSOR_2D's request: `n_copies` rows of
/// `size` bytes, `stride` apart, from byte `offset` of the tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensor2d {
    pub tensor: WireTensor,
    pub offset: u64,
    pub size: u64,
    pub n_copies: u64,
    pub stride: u64,
}

impl Tensor2d {
    pub const SIZE: usize = TENSOR_2D_SIZE;

    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        Ok(Tensor2d {
            tensor: WireTensor::parse(b)?,
            offset: u64_at(b, RPC_TENSOR_SIZE)?,
            size: u64_at(b, RPC_TENSOR_SIZE + 8)?,
            n_copies: u64_at(b, RPC_TENSOR_SIZE + 16)?,
            stride: u64_at(b, RPC_TENSOR_SIZE + 24)?,
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        Out::default()
            .tensor(&self.tensor)
            .u64(self.offset)
            .u64(self.size)
            .u64(self.n_copies)
            .u64(self.stride)
            .0
    }

    /// The packed byte count (`size * n_copies`), rejecting empty and overflowing requests as the
    /// reference does.
    pub fn packed_len(&self) -> Result<u64, ProtoError> {
        if self.size == 0 || self.n_copies == 0 {
            return Err(ProtoError::Invalid("empty 2D transfer".into()));
        }
        self.size
            .checked_mul(self.n_copies)
            .ok_or(ProtoError::Overflow)
    }

    /// Bytes from the first row's start to the last row's end: `(n_copies - 1) * stride + size`.
    pub fn span(&self) -> Result<u64, ProtoError> {
        self.packed_len()?;
        (self.n_copies - 1)
            .checked_mul(self.stride)
            .and_then(|s| s.checked_add(self.size))
            .ok_or(ProtoError::Overflow)
    }
}

/// COPY_TENSOR: `src tensor | dst tensor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyTensor {
    pub src: WireTensor,
    pub dst: WireTensor,
}

impl CopyTensor {
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        Ok(CopyTensor {
            src: WireTensor::parse(b)?,
            dst: tensor_at(b, RPC_TENSOR_SIZE)?,
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        Out::default().tensor(&self.src).tensor(&self.dst).0
    }
}

/// MEMSET_TENSOR: `tensor | offset u64 | size u64 | value u8`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemsetTensor {
    pub tensor: WireTensor,
    pub offset: u64,
    pub size: u64,
    pub value: u8,
}

impl MemsetTensor {
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        Ok(MemsetTensor {
            tensor: WireTensor::parse(b)?,
            offset: u64_at(b, RPC_TENSOR_SIZE)?,
            size: u64_at(b, RPC_TENSOR_SIZE + 8)?,
            value: u8_at(b, RPC_TENSOR_SIZE + 16)?,
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        Out::default()
            .tensor(&self.tensor)
            .u64(self.offset)
            .u64(self.size)
            .u8(self.value)
            .0
    }
}

/// GET_ALLOC_SIZE: `device u32 | tensor | srcs[10]` (an absent source is all zeros, id 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetAllocSize {
    pub device: u32,
    pub tensor: WireTensor,
    /// The ten source slots as sent.
    pub srcs: Vec<WireTensor>,
}

impl GetAllocSize {
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        let tensor = tensor_at(b, 4)?;
        let srcs = (1..=10)
            .map(|i| tensor_at(b, 4 + i * RPC_TENSOR_SIZE))
            .collect::<Result<_, _>>()?;
        Ok(GetAllocSize {
            device: u32_at(b, 0)?,
            tensor,
            srcs,
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Out::default().u32(self.device).tensor(&self.tensor);
        for i in 0..10 {
            o = match self.srcs.get(i) {
                Some(s) => o.tensor(s),
                None => o.bytes(&[0; RPC_TENSOR_SIZE]),
            };
        }
        o.0
    }
    /// The sources that are present (id != 0).
    pub fn present_srcs(&self) -> impl Iterator<Item = &WireTensor> {
        self.srcs.iter().filter(|s| s.id != 0)
    }
}

/// GRAPH_RECOMPUTE: `device u32` in v7 (the device's last graph); `device u32 | uid u64` in v8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphRecompute {
    pub device: u32,
    pub uid: u64,
}

/// COMM_INIT: `device u32 | rank u32 | world u32 | port u32 | host char[64]`. Rank 0 listens on
/// `port`; rank > 0 connects to rank 0's `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommInit {
    pub device: u32,
    pub rank: u32,
    pub world: u32,
    pub port: u32,
    /// Up to the first NUL, as raw bytes (validated by whoever connects).
    pub host: Vec<u8>,
}

impl CommInit {
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        let raw = b.get(16..80).ok_or(ProtoError::Short {
            need: 80,
            got: b.len(),
        })?;
        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        Ok(CommInit {
            device: u32_at(b, 0)?,
            rank: u32_at(b, 4)?,
            world: u32_at(b, 8)?,
            port: u32_at(b, 12)?,
            host: raw.get(..end).unwrap_or_default().to_vec(),
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        // 64 bytes without a NUL are a 64-byte host (the reference reads it with strnlen).
        let mut host = [0u8; 64];
        for (d, s) in host.iter_mut().zip(self.host.iter()) {
            *d = *s;
        }
        Out::default()
            .u32(self.device)
            .u32(self.rank)
            .u32(self.world)
            .u32(self.port)
            .bytes(&host)
            .0
    }
}

/// COMM_ALLREDUCE: `device u32 | tensor` (sum the tensor with the peer's, in place).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommAllreduce {
    pub device: u32,
    pub tensor: WireTensor,
}

impl CommAllreduce {
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        Ok(CommAllreduce {
            device: u32_at(b, 0)?,
            tensor: tensor_at(b, 4)?,
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        Out::default().u32(self.device).tensor(&self.tensor).0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn alloc_buffer_matches_appendix_c() {
        let b = [0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0];
        let r = AllocBuffer::parse(&b).unwrap();
        assert_eq!(
            r,
            AllocBuffer {
                device: 0,
                size: 4096
            }
        );
        assert_eq!(r.encode(), b);
        assert!(AllocBuffer::parse(&b[..11]).is_err());
    }

    #[test]
    fn tensor_requests_parse_trailing_fields() {
        let t = WireTensor {
            id: 9,
            ne: [4, 1, 1, 1],
            ..Default::default()
        };
        let mut b = t.encode().to_vec();
        b.extend_from_slice(&5u64.to_le_bytes());
        b.extend_from_slice(&6u64.to_le_bytes());
        b.push(0xab);
        let m = MemsetTensor::parse(&b).unwrap();
        assert_eq!((m.tensor.id, m.offset, m.size, m.value), (9, 5, 6, 0xab));
        assert_eq!(m.encode(), b);
        let g = GetTensor::parse(&b[..312]).unwrap();
        assert_eq!((g.offset, g.size), (5, 6));
        assert_eq!(g.encode(), &b[..312]);
        assert!(MemsetTensor::parse(&b[..312]).is_err());
        let h = SetTensorHeader {
            tensor: t,
            cache_flag: true,
            offset: 77,
        };
        assert_eq!(SetTensorHeader::parse(&h.encode()).unwrap(), h);
    }

    #[test]
    fn alloc_size_keeps_source_slots() {
        let mut b = vec![0u8; 3260];
        b[0] = 1;
        let src = WireTensor {
            id: 5,
            ..Default::default()
        }
        .encode();
        b[4 + 296 * 3..4 + 296 * 4].copy_from_slice(&src);
        let r = GetAllocSize::parse(&b).unwrap();
        assert_eq!(r.device, 1);
        assert_eq!(r.srcs.len(), 10);
        assert_eq!(r.srcs[2].id, 5);
        assert_eq!(r.present_srcs().count(), 1);
        assert_eq!(r.encode(), b);
    }

    #[test]
    fn two_d_spans_and_limits() {
        let mut r = Tensor2d {
            tensor: WireTensor::default(),
            offset: 16,
            size: 8,
            n_copies: 3,
            stride: 32,
        };
        let b = r.encode();
        assert_eq!(b.len(), 328);
        assert_eq!(Tensor2d::parse(&b).unwrap(), r);
        assert_eq!((r.packed_len().unwrap(), r.span().unwrap()), (24, 72));
        r.n_copies = 0;
        assert!(r.span().is_err());
        r.n_copies = u64::MAX;
        assert_eq!(r.span(), Err(ProtoError::Overflow));
        r.size = 1;
        r.stride = u64::MAX;
        assert_eq!(r.span(), Err(ProtoError::Overflow));
    }

    #[test]
    fn comm_init_host_stops_at_nul() {
        let r = CommInit {
            device: 0,
            rank: 1,
            world: 2,
            port: 51052,
            host: b"127.0.0.1".to_vec(),
        };
        let b = r.encode();
        assert_eq!(b.len(), 80);
        assert_eq!(CommInit::parse(&b).unwrap(), r);
        // A host without NUL takes all 64 bytes.
        let mut full = b.clone();
        full[16..].fill(b'a');
        let long = CommInit::parse(&full).unwrap();
        assert_eq!(long.host.len(), 64);
        assert_eq!(long.encode(), full);
        let a = CommAllreduce {
            device: 3,
            tensor: WireTensor::default(),
        };
        assert_eq!(CommAllreduce::parse(&a.encode()).unwrap(), a);
    }
}
