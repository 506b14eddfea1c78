//! UNARY (and SQR/SQRT/LOG/SIN/COS, which share its type rules) and GLU.

use super::math::{self, GluParams, Xielu};
use super::rows::{ensure, map_rows, read_row, shape, src_of};
use crate::device::DeviceError;
use crate::device::cpu::ops::{Dst, Src};
use crate::ggml::{GgmlType, GluOp, Graph, Op, UnaryOp};

use GgmlType::{Bf16, F16, F32};

/// The source/destination type pairs of ggml's `unary_op` dispatch.
fn unary_types_ok(s: GgmlType, d: GgmlType) -> bool {
    matches!(
        (s, d),
        (F32, F32) | (F16, F16) | (Bf16, Bf16) | (Bf16, F32) | (F16, F32)
    )
}

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let s0 = src_of(graph, node, 0)?;
    if d.op == Op::Unary {
        let u = d.param_i32(0);
        ensure(u >= 0 && UnaryOp::from_u32(u as u32).is_some(), || {
            format!("{op}: unknown unary op {u}")
        })?;
    }
    ensure(s0.ne == d.ne, || {
        format!("{op}: shapes {} -> {}", shape(s0), shape(d))
    })?;
    ensure(unary_types_ok(s0.typ, d.typ), || {
        format!(
            "{op}: unsupported types {} -> {}",
            s0.typ.name(),
            d.typ.name()
        )
    })
}

pub fn run(s0: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let t = dst.t;
    let src_typ = s0.t.typ;
    let op = t.op;
    let u = match op {
        Op::Unary => Some(
            u32::try_from(t.param_i32(0))
                .ok()
                .and_then(UnaryOp::from_u32)
                .ok_or_else(|| DeviceError::op(op.name(), "unknown unary op"))?,
        ),
        _ => None,
    };
    let xi = Xielu {
        alpha_n: t.param_f32(1),
        alpha_p: t.param_f32(2),
        beta: t.param_f32(3),
        eps: t.param_f32(4),
    };
    map_rows(
        dst,
        || (),
        move |_, _, idx, out| {
            read_row(s0, idx, out)?;
            let f: fn(f32) -> f32 = match (op, u) {
                (_, Some(u)) => {
                    math::unary_row(u, out, src_typ, xi);
                    return Ok(());
                }
                (Op::Sqr, _) => |x| x * x,
                (Op::Sqrt, _) => f32::sqrt,
                (Op::Log, _) => f32::ln,
                (Op::Sin, _) => f32::sin,
                _ => f32::cos,
            };
            out.iter_mut().for_each(|v| *v = f(*v));
            Ok(())
        },
    )
}

fn glu_op(d: &crate::ggml::Tensor) -> Option<GluOp> {
    u32::try_from(d.param_i32(0)).ok().and_then(GluOp::from_u32)
}

pub fn check_glu(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let s0 = src_of(graph, node, 0)?;
    ensure(glu_op(d).is_some(), || {
        format!("{op}: unknown glu op {}", d.param_i32(0))
    })?;
    ensure(
        matches!(s0.typ, F32 | F16 | Bf16) && d.typ == s0.typ,
        || {
            format!(
                "{op}: unsupported types {} -> {}",
                s0.typ.name(),
                d.typ.name()
            )
        },
    )?;
    match graph.src(node, 1) {
        Some(s1) => {
            ensure(s1.typ == s0.typ, || format!("{op}: a and b types differ"))?;
            ensure(s1.ne == s0.ne && d.ne == s0.ne, || {
                format!(
                    "{op}: shapes a {} b {} dst {}",
                    shape(s0),
                    shape(s1),
                    shape(d)
                )
            })
        }
        None => ensure(d.ne[0] == s0.ne[0] / 2 && d.ne[1..] == s0.ne[1..], || {
            format!("{op}: dst {} is not half of {}", shape(d), shape(s0))
        }),
    }
}

/// Split mode: each row of a holds [x | g] (or [g | x] when swapped). Two-source mode: x = a, g = b.
pub fn run_glu(s0: &Src<'_>, s1: Option<&Src<'_>>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let t = dst.t;
    let op = glu_op(t).ok_or_else(|| DeviceError::op(t.op.name(), "unknown glu op"))?;
    let p = GluParams {
        alpha: t.param_f32(2),
        limit: t.param_f32(3),
    };
    let typ = s0.t.typ;
    let nc = t.ne[0];
    let swapped = t.param_i32(1) != 0;
    let ne00 = s0.t.ne[0];
    map_rows(
        dst,
        || {
            (
                vec![0f32; ne00],
                vec![0f32; if s1.is_some() { nc } else { 0 }],
            )
        },
        |(buf, gbuf), _, idx, out| {
            read_row(s0, idx, buf)?;
            let (x, g): (&[f32], &[f32]) = match s1 {
                Some(s1) => {
                    read_row(s1, idx, gbuf)?;
                    (&buf[..nc], &gbuf[..])
                }
                None if swapped => (&buf[nc..2 * nc], &buf[..nc]),
                None => (&buf[..nc], &buf[nc..2 * nc]),
            };
            math::glu_row(op, out, x, g, typ, p);
            Ok(())
        },
    )
}
