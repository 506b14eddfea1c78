use super::super::testutil::{HostTensor, Rng, assert_close, params_f32, run_op};
use crate::ggml::{GgmlType, Op};

fn f32t(ne: [usize; 4], vals: &[f32]) -> HostTensor {
    HostTensor::from_f32(GgmlType::F32, ne, vals)
}

fn comb(
    mixes: &[f32],
    scale: &[f32],
    base: &[f32],
    n_tokens: usize,
    eps: f32,
    n_iter: i32,
) -> Vec<f32> {
    let m = f32t([24, n_tokens, 1, 1], mixes);
    let s = f32t([3, 1, 1, 1], scale);
    let b = f32t([24, 1, 1, 1], base);
    let mut d = HostTensor::zeros(GgmlType::F32, [4, 4, n_tokens, 1]);
    let mut p = params_f32(&[eps]);
    p[1] = n_iter;
    run_op(Op::Dsv4HcComb, p, &[Some(&m), Some(&s), Some(&b)], &mut d).unwrap();
    d.to_f32()
}

/// Softmax over each source's 4 destinations (+ eps), then Sinkhorn in f64: a column pass, then
/// `n_iter - 1` row + column passes (each sum starting at eps). c[d + 4 s].
fn comb_ref(mixes: &[f32], scale: &[f32], base: &[f32], eps: f64, n_iter: i32) -> Vec<f64> {
    let mut out = Vec::new();
    for tok in mixes.chunks_exact(24) {
        let mut c = [0f64; 16];
        for s in 0..4 {
            let l: Vec<f64> = (0..4)
                .map(|d| tok[8 + d + 4 * s] as f64 * scale[2] as f64 + base[8 + d + 4 * s] as f64)
                .collect();
            let z: f64 = l.iter().map(|x| x.exp()).sum();
            (0..4).for_each(|d| c[d + 4 * s] = l[d].exp() / z + eps);
        }
        let cols = |c: &mut [f64; 16]| {
            for d in 0..4 {
                let sum = eps + (0..4).map(|s| c[d + 4 * s]).sum::<f64>();
                (0..4).for_each(|s| c[d + 4 * s] /= sum);
            }
        };
        cols(&mut c);
        for _ in 1..n_iter {
            for s in 0..4 {
                let sum = eps + (0..4).map(|d| c[d + 4 * s]).sum::<f64>();
                (0..4).for_each(|d| c[d + 4 * s] /= sum);
            }
            cols(&mut c);
        }
        out.extend(c);
    }
    out
}

#[test]
fn hc_comb_uniform_logits_stay_uniform() {
    // Equal logits: softmax 1/4 each; every pass then divides by 4 * 0.25 = 1 (eps 0).
    let got = comb(&[0.0; 24], &[0.0; 3], &[0.0; 24], 1, 0.0, 3);
    assert_eq!(got, [0.25; 16]);
}

#[test]
fn hc_comb_like_test_backend_ops() {
    // test_dsv4_hc_comb(17, 20) and (257, 8) ranges: mixes [-2, 2], scale [-0.5, 0.5], base [-0.25, 0.25].
    let mut rng = Rng::new(4);
    for (n_tokens, n_iter) in [(17, 20), (257, 8), (1, 1)] {
        let m = rng.vec(24 * n_tokens, -2.0, 2.0);
        let s = rng.vec(3, -0.5, 0.5);
        let b = rng.vec(24, -0.25, 0.25);
        let got = comb(&m, &s, &b, n_tokens, 1e-6, n_iter);
        assert_close(&got, &comb_ref(&m, &s, &b, 1e-6, n_iter), 1e-5, "hc_comb");
    }
}

fn pre(x: &HostTensor, w: &HostTensor, scale: f32, gated: bool) -> Vec<f32> {
    let mut d = HostTensor::zeros(GgmlType::F32, [x.t.ne[0], x.t.ne[2], 1, 1]);
    let mut p = params_f32(&[scale]);
    p[1] = gated as i32;
    run_op(Op::Dsv4HcPre, p, &[Some(x), Some(w)], &mut d).unwrap();
    d.to_f32()
}

#[test]
fn hc_pre_by_hand_and_gated() {
    // Two streams, one token: out = 1*0.5 + 3*2 = 6.5, 2*0.5 + 4*2 = 9.
    let x = f32t([2, 2, 1, 1], &[1.0, 2.0, 3.0, 4.0]);
    let w = f32t([2, 1, 1, 1], &[0.5, 2.0]);
    assert_eq!(pre(&x, &w, 1.0, false), [6.5, 9.0]);
    // Gated: weights sigmoid(gate) per element; gate 0 -> 1/2, scale 1/hc.
    let g = f32t([2, 2, 1, 1], &[0.0; 4]);
    assert_eq!(pre(&x, &g, 0.5, true), [1.0, 1.5]);
    // test_dsv4_hc_pre(128, 4, 17, true): random, against f64 with permuted x.
    let mut rng = Rng::new(9);
    let (e, hc, nt) = (128, 4, 17);
    let (xv, gv) = (
        rng.vec(e * hc * nt, -1.0, 1.0),
        rng.vec(e * hc * nt, -4.0, 4.0),
    );
    let want: Vec<f64> = (0..e * nt)
        .map(|r| {
            let (i0, t) = (r % e, r / e);
            0.25 * (0..hc)
                .map(|h| {
                    let at = (t * hc + h) * e + i0;
                    xv[at] as f64 / (1.0 + (-gv[at] as f64).exp())
                })
                .sum::<f64>()
        })
        .collect();
    let x = f32t([e, hc, nt, 1], &xv).permuted([1, 0, 2, 3]);
    assert_close(
        &pre(&x, &f32t([e, hc, nt, 1], &gv), 0.25, true),
        &want,
        1e-5,
        "gated",
    );
}

fn post(x: &HostTensor, r: &HostTensor, p: &HostTensor, c: Option<&HostTensor>) -> Vec<f32> {
    let mut d = HostTensor::zeros(GgmlType::F32, r.t.ne);
    run_op(
        Op::Dsv4HcPost,
        [0; 16],
        &[Some(x), Some(r), Some(p), c],
        &mut d,
    )
    .unwrap();
    d.to_f32()
}

#[test]
fn hc_post_by_hand_and_random() {
    // n_embd 1, hc 2, one token: out[d] = x post[d] + sum_s residual[s] comb[d, s].
    let x = f32t([1, 1, 1, 1], &[2.0]);
    let r = f32t([1, 2, 1, 1], &[1.0, 10.0]);
    let p = f32t([2, 1, 1, 1], &[1.0, 0.5]);
    let c = f32t([2, 2, 1, 1], &[1.0, 0.0, 0.5, 1.0]); // comb[d + 2 s]
    assert_eq!(post(&x, &r, &p, Some(&c)), [2.0 + 1.0 + 5.0, 1.0 + 10.0]);
    assert_eq!(post(&x, &r, &p, None), [2.0 + 1.0, 1.0 + 10.0]);
    // test_dsv4_hc_post(31, 17).
    let mut rng = Rng::new(10);
    let (e, hc, nt) = (31, 4, 17);
    let (xv, rv) = (rng.vec(e * nt, -1.0, 1.0), rng.vec(e * hc * nt, -1.0, 1.0));
    let (pv, cv) = (rng.vec(hc * nt, 0.0, 2.0), rng.vec(hc * hc * nt, 0.0, 1.0));
    let want: Vec<f64> = (0..e * hc * nt)
        .map(|i| {
            let (i0, d, t) = (i % e, (i / e) % hc, i / (e * hc));
            let mix: f64 = (0..hc)
                .map(|s| rv[(t * hc + s) * e + i0] as f64 * cv[(t * hc + s) * hc + d] as f64)
                .sum();
            xv[t * e + i0] as f64 * pv[t * hc + d] as f64 + mix
        })
        .collect();
    let got = post(
        &f32t([e, nt, 1, 1], &xv),
        &f32t([e, hc, nt, 1], &rv),
        &f32t([hc, nt, 1, 1], &pv),
        Some(&f32t([hc, hc, nt, 1], &cv)),
    );
    assert_close(&got, &want, 1e-5, "hc_post");
}

fn indexer(
    q: &HostTensor,
    k: &HostTensor,
    w: &HostTensor,
    m: &HostTensor,
) -> Result<Vec<f32>, String> {
    let mut d = HostTensor::zeros(GgmlType::F32, [k.t.ne[2], q.t.ne[2], 1, q.t.ne[3]]);
    run_op(
        Op::LightningIndexer,
        [0; 16],
        &[Some(q), Some(k), Some(w), Some(m)],
        &mut d,
    )?;
    Ok(d.to_f32())
}

#[test]
fn lightning_indexer_by_hand() {
    // E 2, two heads, one token, one key: q.k = 3 and -1 -> relu 3, 0; 3 * 2 + mask 0.5.
    let q = f32t([2, 2, 1, 1], &[1.0, 1.0, -1.0, 0.0]);
    let k = f32t([2, 1, 1, 1], &[1.0, 2.0]);
    let w = f32t([2, 1, 1, 1], &[2.0, 7.0]);
    let m = HostTensor::from_f32(GgmlType::F16, [1, 1, 1, 1], &[0.5]);
    assert_eq!(indexer(&q, &k, &w, &m).unwrap(), [6.5]);
}

#[test]
fn lightning_indexer_like_test_backend_ops() {
    // test_lightning_indexer(128, 64, kv, 32, 4, 1, type_K) with fewer heads and tokens.
    let (e, nh, kv, nt, ns, nm) = (128, 8, 65, 4, 4, 1);
    let mut rng = Rng::new(13);
    let qv = rng.vec(e * nh * nt * ns, -1.0, 1.0);
    let kv_vals = rng.vec(e * kv * ns, -1.0, 1.0);
    let wv = rng.vec(nh * nt * ns, -1.0, 1.0);
    let mv: Vec<f32> = (0..kv * nt * nm)
        .map(|i| if i % 7 == 0 { f32::NEG_INFINITY } else { 0.0 })
        .collect();
    let q = f32t([e, nh, nt, ns], &qv);
    let w = f32t([nh, nt, 1, ns], &wv);
    let m = HostTensor::from_f32(GgmlType::F16, [kv, nt, 1, nm], &mv);
    for typ in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Bf16,
        GgmlType::Q8_0,
        GgmlType::Q4_1,
        GgmlType::Iq4Nl,
    ] {
        let k = HostTensor::from_f32(typ, [e, 1, kv, ns], &kv_vals);
        // The reference uses the keys as stored (dequantized).
        let kd = k.to_f32();
        let want: Vec<f64> = (0..kv * nt * ns)
            .map(|i| {
                let (ik, t, s) = (i % kv, (i / kv) % nt, i / (kv * nt));
                let score: f64 = (0..nh)
                    .map(|h| {
                        let qk: f64 = (0..e)
                            .map(|j| {
                                qv[((s * nt + t) * nh + h) * e + j] as f64
                                    * kd[(s * kv + ik) * e + j] as f64
                            })
                            .sum();
                        qk.max(0.0) * wv[(s * nt + t) * nh + h] as f64
                    })
                    .sum();
                score + mv[((s % nm) * nt + t) * kv + ik] as f64
            })
            .collect();
        assert_close(&indexer(&q, &k, &w, &m).unwrap(), &want, 1e-4, typ.name());
    }
}

#[test]
fn dsv4_rejects_bad_inputs() {
    let x = f32t([2, 2, 1, 1], &[0.0; 4]);
    let w = f32t([3, 1, 1, 1], &[0.0; 3]);
    let mut d = HostTensor::zeros(GgmlType::F32, [2, 1, 1, 1]);
    assert!(run_op(Op::Dsv4HcPre, [0; 16], &[Some(&x), Some(&w)], &mut d).is_err());
    let m = f32t([24, 1, 1, 1], &[0.0; 24]);
    let s = f32t([3, 1, 1, 1], &[0.0; 3]);
    let mut d = HostTensor::zeros(GgmlType::F32, [4, 4, 1, 1]);
    // n_iter 0.
    assert!(
        run_op(
            Op::Dsv4HcComb,
            [0; 16],
            &[Some(&m), Some(&s), Some(&m)],
            &mut d
        )
        .is_err()
    );
    // A mask that is not f16.
    let q = f32t([2, 1, 1, 1], &[0.0; 2]);
    let k = f32t([2, 1, 1, 1], &[0.0; 2]);
    let w1 = f32t([1, 1, 1, 1], &[0.0]);
    let mut d = HostTensor::zeros(GgmlType::F32, [1, 1, 1, 1]);
    assert!(
        run_op(
            Op::LightningIndexer,
            [0; 16],
            &[Some(&q), Some(&k), Some(&w1), Some(&w1)],
            &mut d
        )
        .is_err()
    );
}
