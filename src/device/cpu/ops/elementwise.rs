//! Element-wise ops: ADD/SUB/MUL/DIV with broadcast (and ggml_add_cast), ADD1, ADD_ID, SCALE, CLAMP,
//! SQR/SQRT/LOG/SIN/COS, LEAKY_RELU, FILL, UNARY (22 ops) and GLU (7 ops). Every value is computed in
//! f32 from the converted sources and rounded once into the destination type, like ggml's CPU backend.

#[path = "elementwise_math.rs"]
mod math;
pub use math::gelu_tables_f16;
#[path = "elementwise_rows.rs"]
pub(super) mod rows;
#[path = "elementwise_unary.rs"]
mod unary;

use self::rows::{ensure, map_rows, read_row, shape, src_at, src_of, whole_blocks};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op, Tensor};

use GgmlType::{Bf16, F16, F32};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let s0 = src_of(graph, node, 0)?;
    match d.op {
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let s1 = src_of(graph, node, 1)?;
            check_binary(d, s0, s1)
        }
        Op::Add1 => {
            let s1 = src_of(graph, node, 1)?;
            ensure(s1.nelements() == 1, || format!("{op}: b must be a scalar"))?;
            ensure(s0.ne == d.ne, || format!("{op}: dst shape differs from a"))?;
            let ok = match (s0.typ, s1.typ, d.typ) {
                (F32, F32, F32) | (F16, F16, F16) | (F16, F32, F16) => true,
                (Bf16, Bf16, Bf16) | (Bf16, F32, Bf16) => true,
                (q, F32, o) => q.is_quantized() && q == o && whole_blocks(s0),
                _ => false,
            };
            ensure(ok, || {
                format!(
                    "{op}: unsupported types {} + {} -> {}",
                    s0.typ.name(),
                    s1.typ.name(),
                    d.typ.name()
                )
            })
        }
        Op::AddId => {
            let b = src_of(graph, node, 1)?;
            let ids = src_of(graph, node, 2)?;
            ensure(
                s0.typ == F32 && b.typ == F32 && d.typ == F32 && ids.typ == GgmlType::I32,
                || format!("{op}: needs f32 a, b, dst and i32 ids"),
            )?;
            ensure(
                s0.ne == d.ne
                    && b.ne[0] == s0.ne[0]
                    && ids.ne[0] == s0.ne[1]
                    && ids.ne[1] == s0.ne[2],
                || {
                    format!(
                        "{op}: inconsistent shapes a {} b {} ids {}",
                        shape(s0),
                        shape(b),
                        shape(ids)
                    )
                },
            )
        }
        // ggml_compute_forward_scale: f32 and bf16.
        Op::Scale => same_shape_types(d, s0, &[F32, Bf16]),
        Op::Clamp | Op::LeakyRelu | Op::Fill => same_shape_types(d, s0, &[F32, F16]),
        Op::Sqr | Op::Sqrt | Op::Log | Op::Sin | Op::Cos | Op::Unary => unary::check(graph, node),
        Op::Glu => unary::check_glu(graph, node),
        _ => Err(format!("{op} is not an element-wise op")),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let s0 = src_at(src, 0, op)?;
    match dst.t.op {
        Op::Add => binary(s0, src_at(src, 1, op)?, dst, |a, b| a + b),
        Op::Sub => binary(s0, src_at(src, 1, op)?, dst, |a, b| a - b),
        Op::Mul => binary(s0, src_at(src, 1, op)?, dst, |a, b| a * b),
        Op::Div => binary(s0, src_at(src, 1, op)?, dst, |a, b| a / b),
        Op::Add1 => add1(s0, src_at(src, 1, op)?, dst),
        Op::AddId => add_id(s0, src_at(src, 1, op)?, src_at(src, 2, op)?, dst),
        Op::Scale => {
            let (s, b) = (dst.t.param_f32(0), dst.t.param_f32(1));
            // ggml's f32 kernel only adds the bias when it is non-zero (keeps -0.0 from x*s); its
            // bf16 kernel always computes s*x + b.
            if b == 0.0 && s0.t.typ == F32 {
                map_each(s0, dst, move |x| x * s)
            } else {
                map_each(s0, dst, move |x| x * s + b)
            }
        }
        Op::Clamp => {
            let (lo, hi) = (dst.t.param_f32(0), dst.t.param_f32(1));
            map_each(s0, dst, move |x| math::c_max(math::c_min(x, hi), lo))
        }
        Op::LeakyRelu => {
            let ns = dst.t.param_f32(0);
            map_each(s0, dst, move |x| {
                (if x > 0.0 { x } else { 0.0 }) + ns * (if x < 0.0 { x } else { 0.0 })
            })
        }
        Op::Fill => {
            let c = dst.t.param_f32(0);
            map_rows(
                dst,
                || (),
                move |_, _, _, out| {
                    out.fill(c);
                    Ok(())
                },
            )
        }
        Op::Sqr | Op::Sqrt | Op::Log | Op::Sin | Op::Cos | Op::Unary => unary::run(s0, dst),
        Op::Glu => unary::run_glu(s0, src[1].as_ref(), dst),
        _ => Err(DeviceError::op(op, "not an element-wise op")),
    }
}

/// dst has a's shape and one of `types`, the same as a's.
fn same_shape_types(d: &Tensor, s0: &Tensor, types: &[GgmlType]) -> Result<(), String> {
    let op = d.op.name();
    ensure(s0.ne == d.ne, || {
        format!("{op}: shapes {} -> {}", shape(s0), shape(d))
    })?;
    ensure(s0.typ == d.typ && types.contains(&d.typ), || {
        format!(
            "{op}: unsupported types {} -> {}",
            s0.typ.name(),
            d.typ.name()
        )
    })
}

/// `ggml_can_repeat(b, a)`: every dim of b divides a's (an empty b only with an empty a).
pub(super) fn can_repeat(b: &Tensor, a: &Tensor) -> bool {
    if b.nelements() == 0 {
        return a.nelements() == 0;
    }
    (0..4).all(|d| a.ne[d].is_multiple_of(b.ne[d]))
}

fn check_binary(d: &Tensor, s0: &Tensor, s1: &Tensor) -> Result<(), String> {
    let op = d.op.name();
    ensure(can_repeat(s1, s0), || {
        format!("{op}: {} does not broadcast over {}", shape(s1), shape(s0))
    })?;
    ensure(s0.ne == d.ne, || {
        format!("{op}: dst {} differs from a {}", shape(d), shape(s0))
    })?;
    let ok = match (s0.typ, s1.typ, d.typ) {
        (F32, F32, F32) | (F16, F16, F16) | (Bf16, Bf16, Bf16) => true,
        (Bf16, F32, Bf16) | (Bf16, F32, F32) | (F16, F32, F16) | (F16, F32, F32) => true,
        // ggml_add_cast of a quantized tensor: same-shape f32 addend, any convertible dst.
        (q, F32, o) if q.is_quantized() && d.op == Op::Add => {
            s1.ne == s0.ne
                && whole_blocks(s0)
                && (matches!(o, F32 | F16 | Bf16) || (o.is_quantized() && whole_blocks(d)))
        }
        _ => false,
    };
    ensure(ok, || {
        format!(
            "{op}: unsupported types {} {} -> {}",
            s0.typ.name(),
            s1.typ.name(),
            d.typ.name()
        )
    })
}

/// `dst = f(a, b)` with b repeated over a (ggml's `apply_binary_op`).
fn binary<F>(s0: &Src<'_>, s1: &Src<'_>, dst: Dst<'_>, f: F) -> Result<(), DeviceError>
where
    F: Fn(f32, f32) -> f32 + Sync + Send,
{
    let ne1 = s1.t.ne;
    let (ne00, ne10) = (s0.t.ne[0], ne1[0]);
    map_rows(
        dst,
        || vec![0f32; ne10],
        |b, _, [i1, i2, i3], out| {
            read_row(s0, [i1, i2, i3], out)?;
            read_row(s1, [i1 % ne1[1], i2 % ne1[2], i3 % ne1[3]], b)?;
            debug_assert_eq!(out.len(), ne00);
            for chunk in out.chunks_mut(ne10) {
                for (o, &y) in chunk.iter_mut().zip(b.iter()) {
                    *o = f(*o, y);
                }
            }
            Ok(())
        },
    )
}

/// `dst = f(a)` element by element (same shape).
fn map_each<F>(s0: &Src<'_>, dst: Dst<'_>, f: F) -> Result<(), DeviceError>
where
    F: Fn(f32) -> f32 + Sync + Send,
{
    map_rows(
        dst,
        || (),
        |_, _, idx, out| {
            read_row(s0, idx, out)?;
            out.iter_mut().for_each(|v| *v = f(*v));
            Ok(())
        },
    )
}

fn add1(s0: &Src<'_>, s1: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let mut v = [0f32; 1];
    read_row(s1, [0, 0, 0], &mut v)?;
    let v = v[0];
    map_each(s0, dst, move |x| x + v)
}

/// `dst[:, i1, i2] = a[:, i1, i2] + b[:, ids[i1, i2]]`, each id checked against b's rows.
fn add_id(a: &Src<'_>, b: &Src<'_>, ids: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let n_rows_b = b.t.ne[1];
    map_rows(
        dst,
        || vec![0f32; a.t.ne[0]],
        |brow, _, [i1, i2, i3], out| {
            let off = i1 * ids.t.nb[0] + i2 * ids.t.nb[1];
            let id = rows::load_i32_checked(ids.data, off)
                .ok_or_else(|| DeviceError::op(op, "ids outside their tensor"))?;
            let id = usize::try_from(id)
                .ok()
                .filter(|&i| i < n_rows_b)
                .ok_or_else(|| {
                    DeviceError::op(op, format!("id {id} out of range for {n_rows_b} rows"))
                })?;
            read_row(a, [i1, i2, i3], out)?;
            read_row(b, [id, 0, 0], brow)?;
            out.iter_mut().zip(brow.iter()).for_each(|(o, y)| *o += y);
            Ok(())
        },
    )
}

#[cfg(test)]
#[path = "elementwise_tests.rs"]
pub(super) mod tests;
