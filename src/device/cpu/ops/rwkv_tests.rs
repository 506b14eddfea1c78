use super::super::testutil::{HostTensor, Rng, assert_close, params_f32, run_op};
use crate::ggml::{GgmlType, Op};

fn f32t(ne: [usize; 4], vals: &[f32]) -> HostTensor {
    HostTensor::from_f32(GgmlType::F32, ne, vals)
}

/// One case: per-token sources (each {S, H, T}), time_faaaa (WKV6 only), the state, GLA's scale.
struct Case<'a> {
    op: Op,
    s: usize,
    h: usize,
    t: usize,
    n_seqs: usize,
    toks: &'a [Vec<f32>],
    tf: &'a [f32],
    state: &'a [f32],
    scale: f32,
}

fn run(c: &Case<'_>) -> Vec<f32> {
    let Case {
        op,
        s,
        h,
        t,
        n_seqs,
        toks,
        tf,
        state,
        scale,
    } = *c;
    let tok: Vec<HostTensor> = toks.iter().map(|v| f32t([s, h, t, 1], v)).collect();
    let tf = f32t([s, h, 1, 1], tf);
    let st = f32t([s * s * h, n_seqs, 1, 1], state);
    let mut srcs: Vec<Option<&HostTensor>> = tok.iter().map(Some).collect();
    if op == Op::RwkvWkv6 {
        srcs.insert(3, Some(&tf));
    }
    srcs.push(Some(&st));
    let mut d = HostTensor::zeros(GgmlType::F32, [s * h, t + s * n_seqs, 1, 1]);
    run_op(op, params_f32(&[scale]), &srcs, &mut d).unwrap();
    d.to_f32()
}

/// The three recurrences in f64, state[seq][h][i][j] with i the key (WKV6/GLA) or value (WKV7) index.
fn reference(cs: &Case<'_>) -> Vec<f64> {
    let Case {
        op,
        s,
        h,
        t,
        n_seqs,
        toks,
        tf,
        state,
        ..
    } = *cs;
    let scale = cs.scale as f64;
    let c = s * h;
    let per_seq = t / n_seqs;
    let x = |src: usize, tok: usize, hd: usize, i: usize| toks[src][tok * c + hd * s + i] as f64;
    let mut out = vec![0f64; c * t];
    let mut st: Vec<f64> = state.iter().map(|&v| v as f64).collect();
    for tok in 0..t {
        let seq = tok / per_seq;
        for hd in 0..h {
            let base = seq * s * c + hd * s * s;
            let m = &mut st[base..base + s * s];
            match op {
                Op::RwkvWkv6 | Op::GatedLinearAttn => {
                    for i in 0..s {
                        for j in 0..s {
                            let kv = x(0, tok, hd, i) * x(1, tok, hd, j);
                            let prev = m[i * s + j];
                            if op == Op::RwkvWkv6 {
                                let u = tf[hd * s + i] as f64;
                                out[tok * c + hd * s + j] += x(2, tok, hd, i) * (u * kv + prev);
                                m[i * s + j] = x(3, tok, hd, i) * prev + kv;
                            } else {
                                let now = x(3, tok, hd, i) * prev + kv;
                                out[tok * c + hd * s + j] += scale * x(2, tok, hd, i) * now;
                                m[i * s + j] = now;
                            }
                        }
                    }
                }
                _ => {
                    // r w k v a b
                    for i in 0..s {
                        let sa: f64 = (0..s).map(|j| x(4, tok, hd, j) * m[i * s + j]).sum();
                        let mut res = 0.0;
                        for j in 0..s {
                            let v = m[i * s + j] * x(1, tok, hd, j)
                                + x(3, tok, hd, i) * x(2, tok, hd, j)
                                + sa * x(5, tok, hd, j);
                            m[i * s + j] = v;
                            res += v * x(0, tok, hd, j);
                        }
                        out[tok * c + hd * s + i] = res;
                    }
                }
            }
        }
    }
    out.extend(st);
    out
}

#[test]
fn wkv6_by_hand() {
    // S = H = 1, two tokens: k [1 2], v [3 4], r 1, u 0.5, w 0.5, state 1.
    // t0: out = 0.5*3 + 1 = 2.5, S = 0.5 + 3 = 3.5; t1: out = 0.5*8 + 3.5 = 7.5, S = 1.75 + 8.
    let toks = [
        vec![1.0, 2.0],
        vec![3.0, 4.0],
        vec![1.0, 1.0],
        vec![0.5, 0.5],
    ];
    let got = run(&Case {
        op: Op::RwkvWkv6,
        s: 1,
        h: 1,
        t: 2,
        n_seqs: 1,
        toks: &toks,
        tf: &[0.5],
        state: &[1.0],
        scale: 0.0,
    });
    assert_eq!(got, [2.5, 7.5, 9.75]);
}

#[test]
fn gla_and_wkv7_by_hand() {
    // GLA, S = H = 1: k 2, v 3, q 1, g 0.5, state 4, scale 2: S = 2 + 6 = 8, out = 2*1*8 = 16.
    let toks = [vec![2.0], vec![3.0], vec![1.0], vec![0.5]];
    let one = Case {
        op: Op::GatedLinearAttn,
        s: 1,
        h: 1,
        t: 1,
        n_seqs: 1,
        toks: &toks,
        tf: &[],
        state: &[4.0],
        scale: 2.0,
    };
    assert_eq!(run(&one), [16.0, 8.0]);
    // WKV7, S = H = 1: r 1, w 0.5, k 2, v 3, a 1, b 1, state 4: sa = 4, S = 2 + 6 + 4 = 12.
    let toks = [
        vec![1.0],
        vec![0.5],
        vec![2.0],
        vec![3.0],
        vec![1.0],
        vec![1.0],
    ];
    assert_eq!(
        run(&Case {
            op: Op::RwkvWkv7,
            toks: &toks,
            ..one
        }),
        [12.0, 12.0]
    );
}

fn check_random(op: Op, s: usize, h: usize, per_seq: usize, n_seqs: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let t = per_seq * n_seqs;
    let n_tok = if op == Op::RwkvWkv7 { 6 } else { 4 };
    let toks: Vec<Vec<f32>> = (0..n_tok)
        .map(|k| match (op, k) {
            // Decays in (0, 1) keep long sequences bounded; WKV7's a, b are small (test-backend-ops
            // L2-normalises them).
            (Op::RwkvWkv7, 1) | (Op::RwkvWkv6 | Op::GatedLinearAttn, 3) => {
                rng.vec(s * h * t, 0.5, 0.99)
            }
            (Op::RwkvWkv7, 4 | 5) => rng.vec(s * h * t, -0.2, 0.2),
            _ => rng.vec(s * h * t, -1.0, 1.0),
        })
        .collect();
    let tf = rng.vec(s * h, -1.0, 1.0);
    let state = rng.vec(s * s * h * n_seqs, -1.0, 1.0);
    let scale = 1.0 / (s as f32).sqrt();
    let case = Case {
        op,
        s,
        h,
        t,
        n_seqs,
        toks: &toks,
        tf: &tf,
        state: &state,
        scale,
    };
    assert_close(&run(&case), &reference(&case), 1e-4, op.name());
}

#[test]
fn recurrences_match_reference_small() {
    for op in [Op::RwkvWkv6, Op::GatedLinearAttn, Op::RwkvWkv7] {
        check_random(op, 4, 3, 5, 2, 1);
        check_random(op, 8, 1, 1, 3, 2);
    }
}

#[test]
fn recurrences_like_test_backend_ops() {
    // test_rwkv_wkv6 / test_gla / test_rwkv_wkv7 (F32, 32 heads, 64, 32 tokens, 4 seqs), 4 heads.
    for op in [Op::RwkvWkv6, Op::GatedLinearAttn, Op::RwkvWkv7] {
        check_random(op, 64, 4, 32, 4, 3);
    }
}

#[test]
fn rejects_uneven_sequences_and_bad_shapes() {
    let toks: Vec<HostTensor> = (0..4).map(|_| f32t([2, 1, 3, 1], &[0.0; 6])).collect();
    let st = f32t([4, 2, 1, 1], &[0.0; 8]);
    let mut d = HostTensor::zeros(GgmlType::F32, [2, 3 + 4, 1, 1]);
    let srcs: Vec<Option<&HostTensor>> = toks.iter().map(Some).chain([Some(&st)]).collect();
    // 3 tokens do not split into 2 sequences.
    assert!(run_op(Op::GatedLinearAttn, [0; 16], &srcs, &mut d).is_err());
    let st = f32t([4, 3, 1, 1], &[0.0; 12]);
    let srcs: Vec<Option<&HostTensor>> = toks.iter().map(Some).chain([Some(&st)]).collect();
    let mut d = HostTensor::zeros(GgmlType::F32, [2, 3 + 6, 1, 1]);
    assert!(run_op(Op::GatedLinearAttn, [0; 16], &srcs, &mut d).is_ok());
    let mut d = HostTensor::zeros(GgmlType::F32, [2, 3 + 5, 1, 1]);
    assert!(run_op(Op::GatedLinearAttn, [0; 16], &srcs, &mut d).is_err());
}
