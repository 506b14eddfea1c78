//! Small shape and generator ops on F32: PAD_REFLECT_1D, ROLL, ARANGE, TIMESTEP_EMBEDDING.

use super::elementwise::rows::{ensure, map_rows, read_row, shape, src_at, src_of};
use super::spatial::{ensure_params_at_least, ensure_types};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op};

use GgmlType::F32;

/// ARANGE's element count as ggml computes it (`ceilf` of an f32 quotient).
fn arange_steps(start: f32, stop: f32, step: f32) -> f32 {
    ((stop - start) / step).ceil()
}

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    if d.op == Op::Arange {
        ensure_types(d, d.typ == F32, &[])?;
        let (start, stop, step) = (d.param_f32(0), d.param_f32(1), d.param_f32(2));
        let steps = arange_steps(start, stop, step);
        return ensure(steps as i64 == d.nelements() as i64, || {
            format!("{op}: {start}..{stop} by {step} is not {} values", shape(d))
        });
    }
    let a = src_of(graph, node, 0)?;
    ensure_types(d, a.typ == F32 && d.typ == F32, &[a])?;
    match d.op {
        Op::PadReflect1d => {
            ensure_params_at_least(d, &[0, 1], 0)?;
            let (p0, p1) = (d.param_i32(0) as usize, d.param_i32(1) as usize);
            ensure(p0 < a.ne[0] && p1 < a.ne[0], || {
                format!("{op}: padding {p0}, {p1} not shorter than {}", shape(a))
            })?;
            ensure(
                d.ne[0] == a.ne[0] + p0 + p1 && d.ne[1..] == a.ne[1..],
                || {
                    format!(
                        "{op}: {} padded by {p0}, {p1} is not {}",
                        shape(a),
                        shape(d)
                    )
                },
            )
        }
        Op::Roll => {
            ensure(d.ne == a.ne, || {
                format!("{op}: {} and {} differ", shape(a), shape(d))
            })?;
            ensure(
                (0..4).all(|k| (d.param_i32(k).unsigned_abs() as usize) < a.ne[k].max(1)),
                || format!("{op}: a shift is not shorter than its dim of {}", shape(a)),
            )
        }
        Op::TimestepEmbedding => {
            ensure_params_at_least(d, &[0], 0)?;
            let dim = d.param_i32(0) as usize;
            ensure(d.ne == [dim, a.ne[0], 1, 1], || {
                format!("{op}: {} is not {dim} x {}", shape(d), shape(a))
            })
        }
        _ => Err(format!("{op} is not a generator op")),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    match dst.t.op {
        Op::Arange => arange(dst),
        Op::PadReflect1d => pad_reflect_1d(src_at(src, 0, op)?, dst),
        Op::Roll => roll(src_at(src, 0, op)?, dst),
        Op::TimestepEmbedding => timestep_embedding(src_at(src, 0, op)?, dst),
        _ => Err(DeviceError::op(op, "not a generator op")),
    }
}

fn arange(dst: Dst<'_>) -> Result<(), DeviceError> {
    let (start, step) = (dst.t.param_f32(0), dst.t.param_f32(2));
    let ne0 = dst.t.ne[0];
    map_rows(
        dst,
        || (),
        |_, r, _, out| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = start + step * (r * ne0 + i) as f32;
            }
            Ok(())
        },
    )
}

/// The row copied to `[p0, p0 + n)`, mirrored about its first and last element into the margins.
fn pad_reflect_1d(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let p0 = dst.t.param_i32(0) as usize;
    let n = a.t.ne[0];
    map_rows(
        dst,
        || (),
        |_, _, idx, out| {
            read_row(a, idx, &mut out[p0..p0 + n])?;
            for i in 1..=p0 {
                out[p0 - i] = out[p0 + i];
            }
            let last = p0 + n - 1;
            for i in 1..out.len() - last {
                out[last + i] = out[last - i];
            }
            Ok(())
        },
    )
}

/// `dst[i] = src[(i - shift) mod ne]` along every dim.
fn roll(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let ne = a.t.ne;
    let shift: [i64; 4] = std::array::from_fn(|k| i64::from(dst.t.param_i32(k)));
    let from = move |k: usize, i: usize| (i as i64 - shift[k]).rem_euclid(ne[k] as i64) as usize;
    map_rows(
        dst,
        || vec![0f32; ne[0]],
        |row, _, [i1, i2, i3], out| {
            read_row(a, [from(1, i1), from(2, i2), from(3, i3)], row)?;
            for (i0, o) in out.iter_mut().enumerate() {
                *o = row[from(0, i0)];
            }
            Ok(())
        },
    )
}

/// Row `i` holds `cos(t_i f_j)` then `sin(t_i f_j)` with `f_j = exp(-ln(max_period) j / half)`, and a
/// trailing 0 when `dim` is odd.
fn timestep_embedding(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let dim = dst.t.param_i32(0) as usize;
    let max_period = dst.t.param_i32(1) as f32;
    let half = dim / 2;
    let mut ts = vec![0f32; a.t.ne[0]];
    read_row(a, [0, 0, 0], &mut ts)?;
    map_rows(
        dst,
        || (),
        |_, _, [i, _, _], out| {
            for j in 0..half {
                let freq = (-max_period.ln() * j as f32 / half as f32).exp();
                let arg = ts[i] * freq;
                out[j] = arg.cos();
                out[j + half] = arg.sin();
            }
            if !dim.is_multiple_of(2) {
                out[2 * half] = 0.0;
            }
            Ok(())
        },
    )
}

#[cfg(test)]
#[path = "misc_gen_tests.rs"]
mod tests;
