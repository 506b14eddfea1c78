//! IQ1_S (50 B: d f16, qs[32], qh u16[8]) and IQ1_M (56 B: qs[32], qh[16], scales u16[4] with the
//! f16 super-block scale spread over their top nibbles), 256 elements each: every group of 8 is a
//! point of `iq1s_grid` (values in {-1, 0, 1}) shifted by ±δ (δ = 1/8), times an odd integer scale
//! 2s + 1 per 32 (IQ1_S) or 16 (IQ1_M) elements. Value = d·(2s + 1)·(grid ± δ).
//!
//! ggml's dot sums grid·q8 and ±Σ q8 (Q8_K's `bsums` for IQ1_S) as integers, each weighted by
//! 2s + 1, then scales `d·d8·(Σ + δ·Σ±)` once per super-block.

use super::f16_at;
use super::iq_grids::{IQ1M_DELTA, IQ1S_DELTA, IQ1S_GRID};
use super::iq2::u16_at;
use super::q8::{q8k_bsums, q8k_d};

/// One IQ1 super-block, decoded.
struct Iq1Block {
    d: f32,
    /// The grid value of each element.
    vals: [i8; 256],
    /// 2s + 1 for each 16 elements.
    ls: [i32; 16],
    /// Whether group g (elements 8g..8g+7) is shifted by −δ rather than +δ.
    neg_delta: [bool; 32],
}

impl Iq1Block {
    fn new(d: f32) -> Self {
        Self {
            d,
            vals: [0; 256],
            ls: [0; 16],
            neg_delta: [false; 32],
        }
    }

    fn set_group(&mut self, g: usize, idx: usize) {
        let grid = IQ1S_GRID[idx].to_le_bytes();
        for (v, &m) in self.vals[8 * g..8 * g + 8].iter_mut().zip(&grid) {
            *v = m as i8;
        }
    }
}

/// IQ1_S: group g's grid index is qs[g] (byte 2 + g) with bits 8-10 from bits 3(g%4).. of qh[g/4]
/// (u16 at 34 + 2(g/4)); that u16's bits 12-14 are the sub-block's s, bit 15 the sign of δ.
fn decode_iq1_s(b: &[u8; 50]) -> Iq1Block {
    let mut x = Iq1Block::new(f16_at(b[0], b[1]));
    for ib in 0..8 {
        let qh = u16_at(b, 34 + 2 * ib) as usize;
        let ls = 2 * ((qh >> 12) & 7) as i32 + 1;
        x.ls[2 * ib] = ls;
        x.ls[2 * ib + 1] = ls;
        for l in 0..4 {
            let g = 4 * ib + l;
            x.set_group(g, b[2 + g] as usize | (((qh >> (3 * l)) & 7) << 8));
            x.neg_delta[g] = qh & 0x8000 != 0;
        }
    }
    x
}

/// IQ1_M: group g's grid index is qs[g] (byte g) with bits 8-10 from nibble g%2 of qh[g/2] (byte
/// 32 + g/2), whose bit 3 is the sign of δ. The scales u16s (bytes 48..56) give the 3-bit s of
/// each 16 elements (bits 3k..3k+2 of u16 k/4, k%4 ↦ 3(k%4)) and, in their top nibbles, the f16 d.
fn decode_iq1_m(b: &[u8; 56]) -> Iq1Block {
    let sc: [u16; 4] = std::array::from_fn(|k| u16_at(b, 48 + 2 * k));
    let d_bits =
        (sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000);
    let mut x = Iq1Block::new(half::f16::from_bits(d_bits).to_f32());
    for h in 0..16 {
        x.ls[h] = 2 * ((sc[h / 4] >> (3 * (h % 4))) & 7) as i32 + 1;
    }
    for g in 0..32 {
        let nib = (b[32 + g / 2] >> (4 * (g % 2))) as usize & 0x0F;
        x.set_group(g, b[g] as usize | ((nib & 7) << 8));
        x.neg_delta[g] = nib & 8 != 0;
    }
    x
}

/// d·(2s + 1)·(grid ± δ), in ggml's order.
fn dequant_iq1(src_blocks: impl Iterator<Item = Iq1Block>, dst: &mut [f32]) {
    for (x, y) in src_blocks.zip(dst.as_chunks_mut::<256>().0) {
        for (g, ys) in y.as_chunks_mut::<8>().0.iter_mut().enumerate() {
            let dl = x.d * x.ls[g / 2] as f32;
            let delta = if x.neg_delta[g] {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            for (v, &q) in ys.iter_mut().zip(&x.vals[8 * g..8 * g + 8]) {
                *v = dl * (q as f32 + delta);
            }
        }
    }
}

pub(super) fn dequant_iq1_s(src: &[u8], dst: &mut [f32]) {
    dequant_iq1(src.as_chunks::<50>().0.iter().map(decode_iq1_s), dst);
}

pub(super) fn dequant_iq1_m(src: &[u8], dst: &mut [f32]) {
    dequant_iq1(src.as_chunks::<56>().0.iter().map(decode_iq1_m), dst);
}

/// Σ ls·(grid·q8) over a super-block, exact.
#[inline(always)]
fn grid_sum(x: &Iq1Block, q: &[u8; 292]) -> i32 {
    let mut sumi = 0i32;
    for h in 0..16 {
        let mut s = 0i32;
        for j in 0..16 {
            let e = 16 * h + j;
            s += x.vals[e] as i32 * q[4 + e] as i8 as i32;
        }
        sumi += x.ls[h] * s;
    }
    sumi
}

/// ±1 for group g's δ.
#[inline(always)]
fn delta_sign(x: &Iq1Block, g: usize) -> i32 {
    if x.neg_delta[g] { -1 } else { 1 }
}

/// `ggml_vec_dot_iq1_s_q8_K_generic`: the δ term from Q8_K's `bsums` (one sign per 32 elements).
pub(super) fn dot_iq1_s(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<50>().0.iter().zip(y.as_chunks::<292>().0) {
        let blk = decode_iq1_s(b);
        let bsums = q8k_bsums(q);
        let mut sumi1 = 0i32;
        for ib in 0..8 {
            sumi1 +=
                blk.ls[2 * ib] * delta_sign(&blk, 4 * ib) * (bsums[2 * ib] + bsums[2 * ib + 1]);
        }
        let sumi = grid_sum(&blk, q);
        sumf += blk.d * q8k_d(q) * (sumi as f32 + IQ1S_DELTA * sumi1 as f32);
    }
    sumf
}

/// `ggml_vec_dot_iq1_m_q8_K_generic`: the δ term from Σ q8 per group of 8.
pub(super) fn dot_iq1_m(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<56>().0.iter().zip(y.as_chunks::<292>().0) {
        let blk = decode_iq1_m(b);
        let mut sumi2 = 0i32;
        for g in 0..32 {
            let mut s = 0i32;
            for j in 0..8 {
                s += q[4 + 8 * g + j] as i8 as i32;
            }
            sumi2 += blk.ls[g / 2] * delta_sign(&blk, g) * s;
        }
        let sumi1 = grid_sum(&blk, q);
        sumf += blk.d * q8k_d(q) * (sumi1 as f32 + IQ1M_DELTA * sumi2 as f32);
    }
    sumf
}
