//! ADD/SUB/MUL/DIV (broadcast src1), SCALE, UNARY, SQR/SQRT/LOG/SIN/COS and GLU: `call_binary`,
//! `call_unary`, `call_glu` over strided f32 (binary sources also f16) tensors.

use super::{Ctx, Dispatch, Source, addr, f, groups, matmul, ne, small, u};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, GluOp, Graph, Op, Tensor, UnaryOp};

fn f32_or_f16(t: GgmlType) -> bool {
    matches!(t, GgmlType::F32 | GgmlType::F16)
}

/// Elements of `t` are 4-byte aligned f32 (or 2-byte aligned f16) at every stride.
fn aligned(t: &Tensor) -> bool {
    let a = if t.typ == GgmlType::F16 { 2 } else { 4 };
    t.nb.iter().all(|&n| n % a == 0) && t.data.is_none_or(|d| d.offset % a == 0)
}

/// The shader's code for a one-source op, `None` when the op has no native kernel.
fn unary_code(t: &Tensor) -> Option<u32> {
    Some(match t.op {
        Op::Scale => 100,
        Op::Sqr => 101,
        Op::Sqrt => 102,
        Op::Log => 103,
        Op::Sin => 104,
        Op::Cos => 105,
        Op::Unary => {
            let op = UnaryOp::from_u32(t.param_i32(0) as u32)?;
            match op {
                UnaryOp::Expm1 | UnaryOp::Softplus | UnaryOp::Xielu | UnaryOp::Round => {
                    return None;
                }
                _ => op as u32,
            }
        }
        _ => return None,
    })
}

fn glu_code(t: &Tensor) -> Option<u32> {
    match GluOp::from_u32(t.param_i32(0) as u32)? {
        g @ (GluOp::Reglu | GluOp::Geglu | GluOp::Swiglu | GluOp::GegluErf | GluOp::GegluQuick) => {
            Some(g as u32)
        }
        _ => None,
    }
}

pub fn supports(graph: &Graph, node: usize) -> bool {
    let t = &graph.tensors[node];
    let Some(a) = graph.src(node, 0) else {
        return false;
    };
    let dst_ok = t.typ == GgmlType::F32 && aligned(t) && small(t);
    match t.op {
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let Some(b) = graph.src(node, 1) else {
                return false;
            };
            dst_ok
                && f32_or_f16(a.typ)
                && f32_or_f16(b.typ)
                && [a, b].iter().all(|s| aligned(s) && small(s))
                && a.ne == t.ne
                && (0..4).all(|d| b.ne[d] > 0 && t.ne[d].is_multiple_of(b.ne[d]))
        }
        Op::Glu => {
            let gate_ok = match graph.src(node, 1) {
                Some(b) => b.typ == GgmlType::F32 && b.ne == t.ne && aligned(b) && small(b),
                None => a.ne[0] == 2 * t.ne[0] && a.ne[1..] == t.ne[1..],
            };
            dst_ok
                && glu_code(t).is_some()
                && a.typ == GgmlType::F32
                && aligned(a)
                && small(a)
                && gate_ok
                && (graph.src(node, 1).is_some() || a.ne[0] == 2 * t.ne[0])
                && (graph.src(node, 1).is_none() || a.ne == t.ne)
        }
        _ => {
            dst_ok
                && unary_code(t).is_some()
                && a.typ == GgmlType::F32
                && aligned(a)
                && small(a)
                && a.ne == t.ne
        }
    }
}

pub fn plan(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let t = &graph.tensors[node];
    match t.op {
        Op::Add | Op::Sub | Op::Mul | Op::Div => call_binary(ctx, graph, node),
        Op::Glu => call_glu(ctx, graph, node),
        _ => call_unary(ctx, graph, node),
    }
}

fn src(graph: &Graph, node: usize, k: usize) -> Result<&Tensor, DeviceError> {
    graph
        .src(node, k)
        .ok_or_else(|| DeviceError::op(graph.tensors[node].op.name(), "missing source"))
}

pub fn call_binary(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let t = &graph.tensors[node];
    let (a, b) = (src(graph, node, 0)?, src(graph, node, 1)?);
    let (Some(va), Some(vb), Some(vd)) = (ctx.view(a)?, ctx.view(b)?, ctx.view(t)?) else {
        return Ok(None);
    };
    let (Some(aa), Some(ab), Some(ad), Some(n), Some(nb), Some(count)) = (
        addr(&va, a),
        addr(&vb, b),
        addr(&vd, t),
        ne(t),
        ne(b),
        u(t.nelements()),
    ) else {
        return Ok(None);
    };
    let op = match t.op {
        Op::Add => 0,
        Op::Sub => 1,
        Op::Mul => 2,
        _ => 3,
    };
    let is_f16 = |x: &Tensor| u32::from(x.typ == GgmlType::F16);
    let mut params = vec![op, is_f16(a), is_f16(b), count];
    params.extend(n);
    params.extend(aa);
    params.extend(ab);
    params.extend(nb);
    params.extend(ad);
    Ok(Some(vec![Dispatch {
        pipeline: ctx.pipeline(Source::Binary, "binary"),
        params,
        bindings: vec![va.window, vb.window, vd.window],
        groups: groups(ctx.gpu, u64::from(count).div_ceil(256))?,
    }]))
}

pub fn call_unary(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let t = &graph.tensors[node];
    let a = src(graph, node, 0)?;
    let (Some(va), Some(vd)) = (ctx.view(a)?, ctx.view(t)?) else {
        return Ok(None);
    };
    let (Some(code), Some(aa), Some(ad), Some(n), Some(count)) = (
        unary_code(t),
        addr(&va, a),
        addr(&vd, t),
        ne(t),
        u(t.nelements()),
    ) else {
        return Ok(None);
    };
    let mut params = vec![code, count, f(t.param_f32(0)), f(t.param_f32(1))];
    params.extend(n);
    params.extend(aa);
    params.extend(aa); // the gate slot, unused by `unary`
    params.extend(ad);
    Ok(Some(vec![Dispatch {
        pipeline: ctx.pipeline(Source::Unary, "unary"),
        params,
        bindings: vec![
            va.window.clone(),
            va.window,
            vd.window.clone(),
            ctx.gelu_tables(),
            vd.window,
        ],
        groups: groups(ctx.gpu, u64::from(count).div_ceil(256))?,
    }]))
}

pub fn call_glu(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let t = &graph.tensors[node];
    let a = src(graph, node, 0)?;
    let gate = graph.src(node, 1).unwrap_or(a);
    let (Some(va), Some(vg), Some(vd)) = (ctx.view(a)?, ctx.view(gate)?, ctx.view(t)?) else {
        return Ok(None);
    };
    let (Some(code), Some(mut aa), Some(mut ag), Some(ad), Some(n), Some(count)) = (
        glu_code(t),
        addr(&va, a),
        addr(&vg, gate),
        addr(&vd, t),
        ne(t),
        u(t.nelements()),
    ) else {
        return Ok(None);
    };
    if graph.src(node, 1).is_none() {
        // One source: halves of each row; `swapped` puts the activation on the second half.
        let Some(half) = u(t.ne[0] * a.nb[0]) else {
            return Ok(None);
        };
        if t.param_i32(1) != 0 {
            aa[0] += half;
        } else {
            ag[0] += half;
        }
    }
    let mut params = vec![code, count, 0, 0];
    params.extend(n);
    params.extend(aa);
    params.extend(ag);
    params.extend(ad);
    // Gemma's FFN: the down projection reads the GLU's output; converting it here, block by block
    // as the outputs are written, saves that product its act_quant dispatch.
    let act = matmul::act_consumer(graph, node).and_then(|c| {
        let k = graph.tensors[c.0].ne[0];
        Some((c.1, u(k)?, matmul::claim_act(ctx, graph, node, c)?))
    });
    let (entry, q) = match act {
        Some((mode, k, q)) => {
            params.extend([mode, k]);
            ("glu_act", q)
        }
        None => ("glu", vd.window.clone()),
    };
    Ok(Some(vec![Dispatch {
        pipeline: ctx.pipeline(Source::Unary, entry),
        params,
        bindings: vec![va.window, vg.window, vd.window, ctx.gelu_tables(), q],
        groups: groups(ctx.gpu, u64::from(count).div_ceil(256))?,
    }]))
}
