//! POOL_1D, POOL_2D and POOL_2D_BACK as ggml-cpu computes them. The two forward ops differ in their
//! averages: 1-D divides by the taps inside the input, 2-D by the whole window `k0*k1`. Windows that
//! miss the input give 0 (average) or -FLT_MAX (max).

use super::elementwise::rows::{ensure, map_rows, shape, src_at, src_of};
use super::spatial::{Vol, ensure_params_at_least, ensure_types, is_float, param};
use super::{Dst, Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op, Tensor};

use GgmlType::{F16, F32};

/// `ggml_op_pool`.
const POOL_MAX: i32 = 0;
const POOL_AVG: i32 = 1;

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let a = src_of(graph, node, 0)?;
    let kind = d.param_i32(0);
    ensure(kind == POOL_MAX || kind == POOL_AVG, || {
        format!("{op}: unknown pool type {kind}")
    })?;
    match d.op {
        Op::Pool1d => {
            ensure_types(d, matches!(a.typ, F32 | F16) && d.typ == F32, &[a])?;
            ensure_params_at_least(d, &[2], 1)?;
            ensure(d.ne[1..] == a.ne[1..], || {
                format!("{op}: {} does not pool {}", shape(d), shape(a))
            })
        }
        Op::Pool2d => {
            ensure_types(d, matches!(a.typ, F32 | F16) && d.typ == F32, &[a])?;
            ensure_params_at_least(d, &[3, 4], 1)?;
            ensure(d.ne[2..] == a.ne[2..], || {
                format!("{op}: {} does not pool {}", shape(d), shape(a))
            })
        }
        Op::Pool2dBack => {
            let af = src_of(graph, node, 1)?;
            ensure_types(
                d,
                a.typ == F32 && is_float(af.typ) && matches!(d.typ, F32 | F16),
                &[a, af],
            )?;
            ensure_params_at_least(d, &[3, 4], 1)?;
            ensure(d.ne == af.ne && a.ne[2..] == d.ne[2..], || {
                format!(
                    "{op}: gradient {} and input {} do not fit {}",
                    shape(a),
                    shape(af),
                    shape(d)
                )
            })
        }
        _ => Err(format!("{op} is not a pooling op")),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let a = src_at(src, 0, op)?;
    match dst.t.op {
        Op::Pool1d => pool_1d(a, dst),
        Op::Pool2d => pool_2d(a, dst),
        Op::Pool2dBack => pool_2d_back(a, src_at(src, 1, op)?, dst),
        _ => Err(DeviceError::op(op, "not a pooling op")),
    }
}

/// `std::max(v, res)` as ggml writes it: a NaN `v` wins, a NaN `res` loses to the next value.
#[inline]
fn cpp_max(v: f32, res: f32) -> f32 {
    if v < res { res } else { v }
}

/// Window parameters `(k, s, p)` along one dim, from op_params `k_at`, `s_at`, `p_at`.
fn window(t: &Tensor, k_at: usize, s_at: usize, p_at: usize) -> (i64, i64, i64) {
    (param(t, k_at), param(t, s_at), param(t, p_at))
}

fn pool_1d(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let max = dst.t.param_i32(0) == POOL_MAX;
    let (k, s, p) = window(dst.t, 1, 2, 3);
    let x = Vol::read(a)?;
    let iw = x.ne[0] as i64;
    map_rows(
        dst,
        || (),
        |_, _, [i1, i2, i3], out| {
            let row = x.row(i1, i2, i3);
            for (ow, o) in out.iter_mut().enumerate() {
                let base = ow as i64 * s - p;
                let mut res = if max { -f32::MAX } else { 0.0 };
                let mut count = 0;
                for j in (base..base + k).filter(|j| (0..iw).contains(j)) {
                    let v = row[j as usize];
                    res = if max { cpp_max(v, res) } else { res + v };
                    count += 1;
                }
                *o = match (max, count) {
                    (true, _) => res,
                    (false, 0) => 0.0,
                    (false, c) => res / c as f32,
                };
            }
            Ok(())
        },
    )
}

fn pool_2d(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let max = dst.t.param_i32(0) == POOL_MAX;
    let (k0, s0, p0) = window(dst.t, 1, 3, 5);
    let (k1, s1, p1) = window(dst.t, 2, 4, 6);
    let area = (k0 * k1) as f32;
    let x = Vol::read(a)?;
    let (iw, ih) = (x.ne[0] as i64, x.ne[1] as i64);
    map_rows(
        dst,
        || (),
        |_, _, [oy, i2, i3], out| {
            let iy = oy as i64 * s1 - p1;
            for (ox, o) in out.iter_mut().enumerate() {
                let ix = ox as i64 * s0 - p0;
                let mut res = if max { -f32::MAX } else { 0.0 };
                for y in (iy..iy + k1).filter(|y| (0..ih).contains(y)) {
                    let row = x.row(y as usize, i2, i3);
                    for xx in (ix..ix + k0).filter(|xx| (0..iw).contains(xx)) {
                        let v = row[xx as usize];
                        res = if max { cpp_max(v, res) } else { res + v };
                    }
                }
                *o = if max { res } else { res / area };
            }
            Ok(())
        },
    )
}

/// Gradient of POOL_2D: each output gradient goes to the window's first maximum of the forward input
/// (max), or is spread as `grad / (k0*k1)` over the window's taps inside the input (average).
fn pool_2d_back(g: &Src<'_>, af: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let max = dst.t.param_i32(0) == POOL_MAX;
    let (k0, s0, p0) = window(dst.t, 1, 3, 5);
    let (k1, s1, p1) = window(dst.t, 2, 4, 6);
    let area = (k0 * k1) as f32;
    let grad = Vol::read(g)?;
    let fwd = Vol::read(af)?;
    let [w, h, c, n] = dst.t.ne;
    let (wi, hi) = (w as i64, h as i64);
    let f16_dst = dst.t.typ == F16;
    let mut out = vec![0f32; dst.t.nelements()];
    let plane = w * h;
    for i3 in 0..n {
        for i2 in 0..c {
            let base = (i3 * c + i2) * plane;
            let dplane = &mut out[base..base + plane];
            for oy in 0..grad.ne[1] {
                for ox in 0..grad.ne[0] {
                    let g0 = grad.at(ox, oy, i2, i3);
                    let (ix, iy) = (ox as i64 * s0 - p0, oy as i64 * s1 - p1);
                    let taps = (iy..iy + k1).filter(|y| (0..hi).contains(y)).flat_map(|y| {
                        (ix..ix + k0)
                            .filter(|x| (0..wi).contains(x))
                            .map(move |x| y as usize * w + x as usize)
                    });
                    if max {
                        // ggml's scan: start at -FLT_MAX, take any value not `<=` the best so far.
                        let (mut best, mut pick) = (-f32::MAX, None);
                        for at in taps {
                            let v = fwd.at(at % w, at / w, i2, i3);
                            if v > best || v.is_nan() || best.is_nan() {
                                (best, pick) = (v, Some(at));
                            }
                        }
                        if let Some(at) = pick {
                            dplane[at] = accumulate(dplane[at], g0, f16_dst);
                        }
                    } else {
                        let gv = g0 / area;
                        for at in taps {
                            dplane[at] = accumulate(dplane[at], gv, f16_dst);
                        }
                    }
                }
            }
        }
    }
    access::write_all(dst.t, dst.data, &out)
}

/// `acc + v`, rounded to f16 after every addition when the destination is F16 (as ggml accumulates
/// in the destination itself).
#[inline]
fn accumulate(acc: f32, v: f32, f16_dst: bool) -> f32 {
    if f16_dst {
        half::f16::from_f32(acc + v).to_f32()
    } else {
        acc + v
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
