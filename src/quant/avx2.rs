//! AVX2 versions of the hot dot products (compiled when the build targets AVX2 + FMA + F16C, as the
//! server's `target-cpu=native` build does on x86-64). Same integer sums per (sub-)block as the
//! scalar kernels, same f32 scales; the per-block float terms accumulate in 8 lanes with FMA like
//! ggml's own AVX2 code, so results differ from the scalar kernels only by f32 rounding.
//!
//! Every load goes through `load`/`load16`, which assert that the bytes lie inside the block array.

use std::arch::x86_64::*;

use super::f16_table::f16_lut;
use super::k_quants::{k4_packed, scale_bytes};
use super::q8::{q8k_bsums, q8k_d};

// Where the AVX-512 tiles are used these are kept for their tests (`quant::tile_fns`).
#[cfg_attr(
    all(
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512dq",
        target_feature = "avx512vl",
        target_feature = "avx512vnni"
    ),
    allow(dead_code)
)]
#[path = "avx2_gemm.rs"]
pub(super) mod gemm;
#[cfg(all(
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512dq",
    target_feature = "avx512vl",
    target_feature = "avx512vnni"
))]
#[path = "avx512_gemm.rs"]
pub(super) mod gemm512;
#[cfg(all(
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512dq",
    target_feature = "avx512vl"
))]
#[path = "avx512_ktile.rs"]
pub(super) mod ktile512;
// Where `ktile512` serves Q4_K/Q6_K these tiles are kept for their tests (`tiled::tiled_tile_fns`).
#[cfg_attr(
    all(
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512dq",
        target_feature = "avx512vl"
    ),
    allow(dead_code)
)]
#[path = "avx2_ktile.rs"]
pub(super) mod ktile;

/// The Q*_0 tiles this build serves: 512-bit where it has AVX-512 BW/DQ/VL and VNNI.
pub(super) mod q0_tiles {
    #[cfg(not(all(
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512dq",
        target_feature = "avx512vl",
        target_feature = "avx512vnni"
    )))]
    pub(in crate::quant) use super::gemm::{gemm_q4_0, gemm_q5_0, gemm_q8_0};
    #[cfg(all(
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512dq",
        target_feature = "avx512vl",
        target_feature = "avx512vnni"
    ))]
    pub(in crate::quant) use super::gemm512::{gemm_q4_0, gemm_q5_0, gemm_q8_0};
}

/// The tiled-path K-quant tiles this build serves: 512-bit where it has AVX-512 BW/DQ/VL.
pub(super) mod k_tiles {
    #[cfg(not(all(
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512dq",
        target_feature = "avx512vl"
    )))]
    pub(in crate::quant) use super::ktile::{tiled_q4_k, tiled_q6_k};
    #[cfg(all(
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512dq",
        target_feature = "avx512vl"
    ))]
    pub(in crate::quant) use super::ktile512::{tiled_q4_k, tiled_q6_k};
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load<const B: usize>(b: &[u8; B], off: usize) -> __m256i {
    assert!(off + 32 <= B);
    // SAFETY: the assert keeps the unaligned 32-byte load inside `b`; AVX is a compile-time target
    // feature of this module (see the `cfg` on `mod avx2`).
    unsafe { _mm256_loadu_si256(b.as_ptr().add(off) as *const __m256i) }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load16<const B: usize>(b: &[u8; B], off: usize) -> __m128i {
    assert!(off + 16 <= B);
    // SAFETY: as in `load`, for a 16-byte load.
    unsafe { _mm_loadu_si128(b.as_ptr().add(off) as *const __m128i) }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
}

/// The product of two binary16 scales given as their bytes, in every lane: two broadcast loads from
/// `f16_table` and one multiply (the scalar product's bits, off the shuffle port).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f16_mul<const X: usize, const Y: usize>(x: &[u8; X], y: &[u8; Y]) -> __m256 {
    _mm256_mul_ps(
        _mm256_broadcast_ss(f16_lut(scale(x))),
        _mm256_broadcast_ss(f16_lut(scale(y))),
    )
}

/// A block's leading binary16 scale, read as one 16-bit load.
#[inline(always)]
fn scale<const B: usize>(b: &[u8; B]) -> [u8; 2] {
    match b.first_chunk::<2>() {
        Some(s) => *s,
        None => [0; 2],
    }
}

/// One binary16 value given as its bytes (from `f16_table`).
#[inline(always)]
fn f16v(x0: u8, x1: u8) -> f32 {
    *f16_lut([x0, x1])
}

/// 32 nibbles (16 bytes at `off`, nibble order) as bytes 0..15.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn nibbles<const B: usize>(b: &[u8; B], off: usize) -> __m256i {
    let t = load16(b, off);
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(t), t);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// The 32 bits of `v` as 32 bytes of 0xFF (bit set) or 0x00.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn bits_to_bytes(v: u32) -> __m256i {
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(v as i32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// `nib | (c where the bit in `hi` is set)`: Q5_0's unsigned quant with `c` = 0x10 (see
/// `or_where_clear`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn or_where_set(nib: __m256i, hi: __m256i, c: __m256i) -> __m256i {
    #[cfg(target_feature = "avx512vl")]
    // SAFETY: avx512vl (and avx512f) are compile-time target features of this build (the `cfg`).
    unsafe {
        _mm256_ternarylogic_epi64::<0xF8>(nib, hi, c)
    }
    #[cfg(not(target_feature = "avx512vl"))]
    {
        _mm256_or_si256(nib, _mm256_and_si256(hi, c))
    }
}

/// `nib | (c where the bit in `hi` is clear)` for `hi` from `bits_to_bytes`: Q5_0's quant − 16 with
/// `c` = 0xF0. With AVX-512 VL one `vpternlogq`, as gcc compiles ggml's `andnot` + `or`; LLVM
/// otherwise turns the compare into a mask register and a masked blend, both on the shuffle port.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn or_where_clear(nib: __m256i, hi: __m256i, c: __m256i) -> __m256i {
    #[cfg(target_feature = "avx512vl")]
    // SAFETY: avx512vl (and avx512f) are compile-time target features of this build (the `cfg`).
    unsafe {
        _mm256_ternarylogic_epi64::<0xF2>(nib, hi, c)
    }
    #[cfg(not(target_feature = "avx512vl"))]
    {
        _mm256_or_si256(nib, _mm256_andnot_si256(hi, c))
    }
}

/// Σ x·y of unsigned `x` (< 128 where `y` may be −128) and signed `y` bytes, as 8 partial i32 sums:
/// `vpdpbusd` where the build has AVX-512 VNNI or AVX-VNNI (as ggml's native builds use), else
/// `maddubs` + `madd`. Integer sums are exact, so the choice changes speed only.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_u8(x: __m256i, y: __m256i) -> __m256i {
    #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
    // SAFETY: avx512vnni and avx512vl are compile-time target features of this build (the `cfg`),
    // so every CPU that runs it has them.
    unsafe {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
    }
    #[cfg(all(
        target_feature = "avxvnni",
        not(all(target_feature = "avx512vnni", target_feature = "avx512vl"))
    ))]
    // SAFETY: as above, for avxvnni.
    unsafe {
        _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), x, y)
    }
    #[cfg(not(any(
        target_feature = "avxvnni",
        all(target_feature = "avx512vnni", target_feature = "avx512vl")
    )))]
    {
        _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
    }
}

/// Σ x·y of signed bytes, as 8 partial i32 sums.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    dot_u8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn fma(d: f32, s: __m256i, acc: __m256) -> __m256 {
    fmav(_mm256_set1_ps(d), s, acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn fmav(d: __m256, s: __m256i, acc: __m256) -> __m256 {
    _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_0_impl(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, q) in x.as_chunks::<18>().0.iter().zip(y.as_chunks::<34>().0) {
        let qx = _mm256_sub_epi8(nibbles(b, 2), _mm256_set1_epi8(8));
        let d = f16_mul(b, q);
        acc = fmav(d, dot_i8(qx, load(q, 2)), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_1_impl(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut summ = 0f32;
    for (b, q) in x.as_chunks::<20>().0.iter().zip(y.as_chunks::<36>().0) {
        let d = f16_mul(b, q);
        summ += f16v(b[2], b[3]) * f16v(q[2], q[3]);
        acc = fmav(d, dot_u8(nibbles(b, 4), load(q, 4)), acc);
    }
    hsum(acc) + summ
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q5_0_impl(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, q) in x.as_chunks::<22>().0.iter().zip(y.as_chunks::<34>().0) {
        // Quant − 16 is the nibble with 0xF0 or'ed in where the fifth bit is clear.
        let hi = bits_to_bytes(u32::from_le_bytes([b[2], b[3], b[4], b[5]]));
        let qx = or_where_clear(nibbles(b, 6), hi, _mm256_set1_epi8(-16));
        let d = f16_mul(b, q);
        acc = fmav(d, dot_i8(qx, load(q, 2)), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q5_1_impl(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut summ = 0f32;
    for (b, q) in x.as_chunks::<24>().0.iter().zip(y.as_chunks::<36>().0) {
        let hi = bits_to_bytes(u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
        let qx = _mm256_or_si256(nibbles(b, 8), _mm256_and_si256(hi, _mm256_set1_epi8(16)));
        let d = f16_mul(b, q);
        summ += f16v(b[2], b[3]) * f16v(q[2], q[3]);
        acc = fmav(d, dot_u8(qx, load(q, 4)), acc);
    }
    hsum(acc) + summ
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q8_0_impl(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, q) in x.as_chunks::<34>().0.iter().zip(y.as_chunks::<34>().0) {
        let d = f16_mul(b, q);
        acc = fmav(d, dot_i8(load(b, 2), load(q, 2)), acc);
    }
    hsum(acc)
}

/// IQ4_NL / MXFP4: nibbles index a 16-entry i8 table.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn lookup<const B: usize>(table: &[i8; 16], b: &[u8; B], off: usize) -> __m256i {
    let t = load16(&table.map(|v| v as u8), 0);
    _mm256_shuffle_epi8(_mm256_set_m128i(t, t), nibbles(b, off))
}

/// IQ4_NL as llamafile's tinyBLAS_Q0 computes it (MUL_MAT with ≥ 2 columns): one accumulator.
#[target_feature(enable = "avx2,fma,f16c")]
fn tiny_iq4_nl_impl(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, q) in x.as_chunks::<18>().0.iter().zip(y.as_chunks::<34>().0) {
        let d = f16_mul(q, b);
        acc = fmav(
            d,
            dot_i8(lookup(&super::iq4::KVALUES, b, 2), load(q, 2)),
            acc,
        );
    }
    hsum(acc)
}

/// IQ4_NL as `ggml_vec_dot_iq4_nl_q8_0` (one column).
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_iq4_nl_impl(x: &[u8], y: &[u8]) -> f32 {
    // ggml alternates two accumulators over block pairs and finishes an odd last block in scalar code.
    let (xb, yb) = (x.as_chunks::<18>().0, y.as_chunks::<34>().0);
    let n = xb.len().min(yb.len());
    let lanes = |i: usize| dot_i8(lookup(&super::iq4::KVALUES, &xb[i], 2), load(&yb[i], 2));
    let d = |i: usize| f16_mul(&yb[i], &xb[i]);
    let (mut acc1, mut acc2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut ib = 0;
    while ib + 1 < n {
        acc1 = fmav(d(ib), lanes(ib), acc1);
        acc2 = fmav(d(ib + 1), lanes(ib + 1), acc2);
        ib += 2;
    }
    let mut sum = hsum(_mm256_add_ps(acc1, acc2));
    if ib < n {
        let d = f16v(yb[ib][0], yb[ib][1]) * f16v(xb[ib][0], xb[ib][1]);
        sum = d.mul_add(hsum_i32(lanes(ib)) as f32, sum);
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_mxfp4_impl(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, q) in x.as_chunks::<17>().0.iter().zip(y.as_chunks::<34>().0) {
        let d = f16v(q[0], q[1]) * super::mxfp4::e8m0_half(b[0]);
        acc = fma(
            d,
            dot_i8(lookup(&super::mxfp4::KVALUES, b, 1), load(q, 2)),
            acc,
        );
    }
    hsum(acc)
}

/// What the integer sums of one Q4_K/Q5_K super-block need from the weights: the quants
/// (`quants[c]` holds chunk c's (low, high) sub-blocks), each chunk's two scales broadcast as i16,
/// and the 8 mins as i16.
struct K4Weights {
    quants: [(__m256i, __m256i); 4],
    scales: [(__m256i, __m256i); 4],
    mins: __m128i,
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn k4_weights<const B: usize>(b: &[u8; B], quants: [(__m256i, __m256i); 4]) -> K4Weights {
    // Packed with 32-bit masks like ggml (byte-wise unpacking makes LLVM emit slow SSE4a `insertq`).
    let u = k4_packed(&scale_bytes::<4, B>(b));
    let sm = _mm256_cvtepu8_epi16(_mm_set_epi32(
        u[3] as i32,
        u[2] as i32,
        u[1] as i32,
        u[0] as i32,
    ));
    let sc = _mm256_castsi256_si128(sm);
    let both = _mm256_set_m128i(sc, sc);
    let scales = std::array::from_fn(|c| {
        // Broadcast i16 lane 2c (resp. 2c + 1): bytes 4c, 4c + 1 (resp. 4c + 2, 4c + 3).
        let sel_l = _mm256_set1_epi16((((4 * c + 1) << 8) | (4 * c)) as i16);
        let sel_h = _mm256_set1_epi16((((4 * c + 3) << 8) | (4 * c + 2)) as i16);
        (
            _mm256_shuffle_epi8(both, sel_l),
            _mm256_shuffle_epi8(both, sel_h),
        )
    });
    K4Weights {
        quants,
        scales,
        mins: _mm256_extracti128_si256::<1>(sm),
    }
}

/// The integer sums of one Q4_K/Q5_K super-block against one Q8_K block:
/// `Σ_j scale_j·(quants_j · q8_j)` in 8 i32 lanes and `Σ_j min_j·(Σ q8_j)` in 4.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn k4_col(w: &K4Weights, q: &[u8; 292]) -> (__m256i, __m128i) {
    let prod = k4_mins(w, q);
    let mut sumi = _mm256_setzero_si256();
    for (c, ((lo, hi), (sl, sh))) in w.quants.iter().zip(&w.scales).enumerate() {
        let pl = _mm256_maddubs_epi16(*lo, load(q, 4 + 64 * c));
        let ph = _mm256_maddubs_epi16(*hi, load(q, 36 + 64 * c));
        let pl = _mm256_madd_epi16(*sl, pl);
        let ph = _mm256_madd_epi16(*sh, ph);
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
    }
    (sumi, prod)
}

/// `Σ_j min_j·(Σ q8_j)` of one Q4_K/Q5_K super-block against one Q8_K block, in 4 i32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn k4_mins(w: &K4Weights, q: &[u8; 292]) -> __m128i {
    let bsums = load(q, 260);
    let q8s = _mm_hadd_epi16(
        _mm256_castsi256_si128(bsums),
        _mm256_extracti128_si256::<1>(bsums),
    );
    _mm_madd_epi16(w.mins, q8s)
}

/// `k4_col` for one weight block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn k4_sums<const B: usize>(
    b: &[u8; B],
    q: &[u8; 292],
    quants: [(__m256i, __m256i); 4],
) -> (__m256i, __m128i) {
    k4_col(&k4_weights(b, quants), q)
}

/// One Q4_K/Q5_K super-block: `d·Σ_j scale_j·(quants_j · q8_j)` goes into `acc`, and
/// `−dmin·Σ_j min_j·(Σ q8_j)` into `acc_m`. `quants[c]` holds chunk c's (low, high) sub-blocks.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn k4_block<const B: usize>(
    b: &[u8; B],
    q: &[u8; 292],
    quants: [(__m256i, __m256i); 4],
    acc: &mut __m256,
    acc_m: &mut __m128,
) {
    let (sumi, prod) = k4_sums(b, q, quants);
    let dy = q8k_d(q);
    let dmin = -dy * f16v(b[2], b[3]);
    *acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), *acc_m);
    *acc = fma(f16v(b[0], b[1]) * dy, sumi, *acc);
}

/// The sum of 4 i32 lanes (exact; the totals fit).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_i32x4(x: __m128i) -> i32 {
    let x = _mm_add_epi32(x, _mm_shuffle_epi32::<0b01_00_11_10>(x));
    let x = _mm_add_epi32(x, _mm_shuffle_epi32::<0b10_11_00_01>(x));
    _mm_cvtsi128_si32(x)
}

/// The sum of 8 i32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_i32(x: __m256i) -> i32 {
    hsum_i32x4(_mm_add_epi32(
        _mm256_castsi256_si128(x),
        _mm256_extracti128_si256::<1>(x),
    ))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum4(x: __m128) -> f32 {
    let r = _mm_add_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
}

/// The 4-bit quants of a Q4_K block as (low, high) sub-block pairs.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q4_k_quants(b: &[u8; 144]) -> [(__m256i, __m256i); 4] {
    let m4 = _mm256_set1_epi8(0x0F);
    std::array::from_fn(|c| {
        let bits = load(b, 16 + 32 * c);
        (
            _mm256_and_si256(bits, m4),
            _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4),
        )
    })
}

/// The 5-bit quants of a Q5_K block as (low, high) sub-block pairs.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q5_k_quants(b: &[u8; 176]) -> [(__m256i, __m256i); 4] {
    let m4 = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    let hb = load(b, 16);
    std::array::from_fn(|c| {
        let bits = load(b, 48 + 32 * c);
        // Bit 2c (resp. 2c + 1) of each qh byte, moved to bit 4.
        let h0 = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * c as i32)), one);
        let h1 = _mm256_and_si256(
            _mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * c as i32 + 1)),
            one,
        );
        let lo = _mm256_or_si256(_mm256_and_si256(bits, m4), _mm256_slli_epi16::<4>(h0));
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
        (lo, _mm256_or_si256(hi, _mm256_slli_epi16::<4>(h1)))
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_k_impl(x: &[u8], y: &[u8]) -> f32 {
    let (mut acc, mut acc_m) = (_mm256_setzero_ps(), _mm_setzero_ps());
    for (b, q) in x.as_chunks::<144>().0.iter().zip(y.as_chunks::<292>().0) {
        k4_block(b, q, q4_k_quants(b), &mut acc, &mut acc_m);
    }
    hsum(acc) + hsum4(acc_m)
}

/// Unlike Q4_K, ggml's Q5_K kernel sums the mins' integer total into one scalar (`summs`, an FMA).
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q5_k_impl(x: &[u8], y: &[u8]) -> f32 {
    let (mut acc, mut summs) = (_mm256_setzero_ps(), 0f32);
    for (b, q) in x.as_chunks::<176>().0.iter().zip(y.as_chunks::<292>().0) {
        let (sumi, prod) = k4_sums(b, q, q5_k_quants(b));
        let dy = q8k_d(q);
        let dmin = -dy * f16v(b[2], b[3]);
        summs = dmin.mul_add(hsum_i32x4(prod) as f32, summs);
        acc = fma(f16v(b[0], b[1]) * dy, sumi, acc);
    }
    hsum(acc) + summs
}

/// ggml's tiled-path numerics for Q4_K (see `tiled.rs`): exact block sums, then
/// `fma(fnmadd(dmin, s2, d·s1), d8, acc)` per block.
#[target_feature(enable = "avx2,fma,f16c")]
fn tiled_q4_k_impl(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (b, q) in x.as_chunks::<144>().0.iter().zip(y.as_chunks::<292>().0) {
        let (sumi, prod) = k4_sums(b, q, q4_k_quants(b));
        let (s1, s2) = (hsum_i32(sumi), hsum_i32x4(prod));
        acc = super::tiled::step_min(acc, f16v(b[0], b[1]), f16v(b[2], b[3]), s1, s2, q8k_d(q));
    }
    acc
}

/// ggml's tiled-path numerics for Q5_K (see `tiled.rs`).
#[target_feature(enable = "avx2,fma,f16c")]
fn tiled_q5_k_impl(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (b, q) in x.as_chunks::<176>().0.iter().zip(y.as_chunks::<292>().0) {
        let (sumi, prod) = k4_sums(b, q, q5_k_quants(b));
        let (s1, s2) = (hsum_i32(sumi), hsum_i32x4(prod));
        acc = super::tiled::step_min(acc, f16v(b[0], b[1]), f16v(b[2], b[3]), s1, s2, q8k_d(q));
    }
    acc
}

/// What the integer sums of one Q6_K block need from the weights: the unsigned quants (0..63) of
/// the 8 sub-block pairs and the 16 scales, each pair's two broadcast as i16.
struct Q6Weights {
    quants: [__m256i; 8],
    scales: [__m256i; 8],
    sc: [i16; 16],
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q6_k_weights(b: &[u8; 210]) -> Q6Weights {
    let m4 = _mm256_set1_epi8(0x0F);
    let m3 = _mm256_set1_epi8(3);
    let sc: [i16; 16] = std::array::from_fn(|g| b[192 + g] as i8 as i16);
    let mut quants = [_mm256_setzero_si256(); 8];
    for h in 0..2 {
        let l0 = load(b, 64 * h);
        let l1 = load(b, 64 * h + 32);
        let qh = load(b, 128 + 32 * h);
        quants[4 * h] = _mm256_or_si256(
            _mm256_and_si256(l0, m4),
            _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m3)),
        );
        quants[4 * h + 1] = _mm256_or_si256(
            _mm256_and_si256(l1, m4),
            _mm256_slli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(12))),
        );
        quants[4 * h + 2] = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4),
            _mm256_and_si256(qh, _mm256_set1_epi8(48)),
        );
        quants[4 * h + 3] = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
            _mm256_srli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(-64))),
        );
    }
    let scales = std::array::from_fn(|k| {
        let g = 2 * k;
        _mm256_set_m128i(_mm_set1_epi16(sc[g + 1]), _mm_set1_epi16(sc[g]))
    });
    Q6Weights { quants, scales, sc }
}

/// The integer sums of one Q6_K block against one Q8_K block: 8 lanes of `Σ scale·(quants·q8)`,
/// and per lane l the `32·Σ scale·bsum` of groups 2l and 2l+1 that turns them into the signed sums.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q6_k_col(w: &Q6Weights, q: &[u8; 292]) -> (__m256i, [i32; 8]) {
    let off = q6_k_off(w, q);
    let mut sumi = _mm256_setzero_si256();
    for (k, (qv, s)) in w.quants.iter().zip(&w.scales).enumerate() {
        let (h, kk) = (k / 4, k % 4);
        let p = _mm256_maddubs_epi16(*qv, load(q, 4 + 128 * h + 32 * kk));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(*s, p));
    }
    (sumi, off)
}

/// Per lane l, the `32·Σ scale·bsum` of groups 2l and 2l+1 of one Q6_K block against one Q8_K block.
#[inline]
fn q6_k_off(w: &Q6Weights, q: &[u8; 292]) -> [i32; 8] {
    let (sc, bs) = (&w.sc, q8k_bsums(q));
    std::array::from_fn(|l| {
        (sc[2 * l] as i32 * bs[2 * l] + sc[2 * l + 1] as i32 * bs[2 * l + 1]) * 32
    })
}

/// `q6_k_col` for one weight block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q6_k_sums(b: &[u8; 210], q: &[u8; 292]) -> (__m256i, [i32; 8]) {
    q6_k_col(&q6_k_weights(b), q)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q6_k_impl(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, q) in x.as_chunks::<210>().0.iter().zip(y.as_chunks::<292>().0) {
        // Quants are used unsigned (0..63); the −32 comes back as 32·Σ scale·bsum. ggml subtracts
        // it lane by lane and the lanes are summed in float later, so the split matters for
        // rounding.
        let (sumi, off) = q6_k_sums(b, q);
        let d = f16v(b[208], b[209]) * q8k_d(q);
        acc = fma(
            d,
            _mm256_sub_epi32(
                sumi,
                _mm256_setr_epi32(
                    off[0], off[1], off[2], off[3], off[4], off[5], off[6], off[7],
                ),
            ),
            acc,
        );
    }
    hsum(acc)
}

/// ggml's tiled-path numerics for Q6_K (see `tiled.rs`): exact block sum, then `fma(d·s1, d8, acc)`.
#[target_feature(enable = "avx2,fma,f16c")]
fn tiled_q6_k_impl(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (b, q) in x.as_chunks::<210>().0.iter().zip(y.as_chunks::<292>().0) {
        let (sumi, off) = q6_k_sums(b, q);
        let s1 = hsum_i32(sumi) - off.iter().sum::<i32>();
        acc = super::tiled::step(acc, f16v(b[208], b[209]), s1, q8k_d(q));
    }
    acc
}

/// The four accumulators as lane arrays.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn lanes(acc: [__m256; 4]) -> [[f32; 8]; 4] {
    let mut out = [[0f32; 8]; 4];
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: `o` is 8 f32s, the unaligned store writes exactly those.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
    }
    out
}

/// F16 × F16 (`ggml_vec_dot_f16`): four 8-lane FMA accumulators over 32 elements per step,
/// GGML_F32x8_REDUCE, and the tail's products added in f64, as ggml does.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f16_impl(x: &[u8], y: &[u8]) -> f32 {
    let (xb, xt) = x.as_chunks::<64>();
    let (yb, yt) = y.as_chunks::<64>();
    let mut acc = [_mm256_setzero_ps(); 4];
    for (a, b) in xb.iter().zip(yb) {
        for (k, acc) in acc.iter_mut().enumerate() {
            let xa = _mm256_cvtph_ps(load16(a, 16 * k));
            let ya = _mm256_cvtph_ps(load16(b, 16 * k));
            *acc = _mm256_fmadd_ps(xa, ya, *acc);
        }
    }
    let mut sum = super::float::reduce(&lanes(acc));
    for (a, b) in xt.as_chunks::<2>().0.iter().zip(yt.as_chunks::<2>().0) {
        sum += (f16v(a[0], a[1]) * f16v(b[0], b[1])) as f64;
    }
    sum as f32
}

/// F32 × F32 (`ggml_vec_dot_f32`), the same structure with a float sum and an FMA tail.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f32_impl(x: &[u8], y: &[u8]) -> f32 {
    let (xb, xt) = x.as_chunks::<128>();
    let (yb, yt) = y.as_chunks::<128>();
    let mut acc = [_mm256_setzero_ps(); 4];
    for (a, b) in xb.iter().zip(yb) {
        for (k, acc) in acc.iter_mut().enumerate() {
            let xa = _mm256_castsi256_ps(load(a, 32 * k));
            let ya = _mm256_castsi256_ps(load(b, 32 * k));
            *acc = _mm256_fmadd_ps(xa, ya, *acc);
        }
    }
    let mut sum = super::float::reduce(&lanes(acc)) as f32;
    for (a, b) in xt.as_chunks::<4>().0.iter().zip(yt.as_chunks::<4>().0) {
        sum = f32::from_le_bytes(*a).mul_add(f32::from_le_bytes(*b), sum);
    }
    sum
}

/// Safe entry points. SAFETY (for every `unsafe` below): this module is compiled only when avx2, fma
/// and f16c are compile-time target features (`cfg` on `mod avx2`), so every CPU that runs this
/// binary has them; the kernels themselves only read inside their slices.
macro_rules! entries {
    ($($name:ident => $imp:ident),* $(,)?) => {$(
        pub(super) fn $name(x: &[u8], y: &[u8]) -> f32 {
            // SAFETY: see the macro's comment: the required target features are always present.
            unsafe { $imp(x, y) }
        }
    )*};
}

entries! {
    dot_q4_0 => dot_q4_0_impl,
    dot_q4_1 => dot_q4_1_impl,
    dot_q5_0 => dot_q5_0_impl,
    dot_q5_1 => dot_q5_1_impl,
    dot_q8_0 => dot_q8_0_impl,
    dot_iq4_nl => dot_iq4_nl_impl,
    tiny_iq4_nl => tiny_iq4_nl_impl,
    dot_mxfp4 => dot_mxfp4_impl,
    dot_q4_k => dot_q4_k_impl,
    dot_q5_k => dot_q5_k_impl,
    dot_q6_k => dot_q6_k_impl,
    dot_f16 => dot_f16_impl,
    dot_f32 => dot_f32_impl,
    tiled_q4_k => tiled_q4_k_impl,
    tiled_q5_k => tiled_q5_k_impl,
    tiled_q6_k => tiled_q6_k_impl,
}
