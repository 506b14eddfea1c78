//! Q1_0 (128 el, 18 B: d f16, qs[16] one sign bit per element, LSB first: value = ±d) and Q2_0
//! (64 el, 18 B: d f16, qs[16] four 2-bit codes per byte, LSB first: value = (code − 1)·d). Both
//! dot with Q8_0 activations: a Q1_0 block spans 4 Q8_0 blocks, a Q2_0 block 2.

use super::{f16_at, f16_bytes};

const QK1: usize = 128;
const QK2: usize = 64;

/// The ±1 signs of a Q1_0 block's 128 elements.
#[inline(always)]
fn signs(b: &[u8; 18]) -> [i8; QK1] {
    std::array::from_fn(|j| {
        if (b[2 + j / 8] >> (j % 8)) & 1 == 1 {
            1
        } else {
            -1
        }
    })
}

/// The 64 codes − 1 (in −1..=2) of a Q2_0 block.
#[inline(always)]
fn codes(b: &[u8; 18]) -> [i8; QK2] {
    std::array::from_fn(|j| ((b[2 + j / 4] >> (2 * (j % 4))) & 3) as i8 - 1)
}

pub(super) fn dequant_q1_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<18>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK1>().0)
    {
        let d = f16_at(b[0], b[1]);
        for (v, s) in y.iter_mut().zip(signs(b)) {
            *v = if s > 0 { d } else { -d };
        }
    }
}

pub(super) fn dequant_q2_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<18>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK2>().0)
    {
        let d = f16_at(b[0], b[1]);
        for (v, q) in y.iter_mut().zip(codes(b)) {
            *v = q as f32 * d;
        }
    }
}

/// `quantize_row_q1_0_ref`: `d` = mean |x| (summed in order), bit set where `x >= 0`.
pub(super) fn quant_q1_0(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK1>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<18>().0)
    {
        let sum_abs = x.iter().fold(0f32, |s, v| s + v.abs());
        b[0..2].copy_from_slice(&f16_bytes(sum_abs / QK1 as f32));
        b[2..].fill(0);
        for (j, &v) in x.iter().enumerate() {
            if v >= 0.0 {
                b[2 + j / 8] |= 1 << (j % 8);
            }
        }
    }
}

/// `quantize_row_q2_0_ref`: `d` = max |x|, code = `roundf(x/d) + 1` clamped to 0..=3.
pub(super) fn quant_q2_0(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK2>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<18>().0)
    {
        let d = x
            .iter()
            .fold(0f32, |a, v| if v.abs() > a { v.abs() } else { a });
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        b[0..2].copy_from_slice(&f16_bytes(d));
        b[2..].fill(0);
        for (j, &v) in x.iter().enumerate() {
            let q = ((v * id).round() as i32 + 1).clamp(0, 3) as u8;
            b[2 + j / 4] |= q << (2 * (j % 4));
        }
    }
}

/// Σ a[j]·q[2 + j] over one Q8_0 block's quants.
#[inline(always)]
fn sum_q8(a: &[i8], q: &[u8; 34]) -> i32 {
    a.iter()
        .zip(&q[2..])
        .map(|(&x, &y)| x as i32 * y as i8 as i32)
        .sum()
}

/// `ggml_vec_dot_q1_0_q8_0` (generic): an integer sum per Q8_0 block, scaled by its `d`, summed
/// over the 4 blocks, then scaled by the Q1_0 `d`.
pub(super) fn dot_q1_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<18>().0.iter().zip(y.as_chunks::<136>().0) {
        let s = signs(b);
        let mut sumi = 0f32;
        for (k, qb) in q.as_chunks::<34>().0.iter().enumerate() {
            sumi += f16_at(qb[0], qb[1]) * sum_q8(&s[32 * k..32 * k + 32], qb) as f32;
        }
        sumf += f16_at(b[0], b[1]) * sumi;
    }
    sumf
}

/// `ggml_vec_dot_q2_0_q8_0` (generic): like Q1_0 with 2 Q8_0 blocks per block.
pub(super) fn dot_q2_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<18>().0.iter().zip(y.as_chunks::<68>().0) {
        let c = codes(b);
        let mut sumi = 0f32;
        for (k, qb) in q.as_chunks::<34>().0.iter().enumerate() {
            sumi += f16_at(qb[0], qb[1]) * sum_q8(&c[32 * k..32 * k + 32], qb) as f32;
        }
        sumf += f16_at(b[0], b[1]) * sumi;
    }
    sumf
}
