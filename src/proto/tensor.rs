//! `rpc_tensor`: 296 packed little-endian bytes, and its validation into a `ggml::Tensor`.

use super::{ProtoError, u32_at, u64_at};
use crate::ggml::{DataRef, GgmlType, MAX_SRC, Op, Tensor, nbytes};

pub const RPC_TENSOR_SIZE: usize = 296;

/// An `rpc_tensor` exactly as on the wire (no validation yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireTensor {
    pub id: u64,
    pub typ: u32,
    pub buffer: u64,
    pub ne: [u32; 4],
    pub nb: [u32; 4],
    pub op: u32,
    pub op_params: [i32; 16],
    pub flags: i32,
    pub src: [u64; MAX_SRC],
    pub view_src: u64,
    pub view_offs: u64,
    pub data: u64,
    pub name: [u8; 64],
    pub use_count: i32,
}

impl Default for WireTensor {
    fn default() -> Self {
        WireTensor {
            id: 0,
            typ: 0,
            buffer: 0,
            ne: [0; 4],
            nb: [0; 4],
            op: 0,
            op_params: [0; 16],
            flags: 0,
            src: [0; MAX_SRC],
            view_src: 0,
            view_offs: 0,
            data: 0,
            name: [0; 64],
            use_count: 0,
        }
    }
}

impl WireTensor {
    /// Parses 296 bytes (`b` must hold at least that many; extra bytes are ignored).
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        if b.len() < RPC_TENSOR_SIZE {
            return Err(ProtoError::Short {
                need: RPC_TENSOR_SIZE,
                got: b.len(),
            });
        }
        let mut t = WireTensor {
            id: u64_at(b, 0)?,
            typ: u32_at(b, 8)?,
            buffer: u64_at(b, 12)?,
            ..Default::default()
        };
        for (i, (ne, nb)) in t.ne.iter_mut().zip(t.nb.iter_mut()).enumerate() {
            *ne = u32_at(b, 20 + 4 * i)?;
            *nb = u32_at(b, 36 + 4 * i)?;
        }
        t.op = u32_at(b, 52)?;
        for (i, p) in t.op_params.iter_mut().enumerate() {
            *p = u32_at(b, 56 + 4 * i)? as i32;
        }
        t.flags = u32_at(b, 120)? as i32;
        for (i, s) in t.src.iter_mut().enumerate() {
            *s = u64_at(b, 124 + 8 * i)?;
        }
        t.view_src = u64_at(b, 204)?;
        t.view_offs = u64_at(b, 212)?;
        t.data = u64_at(b, 220)?;
        if let Some(name) = b.get(228..292) {
            t.name.copy_from_slice(name);
        }
        t.use_count = u32_at(b, 292)? as i32;
        Ok(t)
    }

    /// Serializes to the 296-byte wire form.
    pub fn encode(&self) -> [u8; RPC_TENSOR_SIZE] {
        let mut b = [0u8; RPC_TENSOR_SIZE];
        let mut w = Writer { b: &mut b, pos: 0 };
        w.put(&self.id.to_le_bytes());
        w.put(&self.typ.to_le_bytes());
        w.put(&self.buffer.to_le_bytes());
        self.ne.iter().for_each(|v| w.put(&v.to_le_bytes()));
        self.nb.iter().for_each(|v| w.put(&v.to_le_bytes()));
        w.put(&self.op.to_le_bytes());
        self.op_params.iter().for_each(|v| w.put(&v.to_le_bytes()));
        w.put(&self.flags.to_le_bytes());
        self.src.iter().for_each(|v| w.put(&v.to_le_bytes()));
        w.put(&self.view_src.to_le_bytes());
        w.put(&self.view_offs.to_le_bytes());
        w.put(&self.data.to_le_bytes());
        w.put(&self.name);
        w.put(&self.use_count.to_le_bytes());
        b
    }

    /// Sets the name (truncated to 63 bytes, NUL-terminated like the client).
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = [0; 64];
        for (d, s) in self.name.iter_mut().zip(name.bytes().take(63)) {
            *d = s;
        }
        self
    }
}

struct Writer<'a> {
    b: &'a mut [u8; RPC_TENSOR_SIZE],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.b.get_mut(self.pos..self.pos + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.pos += bytes.len();
    }
}

/// Where the session's buffers are: `handle -> (base, size)`. Unknown handles answer `None`.
pub trait BufferLookup {
    fn buffer(&self, handle: u64) -> Option<(u64, u64)>;
}

/// Validates a wire tensor (PROTOCOL.md §4.3, made strict): known type and op, whole blocks, no size
/// overflow, and `data..data+nbytes` inside its buffer when the buffer is known. An unknown or zero
/// buffer gives `data: None` (the caller decides whether that is acceptable).
pub fn decode_tensor(w: &WireTensor, bufs: &impl BufferLookup) -> Result<Tensor, ProtoError> {
    let typ = GgmlType::from_u32(w.typ).ok_or(ProtoError::BadType(w.typ))?;
    let op = Op::from_u32(w.op).ok_or(ProtoError::BadOp(w.op))?;
    let ne = w.ne.map(|v| v as usize);
    let nb = w.nb.map(|v| v as usize);
    // ggml builds the tensor with int64 element counts: the product must fit.
    let count =
        w.ne.iter()
            .try_fold(1u64, |a, &n| a.checked_mul(n as u64))
            .ok_or(ProtoError::Overflow)?;
    if count > i64::MAX as u64 {
        return Err(ProtoError::Overflow);
    }
    if ne[0] % typ.block_size() != 0 {
        return Err(ProtoError::PartialBlock {
            typ: typ.name(),
            ne0: ne[0],
            block: typ.block_size(),
        });
    }
    let size = nbytes(typ, ne, nb).ok_or(ProtoError::Overflow)? as u64;
    let data = match bufs.buffer(w.buffer).filter(|_| w.buffer != 0) {
        Some((base, buf_size)) => {
            let end = w.data.checked_add(size).ok_or(ProtoError::Overflow)?;
            if w.data < base || end > base.saturating_add(buf_size) {
                return Err(ProtoError::OutOfBuffer {
                    data: w.data,
                    len: size,
                    base,
                    size: buf_size,
                });
            }
            let offset = usize::try_from(w.data - base).map_err(|_| ProtoError::Overflow)?;
            Some(DataRef {
                buffer: w.buffer,
                offset,
            })
        }
        None => None,
    };
    let name_len = w.name.iter().position(|&c| c == 0).unwrap_or(w.name.len());
    Ok(Tensor {
        id: w.id,
        typ,
        ne,
        nb,
        op,
        op_params: w.op_params,
        flags: w.flags,
        src: [None; MAX_SRC],
        view_src: None,
        view_offs: w.view_offs,
        data,
        name: String::from_utf8_lossy(w.name.get(..name_len).unwrap_or_default()).into_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    struct One(u64, u64, u64);
    impl BufferLookup for One {
        fn buffer(&self, h: u64) -> Option<(u64, u64)> {
            (h == self.0).then_some((self.1, self.2))
        }
    }

    fn f32x4(data: u64) -> WireTensor {
        WireTensor {
            id: 1,
            typ: 0,
            buffer: 7,
            ne: [4, 1, 1, 1],
            nb: [4, 16, 16, 16],
            data,
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let mut t = f32x4(0x1000).with_name("blk.0.attn_q.weight");
        t.op_params[15] = -3;
        t.src[9] = 42;
        t.use_count = 5;
        let b = t.encode();
        assert_eq!(&b[12..20], &7u64.to_le_bytes());
        assert_eq!(&b[220..228], &0x1000u64.to_le_bytes());
        assert_eq!(&b[292..296], &5i32.to_le_bytes());
        assert_eq!(WireTensor::parse(&b).unwrap(), t);
        assert!(WireTensor::parse(&b[..295]).is_err());
    }

    #[test]
    fn decode_checks() {
        let bufs = One(7, 0x1000, 64);
        let ok = decode_tensor(&f32x4(0x1000 + 48), &bufs).unwrap();
        assert_eq!(
            ok.data,
            Some(DataRef {
                buffer: 7,
                offset: 48
            })
        );
        assert!(matches!(
            decode_tensor(&f32x4(0x1000 + 49), &bufs),
            Err(ProtoError::OutOfBuffer { .. })
        ));
        assert!(matches!(
            decode_tensor(&f32x4(0xfff), &bufs),
            Err(ProtoError::OutOfBuffer { .. })
        ));
        assert!(matches!(
            decode_tensor(&f32x4(u64::MAX - 2), &bufs),
            Err(ProtoError::Overflow)
        ));
        let mut bad = f32x4(0x1000);
        bad.typ = 4;
        assert_eq!(decode_tensor(&bad, &bufs), Err(ProtoError::BadType(4)));
        bad.typ = 43;
        assert_eq!(decode_tensor(&bad, &bufs), Err(ProtoError::BadType(43)));
        let mut bad = f32x4(0x1000);
        bad.op = 101;
        assert_eq!(decode_tensor(&bad, &bufs), Err(ProtoError::BadOp(101)));
        let mut q = f32x4(0x1000);
        q.typ = 2;
        q.ne = [33, 1, 1, 1];
        assert!(matches!(
            decode_tensor(&q, &bufs),
            Err(ProtoError::PartialBlock { .. })
        ));
        let mut huge = f32x4(0x1000);
        huge.ne = [u32::MAX; 4];
        assert_eq!(decode_tensor(&huge, &bufs), Err(ProtoError::Overflow));
        let mut foreign = f32x4(0x1000);
        foreign.buffer = 8;
        assert_eq!(decode_tensor(&foreign, &bufs).unwrap().data, None);
    }
}
