//! ggml's tiled K-quant numerics (`quant::tiled`) for up to 4 weight rows × 4 activation columns at
//! once (Q4_K, Q6_K): each weight block is unpacked (quants, broadcast scales, mins) once and used
//! for every column. Per (row, column) the integer sums and the float epilogue are those of
//! `tiled_q4_k`/`tiled_q6_k`, block by block in increasing K, so the bits are the same.

use super::super::q8::q8k_d;
use super::super::tiled::{step, step_min};
use super::{f16v, hsum_i32, hsum_i32x4, k4_col, k4_weights, q4_k_quants, q6_k_col, q6_k_weights};

#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q4_k(xs: &[&[u8]], ys: &[&[u8]], out: &mut [f32]) {
    let mut cols: [&[[u8; 292]]; 4] = [&[]; 4];
    for (c, r) in cols.iter_mut().zip(ys) {
        *c = r.as_chunks::<292>().0;
    }
    let y = &cols[..ys.len()];
    let rm = xs.len();
    for (i, x) in xs.iter().enumerate() {
        let x = x.as_chunks::<144>().0;
        assert!(y.iter().all(|c| c.len() == x.len()));
        let mut acc = [0f32; 4];
        for (l, b) in x.iter().enumerate() {
            let w = k4_weights(b, q4_k_quants(b));
            let (d, dmin) = (f16v(b[0], b[1]), f16v(b[2], b[3]));
            for (a, col) in acc.iter_mut().zip(y) {
                let q = &col[l];
                let (sumi, prod) = k4_col(&w, q);
                *a = step_min(*a, d, dmin, hsum_i32(sumi), hsum_i32x4(prod), q8k_d(q));
            }
        }
        for (j, a) in acc.iter().take(ys.len()).enumerate() {
            out[j * rm + i] = *a;
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q6_k(xs: &[&[u8]], ys: &[&[u8]], out: &mut [f32]) {
    let mut cols: [&[[u8; 292]]; 4] = [&[]; 4];
    for (c, r) in cols.iter_mut().zip(ys) {
        *c = r.as_chunks::<292>().0;
    }
    let y = &cols[..ys.len()];
    let rm = xs.len();
    for (i, x) in xs.iter().enumerate() {
        let x = x.as_chunks::<210>().0;
        assert!(y.iter().all(|c| c.len() == x.len()));
        let mut acc = [0f32; 4];
        for (l, b) in x.iter().enumerate() {
            let w = q6_k_weights(b);
            let d = f16v(b[208], b[209]);
            for (a, col) in acc.iter_mut().zip(y) {
                let q = &col[l];
                let (sumi, off) = q6_k_col(&w, q);
                let s1 = hsum_i32(sumi) - off.iter().sum::<i32>();
                *a = step(*a, d, s1, q8k_d(q));
            }
        }
        for (j, a) in acc.iter().take(ys.len()).enumerate() {
            out[j * rm + i] = *a;
        }
    }
}

/// `TileFn` for Q6_K with the tiled path's numerics.
pub(in crate::quant) fn tiled_q6_k(xs: &[&[u8]], ys: &[&[u8]], out: &mut [f32]) {
    assert!(xs.len() <= 4 && ys.len() <= 4 && out.len() >= xs.len() * ys.len());
    // SAFETY: as in `tiled_q4_k`.
    unsafe { tile_q6_k(xs, ys, out) }
}

/// `TileFn` for Q4_K with the tiled path's numerics (for groups that take ggml's tiled path).
pub(in crate::quant) fn tiled_q4_k(xs: &[&[u8]], ys: &[&[u8]], out: &mut [f32]) {
    assert!(xs.len() <= 4 && ys.len() <= 4 && out.len() >= xs.len() * ys.len());
    // SAFETY: avx2, fma and f16c are compile-time target features wherever this module is built
    // (the `cfg` on `mod avx2`).
    unsafe { tile_q4_k(xs, ys, out) }
}
