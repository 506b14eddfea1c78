//! ROPE, NORMAL and NEOX modes with YaRN, f32: `call_rope`. When the positions (and freq factors)
//! are leaves, their values are read back and the cos/sin cache is the CPU device's (ggml's libm
//! values), so the rotation is bit-identical to ggml-cpu; otherwise the kernel computes the angles.

use super::{Ctx, Dispatch, Source, Window, addr, f, groups, host, small, u};
use crate::device::DeviceError;
use crate::device::host_kernels;
use crate::ggml::{GgmlType, Graph, Op};

/// Scratch region kind of a node's cos/sin table.
const TABLE: u32 = 100;

pub fn supports(graph: &Graph, node: usize) -> bool {
    let t = &graph.tensors[node];
    let (Some(a), Some(pos)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return false;
    };
    let n_dims = t.param_i32(1);
    let mode = t.param_i32(2);
    a.typ == GgmlType::F32
        && t.typ == GgmlType::F32
        && a.ne == t.ne
        && pos.typ == GgmlType::I32
        && pos.ne[0] >= a.ne[2]
        && pos.nb[0] == 4
        && (mode == 0 || mode == 2)
        && n_dims > 0
        && n_dims % 2 == 0
        && n_dims as usize <= a.ne[0]
        && a.ne[0] % 2 == 0
        && t.param_i32(15) == 0
        && graph
            .src(node, 2)
            .is_none_or(|ff| ff.typ == GgmlType::F32 && ff.op == Op::None)
        && a.nb.iter().chain(&t.nb).all(|n| n % 4 == 0)
        && small(a)
        && small(t)
        && small(pos)
}

pub fn plan(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let t = &graph.tensors[node];
    let (Some(a), Some(pos)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return Ok(None);
    };
    let (Some(va), Some(vp), Some(vd)) = (ctx.view(a)?, ctx.view(pos)?, ctx.view(t)?) else {
        return Ok(None);
    };
    let n_dims = t.param_i32(1) as f32;
    let n_ctx_orig = t.param_i32(4) as f32;
    let (base, freq_scale) = (t.param_f32(5), t.param_f32(6));
    let (ext, attn) = (t.param_f32(7), t.param_f32(8));
    let (beta_fast, beta_slow) = (t.param_f32(9), t.param_f32(10));
    let corr =
        |b: f32| n_dims * (n_ctx_orig / (b * 2.0 * std::f32::consts::PI)).ln() / (2.0 * base.ln());
    let low = corr(beta_fast).floor().max(0.0);
    let high = corr(beta_slow).ceil().min(n_dims - 1.0);
    let theta_scale = base.powf(-2.0 / n_dims);
    let (Some(aa), Some(ad), Some(count)) = (addr(&va, a), addr(&vd, t), u(t.nelements() / 2))
    else {
        return Ok(None);
    };
    let p = [u(t.ne[0]), u(t.ne[1]), u(t.ne[2])];
    let Some(p) = p.into_iter().collect::<Option<Vec<u32>>>() else {
        return Ok(None);
    };
    let table = cos_sin_table(ctx, graph, node)?;
    if table.is_none() && graph.src(node, 2).is_some() {
        return Ok(None); // freq factors need the table
    }
    let mut params = vec![u32::from(t.param_i32(2) == 2), t.param_i32(1) as u32, count];
    params.extend(p);
    params.extend([
        f(theta_scale),
        f(freq_scale),
        f(ext),
        f(attn),
        f(low),
        f(high),
    ]);
    params.extend(aa);
    params.push(vp.base);
    params.extend(ad);
    params.extend([u32::from(table.is_some()), t.param_i32(1) as u32]);
    let table = table.unwrap_or_else(|| vp.window.clone());
    Ok(Some(vec![Dispatch {
        pipeline: ctx.pipeline(Source::Rope, "rope"),
        params,
        bindings: vec![va.window, vp.window, vd.window, table],
        groups: groups(ctx.gpu, u64::from(count).div_ceil(256))?,
    }]))
}

/// Bytes of the node's cos/sin table (`n_dims` floats per token).
pub fn table_bytes(graph: &Graph, node: usize) -> u64 {
    let t = &graph.tensors[node];
    if !supports(graph, node) {
        return 0;
    }
    4 * (t.param_i32(1).max(0) as u64) * t.ne[2] as u64
}

/// The node's cos/sin cache computed on the host from its leaf positions (and freq factors) and
/// written to a scratch region, which the run records for `refresh_table`; ROPE nodes with the same
/// positions, parameters and shape share it. `None` when a source is computed by the graph or scratch
/// is short.
pub fn cos_sin_table(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Window>, DeviceError> {
    let t = &graph.tensors[node];
    let leaves = [t.src[1], t.src[2]];
    if leaves
        .into_iter()
        .flatten()
        .any(|s| host::written_before(graph, s, node))
    {
        return Ok(None); // the values are not known before the graph runs
    }
    let key = (t.src[1], t.src[2], t.op_params, t.ne);
    if let Some(win) = ctx.host.table(&key) {
        return Ok(Some(win));
    }
    let Some(cache) = host_table(ctx, graph, node)? else {
        return Ok(None);
    };
    let bytes: &[u8] = bytemuck::cast_slice(&cache);
    let Some((win, _)) = ctx.scratch.region((node, TABLE), bytes.len() as u64) else {
        return Ok(None);
    };
    ctx.gpu.queue.write_buffer(&win.buffer, win.offset, bytes);
    ctx.host.record_refresh(node, win.clone());
    ctx.host.keep_table(key, win.clone());
    Ok(Some(win))
}

/// Rewrites the node's table in `win` from the leaves' current values (a replayed run).
pub fn refresh_table(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
    win: &Window,
) -> Result<(), DeviceError> {
    let cache = host_table(ctx, graph, node)?
        .ok_or_else(|| DeviceError::op("ROPE", "positions are no longer readable"))?;
    let bytes: &[u8] = bytemuck::cast_slice(&cache);
    if bytes.len() as u64 > win.size {
        return Err(DeviceError::op("ROPE", "table outgrew its region"));
    }
    ctx.gpu.queue.write_buffer(&win.buffer, win.offset, bytes);
    Ok(())
}

/// The CPU device's cos/sin cache for the node, from host copies of its leaves.
fn host_table(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<f32>>, DeviceError> {
    let t = &graph.tensors[node];
    let Some(pi) = t.src[1] else {
        return Ok(None);
    };
    let Some(pos) = ctx.leaf_bytes(graph, pi, node)? else {
        return Ok(None);
    };
    let ff = match t.src[2] {
        Some(fi) => match ctx.leaf_bytes(graph, fi, node)? {
            Some(fb) => Some((&graph.tensors[fi], fb)),
            None => return Ok(None),
        },
        None => None,
    };
    let ff = ff.as_ref().map(|(ft, fb)| (*ft, fb.as_slice()));
    host_kernels::rope_cos_sin(t, &pos, graph.tensors[pi].nb[0], ff).map(Some)
}
