//! The numerics of ggml-cpu's *tiled K-quant matmul* (`ggml-cpu/tiled/`, entry
//! `ggml_compute_forward_mul_mat_tiled`), as dot-product kernels.
//!
//! Why this exists: for K-quant and IQ4_XS weights, llama.cpp (as vendored by llama-cpp-python
//! 0.3.36) does not use `ggml_vec_dot_*_q8_K` once the activation batch has ≥ 8 columns
//! (`src1->ne[1] >= 8`, or ≥ 8 rows routed to an expert for MUL_MAT_ID): it multiplies 16×16
//! micro-tiles instead, and finishes each 256-element super-block with a different float
//! epilogue. The integer part is the same exact sum, but the floats round differently, and Gemma
//! amplifies last-bit differences, so matching the reference server bit for bit needs this path.
//!
//! What the reference's AVX2 micro-kernel (`tiled_run_microtile_avx2`, built with FMA) computes for
//! one (weight row, activation column), block by block in increasing K:
//!
//! * `s1 = Σ_sub scale_sub · Σ_e w_e·q8_e` and (formats with mins) `s2 = Σ_sub min_sub · bsum_sub`,
//!   both exact i32 (`maddubs`/`madd` never saturate for these ranges; the +128 activation bias of
//!   the Q6_K/Q3_K path cancels exactly against its precomputed correction);
//! * `res = d · (f32)s1` (one rounding), then with mins `res = fnmadd(dmin, (f32)s2, res)` (FMA);
//! * `acc = fma(res, d8, acc)` where `d8` is the Q8_K block scale and `acc` starts at 0.
//!
//! `d`/`dmin` are the weight block's own f16 scales (not pre-multiplied by `d8` as in `vec_dot`).
//! Threading, tiling and the narrow (num_k > 1) path only change which blocks are unpacked when,
//! never this per-element order, so every output is a pure function of its row and column; the
//! portable kernels here compute the same bits as the AVX2 ones.

use super::DotFn;
use super::f16_at;
use super::iq4::sums_iq4_xs;
use super::k_dot::{sums_q2_k, sums_q3_k, sums_q4_k, sums_q5_k, sums_q6_k};
use super::q8::q8k_d;
use crate::ggml::GgmlType;

/// ggml takes the tiled path when the activation batch has at least this many columns.
pub const MIN_COLS: usize = 8;

/// One block's contribution, with mins: `fma(fnmadd(dmin, s2, d·s1), d8, acc)`.
#[inline(always)]
pub(super) fn step_min(acc: f32, d: f32, dmin: f32, s1: i32, s2: i32, d8: f32) -> f32 {
    let res = (-dmin).mul_add(s2 as f32, d * s1 as f32);
    res.mul_add(d8, acc)
}

/// One block's contribution, without mins: `fma(d·s1, d8, acc)`.
#[inline(always)]
pub(super) fn step(acc: f32, d: f32, s1: i32, d8: f32) -> f32 {
    (d * s1 as f32).mul_add(d8, acc)
}

fn tiled_q2_k(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (b, q) in x.as_chunks::<84>().0.iter().zip(y.as_chunks::<292>().0) {
        let (s1, s2) = sums_q2_k(b, q);
        acc = step_min(
            acc,
            f16_at(b[80], b[81]),
            f16_at(b[82], b[83]),
            s1,
            s2,
            q8k_d(q),
        );
    }
    acc
}

fn tiled_q3_k(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (b, q) in x.as_chunks::<110>().0.iter().zip(y.as_chunks::<292>().0) {
        let (s1, _) = sums_q3_k(b, q);
        acc = step(acc, f16_at(b[108], b[109]), s1, q8k_d(q));
    }
    acc
}

fn tiled_q4_k(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (b, q) in x.as_chunks::<144>().0.iter().zip(y.as_chunks::<292>().0) {
        let (s1, s2) = sums_q4_k(b, q);
        acc = step_min(
            acc,
            f16_at(b[0], b[1]),
            f16_at(b[2], b[3]),
            s1,
            s2,
            q8k_d(q),
        );
    }
    acc
}

fn tiled_q5_k(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (b, q) in x.as_chunks::<176>().0.iter().zip(y.as_chunks::<292>().0) {
        let (s1, s2) = sums_q5_k(b, q);
        acc = step_min(
            acc,
            f16_at(b[0], b[1]),
            f16_at(b[2], b[3]),
            s1,
            s2,
            q8k_d(q),
        );
    }
    acc
}

fn tiled_q6_k(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (b, q) in x.as_chunks::<210>().0.iter().zip(y.as_chunks::<292>().0) {
        let (s1, _) = sums_q6_k(b, q);
        acc = step(acc, f16_at(b[208], b[209]), s1, q8k_d(q));
    }
    acc
}

fn tiled_iq4_xs(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (b, q) in x.as_chunks::<136>().0.iter().zip(y.as_chunks::<292>().0) {
        acc = step(acc, f16_at(b[0], b[1]), sums_iq4_xs(b, q), q8k_d(q));
    }
    acc
}

/// The portable tiled-path kernels (same bits as the AVX2 ones).
pub fn scalar_tiled_dot_fn(typ: GgmlType) -> Option<DotFn> {
    use GgmlType::*;
    Some(match typ {
        Q2K => tiled_q2_k,
        Q3K => tiled_q3_k,
        Q4K => tiled_q4_k,
        Q5K => tiled_q5_k,
        Q6K => tiled_q6_k,
        Iq4Xs => tiled_iq4_xs,
        _ => return None,
    })
}

/// The kernel ggml's tiled path amounts to for weights of `typ`, if it has one (the types of
/// `ggml_tiled_supported` this crate can multiply); the AVX2 version where the build has one.
pub fn tiled_dot_fn(typ: GgmlType) -> Option<DotFn> {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    {
        let f: Option<DotFn> = match typ {
            GgmlType::Q4K => Some(super::avx2::tiled_q4_k),
            GgmlType::Q5K => Some(super::avx2::tiled_q5_k),
            GgmlType::Q6K => Some(super::avx2::tiled_q6_k),
            _ => None,
        };
        if f.is_some() {
            return f;
        }
    }
    scalar_tiled_dot_fn(typ)
}

/// A register-tiled kernel with `tiled_dot_fn`'s numerics (see `TileFn`), where one exists.
pub fn tiled_tile_fn(typ: GgmlType) -> Option<super::TileFn> {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    match typ {
        GgmlType::Q4K => return Some(super::avx2::k_tiles::tiled_q4_k),
        GgmlType::Q6K => return Some(super::avx2::k_tiles::tiled_q6_k),
        _ => {}
    }
    let _ = typ;
    None
}

/// Every tiled tile kernel this build has for `typ`: `tiled_tile_fn`'s and the 256-bit one.
#[cfg(test)]
pub(super) fn tiled_tile_fns(typ: GgmlType) -> Vec<super::TileFn> {
    let mut v: Vec<super::TileFn> = tiled_tile_fn(typ).into_iter().collect();
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    match typ {
        GgmlType::Q4K => v.push(super::avx2::ktile::tiled_q4_k),
        GgmlType::Q6K => v.push(super::avx2::ktile::tiled_q6_k),
        _ => {}
    }
    v
}

/// Whether ggml-cpu would take the tiled path: on unless `GGML_CPU_TILED_MM=0` (ggml's master
/// switch, read once), for `cols` ≥ 8 activation columns, or any count with
/// `GGML_CPU_TILED_MM_FORCE=1`.
pub fn use_tiled(cols: usize) -> bool {
    use std::sync::OnceLock;
    static FLAGS: OnceLock<(bool, bool)> = OnceLock::new();
    let (enabled, forced) = *FLAGS.get_or_init(|| {
        let num = |k: &str| {
            std::env::var(k)
                .ok()
                .map(|v| v.trim().parse::<i64>().unwrap_or(0))
        };
        (
            num("GGML_CPU_TILED_MM").is_none_or(|v| v != 0),
            num("GGML_CPU_TILED_MM_FORCE") == Some(1),
        )
    });
    enabled && (cols >= MIN_COLS || forced)
}
