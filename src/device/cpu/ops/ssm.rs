//! SSM_CONV (Mamba's depthwise causal conv1d) and SSM_SCAN (the selective scan, Mamba-1's per-state
//! decay and Mamba-2's scalar per-head decay, with optional rollback snapshots), as ggml-cpu computes
//! them: f32 throughout, sums in token/state order.

use rayon::prelude::*;

use super::seq_io::{ensure, f32_dst, f32_src, put, softplus, values, want_ne};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    match graph.tensors[node].op {
        Op::SsmConv => check_conv(graph, node),
        _ => check_scan(graph, node),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    match dst.t.op {
        Op::SsmConv => conv(src, dst),
        _ => scan(src, dst),
    }
}

fn check_conv(graph: &Graph, node: usize) -> Result<(), String> {
    let (sx, c, d) = (
        f32_src(graph, node, 0)?,
        f32_src(graph, node, 1)?,
        f32_dst(graph, node)?,
    );
    let (d_conv, d_inner) = (c.ne[0], c.ne[1]);
    ensure(sx.ne[3] == 1 && c.ne[2] == 1 && c.ne[3] == 1, || {
        format!(
            "SSM_CONV: sx {:?} must be 3-D, c {:?} a matrix",
            sx.ne, c.ne
        )
    })?;
    ensure(d_conv >= 1 && sx.ne[0] + 1 >= d_conv, || {
        format!(
            "SSM_CONV: sx.ne0 {} shorter than d_conv {d_conv} - 1",
            sx.ne[0]
        )
    })?;
    ensure(sx.ne[1] == d_inner, || {
        format!("SSM_CONV: sx.ne1 {} != d_inner {d_inner}", sx.ne[1])
    })?;
    let n_t = sx.ne[0] + 1 - d_conv;
    want_ne("SSM_CONV", "result", d, [d_inner, n_t, sx.ne[2], 1])
}

/// x[i1, t, s] = sum over i0 < d_conv of sx[t + i0, i1, s] * c[i0, i1] (an f32 sum, as ggml).
fn conv(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let (sx_t, sx) = values(src, 0, "SSM_CONV")?;
    let (c_t, c) = values(src, 1, "SSM_CONV")?;
    let (nc, ncs, nr) = (c_t.ne[0], sx_t.ne[0], sx_t.ne[1]);
    let [_, n_t, n_s, _] = dst.t.ne;
    let mut out = vec![0f32; nr * n_t * n_s];
    if nr == 0 {
        return Ok(());
    }
    out.par_chunks_mut(nr).enumerate().for_each(|(ts, y)| {
        let (t, s) = (ts % n_t.max(1), ts / n_t.max(1));
        for (i1, yv) in y.iter_mut().enumerate() {
            let win = &sx[(s * nr + i1) * ncs + t..][..nc];
            let w = &c[i1 * nc..][..nc];
            *yv = win.iter().zip(w).fold(0f32, |acc, (a, b)| acc + a * b);
        }
    });
    put(dst.data, 0, &out, "SSM_CONV")
}

/// Sources: s {d_state, head_dim, n_head, >= n_seqs}, x {head_dim, n_head, n_tokens, n_seqs},
/// dt {n_head, n_tokens, n_seqs}, A {d_state or 1, n_head}, B and C {d_state, n_group, n_tokens,
/// n_seqs}, ids {n_seqs} (i32, which row of s each sequence starts from).
fn check_scan(graph: &Graph, node: usize) -> Result<(), String> {
    const OP: &str = "SSM_SCAN";
    let s = f32_src(graph, node, 0)?;
    let x = f32_src(graph, node, 1)?;
    let dt = f32_src(graph, node, 2)?;
    let a = f32_src(graph, node, 3)?;
    let b = f32_src(graph, node, 4)?;
    let c = f32_src(graph, node, 5)?;
    let d = f32_dst(graph, node)?;
    let ids = graph
        .src(node, 6)
        .ok_or_else(|| format!("{OP}: missing source 6"))?;
    ensure(ids.typ == GgmlType::I32, || {
        format!("{OP}: ids must be i32")
    })?;
    let [d_state, head_dim, n_head, n_seqs_s] = s.ne;
    let [_, _, n_tokens, n_seqs] = x.ne;
    let k = graph.tensors[node].param_i32(0);
    ensure(k >= 1, || format!("{OP}: snapshot count {k} < 1"))?;
    // ggml-cpu's supports_op: rollback snapshots only with Mamba-2's scalar decay.
    ensure(k == 1 || a.ne[0] == 1, || {
        format!("{OP}: K = {k} needs a scalar decay per head")
    })?;
    ensure(s.is_contiguous() && a.is_contiguous(), || {
        format!("{OP}: s and A must be contiguous")
    })?;
    want_ne(OP, "x", x, [head_dim, n_head, n_tokens, n_seqs])?;
    want_ne(OP, "dt", dt, [n_head, n_tokens, n_seqs, 1])?;
    ensure(a.ne[1] == n_head && a.ne[2] == 1 && a.ne[3] == 1, || {
        format!("{OP}: A is {:?}", a.ne)
    })?;
    ensure(a.ne[0] == 1 || a.ne[0] == d_state, || {
        format!("{OP}: A.ne0 {} is neither 1 nor d_state", a.ne[0])
    })?;
    let n_group = b.ne[1];
    want_ne(OP, "B", b, [d_state, n_group, n_tokens, n_seqs])?;
    want_ne(OP, "C", c, b.ne)?;
    ensure(n_group >= 1 && n_head % n_group == 0, || {
        format!("{OP}: n_head {n_head} not a multiple of n_group {n_group}")
    })?;
    want_ne(OP, "ids", ids, [n_seqs, 1, 1, 1])?;
    ensure(n_seqs <= n_seqs_s, || {
        format!("{OP}: {n_seqs} sequences but s holds {n_seqs_s}")
    })?;
    let want = x.nelements() + k as usize * d_state * head_dim * n_head * n_seqs;
    ensure(d.nelements() == want, || {
        format!(
            "{OP}: result has {} elements, expected {want}",
            d.nelements()
        )
    })
}

/// One (sequence, head) of a scan: its outputs per token and the states it stores.
struct ScanUnit {
    y: Vec<f32>,
    /// `(slot, state)`: slot 0 is the final state, slot j the state j tokens before the end.
    states: Vec<(usize, Vec<f32>)>,
}

fn scan(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    const OP: &str = "SSM_SCAN";
    let (s_t, s0) = values(src, 0, OP)?;
    let (x_t, x) = values(src, 1, OP)?;
    let (_, dt) = values(src, 2, OP)?;
    let (a_t, a) = values(src, 3, OP)?;
    let (b_t, b) = values(src, 4, OP)?;
    let (_, c) = values(src, 5, OP)?;
    let ids_src = src[6]
        .as_ref()
        .ok_or_else(|| DeviceError::op(OP, "missing ids"))?;
    let [nc, nr, nh, n_slots] = s_t.ne;
    let [_, _, nt, ns] = x_t.ne;
    let ng = b_t.ne[1];
    let k = usize::try_from(dst.t.param_i32(0)).unwrap_or(1).max(1);
    let mamba2 = a_t.ne[0] == 1;
    let state_len = nc * nr;
    let per_group = (nh / ng.max(1)).max(1);
    let ids = (0..ns)
        .map(|i| {
            super::seq_io::load_i32(ids_src.data, i * ids_src.t.nb[0])
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v < n_slots)
                .ok_or_else(|| DeviceError::op(OP, format!("ids[{i}] outside s")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let units: Vec<ScanUnit> = (0..ns * nh)
        .into_par_iter()
        .map(|u| {
            let (seq, h) = (u / nh, u % nh);
            let g = h / per_group;
            let mut state = s0[(ids[seq] * nh + h) * state_len..][..state_len].to_vec();
            let mut y = vec![0f32; nt * nr];
            let mut states = Vec::new();
            for t in 0..nt {
                let tok = seq * nt + t;
                let dt_sp = softplus(dt[tok * nh + h]);
                let xs = &x[(tok * nh + h) * nr..][..nr];
                let bs = &b[(tok * ng + g) * nc..][..nc];
                let cs = &c[(tok * ng + g) * nc..][..nc];
                let ys = &mut y[t * nr..][..nr];
                if mamba2 {
                    let d_a = (dt_sp * a[h]).exp();
                    for (i1, st) in state.chunks_exact_mut(nc).enumerate() {
                        let x_dt = xs[i1] * dt_sp;
                        let mut sum = 0f32;
                        for i0 in 0..nc {
                            let v = st[i0] * d_a + bs[i0] * x_dt;
                            sum += v * cs[i0];
                            st[i0] = v;
                        }
                        ys[i1] = sum;
                    }
                } else {
                    let a_h = &a[h * nc..][..nc];
                    for (i1, st) in state.chunks_exact_mut(nc).enumerate() {
                        let x_dt = xs[i1] * dt_sp;
                        let mut sum = 0f32;
                        for i0 in 0..nc {
                            let v = st[i0] * (dt_sp * a_h[i0]).exp() + bs[i0] * x_dt;
                            sum += v * cs[i0];
                            st[i0] = v;
                        }
                        ys[i1] = sum;
                    }
                }
                let slot = nt - 1 - t;
                if k > 1 && slot > 0 && slot < k {
                    states.push((slot, state.clone()));
                }
            }
            states.push((0, state));
            ScanUnit { y, states }
        })
        .collect();

    // y is laid out like x; the states after it, slot-major: [K][n_seqs][n_head][head_dim][d_state].
    let s_off = x_t.nelements();
    for (u, unit) in units.iter().enumerate() {
        let (seq, h) = (u / nh, u % nh);
        for (t, ys) in unit.y.chunks_exact(nr.max(1)).enumerate() {
            put(dst.data, ((seq * nt + t) * nh + h) * nr, ys, OP)?;
        }
        for (slot, st) in &unit.states {
            let at = s_off + ((slot * ns + seq) * nh + h) * state_len;
            put(dst.data, at, st, OP)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "ssm_tests.rs"]
mod tests;
