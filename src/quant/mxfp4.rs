//! MXFP4 (32 el, 17 B: E8M0 exponent e, qs[16] in nibble order): value = `F[nibble]·2^(e−128)`, F the
//! doubled E2M1 values.

use super::f16_at;
use super::iq4::lookup32;
use super::legacy::dot_i8;

/// `kvalues_mxfp4` (E2M1 values, doubled).
pub(super) const KVALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// `ggml_e8m0_to_fp32_half`: 2^(e−128), with the denormal patterns for e < 2.
#[inline(always)]
pub(super) fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        ((e as u32) - 1) << 23
    };
    f32::from_bits(bits)
}

pub(super) fn dequant(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<17>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<32>().0)
    {
        let d = e8m0_half(b[0]);
        let v = lookup32::<1, 17>(&KVALUES, b);
        for j in 0..32 {
            y[j] = v[j] as f32 * d;
        }
    }
}

/// `ggml_vec_dot_mxfp4_q8_0`.
pub(super) fn dot(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<17>().0.iter().zip(y.as_chunks::<34>().0) {
        let d = f16_at(q[0], q[1]) * e8m0_half(b[0]);
        let v = lookup32::<1, 17>(&KVALUES, b);
        sumf += d * dot_i8::<2, 34>(&v, q) as f32;
    }
    sumf
}

/// `best_index_mxfp4`: the first table entry nearest to `x` at scale `d`.
pub(super) fn best_index(x: f32, d: f32) -> u8 {
    let mut best = 0u8;
    let mut best_err = (KVALUES[0] as f32 * d - x).abs();
    for (i, &k) in KVALUES.iter().enumerate().skip(1) {
        let err = (k as f32 * d - x).abs();
        if err < best_err {
            best = i as u8;
            best_err = err;
        }
    }
    best
}

/// `quantize_row_mxfp4_ref`: exponent `floor(log2(amax)) − 2 + 127` (0 for an all-zero block), then
/// the nearest table entry per element.
pub(super) fn quant(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<32>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<17>().0)
    {
        let amax = x
            .iter()
            .fold(0f32, |a, v| if a < v.abs() { v.abs() } else { a });
        let e = if amax > 0.0 {
            (amax.log2().floor() - 2.0 + 127.0) as u8
        } else {
            0
        };
        let d = e8m0_half(e);
        b[0] = e;
        for j in 0..16 {
            b[1 + j] = best_index(x[j], d) | (best_index(x[j + 16], d) << 4);
        }
    }
}
