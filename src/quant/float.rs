//! F32, F16 and BF16 rows: conversions and ggml's `ggml_vec_dot_f32/f16/bf16` (f32 FMA lanes, then a
//! reduction; the tail that does not fill a 32-element step is added in f64 like ggml's `ggml_float`).

use half::{bf16, f16};

use crate::ggml::GgmlType;

/// Eight binary16 values (16 little-endian bytes) to f32.
#[inline(always)]
fn f16x8(b: &[u8; 16]) -> [f32; 8] {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "f16c",
        target_feature = "avx"
    ))]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm256_cvtph_ps, _mm256_storeu_ps};
        let mut out = [0f32; 8];
        // SAFETY: the f16c and avx target features are enabled at compile time (cfg above); the load
        // reads exactly the 16 bytes of `b` (unaligned load) and the store writes the 8 floats of `out`.
        unsafe {
            let v = _mm_loadu_si128(b.as_ptr() as *const __m128i);
            _mm256_storeu_ps(out.as_mut_ptr(), _mm256_cvtph_ps(v));
        }
        out
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "f16c",
        target_feature = "avx"
    )))]
    {
        std::array::from_fn(|i| f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32())
    }
}

#[inline(always)]
fn f32x8(b: &[u8], at: usize) -> [f32; 8] {
    std::array::from_fn(|i| {
        let o = at + 4 * i;
        f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
    })
}

#[inline(always)]
fn bf16x8(b: &[u8], at: usize) -> [f32; 8] {
    std::array::from_fn(|i| {
        let o = at + 2 * i;
        f32::from_bits((u16::from_le_bytes([b[o], b[o + 1]]) as u32) << 16)
    })
}

/// A row of F32/F16/BF16 to f32 (lengths already checked).
pub(super) fn to_f32(typ: GgmlType, src: &[u8], dst: &mut [f32]) {
    match typ {
        GgmlType::F32 => {
            for (o, c) in dst.iter_mut().zip(src.as_chunks::<4>().0) {
                *o = f32::from_le_bytes(*c);
            }
        }
        GgmlType::F16 => {
            let (blocks, tail) = src.as_chunks::<16>();
            let (outs, otail) = dst.as_chunks_mut::<8>();
            for (o, b) in outs.iter_mut().zip(blocks) {
                *o = f16x8(b);
            }
            for (o, c) in otail.iter_mut().zip(tail.as_chunks::<2>().0) {
                *o = f16::from_le_bytes(*c).to_f32();
            }
        }
        _ => {
            for (o, c) in dst.iter_mut().zip(src.as_chunks::<2>().0) {
                *o = bf16::from_le_bytes(*c).to_f32();
            }
        }
    }
}

/// f32 to a row of F32/F16/BF16 (round to nearest even, like ggml's F16C and bf16 conversions).
pub(super) fn from_f32(typ: GgmlType, src: &[f32], dst: &mut [u8]) {
    match typ {
        GgmlType::F32 => {
            for (c, v) in dst.as_chunks_mut::<4>().0.iter_mut().zip(src) {
                *c = v.to_le_bytes();
            }
        }
        GgmlType::F16 => {
            for (c, v) in dst.as_chunks_mut::<2>().0.iter_mut().zip(src) {
                *c = f16::from_f32(*v).to_le_bytes();
            }
        }
        _ => {
            for (c, v) in dst.as_chunks_mut::<2>().0.iter_mut().zip(src) {
                *c = bf16::from_f32(*v).to_le_bytes();
            }
        }
    }
}

/// Four 8-lane FMA accumulators over 32 elements per step, reduced like GGML_F32_VEC_REDUCE.
#[inline(always)]
fn fma_step(acc: &mut [[f32; 8]; 4], x: [[f32; 8]; 4], y: [[f32; 8]; 4]) {
    for k in 0..4 {
        for l in 0..8 {
            acc[k][l] = x[k][l].mul_add(y[k][l], acc[k][l]);
        }
    }
}

/// GGML_F32x8_REDUCE: the four vectors pairwise, then the two halves, then two horizontal adds.
#[inline(always)]
pub(super) fn reduce(acc: &[[f32; 8]; 4]) -> f64 {
    let q = halves(acc);
    ((q[0] + q[1]) + (q[2] + q[3])) as f64
}

/// The four vectors pairwise, then the two halves of the 8 lanes.
#[inline(always)]
fn halves(acc: &[[f32; 8]; 4]) -> [f32; 4] {
    let v: [f32; 8] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    std::array::from_fn(|k| v[k] + v[4 + k])
}

/// llamafile's tinyBLAS (`gemm_bloc`, AVX2), which ggml uses for F32 and F16 weights when a MUL_MAT has
/// at least 2 columns and K is a multiple of 8: eight FMA chains, lane l over elements l, l + 8, ...,
/// then its `hsum` (halves, then pairs).
#[inline(always)]
fn tiny_blas(n: usize, x: impl Fn(usize) -> f32, y: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    for i in (0..n - n % 8).step_by(8) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a = x(i + l).mul_add(y(i + l), *a);
        }
    }
    let r: [f32; 4] = std::array::from_fn(|i| acc[4 + i] + acc[i]);
    (r[0] + r[2]) + (r[1] + r[3])
}

/// `tiny_blas` on F32 rows.
pub(super) fn tiny_f32(x: &[u8], y: &[u8]) -> f32 {
    let (xs, ys) = (x.as_chunks::<4>().0, y.as_chunks::<4>().0);
    let n = xs.len().min(ys.len());
    tiny_blas(
        n,
        |i| f32::from_le_bytes(xs[i]),
        |i| f32::from_le_bytes(ys[i]),
    )
}

/// `tiny_blas` on BF16 rows.
pub(super) fn tiny_bf16(x: &[u8], y: &[u8]) -> f32 {
    let (xs, ys) = (x.as_chunks::<2>().0, y.as_chunks::<2>().0);
    let n = xs.len().min(ys.len());
    let h = |b: [u8; 2]| bf16::from_le_bytes(b).to_f32();
    tiny_blas(n, |i| h(xs[i]), |i| h(ys[i]))
}

/// `tiny_blas` on F16 rows.
pub(super) fn tiny_f16(x: &[u8], y: &[u8]) -> f32 {
    let (xs, ys) = (x.as_chunks::<2>().0, y.as_chunks::<2>().0);
    let n = xs.len().min(ys.len());
    let h = |b: [u8; 2]| f16::from_le_bytes(b).to_f32();
    tiny_blas(n, |i| h(xs[i]), |i| h(ys[i]))
}

/// `ggml_vec_dot_f32`.
pub(super) fn dot_f32(x: &[u8], y: &[u8]) -> f32 {
    let (xb, xt) = x.as_chunks::<128>();
    let (yb, yt) = y.as_chunks::<128>();
    let mut acc = [[0f32; 8]; 4];
    for (a, b) in xb.iter().zip(yb) {
        let xa = std::array::from_fn(|k| f32x8(a, 32 * k));
        let ya = std::array::from_fn(|k| f32x8(b, 32 * k));
        fma_step(&mut acc, xa, ya);
    }
    // ggml keeps this sum in a float; GCC contracts the tail's `sumf += x*y` into FMAs.
    let mut sum = reduce(&acc) as f32;
    for (a, b) in xt.as_chunks::<4>().0.iter().zip(yt.as_chunks::<4>().0) {
        sum = f32::from_le_bytes(*a).mul_add(f32::from_le_bytes(*b), sum);
    }
    sum
}

/// `ggml_vec_dot_f16`: both sides binary16, products accumulated in f32.
pub(super) fn dot_f16(x: &[u8], y: &[u8]) -> f32 {
    let (xb, xt) = x.as_chunks::<64>();
    let (yb, yt) = y.as_chunks::<64>();
    let mut acc = [[0f32; 8]; 4];
    for (a, b) in xb.iter().zip(yb) {
        let (a16, b16) = (a.as_chunks::<16>().0, b.as_chunks::<16>().0);
        let xa = std::array::from_fn(|k| f16x8(&a16[k]));
        let ya = std::array::from_fn(|k| f16x8(&b16[k]));
        fma_step(&mut acc, xa, ya);
    }
    let mut sum = reduce(&acc);
    for (a, b) in xt.as_chunks::<2>().0.iter().zip(yt.as_chunks::<2>().0) {
        sum += (f16::from_le_bytes(*a).to_f32() * f16::from_le_bytes(*b).to_f32()) as f64;
    }
    sum as f32
}

/// `ggml_vec_dot_bf16`.
pub(super) fn dot_bf16(x: &[u8], y: &[u8]) -> f32 {
    let (xb, xt) = x.as_chunks::<64>();
    let (yb, yt) = y.as_chunks::<64>();
    let mut acc = [[0f32; 8]; 4];
    for (a, b) in xb.iter().zip(yb) {
        let xa = std::array::from_fn(|k| bf16x8(a, 16 * k));
        let ya = std::array::from_fn(|k| bf16x8(b, 16 * k));
        fma_step(&mut acc, xa, ya);
    }
    // ggml's AVX2 bf16 kernel ends with a movehl/movehdup sum, not GGML_F32x8_REDUCE.
    let q = halves(&acc);
    let mut sum = ((q[0] + q[2]) + (q[1] + q[3])) as f64;
    for (a, b) in xt.as_chunks::<2>().0.iter().zip(yt.as_chunks::<2>().0) {
        sum += (bf16::from_le_bytes(*a).to_f32() * bf16::from_le_bytes(*b).to_f32()) as f64;
    }
    sum as f32
}
