//! NORM and RMS_NORM over f32 rows: `call_norm`, one workgroup per row.

use super::{Ctx, Dispatch, Source, addr, f, groups, small, u};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, Op};

pub fn supports(graph: &Graph, node: usize) -> bool {
    let t = &graph.tensors[node];
    graph.src(node, 0).is_some_and(|a| {
        a.typ == GgmlType::F32
            && t.typ == GgmlType::F32
            && a.ne == t.ne
            && small(a)
            && small(t)
            && a.nb.iter().chain(&t.nb).all(|n| n % 4 == 0)
    })
}

pub fn plan(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let t = &graph.tensors[node];
    let Some(a) = graph.src(node, 0) else {
        return Ok(None);
    };
    let (Some(va), Some(vd)) = (ctx.view(a)?, ctx.view(t)?) else {
        return Ok(None);
    };
    let (Some(aa), Some(ad), Some(ne0), Some(ne1), Some(ne2), Some(rows)) = (
        addr(&va, a),
        addr(&vd, t),
        u(t.ne[0]),
        u(t.ne[1]),
        u(t.ne[2]),
        u(t.nrows()),
    ) else {
        return Ok(None);
    };
    let op = u32::from(t.op == Op::RmsNorm);
    let mut params = vec![op, f(t.param_f32(0)), ne0, ne1, ne2, rows];
    params.extend(aa);
    params.extend(ad);
    Ok(Some(vec![Dispatch {
        pipeline: ctx.pipeline(Source::Norm, "norm"),
        params,
        bindings: vec![va.window, vd.window],
        groups: groups(ctx.gpu, u64::from(rows))?,
    }]))
}
