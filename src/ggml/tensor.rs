//! A validated tensor: typed fields instead of wire bytes, sources as indices into its graph.

use super::{GgmlType, Op};

pub const MAX_DIMS: usize = 4;
pub const MAX_SRC: usize = 10;

/// `ggml_tensor_flag` bits.
pub struct TensorFlags;

impl TensorFlags {
    pub const INPUT: i32 = 1;
    pub const OUTPUT: i32 = 2;
    pub const PARAM: i32 = 4;
    pub const LOSS: i32 = 8;
    /// The node must be computed; nodes without it are skipped.
    pub const COMPUTE: i32 = 16;
}

/// Where a tensor's bytes live: a buffer of the session and a byte offset from that buffer's base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataRef {
    /// The session's buffer handle (as returned by ALLOC_BUFFER).
    pub buffer: u64,
    /// `data - base`, already checked so that `offset + nbytes <= buffer size`.
    pub offset: usize,
}

/// A tensor as the devices see it. Shapes are already checked: `nbytes()` fits in its buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// The client's identity for this tensor (only meaningful inside one graph).
    pub id: u64,
    pub typ: GgmlType,
    /// Elements per dimension, `ne[0]` innermost.
    pub ne: [usize; MAX_DIMS],
    /// Byte stride per dimension.
    pub nb: [usize; MAX_DIMS],
    pub op: Op,
    pub op_params: [i32; 16],
    pub flags: i32,
    /// Sources, as indices into `Graph::tensors`.
    pub src: [Option<usize>; MAX_SRC],
    /// The tensor this one is a view of, as an index into `Graph::tensors`.
    pub view_src: Option<usize>,
    pub view_offs: u64,
    /// `None` when the tensor has no memory on this server.
    pub data: Option<DataRef>,
    pub name: String,
}

impl Tensor {
    /// A contiguous leaf tensor with no memory; handy for building graphs and tests.
    pub fn new(typ: GgmlType, ne: [usize; MAX_DIMS]) -> Self {
        Tensor {
            id: 0,
            typ,
            ne,
            nb: contiguous_strides(typ, ne),
            op: Op::None,
            op_params: [0; 16],
            flags: 0,
            src: [None; MAX_SRC],
            view_src: None,
            view_offs: 0,
            data: None,
            name: String::new(),
        }
    }

    /// Total element count (saturating: shapes are validated before they get here).
    pub fn nelements(&self) -> usize {
        self.ne.iter().fold(1usize, |a, &n| a.saturating_mul(n))
    }

    /// Number of rows (`ne[1] * ne[2] * ne[3]`).
    pub fn nrows(&self) -> usize {
        self.ne[1..]
            .iter()
            .fold(1usize, |a, &n| a.saturating_mul(n))
    }

    /// ggml's `ggml_nbytes`; `None` on overflow.
    pub fn nbytes(&self) -> Option<usize> {
        nbytes(self.typ, self.ne, self.nb)
    }

    /// The i32 in `op_params[i]`.
    pub fn param_i32(&self, i: usize) -> i32 {
        self.op_params[i]
    }

    /// The f32 whose bits are in `op_params[i]`.
    pub fn param_f32(&self, i: usize) -> f32 {
        f32::from_bits(self.op_params[i] as u32)
    }

    pub fn has_flag(&self, flag: i32) -> bool {
        self.flags & flag != 0
    }

    /// ggml's `ggml_is_contiguous`: packed rows and dims that follow each other (dims of size 1 ignored).
    pub fn is_contiguous(&self) -> bool {
        let mut next = self.typ.type_size();
        for d in 0..MAX_DIMS {
            if self.ne[d] != 1 && self.nb[d] != next {
                return false;
            }
            next = next.saturating_mul(if d == 0 {
                self.ne[0] / self.typ.block_size()
            } else {
                self.ne[d]
            });
        }
        true
    }

    /// Each row is packed (elements of dim 0 are adjacent), whatever the outer strides.
    pub fn rows_are_contiguous(&self) -> bool {
        self.ne[0] <= 1 || self.typ.is_quantized() || self.nb[0] == self.typ.type_size()
    }
}

/// ggml's default strides for a packed tensor.
pub fn contiguous_strides(typ: GgmlType, ne: [usize; MAX_DIMS]) -> [usize; MAX_DIMS] {
    let mut nb = [0usize; MAX_DIMS];
    nb[0] = typ.type_size();
    nb[1] = (ne[0] / typ.block_size()).saturating_mul(typ.type_size());
    nb[2] = nb[1].saturating_mul(ne[1]);
    nb[3] = nb[2].saturating_mul(ne[2]);
    nb
}

/// `ggml_nbytes` (PROTOCOL.md §4.2) with overflow checks.
pub fn nbytes(typ: GgmlType, ne: [usize; MAX_DIMS], nb: [usize; MAX_DIMS]) -> Option<usize> {
    if ne.contains(&0) {
        return Some(0);
    }
    let mut total = if typ.block_size() == 1 {
        typ.type_size()
    } else {
        ne[0].checked_mul(nb[0])? / typ.block_size()
    };
    let first_strided = if typ.block_size() == 1 { 0 } else { 1 };
    for d in first_strided..MAX_DIMS {
        total = total.checked_add((ne[d] - 1).checked_mul(nb[d])?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nbytes_follows_ggml() {
        // Appendix C: 4 x f32 -> 16 bytes.
        assert_eq!(
            nbytes(GgmlType::F32, [4, 1, 1, 1], [4, 16, 16, 16]),
            Some(16)
        );
        // Q4_0 row of 96 elements: 3 blocks of 18 bytes, two rows.
        assert_eq!(
            nbytes(GgmlType::Q4_0, [96, 2, 1, 1], [18, 54, 108, 108]),
            Some(108)
        );
        // A transposed view spans its true extent.
        assert_eq!(
            nbytes(GgmlType::F32, [3, 2, 1, 1], [8, 4, 24, 24]),
            Some(4 + 2 * 8 + 4)
        );
        assert_eq!(nbytes(GgmlType::F32, [0, 5, 1, 1], [4, 0, 0, 0]), Some(0));
        assert_eq!(
            nbytes(GgmlType::F32, [usize::MAX, 2, 1, 1], [usize::MAX, 1, 1, 1]),
            None
        );
    }

    #[test]
    fn contiguity() {
        let t = Tensor::new(GgmlType::F16, [8, 3, 2, 1]);
        assert!(t.is_contiguous() && t.rows_are_contiguous());
        let mut p = t.clone();
        p.nb = [2, 32, 16, 96];
        p.ne = [8, 2, 3, 1];
        assert!(!p.is_contiguous());
    }
}
