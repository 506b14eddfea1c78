//! ROPE, NORMAL and NEOX modes with YaRN, f32, without freq_factors: `call_rope`.

use super::{Ctx, Dispatch, Source, addr, f, groups, small, u};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph};

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
        && graph.src(node, 2).is_none()
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
    Ok(Some(vec![Dispatch {
        pipeline: ctx.pipeline(Source::Rope, "rope"),
        params,
        bindings: vec![va.window, vp.window, vd.window],
        groups: groups(ctx.gpu, u64::from(count).div_ceil(256))?,
    }]))
}
