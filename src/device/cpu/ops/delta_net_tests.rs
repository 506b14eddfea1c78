use super::super::testutil::{HostTensor, Rng, assert_close, run_op};
use crate::ggml::{GgmlType, Op};

fn f32t(ne: [usize; 4], vals: &[f32]) -> HostTensor {
    HostTensor::from_f32(GgmlType::F32, ne, vals)
}

/// Sizes of a delta-net case: q/k have `h_qk` heads, v/g/beta/state `h` (a multiple).
#[derive(Clone, Copy)]
struct Dims {
    s: usize,
    h_qk: usize,
    h: usize,
    t: usize,
    seqs: usize,
    kda: bool,
}

struct Inputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    g: Vec<f32>,
    beta: Vec<f32>,
    state: Vec<f32>,
}

fn inputs(d: Dims, seed: u64) -> Inputs {
    let mut rng = Rng::new(seed);
    let mut unit_rows = |n: usize| {
        let mut v = rng.vec(n * d.s, -1.0, 1.0);
        for r in v.chunks_exact_mut(d.s) {
            let l = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter_mut().for_each(|x| *x /= l);
        }
        v
    };
    let (q, k) = (
        unit_rows(d.h_qk * d.t * d.seqs),
        unit_rows(d.h_qk * d.t * d.seqs),
    );
    let n = d.h * d.t * d.seqs;
    Inputs {
        q,
        k,
        v: rng.vec(d.s * n, -0.3, 5.0),
        g: rng.vec(if d.kda { d.s } else { 1 } * n, -2.0, -1e-4),
        beta: rng.vec(n, 0.0, 1.0),
        state: rng.vec(d.s * d.s * d.h * d.seqs, -1.0, 1.0),
    }
}

fn run(d: Dims, inp: &Inputs, slots: usize, permuted: bool, init: f32) -> Result<Vec<f32>, String> {
    let mut q = f32t([d.s, d.h_qk, d.t, d.seqs], &inp.q);
    let mut k = f32t([d.s, d.h_qk, d.t, d.seqs], &inp.k);
    let mut v = f32t([d.s, d.h, d.t, d.seqs], &inp.v);
    if permuted {
        // test-backend-ops' `permuted`: heads and tokens swapped in storage.
        q = q.permuted([0, 2, 1, 3]);
        k = k.permuted([0, 2, 1, 3]);
        v = v.permuted([0, 2, 1, 3]);
    }
    let g = f32t([if d.kda { d.s } else { 1 }, d.h, d.t, d.seqs], &inp.g);
    let beta = f32t([1, d.h, d.t, d.seqs], &inp.beta);
    let state = f32t([d.s, d.s, d.h, d.seqs], &inp.state);
    let rows = d.t * d.seqs + slots * d.s * d.seqs;
    let mut out = f32t([d.s * d.h, rows, 1, 1], &vec![init; d.s * d.h * rows]);
    let mut p = [0; 16];
    p[0] = slots as i32;
    let srcs = [&q, &k, &v, &g, &beta, &state].map(Some);
    run_op(Op::GatedDeltaNet, p, &srcs, &mut out)?;
    Ok(out.to_f32())
}

/// The delta rule in f64 with S[i][j] (i key, j value): S = diag(exp g) S; delta = beta (v - S^T k);
/// S += k delta^T; o = S^T q / sqrt(S_v). Returns outputs and the state after each token (row-major S^T,
/// i.e. the layout ggml stores) at index `(seq * H + head) * T + t`.
fn reference(d: Dims, inp: &Inputs) -> (Vec<f64>, Vec<Vec<f64>>) {
    let s = d.s;
    let mut out = vec![0f64; s * d.h * d.t * d.seqs];
    let mut states = Vec::new();
    for seq in 0..d.seqs {
        for hd in 0..d.h {
            let base = (seq * d.h + hd) * s * s;
            // m[j][i] as stored; work on S[i][j] = m[j * s + i].
            let mut sm: Vec<f64> = inp.state[base..base + s * s]
                .iter()
                .map(|&x| x as f64)
                .collect();
            for t in 0..d.t {
                let qk_row = ((seq * d.t + t) * d.h_qk + hd % d.h_qk) * s;
                let row = (seq * d.t + t) * d.h + hd;
                let q = &inp.q[qk_row..qk_row + s];
                let k = &inp.k[qk_row..qk_row + s];
                let v = &inp.v[row * s..row * s + s];
                for i in 0..s {
                    let gi = if d.kda {
                        inp.g[row * s + i]
                    } else {
                        inp.g[row]
                    } as f64;
                    for j in 0..s {
                        sm[j * s + i] *= gi.exp();
                    }
                }
                let beta = inp.beta[row] as f64;
                let delta: Vec<f64> = (0..s)
                    .map(|j| {
                        let stk: f64 = (0..s).map(|i| sm[j * s + i] * k[i] as f64).sum();
                        beta * (v[j] as f64 - stk)
                    })
                    .collect();
                for i in 0..s {
                    for j in 0..s {
                        sm[j * s + i] += k[i] as f64 * delta[j];
                    }
                }
                for j in 0..s {
                    let o: f64 = (0..s).map(|i| sm[j * s + i] * q[i] as f64).sum();
                    out[row * s + j] = o / (s as f64).sqrt();
                }
                states.push(sm.clone());
            }
        }
    }
    (out, states)
}

fn check(d: Dims, slots: usize, permuted: bool, seed: u64) {
    let inp = inputs(d, seed);
    let got = run(d, &inp, slots, permuted, f32::NAN).unwrap();
    let (out, states) = reference(d, &inp);
    assert_close(&got[..out.len()], &out, 1e-4, "attn");
    let ss = d.s * d.s;
    for slot in 0..slots.min(d.t) {
        for seq in 0..d.seqs {
            for hd in 0..d.h {
                let at = out.len() + ((slot * d.seqs + seq) * d.h + hd) * ss;
                let want = &states[(seq * d.h + hd) * d.t + d.t - 1 - slot];
                assert_close(&got[at..at + ss], want, 1e-4, &format!("slot {slot}"));
            }
        }
    }
    let written = out.len() + slots.min(d.t) * d.seqs * d.h * ss;
    assert!(
        got[written..].iter().all(|v| v.is_nan()),
        "older slots untouched"
    );
}

#[test]
fn gdn_by_hand() {
    // S_v = 1: S = 2 e^0 = 2; delta = 1 * (5 - 2 * 1) = 3; S = 2 + 3 = 5; o = 5 * 1 / 1.
    let d = Dims {
        s: 1,
        h_qk: 1,
        h: 1,
        t: 1,
        seqs: 1,
        kda: false,
    };
    let inp = Inputs {
        q: vec![1.0],
        k: vec![1.0],
        v: vec![5.0],
        g: vec![0.0],
        beta: vec![1.0],
        state: vec![2.0],
    };
    assert_eq!(run(d, &inp, 1, false, 0.0).unwrap(), [5.0, 5.0]);
}

#[test]
fn gdn_scalar_and_kda_gates() {
    let d = Dims {
        s: 8,
        h_qk: 2,
        h: 2,
        t: 3,
        seqs: 2,
        kda: false,
    };
    check(d, 1, false, 1);
    check(Dims { kda: true, ..d }, 1, false, 2);
}

#[test]
fn gdn_broadcast_heads_and_permuted_sources() {
    // test_gated_delta_net(F32, 8, 32, 4, 2, v_repeat 2) and the permuted variants.
    let d = Dims {
        s: 32,
        h_qk: 8,
        h: 16,
        t: 4,
        seqs: 2,
        kda: false,
    };
    check(d, 1, false, 3);
    let d = Dims {
        s: 16,
        h_qk: 4,
        h: 4,
        t: 4,
        seqs: 2,
        kda: true,
    };
    check(d, 1, true, 4);
}

#[test]
fn gdn_snapshots_like_test_backend_ops() {
    // test_gated_delta_net(F32, 4, 64, 4, 2, 1, false, false, K = 4) and K = 3 over 8 tokens.
    check(
        Dims {
            s: 64,
            h_qk: 4,
            h: 4,
            t: 4,
            seqs: 2,
            kda: false,
        },
        4,
        false,
        5,
    );
    check(
        Dims {
            s: 32,
            h_qk: 4,
            h: 4,
            t: 8,
            seqs: 1,
            kda: false,
        },
        3,
        false,
        6,
    );
    // More slots than tokens leaves the older ones alone.
    check(
        Dims {
            s: 8,
            h_qk: 2,
            h: 2,
            t: 2,
            seqs: 1,
            kda: true,
        },
        4,
        false,
        7,
    );
}

#[test]
fn gdn_rejects_bad_shapes() {
    let d = Dims {
        s: 4,
        h_qk: 2,
        h: 2,
        t: 1,
        seqs: 1,
        kda: false,
    };
    let inp = inputs(d, 8);
    assert!(run(d, &inp, 0, false, 0.0).is_err());
    let q = f32t([4, 2, 1, 1], &[0.0; 8]);
    let v = f32t([4, 2, 2, 1], &[0.0; 16]);
    let g = f32t([1, 2, 2, 1], &[0.0; 4]);
    let st = f32t([4, 4, 2, 1], &[0.0; 32]);
    let mut out = HostTensor::zeros(GgmlType::F32, [8, 2 + 4, 1, 1]);
    // q/k hold one token, v two.
    let mut p = [0; 16];
    p[0] = 1;
    let srcs = [&q, &q, &v, &g, &g, &st].map(Some);
    assert!(run_op(Op::GatedDeltaNet, p, &srcs, &mut out).is_err());
}

fn solve(a: &HostTensor, b: &HostTensor) -> Result<Vec<f32>, String> {
    let mut x = HostTensor::zeros(GgmlType::F32, b.t.ne);
    run_op(Op::SolveTri, [0; 16], &[Some(a), Some(b)], &mut x)?;
    Ok(x.to_f32())
}

#[test]
fn solve_tri_by_hand() {
    // [[2 0] [1 4]] X = [[2] [5]]: x0 = 1, x1 = (5 - 1) / 4 = 1. Row-major: A[row * n + col].
    let a = f32t([2, 2, 1, 1], &[2.0, 0.0, 1.0, 4.0]);
    let b = f32t([1, 2, 1, 1], &[2.0, 5.0]);
    assert_eq!(solve(&a, &b).unwrap(), [1.0, 1.0]);
}

#[test]
fn solve_tri_like_test_backend_ops() {
    // test_solve_tri(F32, {79, 79, 5, 3}, {417, 79, 5, 3}) with fewer columns: A X must give B back.
    let (n, k, b1, b2) = (79, 41, 5, 3);
    let mut rng = Rng::new(21);
    let mut av = vec![0f32; n * n * b1 * b2];
    for (idx, v) in av.iter_mut().enumerate() {
        let (col, row) = (idx % n, (idx / n) % n);
        // test-backend-ops' init_tensor_tril(0.1, 1): lower triangle incl. diagonal in [0.1, 1).
        *v = if col <= row {
            rng.uniform(0.1, 1.0)
        } else {
            0.0
        };
    }
    let bv = rng.vec(k * n * b1 * b2, -1.0, 1.0);
    let x = solve(&f32t([n, n, b1, b2], &av), &f32t([k, n, b1, b2], &bv)).unwrap();
    // Forward substitution in f64 as the reference.
    let mut want = vec![0f64; x.len()];
    for bt in 0..b1 * b2 {
        let a = &av[bt * n * n..][..n * n];
        for col in 0..k {
            for i in 0..n {
                let sum: f64 = (0..i)
                    .map(|t| a[i * n + t] as f64 * want[bt * n * k + t * k + col])
                    .sum();
                want[bt * n * k + i * k + col] =
                    (bv[bt * n * k + i * k + col] as f64 - sum) / a[i * n + i] as f64;
            }
        }
    }
    // Triangular solves amplify rounding; compare relative to the solution's scale.
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (g, w) in x.iter().zip(&want) {
        assert!((*g as f64 - w).abs() <= 1e-4 * scale, "{g} vs {w}");
    }
}

#[test]
fn solve_tri_rejects_bad_shapes() {
    let a = f32t([2, 3, 1, 1], &[1.0; 6]);
    let b = f32t([1, 3, 1, 1], &[1.0; 3]);
    assert!(solve(&a, &b).is_err());
    let a = f32t([3, 3, 1, 1], &[1.0; 9]);
    let b = f32t([1, 2, 1, 1], &[1.0; 2]);
    assert!(solve(&a, &b).is_err());
}
