//! ADD/SUB/MUL/DIV (src1 broadcast), SCALE, UNARY, SQR/SQRT/LOG/SIN/COS and GLU over strided F32/F16
//! tensors: `k_binary`, `k_unary`, `k_glu`, each a grid-stride loop over the destination.

use bytemuck::{Pod, Zeroable};

use super::{Ctx, CuTensor, Family, Launch, stride_grid};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, GluOp, Graph, Op, UnaryOp};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BinaryP {
    pub a: CuTensor,
    pub b: CuTensor,
    pub d: CuTensor,
    pub op: i32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct UnaryP {
    pub a: CuTensor,
    pub d: CuTensor,
    pub op: i32,
    pub p0: f32,
    pub p1: f32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct GluP {
    pub a: CuTensor,
    pub b: CuTensor,
    pub d: CuTensor,
    pub op: i32,
    pub swapped: i32,
    pub alpha: f32,
    pub limit: f32,
}

fn f32_or_f16(t: GgmlType) -> bool {
    matches!(t, GgmlType::F32 | GgmlType::F16)
}

pub fn plan_binary(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
) -> Result<Option<Vec<Launch>>, DeviceError> {
    let t = &graph.tensors[node];
    let (Some(a), Some(b)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return Ok(None);
    };
    let ok = [a.typ, b.typ, t.typ].into_iter().all(f32_or_f16)
        && a.ne == t.ne
        && (0..4).all(|d| b.ne[d] > 0 && t.ne[d].is_multiple_of(b.ne[d]));
    let op = match t.op {
        Op::Add => 0,
        Op::Sub => 1,
        Op::Mul => 2,
        Op::Div => 3,
        _ => return Ok(None),
    };
    let Some(func) = ok
        .then(|| ctx.function(Family::Binary, "k_binary"))
        .flatten()
    else {
        return Ok(None);
    };
    let p = BinaryP {
        a: ctx.src(graph, node, 0)?,
        b: ctx.src(graph, node, 1)?,
        d: ctx.tensor(t)?,
        op,
        pad: 0,
    };
    Ok(Launch::one(
        func,
        stride_grid(t.nelements() as u64),
        (256, 1, 1),
        0,
        &p,
    ))
}

/// The kernel's code for a one-source op, `None` when it has none.
fn unary_code(graph: &Graph, node: usize) -> Option<(i32, f32, f32)> {
    let t = &graph.tensors[node];
    Some(match t.op {
        Op::Scale => (100, t.param_f32(0), t.param_f32(1)),
        Op::Sqr => (101, 0.0, 0.0),
        Op::Sqrt => (102, 0.0, 0.0),
        Op::Log => (103, 0.0, 0.0),
        Op::Sin => (104, 0.0, 0.0),
        Op::Cos => (105, 0.0, 0.0),
        Op::Unary => match UnaryOp::from_u32(t.param_i32(0) as u32)? {
            // XIELU has four parameters of its own: the host runs it.
            UnaryOp::Xielu => return None,
            u => (u as i32, 0.0, 0.0),
        },
        _ => return None,
    })
}

pub fn plan_unary(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
) -> Result<Option<Vec<Launch>>, DeviceError> {
    let t = &graph.tensors[node];
    let Some(a) = graph.src(node, 0) else {
        return Ok(None);
    };
    let Some((op, p0, p1)) = unary_code(graph, node) else {
        return Ok(None);
    };
    if !(f32_or_f16(a.typ) && f32_or_f16(t.typ) && a.ne == t.ne) {
        return Ok(None);
    }
    let Some(func) = ctx.function(Family::Unary, "k_unary") else {
        return Ok(None);
    };
    let p = UnaryP {
        a: ctx.src(graph, node, 0)?,
        d: ctx.tensor(t)?,
        op,
        p0,
        p1,
        pad: 0,
    };
    Ok(Launch::one(
        func,
        stride_grid(t.nelements() as u64),
        (256, 1, 1),
        0,
        &p,
    ))
}

pub fn plan_glu(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Launch>>, DeviceError> {
    let t = &graph.tensors[node];
    let Some(a) = graph.src(node, 0) else {
        return Ok(None);
    };
    let op = match GluOp::from_u32(t.param_i32(0) as u32) {
        Some(
            g @ (GluOp::Reglu | GluOp::Geglu | GluOp::Swiglu | GluOp::GegluErf | GluOp::GegluQuick),
        ) => g as i32,
        _ => return Ok(None),
    };
    let shapes = match graph.src(node, 1) {
        Some(b) => f32_or_f16(b.typ) && b.ne == t.ne && a.ne == t.ne,
        None => a.ne[0] == 2 * t.ne[0] && a.ne[1..] == t.ne[1..],
    };
    if !(shapes && f32_or_f16(a.typ) && f32_or_f16(t.typ)) {
        return Ok(None);
    }
    let Some(func) = ctx.function(Family::Unary, "k_glu") else {
        return Ok(None);
    };
    let p = GluP {
        a: ctx.src(graph, node, 0)?,
        b: ctx.src(graph, node, 1)?,
        d: ctx.tensor(t)?,
        op,
        swapped: t.param_i32(1),
        alpha: t.param_f32(2),
        limit: t.param_f32(3),
    };
    Ok(Launch::one(
        func,
        stride_grid(t.nelements() as u64),
        (256, 1, 1),
        0,
        &p,
    ))
}
