//! Q4_K and Q6_K prompt matmuls in the shape of ggml's AVX-512 VNNI tiled micro-kernel
//! (`tiled_run_micro_vnni_8x16`): 16 activation columns side by side in one zmm (one i32 lane per
//! column), each broadcast group of 4 weight codes meeting all 16 columns in one `vpdpbusd`. The
//! activations are packed once per matmul (`pack`), the weights unpacked to one byte per code once
//! per 8 rows (`unpack`), so the inner loop is nothing but broadcast loads and `vpdpbusd`.
//!
//! Numerics are the tiled path's (`tiled::step_min`/`step`): per super-block the exact i32 sums
//! `s1 = Σ scale·Σ q·y` and `s2 = Σ min·bsum`, then `fma(fnmadd(dmin, s2, d·s1), d8, acc)` per
//! (row, column), so the results are bit-identical to `tiled_dot_fn`'s kernels.

use super::f16_at;
use super::k_quants::{scale_bytes, scale_min_k4};
use super::q8::QK_K;
use super::q8::{q8k_bsums, q8k_d};
use crate::ggml::GgmlType;

/// Activation columns per panel.
pub const PANEL_COLS: usize = 16;
/// Weight rows per `run` call.
pub const PANEL_ROWS: usize = 8;

/// One Q8_K super-block of 16 columns: codes as `[group of 4 k][column]` words, the 16 per-16
/// sums and the scale of every column.
#[derive(Clone)]
pub struct PackedBlock {
    pub(super) codes: [[i32; PANEL_COLS]; QK_K / 4],
    pub(super) bsums: [[i32; PANEL_COLS]; QK_K / 16],
    pub(super) d: [f32; PANEL_COLS],
}

const EMPTY: PackedBlock = PackedBlock {
    codes: [[0; PANEL_COLS]; QK_K / 4],
    bsums: [[0; PANEL_COLS]; QK_K / 16],
    d: [0.0; PANEL_COLS],
};

/// Up to 16 Q8_K activation rows (`ys`, one per column, equal lengths) packed into `out`;
/// missing columns are zero.
pub fn pack(ys: &[&[u8]], out: &mut Vec<PackedBlock>) {
    let nb = ys.first().map_or(0, |y| y.len() / 292);
    out.clear();
    out.resize(nb, EMPTY);
    for (c, y) in ys.iter().take(PANEL_COLS).enumerate() {
        for (p, q) in out.iter_mut().zip(y.as_chunks::<292>().0) {
            for (g, w) in q[4..260].as_chunks::<4>().0.iter().enumerate() {
                p.codes[g][c] = i32::from_le_bytes(*w);
            }
            for (u, s) in q8k_bsums(q).into_iter().enumerate() {
                p.bsums[u][c] = s;
            }
            p.d[c] = q8k_d(q);
        }
    }
}

/// One weight super-block of 8 rows: codes as little-endian words of 4 unsigned codes, the
/// per-sub-block scales (and mins), and the f16 scales.
#[derive(Clone)]
pub struct WeightBlock {
    pub(super) codes: [[u32; QK_K / 4]; PANEL_ROWS],
    pub(super) scales: [[i32; 16]; PANEL_ROWS],
    pub(super) mins: [[i32; 8]; PANEL_ROWS],
    pub(super) d: [f32; PANEL_ROWS],
    pub(super) dmin: [f32; PANEL_ROWS],
}

const EMPTY_W: WeightBlock = WeightBlock {
    codes: [[0; QK_K / 4]; PANEL_ROWS],
    scales: [[0; 16]; PANEL_ROWS],
    mins: [[0; 8]; PANEL_ROWS],
    d: [0.0; PANEL_ROWS],
    dmin: [0.0; PANEL_ROWS],
};

/// The little-endian word at `b[off..off + 4]`.
#[inline(always)]
fn word(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .and_then(|w| w.first_chunk::<4>())
        .map_or(0, |w| u32::from_le_bytes(*w))
}

/// Q4_K codes, 4 per word: the low nibbles of each 32 bytes are codes 0..31 of a 64-code chunk,
/// the high nibbles codes 32..63.
fn q4_k_codes(b: &[u8; 144]) -> [u32; QK_K / 4] {
    const LO: u32 = 0x0F0F_0F0F;
    std::array::from_fn(|i| {
        let (c, hi, g) = (i / 16, i % 16 >= 8, i % 8);
        let v = word(b, 16 + 32 * c + 4 * g);
        if hi { (v >> 4) & LO } else { v & LO }
    })
}

/// Q6_K codes (0..63, the quant + 32), 4 per word, in `unpack_q6_k`'s order.
fn q6_k_codes(b: &[u8; 210]) -> [u32; QK_K / 4] {
    const LO: u32 = 0x0F0F_0F0F;
    const HI: u32 = 0x0303_0303;
    std::array::from_fn(|i| {
        let (h, q, g) = (i / 32, (i / 8) % 4, i % 8);
        let ql = word(b, 64 * h + 32 * (q % 2) + 4 * g);
        let qh = word(b, 128 + 32 * h + 4 * g);
        let low = if q < 2 { ql & LO } else { (ql >> 4) & LO };
        low | (((qh >> (2 * q)) & HI) << 4)
    })
}

/// Up to 8 weight rows of `typ` (Q4_K or Q6_K) unpacked into `out`; missing rows repeat the last.
pub fn unpack(typ: GgmlType, xs: &[&[u8]], out: &mut Vec<WeightBlock>) {
    let bx = if typ == GgmlType::Q4K { 144 } else { 210 };
    let nb = xs.first().map_or(0, |x| x.len() / bx);
    out.clear();
    out.resize(nb, EMPTY_W);
    for t in 0..PANEL_ROWS {
        let Some(x) = xs.get(t.min(xs.len().saturating_sub(1))) else {
            return;
        };
        for (l, w) in out.iter_mut().enumerate() {
            let b = &x[l * bx..(l + 1) * bx];
            if let Some(b) = <&[u8; 144]>::try_from(b)
                .ok()
                .filter(|_| typ == GgmlType::Q4K)
            {
                let (sc, mn) = scale_min_k4(&scale_bytes::<4, 144>(b));
                w.codes[t] = q4_k_codes(b);
                w.scales[t] = std::array::from_fn(|s| sc.get(s).map_or(0, |&v| v as i32));
                w.mins[t] = mn.map(|v| v as i32);
                w.d[t] = f16_at(b[0], b[1]);
                w.dmin[t] = f16_at(b[2], b[3]);
            } else if let Ok(b) = <&[u8; 210]>::try_from(b) {
                w.codes[t] = q6_k_codes(b);
                w.scales[t] = std::array::from_fn(|s| (b[192 + s] as i8) as i32);
                w.d[t] = f16_at(b[208], b[209]);
            }
        }
    }
}

/// `out[j * xs.len() + i] = tiled dot(xs[i], column j)` for up to 8 weight rows and every column
/// of the packed panels (16 per panel), bit-identical to `tiled_dot_fn(typ)`.
pub type PanelRun = fn(w: &[WeightBlock], panels: &[&[PackedBlock]], rows: usize, out: &mut [f32]);

/// The panel kernel for weights of `typ`, where this build has one (AVX-512 VNNI).
pub fn panel_fn(typ: GgmlType) -> Option<PanelRun> {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512dq",
        target_feature = "avx512vl",
        target_feature = "avx512vnni"
    ))]
    {
        return match typ {
            GgmlType::Q4K => Some(super::avx512_kpanel::run_q4_k),
            GgmlType::Q6K => Some(super::avx512_kpanel::run_q6_k),
            _ => None,
        };
    }
    #[allow(unreachable_code)]
    {
        let _ = typ;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{quantize_row, quantize_row_for_dot, tiled};

    fn rows(typ: GgmlType, n: usize, k: usize, seed: u32) -> Vec<Vec<u8>> {
        (0..n)
            .map(|r| {
                let f: Vec<f32> = (0..k)
                    .map(|i| {
                        let h = (i as u32 ^ (r as u32).wrapping_mul(0x9E37) ^ seed)
                            .wrapping_mul(2654435761);
                        (h >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0
                    })
                    .collect();
                let mut b = vec![0u8; typ.row_size(k).unwrap_or(0)];
                if typ == GgmlType::Q8K {
                    quantize_row_for_dot(typ, &f, &mut b).expect("quantize");
                } else {
                    quantize_row(typ, &f, &mut b).expect("quantize");
                }
                b
            })
            .collect()
    }

    #[test]
    fn q6_k_codes_are_unpack_q6_k_plus_32() {
        let x = &rows(GgmlType::Q6K, 1, 256, 3)[0];
        let b: &[u8; 210] = x.as_slice().try_into().expect("one block");
        let want = crate::quant::k_quants::unpack_q6_k(b);
        let got = q6_k_codes(b);
        for (i, q) in want.iter().enumerate() {
            assert_eq!(
                ((got[i / 4] >> (8 * (i % 4))) & 0xFF) as i32,
                *q as i32 + 32,
                "code {i}"
            );
        }
    }

    #[test]
    fn panels_match_the_tiled_kernels_bit_for_bit() {
        for typ in [GgmlType::Q4K, GgmlType::Q6K] {
            let Some(run) = panel_fn(typ) else {
                eprintln!("skipped: this build has no AVX-512 VNNI panel kernel");
                return;
            };
            let dot = tiled::scalar_tiled_dot_fn(typ).expect("tiled kernel");
            for (k, nr, nc) in [(256, 8, 16), (512, 3, 5), (2048, 8, 37), (768, 1, 17)] {
                let xs = rows(typ, nr, k, 7);
                let ys = rows(GgmlType::Q8K, nc, k, 11);
                let x: Vec<&[u8]> = xs.iter().map(|v| v.as_slice()).collect();
                let mut w = Vec::new();
                unpack(typ, &x, &mut w);
                let packed: Vec<Vec<PackedBlock>> = ys
                    .chunks(PANEL_COLS)
                    .map(|c| {
                        let mut p = Vec::new();
                        pack(&c.iter().map(|v| v.as_slice()).collect::<Vec<_>>(), &mut p);
                        p
                    })
                    .collect();
                let panels: Vec<&[PackedBlock]> = packed.iter().map(|p| p.as_slice()).collect();
                let mut out = vec![0f32; panels.len() * PANEL_COLS * nr];
                run(&w, &panels, nr, &mut out);
                for (j, y) in ys.iter().enumerate() {
                    for (i, xr) in xs.iter().enumerate() {
                        let (got, want) = (out[j * nr + i], dot(xr, y));
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{typ:?} k={k} row {i} col {j}"
                        );
                    }
                }
            }
        }
    }
}
