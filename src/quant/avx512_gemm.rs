//! The Q8_0/Q5_0/Q4_0 GEMM tiles (see `avx2_gemm`) in 512-bit registers, for builds with AVX-512
//! BW/DQ/VL and VNNI. Each zmm holds two (row, column) pairs' 8-lane accumulators, one per 256-bit
//! half, so every lane sees exactly the mat-vec's float operations and results stay bit-identical.
//!
//! The integer sums take one `vpdpbusd` per row and column pair: the weight quants are made unsigned
//! (`u = x + c`, c = 128, 16 or 8) and the accumulator starts at `−c·Σy` per lane, which the same
//! instruction computes once per activation block. `Σ u·y − c·Σy = Σ x·y` exactly, lane by lane
//! (each lane sums the same 4 bytes as ggml's `maddubs`/`madd` or sign + `vpdpbusd`). The only
//! difference from ggml: where an activation quant is −128 against a weight quant of −128, ggml's
//! `sign` wraps and this does not; ggml's own quantization never produces −128 activations.

use std::arch::x86_64::*;

use super::{bits_to_bytes, f16v, load, nibbles, or_where_set};

const Q8_0: u8 = 0;
const Q4_0: u8 = 1;
const Q5_0: u8 = 2;

/// The unsigned quants `x + c` of one weight block of kind `K`, and `c`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn unpack<const K: u8, const BX: usize>(b: &[u8; BX]) -> __m256i {
    match K {
        Q8_0 => _mm256_xor_si256(load(b, 2), _mm256_set1_epi8(-128)),
        Q4_0 => nibbles(b, 2),
        _ => {
            let hi = bits_to_bytes(u32::from_le_bytes([b[2], b[3], b[4], b[5]]));
            or_where_set(nibbles(b, 6), hi, _mm256_set1_epi8(16))
        }
    }
}

const fn offset(k: u8) -> i8 {
    match k {
        Q8_0 => -128, // 128 as an unsigned byte
        Q4_0 => 8,
        _ => 16,
    }
}

/// Σ of the 8 lanes of one 256-bit half, in `hsum`'s order.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn hsum_half<const H: i32>(x: __m512) -> f32 {
    super::hsum(_mm512_extractf32x8_ps::<H>(x))
}

/// `RM` rows × `NP` column pairs; `ys` has `2 * NP` rows (the caller pads odd counts).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn tile<const K: u8, const BX: usize, const RM: usize, const NP: usize>(
    xs: &[&[u8]],
    ys: &[&[u8]; 4],
    out: &mut [f32; 16],
) {
    let x: [&[[u8; BX]]; RM] = std::array::from_fn(|i| xs[i].as_chunks::<BX>().0);
    let y: [&[[u8; 34]]; 4] = std::array::from_fn(|j| ys[j].as_chunks::<34>().0);
    let nb = y[0].len();
    assert!(x.iter().all(|r| r.len() == nb));
    assert!(y[..2 * NP].iter().all(|r| r.len() == nb));
    let c = _mm512_set1_epi8(offset(K));
    let mut acc = [[_mm512_setzero_ps(); RM]; NP];
    for l in 0..nb {
        let mut u = [_mm512_setzero_si512(); RM];
        let mut dx = [0f32; RM];
        for i in 0..RM {
            let b = &x[i][l];
            u[i] = _mm512_broadcast_i64x4(unpack::<K, BX>(b));
            dx[i] = f16v(b[0], b[1]);
        }
        for p in 0..NP {
            let (q0, q1) = (&y[2 * p][l], &y[2 * p + 1][l]);
            let qy = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load(q0, 2)), load(q1, 2));
            let base = _mm512_sub_epi32(
                _mm512_setzero_si512(),
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), c, qy),
            );
            let dy = _mm512_insertf32x8::<1>(
                _mm512_set1_ps(f16v(q0[0], q0[1])),
                _mm256_set1_ps(f16v(q1[0], q1[1])),
            );
            for i in 0..RM {
                let s = _mm512_dpbusd_epi32(base, u[i], qy);
                let d = _mm512_mul_ps(_mm512_set1_ps(dx[i]), dy);
                acc[p][i] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[p][i]);
            }
        }
    }
    for p in 0..NP {
        for i in 0..RM {
            out[2 * p * RM + i] = hsum_half::<0>(acc[p][i]);
            out[(2 * p + 1) * RM + i] = hsum_half::<1>(acc[p][i]);
        }
    }
}

/// Safe entry points with `TileFn`'s contract. SAFETY (for the `unsafe` below): this module is
/// compiled only where every feature `tile` enables is a compile-time target feature (the `cfg` on
/// `mod gemm512`), so every CPU that runs this binary has them.
macro_rules! gemm_entry {
    ($name:ident, $kind:ident, $bx:literal) => {
        pub(in crate::quant) fn $name(xs: &[&[u8]], ys: &[&[u8]], out: &mut [f32]) {
            let (rm, rn) = (xs.len(), ys.len());
            assert!((1..=4).contains(&rm) && (1..=4).contains(&rn) && out.len() >= rm * rn);
            // Odd column counts repeat the last column; its results are dropped.
            let y: [&[u8]; 4] = std::array::from_fn(|j| ys[j.min(rn - 1)]);
            let mut res = [0f32; 16];
            macro_rules! go {
                ($rm:literal, $np:literal) => {
                    // SAFETY: see the macro's comment.
                    unsafe { tile::<$kind, $bx, $rm, $np>(xs, &y, &mut res) }
                };
            }
            match (rm, rn.div_ceil(2)) {
                (4, 2) => go!(4, 2),
                (4, _) => go!(4, 1),
                (3, 2) => go!(3, 2),
                (3, _) => go!(3, 1),
                (2, 2) => go!(2, 2),
                (2, _) => go!(2, 1),
                (_, 2) => go!(1, 2),
                _ => go!(1, 1),
            }
            // A full tile with a constant length: copied inline rather than through a memcpy call.

            if rm * rn == 16 {
                out[..16].copy_from_slice(&res);
            } else {
                out[..rm * rn].copy_from_slice(&res[..rm * rn]);
            }
        }
    };
}

gemm_entry!(gemm_q8_0, Q8_0, 34);
gemm_entry!(gemm_q4_0, Q4_0, 18);
gemm_entry!(gemm_q5_0, Q5_0, 22);
