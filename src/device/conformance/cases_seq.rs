//! Cases for the sequence-model ops: Mamba (SSM_CONV/SSM_SCAN), RWKV and gated linear attention,
//! gated delta net, SOLVE_TRI, DeepSeek-V4's hyper-connections and lightning indexer. Shapes and
//! op_params as ggml's constructors build them, from test-backend-ops' cases scaled down; tolerances
//! are test-backend-ops' for the op.

use super::cases::{DEFAULT, case, pf, pi, with_f32};
use super::{Case, CaseBuilder};
use crate::device::host_kernels::testkit::HostTensor;
use crate::ggml::{GgmlType, Op};

use GgmlType::{F16, F32, Q8_0};

pub fn all(v: &mut Vec<Case>) {
    mamba(v);
    linear_attention(v);
    delta_net(v);
    deepseek(v);
}

/// A leaf of `ne` (f32) with uniform values in [lo, hi).
fn uniform(b: &mut CaseBuilder, ne: [usize; 4], lo: f32, hi: f32) -> usize {
    b.rand(F32, ne, lo, hi)
}

fn mamba(v: &mut Vec<Case>) {
    // test_ssm_conv: sx [d_conv - 1 + n_t, d_inner, n_s], c [d_conv, d_inner] -> [d_inner, n_t, n_s].
    v.push(case(100, "SSM_CONV".into(), DEFAULT, |b| {
        let (d_conv, d_inner, n_t, n_s) = (4, 16, 8, 2);
        let sx = uniform(b, [d_conv - 1 + n_t, d_inner, n_s, 1], -1.0, 1.0);
        let c = uniform(b, [d_conv, d_inner, 1, 1], -1.0, 1.0);
        b.node(F32, [d_inner, n_t, n_s, 1], Op::SsmConv, [0; 16], &[sx, c]);
    }));
    // test_ssm_scan: Mamba-1 (head_dim 1, A [d_state, n_head]) and Mamba-2 (scalar A per head, groups),
    // and Mamba-2 keeping the last K states. The output is y followed by the K final states.
    for (name, d_state, head_dim, n_head, n_group, n_tok, n_seqs, k, tol) in [
        ("mamba1", 16, 1, 32, 1, 8, 3, 1, 1e-7),
        ("mamba2", 16, 8, 4, 2, 6, 2, 1, 2e-7),
        ("mamba2_k3", 16, 8, 4, 2, 6, 2, 3, 2e-7),
    ] {
        v.push(case(101, format!("SSM_SCAN_{name}"), tol, |b| {
            let s = uniform(b, [d_state, head_dim, n_head, n_seqs], -1.0, 1.0);
            let x = uniform(b, [head_dim, n_head, n_tok, n_seqs], -1.0, 1.0);
            let dt = uniform(b, [n_head, n_tok, n_seqs, 1], -1.0, 1.0);
            let a_ne0 = if head_dim > 1 { 1 } else { d_state };
            let a = uniform(b, [a_ne0, n_head, 1, 1], -1.0, -0.5);
            let bb = uniform(b, [d_state, n_group, n_tok, n_seqs], -1.0, 1.0);
            let c = uniform(b, [d_state, n_group, n_tok, n_seqs], -1.0, 1.0);
            let ids: Vec<i32> = (0..n_seqs as i32).rev().collect();
            let ids = b.ints([n_seqs, 1, 1, 1], &ids);
            let n_out =
                head_dim * n_head * n_tok * n_seqs + k * d_state * head_dim * n_head * n_seqs;
            let p = pi(&[k as i32]);
            b.node(
                F32,
                [n_out, 1, 1, 1],
                Op::SsmScan,
                p,
                &[s, x, dt, a, bb, c, ids],
            );
        }));
    }
}

fn linear_attention(v: &mut Vec<Case>) {
    // test_rwkv_wkv6 / test_gla / test_rwkv_wkv7: [S, H, n_tokens] inputs, state [S*S*H, n_seqs];
    // the output is y [S*H, n_tokens] followed by the new states [S*H, S*n_seqs].
    let (s, h, n_seq_tokens, n_seqs) = (16, 4, 5, 2);
    let n_tokens = n_seq_tokens * n_seqs;
    let ne = [s, h, n_tokens, 1];
    let state_ne = [s * s * h, n_seqs, 1, 1];
    let out = [s * h, n_tokens + s * n_seqs, 1, 1];
    v.push(case(110, "RWKV_WKV6".into(), DEFAULT, |b| {
        let k = uniform(b, ne, -1.0, 1.0);
        let val = uniform(b, ne, -1.0, 1.0);
        let r = uniform(b, ne, -1.0, 1.0);
        let tf = uniform(b, [s, h, 1, 1], -1.0, 1.0);
        let td = uniform(b, ne, -1.0, 1.0);
        let st = uniform(b, state_ne, -1.0, 1.0);
        b.node(F32, out, Op::RwkvWkv6, [0; 16], &[k, val, r, tf, td, st]);
    }));
    v.push(case(111, "GATED_LINEAR_ATTN".into(), DEFAULT, |b| {
        let k = uniform(b, ne, -1.0, 1.0);
        let val = uniform(b, ne, -1.0, 1.0);
        let q = uniform(b, ne, -1.0, 1.0);
        let g = uniform(b, ne, -1.0, 1.0);
        let st = uniform(b, state_ne, -1.0, 1.0);
        let scale = (s as f32).powf(-0.5);
        b.node(
            F32,
            out,
            Op::GatedLinearAttn,
            pf(&[scale]),
            &[k, val, q, g, st],
        );
    }));
    v.push(case(112, "RWKV_WKV7".into(), DEFAULT, |b| {
        let r = uniform(b, ne, -1.0, 1.0);
        let w = uniform(b, ne, -1.0, 1.0);
        let k = uniform(b, ne, -1.0, 1.0);
        let val = uniform(b, ne, -1.0, 1.0);
        let a = uniform(b, ne, -1.0, 1.0);
        let bb = uniform(b, ne, -1.0, 1.0);
        // test_rwkv_wkv7 L2-normalizes a and b so long sequences stay finite.
        let a = b.node(F32, ne, Op::L2Norm, pf(&[1e-7]), &[a]);
        let bb = b.node(F32, ne, Op::L2Norm, pf(&[1e-7]), &[bb]);
        let st = uniform(b, state_ne, -1.0, 1.0);
        b.node(F32, out, Op::RwkvWkv7, [0; 16], &[r, w, k, val, a, bb, st]);
    }));
}

fn delta_net(v: &mut Vec<Case>) {
    // test_gated_delta_net: q/k [S, H, T, B] (L2-normalized), v [S, H*rep, T, B], gate g [1 or S
    // (KDA), H*rep, T, B], beta [1, H*rep, T, B], state [S, S, H*rep, B]; op_params[0] = K snapshots.
    for (name, h, s, t, n_seqs, rep, kda, k_snap) in [
        ("scalar_gate", 4, 16, 3, 2, 1, false, 1),
        ("kda_rep2", 2, 16, 4, 2, 2, true, 1),
        ("k2", 4, 16, 3, 1, 1, false, 2),
    ] {
        v.push(case(120, format!("GATED_DELTA_NET_{name}"), DEFAULT, |b| {
            let hv = h * rep;
            let q = uniform(b, [s, h, t, n_seqs], -1.0, 1.0);
            let k = uniform(b, [s, h, t, n_seqs], -1.0, 1.0);
            let q = b.node(F32, [s, h, t, n_seqs], Op::L2Norm, pf(&[1e-6]), &[q]);
            let k = b.node(F32, [s, h, t, n_seqs], Op::L2Norm, pf(&[1e-6]), &[k]);
            let val = uniform(b, [s, hv, t, n_seqs], -0.3, 5.0);
            let g_ne0 = if kda { s } else { 1 };
            let g = uniform(b, [g_ne0, hv, t, n_seqs], -20.0, -1e-4);
            let beta = uniform(b, [1, hv, t, n_seqs], 0.0, 1.0);
            let st = uniform(b, [s, s, hv, n_seqs], -1.0, 1.0);
            let out = [s * hv, t * n_seqs + k_snap * s * n_seqs, 1, 1];
            let p = pi(&[k_snap as i32]);
            b.node(F32, out, Op::GatedDeltaNet, p, &[q, k, val, g, beta, st]);
        }));
    }
    // test_solve_tri: A lower triangular with its diagonal in [0.1, 1) (init_tensor_tril), B [k, n].
    for (n, k, b2, b3) in [(11, 5, 1, 1), (17, 9, 2, 4)] {
        v.push(case(121, format!("SOLVE_TRI_{n}x{k}"), DEFAULT, |b| {
            let mut a = Vec::with_capacity(n * n * b2 * b3);
            for _ in 0..b2 * b3 {
                for row in 0..n {
                    for col in 0..n {
                        a.push(if col <= row {
                            b.rng.uniform(0.1, 1.0)
                        } else {
                            0.0
                        });
                    }
                }
            }
            let a = b.leaf(HostTensor::from_f32(F32, [n, n, b2, b3], &a));
            let rhs = uniform(b, [k, n, b2, b3], -1.0, 1.0);
            b.node(F32, [k, n, b2, b3], Op::SolveTri, [0; 16], &[a, rhs]);
        }));
    }
}

fn deepseek(v: &mut Vec<Case>) {
    const HC: usize = 4;
    // test_dsv4_hc_comb(n_tokens, n_iter): mixes [(2+hc)*hc, n_tokens], scale [3], base [(2+hc)*hc];
    // op_params { eps (f32), n_iter }.
    for (n_tokens, n_iter) in [(17, 4), (1, 1)] {
        v.push(case(
            130,
            format!("DSV4_HC_COMB_{n_tokens}_{n_iter}"),
            DEFAULT,
            |b| {
                let mixes = uniform(b, [(2 + HC) * HC, n_tokens, 1, 1], -2.0, 2.0);
                let scale = uniform(b, [3, 1, 1, 1], -0.5, 0.5);
                let base = uniform(b, [(2 + HC) * HC, 1, 1, 1], -0.25, 0.25);
                let p = with_f32(pi(&[0, n_iter]), 0, 1e-6);
                b.node(
                    F32,
                    [HC, HC, n_tokens, 1],
                    Op::Dsv4HcComb,
                    p,
                    &[mixes, scale, base],
                );
            },
        ));
    }
    // test_dsv4_hc_pre(31, 4, 17[, gated]): x [n_embd, hc, n_tokens] and weights [hc, n_tokens] or a
    // gate like x; op_params { scale (f32), gated }.
    for gated in [false, true] {
        v.push(case(
            131,
            format!("DSV4_HC_PRE_g{}", gated as u8),
            DEFAULT,
            |b| {
                let (n_embd, n_tokens) = (31, 17);
                let x = uniform(b, [n_embd, HC, n_tokens, 1], -1.0, 1.0);
                let (w, scale) = if gated {
                    (
                        uniform(b, [n_embd, HC, n_tokens, 1], -4.0, 4.0),
                        1.0 / HC as f32,
                    )
                } else {
                    (uniform(b, [HC, n_tokens, 1, 1], 0.0, 1.0), 1.0)
                };
                let p = with_f32(pi(&[0, gated as i32]), 0, scale);
                b.node(F32, [n_embd, n_tokens, 1, 1], Op::Dsv4HcPre, p, &[x, w]);
            },
        ));
    }
    // test_dsv4_hc_post(31, 17[, identity]): x [n_embd, n_tokens], residual [n_embd, hc, n_tokens],
    // post [hc, n_tokens], comb [hc, hc, n_tokens] (absent for the identity form).
    for identity in [false, true] {
        v.push(case(
            132,
            format!("DSV4_HC_POST_id{}", identity as u8),
            DEFAULT,
            |b| {
                let (n_embd, n_tokens) = (31, 17);
                let x = uniform(b, [n_embd, n_tokens, 1, 1], -1.0, 1.0);
                let res = uniform(b, [n_embd, HC, n_tokens, 1], -1.0, 1.0);
                let post = uniform(b, [HC, n_tokens, 1, 1], 0.0, 2.0);
                let out = [n_embd, HC, n_tokens, 1];
                if identity {
                    b.node(F32, out, Op::Dsv4HcPost, [0; 16], &[x, res, post]);
                } else {
                    let comb = uniform(b, [HC, HC, n_tokens, 1], 0.0, 1.0);
                    b.node(F32, out, Op::Dsv4HcPost, [0; 16], &[x, res, post, comb]);
                }
            },
        ));
    }
    // test_lightning_indexer: q [hsk, nh, nb, ns], k [hsk, 1, kv, ns], weights [nh, nb, 1, ns], mask
    // f16 [kv, nb, 1, nm] with -inf runs -> [kv, nb, 1, ns]; test-backend-ops accepts 1e-6.
    for (kt, ns, nm) in [(F16, 2, 1), (F32, 2, 2), (Q8_0, 1, 1)] {
        let name = format!("LIGHTNING_INDEXER_{}_ns{ns}_nm{nm}", kt.name());
        v.push(case(133, name, 1e-6, |b| {
            let (hsk, nh, kv, nb) = (64, 4, 20, 5);
            let q = uniform(b, [hsk, nh, nb, ns], -1.0, 1.0);
            let k = b.rand(kt, [hsk, 1, kv, ns], -1.0, 1.0);
            let w = uniform(b, [nh, nb, 1, ns], -1.0, 1.0);
            let mut m = b.rng.vec(kv * nb * nm, -1.0, 1.0);
            for (i, x) in m.iter_mut().enumerate() {
                if (i / kv + i % kv) % 7 == 3 {
                    *x = f32::NEG_INFINITY;
                }
            }
            let m = b.leaf(HostTensor::from_f32(F16, [kv, nb, 1, nm], &m));
            b.node(
                F32,
                [kv, nb, 1, ns],
                Op::LightningIndexer,
                [0; 16],
                &[q, k, w, m],
            );
        }));
    }
}
