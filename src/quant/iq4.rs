//! IQ4_NL (32 el, 18 B: d f16, qs[16]) and IQ4_XS (256 el, 136 B: d f16, scales_h u16, scales_l[4],
//! qs[128]): 4-bit indices into a non-linear table, in nibble order.

use super::legacy::dot_i8;
use super::{f16_at, f16_bytes};

/// `kvalues_iq4nl`.
pub(super) const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Looks up 16 nibble indices (each < 16) in a 16-entry table.
#[inline(always)]
fn lut16(table: &[i8; 16], idx: [u8; 16]) -> [i8; 16] {
    #[cfg(all(target_arch = "x86_64", target_feature = "ssse3"))]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_shuffle_epi8, _mm_storeu_si128};
        let mut out = [0i8; 16];
        // SAFETY: ssse3 is enabled at compile time (cfg above); the unaligned loads read exactly the 16
        // bytes of `table` and `idx`, the store writes the 16 bytes of `out`. Indices are < 16, so the
        // shuffle selects table entries (pshufb would zero lanes whose index has bit 7 set).
        unsafe {
            let t = _mm_loadu_si128(table.as_ptr() as *const __m128i);
            let i = _mm_loadu_si128(idx.as_ptr() as *const __m128i);
            _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, _mm_shuffle_epi8(t, i));
        }
        out
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "ssse3")))]
    {
        std::array::from_fn(|j| table[(idx[j] & 15) as usize])
    }
}

/// The 32 table values of a 16-byte nibble-order field starting at `OFF`.
#[inline(always)]
pub(super) fn lookup32<const OFF: usize, const B: usize>(
    table: &[i8; 16],
    b: &[u8; B],
) -> [i8; 32] {
    let lo = lut16(table, std::array::from_fn(|j| b[OFF + j] & 0x0F));
    let hi = lut16(table, std::array::from_fn(|j| b[OFF + j] >> 4));
    let mut out = [0i8; 32];
    out[..16].copy_from_slice(&lo);
    out[16..].copy_from_slice(&hi);
    out
}

pub(super) fn dequant_iq4_nl(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<18>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<32>().0)
    {
        let d = f16_at(b[0], b[1]);
        let v = lookup32::<2, 18>(&KVALUES, b);
        for j in 0..32 {
            y[j] = d * v[j] as f32;
        }
    }
}

/// The 6-bit scale of sub-block `ib` of an IQ4_XS block.
#[inline(always)]
fn xs_scale(b: &[u8; 136], ib: usize) -> i32 {
    let h = u16::from_le_bytes([b[2], b[3]]);
    let lo = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0x0F;
    (lo as i32 | ((((h >> (2 * ib)) & 3) as i32) << 4)) - 32
}

pub(super) fn dequant_iq4_xs(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<136>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<256>().0)
    {
        let d = f16_at(b[0], b[1]);
        for (ib, ys) in y.as_chunks_mut::<32>().0.iter_mut().enumerate() {
            let dl = d * xs_scale(b, ib) as f32;
            let sub: [u8; 16] = std::array::from_fn(|j| b[8 + 16 * ib + j]);
            let v = lookup32::<0, 16>(&KVALUES, &sub);
            for j in 0..32 {
                ys[j] = dl * v[j] as f32;
            }
        }
    }
}

/// `best_index_int8`: the table entry nearest to `x` (ties go to the upper one, like ggml).
pub(super) fn best_index(val: &[i8; 16], x: f32) -> usize {
    if x <= val[0] as f32 {
        return 0;
    }
    if x >= val[15] as f32 {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < val[mav] as f32 {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - (val[mu - 1] as f32) < val[mu] as f32 - x {
        mu - 1
    } else {
        mu
    }
}

/// `quantize_row_iq4_nl_ref` (no importance weights, `ntry = -1`): scale from the signed max, one
/// least-squares refit of `d` with weights x², indices from the first pass.
pub(super) fn quant_iq4_nl(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<32>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<18>().0)
    {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let mut l = [0u8; 32];
        let mut d = 0f32;
        if amax >= 1e-15 {
            let id = 1.0 / (max / KVALUES[0] as f32);
            let (mut sumqx, mut sumq2) = (0f32, 0f32);
            for j in 0..32 {
                let k = best_index(&KVALUES, id * x[j]);
                l[j] = k as u8;
                let q = KVALUES[k] as f32;
                let w = x[j] * x[j];
                sumqx += w * q * x[j];
                sumq2 += w * q * q;
            }
            d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        }
        b[0..2].copy_from_slice(&f16_bytes(d));
        for j in 0..16 {
            b[2 + j] = l[j] | (l[j + 16] << 4);
        }
    }
}

/// `ggml_vec_dot_iq4_nl_q8_0`.
pub(super) fn dot_iq4_nl(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<18>().0.iter().zip(y.as_chunks::<34>().0) {
        let d = f16_at(q[0], q[1]) * f16_at(b[0], b[1]);
        let v = lookup32::<2, 18>(&KVALUES, b);
        sumf += d * dot_i8::<2, 34>(&v, q) as f32;
    }
    sumf
}

/// Integer sum of one IQ4_XS block: Σ (scale − 32)·(values·q8), exact.
#[inline(always)]
pub(super) fn sums_iq4_xs(b: &[u8; 136], q: &[u8; 292]) -> i32 {
    let mut isum = 0i32;
    for ib in 0..8 {
        let sub: [u8; 16] = std::array::from_fn(|j| b[8 + 16 * ib + j]);
        let v = lookup32::<0, 16>(&KVALUES, &sub);
        let mut sumi = 0i32;
        for j in 0..32 {
            sumi += v[j] as i32 * q[4 + 32 * ib + j] as i8 as i32;
        }
        isum += xs_scale(b, ib) * sumi;
    }
    isum
}

/// `ggml_vec_dot_iq4_xs_q8_K`.
/// As ggml's AVX2 kernel rounds: eight i32 lanes (lane l takes elements 4l..4l+3 of every 32-element
/// sub-block, times its scale), `fma(d·d8, lane, acc)` per super-block, then `hsum_float_8`.
pub(super) fn dot_iq4_xs(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (b, q) in x.as_chunks::<136>().0.iter().zip(y.as_chunks::<292>().0) {
        let d = f16_at(b[0], b[1]) * f32::from_le_bytes([q[0], q[1], q[2], q[3]]);
        let mut lanes = [0i32; 8];
        for ib in 0..8 {
            let sub: [u8; 16] = std::array::from_fn(|j| b[8 + 16 * ib + j]);
            let v = lookup32::<0, 16>(&KVALUES, &sub);
            let scale = xs_scale(b, ib);
            // Four products per lane in straight lines (vectorizes; a lane index per element did not).
            let qs: [i32; 32] = std::array::from_fn(|j| q[4 + 32 * ib + j] as i8 as i32);
            for (l, lane) in lanes.iter_mut().enumerate() {
                let p: i32 = (4 * l..4 * l + 4).map(|j| v[j] as i32 * qs[j]).sum();
                *lane += scale * p;
            }
        }
        for (a, &lane) in acc.iter_mut().zip(&lanes) {
            *a = d.mul_add(lane as f32, *a);
        }
    }
    let r: [f32; 4] = std::array::from_fn(|i| acc[4 + i] + acc[i]);
    (r[0] + r[2]) + (r[1] + r[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dot_iq4_xs` against its definition: each product into lane `j / 4`, one FMA per lane and
    /// block, then `hsum_float_8` (the same bits, whatever order the lanes' integers are summed in).
    #[test]
    fn dot_iq4_xs_matches_the_per_element_definition() {
        let mut rng = crate::testkit::Rng::new(5);
        let x = crate::quant::testdata::random_row(crate::ggml::GgmlType::Iq4Xs, 512, &mut rng);
        let y = crate::quant::testdata::random_row(crate::ggml::GgmlType::Q8K, 512, &mut rng);
        let mut acc = [0f32; 8];
        for (b, q) in x.as_chunks::<136>().0.iter().zip(y.as_chunks::<292>().0) {
            let d = f16_at(b[0], b[1]) * f32::from_le_bytes([q[0], q[1], q[2], q[3]]);
            let mut lanes = [0i32; 8];
            for ib in 0..8 {
                let sub: [u8; 16] = std::array::from_fn(|j| b[8 + 16 * ib + j]);
                let v = lookup32::<0, 16>(&KVALUES, &sub);
                for j in 0..32 {
                    lanes[j / 4] += xs_scale(b, ib) * v[j] as i32 * q[4 + 32 * ib + j] as i8 as i32;
                }
            }
            for (a, &lane) in acc.iter_mut().zip(&lanes) {
                *a = d.mul_add(lane as f32, *a);
            }
        }
        let r: [f32; 4] = std::array::from_fn(|i| acc[4 + i] + acc[i]);
        let want = (r[0] + r[2]) + (r[1] + r[3]);
        assert_eq!(dot_iq4_xs(&x, &y).to_bits(), want.to_bits());
    }
}
