//! IQ2_XXS (66 B: d f16, qs u16[32]), IQ2_XS (74 B: d, qs u16[32], scales[8]) and IQ2_S (82 B: d,
//! qs[32], signs[32], qh[8], scales[8]), 256 elements each: every group of 8 elements is a point of a
//! lattice grid (magnitudes) with 8 sign bits, and every 32 (XXS) or 16 elements share a 4-bit scale
//! s. Value = d·(0.5 + s)/4·grid·sign.
//!
//! The shared machinery for the grid formats (IQ2 here, IQ3 in `iq3`) decodes a super-block to its
//! signed grid values and per-16-element scales; ggml's generic dot then sums value·q8 as integers,
//! weights each sum by 2s + 1, scales once per super-block by d·d8 and once per row by a constant.

use super::f16_at;
use super::iq_grids::{IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, KMASK_IQ2XS, KSIGNS_IQ2XS};
use super::q8::q8k_d;

/// One super-block of a grid format, decoded.
pub(super) struct GridBlock {
    /// The super-block scale `d`.
    pub d: f32,
    /// grid·sign of each element.
    pub vals: [i8; 256],
    /// The 4-bit scale `s` of each 16 elements.
    pub scales: [u8; 16],
}

impl GridBlock {
    pub fn new(d: f32) -> Self {
        Self {
            d,
            vals: [0; 256],
            scales: [0; 16],
        }
    }

    /// Stores group `g` (elements 8g..8g+7): grid bytes (little-endian in `grid`) with the signs
    /// of `signs` (bit j set: element j negative).
    #[inline(always)]
    pub fn set_group(&mut self, g: usize, grid: u64, signs: u8) {
        let mag = grid.to_le_bytes();
        for j in 0..8 {
            let m = mag[j] as i8;
            self.vals[8 * g + j] = if signs & KMASK_IQ2XS[j] != 0 { -m } else { m };
        }
    }

    /// Sets the scale of the 32 elements of sub-block `ib`.
    #[inline(always)]
    pub fn set_scale32(&mut self, ib: usize, s: u8) {
        self.scales[2 * ib] = s;
        self.scales[2 * ib + 1] = s;
    }
}

/// Dequantizes rows of a grid format: element e = `db(d, s)`·vals[e] with `s` its 16-element group's
/// scale (ggml's `db * grid[j] * ±1`; the sign flip is exact, so the product rounds the same).
pub(super) fn dequant_grid<const TS: usize>(
    src: &[u8],
    dst: &mut [f32],
    decode: impl Fn(&[u8; TS]) -> GridBlock,
    db: impl Fn(f32, u8) -> f32,
) {
    for (b, y) in src
        .as_chunks::<TS>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<256>().0)
    {
        let g = decode(b);
        for (h, ys) in y.as_chunks_mut::<16>().0.iter_mut().enumerate() {
            let dl = db(g.d, g.scales[h]);
            for (v, &q) in ys.iter_mut().zip(&g.vals[16 * h..16 * h + 16]) {
                *v = dl * q as f32;
            }
        }
    }
}

/// ggml's generic grid dot with Q8_K: per super-block the exact integer Σ (2s + 1)·Σ vals·q8, then
/// `sumf += d·d8·isum`; the row's sum times `mult` (1/8 for IQ2, 1/4 for IQ3_XXS, 1 for IQ3_S).
pub(super) fn dot_grid<const TS: usize>(
    x: &[u8],
    y: &[u8],
    decode: impl Fn(&[u8; TS]) -> GridBlock,
    mult: f32,
) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<TS>().0.iter().zip(y.as_chunks::<292>().0) {
        let g = decode(b);
        let d = g.d * q8k_d(q);
        let mut isum = 0i32;
        for h in 0..16 {
            let mut s = 0i32;
            for j in 0..16 {
                let e = 16 * h + j;
                s += g.vals[e] as i32 * q[4 + e] as i8 as i32;
            }
            isum += (2 * g.scales[h] as i32 + 1) * s;
        }
        sumf += d * isum as f32;
    }
    mult * sumf
}

/// Little-endian u16 at `b[off..off + 2]`.
#[inline(always)]
pub(super) fn u16_at<const B: usize>(b: &[u8; B], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// Little-endian u32 at `b[off..off + 4]`.
#[inline(always)]
pub(super) fn u32_at<const B: usize>(b: &[u8; B], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// IQ2_XXS: sub-block ib is 8 bytes at 2 + 8·ib: four 8-bit grid indices, then a u32 holding four
/// 7-bit sign indices (bits 7l..7l+6) and the scale (bits 28..31).
fn decode_iq2_xxs(b: &[u8; 66]) -> GridBlock {
    let mut g = GridBlock::new(f16_at(b[0], b[1]));
    for ib in 0..8 {
        let o = 2 + 8 * ib;
        let aux = u32_at(b, o + 4);
        g.set_scale32(ib, (aux >> 28) as u8);
        for l in 0..4 {
            let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
            g.set_group(4 * ib + l, IQ2XXS_GRID[b[o + l] as usize], signs);
        }
    }
    g
}

/// IQ2_XS: group g is the u16 at 2 + 2g (9-bit grid index, 7-bit sign index); byte 66 + ib holds
/// the scales of sub-block ib's two halves (low nibble first).
fn decode_iq2_xs(b: &[u8; 74]) -> GridBlock {
    let mut g = GridBlock::new(f16_at(b[0], b[1]));
    for grp in 0..32 {
        let q = u16_at(b, 2 + 2 * grp);
        let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
        g.set_group(grp, IQ2XS_GRID[(q & 511) as usize], signs);
    }
    for h in 0..16 {
        g.scales[h] = (b[66 + h / 2] >> (4 * (h % 2))) & 0x0F;
    }
    g
}

/// IQ2_S: group g's grid index is qs[g] (byte 2 + g) with bits 8-9 from qh[g/4] (byte 66 + g/4,
/// bits 2(g%4)..+1), its 8 sign bits are byte 34 + g; scales as IQ2_XS at byte 74.
fn decode_iq2_s(b: &[u8; 82]) -> GridBlock {
    let mut g = GridBlock::new(f16_at(b[0], b[1]));
    for grp in 0..32 {
        let (ib, l) = (grp / 4, grp % 4);
        let hi = ((b[66 + ib] as usize) << (8 - 2 * l)) & 0x300;
        g.set_group(grp, IQ2S_GRID[b[2 + grp] as usize | hi], b[34 + grp]);
    }
    for h in 0..16 {
        g.scales[h] = (b[74 + h / 2] >> (4 * (h % 2))) & 0x0F;
    }
    g
}

/// The IQ2 sub-block scale `d·(0.5 + s)·0.25`, in ggml's order.
#[inline(always)]
fn db_iq2(d: f32, s: u8) -> f32 {
    d * (0.5 + s as f32) * 0.25
}

pub(super) fn dequant_iq2_xxs(src: &[u8], dst: &mut [f32]) {
    dequant_grid(src, dst, decode_iq2_xxs, db_iq2);
}

pub(super) fn dequant_iq2_xs(src: &[u8], dst: &mut [f32]) {
    dequant_grid(src, dst, decode_iq2_xs, db_iq2);
}

pub(super) fn dequant_iq2_s(src: &[u8], dst: &mut [f32]) {
    dequant_grid(src, dst, decode_iq2_s, db_iq2);
}

/// `ggml_vec_dot_iq2_xxs_q8_K_generic`.
pub(super) fn dot_iq2_xxs(x: &[u8], y: &[u8]) -> f32 {
    dot_grid(x, y, decode_iq2_xxs, 0.125)
}

/// `ggml_vec_dot_iq2_xs_q8_K_generic`.
pub(super) fn dot_iq2_xs(x: &[u8], y: &[u8]) -> f32 {
    dot_grid(x, y, decode_iq2_xs, 0.125)
}

/// `ggml_vec_dot_iq2_s_q8_K_generic`.
pub(super) fn dot_iq2_s(x: &[u8], y: &[u8]) -> f32 {
    dot_grid(x, y, decode_iq2_s, 0.125)
}
