//! RWKV_WKV6, GATED_LINEAR_ATTN and RWKV_WKV7: linear-attention recurrences over a per-(sequence, head)
//! S x S state. The result is `[S * H, n_tokens + S * n_seqs]`: the outputs, then the final states.
//! Tokens are split evenly between the sequences (token t belongs to sequence t / (T / n_seqs)).
//! Element updates use fused multiply-adds where ggml-cpu's SIMD path does.

use rayon::prelude::*;

use super::seq_io::{dot, ensure, f32_dst, f32_src, put, values, want_ne};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{Graph, MAX_SRC, Op, Tensor};

/// Source slots: (state slot, sources shaped {S, H, T}, the source giving S/H/T).
fn layout(op: Op) -> (usize, &'static [usize], usize) {
    match op {
        Op::RwkvWkv6 => (5, &[0, 1, 2, 4], 0),
        Op::GatedLinearAttn => (4, &[0, 1, 2, 3], 0),
        _ => (6, &[0, 1, 2, 3, 4, 5], 2),
    }
}

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = f32_dst(graph, node)?;
    let op = d.op.name();
    let (state_k, toks, shape_k) = layout(d.op);
    let [s, h, t, _] = f32_src(graph, node, shape_k)?.ne;
    for &k in toks {
        let x = f32_src(graph, node, k)?;
        want_ne(op, &format!("source {k}"), x, [s, h, t, 1])?;
    }
    let state = f32_src(graph, node, state_k)?;
    let n_seqs = state.ne[1];
    ensure(state.nelements() == s * s * h * n_seqs, || {
        format!("{op}: state {:?} is not S*S*H x n_seqs", state.ne)
    })?;
    ensure(n_seqs >= 1 && t.is_multiple_of(n_seqs), || {
        format!("{op}: {t} tokens do not split into {n_seqs} sequences")
    })?;
    if d.op == Op::RwkvWkv6 {
        want_ne(op, "time_faaaa", f32_src(graph, node, 3)?, [s, h, 1, 1])?;
    }
    want_ne(op, "result", d, [s * h, t + s * n_seqs, 1, 1])
}

/// The inputs of one head at one token: `S` values each.
struct Tok<'a> {
    f: [&'a [f32]; 6],
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op;
    let name = op.name();
    let (state_k, toks, shape_k) = layout(op);
    let mut ins: Vec<(&Tensor, Vec<f32>)> = Vec::with_capacity(state_k + 1);
    for k in 0..=state_k {
        ins.push(values(src, k, name)?);
    }
    let [s, h, t, _] = ins[shape_k].0.ne;
    let n_seqs = ins[state_k].0.ne[1].max(1);
    let per_seq = t / n_seqs;
    let c = s * h;
    let scale = dst.t.param_f32(0);
    let state_in = &ins[state_k].1;

    // Each (sequence, head) is independent: its S x S state, row i (key index) of S columns j.
    let units: Vec<(Vec<f32>, Vec<f32>)> = (0..n_seqs * h)
        .into_par_iter()
        .map(|u| {
            let (seq, hd) = (u / h, u % h);
            let base = seq * s * c + hd * s * s;
            let mut state = state_in[base..base + s * s].to_vec();
            let mut y = vec![0f32; per_seq * s];
            for (ti, out) in y.chunks_exact_mut(s.max(1)).enumerate() {
                let at = (seq * per_seq + ti) * c + hd * s;
                let tok = Tok {
                    f: std::array::from_fn(|k| match ins.get(k) {
                        Some((_, v)) if toks.contains(&k) => &v[at..at + s],
                        _ => &[][..],
                    }),
                };
                match op {
                    Op::RwkvWkv6 => {
                        let tf = &ins[3].1[hd * s..hd * s + s];
                        wkv6_step(&tok, tf, &mut state, out)
                    }
                    Op::GatedLinearAttn => gla_step(&tok, scale, &mut state, out),
                    _ => wkv7_step(&tok, &mut state, out),
                }
            }
            (y, state)
        })
        .collect();

    for (u, (y, state)) in units.iter().enumerate() {
        let (seq, hd) = (u / h, u % h);
        for (ti, out) in y.chunks_exact(s.max(1)).enumerate() {
            put(dst.data, (seq * per_seq + ti) * c + hd * s, out, name)?;
        }
        put(dst.data, t * c + seq * s * c + hd * s * s, state, name)?;
    }
    Ok(())
}

/// WKV6 (sources k, v, r, _, time_decay): out += r_i (u_i k_i v + S_i); S_i = w_i S_i + k_i v.
fn wkv6_step(x: &Tok<'_>, tf: &[f32], state: &mut [f32], out: &mut [f32]) {
    let [k, v, r, _, td, _] = x.f;
    let s = out.len();
    for (i, row) in state.chunks_exact_mut(s).enumerate() {
        let (k_i, r_i, u_i, w_i) = (k[i], r[i], tf[i], td[i]);
        for j in 0..s {
            let kv = v[j] * k_i;
            let prev = row[j];
            let temp = kv.mul_add(u_i, prev);
            out[j] = temp.mul_add(r_i, out[j]);
            row[j] = prev.mul_add(w_i, kv);
        }
    }
}

/// GLA (sources k, v, q, g): S_i = g_i S_i + k_i v; out += (scale q_i) S_i.
fn gla_step(x: &Tok<'_>, scale: f32, state: &mut [f32], out: &mut [f32]) {
    let [k, v, q, g, _, _] = x.f;
    let s = out.len();
    for (i, row) in state.chunks_exact_mut(s).enumerate() {
        let (k_i, q_i, g_i) = (k[i], q[i] * scale, g[i]);
        for j in 0..s {
            let kv = v[j] * k_i;
            let temp = row[j].mul_add(g_i, kv);
            out[j] = temp.mul_add(q_i, out[j]);
            row[j] = temp;
        }
    }
}

/// WKV7 (sources r, w, k, v, a, b), state row i per value index:
/// sa = a . S_i; S_i = S_i * w + v_i k + sa b; out_i = S_i . r.
fn wkv7_step(x: &Tok<'_>, state: &mut [f32], out: &mut [f32]) {
    let [r, w, k, v, a, b] = x.f;
    let s = out.len();
    for (i, row) in state.chunks_exact_mut(s).enumerate() {
        let sa = dot(a, row);
        let v_i = v[i];
        for j in 0..s {
            let kv = v_i * k[j];
            row[j] = row[j].mul_add(w[j], kv);
            row[j] = sa.mul_add(b[j], row[j]);
        }
        out[i] = dot(row, r);
    }
}

#[cfg(test)]
#[path = "rwkv_tests.rs"]
mod tests;
