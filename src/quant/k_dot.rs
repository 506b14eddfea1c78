//! `ggml_vec_dot_q{2..6}_K_q8_K`: integer sums per 16- or 32-element sub-block, weighted by the
//! integer sub-block scales, then one float scale per super-block (mins through Q8_K's `bsums`).

use super::f16_at;
use super::k_quants::{QK_K, scale_bytes, scale_min_k4, scales_q3_k, unpack_q6_k};
use super::q8::{q8k_bsums, q8k_d};

/// Σ a[l]·q[OFF + l] over 16 elements (`q` read as i8).
#[inline(always)]
fn sum16<const B: usize>(a: &[i8], q: &[u8; B], off: usize) -> i32 {
    let mut s = 0i32;
    for l in 0..16 {
        s += a[l] as i32 * q[off + l] as i8 as i32;
    }
    s
}

/// Σ a[l]·q[off + l] over 32 elements.
#[inline(always)]
fn sum32(a: &[u8; 32], q: &[u8; 292], off: usize) -> i32 {
    let mut s = 0i32;
    for l in 0..32 {
        s += a[l] as i32 * q[off + l] as i8 as i32;
    }
    s
}

/// Integer sums of one Q2_K block: (Σ scale·(quants·q8), Σ min·bsum), exact.
#[inline(always)]
pub(super) fn sums_q2_k(b: &[u8; 84], q: &[u8; 292]) -> (i32, i32) {
    let bsums = q8k_bsums(q);
    let mut summs = 0i32;
    for g in 0..16 {
        summs += bsums[g] * (b[g] >> 4) as i32;
    }
    let mut isum = 0i32;
    for half in 0..2 {
        for shift in 0..4 {
            let a: [i8; 32] =
                std::array::from_fn(|l| ((b[16 + 32 * half + l] >> (2 * shift)) & 3) as i8);
            let g = 8 * half + 2 * shift;
            let off = 4 + 128 * half + 32 * shift;
            isum += (b[g] & 0x0F) as i32 * sum16(&a[..16], q, off);
            isum += (b[g + 1] & 0x0F) as i32 * sum16(&a[16..], q, off + 16);
        }
    }
    (isum, summs)
}

/// `Σ scale_g·w_e·q8_e` in ggml's eight AVX2 lanes: lane l of each 32-quant sub-block c takes its
/// elements 4l..4l+3 (lanes 0-3 in group 2c, 4-7 in group 2c+1). `w(c, l)` is the quant, `scale(g)`
/// the group's integer scale.
#[inline(always)]
fn lanes8(
    q: &[u8; 292],
    w: impl Fn(usize, usize) -> i32,
    scale: impl Fn(usize) -> i32,
) -> [i32; 8] {
    let mut lanes = [0i32; 8];
    for c in 0..8 {
        // The sub-block's quants first, then straight-line products: this shape vectorizes, the
        // per-element closure call with a lane index did not (Q3_K mat-vec ran at 1/25 of ggml).
        let ws: [i32; 32] = std::array::from_fn(|l| w(c, l));
        let qs: [i32; 32] = std::array::from_fn(|l| q[4 + 32 * c + l] as i8 as i32);
        let p: [i32; 8] = std::array::from_fn(|j| {
            ws[4 * j] * qs[4 * j]
                + ws[4 * j + 1] * qs[4 * j + 1]
                + ws[4 * j + 2] * qs[4 * j + 2]
                + ws[4 * j + 3] * qs[4 * j + 3]
        });
        let (s0, s1) = (scale(2 * c), scale(2 * c + 1));
        for (j, lane) in lanes.iter_mut().enumerate() {
            *lane += if j < 4 { s0 } else { s1 } * p[j];
        }
    }
    lanes
}

/// ggml's `hsum_float_8`: halves, then pairs.
#[inline(always)]
fn hsum8(a: &[f32; 8]) -> f32 {
    let r: [f32; 4] = std::array::from_fn(|i| a[4 + i] + a[i]);
    (r[0] + r[2]) + (r[1] + r[3])
}

/// As ggml's AVX2 kernel rounds: per lane, `fma(dmin, mins, acc)` then `fma(d, sums, acc)`.
pub(super) fn dot_q2_k(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (b, q) in x.as_chunks::<84>().0.iter().zip(y.as_chunks::<292>().0) {
        let dy = q8k_d(q);
        let d = dy * f16_at(b[80], b[81]);
        let dmin = -dy * f16_at(b[82], b[83]);
        let bs = q8k_bsums(q);
        let quant = |c: usize, l: usize| ((b[16 + 32 * (c / 4) + l] >> (2 * (c % 4))) & 3) as i32;
        let lanes = lanes8(q, quant, |g| (b[g] & 0x0F) as i32);
        for (l, a) in acc.iter_mut().enumerate() {
            let mins =
                (b[2 * l] >> 4) as i32 * bs[2 * l] + (b[2 * l + 1] >> 4) as i32 * bs[2 * l + 1];
            *a = dmin.mul_add(mins as f32, *a);
            *a = d.mul_add(lanes[l] as f32, *a);
        }
    }
    hsum8(&acc)
}

/// Integer sums of one Q3_K block: (Σ (scale − 32)·(quants·q8), 0), exact.
#[inline(always)]
pub(super) fn sums_q3_k(b: &[u8; 110], q: &[u8; 292]) -> (i32, i32) {
    let sc = scales_q3_k(&scale_bytes::<96, 110>(b));
    let mut isum = 0i32;
    for half in 0..2 {
        for shift in 0..4 {
            let m = 4 * half + shift;
            let a: [i8; 32] = std::array::from_fn(|l| {
                let q2 = ((b[32 + 32 * half + l] >> (2 * shift)) & 3) as i8;
                q2 - (((b[l] >> m) & 1) ^ 1) as i8 * 4
            });
            let g = 8 * half + 2 * shift;
            let off = 4 + 128 * half + 32 * shift;
            isum += sc[g] * sum16(&a[..16], q, off);
            isum += sc[g + 1] * sum16(&a[16..], q, off + 16);
        }
    }
    (isum, 0)
}

/// As ggml's AVX2 kernel rounds: per lane `fma(d, sums, acc)`.
pub(super) fn dot_q3_k(x: &[u8], y: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (b, q) in x.as_chunks::<110>().0.iter().zip(y.as_chunks::<292>().0) {
        let d = q8k_d(q) * f16_at(b[108], b[109]);
        let sc = scales_q3_k(&scale_bytes::<96, 110>(b));
        let quant = |c: usize, l: usize| {
            let lo = ((b[32 + 32 * (c / 4) + l] >> (2 * (c % 4))) & 3) as i32;
            lo - 4 * (((b[l] >> c) & 1) ^ 1) as i32
        };
        let lanes = lanes8(q, quant, |g| sc[g]);
        for (a, &lane) in acc.iter_mut().zip(&lanes) {
            *a = d.mul_add(lane as f32, *a);
        }
    }
    hsum8(&acc)
}

/// Integer sums of one Q4_K block: (Σ scale·(quants·q8), Σ min·bsum), exact.
#[inline(always)]
pub(super) fn sums_q4_k(b: &[u8; 144], q: &[u8; 292]) -> (i32, i32) {
    let (sc, mn) = scale_min_k4(&scale_bytes::<4, 144>(b));
    let bsums = q8k_bsums(q);
    let mut summ = 0i32;
    for g in 0..16 {
        summ += bsums[g] * mn[g / 2] as i32;
    }
    let mut isum = 0i32;
    for c in 0..4 {
        let lo: [u8; 32] = std::array::from_fn(|l| b[16 + 32 * c + l] & 0x0F);
        let hi: [u8; 32] = std::array::from_fn(|l| b[16 + 32 * c + l] >> 4);
        isum += sc[2 * c] as i32 * sum32(&lo, q, 4 + 64 * c);
        isum += sc[2 * c + 1] as i32 * sum32(&hi, q, 4 + 64 * c + 32);
    }
    (isum, summ)
}

pub(super) fn dot_q4_k(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<144>().0.iter().zip(y.as_chunks::<292>().0) {
        let (isum, summ) = sums_q4_k(b, q);
        let dy = q8k_d(q);
        let d = f16_at(b[0], b[1]) * dy;
        let dmin = f16_at(b[2], b[3]) * dy;
        sumf += d * isum as f32 - dmin * summ as f32;
    }
    sumf
}

/// Integer sums of one Q5_K block: (Σ scale·(quants·q8), Σ min·bsum), exact.
#[inline(always)]
pub(super) fn sums_q5_k(b: &[u8; 176], q: &[u8; 292]) -> (i32, i32) {
    let (sc, mn) = scale_min_k4(&scale_bytes::<4, 176>(b));
    let bsums = q8k_bsums(q);
    let mut summ = 0i32;
    for g in 0..16 {
        summ += bsums[g] * mn[g / 2] as i32;
    }
    let mut isum = 0i32;
    for c in 0..4 {
        let lo: [u8; 32] = std::array::from_fn(|l| {
            (b[48 + 32 * c + l] & 0x0F) | (((b[16 + l] >> (2 * c)) & 1) << 4)
        });
        let hi: [u8; 32] = std::array::from_fn(|l| {
            (b[48 + 32 * c + l] >> 4) | (((b[16 + l] >> (2 * c + 1)) & 1) << 4)
        });
        isum += sc[2 * c] as i32 * sum32(&lo, q, 4 + 64 * c);
        isum += sc[2 * c + 1] as i32 * sum32(&hi, q, 4 + 64 * c + 32);
    }
    (isum, summ)
}

pub(super) fn dot_q5_k(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<176>().0.iter().zip(y.as_chunks::<292>().0) {
        let (isum, summ) = sums_q5_k(b, q);
        let dy = q8k_d(q);
        let d = f16_at(b[0], b[1]) * dy;
        let dmin = f16_at(b[2], b[3]) * dy;
        sumf += d * isum as f32 - dmin * summ as f32;
    }
    sumf
}

/// Integer sums of one Q6_K block: (Σ scale·((quants − 32)·q8), 0), exact.
#[inline(always)]
pub(super) fn sums_q6_k(b: &[u8; 210], q: &[u8; 292]) -> (i32, i32) {
    let a = unpack_q6_k(b);
    let mut isum = 0i32;
    for g in 0..QK_K / 16 {
        isum += (b[192 + g] as i8) as i32 * sum16(&a[16 * g..16 * g + 16], q, 4 + 16 * g);
    }
    (isum, 0)
}

pub(super) fn dot_q6_k(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (b, q) in x.as_chunks::<210>().0.iter().zip(y.as_chunks::<292>().0) {
        let (isum, _) = sums_q6_k(b, q);
        sumf += (f16_at(b[208], b[209]) * q8k_d(q)) * isum as f32;
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lanes8` against the definition, element by element into lane `l / 4` (group `2c + l / 16`).
    #[test]
    fn lanes8_matches_the_per_element_definition() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..50 {
            let q: [u8; 292] = std::array::from_fn(|_| next() as u8);
            let w: [i32; 256] = std::array::from_fn(|_| (next() % 8) as i32 - 4);
            let sc: [i32; 16] = std::array::from_fn(|_| (next() % 64) as i32 - 32);
            let mut want = [0i32; 8];
            for c in 0..8 {
                for l in 0..32 {
                    want[l / 4] +=
                        sc[2 * c + l / 16] * w[32 * c + l] * q[4 + 32 * c + l] as i8 as i32;
                }
            }
            assert_eq!(lanes8(&q, |c, l| w[32 * c + l], |g| sc[g]), want);
        }
    }
}
