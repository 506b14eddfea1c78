//! Row moves: GET_ROWS (`k_get_rows`, dequantizing every weight type the model formats use), CPY/
//! CONT/DUP (`k_copy`, F32/F16/BF16 both ways, F32 into Q8_0/Q4_0) and SET_ROWS (`k_set_rows`, the KV
//! cache writes). Indices are checked in the kernels: an out-of-range one raises the plan's flag.

use bytemuck::{Pod, Zeroable};

use super::{Ctx, CuTensor, Family, Launch, stride_grid};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, Op};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct GetRowsP {
    pub a: CuTensor,
    pub idx: CuTensor,
    pub d: CuTensor,
    pub flag: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct CopyP {
    pub a: CuTensor,
    pub d: CuTensor,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct SetRowsP {
    pub a: CuTensor,
    pub idx: CuTensor,
    pub d: CuTensor,
    pub flag: u64,
}

/// The weight types `k_get_rows` dequantizes.
fn weight_type(t: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        t,
        F32 | F16 | Bf16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2K | Q3K | Q4K | Q5K | Q6K
    )
}

fn float(t: GgmlType) -> bool {
    matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16)
}

/// Quantized destinations the copy kernels write (ggml's reference quantizers, one thread a block).
fn quant_dst(t: GgmlType) -> bool {
    matches!(t, GgmlType::Q8_0 | GgmlType::Q4_0)
}

pub fn plan_get_rows(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
) -> Result<Option<Vec<Launch>>, DeviceError> {
    let t = &graph.tensors[node];
    let (Some(a), Some(i)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return Ok(None);
    };
    let ok = weight_type(a.typ)
        && i.typ == GgmlType::I32
        && matches!(t.typ, GgmlType::F32 | GgmlType::F16)
        && t.ne == [a.ne[0], i.ne[0], i.ne[1], i.ne[2]]
        && a.ne[2] == i.ne[1]
        && a.ne[3] == i.ne[2];
    let Some(func) = ok
        .then(|| ctx.function(Family::GetRows, "k_get_rows"))
        .flatten()
    else {
        return Ok(None);
    };
    let p = GetRowsP {
        a: ctx.src(graph, node, 0)?,
        idx: ctx.src(graph, node, 1)?,
        d: ctx.tensor(t)?,
        flag: ctx.scratch.flag(),
    };
    Ok(Launch::one(
        func,
        stride_grid(t.nelements() as u64),
        (256, 1, 1),
        0,
        &p,
    ))
}

pub fn plan_copy(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
) -> Result<Option<Vec<Launch>>, DeviceError> {
    let t = &graph.tensors[node];
    let Some(s) = graph.src(node, 0) else {
        return Ok(None);
    };
    // DUP/CONT keep the type; CPY converts into src1's type (the node's own).
    let same_count = s.nelements() == t.nelements();
    let ok = match (float(s.typ), float(t.typ), quant_dst(t.typ)) {
        (true, true, _) => same_count,
        (true, false, true) => s.typ == GgmlType::F32 && s.ne == t.ne && t.ne[0].is_multiple_of(32),
        _ => false,
    };
    if !ok || t.op == Op::SetRows {
        return Ok(None);
    }
    let Some(func) = ctx.function(Family::Copy, "k_copy") else {
        return Ok(None);
    };
    let p = CopyP {
        a: ctx.src(graph, node, 0)?,
        d: ctx.tensor(t)?,
    };
    let items = if quant_dst(t.typ) {
        t.nelements() / 32
    } else {
        t.nelements()
    };
    Ok(Launch::one(
        func,
        stride_grid(items as u64),
        (256, 1, 1),
        0,
        &p,
    ))
}

pub fn plan_set_rows(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
) -> Result<Option<Vec<Launch>>, DeviceError> {
    let t = &graph.tensors[node];
    let (Some(s), Some(i)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return Ok(None);
    };
    let dst_ok = float(t.typ) || (quant_dst(t.typ) && t.ne[0].is_multiple_of(32));
    let ok = s.typ == GgmlType::F32
        && dst_ok
        && matches!(i.typ, GgmlType::I32 | GgmlType::I64)
        && s.ne[0] == t.ne[0]
        && s.ne[2] == t.ne[2]
        && s.ne[3] == t.ne[3]
        && i.ne[0] == s.ne[1]
        && i.ne[1] > 0
        && i.ne[2] > 0
        && s.ne[2] % i.ne[1] == 0
        && s.ne[3] % i.ne[2] == 0;
    let Some(func) = ok
        .then(|| ctx.function(Family::Copy, "k_set_rows"))
        .flatten()
    else {
        return Ok(None);
    };
    let p = SetRowsP {
        a: ctx.src(graph, node, 0)?,
        idx: ctx.src(graph, node, 1)?,
        d: ctx.tensor(t)?,
        flag: ctx.scratch.flag(),
    };
    let items = if quant_dst(t.typ) {
        s.nelements() / 32
    } else {
        s.nelements()
    };
    Ok(Launch::one(
        func,
        stride_grid(items as u64),
        (256, 1, 1),
        0,
        &p,
    ))
}
