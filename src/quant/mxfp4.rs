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
