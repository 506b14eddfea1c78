use super::super::testutil::{HostTensor, Rng, assert_close, run_op};
use crate::ggml::{GgmlType, Op};

fn f32t(ne: [usize; 4], vals: &[f32]) -> HostTensor {
    HostTensor::from_f32(GgmlType::F32, ne, vals)
}

fn conv(sx: &HostTensor, c: &HostTensor) -> Result<Vec<f32>, String> {
    let n_t = sx.t.ne[0] + 1 - c.t.ne[0];
    let mut d = HostTensor::zeros(GgmlType::F32, [c.t.ne[1], n_t, sx.t.ne[2], 1]);
    run_op(Op::SsmConv, [0; 16], &[Some(sx), Some(c)], &mut d)?;
    Ok(d.to_f32())
}

/// y[i1, t, s] = sum_i0 sx[t + i0, i1, s] c[i0, i1], in f64.
fn conv_ref(
    sx: &[f32],
    c: &[f32],
    d_conv: usize,
    d_inner: usize,
    n_t: usize,
    n_s: usize,
) -> Vec<f64> {
    let ncs = d_conv - 1 + n_t;
    let mut y = Vec::new();
    for s in 0..n_s {
        for t in 0..n_t {
            for i1 in 0..d_inner {
                let sum: f64 = (0..d_conv)
                    .map(|i0| {
                        sx[(s * d_inner + i1) * ncs + t + i0] as f64 * c[i1 * d_conv + i0] as f64
                    })
                    .sum();
                y.push(sum);
            }
        }
    }
    y
}

#[test]
fn ssm_conv_by_hand() {
    // d_conv 2, one channel, two tokens: [1 2 3] * [10 1].
    let sx = f32t([3, 1, 1, 1], &[1.0, 2.0, 3.0]);
    let c = f32t([2, 1, 1, 1], &[10.0, 1.0]);
    assert_eq!(conv(&sx, &c).unwrap(), [12.0, 23.0]);
}

#[test]
fn ssm_conv_matches_reference_like_test_backend_ops() {
    // test_ssm_conv(F32, {d_conv - 1 + 64, d_inner, 4, 1}, {d_conv, d_inner, 1, 1}), d_conv 4.
    let (d_conv, d_inner, n_t, n_s) = (4, 96, 64, 4);
    let mut rng = Rng::new(5);
    let sxv = rng.vec((d_conv - 1 + n_t) * d_inner * n_s, -1.0, 1.0);
    let cv = rng.vec(d_conv * d_inner, -1.0, 1.0);
    let sx = f32t([d_conv - 1 + n_t, d_inner, n_s, 1], &sxv);
    let c = f32t([d_conv, d_inner, 1, 1], &cv);
    let want = conv_ref(&sxv, &cv, d_conv, d_inner, n_t, n_s);
    assert_close(&conv(&sx, &c).unwrap(), &want, 1e-5, "ssm_conv");
    // A permuted source reads the same logical values.
    assert_close(
        &conv(&sx.permuted([1, 0, 2, 3]), &c).unwrap(),
        &want,
        1e-5,
        "permuted",
    );
}

#[test]
fn ssm_conv_rejects_bad_shapes() {
    let sx = f32t([3, 2, 1, 1], &[0.0; 6]);
    let c = f32t([2, 3, 1, 1], &[0.0; 6]);
    assert!(conv(&sx, &c).is_err());
    let mut d = HostTensor::zeros(GgmlType::F32, [2, 3, 1, 1]);
    let c = f32t([2, 2, 1, 1], &[0.0; 4]);
    assert!(run_op(Op::SsmConv, [0; 16], &[Some(&sx), Some(&c)], &mut d).is_err());
}

/// Sizes of a scan.
#[derive(Clone, Copy)]
struct Dims {
    d_state: usize,
    head_dim: usize,
    n_head: usize,
    n_group: usize,
    n_tokens: usize,
    n_seqs: usize,
}

struct ScanInputs {
    s: Vec<f32>,
    x: Vec<f32>,
    dt: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    ids: Vec<i32>,
}

fn scan_inputs(d: Dims, seed: u64) -> ScanInputs {
    let mut rng = Rng::new(seed);
    let a_len = if d.head_dim > 1 { 1 } else { d.d_state } * d.n_head;
    let tokens = d.n_tokens * d.n_seqs;
    let mut ids: Vec<i32> = (0..d.n_seqs as i32).collect();
    ids.reverse();
    ScanInputs {
        s: rng.vec(d.d_state * d.head_dim * d.n_head * d.n_seqs, -1.0, 1.0),
        x: rng.vec(d.head_dim * d.n_head * tokens, -1.0, 1.0),
        dt: rng.vec(d.n_head * tokens, -1.0, 1.0),
        a: rng.vec(a_len, -1.0, -0.5),
        b: rng.vec(d.d_state * d.n_group * tokens, -1.0, 1.0),
        c: rng.vec(d.d_state * d.n_group * tokens, -1.0, 1.0),
        ids,
    }
}

fn scan(d: Dims, inp: &ScanInputs, k: usize, dst_init: f32) -> Result<Vec<f32>, String> {
    let a0 = if d.head_dim > 1 { 1 } else { d.d_state };
    let s = f32t([d.d_state, d.head_dim, d.n_head, d.n_seqs], &inp.s);
    let x = f32t([d.head_dim, d.n_head, d.n_tokens, d.n_seqs], &inp.x);
    let dt = f32t([d.n_head, d.n_tokens, d.n_seqs, 1], &inp.dt);
    let a = f32t([a0, d.n_head, 1, 1], &inp.a);
    let b = f32t([d.d_state, d.n_group, d.n_tokens, d.n_seqs], &inp.b);
    let c = f32t([d.d_state, d.n_group, d.n_tokens, d.n_seqs], &inp.c);
    let ids = HostTensor::from_i32([d.n_seqs, 1, 1, 1], &inp.ids);
    let n = inp.x.len() + k * d.d_state * d.head_dim * d.n_head * d.n_seqs;
    let mut out = f32t([n, 1, 1, 1], &vec![dst_init; n]);
    let mut p = [0; 16];
    p[0] = k as i32;
    let srcs = [&s, &x, &dt, &a, &b, &c, &ids].map(Some);
    run_op(Op::SsmScan, p, &srcs, &mut out)?;
    Ok(out.to_f32())
}

fn softplus(x: f64) -> f64 {
    if x > 20.0 { x } else { (1.0 + x.exp()).ln() }
}

/// The scan from its recurrence in f64: h = exp(dt' A) h + B x dt', y = C . h, dt' = softplus(dt).
/// Returns y (laid out like x) and the states after each token, at `seq * n_tokens + t`.
fn scan_ref(d: Dims, inp: &ScanInputs) -> (Vec<f64>, Vec<Vec<f64>>) {
    let (nc, nr, nh) = (d.d_state, d.head_dim, d.n_head);
    let mut y = vec![0f64; inp.x.len()];
    let mut states = Vec::new();
    for seq in 0..d.n_seqs {
        let src = inp.ids[seq] as usize;
        let mut h: Vec<f64> = inp.s[src * nh * nr * nc..][..nh * nr * nc]
            .iter()
            .map(|&v| v as f64)
            .collect();
        for t in 0..d.n_tokens {
            let tok = seq * d.n_tokens + t;
            for hd in 0..nh {
                let g = hd / (nh / d.n_group);
                let dtp = softplus(inp.dt[tok * nh + hd] as f64);
                for i1 in 0..nr {
                    let xv = inp.x[(tok * nh + hd) * nr + i1] as f64;
                    let mut sum = 0.0;
                    for i0 in 0..nc {
                        let av = if nr > 1 {
                            inp.a[hd]
                        } else {
                            inp.a[hd * nc + i0]
                        } as f64;
                        let bv = inp.b[(tok * d.n_group + g) * nc + i0] as f64;
                        let cv = inp.c[(tok * d.n_group + g) * nc + i0] as f64;
                        let st = &mut h[(hd * nr + i1) * nc + i0];
                        *st = (dtp * av).exp() * *st + bv * xv * dtp;
                        sum += *st * cv;
                    }
                    y[(tok * nh + hd) * nr + i1] = sum;
                }
            }
            states.push(h.clone());
        }
    }
    (y, states)
}

fn check_scan(d: Dims, k: usize, seed: u64) {
    let inp = scan_inputs(d, seed);
    let got = scan(d, &inp, k, f32::NAN).unwrap();
    let (y, states) = scan_ref(d, &inp);
    assert_close(&got[..y.len()], &y, 1e-4, "y");
    let per = d.d_state * d.head_dim * d.n_head;
    for slot in 0..k.min(d.n_tokens) {
        for seq in 0..d.n_seqs {
            let at = y.len() + (slot * d.n_seqs + seq) * per;
            let want = &states[seq * d.n_tokens + d.n_tokens - 1 - slot];
            assert_close(
                &got[at..at + per],
                want,
                1e-4,
                &format!("slot {slot} seq {seq}"),
            );
        }
    }
    // Slots older than the sequence are left as they were.
    for v in &got[y.len() + d.n_tokens.min(k) * d.n_seqs * per..] {
        assert!(v.is_nan());
    }
}

#[test]
fn ssm_scan_one_state_by_hand() {
    // Mamba-1, d_state 1, one head, one token: dt = 0 -> dt' = ln 2; h = 2^A h0 + B x ln2.
    let d = Dims {
        d_state: 1,
        head_dim: 1,
        n_head: 1,
        n_group: 1,
        n_tokens: 1,
        n_seqs: 1,
    };
    let inp = ScanInputs {
        s: vec![4.0],
        x: vec![1.0],
        dt: vec![0.0],
        a: vec![-1.0],
        b: vec![2.0],
        c: vec![3.0],
        ids: vec![0],
    };
    let got = scan(d, &inp, 1, 0.0).unwrap();
    let ln2 = 2f64.ln();
    let h = 0.5 * 4.0 + 2.0 * ln2;
    assert_close(&got, &[3.0 * h, h], 1e-6, "hand");
}

#[test]
fn ssm_scan_mamba1_like_test_backend_ops() {
    // test_ssm_scan(F32, 16, 1, 1024, 1, 32, 4), fewer heads.
    let d = Dims {
        d_state: 16,
        head_dim: 1,
        n_head: 64,
        n_group: 1,
        n_tokens: 32,
        n_seqs: 4,
    };
    check_scan(d, 1, 11);
}

#[test]
fn ssm_scan_mamba2_groups_and_snapshots() {
    // Mamba-2 rollback snapshots: test_ssm_scan(F32, 128, 64, 16, 2, 4, 2, K = 4), smaller dims.
    let d = Dims {
        d_state: 16,
        head_dim: 8,
        n_head: 4,
        n_group: 2,
        n_tokens: 4,
        n_seqs: 2,
    };
    check_scan(d, 4, 12);
    check_scan(d, 1, 13);
    // More slots than tokens: only the first n_tokens slots are written.
    let d = Dims { n_tokens: 2, ..d };
    check_scan(d, 3, 14);
}

#[test]
fn ssm_scan_rejects_bad_inputs() {
    let d = Dims {
        d_state: 4,
        head_dim: 1,
        n_head: 2,
        n_group: 1,
        n_tokens: 2,
        n_seqs: 2,
    };
    let mut inp = scan_inputs(d, 3);
    // Rollback snapshots need Mamba-2's scalar decay (ggml-cpu's supports_op).
    assert!(scan(d, &inp, 2, 0.0).is_err());
    inp.ids[1] = 2;
    assert!(scan(d, &inp, 1, 0.0).is_err());
    inp.ids[1] = -1;
    assert!(scan(d, &inp, 1, 0.0).is_err());
}
