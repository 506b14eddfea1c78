//! Q8_0 (d f16, qs[32] i8), Q8_1 (d f16, s f16 = d·Σqs, qs[32]) and Q8_K (d f32, qs[256] i8,
//! bsums[16] i16): the activation types of the dot products.

use super::legacy::dot_i8;
use super::{f16_at, f16_bytes};

const QK: usize = 32;
pub(super) const QK_K: usize = 256;

pub(super) fn dequant_q8_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<34>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK>().0)
    {
        let d = f16_at(b[0], b[1]);
        for j in 0..QK {
            y[j] = b[2 + j] as i8 as f32 * d;
        }
    }
}

/// Q8_1: like Q8_0 (its `s` only serves dot products).
pub(super) fn dequant_q8_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<36>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK>().0)
    {
        let d = f16_at(b[0], b[1]);
        for j in 0..QK {
            y[j] = b[4 + j] as i8 as f32 * d;
        }
    }
}

pub(super) fn dequant_q8_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<292>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK_K>().0)
    {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for j in 0..QK_K {
            y[j] = d * b[4 + j] as i8 as f32;
        }
    }
}

fn amax(x: &[f32; QK]) -> f32 {
    lane_amax(x)
}

/// The largest |x| (NaN ignored), in 16 lanes so that it vectorizes: max is exact in any order.
#[inline(always)]
fn lane_amax(x: &[f32]) -> f32 {
    let mut m = [0f32; 16];
    let (chunks, tail) = x.as_chunks::<16>();
    for c in chunks {
        for (a, v) in m.iter_mut().zip(c) {
            *a = a.max(v.abs());
        }
    }
    let m = tail.iter().fold(m, |mut m, v| {
        m[0] = m[0].max(v.abs());
        m
    });
    m.into_iter().fold(0f32, f32::max)
}

/// `quantize_row_q8_0_ref`: `d = amax/127`, `q = roundf(x/d)` (half away from zero).
pub(super) fn quant_q8_0_ref(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<34>().0)
    {
        let d = amax(x) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b[0..2].copy_from_slice(&f16_bytes(d));
        for j in 0..QK {
            b[2 + j] = (x[j] * id).round() as i8 as u8;
        }
    }
}

/// `quantize_row_q8_1_ref`.
pub(super) fn quant_q8_1_ref(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<36>().0)
    {
        let d = amax(x) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for j in 0..QK {
            let q = (x[j] * id).round() as i8;
            sum += q as i32;
            b[4 + j] = q as u8;
        }
        b[0..2].copy_from_slice(&f16_bytes(d));
        b[2..4].copy_from_slice(&f16_bytes(sum as f32 * d));
    }
}

/// The quants of one block as ggml-cpu's AVX2 `quantize_row_q8_0/1` computes them: multiply by
/// `127/amax`, round half to even, saturate to i8.
#[inline(always)]
fn quants_cpu(x: &[f32; QK]) -> (f32, [i8; QK]) {
    let amax = amax(x);
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let q = std::array::from_fn(|j| (x[j] * id).round_ties_even().clamp(-128.0, 127.0) as i8);
    (amax / 127.0, q)
}

/// ggml-cpu's x86 `quantize_row_q8_0` (activations of Q4_0/Q5_0/Q8_0/IQ4_NL/MXFP4 products).
pub(super) fn quant_q8_0_cpu(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<34>().0)
    {
        let (d, q) = quants_cpu(x);
        b[0..2].copy_from_slice(&f16_bytes(d));
        for j in 0..QK {
            b[2 + j] = q[j] as u8;
        }
    }
}

/// ggml-cpu's x86 `quantize_row_q8_1`.
pub(super) fn quant_q8_1_cpu(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<36>().0)
    {
        let (d, q) = quants_cpu(x);
        let sum: i32 = q.iter().map(|&v| v as i32).sum();
        b[0..2].copy_from_slice(&f16_bytes(d));
        b[2..4].copy_from_slice(&f16_bytes(d * sum as f32));
        for j in 0..QK {
            b[4 + j] = q[j] as u8;
        }
    }
}

/// `quantize_row_q8_K_ref`: `iscale = -127/max` (max = the signed value of largest magnitude),
/// `q = min(127, nearest_int(iscale·x))` (round half to even), `d = 1/iscale`.
pub(super) fn quant_q8_k(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK_K>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<292>().0)
    {
        // The first value of largest magnitude, as ggml's scan finds it.
        let amax = lane_amax(x);
        let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
        b.fill(0);
        if amax == 0.0 {
            continue;
        }
        let iscale = -127.0 / max;
        let mut q = [0i8; QK_K];
        for j in 0..QK_K {
            q[j] = ((iscale * x[j]).round_ties_even() as i32).min(127) as i8;
            b[4 + j] = q[j] as u8;
        }
        for (g, qs) in q.as_chunks::<16>().0.iter().enumerate() {
            let s: i16 = qs.iter().map(|&v| v as i16).sum();
            b[260 + 2 * g..262 + 2 * g].copy_from_slice(&s.to_le_bytes());
        }
        b[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

/// `ggml_vec_dot_q8_0_q8_0`.
pub(super) fn dot_q8_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<34>().0.iter().zip(y.as_chunks::<34>().0) {
        let a: [i8; QK] = std::array::from_fn(|j| b[2 + j] as i8);
        let sumi = dot_i8::<2, 34>(&a, q);
        sumf += sumi as f32 * (f16_at(b[0], b[1]) * f16_at(q[0], q[1]));
    }
    sumf
}

/// The Q8_K block scale (its quants are bytes 4..260).
#[inline(always)]
pub(super) fn q8k_d(b: &[u8; 292]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The 16 partial sums of a Q8_K block.
#[inline(always)]
pub(super) fn q8k_bsums(b: &[u8; 292]) -> [i32; 16] {
    std::array::from_fn(|g| i16::from_le_bytes([b[260 + 2 * g], b[261 + 2 * g]]) as i32)
}
