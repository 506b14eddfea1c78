//! Q4_0, Q4_1, Q5_0, Q5_1: 32-element blocks in "nibble order" (byte j holds elements j and j+16).
//!
//! Layouts (bytes): Q4_0 = d f16, qs[16]; Q4_1 = d, m, qs[16]; Q5_0 = d, qh u32, qs[16];
//! Q5_1 = d, m, qh u32, qs[16].

use super::{f16_at, f16_bytes};

const QK: usize = 32;

/// `HIGH_BITS[v]` spreads the 8 bits of `v` into 8 bytes holding 0 or 16 (the 5th bit of Q5 quants).
static HIGH_BITS: [[u8; 8]; 256] = {
    let mut t = [[0u8; 8]; 256];
    let mut v = 0;
    while v < 256 {
        let mut k = 0;
        while k < 8 {
            t[v][k] = (((v >> k) & 1) << 4) as u8;
            k += 1;
        }
        v += 1;
    }
    t
};

/// The 32 fifth bits (0 or 16) of a Q5 block from its `qh` bytes.
#[inline(always)]
fn high_bits(qh: [u8; 4]) -> [u8; 32] {
    let mut h = [0u8; 32];
    for (k, &b) in qh.iter().enumerate() {
        h[8 * k..8 * k + 8].copy_from_slice(&HIGH_BITS[b as usize]);
    }
    h
}

/// The 32 unsigned quants of a 4-bit block whose `qs` start at byte `OFF`, in element order.
#[inline(always)]
fn nibbles<const OFF: usize, const B: usize>(b: &[u8; B]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = b[OFF + j] & 0x0F;
        q[j + 16] = b[OFF + j] >> 4;
    }
    q
}

/// Σ a[j]·y[OFF + j] over a 32-quant Q8 block (`y` read as i8).
#[inline(always)]
pub(super) fn dot_i8<const OFF: usize, const B: usize>(a: &[i8; 32], y: &[u8; B]) -> i32 {
    let mut s = 0i32;
    for j in 0..32 {
        s += a[j] as i32 * y[OFF + j] as i8 as i32;
    }
    s
}

/// Σ a[j]·y[OFF + j] for unsigned `a`.
#[inline(always)]
fn dot_u8<const OFF: usize, const B: usize>(a: &[u8; 32], y: &[u8; B]) -> i32 {
    let mut s = 0i32;
    for j in 0..32 {
        s += a[j] as i32 * y[OFF + j] as i8 as i32;
    }
    s
}

/// Largest-magnitude value (first one wins on ties) and its magnitude.
#[inline]
fn signed_max(x: &[f32; QK]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32; QK]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

pub(super) fn dequant_q4_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<18>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK>().0)
    {
        let d = f16_at(b[0], b[1]);
        let q = nibbles::<2, 18>(b);
        for j in 0..QK {
            y[j] = (q[j] as i32 - 8) as f32 * d;
        }
    }
}

pub(super) fn dequant_q4_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<20>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK>().0)
    {
        let (d, m) = (f16_at(b[0], b[1]), f16_at(b[2], b[3]));
        let q = nibbles::<4, 20>(b);
        for j in 0..QK {
            y[j] = q[j] as f32 * d + m;
        }
    }
}

pub(super) fn dequant_q5_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<22>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK>().0)
    {
        let d = f16_at(b[0], b[1]);
        let h = high_bits([b[2], b[3], b[4], b[5]]);
        let q = nibbles::<6, 22>(b);
        for j in 0..QK {
            y[j] = ((q[j] | h[j]) as i32 - 16) as f32 * d;
        }
    }
}

pub(super) fn dequant_q5_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<24>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK>().0)
    {
        let (d, m) = (f16_at(b[0], b[1]), f16_at(b[2], b[3]));
        let h = high_bits([b[4], b[5], b[6], b[7]]);
        let q = nibbles::<8, 24>(b);
        for j in 0..QK {
            y[j] = (q[j] | h[j]) as f32 * d + m;
        }
    }
}

/// Packs 32 quants (< 16 after masking) in nibble order into `qs`.
#[inline]
fn pack_nibbles(q: &[u8; QK], qs: &mut [u8]) {
    for j in 0..16 {
        qs[j] = (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4);
    }
}

/// The 5th bits of 32 quants as Q5's little-endian `qh`.
#[inline]
fn pack_high(q: &[u8; QK]) -> [u8; 4] {
    let mut qh = 0u32;
    for (j, &v) in q.iter().enumerate() {
        qh |= (((v & 0x10) >> 4) as u32) << j;
    }
    qh.to_le_bytes()
}

/// `quantize_row_q4_0_ref`.
pub(super) fn quant_q4_0(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<18>().0)
    {
        let d = signed_max(x) / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b[0..2].copy_from_slice(&f16_bytes(d));
        let q: [u8; QK] = std::array::from_fn(|j| ((x[j] * id + 8.5) as i8).min(15) as u8);
        pack_nibbles(&q, &mut b[2..]);
    }
}

/// `quantize_row_q4_1_ref`.
pub(super) fn quant_q4_1(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<20>().0)
    {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b[0..2].copy_from_slice(&f16_bytes(d));
        b[2..4].copy_from_slice(&f16_bytes(min));
        let q: [u8; QK] = std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as i8).min(15) as u8);
        pack_nibbles(&q, &mut b[4..]);
    }
}

/// `quantize_row_q5_0_ref`.
pub(super) fn quant_q5_0(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<22>().0)
    {
        let d = signed_max(x) / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b[0..2].copy_from_slice(&f16_bytes(d));
        let q: [u8; QK] = std::array::from_fn(|j| ((x[j] * id + 16.5) as i8).min(31) as u8);
        b[2..6].copy_from_slice(&pack_high(&q));
        pack_nibbles(&q, &mut b[6..]);
    }
}

/// `quantize_row_q5_1_ref`.
pub(super) fn quant_q5_1(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<24>().0)
    {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b[0..2].copy_from_slice(&f16_bytes(d));
        b[2..4].copy_from_slice(&f16_bytes(min));
        let q: [u8; QK] = std::array::from_fn(|j| ((x[j] - min) * id + 0.5) as u8);
        b[4..8].copy_from_slice(&pack_high(&q));
        pack_nibbles(&q, &mut b[8..]);
    }
}

/// `ggml_vec_dot_q4_0_q8_0`.
pub(super) fn dot_q4_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<18>().0.iter().zip(y.as_chunks::<34>().0) {
        let n = nibbles::<2, 18>(b);
        let a: [i8; QK] = std::array::from_fn(|j| n[j] as i8 - 8);
        let sumi = dot_i8::<2, 34>(&a, q);
        sumf += sumi as f32 * (f16_at(b[0], b[1]) * f16_at(q[0], q[1]));
    }
    sumf
}

/// `ggml_vec_dot_q4_1_q8_1`: `Σ d·dy·sumi + m·s`.
pub(super) fn dot_q4_1(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<20>().0.iter().zip(y.as_chunks::<36>().0) {
        let a = nibbles::<4, 20>(b);
        let sumi = dot_u8::<4, 36>(&a, q);
        sumf += (f16_at(b[0], b[1]) * f16_at(q[0], q[1])) * sumi as f32
            + f16_at(b[2], b[3]) * f16_at(q[2], q[3]);
    }
    sumf
}

/// `ggml_vec_dot_q5_0_q8_0`.
pub(super) fn dot_q5_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<22>().0.iter().zip(y.as_chunks::<34>().0) {
        let h = high_bits([b[2], b[3], b[4], b[5]]);
        let n = nibbles::<6, 22>(b);
        let a: [i8; QK] = std::array::from_fn(|j| (n[j] | h[j]) as i8 - 16);
        let sumi = dot_i8::<2, 34>(&a, q);
        sumf += (f16_at(b[0], b[1]) * f16_at(q[0], q[1])) * sumi as f32;
    }
    sumf
}

/// `ggml_vec_dot_q5_1_q8_1`.
pub(super) fn dot_q5_1(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<24>().0.iter().zip(y.as_chunks::<36>().0) {
        let h = high_bits([b[4], b[5], b[6], b[7]]);
        let n = nibbles::<8, 24>(b);
        let a: [u8; QK] = std::array::from_fn(|j| n[j] | h[j]);
        let sumi = dot_u8::<4, 36>(&a, q);
        sumf += (f16_at(b[0], b[1]) * f16_at(q[0], q[1])) * sumi as f32
            + f16_at(b[2], b[3]) * f16_at(q[2], q[3]);
    }
    sumf
}
