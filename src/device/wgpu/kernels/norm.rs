//! NORM and RMS_NORM over f32 rows, one workgroup per row, with the MUL by a weight row and the
//! residual ADD that follow a norm in transformer graphs fused into the same dispatch (`chain`).

use super::{Ctx, Dispatch, Source, View, addr, elementwise, f, groups, matmul, small, u};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, Op, Tensor};

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
    plan_chain(
        ctx,
        graph,
        &Chain {
            norm: node,
            mul: None,
            add: None,
            act: None,
        },
    )
}

/// A norm and the nodes fused after it: `mul` multiplies the norm by a weight (source 1), `add` adds
/// a residual (the ADD's other source) to the product.
pub struct Chain {
    pub norm: usize,
    pub mul: Option<usize>,
    pub add: Option<(usize, usize)>,
    /// The activation mode (act_quant.wgsl) of the MUL_MATs reading the chain's last output.
    pub act: Option<u32>,
}

/// The longest chain starting at `nodes[0]` (a norm this kernel supports): how many nodes it takes.
pub fn chain_at(graph: &Graph, nodes: &[usize]) -> Option<Chain> {
    let norm = *nodes.first()?;
    let mul = *nodes.get(1)?;
    let (n, m) = (&graph.tensors[norm], &graph.tensors[mul]);
    let w = graph.src(mul, 1)?;
    let f32_row =
        |x: &Tensor| x.typ == GgmlType::F32 && x.nb.iter().all(|b| b % 4 == 0) && small(x);
    let mul_ok = m.op == Op::Mul
        && m.src[0] == Some(norm)
        && elementwise::supports(graph, mul)
        && m.ne == n.ne
        && f32_row(w)
        && w.ne[0] == n.ne[0]
        && separate(m, &[n, graph.src(norm, 0)?, w]);
    if !mul_ok {
        return None;
    }
    let add = nodes.get(2).and_then(|&add| {
        let s = &graph.tensors[add];
        let other = match (s.src[0], s.src[1]) {
            (Some(x), Some(r)) if x == mul => r,
            (Some(r), Some(x)) if x == mul => r,
            _ => return None,
        };
        let r = &graph.tensors[other];
        let ok = s.op == Op::Add
            && elementwise::supports(graph, add)
            && s.ne == m.ne
            && r.ne == m.ne
            && f32_row(r)
            && separate(s, &[n, graph.src(norm, 0)?, w, m, r])
            && separate(r, &[n, m]);
        ok.then_some((add, other))
    });
    let out = add.map_or(mul, |(a, _)| a);
    let used = 2 + usize::from(add.is_some());
    // The first product reading the output natively with converted activations sets the mode.
    let act = nodes.iter().skip(used).find_map(|&n| {
        let t = &graph.tensors[n];
        let w = graph.src(n, 0)?;
        let mode = matmul::act_mode(w.typ);
        (t.op == Op::MulMat && t.src[1] == Some(out) && mode != 0 && super::supports(graph, n))
            .then_some(mode)
    });
    Some(Chain {
        norm,
        mul: Some(mul),
        add,
        act,
    })
}

/// Whether `t`'s memory is either disjoint from each of `others` or exactly one of them (the same
/// bytes with the same layout, as ggml-alloc's in-place reuse gives): a fused kernel writes and reads
/// element by element, so only a partial overlap could let one row clobber another's input.
fn separate(t: &Tensor, others: &[&Tensor]) -> bool {
    let range = |x: &Tensor| {
        let d = x.data?;
        Some((d.buffer, d.offset, d.offset + x.nbytes()?))
    };
    let Some((tb, t0, t1)) = range(t) else {
        return false;
    };
    others.iter().all(|o| match range(o) {
        Some((ob, o0, o1)) => {
            tb != ob || t1 <= o0 || o1 <= t0 || (t0 == o0 && t.ne == o.ne && t.nb == o.nb)
        }
        None => false,
    })
}

/// The dispatch computing `chain` (every node's output written).
pub fn plan_chain(
    ctx: &Ctx,
    graph: &Graph,
    chain: &Chain,
) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let node = chain.norm;
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
    // Unused bindings repeat the norm's own windows.
    let mut bindings = vec![va.window.clone(), vd.window.clone()];
    let mut tail = Vec::new();
    let mut views: Vec<(View, &Tensor)> = Vec::new();
    let mut level = 0;
    if let Some(mul) = chain.mul {
        let (m, Some(w)) = (&graph.tensors[mul], graph.src(mul, 1)) else {
            return Ok(None);
        };
        let (Some(vw), Some(vm)) = (ctx.view(w)?, ctx.view(m)?) else {
            return Ok(None);
        };
        let (Some(nw1), Some(nw2), Some(nw3)) = (u(w.ne[1]), u(w.ne[2]), u(w.ne[3])) else {
            return Ok(None);
        };
        let Some(aw) = addr(&vw, w) else {
            return Ok(None);
        };
        level = 1;
        tail.extend(aw);
        tail.extend([nw1, nw2, nw3]);
        views.push((vw, w));
        views.push((vm, m));
        if let Some((add, res)) = chain.add {
            let (s, r) = (&graph.tensors[add], &graph.tensors[res]);
            let (Some(vr), Some(vs)) = (ctx.view(r)?, ctx.view(s)?) else {
                return Ok(None);
            };
            level = 2;
            views.push((vr, r));
            views.push((vs, s));
        }
    }
    params.push(level);
    if level == 0 {
        tail.extend([0, 0, 0, 0, 0, 1, 1, 1]);
    }
    params.extend(tail);
    for (v, x) in views.iter().skip(1) {
        let Some(ax) = addr(v, x) else {
            return Ok(None);
        };
        params.extend(ax);
    }
    // Pad the m, r and o slots the chain does not use.
    params.resize(6 + 10 + 1 + 8 + 15, 0);
    let out = chain.add.map(|(a, _)| a).or(chain.mul);
    // The converted activations, when no earlier kernel of the graph has claimed them.
    let act = match (chain.act, out) {
        (Some(mode), Some(out)) => {
            let n = graph.tensors[out].nelements();
            match ctx.scratch.region((out, mode), matmul::act_bytes(mode, n)) {
                Some((w, true)) => Some((mode, w)),
                _ => None,
            }
        }
        _ => None,
    };
    params.extend([act.as_ref().map_or(0, |(m, _)| *m), 0]);
    bindings.extend(views.into_iter().map(|(v, _)| v.window));
    while bindings.len() < 6 {
        bindings.push(bindings[bindings.len() % 2].clone());
    }
    bindings.push(act.map_or_else(|| bindings[0].clone(), |(_, w)| w));
    Ok(Some(vec![Dispatch {
        pipeline: ctx.pipeline(Source::Norm, "norm"),
        params,
        bindings,
        groups: groups(ctx.gpu, u64::from(rows))?,
    }]))
}
