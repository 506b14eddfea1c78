//! ROPE and ROPE_BACK (the inverse rotation, for gradients): NORMAL, NEOX, MROPE, IMROPE and VISION modes with freq_factors, YaRN and n_offs, for
//! f32/f16 tensors with any strides, following ggml's `rope_yarn` and its cos/sin cache (f32 thetas
//! advanced by repeated multiplication, exactly as ggml does).

use rayon::prelude::*;

use super::rows::{cmax, cmin, par_rows, src, want_type};
use super::{Dst, Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op, Tensor};

const NORMAL: i32 = 0;
const NEOX: i32 = 2;
const MROPE: i32 = 8;
const VISION: i32 = 24;
const IMROPE: i32 = 40;

/// The op parameters (B.7).
struct Params {
    n_dims: usize,
    mode: i32,
    n_ctx_orig: i32,
    freq_base: f32,
    freq_scale: f32,
    ext_factor: f32,
    attn_factor: f32,
    beta_fast: f32,
    beta_slow: f32,
    sections: [i32; 4],
    n_offs: usize,
}

impl Params {
    fn parse(t: &Tensor) -> Result<Self, String> {
        let [ne0, ..] = t.ne;
        let mode = t.param_i32(2);
        if ![NORMAL, NEOX, MROPE, VISION, IMROPE].contains(&mode) {
            return Err(format!("ROPE: mode {mode} is not supported"));
        }
        let n_dims = usize::try_from(t.param_i32(1))
            .map_err(|_| format!("ROPE: n_dims {} < 0", t.param_i32(1)))?;
        let n_offs = usize::try_from(t.param_i32(15))
            .map_err(|_| format!("ROPE: n_offs {} < 0", t.param_i32(15)))?;
        if n_dims % 2 != 0 || n_offs % 2 != 0 {
            return Err(format!(
                "ROPE: n_dims {n_dims} and n_offs {n_offs} must be even"
            ));
        }
        if n_offs + n_dims > ne0 {
            return Err(format!(
                "ROPE: n_offs {n_offs} + n_dims {n_dims} > ne0 {ne0}"
            ));
        }
        let sections = [
            t.param_i32(11),
            t.param_i32(12),
            t.param_i32(13),
            t.param_i32(14),
        ];
        if mode & MROPE != 0 {
            let sum = sections.iter().try_fold(0usize, |s, &x| {
                usize::try_from(x).ok().map(|x| s.saturating_add(x))
            });
            if !sections[..3].iter().any(|&s| s > 0) || sum.is_none_or(|s| s > ne0) {
                return Err(format!("ROPE: bad sections {sections:?} for ne0 {ne0}"));
            }
        }
        if mode == VISION && (n_dims != ne0 / 2 || n_offs != 0) {
            return Err(format!(
                "ROPE: vision needs n_dims = ne0/2 ({n_dims} vs {ne0}) and n_offs 0"
            ));
        }
        Ok(Params {
            n_dims,
            mode,
            n_ctx_orig: t.param_i32(4),
            freq_base: t.param_f32(5),
            freq_scale: t.param_f32(6),
            ext_factor: t.param_f32(7),
            attn_factor: t.param_f32(8),
            beta_fast: t.param_f32(9),
            beta_slow: t.param_f32(10),
            sections,
            n_offs,
        })
    }

    /// Length of the cos/sin cache a row uses (2 floats per rotated pair).
    fn cache_len(&self, ne0: usize) -> usize {
        if self.mode == VISION {
            ne0.div_ceil(2) * 2
        } else {
            self.n_dims
        }
    }

    /// Positions per token.
    fn pos_per_token(&self) -> usize {
        if self.mode & MROPE != 0 { 4 } else { 1 }
    }
}

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let t = &graph.tensors[node];
    let x = graph.src(node, 0).ok_or("missing source 0")?;
    let floats = [GgmlType::F32, GgmlType::F16];
    want_type("ROPE", x.typ, &floats)?;
    want_type("ROPE", t.typ, &floats)?;
    if x.ne != t.ne {
        return Err(format!("ROPE: shapes differ ({:?} vs {:?})", x.ne, t.ne));
    }
    let p = Params::parse(t)?;
    let pos = graph.src(node, 1).ok_or("ROPE: missing positions")?;
    want_type("ROPE positions", pos.typ, &[GgmlType::I32])?;
    let n_pos = t.ne[2].checked_mul(p.pos_per_token());
    if pos.ne[1..] != [1, 1, 1] || Some(pos.ne[0]) != n_pos {
        return Err(format!(
            "ROPE: positions {:?} for {} tokens",
            pos.ne, t.ne[2]
        ));
    }
    if let Some(ff) = graph.src(node, 2) {
        want_type("ROPE freq_factors", ff.typ, &[GgmlType::F32])?;
        if ff.ne[0] < p.cache_len(t.ne[0]) / 2 {
            return Err(format!(
                "ROPE: {} freq_factors, need {}",
                ff.ne[0],
                p.cache_len(t.ne[0]) / 2
            ));
        }
    }
    Ok(())
}

/// ggml_rope_yarn_corr_dims: the [low, high] pair range of the YaRN ramp.
fn corr_dims(p: &Params) -> [f32; 2] {
    let n_dims = p.n_dims as f32;
    let corr = |n_rot: f32| {
        n_dims * (p.n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln()
            / (2.0 * p.freq_base.ln())
    };
    let start = corr(p.beta_fast).floor();
    let end = corr(p.beta_slow).ceil();
    [cmax(0.0, start), cmin(n_dims - 1.0, end)]
}

/// rope_yarn: (cos, sin) of the YaRN-corrected angle for cache slot `i0`, scaled by the magnitude.
fn yarn(p: &Params, theta_extrap: f32, corr: [f32; 2], i0: usize) -> (f32, f32) {
    let theta_interp = p.freq_scale * theta_extrap;
    let mut theta = theta_interp;
    let mut mscale = p.attn_factor;
    if p.ext_factor != 0.0 {
        let y = ((i0 / 2) as f32 - corr[0]) / cmax(0.001, corr[1] - corr[0]);
        let ramp_mix = (1.0 - cmin(1.0, cmax(0.0, y))) * p.ext_factor;
        theta = theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix;
        mscale *= 1.0 + 0.1 * (1.0 / p.freq_scale).ln();
    }
    (theta.cos() * mscale, theta.sin() * mscale)
}

/// Fills the cos/sin cache for one token from its positions (`pos[k]` = stream t, h, w, e).
fn fill_cache(p: &Params, pos: [f32; 4], ff: &[f32], corr: [f32; 2], cache: &mut [f32]) {
    let theta_scale = p.freq_base.powf(-2.0 / p.n_dims as f32);
    let factor = |i: usize| ff.get(i).copied().unwrap_or(1.0);
    if p.mode & MROPE == 0 {
        let mut theta = pos[0];
        for (i, c) in cache.chunks_exact_mut(2).enumerate() {
            (c[0], c[1]) = yarn(p, theta / factor(i), corr, 2 * i);
            theta *= theta_scale;
        }
        return;
    }
    let s = p.sections.map(|x| x.max(0) as usize);
    let sect_dims = s.iter().sum::<usize>().max(1);
    let (sec_w, sec_e) = (s[0] + s[1], s[0] + s[1] + s[2]);
    let mut th = pos;
    for (i, c) in cache.chunks_exact_mut(2).enumerate() {
        let sector = i % sect_dims;
        if p.mode == VISION {
            // Independent sections: each restarts its theta.
            for (k, start) in [0, s[0], sec_w, sec_e].into_iter().enumerate() {
                if sector == start {
                    th[k] = pos[k];
                    break;
                }
            }
        }
        let stream = if p.mode == IMROPE {
            if sector % 3 == 1 && sector < 3 * s[1] {
                1
            } else if sector % 3 == 2 && sector < 3 * s[2] {
                2
            } else if sector % 3 == 0 && sector < 3 * s[0] {
                0
            } else {
                3
            }
        } else if sector >= s[0] && sector < sec_w {
            1
        } else if sector >= sec_w && sector < sec_e {
            2
        } else if sector >= sec_e {
            3
        } else {
            0
        };
        (c[0], c[1]) = yarn(p, th[stream] / factor(i), corr, 2 * i);
        th.iter_mut().for_each(|v| *v *= theta_scale);
    }
}

/// The cos/sin cache of a ROPE node (`t`, its op parameters): `cache_len` floats (cos, sin pairs) per
/// token i2, from the tokens' positions (`pos(k)`: entry k of the position tensor) and the freq
/// factors. The wgpu device computes it here too, so that both devices rotate by the same values.
pub fn cos_sin_cache(
    t: &Tensor,
    pos: impl Fn(usize) -> i32 + Sync,
    ff: &[f32],
) -> Result<Vec<f32>, DeviceError> {
    let p = Params::parse(t).map_err(|e| DeviceError::op("ROPE", e))?;
    let [ne0, _, ne2, _] = t.ne;
    let clen = p.cache_len(ne0);
    if !ff.is_empty() && ff.len() < clen / 2 {
        return Err(DeviceError::op("ROPE", "too few freq_factors"));
    }
    let corr = corr_dims(&p);
    let mut caches = vec![0f32; clen * ne2];
    if clen > 0 {
        caches
            .par_chunks_mut(clen)
            .enumerate()
            .for_each(|(i2, cache)| {
                let at = |k: usize| pos(i2 + k * ne2) as f32;
                let ps = if p.mode & MROPE != 0 {
                    [at(0), at(1), at(2), at(3)]
                } else {
                    [at(0); 4]
                };
                fill_cache(&p, ps, ff, corr, cache);
            });
    }
    Ok(caches)
}

pub fn run(srcs: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let t = dst.t;
    let p = Params::parse(t).map_err(|e| DeviceError::op("ROPE", e))?;
    let x = src(srcs, 0, "ROPE")?;
    let pos = src(srcs, 1, "ROPE")?;
    let [ne0, _, ne2, _] = t.ne;
    let clen = p.cache_len(ne0);
    let mut ff = Vec::new();
    if let Some(f) = srcs[2].as_ref() {
        ff = vec![0f32; clen / 2];
        for (i, v) in ff.iter_mut().enumerate() {
            *v = access::load(GgmlType::F32, f.data, i * f.t.nb[0]);
        }
    }
    if pos.t.ne[0] < ne2 * p.pos_per_token() {
        return Err(DeviceError::op("ROPE", "too few positions"));
    }
    let mut caches = cos_sin_cache(t, |k| access::load_i32(pos.data, k * pos.t.nb[0]), &ff)?;
    if t.op == Op::RopeBack {
        // ROPE_BACK rotates by the opposite angle: ggml's cache with sin_sign = -1.
        caches.iter_mut().skip(1).step_by(2).for_each(|s| *s = -*s);
    }
    let (n, offs) = (p.n_dims, p.n_offs);
    par_rows(t, dst.data, 4 * ne0, |r, y| {
        let (i1, i2, i3) = access::unravel_row(t, r);
        access::read_row(x.t, x.data, i1, i2, i3, y)?;
        // VISION pairs can share an element (odd ne0): rotate from an untouched copy, as ggml does.
        let orig = (p.mode == VISION).then(|| y.to_vec());
        let cache = &caches[i2 * clen..][..clen];
        // (first, second) element of the pair rotated with cache slot i.
        let pair = |i: usize| match p.mode {
            NORMAL => (offs + 2 * i, offs + 2 * i + 1),
            VISION => (i, i + n),
            _ => (offs + i, offs + i + n / 2),
        };
        for (i, cs) in cache.chunks_exact(2).enumerate() {
            let (a, b) = pair(i);
            let (x0, x1) = match &orig {
                Some(o) => (o[a], o[b]),
                None => (y[a], y[b]),
            };
            y[a] = x0.mul_add(cs[0], -(x1 * cs[1]));
            y[b] = x0.mul_add(cs[1], x1 * cs[0]);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests;
