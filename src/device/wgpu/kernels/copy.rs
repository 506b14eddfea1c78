//! CPY/CONT/DUP between f32 and f16 (any shapes with equal element counts, any strides) and SET_ROWS
//! of f32/f16 rows into an f32/f16 destination with i32/i64 indices: `call_copy`.
//! An f16 destination is written one 32-bit word (two elements) per invocation, which needs an even
//! ne0, contiguous elements and 4-byte aligned rows; other f16 layouts run on the CPU.

use super::span::{disjoint, span};
use super::{Ctx, Dispatch, Source, addr, groups, ne, small, u};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, Op, Tensor};

fn float(t: &Tensor) -> bool {
    let a = if t.typ == GgmlType::F16 { 2 } else { 4 };
    matches!(t.typ, GgmlType::F32 | GgmlType::F16)
        && t.nb.iter().all(|n| n % a == 0)
        && t.data.is_none_or(|d| d.offset % a == 0)
}

/// An f16 destination whose words hold two consecutive elements of one row.
fn f16_pairs(t: &Tensor) -> bool {
    t.ne[0].is_multiple_of(2)
        && t.nb[0] == 2
        && t.nb[1..].iter().all(|n| n % 4 == 0)
        && t.data.is_none_or(|d| d.offset % 4 == 0)
}

pub fn supports(graph: &Graph, node: usize) -> bool {
    let t = &graph.tensors[node];
    let Some(s) = graph.src(node, 0) else {
        return false;
    };
    let dst_ok = float(t) && small(t) && (t.typ == GgmlType::F32 || f16_pairs(t));
    let base = dst_ok && float(s) && small(s);
    if t.op != Op::SetRows {
        return base && s.nelements() == t.nelements();
    }
    let Some(i) = graph.src(node, 1) else {
        return false;
    };
    base && matches!(i.typ, GgmlType::I32 | GgmlType::I64)
        && i.nb.iter().all(|n| n % 4 == 0)
        && small(i)
        && s.ne[0] == t.ne[0]
        && s.ne[2] == t.ne[2]
        && s.ne[3] == t.ne[3]
        && i.ne[0] == s.ne[1]
        && i.ne[1] > 0
        && i.ne[2] > 0
        && s.ne[2] % i.ne[1] == 0
        && s.ne[3] % i.ne[2] == 0
}

/// One job's parameters (`J` in copy.wgsl, 28 words) for node `t` copying `s` (with indices `i` for
/// SET_ROWS) at the given addresses in their windows; `None` when a size does not fit u32.
fn job(
    t: &Tensor,
    s: &Tensor,
    i: Option<(&Tensor, [u32; 5])>,
    as_: [u32; 5],
    ad: [u32; 5],
) -> Option<Vec<u32>> {
    let (sn, dn) = (ne(s)?, ne(t)?);
    let (ai, ine, wide) = match i {
        Some((i, ai)) => (ai, ne(i)?, u32::from(i.typ == GgmlType::I64)),
        None => ([0; 5], [1; 4], 0),
    };
    let dst_f16 = t.typ == GgmlType::F16;
    let units = u(if dst_f16 {
        s.nelements() / 2
    } else {
        s.nelements()
    })?;
    let mut params = vec![
        u32::from(t.op == Op::SetRows),
        u32::from(s.typ == GgmlType::F16),
        u32::from(dst_f16),
        units,
    ];
    params.extend(&sn[..3]);
    params.extend(as_);
    params.extend(&dn[..3]);
    params.extend(ad);
    params.extend(&ai[..4]);
    params.extend([ine[1], ine[2], wide, 0]);
    Some(params)
}

pub fn plan(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let t = &graph.tensors[node];
    let Some(s) = graph.src(node, 0) else {
        return Ok(None);
    };
    let set_rows = t.op == Op::SetRows;
    let idx = if set_rows { graph.src(node, 1) } else { None };
    let (Some(vs), Some(vd)) = (ctx.view(s)?, ctx.view(t)?) else {
        return Ok(None);
    };
    let vi = match idx {
        Some(i) => match ctx.view(i)? {
            Some(v) => Some(v),
            None => return Ok(None),
        },
        None => None,
    };
    let (Some(as_), Some(ad)) = (addr(&vs, s), addr(&vd, t)) else {
        return Ok(None);
    };
    let ai = match (idx, &vi) {
        (Some(i), Some(v)) => match addr(v, i) {
            Some(ai) => Some((i, ai)),
            None => return Ok(None),
        },
        _ => None,
    };
    let Some(params) = job(t, s, ai, as_, ad) else {
        return Ok(None);
    };
    // SET_ROWS needs the run's index flag; plain copies bind any window there.
    let flags = match (set_rows, ctx.scratch.flags()) {
        (true, None) => return Ok(None),
        (_, Some(w)) => w,
        (false, None) => vd.window.clone(),
    };
    let units = params[3];
    let iw = vi.map_or_else(|| vs.window.clone(), |v| v.window);
    Ok(Some(vec![Dispatch {
        pipeline: ctx.pipeline(Source::Copy, "copy"),
        params,
        bindings: vec![vs.window, iw, vd.window, flags],
        groups: groups(ctx.gpu, u64::from(units).div_ceil(256))?,
    }]))
}

/// Whether `nodes` starts with two SET_ROWS one dispatch can run (a layer's K and V cache writes):
/// neither writes what the other reads or writes.
pub fn pair_at(graph: &Graph, nodes: &[usize]) -> bool {
    let [m, n, ..] = nodes else {
        return false;
    };
    [*m, *n]
        .iter()
        .all(|&k| graph.tensors[k].op == Op::SetRows && supports(graph, k))
        && disjoint(graph, *m, *n, 2)
}

/// The one dispatch running the SET_ROWS pair `nodes` (`pair_at`): sources, indices and
/// destinations each bound through one window spanning both (`None` when they are not in one
/// buffer each, or too far apart for one binding).
pub fn plan_pair(
    ctx: &Ctx,
    graph: &Graph,
    nodes: [usize; 2],
) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let [m, n] = nodes;
    let (Some(sm), Some(sn), Some(im), Some(in_)) = (
        graph.src(m, 0),
        graph.src(n, 0),
        graph.src(m, 1),
        graph.src(n, 1),
    ) else {
        return Ok(None);
    };
    let (tm, tn) = (&graph.tensors[m], &graph.tensors[n]);
    let (Some((vs, a_s)), Some((vi, a_i)), Some((vd, a_d)), Some(flags)) = (
        span(ctx, &[sm, sn])?,
        span(ctx, &[im, in_])?,
        span(ctx, &[tm, tn])?,
        ctx.scratch.flags(),
    ) else {
        return Ok(None);
    };
    let (Some(mut params), Some(second)) = (
        job(tm, sm, Some((im, a_i[0])), a_s[0], a_d[0]),
        job(tn, sn, Some((in_, a_i[1])), a_s[1], a_d[1]),
    ) else {
        return Ok(None);
    };
    let units = u64::from(params[3]) + u64::from(second[3]);
    params.extend(second);
    Ok(Some(vec![Dispatch {
        pipeline: ctx.pipeline(Source::Copy, "copy"),
        params,
        bindings: vec![vs.window, vi.window, vd.window, flags],
        groups: groups(ctx.gpu, units.div_ceil(256))?,
    }]))
}
