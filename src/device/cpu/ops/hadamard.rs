//! MUL_MAT with `GGML_HINT_SRC0_IS_HADAMARD` (op_params[1] = 1): llama.cpp rotates Q and K by a
//! Hadamard matrix before a quantized KV cache, and ggml-cpu then ignores src0 and runs a fast
//! Walsh–Hadamard transform on each src1 row. Its rounding differs from a matmul's in the last bits,
//! and those bits decide the cache's quantization: a plain matmul here puts Gemma 3's logits with a
//! q4_0 cache out of the bound (NMSE 2e-2), the transform makes them bit-identical.
//!
//! ggml's order: scale every element by `1/sqrt(n)` first, then the butterflies with `len` = 1, 2, 4,
//! ... (its SIMD passes compute `u - v` as `fma(v, -1, u)`, which rounds the same).

use rayon::prelude::*;

use super::access::{read_row, unravel_row};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Tensor};

/// `GGML_HINT_SRC0_IS_HADAMARD`.
const HINT_HADAMARD: i32 = 1;

/// Whether ggml-cpu would run this MUL_MAT node as a transform (its conditions, plus a power-of-two
/// row, which ggml asserts; other lengths are computed as the matmul they describe).
pub fn applies(d: &Tensor, a: &Tensor, b: &Tensor) -> bool {
    d.param_i32(1) == HINT_HADAMARD
        && a.typ == GgmlType::F32
        && d.typ == GgmlType::F32
        && matches!(b.typ, GgmlType::F32 | GgmlType::F16)
        && b.ne[0].is_power_of_two()
        && d.ne[0] == b.ne[0]
        && d.ne[1..] == b.ne[1..]
}

/// The transform of one row, in place.
fn fwht(row: &mut [f32]) {
    let n = row.len();
    let scale = 1.0 / (n as f32).sqrt();
    row.iter_mut().for_each(|x| *x *= scale);
    let mut len = 1;
    while len < n {
        for block in row.chunks_exact_mut(2 * len) {
            let (lo, hi) = block.split_at_mut(len);
            for (u, v) in lo.iter_mut().zip(hi.iter_mut()) {
                let (a, b) = (*u, *v);
                *u = a + b;
                *v = a - b;
            }
        }
        len <<= 1;
    }
}

pub fn run(b: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let n = b.t.ne[0];
    let t = dst.t;
    if t.nb[0] != 4 || t.nelements() == 0 {
        return Err(DeviceError::op(
            "MUL_MAT",
            "Hadamard result must have packed rows",
        ));
    }
    let rows: Vec<Vec<f32>> = (0..b.t.nrows())
        .into_par_iter()
        .map(|r| {
            let (i1, i2, i3) = unravel_row(b.t, r);
            let mut row = vec![0f32; n];
            read_row(b.t, b.data, i1, i2, i3, &mut row)?;
            fwht(&mut row);
            Ok(row)
        })
        .collect::<Result<_, DeviceError>>()?;
    for (r, row) in rows.iter().enumerate() {
        let (i1, i2, i3) = unravel_row(t, r);
        let off = i1 * t.nb[1] + i2 * t.nb[2] + i3 * t.nb[3];
        let out = dst
            .data
            .get_mut(off..off + 4 * n)
            .ok_or_else(|| DeviceError::op("MUL_MAT", "result row outside its tensor"))?;
        for (o, v) in out.chunks_exact_mut(4).zip(row) {
            o.copy_from_slice(&v.to_le_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu::ops::testutil::{HostTensor, Rng, run_op};
    use crate::ggml::Op;

    /// The Sylvester Hadamard matrix entry H[i][j] = (-1)^popcount(i & j).
    fn h(i: usize, j: usize) -> f64 {
        if (i & j).count_ones().is_multiple_of(2) {
            1.0
        } else {
            -1.0
        }
    }

    #[test]
    fn transform_is_the_scaled_hadamard_product() {
        let mut rng = Rng::new(3);
        for n in [1usize, 2, 8, 256] {
            let x = rng.vec(n, -1.0, 1.0);
            let mut got = x.clone();
            fwht(&mut got);
            let s = 1.0 / (n as f64).sqrt();
            for (i, g) in got.iter().enumerate() {
                let want: f64 = (0..n).map(|j| h(i, j) * f64::from(x[j]) * s).sum();
                assert!(
                    (f64::from(*g) - want).abs() < 1e-5,
                    "n {n} i {i}: {g} vs {want}"
                );
            }
        }
    }

    #[test]
    fn hinted_mul_mat_runs_the_transform_and_ignores_src0() {
        let mut rng = Rng::new(4);
        let (n, cols) = (256, 5);
        // src0 is not even a Hadamard matrix: ggml-cpu never reads it.
        let a = HostTensor::from_f32(GgmlType::F32, [n, n, 1, 1], &rng.vec(n * n, -1.0, 1.0));
        for bt in [GgmlType::F32, GgmlType::F16] {
            let vals = rng.vec(n * cols, -2.0, 2.0);
            let b = HostTensor::from_f32(bt, [n, cols, 1, 1], &vals);
            let mut d = HostTensor::zeros(GgmlType::F32, [n, cols, 1, 1]);
            let mut p = [0i32; 16];
            p[1] = HINT_HADAMARD;
            run_op(Op::MulMat, p, &[Some(&a), Some(&b)], &mut d).expect("runs");
            let bv = b.to_f32();
            for (c, got) in d.to_f32().chunks_exact(n).enumerate() {
                let mut want = bv[c * n..(c + 1) * n].to_vec();
                fwht(&mut want);
                assert_eq!(got, &want[..], "{} column {c}", bt.name());
            }
        }
    }
}
