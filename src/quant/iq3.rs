//! IQ3_XXS (98 B: d f16, qs[64], scales_and_signs u32[8]) and IQ3_S (110 B: d, qs[64], qh[8],
//! signs[32], scales[4]), 256 elements each: every group of 8 elements is two points of a 4-element
//! grid with 8 sign bits; every 32 elements share a 4-bit scale s. Value = d·(0.5 + s)/2·grid·sign
//! (IQ3_XXS) or d·(1 + 2s)·grid·sign (IQ3_S). Decoding and the dot are `iq2`'s grid machinery.

use super::f16_at;
use super::iq_grids::{IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS};
use super::iq2::{GridBlock, dequant_grid, dot_grid, u32_at};

/// Two 4-element grid points as one 8-byte group (`lo` first).
#[inline(always)]
fn pair(lo: u32, hi: u32) -> u64 {
    lo as u64 | ((hi as u64) << 32)
}

/// IQ3_XXS: group g's grid indices are qs[2g], qs[2g + 1] (bytes 2 + 2g, 3 + 2g); sub-block ib's u32
/// at 66 + 4·ib holds four 7-bit sign indices (bits 7l..7l+6) and the scale (bits 28..31).
fn decode_iq3_xxs(b: &[u8; 98]) -> GridBlock {
    let mut g = GridBlock::new(f16_at(b[0], b[1]));
    for ib in 0..8 {
        let aux = u32_at(b, 66 + 4 * ib);
        g.set_scale32(ib, (aux >> 28) as u8);
        for l in 0..4 {
            let grp = 4 * ib + l;
            let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
            let grid = pair(
                IQ3XXS_GRID[b[2 + 2 * grp] as usize],
                IQ3XXS_GRID[b[3 + 2 * grp] as usize],
            );
            g.set_group(grp, grid, signs);
        }
    }
    g
}

/// IQ3_S: group g's grid indices are qs[2g], qs[2g + 1] (bytes 2 + 2g, 3 + 2g), each with a ninth
/// bit from qh[g/4] (byte 66 + g/4, bits 2(g%4) and 2(g%4) + 1); its 8 sign bits are byte 74 + g;
/// sub-block ib's scale is nibble ib%2 of byte 106 + ib/2.
fn decode_iq3_s(b: &[u8; 110]) -> GridBlock {
    let mut g = GridBlock::new(f16_at(b[0], b[1]));
    for grp in 0..32 {
        let (ib, l) = (grp / 4, grp % 4);
        let qh = b[66 + ib] as usize;
        let i1 = b[2 + 2 * grp] as usize | ((qh << (8 - 2 * l)) & 256);
        let i2 = b[3 + 2 * grp] as usize | ((qh << (7 - 2 * l)) & 256);
        g.set_group(grp, pair(IQ3S_GRID[i1], IQ3S_GRID[i2]), b[74 + grp]);
    }
    for ib in 0..8 {
        g.set_scale32(ib, (b[106 + ib / 2] >> (4 * (ib % 2))) & 0x0F);
    }
    g
}

pub(super) fn dequant_iq3_xxs(src: &[u8], dst: &mut [f32]) {
    dequant_grid(src, dst, decode_iq3_xxs, |d, s| d * (0.5 + s as f32) * 0.5);
}

pub(super) fn dequant_iq3_s(src: &[u8], dst: &mut [f32]) {
    dequant_grid(src, dst, decode_iq3_s, |d, s| d * (1 + 2 * s as i32) as f32);
}

/// `ggml_vec_dot_iq3_xxs_q8_K_generic`.
pub(super) fn dot_iq3_xxs(x: &[u8], y: &[u8]) -> f32 {
    dot_grid(x, y, decode_iq3_xxs, 0.25)
}

/// `ggml_vec_dot_iq3_s_q8_K_generic`.
pub(super) fn dot_iq3_s(x: &[u8], y: &[u8]) -> f32 {
    dot_grid(x, y, decode_iq3_s, 1.0)
}
