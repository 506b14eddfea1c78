//! Products of one activation by several weights in one dispatch (gate/up): `mul_mat_exact` with
//! jobs. Each product keeps its own arithmetic (the same bits as one dispatch each); they share the
//! activation conversion, and their weights and outputs are bound through one window each, spanning
//! the tensors (they lie in one buffer: the model's weights, the graph's compute buffer).

use super::span::{disjoint, span};
use super::{Ctx, Dispatch, Source, groups, matmul, u};
use crate::device::DeviceError;
use crate::ggml::{Graph, Op};

/// Most products one dispatch takes (the uniform block has room for three more jobs).
pub const MAX_JOBS: usize = 4;

/// What products must share to run as jobs of one dispatch: the activation tensor and its
/// conversion mode. `None` for a product the jobs kernel does not take (batched weights or
/// activations, a weight type outside llama.cpp's packed arithmetic).
pub fn key(graph: &Graph, node: usize) -> Option<(usize, u32)> {
    let t = &graph.tensors[node];
    let (a, b) = (graph.src(node, 0)?, graph.src(node, 1)?);
    let plain = t.op == Op::MulMat
        && super::supports(graph, node)
        && matmul::exact(a.typ)
        && a.ne[2] == 1
        && a.ne[3] == 1
        && b.ne[2] == 1
        && b.ne[3] == 1
        && t.nb[0] == 4;
    plain.then_some((t.src[1]?, matmul::act_mode(a.typ)))
}

/// How many of `nodes` (from the first) form one jobs dispatch: consecutive products with the
/// first one's key whose outputs overlap nothing the others read or write.
pub fn run_len(graph: &Graph, nodes: &[usize]) -> usize {
    let Some(k) = nodes.first().and_then(|&n| key(graph, n)) else {
        return 0;
    };
    let mut taken: Vec<usize> = Vec::new();
    for &n in nodes.iter().take(MAX_JOBS) {
        if key(graph, n) != Some(k) || !taken.iter().all(|&m| disjoint(graph, m, n, 2)) {
            break;
        }
        taken.push(n);
    }
    taken.len()
}

/// The dispatches computing the products `nodes` (a `run_len` run of two or more) as jobs of one
/// `mul_mat_exact`, after the activation conversion when no earlier kernel made it.
pub fn plan(
    ctx: &Ctx,
    graph: &Graph,
    nodes: &[usize],
) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let (Some(&first), true) = (nodes.first(), (2..=MAX_JOBS).contains(&nodes.len())) else {
        return Ok(None);
    };
    let (Some(a0), Some(b)) = (graph.src(first, 0), graph.src(first, 1)) else {
        return Ok(None);
    };
    let mut weights = Vec::new();
    let mut outs = Vec::new();
    for &n in nodes {
        let Some(a) = graph.src(n, 0) else {
            return Ok(None);
        };
        weights.push(a);
        outs.push(&graph.tensors[n]);
    }
    let (Some((va, aa)), Some((vd, ad))) = (span(ctx, &weights)?, span(ctx, &outs)?) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    let Some((b_win, ab)) =
        matmul::activations(ctx, graph, first, matmul::act_mode(a0.typ), &mut out)?
    else {
        return Ok(None);
    };
    // The GPU kernels count units in rows; mul_mat_exact in rows times column groups of four.
    // (Jobs share the conversion mode, so their weights are all 32-blocks or all super-blocks.)
    let rows: usize = weights.iter().map(|a| a.ne[1]).sum();
    let shaped = matmul::gpu_kernel(ctx, a0.typ, rows, b.ne[1], 1);
    let cols = if shaped.is_some() {
        1
    } else {
        b.ne[1].div_ceil(4)
    };
    let head = [
        matmul::weight_type_id(a0.typ),
        u(a0.ne[0]),
        Some(0),
        u(a0.ne[1]),
        u(b.ne[1]),
        u(b.ne[1]),
        Some(1),
        Some(1),
        Some(1),
    ];
    let Some(mut params) = head.into_iter().collect::<Option<Vec<u32>>>() else {
        return Ok(None);
    };
    params.extend([aa[0][0], aa[0][2], aa[0][3], aa[0][4]]);
    params.extend(ab);
    params.extend(ad[0]);
    // `tiny` and `zero` stay 0; `njobs`, then `jobs` at its 16-byte aligned offset.
    params.extend([0, 0, (nodes.len() - 1) as u32, 0, 0]);
    let mut units = a0.ne[1] * cols;
    for (j, (a, d)) in weights.iter().zip(&ad).enumerate().skip(1) {
        let (Some(typ), Some(nr), Some(first_unit)) =
            (matmul::weight_type_id(a.typ), u(a.ne[1]), u(units))
        else {
            return Ok(None);
        };
        params.extend([typ, nr, aa[j][0], aa[j][2], d[0], d[2], first_unit, 0]);
        units += a.ne[1] * cols;
    }
    let (entry, workgroups) = shaped.unwrap_or(("mul_mat_exact", (units as u64).div_ceil(64)));
    out.push(Dispatch {
        pipeline: ctx.pipeline(Source::MatMul, entry),
        params,
        bindings: vec![va.window, b_win, vd.window],
        groups: groups(ctx.gpu, workgroups)?,
    });
    Ok(Some(out))
}
