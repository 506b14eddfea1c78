//! SOFT_MAX over f32 rows with scale and an optional f32/f16 mask (no ALiBi, no sinks): `call_soft_max`.

use super::{Ctx, Dispatch, Source, addr, f, groups, ne, small, u};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph};

pub fn supports(graph: &Graph, node: usize) -> bool {
    let t = &graph.tensors[node];
    let Some(a) = graph.src(node, 0) else {
        return false;
    };
    let mask_ok = graph.src(node, 1).is_none_or(|m| {
        let al = if m.typ == GgmlType::F16 { 2 } else { 4 };
        matches!(m.typ, GgmlType::F32 | GgmlType::F16)
            && m.ne[0] == a.ne[0]
            && m.ne[1] >= a.ne[1]
            && m.ne[2] > 0
            && m.ne[3] > 0
            && a.ne[2] % m.ne[2] == 0
            && a.ne[3] % m.ne[3] == 0
            && m.nb.iter().all(|n| n % al == 0)
            && small(m)
    });
    a.typ == GgmlType::F32
        && t.typ == GgmlType::F32
        && a.ne == t.ne
        && a.nb.iter().chain(&t.nb).all(|n| n % 4 == 0)
        && small(a)
        && small(t)
        && graph.src(node, 2).is_none()
        && t.param_f32(1) == 0.0
        && mask_ok
}

pub fn plan(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let t = &graph.tensors[node];
    let Some(a) = graph.src(node, 0) else {
        return Ok(None);
    };
    let mask = graph.src(node, 1);
    let (Some(va), Some(vd)) = (ctx.view(a)?, ctx.view(t)?) else {
        return Ok(None);
    };
    let vm = match mask {
        Some(m) => match ctx.view(m)? {
            Some(v) => Some(v),
            None => return Ok(None),
        },
        None => None,
    };
    let (Some(aa), Some(ad), Some(n), Some(rows)) =
        (addr(&va, a), addr(&vd, t), ne(t), u(t.nrows()))
    else {
        return Ok(None);
    };
    let (has_mask, am, mne) = match (mask, &vm) {
        (Some(m), Some(v)) => {
            let (Some(am), Some(mne)) = (addr(v, m), ne(m)) else {
                return Ok(None);
            };
            (if m.typ == GgmlType::F16 { 2 } else { 1 }, am, mne)
        }
        _ => (0, [0; 5], [1; 4]),
    };
    let mut params = vec![has_mask, f(t.param_f32(0)), n[0], n[1], n[2], rows];
    params.extend(aa);
    params.extend(am);
    params.extend([mne[2], mne[3]]);
    params.extend(ad);
    let mw = vm.map_or_else(|| va.window.clone(), |v| v.window);
    Ok(Some(vec![Dispatch {
        pipeline: ctx.pipeline(Source::SoftMax, "soft_max"),
        params,
        bindings: vec![va.window, mw, vd.window],
        groups: groups(ctx.gpu, u64::from(rows))?,
    }]))
}
