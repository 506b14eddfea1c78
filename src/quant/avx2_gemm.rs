//! Register-tiled GEMM micro-kernels for the 32-element block types against Q8_0 activations
//! (Q8_0, Q5_0, Q4_0 weights), the shape of llamafile's `tinyBLAS_Q0_AVX` that ggml-cpu runs for
//! prompts. A tile of up to 4 weight rows × 4 activation rows unpacks each weight block once and
//! reuses each activation block 4 times. Per (row, column) the arithmetic is exactly the mat-vec's
//! (and ggml's): the block's integer sums in 8 i32 lanes, one FMA per block with the f32 product of
//! the two f16 scales, then `hsum`: results are bit-identical to `dot_q*_0`, whatever the tile.
//! The integer sums go through `dot_u8` (`vpdpbusd` where the build has VNNI).

use std::arch::x86_64::*;

use super::{bits_to_bytes, dot_u8, f16v, hsum, load, nibbles, or_where_clear};

const Q8_0: u8 = 0;
const Q4_0: u8 = 1;
const Q5_0: u8 = 2;

/// The 32 signed quants of one weight block of kind `K` (`BX` bytes, f16 scale at offset 0).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn unpack<const K: u8, const BX: usize>(b: &[u8; BX]) -> __m256i {
    match K {
        Q8_0 => load(b, 2),
        Q4_0 => _mm256_sub_epi8(nibbles(b, 2), _mm256_set1_epi8(8)),
        _ => {
            // Q5_0: quant − 16 is the nibble with 0xF0 or'ed in where the fifth bit is clear.
            let hi = bits_to_bytes(u32::from_le_bytes([b[2], b[3], b[4], b[5]]));
            or_where_clear(nibbles(b, 6), hi, _mm256_set1_epi8(-16))
        }
    }
}

/// The `RM` × `RN` tile for weight blocks of kind `K`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn tile<const K: u8, const BX: usize, const RM: usize, const RN: usize>(
    xs: &[&[u8]],
    ys: &[&[u8]],
    out: &mut [f32],
) {
    let x: [&[[u8; BX]]; RM] = std::array::from_fn(|i| xs[i].as_chunks::<BX>().0);
    let y: [&[[u8; 34]]; RN] = std::array::from_fn(|j| ys[j].as_chunks::<34>().0);
    let nb = y[0].len();
    assert!(x.iter().all(|r| r.len() == nb) && y.iter().all(|r| r.len() == nb));
    assert!(out.len() >= RM * RN);
    let mut acc = [[_mm256_setzero_ps(); RM]; RN];
    for l in 0..nb {
        let mut ax = [_mm256_setzero_si256(); RM];
        let mut qx = [_mm256_setzero_si256(); RM];
        let mut dx = [0f32; RM];
        for i in 0..RM {
            let b = &x[i][l];
            qx[i] = unpack::<K, BX>(b);
            ax[i] = _mm256_sign_epi8(qx[i], qx[i]);
            dx[i] = f16v(b[0], b[1]);
        }
        for j in 0..RN {
            let q = &y[j][l];
            let qy = load(q, 2);
            let dy = f16v(q[0], q[1]);
            for i in 0..RM {
                let s = dot_u8(ax[i], _mm256_sign_epi8(qy, qx[i]));
                acc[j][i] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dx[i] * dy), _mm256_cvtepi32_ps(s), acc[j][i]);
            }
        }
    }
    for j in 0..RN {
        for i in 0..RM {
            out[j * RM + i] = hsum(acc[j][i]);
        }
    }
}

/// One safe entry point per weight type, dispatching on the tile's shape. SAFETY (for the
/// `unsafe` below): this module is compiled only where avx2, fma and f16c are compile-time target
/// features (the `cfg` on `mod avx2`), so every CPU that runs this binary has them.
macro_rules! gemm_entry {
    ($name:ident, $kind:ident, $bx:literal) => {
        pub(in crate::quant) fn $name(xs: &[&[u8]], ys: &[&[u8]], out: &mut [f32]) {
            macro_rules! go {
                ($rm:literal, $rn:literal) => {
                    // SAFETY: see the macro's comment.
                    unsafe { tile::<$kind, $bx, $rm, $rn>(xs, ys, out) }
                };
            }
            match (xs.len(), ys.len()) {
                (4, 4) => go!(4, 4),
                (4, 3) => go!(4, 3),
                (4, 2) => go!(4, 2),
                (4, 1) => go!(4, 1),
                (3, 4) => go!(3, 4),
                (3, 3) => go!(3, 3),
                (3, 2) => go!(3, 2),
                (3, 1) => go!(3, 1),
                (2, 4) => go!(2, 4),
                (2, 3) => go!(2, 3),
                (2, 2) => go!(2, 2),
                (2, 1) => go!(2, 1),
                (1, 4) => go!(1, 4),
                (1, 3) => go!(1, 3),
                (1, 2) => go!(1, 2),
                (1, 1) => go!(1, 1),
                (m, n) => panic!("gemm tile of {m} x {n} rows (1..=4 each)"),
            }
        }
    };
}

gemm_entry!(gemm_q8_0, Q8_0, 34);
gemm_entry!(gemm_q4_0, Q4_0, 18);
gemm_entry!(gemm_q5_0, Q5_0, 22);
