//! The ternary formats (BitNet b1.58, TriLMs), 256 elements each, value = t·d with t in {−1, 0, 1}:
//!
//! - TQ1_0 (54 B: qs[48], qh[4], d f16): base-3 digits packed five per byte (four in `qh`) as
//!   fixed-point fractions `ceil(n·256/243)`, so digit k is `((byte·3^k mod 256)·3) >> 8`.
//!   Element order: qs[0..32] hold elements `n·32 + m` (digit n of byte m), qs[32..48] elements
//!   `160 + n·16 + m`, qh elements `240 + n·4 + m`.
//! - TQ2_0 (66 B: qs[64], d f16): 2-bit codes t + 1; byte `j + m` (j in {0, 32}) holds elements
//!   `4j + 32l + m` at bits 2l.
//!
//! Both dot with Q8_K activations: one integer sum per block, scaled by `d_x·d_y`.

use super::q8::QK_K;
use super::{f16_at, f16_bytes};

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// Base-3 digit `k` of a packed TQ1_0 byte, minus one.
#[inline(always)]
fn digit(byte: u8, k: usize) -> i8 {
    let q = byte.wrapping_mul(POW3[k]);
    ((q as u16 * 3) >> 8) as i8 - 1
}

/// The 256 ternary values of a TQ1_0 block, in element order.
fn trits_tq1(b: &[u8; 54]) -> [i8; QK_K] {
    let mut t = [0i8; QK_K];
    for n in 0..5 {
        for m in 0..32 {
            t[n * 32 + m] = digit(b[m], n);
        }
        for m in 0..16 {
            t[160 + n * 16 + m] = digit(b[32 + m], n);
        }
    }
    for n in 0..4 {
        for m in 0..4 {
            t[240 + n * 4 + m] = digit(b[48 + m], n);
        }
    }
    t
}

/// The 256 values (codes − 1, in −1..=2) of a TQ2_0 block, in element order.
fn trits_tq2(b: &[u8; 66]) -> [i8; QK_K] {
    let mut t = [0i8; QK_K];
    for j in [0, 32] {
        for l in 0..4 {
            for m in 0..32 {
                t[4 * j + 32 * l + m] = ((b[j + m] >> (2 * l)) & 3) as i8 - 1;
            }
        }
    }
    t
}

pub(super) fn dequant_tq1_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<54>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK_K>().0)
    {
        let d = f16_at(b[52], b[53]);
        for (v, t) in y.iter_mut().zip(trits_tq1(b)) {
            *v = t as f32 * d;
        }
    }
}

pub(super) fn dequant_tq2_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<66>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK_K>().0)
    {
        let d = f16_at(b[64], b[65]);
        for (v, t) in y.iter_mut().zip(trits_tq2(b)) {
            *v = t as f32 * d;
        }
    }
}

/// `d` = max |x| and the ternary codes `lroundf(x/d) + 1` of one block.
fn ternary_codes(x: &[f32; QK_K]) -> (f32, [u8; QK_K]) {
    let d = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (
        d,
        std::array::from_fn(|j| ((x[j] * id).round() as i32 + 1) as u8),
    )
}

/// Packs base-3 digits (most significant first) as the fixed-point fraction `ceil(n·256/243)`.
fn pack_digits(digits: impl Iterator<Item = u8>) -> u8 {
    let n = digits.fold(0u16, |q, c| (q * 3 + c as u16) & 0xFF);
    (n * 256).div_ceil(243) as u8
}

/// `quantize_row_tq1_0_ref`.
pub(super) fn quant_tq1_0(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK_K>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<54>().0)
    {
        let (d, c) = ternary_codes(x);
        for m in 0..32 {
            b[m] = pack_digits((0..5).map(|n| c[m + n * 32]));
        }
        for m in 0..16 {
            b[32 + m] = pack_digits((0..5).map(|n| c[160 + m + n * 16]));
        }
        // Four digits then a zero one, so the first lands in the most significant place.
        for m in 0..4 {
            b[48 + m] = pack_digits((0..4).map(|n| c[240 + m + n * 4]).chain([0]));
        }
        b[52..54].copy_from_slice(&f16_bytes(d));
    }
}

/// `quantize_row_tq2_0_ref`.
pub(super) fn quant_tq2_0(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK_K>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<66>().0)
    {
        let (d, c) = ternary_codes(x);
        for j in [0, 32] {
            for m in 0..32 {
                b[j + m] = (0..4).fold(0u8, |q, l| q | ((c[4 * j + 32 * l + m] & 3) << (2 * l)));
            }
        }
        b[64..66].copy_from_slice(&f16_bytes(d));
    }
}

/// Σ t[j]·q8[j] over a Q8_K block's 256 quants (at bytes 4..260).
#[inline(always)]
fn sum_q8k(t: &[i8; QK_K], q: &[u8; 292]) -> i32 {
    t.iter()
        .zip(&q[4..260])
        .map(|(&a, &b)| a as i32 * b as i8 as i32)
        .sum()
}

#[inline(always)]
fn q8k_d(q: &[u8; 292]) -> f32 {
    f32::from_le_bytes([q[0], q[1], q[2], q[3]])
}

/// `ggml_vec_dot_tq1_0_q8_K` (generic).
pub(super) fn dot_tq1_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<54>().0.iter().zip(y.as_chunks::<292>().0) {
        let sum = sum_q8k(&trits_tq1(b), q);
        sumf += sum as f32 * (f16_at(b[52], b[53]) * q8k_d(q));
    }
    sumf
}

/// `ggml_vec_dot_tq2_0_q8_K` (generic).
pub(super) fn dot_tq2_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<66>().0.iter().zip(y.as_chunks::<292>().0) {
        let sum = sum_q8k(&trits_tq2(b), q);
        sumf += sum as f32 * (q8k_d(q) * f16_at(b[64], b[65]));
    }
    sumf
}
