//! Plumbing shared by the image and signal families (conv, im2col, pool, upscale, generators): sources
//! are read whole into logical f32 order (so every stride and float type is honoured once, and all
//! later indexing is plain bounds-checked slice indexing), and op parameters are read as ggml does.

use super::elementwise::rows::{ensure, shape};
use super::{Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Tensor};

/// A tensor's values in logical order (i0 fastest) with its shape.
pub struct Vol {
    pub v: Vec<f32>,
    pub ne: [usize; 4],
}

impl Vol {
    pub fn read(s: &Src<'_>) -> Result<Self, DeviceError> {
        Ok(Vol {
            v: access::read_all(s.t, s.data)?,
            ne: s.t.ne,
        })
    }

    /// Position of element `(i0, i1, i2, i3)` in `v`.
    #[inline]
    pub fn idx(&self, i0: usize, i1: usize, i2: usize, i3: usize) -> usize {
        ((i3 * self.ne[2] + i2) * self.ne[1] + i1) * self.ne[0] + i0
    }

    #[inline]
    pub fn at(&self, i0: usize, i1: usize, i2: usize, i3: usize) -> f32 {
        self.v[self.idx(i0, i1, i2, i3)]
    }

    /// Row `(i1, i2, i3)`.
    #[inline]
    pub fn row(&self, i1: usize, i2: usize, i3: usize) -> &[f32] {
        let s = self.idx(0, i1, i2, i3);
        &self.v[s..s + self.ne[0]]
    }
}

/// `op_params[k]` widened, as the kernels' int64 arithmetic uses it.
#[inline]
pub fn param(t: &Tensor, k: usize) -> i64 {
    i64::from(t.param_i32(k))
}

/// ggml_calc_conv_output_size.
pub fn conv_out(ins: usize, ks: usize, s: i64, p: i64, d: i64) -> i64 {
    (ins as i64 + 2 * p - d * (ks as i64 - 1) - 1) / s + 1
}

/// `Some(i)` when the signed coordinate `i` lies in `[0, n)`.
#[inline]
pub fn inside(i: i64, n: usize) -> Option<usize> {
    (i >= 0 && (i as u64) < n as u64).then_some(i as usize)
}

/// The float types the row helpers read and write.
pub fn is_float(t: GgmlType) -> bool {
    matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16)
}

/// `Err` naming the op and both shapes unless `d.ne == want`.
pub fn ensure_shape(d: &Tensor, want: [i64; 4], what: &Tensor) -> Result<(), String> {
    let ok = (0..4).all(|k| want[k] >= 0 && d.ne[k] as i64 == want[k]);
    ensure(ok, || {
        format!(
            "{}: output {} should be {want:?} for {}",
            d.op.name(),
            shape(d),
            shape(what)
        )
    })
}

/// `Err` unless `ok`, naming the op and the offending types.
pub fn ensure_types(d: &Tensor, ok: bool, srcs: &[&Tensor]) -> Result<(), String> {
    ensure(ok, || {
        let names: Vec<_> = srcs.iter().map(|s| s.typ.name()).collect();
        format!(
            "{}: unsupported types {names:?} -> {}",
            d.op.name(),
            d.typ.name()
        )
    })
}

/// `Err` unless every listed parameter is at least `min`.
pub fn ensure_params_at_least(d: &Tensor, ks: &[usize], min: i32) -> Result<(), String> {
    ensure(ks.iter().all(|&k| d.param_i32(k) >= min), || {
        format!(
            "{}: parameters {:?} must be at least {min}",
            d.op.name(),
            ks.iter().map(|&k| d.param_i32(k)).collect::<Vec<_>>()
        )
    })
}
