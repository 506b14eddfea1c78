//! Backward ops of the training graph: SILU_BACK, RMS_NORM_BACK, SOFT_MAX_BACK, REPEAT_BACK and
//! GET_ROWS_BACK, with ggml-cpu's arithmetic (f32 math, f64 `ggml_float` sums where it uses them, the
//! same accumulation order for REPEAT_BACK and GET_ROWS_BACK).
//!
//! Where ggml's kernel addresses memory its own way it is followed: SILU_BACK steps rows by nb[1]
//! alone with packed elements; GET_ROWS_BACK reads its row ids as packed i32 and gradient rows at
//! i*nb[1]. Every such read is bounds-checked.

use super::elementwise::rows::{ensure, map_rows, read_row, shape, src_at, src_of};
use super::{Dst, Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op, Tensor};

use GgmlType::{F16, F32, I32};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    if d.op == Op::RepeatBack {
        return check_repeat_back(graph, node);
    }
    let a = src_of(graph, node, 0)?;
    let b = src_of(graph, node, 1)?;
    let types = |ok: bool| {
        ensure(ok, || {
            format!(
                "{op}: unsupported types {} {} -> {}",
                a.typ.name(),
                b.typ.name(),
                d.typ.name()
            )
        })
    };
    let shapes = |ok: bool| {
        ensure(ok, || {
            format!("{op}: bad shapes {} {} -> {}", shape(a), shape(b), shape(d))
        })
    };
    match d.op {
        Op::SiluBack => {
            types(matches!(a.typ, F32 | F16) && b.typ == a.typ && d.typ == a.typ)?;
            shapes(a.ne == d.ne && b.ne == d.ne)
        }
        Op::RmsNormBack => {
            types(a.typ == F32 && b.typ == F32 && d.typ == F32)?;
            shapes(a.ne == d.ne && b.ne == d.ne)?;
            // GGML_ASSERTs of the kernel.
            ensure(a.nb[0] == 4 && b.nb[0] == 4, || {
                format!("{op}: rows must be packed")
            })
        }
        Op::SoftMaxBack => {
            types(a.typ == F32 && b.typ == F32 && d.typ == F32)?;
            shapes(a.ne == d.ne && b.ne == d.ne)?;
            // supports_op refuses ALiBi.
            let max_bias = d.param_f32(1);
            ensure(max_bias == 0.0, || {
                format!("{op}: max_bias {max_bias} is not supported")
            })
        }
        Op::GetRowsBack => {
            types(matches!(a.typ, F32 | F16) && b.typ == I32 && d.typ == F32)?;
            shapes(d.ne[0] == a.ne[0] && d.ne[2] == 1 && d.ne[3] == 1)?;
            ensure(d.is_contiguous(), || {
                format!("{op}: dst must be contiguous")
            })?;
            ensure(a.nb[0] == a.typ.type_size(), || {
                format!("{op}: gradient rows must be packed")
            })
        }
        _ => Err(format!("{op} is not a backward op")),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let a = src_at(src, 0, op)?;
    match dst.t.op {
        Op::SiluBack => silu_back(a, src_at(src, 1, op)?, dst),
        Op::RmsNormBack => rms_norm_back(a, src_at(src, 1, op)?, dst),
        Op::SoftMaxBack => soft_max_back(a, src_at(src, 1, op)?, dst),
        Op::RepeatBack => repeat_back(a, dst),
        Op::GetRowsBack => get_rows_back(a, src_at(src, 1, op)?, dst),
        _ => Err(DeviceError::op(op, "not a backward op")),
    }
}

/// REPEAT_BACK has one source, so it is checked on its own.
fn check_repeat_back(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let a = src_of(graph, node, 0)?;
    ensure(a.typ == F32 && d.typ == F32, || {
        format!(
            "{op}: unsupported types {} -> {}",
            a.typ.name(),
            d.typ.name()
        )
    })?;
    ensure(super::elementwise::can_repeat(d, a), || {
        format!("{op}: {} is not a repeat of {}", shape(a), shape(d))
    })?;
    // GGML_ASSERTs of the kernel (the sums read packed runs of ne0 floats).
    ensure(a.nb[0] == 4 && d.nb[0] == 4, || {
        format!("{op}: rows must be packed")
    })
}

/// The `n` packed elements of `t` (f32 or f16) at byte `off`, as f32.
fn packed_row(
    t: &Tensor,
    data: &[u8],
    off: usize,
    out: &mut [f32],
    op: &'static str,
) -> Result<(), DeviceError> {
    let ts = t.typ.type_size();
    let bytes = data
        .get(off..off + ts * out.len())
        .ok_or_else(|| DeviceError::op(op, "row outside its tensor"))?;
    for (i, o) in out.iter_mut().enumerate() {
        *o = access::load(t.typ, bytes, i * ts);
    }
    Ok(())
}

/// `dx = dy * s * (1 + x * (1 - s))`, `s = sigmoid(x)`; dy is source 0, x source 1. Row r of every
/// tensor starts at r*nb[1], as ggml steps them.
fn silu_back(dy: &Src<'_>, x: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let t = dst.t;
    let (n, nrows) = (t.ne[0], x.t.nrows());
    if t.nelements() == 0 {
        return Ok(());
    }
    let ts = t.typ.type_size();
    let (mut xs, mut dys) = (vec![0f32; n], vec![0f32; n]);
    for r in 0..nrows {
        packed_row(x.t, x.data, r * x.t.nb[1], &mut xs, op)?;
        packed_row(dy.t, dy.data, r * dy.t.nb[1], &mut dys, op)?;
        let off = r * t.nb[1];
        let out = dst
            .data
            .get_mut(off..off + ts * n)
            .ok_or_else(|| DeviceError::op(op, "row outside destination"))?;
        for (i, (&x, &dy)) in xs.iter().zip(&dys).enumerate() {
            let s = 1.0 / (1.0 + (-x).exp());
            access::store(t.typ, out, i * ts, dy * s * (1.0 + x * (1.0 - s)));
        }
    }
    Ok(())
}

/// ggml's closed form: `dx = (dz + x * (-sum(x*dz) / (sum(x*x) + eps*n))) / sqrt(mean(x*x) + eps)`;
/// dz is source 0, x source 1.
fn rms_norm_back(dz: &Src<'_>, x: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let eps = dst.t.param_f32(0);
    let n = dst.t.ne[0];
    map_rows(
        dst,
        || vec![0f32; n],
        move |xs, _, idx, out| {
            read_row(dz, idx, out)?;
            read_row(x, idx, xs)?;
            let (mut sum_xx, mut sum_xdz) = (0f64, 0f64);
            for (&x, &dz) in xs.iter().zip(out.iter()) {
                sum_xx += f64::from(x * x);
                sum_xdz += f64::from(x * dz);
            }
            let mean_eps = sum_xx as f32 / n as f32 + eps;
            let sum_eps = sum_xx as f32 + eps * n as f32;
            let rrms = 1.0 / mean_eps.sqrt();
            let scale_x = (-sum_xdz) as f32 / sum_eps;
            for (o, &x) in out.iter_mut().zip(xs.iter()) {
                *o = (*o + x * scale_x) * rrms;
            }
            Ok(())
        },
    )
}

/// `dx = scale * y * (dy - dot(y, dy))`; dy is source 0, y (the softmax output) source 1.
fn soft_max_back(dy: &Src<'_>, y: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let scale = dst.t.param_f32(0);
    let n = dst.t.ne[0];
    map_rows(
        dst,
        || vec![0f32; n],
        move |ys, _, idx, out| {
            read_row(dy, idx, out)?;
            read_row(y, idx, ys)?;
            let dot = ys
                .iter()
                .zip(out.iter())
                .map(|(&a, &b)| f64::from(a * b))
                .sum::<f64>() as f32;
            for (o, &yv) in out.iter_mut().zip(ys.iter()) {
                *o = (*o - dot) * yv * scale;
            }
            Ok(())
        },
    )
}

/// Sums every repetition of dst's shape in the source, in ggml's order (repeat i3, i2, i1, i0).
fn repeat_back(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let ne = dst.t.ne;
    let na = a.t.ne;
    let nr: [usize; 4] = std::array::from_fn(|d| na[d].checked_div(ne[d]).unwrap_or(0));
    map_rows(
        dst,
        || vec![0f32; na[0]],
        move |buf, _, [k1, k2, k3], out| {
            out.fill(0.0);
            for i3 in 0..nr[3] {
                for i2 in 0..nr[2] {
                    for i1 in 0..nr[1] {
                        read_row(a, [i1 * ne[1] + k1, i2 * ne[2] + k2, i3 * ne[3] + k3], buf)?;
                        for i0 in 0..nr[0] {
                            let part = &buf[i0 * ne[0]..(i0 + 1) * ne[0]];
                            out.iter_mut().zip(part).for_each(|(o, &v)| *o += v);
                        }
                    }
                }
            }
            Ok(())
        },
    )
}

/// dst row r (zeroed first) accumulates every gradient row i whose id is r, in order of i.
fn get_rows_back(grad: &Src<'_>, ids: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let t = dst.t;
    let (nc, n_rows) = (t.ne[0], t.ne[1]);
    let mut acc = vec![0f32; t.nelements()];
    let mut row = vec![0f32; nc];
    // ggml reads the ids as a packed i32 array (ggml_get_rows_back takes a vector).
    for i in 0..ids.t.nelements() {
        let id = super::elementwise::rows::load_i32_checked(ids.data, 4 * i)
            .ok_or_else(|| DeviceError::op(op, "row ids outside their tensor"))?;
        let r = usize::try_from(id)
            .ok()
            .filter(|&r| r < n_rows)
            .ok_or_else(|| DeviceError::op(op, format!("row id {id} out of range for {n_rows}")))?;
        packed_row(grad.t, grad.data, i * grad.t.nb[1], &mut row, op)?;
        acc[r * nc..(r + 1) * nc]
            .iter_mut()
            .zip(&row)
            .for_each(|(o, &v)| *o += v);
    }
    access::write_all(t, dst.data, &acc)
}

#[cfg(test)]
#[path = "backward_tests.rs"]
mod tests;
