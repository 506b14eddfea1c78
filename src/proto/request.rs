//! Fixed-layout request payloads (PROTOCOL.md §3). Lengths are checked by `expect_len` before these run.

use super::tensor::RPC_TENSOR_SIZE;
use super::{ProtoError, WireTensor, u8_at, u32_at, u64_at};

/// ALLOC_BUFFER: `device u32 | size u64`.
#[derive(Debug, PartialEq, Eq)]
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
}

/// BUFFER_CLEAR: `remote_ptr u64 | value u8`.
#[derive(Debug, PartialEq, Eq)]
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
}

/// The first 305 bytes of SET_TENSOR; the data follows.
#[derive(Debug, PartialEq, Eq)]
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
}

/// SET_TENSOR_HASH: `tensor | offset u64 | hash u64`.
#[derive(Debug, PartialEq, Eq)]
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
}

/// GET_TENSOR: `tensor | offset u64 | size u64`.
#[derive(Debug, PartialEq, Eq)]
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
}

/// COPY_TENSOR: `src tensor | dst tensor`.
#[derive(Debug, PartialEq, Eq)]
pub struct CopyTensor {
    pub src: WireTensor,
    pub dst: WireTensor,
}

impl CopyTensor {
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        let dst = b.get(RPC_TENSOR_SIZE..).ok_or(ProtoError::Short {
            need: 2 * RPC_TENSOR_SIZE,
            got: b.len(),
        })?;
        Ok(CopyTensor {
            src: WireTensor::parse(b)?,
            dst: WireTensor::parse(dst)?,
        })
    }
}

/// MEMSET_TENSOR: `tensor | offset u64 | size u64 | value u8`.
#[derive(Debug, PartialEq, Eq)]
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
}

/// GET_ALLOC_SIZE: `device u32 | tensor | srcs[10]` (absent sources are all-zero or id 0).
#[derive(Debug, PartialEq, Eq)]
pub struct GetAllocSize {
    pub device: u32,
    pub tensor: WireTensor,
    pub srcs: Vec<WireTensor>,
}

impl GetAllocSize {
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        let at = |i: usize| {
            b.get(4 + i * RPC_TENSOR_SIZE..).ok_or(ProtoError::Short {
                need: 3260,
                got: b.len(),
            })
        };
        let tensor = WireTensor::parse(at(0)?)?;
        let mut srcs = Vec::new();
        for i in 1..=10 {
            let s = WireTensor::parse(at(i)?)?;
            if s.id != 0 {
                srcs.push(s);
            }
        }
        Ok(GetAllocSize {
            device: u32_at(b, 0)?,
            tensor,
            srcs,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn alloc_buffer_matches_appendix_c() {
        let b = [0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            AllocBuffer::parse(&b).unwrap(),
            AllocBuffer {
                device: 0,
                size: 4096
            }
        );
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
        let g = GetTensor::parse(&b[..312]).unwrap();
        assert_eq!((g.offset, g.size), (5, 6));
        assert!(MemsetTensor::parse(&b[..312]).is_err());
        let mut s = t.encode().to_vec();
        s.push(1);
        s.extend_from_slice(&77u64.to_le_bytes());
        let h = SetTensorHeader::parse(&s).unwrap();
        assert!(h.cache_flag);
        assert_eq!(h.offset, 77);
    }

    #[test]
    fn alloc_size_skips_absent_sources() {
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
        assert_eq!(r.srcs.len(), 1);
        assert_eq!(r.srcs[0].id, 5);
    }
}
