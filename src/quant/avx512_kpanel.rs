//! The AVX-512 VNNI kernel of `kpanel`: 8 weight rows × 16 columns per pass, one zmm per row
//! (lanes = columns), `vpdpbusd` of a broadcast word of 4 weight codes against the 16 columns'
//! 4 activation codes.

use std::arch::x86_64::*;

use super::kpanel::{PANEL_COLS, PANEL_ROWS, PackedBlock, WeightBlock};
use super::q8::QK_K;

const R: usize = PANEL_ROWS;

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
#[inline]
fn ld(v: &[i32; PANEL_COLS]) -> __m512i {
    // SAFETY: `v` is 16 i32 = 64 readable bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(v.as_ptr() as *const __m512i) }
}

/// One super-block of 8 rows × 16 columns into `acc` (per row, lanes = columns). `SUB` is the
/// sub-block size (32: Q4_K with mins, 16: Q6_K with codes biased by 32).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
#[inline]
#[allow(clippy::needless_range_loop)] // `t` indexes the rows of `w` and the accumulators alike
fn block<const SUB: usize, const MIN: bool>(
    w: &WeightBlock,
    p: &PackedBlock,
    acc: &mut [__m512; R],
) {
    let mut s1 = [_mm512_setzero_si512(); R];
    for s in 0..QK_K / SUB {
        let mut bs = ld(&p.bsums[s * SUB / 16]);
        if SUB == 32 {
            bs = _mm512_add_epi32(bs, ld(&p.bsums[s * SUB / 16 + 1]));
        }
        let mut a = [_mm512_setzero_si512(); R];
        for g in 0..SUB / 4 {
            let kg = s * SUB / 4 + g;
            let codes = ld(&p.codes[kg]);
            for t in 0..R {
                a[t] = _mm512_dpbusd_epi32(a[t], _mm512_set1_epi32(w.codes[t][kg] as i32), codes);
            }
        }
        for t in 0..R {
            // Q6_K: Σ (u − 32)·y = Σ u·y − 32·Σ y, exactly.
            let raw = if MIN {
                a[t]
            } else {
                _mm512_sub_epi32(a[t], _mm512_slli_epi32::<5>(bs))
            };
            s1[t] = _mm512_add_epi32(
                s1[t],
                _mm512_mullo_epi32(raw, _mm512_set1_epi32(w.scales[t][s])),
            );
        }
    }
    // SAFETY: `p.d` is 16 f32 = 64 readable bytes; the load is unaligned.
    let d8 = unsafe { _mm512_loadu_ps(p.d.as_ptr()) };
    for t in 0..R {
        let mut res = _mm512_mul_ps(_mm512_cvtepi32_ps(s1[t]), _mm512_set1_ps(w.d[t]));
        if MIN {
            let mut s2 = _mm512_setzero_si512();
            for s in 0..8 {
                let bs = _mm512_add_epi32(ld(&p.bsums[2 * s]), ld(&p.bsums[2 * s + 1]));
                s2 = _mm512_add_epi32(s2, _mm512_mullo_epi32(bs, _mm512_set1_epi32(w.mins[t][s])));
            }
            res = _mm512_fnmadd_ps(_mm512_set1_ps(w.dmin[t]), _mm512_cvtepi32_ps(s2), res);
        }
        acc[t] = _mm512_fmadd_ps(res, d8, acc[t]);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn run<const SUB: usize, const MIN: bool>(
    w: &[WeightBlock],
    panels: &[&[PackedBlock]],
    rows: usize,
    out: &mut [f32],
) {
    let rows = rows.min(R);
    for (pi, panel) in panels.iter().enumerate() {
        assert_eq!(panel.len(), w.len(), "panel and weights differ in length");
        let mut acc = [_mm512_setzero_ps(); R];
        for (wb, pb) in w.iter().zip(panel.iter()) {
            block::<SUB, MIN>(wb, pb, &mut acc);
        }
        let mut lanes = [0f32; PANEL_COLS];
        for (t, a) in acc.iter().take(rows).enumerate() {
            // SAFETY: `lanes` holds 16 f32; the store is unaligned.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *a) };
            for (j, v) in lanes.iter().enumerate() {
                if let Some(o) = out.get_mut((pi * PANEL_COLS + j) * rows + t) {
                    *o = *v;
                }
            }
        }
    }
}

/// Safe entry points. SAFETY (for the `unsafe` below): this module is compiled only where every
/// feature `run` enables is a compile-time target feature (the `cfg` on `mod avx512_kpanel`).
pub(super) fn run_q4_k(w: &[WeightBlock], panels: &[&[PackedBlock]], rows: usize, out: &mut [f32]) {
    unsafe { run::<32, true>(w, panels, rows, out) }
}

pub(super) fn run_q6_k(w: &[WeightBlock], panels: &[&[PackedBlock]], rows: usize, out: &mut [f32]) {
    unsafe { run::<16, false>(w, panels, rows, out) }
}
