//! FLASH_ATTN_EXT: `k_flash_attn`, one block per (query, head), online softmax in f32, K/V in F16,
//! F32, Q8_0 or Q4_0 (the KV cache types), GQA by head ratio, mask, ALiBi, softcap and sinks.

use bytemuck::{Pod, Zeroable};

use super::norm::alibi;
use super::{Ctx, CuTensor, Family, Launch};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct FlashP {
    pub q: CuTensor,
    pub k: CuTensor,
    pub v: CuTensor,
    pub mask: CuTensor,
    pub sinks: CuTensor,
    pub d: CuTensor,
    pub scale: f32,
    pub max_bias: f32,
    pub softcap: f32,
    pub m0: f32,
    pub m1: f32,
    pub n_head_log2: i32,
    /// 1 where ggml-cpu tiles (f32 throughout), 0 for its vector path (Q in K's dot type, f16
    /// accumulator for F16 V).
    pub tiled: i32,
    pub pad: i32,
}

fn kv_type(t: GgmlType) -> bool {
    matches!(
        t,
        GgmlType::F16 | GgmlType::F32 | GgmlType::Q8_0 | GgmlType::Q4_0
    )
}

/// The kernel keeps a V row per lane group in registers: at most this many values.
const MAX_DV: usize = 512;

pub fn plan(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Launch>>, DeviceError> {
    let t = &graph.tensors[node];
    let (Some(q), Some(k), Some(v)) = (graph.src(node, 0), graph.src(node, 1), graph.src(node, 2))
    else {
        return Ok(None);
    };
    let (dk, dv) = (q.ne[0], v.ne[0]);
    let (n_q, n_head, n_seq) = (q.ne[1], q.ne[2], q.ne[3]);
    let mask_ok = graph.src(node, 3).is_none_or(|m| {
        matches!(m.typ, GgmlType::F16 | GgmlType::F32)
            && m.ne[0] == k.ne[1]
            && m.ne[1] >= n_q
            && m.ne[2] > 0
            && m.ne[3] > 0
            && n_head % m.ne[2] == 0
            && n_seq % m.ne[3] == 0
    });
    let sinks_ok = graph
        .src(node, 4)
        .is_none_or(|s| s.typ == GgmlType::F32 && s.ne[0] >= n_head);
    let ok = q.typ == GgmlType::F32
        && t.typ == GgmlType::F32
        && kv_type(k.typ)
        && kv_type(v.typ)
        && k.ne[0] == dk
        && v.ne[1] == k.ne[1]
        && k.ne[2] > 0
        && v.ne[2] == k.ne[2]
        && n_head % k.ne[2] == 0
        && k.ne[3] > 0
        && n_seq % k.ne[3] == 0
        && v.ne[3] == k.ne[3]
        && t.ne == [dv, n_head, n_q, n_seq]
        && dv <= MAX_DV
        // Block types are read in whole 32-value blocks.
        && [(k.typ, dk), (v.typ, dv)]
            .iter()
            .all(|&(t, n)| matches!(t, GgmlType::F16 | GgmlType::F32) || n % 32 == 0)
        && mask_ok
        && sinks_ok;
    let Some(func) = ok
        .then(|| ctx.function(Family::Attention, "k_flash_attn"))
        .flatten()
    else {
        return Ok(None);
    };
    let max_bias = t.param_f32(1);
    let (m0, m1, n_head_log2) = alibi(max_bias, n_head);
    let p = FlashP {
        q: ctx.src(graph, node, 0)?,
        k: ctx.src(graph, node, 1)?,
        v: ctx.src(graph, node, 2)?,
        mask: ctx.src(graph, node, 3)?,
        sinks: ctx.src(graph, node, 4)?,
        d: ctx.tensor(t)?,
        scale: t.param_f32(0),
        max_bias,
        softcap: t.param_f32(2),
        m0,
        m1,
        n_head_log2,
        // ggml-cpu's (x86) choice, so each path rounds as the CPU's does.
        tiled: i32::from(
            matches!(k.typ, GgmlType::F32 | GgmlType::F16)
                && k.typ == v.typ
                && n_q >= 64
                && dv % 8 == 0,
        ),
        pad: 0,
    };
    // The q row, the combined accumulator, 4 maxima and 4 sums, Q's Q8_0 scales.
    let shared = ((dk + dv + 8 + dk / 32) * 4) as u32;
    let grid = (n_q as u64, n_head as u64, n_seq as u64);
    Ok(Launch::one(func, grid, (128, 1, 1), shared, &p))
}
