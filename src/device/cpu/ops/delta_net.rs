//! GATED_DELTA_NET (Qwen3-Next / Kimi linear attention) and SOLVE_TRI (forward substitution), as
//! ggml-cpu computes them.
//!
//! GATED_DELTA_NET keeps, per (head, sequence), a S_v x S_v state stored transposed (`m[j][i] = S[i][j]`)
//! and per token: decays it by exp(g) (a scalar, or per key row with KDA), computes
//! `delta = beta (v - S^T k)`, adds `k delta^T`, and outputs `S^T q / sqrt(S_v)`. The result is
//! `[S_v * H, n_tokens * n_seqs + K * S_v * n_seqs]`: outputs, then K state snapshots (slot 0 the
//! final state, slot j the state j tokens earlier; slots older than the sequence stay untouched).

use rayon::prelude::*;

use super::seq_io::{dot, ensure, f32_dst, f32_src, put, values, want_ne};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{Graph, MAX_SRC, Op};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    match graph.tensors[node].op {
        Op::SolveTri => check_solve_tri(graph, node),
        _ => check_gdn(graph, node),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    match dst.t.op {
        Op::SolveTri => solve_tri(src, dst),
        _ => gdn(src, dst),
    }
}

fn check_gdn(graph: &Graph, node: usize) -> Result<(), String> {
    const OP: &str = "GATED_DELTA_NET";
    let q = f32_src(graph, node, 0)?;
    let k = f32_src(graph, node, 1)?;
    let v = f32_src(graph, node, 2)?;
    let g = f32_src(graph, node, 3)?;
    let beta = f32_src(graph, node, 4)?;
    let state = f32_src(graph, node, 5)?;
    let d = f32_dst(graph, node)?;
    let [s_v, h, n_tokens, n_seqs] = v.ne;
    for (what, x) in [("q", q), ("k", k)] {
        // Heads and sequences of q/k broadcast onto v's (head % ne1, seq / (n_seqs / ne3)).
        ensure(
            x.ne[0] == s_v
                && x.ne[2] == n_tokens
                && x.ne[1] >= 1
                && x.ne[3] >= 1
                && n_seqs.is_multiple_of(x.ne[3]),
            || format!("{OP}: {what} {:?} does not fit v {:?}", x.ne, v.ne),
        )?;
    }
    ensure(g.ne[0] == 1 || g.ne[0] == s_v, || {
        format!("{OP}: g.ne0 {} is neither 1 nor S_v", g.ne[0])
    })?;
    want_ne(OP, "g", g, [g.ne[0], h, n_tokens, n_seqs])?;
    want_ne(OP, "beta", beta, [1, h, n_tokens, n_seqs])?;
    want_ne(OP, "state", state, [s_v, s_v, h, n_seqs])?;
    let slots = graph.tensors[node].param_i32(0);
    ensure(slots >= 1, || format!("{OP}: snapshot count {slots} < 1"))?;
    let rows = n_tokens * n_seqs + slots as usize * s_v * n_seqs;
    want_ne(OP, "result", d, [s_v * h, rows, 1, 1])
}

fn gdn(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    const OP: &str = "GATED_DELTA_NET";
    let (q_t, q) = values(src, 0, OP)?;
    let (k_t, k) = values(src, 1, OP)?;
    let (v_t, v) = values(src, 2, OP)?;
    let (g_t, g) = values(src, 3, OP)?;
    let (_, beta) = values(src, 4, OP)?;
    let (_, state_in) = values(src, 5, OP)?;
    let [s_v, h, n_tokens, n_seqs] = v_t.ne;
    let slots = usize::try_from(dst.t.param_i32(0)).unwrap_or(1).max(1);
    let kda = g_t.ne[0] == s_v && s_v != 1;
    let scale = 1.0f32 / (s_v as f32).sqrt();
    let ss = s_v * s_v;
    // Row of head `hd`, token `t`, sequence `seq` in a {S, heads, T, seqs} tensor.
    let row = |ne: [usize; 4], hd: usize, t: usize, seq: usize| {
        let (heads, seqs) = (ne[1].max(1), ne[3].max(1));
        let seq = seq / (n_seqs / seqs).max(1);
        ((seq * n_tokens + t) * heads + hd % heads) * ne[0]
    };

    // Per (head, sequence): outputs per token and the (slot, state) snapshots it stores.
    type Unit = (Vec<f32>, Vec<(usize, Vec<f32>)>);
    let units: Vec<Unit> = (0..h * n_seqs)
        .into_par_iter()
        .map(|u| {
            let (hd, seq) = (u % h, u / h);
            let mut m = state_in[(seq * h + hd) * ss..][..ss].to_vec();
            let mut out = vec![0f32; n_tokens * s_v];
            let mut snaps = Vec::new();
            let mut delta = vec![0f32; s_v];
            for t in 0..n_tokens {
                let qd = &q[row(q_t.ne, hd, t, seq)..][..s_v];
                let kd = &k[row(k_t.ne, hd, t, seq)..][..s_v];
                let vd = &v[row(v_t.ne, hd, t, seq)..][..s_v];
                let gd = &g[row(g_t.ne, hd, t, seq)..][..g_t.ne[0]];
                let b = beta[row([1, h, n_tokens, n_seqs], hd, t, seq)];
                if kda {
                    let e: Vec<f32> = gd.iter().map(|x| x.exp()).collect();
                    for mj in m.chunks_exact_mut(s_v) {
                        mj.iter_mut().zip(&e).for_each(|(x, e)| *x *= e);
                    }
                } else {
                    let e = gd[0].exp();
                    m.iter_mut().for_each(|x| *x *= e);
                }
                for (j, mj) in m.chunks_exact(s_v).enumerate() {
                    delta[j] = (vd[j] - dot(mj, kd)) * b;
                }
                for (mj, &dj) in m.chunks_exact_mut(s_v).zip(&delta) {
                    mj.iter_mut()
                        .zip(kd)
                        .for_each(|(x, &ki)| *x = ki.mul_add(dj, *x));
                }
                let o = &mut out[t * s_v..][..s_v];
                for (oj, mj) in o.iter_mut().zip(m.chunks_exact(s_v)) {
                    *oj = dot(mj, qd) * scale;
                }
                let slot = n_tokens - 1 - t;
                if slots > 1 && slot > 0 && slot < slots {
                    snaps.push((slot, m.clone()));
                }
            }
            if n_tokens > 0 || slots == 1 {
                snaps.push((0, m));
            }
            (out, snaps)
        })
        .collect();

    let attn = s_v * h * n_tokens * n_seqs;
    for (u, (out, snaps)) in units.iter().enumerate() {
        let (hd, seq) = (u % h, u / h);
        for (t, o) in out.chunks_exact(s_v.max(1)).enumerate() {
            put(dst.data, ((seq * n_tokens + t) * h + hd) * s_v, o, OP)?;
        }
        for (slot, m) in snaps {
            put(
                dst.data,
                attn + (slot * n_seqs + seq) * h * ss + hd * ss,
                m,
                OP,
            )?;
        }
    }
    Ok(())
}

/// A {n, n, B1, B2} lower triangular, B {k, n, B1, B2}: X with A X = B, by forward substitution.
fn check_solve_tri(graph: &Graph, node: usize) -> Result<(), String> {
    const OP: &str = "SOLVE_TRI";
    let a = f32_src(graph, node, 0)?;
    let b = f32_src(graph, node, 1)?;
    let d = f32_dst(graph, node)?;
    ensure(a.ne[0] == a.ne[1], || {
        format!("{OP}: A {:?} is not square", a.ne)
    })?;
    want_ne(OP, "B", b, [b.ne[0], a.ne[1], a.ne[2], a.ne[3]])?;
    want_ne(OP, "result", d, b.ne)
}

fn solve_tri(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    const OP: &str = "SOLVE_TRI";
    let (a_t, a) = values(src, 0, OP)?;
    let (_, b) = values(src, 1, OP)?;
    let [k, n, _, _] = dst.t.ne;
    let nn = a_t.ne[0] * a_t.ne[1];
    let mut x = vec![0f32; b.len()];
    if k * n == 0 {
        return Ok(());
    }
    // Row by row, all columns at once; each element still sums over t in order, as ggml's
    // column-at-a-time loop does.
    x.par_chunks_mut(k * n)
        .zip(b.par_chunks(k * n))
        .enumerate()
        .for_each(|(bi, (xb, bb))| {
            let ab = &a[bi * nn..][..nn];
            let mut sum = vec![0f32; k];
            for i in 0..n {
                sum.iter_mut().for_each(|s| *s = 0.0);
                for t in 0..i {
                    let a_it = ab[i * n + t];
                    let xt = &xb[t * k..][..k];
                    sum.iter_mut().zip(xt).for_each(|(s, &xv)| *s += a_it * xv);
                }
                let diag = ab[i * n + i];
                let (xi, bi_row) = (&mut xb[i * k..][..k], &bb[i * k..][..k]);
                for ((xv, &bv), &s) in xi.iter_mut().zip(bi_row).zip(&sum) {
                    *xv = (bv - s) / diag;
                }
            }
        });
    put(dst.data, 0, &x, OP)
}

#[cfg(test)]
#[path = "delta_net_tests.rs"]
mod tests;
