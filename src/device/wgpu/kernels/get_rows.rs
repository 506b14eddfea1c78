//! GET_ROWS from rows of any MUL_MAT weight type into f32: `call_get_rows`. A source larger than one
//! binding (a token embedding) is split into row ranges; each dispatch copies the rows it holds.
//! Indices outside src0 raise the run's index flag (`scratch`).

use super::matmul::{RowWindow, row_windows, weight_rows_ok, weight_type_id};
use super::{Ctx, Dispatch, Source, addr, groups, small, u};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph};

pub fn supports(graph: &Graph, node: usize) -> bool {
    let t = &graph.tensors[node];
    let (Some(a), Some(i)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return false;
    };
    weight_rows_ok(a)
        && i.typ == GgmlType::I32
        && t.typ == GgmlType::F32
        && i.nb.iter().chain(&t.nb).all(|n| n % 4 == 0)
        && t.ne == [a.ne[0], i.ne[0], i.ne[1], i.ne[2]]
        && a.ne[2] == i.ne[1]
        && a.ne[3] == i.ne[2]
        && small(i)
        && small(t)
}

pub fn plan(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let t = &graph.tensors[node];
    let (Some(a), Some(i)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return Ok(None);
    };
    let (Some(vi), Some(vd)) = (ctx.view(i)?, ctx.view(t)?) else {
        return Ok(None);
    };
    let (Some(ai), Some(ad), Some(typ)) = (addr(&vi, i), addr(&vd, t), weight_type_id(a.typ))
    else {
        return Ok(None);
    };
    let rows = a.ne[1];
    let Some(windows) = row_windows(ctx, a)? else {
        return Ok(None);
    };
    let Some(flags) = ctx.scratch.flags() else {
        return Ok(None);
    };
    let n = t.nelements();
    let pipeline = ctx.pipeline(Source::GetRows, "get_rows");
    let mut out = Vec::new();
    for RowWindow {
        r0,
        nr,
        view: va,
        addr: aa,
    } in windows
    {
        let p = [
            Some(typ),
            u(a.ne[0]),
            u(r0),
            u(nr),
            u(rows),
            u(n),
            u(i.ne[0]),
            u(i.ne[1]),
        ];
        let Some(mut params) = p.into_iter().collect::<Option<Vec<u32>>>() else {
            return Ok(None);
        };
        params.extend([aa[0], aa[2], aa[3], aa[4]]);
        params.extend([ai[0], ai[1], ai[2], ai[3]]);
        params.extend(ad);
        out.push(Dispatch {
            pipeline: pipeline.clone(),
            params,
            bindings: vec![
                va.window,
                vi.window.clone(),
                vd.window.clone(),
                flags.clone(),
            ],
            groups: groups(ctx.gpu, (n as u64).div_ceil(256))?,
        });
    }
    Ok(Some(out))
}
