//! FLASH_ATTN_EXT with f32 q, f16/f32 k and v, optional f16/f32 mask, GQA and logit softcap (no
//! ALiBi, no sinks, Dv <= 512): `flash_attn`, and for caches longer than one chunk
//! `flash_attn_reduce` over the chunks' partial results (see attention.wgsl). The kernel writing
//! the output also converts it for the product reading it (`matmul::act_consumer`).

use super::scratch::Scratch;
use super::{Ctx, Dispatch, Source, addr, f, groups, matmul, small, u};
use std::sync::atomic::Ordering;

use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, Tensor};

/// Keys per workgroup (a multiple of the kernel's 64-key block). Up to this many keys the kernel is
/// ggml-cpu's own path, bit for bit; beyond, chunks are combined as ggml's split-KV path combines
/// its threads' chunks (`cpu::ops::attention::run_chunked` with this chunk is the exact reference).
/// 1024 keys keep an invocation well inside lavapipe's 65535 loop iterations.
pub const KV_CHUNK: usize = 1024;

/// Query rows per workgroup on the tiled path (QT in attention_rows.wgsl).
const ROWS: usize = 4;

/// Scratch region kind of the chunks' partial results.
const PARTIALS: u32 = 101;

/// Bytes of the partial results of `node` (0 when the cache fits one chunk).
pub fn scratch_bytes(graph: &Graph, node: usize) -> u64 {
    let (Some(q), Some(k), Some(v)) = (graph.src(node, 0), graph.src(node, 1), graph.src(node, 2))
    else {
        return 0;
    };
    let n_chunk = k.ne[1].div_ceil(KV_CHUNK) as u64;
    if n_chunk <= 1 || !supports(graph, node) {
        return 0;
    }
    let rows = (q.ne[1] * q.ne[2] * q.ne[3]) as u64;
    Scratch::region_bytes(rows * n_chunk * (2 + v.ne[0] as u64) * 4)
}

fn half_or_float(t: &Tensor) -> bool {
    let a = if t.typ == GgmlType::F16 { 2 } else { 4 };
    matches!(t.typ, GgmlType::F32 | GgmlType::F16) && t.nb.iter().all(|n| n % a == 0) && small(t)
}

pub fn supports(graph: &Graph, node: usize) -> bool {
    let t = &graph.tensors[node];
    let (Some(q), Some(k), Some(v)) = (graph.src(node, 0), graph.src(node, 1), graph.src(node, 2))
    else {
        return false;
    };
    let mask_ok = graph.src(node, 3).is_none_or(|m| {
        half_or_float(m) && m.ne[0] >= k.ne[1] && m.ne[1] >= q.ne[1] && m.ne[2] > 0 && m.ne[3] > 0
    });
    q.typ == GgmlType::F32
        && q.nb.iter().all(|n| n % 4 == 0)
        && small(q)
        && half_or_float(k)
        && half_or_float(v)
        && t.typ == GgmlType::F32
        && t.nb.iter().all(|n| n % 4 == 0)
        && small(t)
        && q.ne[0] == k.ne[0]
        && k.ne[1] == v.ne[1]
        && k.ne[2] == v.ne[2]
        && k.ne[3] == v.ne[3]
        && v.ne[0] <= 512
        && t.ne == [v.ne[0], q.ne[2], q.ne[1], q.ne[3]]
        && k.ne[2] > 0
        && q.ne[2].is_multiple_of(k.ne[2])
        && k.ne[3] > 0
        && q.ne[3].is_multiple_of(k.ne[3])
        && mask_ok
        && graph.src(node, 4).is_none()
        && t.param_f32(1) == 0.0
}

pub fn plan(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let t = &graph.tensors[node];
    let (Some(q), Some(k), Some(v)) = (graph.src(node, 0), graph.src(node, 1), graph.src(node, 2))
    else {
        return Ok(None);
    };
    let mask = graph.src(node, 3);
    let (Some(vq), Some(vk), Some(vv), Some(vd)) =
        (ctx.view(q)?, ctx.view(k)?, ctx.view(v)?, ctx.view(t)?)
    else {
        return Ok(None);
    };
    let vm = match mask {
        Some(m) => match ctx.view(m)? {
            Some(x) => Some(x),
            None => return Ok(None),
        },
        None => None,
    };
    let (has_mask, am, m2, m3) = match (mask, &vm) {
        (Some(m), Some(x)) => {
            let (Some(am), Some(m2), Some(m3)) = (addr(x, m), u(m.ne[2]), u(m.ne[3])) else {
                return Ok(None);
            };
            (if m.typ == GgmlType::F16 { 2 } else { 1 }, am, m2, m3)
        }
        _ => (0, [0; 5], 1, 1),
    };
    let head = [
        u(q.ne[0]),
        u(v.ne[0]),
        u(k.ne[1]),
        u(q.ne[1]),
        u(q.ne[2]),
        u(q.ne[2] / k.ne[2]),
        u(q.ne[3] / k.ne[3]),
    ];
    let (Some(head), Some(aq), Some(ak), Some(av), Some(ad)) = (
        head.into_iter().collect::<Option<Vec<u32>>>(),
        addr(&vq, q),
        addr(&vk, k),
        addr(&vv, v),
        addr(&vd, t),
    ) else {
        return Ok(None);
    };
    let is_f16 = |x: &Tensor| u32::from(x.typ == GgmlType::F16);
    let mut params = head;
    // ggml divides the scale by the softcap up front: tanh(s · scale / cap) · cap.
    let softcap = t.param_f32(2);
    let scale = t.param_f32(0) / if softcap != 0.0 { softcap } else { 1.0 };
    params.extend([f(scale), f(softcap)]);
    // ggml-cpu's tiled path: f32 Q, f32/f16 K and V of one type, >= 64 query rows, DV a multiple of 8.
    let tiled = k.typ == v.typ && q.ne[1] >= 64 && v.ne[0].is_multiple_of(8);
    params.extend([is_f16(k), is_f16(v), has_mask, m2, m3, u32::from(!tiled)]);
    params.extend(aq);
    params.extend(ak);
    params.extend(av);
    params.extend(am);
    params.extend(ad);
    let rows = q.ne[1] * q.ne[2] * q.ne[3];
    let n_chunk = k.ne[1].div_ceil(KV_CHUNK).max(1);
    let (Some(kv_chunk), Some(nc), Some(nr)) = (u(KV_CHUNK), u(n_chunk), u(rows)) else {
        return Ok(None);
    };
    params.extend([kv_chunk, nc, nr]);
    let mw = vm.map_or_else(|| vq.window.clone(), |x| x.window);
    let part = if n_chunk > 1 {
        let bytes = (rows * n_chunk * (2 + v.ne[0]) * 4) as u64;
        match ctx.scratch.region((node, PARTIALS), bytes) {
            Some((w, _)) => w,
            None => return Ok(None),
        }
    } else {
        vd.window.clone()
    };
    // The workgroups writing the output (the single chunk's, or the reduce's) each hold a finished
    // row: when the product reading the result (Wo, through a reshape) converts blocks that rows
    // divide into, they convert them too. A split run's chunks return before that point.
    let act = matmul::act_consumer(graph, node)
        .filter(|&(_, mode)| v.ne[0].is_multiple_of(matmul::act_block(mode)))
        .and_then(|c| {
            let k = u(graph.tensors[c.0].ne[0])?;
            Some((c.1, k, matmul::claim_act(ctx, graph, node, c)?))
        });
    let aq = match act {
        Some((mode, k, w)) => {
            params.extend([mode, k]);
            w
        }
        None => {
            params.extend([0, 0]);
            vd.window.clone()
        }
    };
    let bindings = vec![vq.window, vk.window, vv.window, mw, vd.window, part, aq];
    // On GPUs the tiled path takes QT query rows of one head per workgroup (attention_rows.wgsl;
    // not on CPU adapters, where lavapipe's limit of 65535 loop iterations per invocation would end
    // it early for wide heads).
    let shaped = ctx.gpu.gpu_kernels.load(Ordering::Relaxed);
    let (entry, groups_of_rows) = if tiled && shaped {
        (
            "flash_attn_rows",
            q.ne[1].div_ceil(ROWS) * q.ne[2] * q.ne[3],
        )
    } else {
        ("flash_attn", rows)
    };
    let main = Dispatch {
        pipeline: ctx.pipeline(Source::Attention, entry),
        params: params.clone(),
        bindings: bindings.clone(),
        groups: groups(ctx.gpu, (groups_of_rows * n_chunk) as u64)?,
    };
    if n_chunk == 1 {
        return Ok(Some(vec![main]));
    }
    let reduce = Dispatch {
        pipeline: ctx.pipeline(Source::Attention, "flash_attn_reduce"),
        params,
        bindings,
        groups: groups(ctx.gpu, rows as u64)?,
    };
    Ok(Some(vec![main, reduce]))
}
