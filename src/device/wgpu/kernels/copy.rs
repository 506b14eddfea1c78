//! CPY/CONT/DUP between f32 and f16 (any shapes with equal element counts, any strides) and SET_ROWS
//! of f32/f16 rows into an f32/f16 destination with i32/i64 indices: `call_copy`.
//! An f16 destination is written one 32-bit word (two elements) per invocation, which needs an even
//! ne0, contiguous elements and 4-byte aligned rows; other f16 layouts run on the CPU.

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
    let (Some(as_), Some(ad), Some(sn), Some(dn)) = (addr(&vs, s), addr(&vd, t), ne(s), ne(t))
    else {
        return Ok(None);
    };
    let (ai, ine, wide) = match (idx, &vi) {
        (Some(i), Some(v)) => {
            let (Some(ai), Some(ine)) = (addr(v, i), ne(i)) else {
                return Ok(None);
            };
            (ai, ine, u32::from(i.typ == GgmlType::I64))
        }
        _ => ([0; 5], [1; 4], 0),
    };
    let dst_f16 = t.typ == GgmlType::F16;
    let Some(units) = u(if dst_f16 {
        s.nelements() / 2
    } else {
        s.nelements()
    }) else {
        return Ok(None);
    };
    let mut params = vec![
        u32::from(set_rows),
        u32::from(s.typ == GgmlType::F16),
        u32::from(dst_f16),
        units,
    ];
    params.extend(&sn[..3]);
    params.extend(as_);
    params.extend(&dn[..3]);
    params.extend(ad);
    params.extend(&ai[..4]);
    params.extend([ine[1], ine[2], wide]);
    // SET_ROWS needs the run's index flag; plain copies bind any window there.
    let flags = match (set_rows, ctx.scratch.flags()) {
        (true, None) => return Ok(None),
        (_, Some(w)) => w,
        (false, None) => vd.window.clone(),
    };
    let iw = vi.map_or_else(|| vs.window.clone(), |v| v.window);
    Ok(Some(vec![Dispatch {
        pipeline: ctx.pipeline(Source::Copy, "copy"),
        params,
        bindings: vec![vs.window, iw, vd.window, flags],
        groups: groups(ctx.gpu, u64::from(units).div_ceil(256))?,
    }]))
}
