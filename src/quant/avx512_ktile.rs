//! The Q4_K and Q6_K tiles of `avx2_ktile` with two activation columns per zmm (one per 256-bit half): the
//! weight block's quants and broadcast scales fill both halves, so each `maddubs`/`madd` does two
//! columns' integer work. Every i32 lane holds what the 256-bit kernel's lane holds, and the float
//! epilogue is the same scalar `step_min`, so the bits are `tiled_q4_k`'s.

use std::arch::x86_64::*;

use super::super::q8::q8k_d;
use super::super::tiled::{step, step_min};
use super::{
    f16v, hsum_i32, hsum_i32x4, k4_mins, k4_weights, load, q4_k_quants, q6_k_off, q6_k_weights,
};

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
#[inline]
fn pair(a: __m256i, b: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b)
}

/// `RM`-independent: every row of `xs` against the column pairs of `ys` (`2 * np` rows, padded).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
fn tile(xs: &[&[u8]], ys: &[&[u8]; 4], np: usize, out: &mut [f32; 16]) {
    let cols: [&[[u8; 292]]; 4] = std::array::from_fn(|j| ys[j].as_chunks::<292>().0);
    let rm = xs.len();
    for (i, x) in xs.iter().enumerate() {
        let x = x.as_chunks::<144>().0;
        assert!(cols.iter().all(|c| c.len() == x.len()));
        let mut acc = [0f32; 4];
        for (l, b) in x.iter().enumerate() {
            let w = k4_weights(b, q4_k_quants(b));
            let (d, dmin) = (f16v(b[0], b[1]), f16v(b[2], b[3]));
            let zq: [(__m512i, __m512i); 4] = std::array::from_fn(|c| {
                let (lo, hi) = w.quants[c];
                (pair(lo, lo), pair(hi, hi))
            });
            let zs: [(__m512i, __m512i); 4] = std::array::from_fn(|c| {
                let (sl, sh) = w.scales[c];
                (pair(sl, sl), pair(sh, sh))
            });
            for p in 0..np {
                let (q0, q1) = (&cols[2 * p][l], &cols[2 * p + 1][l]);
                let mut sumi = _mm512_setzero_si512();
                for c in 0..4 {
                    let yl = pair(load(q0, 4 + 64 * c), load(q1, 4 + 64 * c));
                    let yh = pair(load(q0, 36 + 64 * c), load(q1, 36 + 64 * c));
                    let pl = _mm512_madd_epi16(zs[c].0, _mm512_maddubs_epi16(zq[c].0, yl));
                    let ph = _mm512_madd_epi16(zs[c].1, _mm512_maddubs_epi16(zq[c].1, yh));
                    sumi = _mm512_add_epi32(sumi, _mm512_add_epi32(pl, ph));
                }
                let s1 = [
                    hsum_i32(_mm512_castsi512_si256(sumi)),
                    hsum_i32(_mm512_extracti64x4_epi64::<1>(sumi)),
                ];
                for (k, q) in [q0, q1].into_iter().enumerate() {
                    let s2 = hsum_i32x4(k4_mins(&w, q));
                    acc[2 * p + k] = step_min(acc[2 * p + k], d, dmin, s1[k], s2, q8k_d(q));
                }
            }
        }
        for (j, a) in acc.iter().take(2 * np).enumerate() {
            out[j * rm + i] = *a;
        }
    }
}

/// The Q6_K version of `tile`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
fn tile6(xs: &[&[u8]], ys: &[&[u8]; 4], np: usize, out: &mut [f32; 16]) {
    let cols: [&[[u8; 292]]; 4] = std::array::from_fn(|j| ys[j].as_chunks::<292>().0);
    let rm = xs.len();
    for (i, x) in xs.iter().enumerate() {
        let x = x.as_chunks::<210>().0;
        assert!(cols.iter().all(|c| c.len() == x.len()));
        let mut acc = [0f32; 4];
        for (l, b) in x.iter().enumerate() {
            let w = q6_k_weights(b);
            let d = f16v(b[208], b[209]);
            let zq: [__m512i; 8] = std::array::from_fn(|k| pair(w.quants[k], w.quants[k]));
            let zs: [__m512i; 8] = std::array::from_fn(|k| pair(w.scales[k], w.scales[k]));
            for p in 0..np {
                let (q0, q1) = (&cols[2 * p][l], &cols[2 * p + 1][l]);
                let mut sumi = _mm512_setzero_si512();
                for k in 0..8 {
                    let off = 4 + 128 * (k / 4) + 32 * (k % 4);
                    let y = pair(load(q0, off), load(q1, off));
                    let prod = _mm512_madd_epi16(zs[k], _mm512_maddubs_epi16(zq[k], y));
                    sumi = _mm512_add_epi32(sumi, prod);
                }
                let s1 = [
                    hsum_i32(_mm512_castsi512_si256(sumi)),
                    hsum_i32(_mm512_extracti64x4_epi64::<1>(sumi)),
                ];
                for (k, q) in [q0, q1].into_iter().enumerate() {
                    let s1 = s1[k] - q6_k_off(&w, q).iter().sum::<i32>();
                    acc[2 * p + k] = step(acc[2 * p + k], d, s1, q8k_d(q));
                }
            }
        }
        for (j, a) in acc.iter().take(2 * np).enumerate() {
            out[j * rm + i] = *a;
        }
    }
}

/// `TileFn` for Q6_K with the tiled path's numerics.
pub(in crate::quant) fn tiled_q6_k(xs: &[&[u8]], ys: &[&[u8]], out: &mut [f32]) {
    let (rm, rn) = (xs.len(), ys.len());
    assert!((1..=4).contains(&rm) && (1..=4).contains(&rn) && out.len() >= rm * rn);
    let y: [&[u8]; 4] = std::array::from_fn(|j| ys[j.min(rn - 1)]);
    let mut res = [0f32; 16];
    // SAFETY: as in `tiled_q4_k`.
    unsafe { tile6(xs, &y, rn.div_ceil(2), &mut res) };
    // A full tile with a constant length: copied inline rather than through a memcpy call.

    if rm * rn == 16 {
        out[..16].copy_from_slice(&res);
    } else {
        out[..rm * rn].copy_from_slice(&res[..rm * rn]);
    }
}

/// `TileFn` for Q4_K with the tiled path's numerics.
pub(in crate::quant) fn tiled_q4_k(xs: &[&[u8]], ys: &[&[u8]], out: &mut [f32]) {
    let (rm, rn) = (xs.len(), ys.len());
    assert!((1..=4).contains(&rm) && (1..=4).contains(&rn) && out.len() >= rm * rn);
    // Odd column counts repeat the last column; its results are dropped.
    let y: [&[u8]; 4] = std::array::from_fn(|j| ys[j.min(rn - 1)]);
    let mut res = [0f32; 16];
    // SAFETY: every feature `tile` enables is a compile-time target feature wherever this module
    // is built (the `cfg` on `mod ktile512`).
    unsafe { tile(xs, &y, rn.div_ceil(2), &mut res) };
    // A full tile with a constant length: copied inline rather than through a memcpy call.

    if rm * rn == 16 {
        out[..16].copy_from_slice(&res);
    } else {
        out[..rm * rn].copy_from_slice(&res[..rm * rn]);
    }
}
