//! NORM and RMS_NORM over f32 rows, one workgroup per row, with the MUL by a weight row and the
//! residual ADD that follow a norm in transformer graphs fused into the same dispatch (`chain`).

use super::{Ctx, Dispatch, Source, Window, addr, elementwise, f, groups, matmul, rope, small, u};
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
            rope: None,
            scale: None,
            then: None,
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
    /// A ROPE of the product (instead of `add`), through the host's cos/sin table.
    pub rope: Option<usize>,
    /// A SCALE (without bias) of the ROPE's output.
    pub scale: Option<usize>,
    /// After `add`: the next norm of the sum and its weight MUL (norm, mul).
    pub then: Option<(usize, usize)>,
}

impl Chain {
    /// How many graph nodes the chain computes.
    pub fn nodes(&self) -> usize {
        1 + usize::from(self.mul.is_some())
            + usize::from(self.add.is_some() || self.rope.is_some())
            + usize::from(self.scale.is_some())
            + 2 * usize::from(self.then.is_some())
    }
}

/// The longest chain starting at `nodes[0]` (a norm this kernel supports); with `pairs`, a second
/// norm after a residual ADD joins it (the device has the bindings `norm_pair` needs).
pub fn chain_at(graph: &Graph, nodes: &[usize], pairs: bool) -> Option<Chain> {
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
    let rope = nodes.get(2).copied().filter(|&rn| {
        let e = &graph.tensors[rn];
        add.is_none()
            && e.op == Op::Rope
            && e.src[0] == Some(mul)
            && rope::supports(graph, rn)
            && e.ne == m.ne
            && e.ne[0] <= 512
            && graph
                .src(norm, 0)
                .is_some_and(|a| separate(e, &[n, a, w, m]))
    });
    if let Some(rn) = rope {
        let e = &graph.tensors[rn];
        let scale = nodes.get(3).copied().filter(|&sn| {
            let t = &graph.tensors[sn];
            t.op == Op::Scale
                && t.src[0] == Some(rn)
                && t.param_f32(1) == 0.0
                && elementwise::supports(graph, sn)
                && t.ne == e.ne
                && graph
                    .src(norm, 0)
                    .is_some_and(|a| separate(t, &[n, a, w, m, e]))
        });
        return Some(Chain {
            norm,
            mul: Some(mul),
            add: None,
            act: None,
            rope,
            scale,
            then: None,
        });
    }
    let then = match add {
        Some((s, r)) if pairs => next_norm(graph, nodes, [norm, mul, s, r]),
        _ => None,
    };
    let out = then.map_or(add.map_or(mul, |(a, _)| a), |(_, m2)| m2);
    let used = 2 + usize::from(add.is_some()) + 2 * usize::from(then.is_some());
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
        rope: None,
        scale: None,
        then,
    })
}

/// norm_pair's windows (d2, w2, m2) and its parameters past `zero`.
type PairBinding = ([Window; 3], Vec<u32>);

/// norm_pair's windows (d2, w2, m2) and parameters past `zero` for the second norm `n2` and its
/// weight MUL `m2`.
fn pair_params(
    ctx: &Ctx,
    graph: &Graph,
    n2: usize,
    m2: usize,
) -> Result<Option<PairBinding>, DeviceError> {
    let (t2, p2) = (&graph.tensors[n2], &graph.tensors[m2]);
    let Some(w2) = graph.src(m2, 1) else {
        return Ok(None);
    };
    let (Some(vd), Some(vw), Some(vm)) = (ctx.view(t2)?, ctx.view(w2)?, ctx.view(p2)?) else {
        return Ok(None);
    };
    let (Some(ad), Some(aw), Some(am), Some(w1), Some(w2n), Some(w3)) = (
        addr(&vd, t2),
        addr(&vw, w2),
        addr(&vm, p2),
        u(w2.ne[1]),
        u(w2.ne[2]),
        u(w2.ne[3]),
    ) else {
        return Ok(None);
    };
    let mut params = vec![u32::from(t2.op == Op::RmsNorm), f(t2.param_f32(0))];
    params.extend([aw[0], aw[2], aw[3], aw[4], w1, w2n, w3]);
    params.extend([ad[0], ad[2], ad[3], ad[4]]);
    params.extend([am[0], am[2], am[3], am[4]]);
    Ok(Some(([vd.window, vw.window, vm.window], params)))
}

/// The norm of the chain's sum `first[2]` and its weight MUL at `nodes[3..5]`, when `norm_pair` can
/// compute them after the chain: their outputs (elements contiguous) overlap nothing the chain
/// reads or writes except in place.
fn next_norm(graph: &Graph, nodes: &[usize], first: [usize; 4]) -> Option<(usize, usize)> {
    let (&n2, &m2) = (nodes.get(3)?, nodes.get(4)?);
    let [norm, mul, sum, res] = first;
    let (t2, p2) = (&graph.tensors[n2], &graph.tensors[m2]);
    let (s, w2) = (&graph.tensors[sum], graph.src(m2, 1)?);
    let (a, w) = (graph.src(norm, 0)?, graph.src(mul, 1)?);
    let chain = [
        a,
        w,
        &graph.tensors[norm],
        &graph.tensors[mul],
        &graph.tensors[res],
        s,
    ];
    let ok = matches!(t2.op, Op::Norm | Op::RmsNorm)
        && t2.src[0] == Some(sum)
        && supports(graph, n2)
        && t2.ne == s.ne
        && p2.op == Op::Mul
        && p2.src[0] == Some(n2)
        && elementwise::supports(graph, m2)
        && p2.ne == t2.ne
        && w2.typ == GgmlType::F32
        && w2.ne[0] == t2.ne[0]
        && small(w2)
        && [t2, p2, w2]
            .iter()
            .all(|x| x.nb[0] == 4 && x.nb.iter().all(|b| b % 4 == 0))
        && separate(t2, &chain)
        && separate(p2, &chain)
        && separate(p2, &[t2, w2]);
    ok.then_some((n2, m2))
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
    // Bindings 3-6 (w, m, r, o) with their addresses; unused ones repeat the norm's own windows.
    let mut slots: Vec<(Window, [u32; 5])> = Vec::new();
    let mut w_ne = [1u32; 3];
    let mut level = 0;
    let mut rope_params = [0u32; 3];
    if let Some(mul) = chain.mul {
        let (m, Some(w)) = (&graph.tensors[mul], graph.src(mul, 1)) else {
            return Ok(None);
        };
        let (Some(vw), Some(vm)) = (ctx.view(w)?, ctx.view(m)?) else {
            return Ok(None);
        };
        let (Some(nw1), Some(nw2), Some(nw3), Some(aw), Some(am)) = (
            u(w.ne[1]),
            u(w.ne[2]),
            u(w.ne[3]),
            addr(&vw, w),
            addr(&vm, m),
        ) else {
            return Ok(None);
        };
        level = 1;
        w_ne = [nw1, nw2, nw3];
        slots.push((vw.window, aw));
        slots.push((vm.window, am));
        if let Some((add, res)) = chain.add {
            let (s, r) = (&graph.tensors[add], &graph.tensors[res]);
            let (Some(vr), Some(vs)) = (ctx.view(r)?, ctx.view(s)?) else {
                return Ok(None);
            };
            let (Some(ar), Some(as_)) = (addr(&vr, r), addr(&vs, s)) else {
                return Ok(None);
            };
            level = 2;
            slots.push((vr.window, ar));
            slots.push((vs.window, as_));
        } else if let Some(rn) = chain.rope {
            let e = &graph.tensors[rn];
            let (Some(table), Some(ve)) = (rope::cos_sin_table(ctx, graph, rn)?, ctx.view(e)?)
            else {
                return Ok(None);
            };
            let Some(ae) = addr(&ve, e) else {
                return Ok(None);
            };
            level = 3;
            let n_dims = e.param_i32(1) as u32;
            rope_params = [u32::from(e.param_i32(2) == 2), n_dims, n_dims];
            slots.push((table, [0; 5]));
            slots.push((ve.window, ae));
        }
    }
    params.push(level);
    let own = [(va.window.clone(), [0; 5]), (vd.window.clone(), [0; 5])];
    while slots.len() < 4 {
        slots.push(own[slots.len() % 2].clone());
    }
    params.extend(slots[0].1);
    params.extend(w_ne);
    for (_, ax) in &slots[1..] {
        params.extend(ax);
    }
    let out = match chain.then {
        Some((_, m2)) => Some(m2),
        None => chain.add.map(|(a, _)| a).or(chain.mul),
    };
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
    params.extend(rope_params);
    // A ROPE chain's SCALE writes through the activation binding (a ROPE chain converts none).
    let scaled = match (chain.rope, chain.scale) {
        (Some(_), Some(sn)) => {
            let t = &graph.tensors[sn];
            let Some(vs) = ctx.view(t)? else {
                return Ok(None);
            };
            let Some(a_s) = addr(&vs, t) else {
                return Ok(None);
            };
            params.extend([1, f(t.param_f32(0))]);
            params.extend(a_s);
            Some(vs.window)
        }
        _ => {
            params.extend([0; 7]);
            None
        }
    };
    let mut bindings = vec![va.window.clone(), vd.window.clone()];
    bindings.extend(slots.into_iter().map(|(w, _)| w));
    let seventh = act.map(|(_, w)| w).or(scaled);
    bindings.push(seventh.unwrap_or_else(|| bindings[0].clone()));
    let mut source = (Source::Norm, "norm");
    if let Some((n2, m2)) = chain.then {
        let Some((windows, more)) = pair_params(ctx, graph, n2, m2)? else {
            return Ok(None);
        };
        params.push(0);
        params.extend(more);
        bindings.extend(windows);
        source = (Source::NormPair, "norm_pair");
    }
    Ok(Some(vec![Dispatch {
        pipeline: ctx.pipeline(source.0, source.1),
        params,
        bindings,
        groups: groups(ctx.gpu, u64::from(rows))?,
    }]))
}
