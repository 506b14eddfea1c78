use super::super::testutil::{HostTensor, Rng, assert_close, run_op};
use crate::ggml::{GgmlType, Op};

use GgmlType::{Bf16, F16, F32};

fn rand(typ: GgmlType, ne: [usize; 4], seed: u64) -> HostTensor {
    let n = ne.iter().product();
    HostTensor::from_f32(typ, ne, &Rng::new(seed).vec(n, -1.0, 1.0))
}

fn params(v: &[i32]) -> [i32; 16] {
    let mut p = [0; 16];
    p[..v.len()].copy_from_slice(v);
    p
}

#[test]
fn conv_transpose_1d_by_hand() {
    // Input [1, 2], kernel [1, 1]: stride 1 overlaps to [1, 3, 2]; stride 2 places [1, 1, 2, 2].
    let x = HostTensor::from_f32(F32, [2, 1, 1, 1], &[1.0, 2.0]);
    let k = HostTensor::from_f32(F32, [2, 1, 1, 1], &[1.0, 1.0]);
    let mut d = HostTensor::zeros(F32, [3, 1, 1, 1]);
    run_op(
        Op::ConvTranspose1d,
        params(&[1, 0, 1]),
        &[Some(&k), Some(&x)],
        &mut d,
    )
    .unwrap();
    assert_eq!(d.to_f32(), [1.0, 3.0, 2.0]);
    let mut d = HostTensor::zeros(F32, [4, 1, 1, 1]);
    run_op(
        Op::ConvTranspose1d,
        params(&[2, 0, 1]),
        &[Some(&k), Some(&x)],
        &mut d,
    )
    .unwrap();
    assert_eq!(d.to_f32(), [1.0, 1.0, 2.0, 2.0]);
}

#[test]
fn conv_transpose_1d_matches_scatter_loops() {
    // test-backend-ops: {13,7,1,1} x {3,9,7,1} strides 1..3, and the default {197,32} x {16,32,32}.
    for (l, cin, k, cout, s) in [
        (13, 7, 3, 9, 3),
        (13, 7, 3, 9, 1),
        (197, 32, 16, 32, 1),
        (2, 1, 1337, 1, 2),
    ] {
        for typ in [F32, F16] {
            let x = rand(F32, [l, cin, 1, 1], 1);
            let w = rand(typ, [k, cout, cin, 1], 2);
            let len = (l - 1) * s + k;
            let (xv, wv) = (x.to_f32(), w.to_f32());
            let rd = |v: f32| {
                if typ == F16 {
                    half::f16::from_f32(v).to_f64()
                } else {
                    v as f64
                }
            };
            let mut want = vec![0f64; len * cout];
            for o in 0..cout {
                for i in 0..l {
                    for kk in 0..k {
                        for c in 0..cin {
                            want[o * len + i * s + kk] +=
                                rd(xv[c * l + i]) * wv[(c * cout + o) * k + kk] as f64;
                        }
                    }
                }
            }
            let mut d = HostTensor::zeros(F32, [len, cout, 1, 1]);
            run_op(
                Op::ConvTranspose1d,
                params(&[s as i32, 0, 1]),
                &[Some(&w), Some(&x)],
                &mut d,
            )
            .unwrap();
            assert_close(&d.to_f32(), &want, 1e-5, "conv_transpose_1d");
        }
    }
}

#[test]
fn conv_transpose_2d_matches_scatter_loops() {
    // test-backend-ops: {10,10,9,2} x {3,3,1,9} stride 2, and {3,2,3,1} x {2,2,1,3} stride 1.
    for (ine, kne, s) in [
        ([10, 10, 9, 2], [3, 3, 1, 9], 2usize),
        ([3, 2, 3, 1], [2, 2, 1, 3], 1),
        ([5, 4, 3, 1], [3, 2, 2, 3], 3),
    ] {
        for typ in [F32, F16] {
            let x = rand(F32, ine, 3);
            let w = rand(typ, kne, 4);
            let [iw, ih, cin, n] = ine;
            let [kw, kh, cout, _] = kne;
            let (ow, oh) = ((iw - 1) * s + kw, (ih - 1) * s + kh);
            let (xv, wv) = (x.to_f32(), w.to_f32());
            let rd = |v: f32| {
                if typ == F16 {
                    half::f16::from_f32(v).to_f64()
                } else {
                    v as f64
                }
            };
            let mut want = vec![0f64; ow * oh * cout * n];
            for b in 0..n {
                for o in 0..cout {
                    for y in 0..ih {
                        for xx in 0..iw {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    for c in 0..cin {
                                        let xi = ((b * cin + c) * ih + y) * iw + xx;
                                        let wi = ((c * cout + o) * kh + ky) * kw + kx;
                                        let at =
                                            ((b * cout + o) * oh + y * s + ky) * ow + xx * s + kx;
                                        want[at] += rd(xv[xi]) * wv[wi] as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let mut d = HostTensor::zeros(F32, [ow, oh, cout, n]);
            run_op(
                Op::ConvTranspose2d,
                params(&[s as i32]),
                &[Some(&w), Some(&x)],
                &mut d,
            )
            .unwrap();
            assert_close(&d.to_f32(), &want, 1e-5, "conv_transpose_2d");
        }
    }
}

#[test]
fn col2im_1d_is_overlap_add_then_crop() {
    // test-backend-ops: (K, OC, T_in, s, p) = (6,4,11,3,1), (2,3,9,3,0), (8,2,3,2,5), (16,32,197,8,0).
    for (k, oc, t_in, s, p) in [
        (6usize, 4usize, 11usize, 3usize, 1usize),
        (2, 3, 9, 3, 0),
        (8, 2, 3, 2, 5),
        (16, 32, 197, 8, 0),
    ] {
        for typ in [F32, F16, Bf16] {
            let cols = rand(typ, [k * oc, t_in, 1, 1], 5);
            let cv = cols.to_f32();
            let full = (t_in - 1) * s + k;
            let mut sig = vec![0f64; full * oc];
            for t in 0..t_in {
                for o in 0..oc {
                    for kk in 0..k {
                        sig[o * full + t * s + kk] += cv[t * k * oc + o * k + kk] as f64;
                    }
                }
            }
            let len = full - 2 * p;
            let mut want: Vec<f64> = (0..oc)
                .flat_map(|o| sig[o * full + p..o * full + p + len].to_vec())
                .collect();
            if typ != F32 {
                // The f32 sum is rounded once to the destination type.
                let back = HostTensor::from_f32(
                    typ,
                    [want.len(), 1, 1, 1],
                    &want.iter().map(|v| *v as f32).collect::<Vec<_>>(),
                );
                want = back.to_f32().iter().map(|v| *v as f64).collect();
            }
            let mut d = HostTensor::zeros(typ, [len, oc, 1, 1]);
            let pr = params(&[s as i32, oc as i32, p as i32]);
            run_op(Op::Col2im1d, pr, &[Some(&cols)], &mut d).unwrap();
            let tol = if typ == Bf16 {
                1e-2
            } else if typ == F16 {
                1e-3
            } else {
                1e-6
            };
            assert_close(&d.to_f32(), &want, tol, "col2im_1d");
        }
    }
}

#[test]
fn transposed_convs_reject_bad_shapes() {
    let x = rand(F32, [3, 2, 1, 1], 6);
    let w = rand(F32, [2, 3, 2, 1], 7);
    let mut d = HostTensor::zeros(F32, [5, 3, 1, 1]);
    assert!(
        run_op(
            Op::ConvTranspose1d,
            params(&[1, 0, 1]),
            &[Some(&w), Some(&x)],
            &mut d
        )
        .is_err()
    );
    let cols = rand(F32, [10, 4, 1, 1], 8);
    let mut d = HostTensor::zeros(F32, [5, 3, 1, 1]);
    assert!(run_op(Op::Col2im1d, params(&[1, 3, 0]), &[Some(&cols)], &mut d).is_err());
}
