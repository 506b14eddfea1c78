//! DeepSeek-V4 hyper-connection ops (DSV4_HC_COMB, DSV4_HC_PRE, DSV4_HC_POST) and LIGHTNING_INDEXER
//! (DeepSeek sparse attention's key scorer), as ggml-cpu computes them. Sources honour their strides.

use rayon::prelude::*;

use super::rows::cmax;
use super::seq_io::{dot, ensure, f32_dst, f32_src, put, values, want_ne};
use super::{Dst, Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op};

/// The hyper-connection count ggml-cpu's HC_COMB kernel is written for.
const HC: usize = 4;

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = f32_dst(graph, node)?;
    match d.op {
        Op::Dsv4HcComb => {
            let (m, s, b) = (
                f32_src(graph, node, 0)?,
                f32_src(graph, node, 1)?,
                f32_src(graph, node, 2)?,
            );
            let n_tokens = m.ne[1];
            want_ne("DSV4_HC_COMB", "mixes", m, [(2 + HC) * HC, n_tokens, 1, 1])?;
            ensure(s.ne[0] >= 3, || "DSV4_HC_COMB: scale needs 3 values".into())?;
            want_ne("DSV4_HC_COMB", "base", b, [(2 + HC) * HC, 1, 1, 1])?;
            ensure(d.param_i32(1) > 0, || "DSV4_HC_COMB: n_iter <= 0".into())?;
            want_ne("DSV4_HC_COMB", "result", d, [HC, HC, n_tokens, 1])
        }
        Op::Dsv4HcPre => {
            let (x, w) = (f32_src(graph, node, 0)?, f32_src(graph, node, 1)?);
            let [n_embd, hc, n_tokens, _] = x.ne;
            want_ne("DSV4_HC_PRE", "x", x, [n_embd, hc, n_tokens, 1])?;
            let want_w = if d.param_i32(1) != 0 {
                [n_embd, hc, n_tokens, 1]
            } else {
                [hc, n_tokens, 1, 1]
            };
            want_ne("DSV4_HC_PRE", "weights", w, want_w)?;
            want_ne("DSV4_HC_PRE", "result", d, [n_embd, n_tokens, 1, 1])
        }
        Op::Dsv4HcPost => {
            let (x, r, p) = (
                f32_src(graph, node, 0)?,
                f32_src(graph, node, 1)?,
                f32_src(graph, node, 2)?,
            );
            let [n_embd, n_tokens, _, _] = x.ne;
            let hc = r.ne[1];
            want_ne("DSV4_HC_POST", "x", x, [n_embd, n_tokens, 1, 1])?;
            want_ne("DSV4_HC_POST", "residual", r, [n_embd, hc, n_tokens, 1])?;
            want_ne("DSV4_HC_POST", "post", p, [hc, n_tokens, 1, 1])?;
            if graph.src(node, 3).is_some() {
                let c = f32_src(graph, node, 3)?;
                want_ne("DSV4_HC_POST", "comb", c, [hc, hc, n_tokens, 1])?;
            }
            want_ne("DSV4_HC_POST", "result", d, [n_embd, hc, n_tokens, 1])
        }
        _ => check_indexer(graph, node),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    match dst.t.op {
        Op::Dsv4HcComb => hc_comb(src, dst),
        Op::Dsv4HcPre => hc_pre(src, dst),
        Op::Dsv4HcPost => hc_post(src, dst),
        _ => indexer(src, dst),
    }
}

/// Per token: the 4x4 mixing block of `mixes` (after the 2*HC pre/post weights), scaled and biased,
/// softmaxed per source column, plus eps, then Sinkhorn-normalised (columns, then rows+columns
/// `n_iter - 1` more times). comb[dst + HC*src].
fn hc_comb(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    const OP: &str = "DSV4_HC_COMB";
    let (_, mixes) = values(src, 0, OP)?;
    let (_, scale) = values(src, 1, OP)?;
    let (_, base) = values(src, 2, OP)?;
    let eps = dst.t.param_f32(0);
    let n_iter = dst.t.param_i32(1);
    let scale_comb = scale[2];
    let dim = (2 + HC) * HC;
    let mut out = vec![0f32; HC * HC * dst.t.ne[2]];
    out.par_chunks_mut(HC * HC)
        .enumerate()
        .for_each(|(it, comb)| {
            let m = &mixes[it * dim + 2 * HC..][..HC * HC];
            let b = &base[2 * HC..][..HC * HC];
            for col in 0..HC {
                let c = &mut comb[HC * col..][..HC];
                let mut max = f32::NEG_INFINITY;
                for i in 0..HC {
                    c[i] = m[HC * col + i] * scale_comb + b[HC * col + i];
                    max = cmax(max, c[i]);
                }
                let mut sum = 0f32;
                for v in c.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                let inv = 1.0 / sum;
                c.iter_mut().for_each(|v| *v = *v * inv + eps);
            }
            norm_cols(comb, eps);
            for _ in 1..n_iter {
                norm_rows(comb, eps);
                norm_cols(comb, eps);
            }
        });
    put(dst.data, 0, &out, OP)
}

/// Each destination index `d` over its sources: comb[d + HC*s] /= eps + sum_s.
fn norm_cols(comb: &mut [f32], eps: f32) {
    for d in 0..HC {
        let sum = (0..HC).fold(eps, |a, s| a + comb[d + HC * s]);
        let inv = 1.0 / sum;
        (0..HC).for_each(|s| comb[d + HC * s] *= inv);
    }
}

/// Each source index `s` over its destinations.
fn norm_rows(comb: &mut [f32], eps: f32) {
    for c in comb.chunks_exact_mut(HC) {
        let sum = c.iter().fold(eps, |a, &v| a + v);
        let inv = 1.0 / sum;
        c.iter_mut().for_each(|v| *v *= inv);
    }
}

/// out[i0, t] = scale * sum_h x[i0, h, t] * w, w = weights[h, t] or sigmoid(gate[i0, h, t]).
fn hc_pre(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    const OP: &str = "DSV4_HC_PRE";
    let (x_t, x) = values(src, 0, OP)?;
    let (_, w) = values(src, 1, OP)?;
    let [n_embd, hc, _, _] = x_t.ne;
    let scale = dst.t.param_f32(0);
    let gated = dst.t.param_i32(1) != 0;
    let mut out = vec![0f32; dst.t.nelements()];
    if n_embd == 0 {
        return Ok(());
    }
    out.par_chunks_mut(n_embd).enumerate().for_each(|(it, o)| {
        for (i0, ov) in o.iter_mut().enumerate() {
            let mut sum = 0f32;
            for ih in 0..hc {
                let xv = x[(it * hc + ih) * n_embd + i0];
                let wv = if gated {
                    1.0 / (1.0 + (-w[(it * hc + ih) * n_embd + i0]).exp())
                } else {
                    w[it * hc + ih]
                };
                sum += xv * wv;
            }
            *ov = scale * sum;
        }
    });
    put(dst.data, 0, &out, OP)
}

/// out[i0, d, t] = x[i0, t] post[d, t] + sum_s residual[i0, s, t] comb[d, s, t]
/// (without comb: + residual[i0, d, t]).
fn hc_post(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    const OP: &str = "DSV4_HC_POST";
    let (x_t, x) = values(src, 0, OP)?;
    let (r_t, r) = values(src, 1, OP)?;
    let (_, p) = values(src, 2, OP)?;
    let comb = match src[3] {
        Some(_) => Some(values(src, 3, OP)?.1),
        None => None,
    };
    let (n_embd, hc) = (x_t.ne[0], r_t.ne[1]);
    let mut out = vec![0f32; dst.t.nelements()];
    if n_embd == 0 {
        return Ok(());
    }
    out.par_chunks_mut(n_embd).enumerate().for_each(|(row, o)| {
        let (d, it) = (row % hc, row / hc);
        let pv = p[it * hc + d];
        for (i0, ov) in o.iter_mut().enumerate() {
            let mut sum = x[it * n_embd + i0] * pv;
            match &comb {
                Some(c) => {
                    for s in 0..hc {
                        sum += r[(it * hc + s) * n_embd + i0] * c[(it * hc + s) * hc + d];
                    }
                }
                None => sum += r[(it * hc + d) * n_embd + i0],
            }
            *ov = sum;
        }
    });
    put(dst.data, 0, &out, OP)
}

/// q {E, n_head, n_tokens, n_stream} f32, k {E, 1, n_kv, n_stream} (any type with a to-float),
/// weights {n_head, n_tokens, 1, n_stream} f32, mask {n_kv, n_tokens, 1, n_mask} f16 (n_stream a
/// multiple of n_mask); result {n_kv, n_tokens, 1, n_stream}.
fn check_indexer(graph: &Graph, node: usize) -> Result<(), String> {
    const OP: &str = "LIGHTNING_INDEXER";
    let d = f32_dst(graph, node)?;
    let q = f32_src(graph, node, 0)?;
    let w = f32_src(graph, node, 2)?;
    let k = graph
        .src(node, 1)
        .ok_or_else(|| format!("{OP}: missing source 1"))?;
    let m = graph
        .src(node, 3)
        .ok_or_else(|| format!("{OP}: missing source 3"))?;
    ensure(m.typ == GgmlType::F16, || format!("{OP}: mask must be f16"))?;
    ensure(
        matches!(k.typ, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16) || k.typ.is_quantized(),
        || format!("{OP}: unsupported K type {}", k.typ.name()),
    )?;
    ensure(k.ne[0].is_multiple_of(k.typ.block_size()), || {
        format!("{OP}: K rows are not whole blocks")
    })?;
    let [e, nh, nt, ns] = q.ne;
    let n_kv = k.ne[2];
    want_ne(OP, "k", k, [e, 1, n_kv, ns])?;
    want_ne(OP, "weights", w, [nh, nt, 1, ns])?;
    let nm = m.ne[3];
    want_ne(OP, "mask", m, [n_kv, nt, 1, nm])?;
    ensure(nm >= 1 && ns.is_multiple_of(nm), || {
        format!("{OP}: {ns} streams for {nm} masks")
    })?;
    want_ne(OP, "result", d, [n_kv, nt, 1, ns])
}

/// out[ik, t, s] = sum_h max(q[:, h, t, s] . k[:, ik, s], 0) w[h, t, s] + mask[ik, t, s % n_mask].
fn indexer(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    const OP: &str = "LIGHTNING_INDEXER";
    let (q_t, q) = values(src, 0, OP)?;
    let k_src = src[1]
        .as_ref()
        .ok_or_else(|| DeviceError::op(OP, "missing source 1"))?;
    let (_, w) = values(src, 2, OP)?;
    let (m_t, m) = values(src, 3, OP)?;
    let [e, nh, nt, ns] = q_t.ne;
    let n_kv = dst.t.ne[0];
    let nm = m_t.ne[3].max(1);
    // Keys dequantized once per stream (ggml converts each row to f32 the same way).
    let mut keys = vec![0f32; e * n_kv * ns];
    for (r, row) in keys.chunks_exact_mut(e.max(1)).enumerate() {
        access::read_row(k_src.t, k_src.data, 0, r % n_kv, r / n_kv, row)?;
    }
    let mut out = vec![0f32; n_kv * nt * ns];
    if n_kv == 0 || e == 0 {
        return put(dst.data, 0, &out, OP);
    }
    out.par_chunks_mut(n_kv).enumerate().for_each(|(row, o)| {
        let (t, s) = (row % nt, row / nt);
        let wr = &w[(s * nt + t) * nh..][..nh];
        let mr = &m[((s % nm) * nt + t) * n_kv..][..n_kv];
        for (ik, ov) in o.iter_mut().enumerate() {
            let kr = &keys[(s * n_kv + ik) * e..][..e];
            let mut score = 0f32;
            for (hd, &wv) in wr.iter().enumerate() {
                let qr = &q[((s * nt + t) * nh + hd) * e..][..e];
                score += cmax(dot(qr, kr), 0.0) * wv;
            }
            *ov = score + mr[ik];
        }
    });
    put(dst.data, 0, &out, OP)
}

#[cfg(test)]
#[path = "dsv4_tests.rs"]
mod tests;
