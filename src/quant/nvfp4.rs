//! NVFP4 (64 el, 36 B: d[4] UE4M3 scales, one per 16-element sub-block, then qs[32]): sub-block s
//! uses qs[8s..8s+8], low nibbles its elements 0..8, high nibbles 8..16; value =
//! `F[nibble]·ue4m3(d[s])/2`, F the doubled E2M1 values shared with MXFP4. Dots with Q8_0 (a block
//! spans two Q8_0 blocks).

use super::f16_at;
use super::mxfp4::{KVALUES, best_index};

const QK: usize = 64;
const SUB: usize = 16;

/// `ggml_ue4m3_to_fp32`: unsigned 4-bit exponent (bias 7), 3-bit mantissa, halved to match the
/// doubled E2M1 table; 0 and 0x7F read as 0, the top bit is ignored.
pub(super) fn ue4m3_half(x: u8) -> f32 {
    if x == 0 || x == 0x7F {
        return 0.0;
    }
    let (exp, man) = ((x >> 3) & 0xF, x & 7);
    let raw = if exp == 0 {
        man as f32 * (2f32).powi(-9)
    } else {
        (1.0 + man as f32 / 8.0) * (2f32).powi(exp as i32 - 7)
    };
    raw * 0.5
}

/// `ggml_fp32_to_ue4m3`: rounds the mantissa on its 4th bit (carrying into the exponent), saturates
/// at 0x7E (448), flushes what is below the smallest subnormal to 0.
pub(super) fn f32_to_ue4m3(x: f32) -> u8 {
    // Written as `!(x > 0)` so NaN maps to 0 like ggml.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(x > 0.0) {
        return 0;
    }
    let x = x.min(448.0);
    let bits = x.to_bits();
    let exp = ((bits >> 23) & 0xFF) as i32 - 127 + 7;
    if exp <= 0 {
        let man = (x * 512.0 + 0.5) as i32;
        return if man < 1 { 0 } else { man.min(7) as u8 };
    }
    if exp >= 15 {
        return 0x7E;
    }
    let mut man = ((bits >> 20) & 7) as i32 + ((bits >> 19) & 1) as i32;
    let mut exp = exp;
    if man > 7 {
        man = 0;
        exp += 1;
        if exp >= 15 {
            return 0x7E;
        }
    }
    ((exp << 3) | man) as u8
}

pub(super) fn dequant(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<36>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK>().0)
    {
        for s in 0..4 {
            let d = ue4m3_half(b[s]);
            for j in 0..SUB / 2 {
                let q = b[4 + s * 8 + j];
                y[s * SUB + j] = KVALUES[(q & 0xF) as usize] as f32 * d;
                y[s * SUB + j + 8] = KVALUES[(q >> 4) as usize] as f32 * d;
            }
        }
    }
}

/// `quantize_row_nvfp4_ref`: per sub-block, scale `ue4m3(amax/6)`, nearest table entry per element.
pub(super) fn quant(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<36>().0)
    {
        for s in 0..4 {
            let xb = &x[s * SUB..s * SUB + SUB];
            let amax = xb
                .iter()
                .fold(0f32, |a, v| if a < v.abs() { v.abs() } else { a });
            let ue = f32_to_ue4m3(amax / 6.0);
            b[s] = ue;
            let d = ue4m3_half(ue);
            for j in 0..SUB / 2 {
                let lo = best_index(xb[j], d);
                let hi = best_index(xb[j + 8], d);
                b[4 + s * 8 + j] = lo | (hi << 4);
            }
        }
    }
}

/// `ggml_vec_dot_nvfp4_q8_0` (generic): an integer sum per sub-block, scaled by `d_y·d_s`.
pub(super) fn dot(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<36>().0.iter().zip(y.as_chunks::<68>().0) {
        for s in 0..4 {
            let d = ue4m3_half(b[s]);
            let qb = &q[34 * (s / 2)..34 * (s / 2) + 34];
            let dy = f16_at(qb[0], qb[1]);
            let off = 2 + (s % 2) * SUB;
            let mut sumi = 0i32;
            for j in 0..SUB / 2 {
                let v = b[4 + s * 8 + j];
                sumi += qb[off + j] as i8 as i32 * KVALUES[(v & 0xF) as usize] as i32;
                sumi += qb[off + j + 8] as i8 as i32 * KVALUES[(v >> 4) as usize] as i32;
            }
            sumf += dy * d * sumi as f32;
        }
    }
    sumf
}
