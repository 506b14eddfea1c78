//! Row kernels: NORM/RMS_NORM (`k_norm`), SOFT_MAX (`k_soft_max`), and ROPE (`k_rope`, normal and NEOX
//! modes, YaRN computed on the device from the host's correction dims).

use bytemuck::{Pod, Zeroable};

use super::{Ctx, CuTensor, Family, Launch, stride_grid};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct NormP {
    pub a: CuTensor,
    pub d: CuTensor,
    pub eps: f32,
    pub rms: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct SoftMaxP {
    pub a: CuTensor,
    pub mask: CuTensor,
    pub sinks: CuTensor,
    pub d: CuTensor,
    pub scale: f32,
    pub max_bias: f32,
    pub m0: f32,
    pub m1: f32,
    pub n_head_log2: i32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct RopeP {
    pub a: CuTensor,
    pub pos: CuTensor,
    pub ff: CuTensor,
    pub d: CuTensor,
    pub n_dims: i32,
    pub mode: i32,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub ext_factor: f32,
    pub attn_factor: f32,
    pub corr0: f32,
    pub corr1: f32,
    /// `freq_base^(-2/n_dims)`, computed here as the CPU computes it.
    pub theta_scale: f32,
    pub pad: i32,
}

/// One block per row: grid (ne1, ne2, ne3).
fn row_grid(ne: [usize; 4]) -> (u64, u64, u64) {
    (ne[1] as u64, ne[2] as u64, ne[3] as u64)
}

pub fn plan_norm(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
) -> Result<Option<Vec<Launch>>, DeviceError> {
    let t = &graph.tensors[node];
    let Some(a) = graph.src(node, 0) else {
        return Ok(None);
    };
    if !(a.typ == GgmlType::F32 && t.typ == GgmlType::F32 && a.ne == t.ne) {
        return Ok(None);
    }
    let Some(func) = ctx.function(Family::Norm, "k_norm") else {
        return Ok(None);
    };
    let p = NormP {
        a: ctx.src(graph, node, 0)?,
        d: ctx.tensor(t)?,
        eps: t.param_f32(0),
        rms: i32::from(t.op == crate::ggml::Op::RmsNorm),
    };
    Ok(Launch::one(func, row_grid(t.ne), (256, 1, 1), 0, &p))
}

/// ggml's ALiBi constants for `n_head` heads: (m0, m1, n_head_log2).
pub fn alibi(max_bias: f32, n_head: usize) -> (f32, f32, i32) {
    let n_head_log2 = 1u32 << (n_head.max(1) as u32).ilog2();
    let l = n_head_log2 as f32;
    (
        2f32.powf(-max_bias / l),
        2f32.powf(-(max_bias / 2.0) / l),
        n_head_log2 as i32,
    )
}

pub fn plan_softmax(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
) -> Result<Option<Vec<Launch>>, DeviceError> {
    let t = &graph.tensors[node];
    let Some(a) = graph.src(node, 0) else {
        return Ok(None);
    };
    let mask_ok = graph.src(node, 1).is_none_or(|m| {
        matches!(m.typ, GgmlType::F32 | GgmlType::F16)
            && m.ne[0] == a.ne[0]
            && m.ne[1] >= a.ne[1]
            && m.ne[2] > 0
            && m.ne[3] > 0
            && a.ne[2] % m.ne[2] == 0
            && a.ne[3] % m.ne[3] == 0
    });
    let sinks_ok = graph
        .src(node, 2)
        .is_none_or(|s| s.typ == GgmlType::F32 && s.ne[0] >= a.ne[2]);
    if !(a.typ == GgmlType::F32 && t.typ == GgmlType::F32 && a.ne == t.ne && mask_ok && sinks_ok) {
        return Ok(None);
    }
    let Some(func) = ctx.function(Family::SoftMax, "k_soft_max") else {
        return Ok(None);
    };
    let max_bias = t.param_f32(1);
    let (m0, m1, n_head_log2) = alibi(max_bias, a.ne[2]);
    let p = SoftMaxP {
        a: ctx.src(graph, node, 0)?,
        mask: ctx.src(graph, node, 1)?,
        sinks: ctx.src(graph, node, 2)?,
        d: ctx.tensor(t)?,
        scale: t.param_f32(0),
        max_bias,
        m0,
        m1,
        n_head_log2,
        pad: 0,
    };
    Ok(Launch::one(func, row_grid(t.ne), (256, 1, 1), 0, &p))
}

pub fn plan_rope(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
) -> Result<Option<Vec<Launch>>, DeviceError> {
    let t = &graph.tensors[node];
    let (Some(a), Some(pos)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return Ok(None);
    };
    let n_dims = t.param_i32(1);
    let mode = t.param_i32(2);
    let f32_or_f16 = |g| matches!(g, GgmlType::F32 | GgmlType::F16);
    let ok = f32_or_f16(a.typ)
        && f32_or_f16(t.typ)
        && a.ne == t.ne
        && pos.typ == GgmlType::I32
        && pos.ne[0] >= a.ne[2]
        && (mode == 0 || mode == 2)
        && n_dims > 0
        && n_dims % 2 == 0
        && n_dims as usize <= a.ne[0]
        && a.ne[0] % 2 == 0
        && t.param_i32(15) == 0
        && graph
            .src(node, 2)
            .is_none_or(|ff| ff.typ == GgmlType::F32 && ff.ne[0] >= n_dims as usize / 2);
    if !ok {
        return Ok(None);
    }
    let Some(func) = ctx.function(Family::Rope, "k_rope") else {
        return Ok(None);
    };
    let nd = n_dims as f32;
    let n_ctx_orig = t.param_i32(4) as f32;
    let (base, freq_scale) = (t.param_f32(5), t.param_f32(6));
    let (beta_fast, beta_slow) = (t.param_f32(9), t.param_f32(10));
    // ggml_rope_yarn_corr_dims.
    let corr =
        |b: f32| nd * (n_ctx_orig / (b * 2.0 * std::f32::consts::PI)).ln() / (2.0 * base.ln());
    let p = RopeP {
        a: ctx.src(graph, node, 0)?,
        pos: ctx.src(graph, node, 1)?,
        ff: ctx.src(graph, node, 2)?,
        d: ctx.tensor(t)?,
        n_dims,
        mode,
        freq_base: base,
        freq_scale,
        ext_factor: t.param_f32(7),
        attn_factor: t.param_f32(8),
        corr0: corr(beta_fast).floor().max(0.0),
        corr1: corr(beta_slow).ceil().min(nd - 1.0),
        theta_scale: base.powf(-2.0 / nd),
        pad: 0,
    };
    let pairs = (t.nelements() / 2) as u64;
    Ok(Launch::one(func, stride_grid(pairs), (256, 1, 1), 0, &p))
}
