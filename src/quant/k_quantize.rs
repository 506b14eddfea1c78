//! ggml's reference quantizers for the K-quants (`quantize_row_q{2..6}_K_ref`) and IQ4_XS
//! (`quantize_iq4_xs` without importance weights): ggml-cpu's `from_float` for these types, i.e.
//! what CPY and SET_ROWS store. ggml-base is built without FMA, so every expression below keeps
//! ggml's operation order and plain f32 rounding (no `mul_add`), which makes the blocks
//! bit-identical.

use super::iq4::{KVALUES as IQ4_VALUES, best_index as iq4_index};
use super::q8::QK_K;
use super::{f16_at, f16_bytes};

const GROUP_MAX_EPS: f32 = 1e-15;

/// `nearest_int`: round half to even through the 1.5·2^23 trick (valid for |v| < 2^22).
#[inline(always)]
fn nearest_int(v: f32) -> i32 {
    ((v + 12_582_912.0).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

fn f16_round(v: f32) -> f32 {
    let b = f16_bytes(v);
    f16_at(b[0], b[1])
}

/// The value of largest magnitude (the first one) and that magnitude.
fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

/// `make_qx_quants` with `rmse_type = 1` and no importance weights (Q6_K): the best of 19 scales
/// around `−nmax/max` by weighted (x²) least squares. `l` gets codes in 0..2·nmax.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (amax, max) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let q = quant(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (o, &v) in l.iter_mut().zip(x) {
        *o = (quant(iscale, v) + nmax) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (o, &v) in l.iter_mut().zip(x) {
                *o = (quant(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `make_q3_quants` with `do_rmse` (Q3_K): start from `−nmax/max`, then up to 5 passes of
/// coordinate descent on the weighted (x²) error. `l` gets codes in 0..2·nmax.
fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (amax, max) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (o, &v) in l.iter_mut().zip(x) {
        let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *o = q as i8;
        let w = v * v;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (o, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            let cur = *o as f32;
            let mut slx = sumlx - w * v * cur;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * cur * cur;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *o as i32 {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *o = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for o in l.iter_mut() {
        *o += nmax as i8;
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// `make_qkx2_quants`: scale and min (returned as `(scale, −min)`) for codes 0..=nmax, the best of
/// `nstep + 1` weighted least-squares fits (absolute or squared error).
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        l[i] = nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as u8;
        best_error += weights[i] * err(scale * l[i] as f32 + min - x[i]);
    }
    let mut aux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = q as u8;
            let (w, q) = (weights[i], q as f32);
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                cur_error += weights[i] * err(this_scale * aux[i] as f32 + this_min - x[i]);
            }
            if cur_error < best_error {
                l.copy_from_slice(&aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Packs 2-bit codes: byte `j/4 + l` of each 128-element half holds elements `j + l + 32k` at bits 2k.
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for i in 0..32 {
            qs[j / 4 + i] =
                l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
        }
    }
}

/// `quantize_row_q2_K_ref` (84 B: scales[16] (scale | min << 4), qs[64], d, dmin).
pub(super) fn quant_q2_k(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK_K>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<84>().0)
    {
        let mut l = [0u8; QK_K];
        let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
        let (mut max_scale, mut max_min) = (0f32, 0f32);
        for j in 0..16 {
            let xs = &x[16 * j..16 * j + 16];
            let w: [f32; 16] = std::array::from_fn(|i| xs[i].abs());
            let (s, m) =
                make_qkx2_quants(3, xs, &w, &mut l[16 * j..16 * j + 16], -0.5, 0.1, 15, true);
            (scales[j], mins[j]) = (s, m);
            max_scale = if s > max_scale { s } else { max_scale };
            max_min = if m > max_min { m } else { max_min };
        }
        let sc = &mut b[0..16];
        sc.fill(0);
        let mut d = 0f32;
        if max_scale > 0.0 {
            let iscale = 15.0 / max_scale;
            for j in 0..16 {
                sc[j] = nearest_int(iscale * scales[j]) as u8;
            }
            d = max_scale / 15.0;
        }
        let mut dmin = 0f32;
        if max_min > 0.0 {
            let iscale = 15.0 / max_min;
            for j in 0..16 {
                sc[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
            dmin = max_min / 15.0;
        }
        let (d, dmin) = (f16_round(d), f16_round(dmin));
        for j in 0..16 {
            let dj = d * (sc[j] & 0xF) as f32;
            if dj == 0.0 {
                continue;
            }
            let dm = dmin * (sc[j] >> 4) as f32;
            for i in 0..16 {
                l[16 * j + i] = nearest_int((x[16 * j + i] + dm) / dj).clamp(0, 3) as u8;
            }
        }
        pack_2bit(&l, &mut b[16..80]);
        b[80..82].copy_from_slice(&f16_bytes(d));
        b[82..84].copy_from_slice(&f16_bytes(dmin));
    }
}

/// `quantize_row_q3_K_ref` (110 B: hmask[32], qs[64], scales[12] (6-bit, packed), d).
pub(super) fn quant_q3_k(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK_K>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<110>().0)
    {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; 16];
        let (mut amax, mut max_scale) = (0f32, 0f32);
        for j in 0..16 {
            scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        let mut sc = [0u8; 12];
        let mut d = 0f32;
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for j in 0..16 {
                let q = ((nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    sc[j] = q & 0xF;
                } else {
                    sc[j - 8] |= (q & 0xF) << 4;
                }
                sc[j % 4 + 8] |= (q >> 4) << (2 * (j / 4));
            }
            d = 1.0 / iscale;
        }
        let d = f16_round(d);
        for j in 0..16 {
            let lo = if j < 8 { sc[j] & 0xF } else { sc[j - 8] >> 4 };
            let s = (lo | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i32 - 32;
            let dj = d * s as f32;
            if dj == 0.0 {
                continue;
            }
            for i in 0..16 {
                l[16 * j + i] = (nearest_int(x[16 * j + i] / dj).clamp(-4, 3) + 4) as i8;
            }
        }
        let mut codes = [0u8; QK_K];
        let hmask = &mut b[0..32];
        hmask.fill(0);
        for (j, (&q, c)) in l.iter().zip(codes.iter_mut()).enumerate() {
            *c = q as u8;
            if q > 3 {
                hmask[j % 32] |= 1 << (j / 32);
                *c -= 4;
            }
        }
        pack_2bit(&codes, &mut b[32..96]);
        b[96..108].copy_from_slice(&sc);
        b[108..110].copy_from_slice(&f16_bytes(d));
    }
}

/// Scales and mins (6 bits each) of the eight 32-element sub-blocks of Q4_K/Q5_K: fits each with
/// `make_qkx2_quants`, packs them into `sc` (`get_scale_min_k4` layout), returns the 256 codes and
/// the f16-rounded `d`, `dmin`.
fn k4_scales(
    x: &[f32; QK_K],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    sc: &mut [u8; 12],
) -> ([u8; QK_K], f32, f32) {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let w: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let (s, m) = make_qkx2_quants(
            nmax,
            xs,
            &w,
            &mut l[32 * j..32 * j + 32],
            rmin,
            0.1,
            nstep,
            false,
        );
        (scales[j], mins[j]) = (s, m);
        max_scale = if s > max_scale { s } else { max_scale };
        max_min = if m > max_min { m } else { max_min };
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    sc.fill(0);
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    let (d, dmin) = (f16_round(max_scale / 63.0), f16_round(max_min / 63.0));
    let (s, m) = super::k_quants::scale_min_k4(sc);
    for j in 0..8 {
        let dj = d * s[j] as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin * m[j] as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (l, d, dmin)
}

/// `quantize_row_q4_K_ref` (144 B: d, dmin, scales[12], qs[128]).
pub(super) fn quant_q4_k(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK_K>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<144>().0)
    {
        let mut sc = [0u8; 12];
        let (l, d, dmin) = k4_scales(x, 15, -1.0, 20, &mut sc);
        b[0..2].copy_from_slice(&f16_bytes(d));
        b[2..4].copy_from_slice(&f16_bytes(dmin));
        b[4..16].copy_from_slice(&sc);
        for (k, j) in (0..QK_K).step_by(64).enumerate() {
            for i in 0..32 {
                b[16 + 32 * k + i] = l[j + i] | (l[j + i + 32] << 4);
            }
        }
    }
}

/// `quantize_row_q5_K_ref` (176 B: d, dmin, scales[12], qh[32], qs[128]).
pub(super) fn quant_q5_k(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK_K>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<176>().0)
    {
        let mut sc = [0u8; 12];
        let (l, d, dmin) = k4_scales(x, 31, -0.5, 15, &mut sc);
        b[0..2].copy_from_slice(&f16_bytes(d));
        b[2..4].copy_from_slice(&f16_bytes(dmin));
        b[4..16].copy_from_slice(&sc);
        b[16..48].fill(0);
        for (k, n) in (0..QK_K).step_by(64).enumerate() {
            for j in 0..32 {
                let (mut l1, mut l2) = (l[n + j], l[n + j + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    b[16 + j] |= 1 << (2 * k);
                }
                if l2 > 15 {
                    l2 -= 16;
                    b[16 + j] |= 2 << (2 * k);
                }
                b[48 + 32 * k + j] = l1 | (l2 << 4);
            }
        }
    }
}

/// `quantize_row_q6_K_ref` (210 B: ql[128], qh[64], scales[16] i8, d).
pub(super) fn quant_q6_k(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .as_chunks::<QK_K>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<210>().0)
    {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; 16];
        let (mut max_abs, mut max_scale) = (0f32, 0f32);
        for ib in 0..16 {
            scales[ib] =
                make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
            if scales[ib].abs() > max_abs {
                max_abs = scales[ib].abs();
                max_scale = scales[ib];
            }
        }
        b.fill(0);
        if max_abs < GROUP_MAX_EPS {
            continue;
        }
        let iscale = -128.0 / max_scale;
        let d = f16_round(1.0 / iscale);
        for ib in 0..16 {
            b[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
        }
        for j in 0..16 {
            let dj = d * b[192 + j] as i8 as f32;
            if dj == 0.0 {
                continue;
            }
            for i in 0..16 {
                l[16 * j + i] = (nearest_int(x[16 * j + i] / dj).clamp(-32, 31) + 32) as i8;
            }
        }
        for (k, j) in (0..QK_K).step_by(128).enumerate() {
            let (ql, qh) = (64 * k, 128 + 32 * k);
            for i in 0..32 {
                let q = |o: usize| l[j + i + o] as u8;
                b[ql + i] = (q(0) & 0xF) | ((q(64) & 0xF) << 4);
                b[ql + 32 + i] = (q(32) & 0xF) | ((q(96) & 0xF) << 4);
                b[qh + i] =
                    (q(0) >> 4) | ((q(32) >> 4) << 2) | ((q(64) >> 4) << 4) | ((q(96) >> 4) << 6);
            }
        }
        b[208..210].copy_from_slice(&f16_bytes(d));
    }
}

/// Weighted (x²) least-squares scale of the IQ4 values picked at inverse scale `id`.
fn iq4_fit(xb: &[f32], id: f32) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0f32, 0f32);
    for &v in xb {
        let q = IQ4_VALUES[iq4_index(&IQ4_VALUES, id * v)] as f32;
        let w = v * v;
        sumqx += w * q * v;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// `quantize_iq4_xs` without importance weights (`quantize_row_iq4_nl_impl` with 8 blocks of 32
/// and `ntry = 7`). Layout (136 B): d f16, scales_h u16, scales_l[4], qs[128].
pub(super) fn quant_iq4_xs(src: &[f32], dst: &mut [u8]) {
    let v0 = IQ4_VALUES[0] as f32;
    for (x, b) in src
        .as_chunks::<QK_K>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<136>().0)
    {
        let mut scales = [0f32; 8];
        let (mut amax_scale, mut max_scale) = (0f32, 0f32);
        for ib in 0..8 {
            let xb = &x[32 * ib..32 * ib + 32];
            let (amax, max) = signed_max(xb);
            if amax < GROUP_MAX_EPS {
                continue;
            }
            let (sumqx, sumq2) = iq4_fit(xb, 1.0 / (-max / v0));
            let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
            let mut best = d * sumqx;
            for itry in -7..=7 {
                let (sumqx, sumq2) = iq4_fit(xb, (itry as f32 + v0) / max);
                if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
            scales[ib] = d;
            if d.abs() > amax_scale {
                amax_scale = d.abs();
                max_scale = d;
            }
        }
        let d = -max_scale / 32.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut l = [0u8; QK_K];
        let (mut scales_h, mut scales_l) = (0u16, [0u8; 4]);
        for ib in 0..8 {
            let ls = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * ls as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for j in 0..32 {
                l[32 * ib + j] = iq4_index(&IQ4_VALUES, idl * x[32 * ib + j]) as u8;
            }
            let q = (ls + 32) as u8;
            scales_l[ib / 2] |= (q & 0xF) << (4 * (ib % 2));
            scales_h |= ((q >> 4) as u16) << (2 * ib);
        }
        b[0..2].copy_from_slice(&f16_bytes(d));
        b[2..4].copy_from_slice(&scales_h.to_le_bytes());
        b[4..8].copy_from_slice(&scales_l);
        for i in 0..8 {
            for j in 0..16 {
                b[8 + 16 * i + j] = l[32 * i + j] | (l[32 * i + 16 + j] << 4);
            }
        }
    }
}
