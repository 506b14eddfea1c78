use super::super::testutil::{HostTensor, Rng, assert_close, run_op};
use crate::ggml::{GgmlType, Op};

use GgmlType::{F16, F32};

fn rand(ne: [usize; 4], seed: u64) -> HostTensor {
    let n = ne.iter().product();
    HostTensor::from_f32(F32, ne, &Rng::new(seed).vec(n, -1.0, 1.0))
}

fn params(v: &[i32]) -> [i32; 16] {
    let mut p = [0; 16];
    p[..v.len()].copy_from_slice(v);
    p
}

/// Naive 2-D im2col from the definition, in f64: cols[n][oh][ow][(ic, ky, kx)].
#[allow(clippy::too_many_arguments)]
fn ref_im2col_2d(
    x: &[f32],
    [iw, ih, ic, n]: [usize; 4],
    [kw, kh]: [usize; 2],
    s: [i64; 2],
    p: [i64; 2],
    d: [i64; 2],
    [ow, oh]: [usize; 2],
) -> Vec<f64> {
    let mut out = Vec::new();
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for c in 0..ic {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let y = oy as i64 * s[1] + ky as i64 * d[1] - p[1];
                            let xx = ox as i64 * s[0] + kx as i64 * d[0] - p[0];
                            let inb = (0..ih as i64).contains(&y) && (0..iw as i64).contains(&xx);
                            out.push(if inb {
                                x[((b * ic + c) * ih + y as usize) * iw + xx as usize] as f64
                            } else {
                                0.0
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn im2col_1d_by_hand() {
    // One channel [1, 2, 3, 4], K = 3, stride 1, padding 1: windows centred on each sample.
    let x = HostTensor::from_f32(F32, [4, 1, 1, 1], &[1.0, 2.0, 3.0, 4.0]);
    let k = HostTensor::zeros(F16, [3, 1, 1, 1]);
    let mut d = HostTensor::zeros(F32, [3, 4, 1, 1]);
    run_op(
        Op::Im2col,
        params(&[1, 0, 1, 0, 1, 0, 0]),
        &[Some(&k), Some(&x)],
        &mut d,
    )
    .unwrap();
    let want = [0., 1., 2., 1., 2., 3., 2., 3., 4., 3., 4., 0.];
    assert_eq!(d.to_f32(), want);
}

#[test]
fn im2col_2d_matches_definition_and_feeds_a_convolution() {
    let (s, p, dl) = ([2i64, 1], [1i64, 2], [1i64, 2]);
    let (ine, kw, kh, oc) = ([7usize, 6, 2, 2], 3usize, 2usize, 3usize);
    let ow = ((7 + 2 - 2 - 1) / 2 + 1) as usize;
    let oh = (6 + 4 - 2 - 1 + 1) as usize; // stride 1
    let x = rand(ine, 1);
    let k = rand([kw, kh, 2, oc], 2);
    for dt in [F32, F16] {
        let mut d = HostTensor::zeros(dt, [2 * kh * kw, ow, oh, 2]);
        let pr = params(&[2, 1, 1, 2, 1, 2, 1]);
        run_op(Op::Im2col, pr, &[Some(&k), Some(&x)], &mut d).unwrap();
        let mut want = ref_im2col_2d(&x.to_f32(), ine, [kw, kh], s, p, dl, [ow, oh]);
        if dt == F16 {
            want.iter_mut()
                .for_each(|v| *v = half::f16::from_f64(*v).to_f64());
        }
        let got = d.to_f32();
        assert_close(&got, &want, 0.0, "im2col 2d");
        // cols x kernel rows == direct convolution (computed from the definition).
        let kv = k.to_f32();
        let xv = x.to_f32();
        let field = 2 * kh * kw;
        for (r, row) in got.chunks(field).enumerate().filter(|_| dt == F32) {
            let (ox, oy, b) = (r % ow, (r / ow) % oh, r / (ow * oh));
            for o in 0..oc {
                let via_cols: f64 = row
                    .iter()
                    .zip(&kv[o * field..(o + 1) * field])
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                let mut direct = 0f64;
                for c in 0..2 {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let y = oy as i64 + ky as i64 * 2 - 2;
                            let xx = ox as i64 * 2 + kx as i64 - 1;
                            if (0..6).contains(&y) && (0..7).contains(&xx) {
                                let xi = ((b * 2 + c) * 6 + y as usize) * 7 + xx as usize;
                                let ki = ((o * 2 + c) * kh + ky) * kw + kx;
                                direct += xv[xi] as f64 * kv[ki] as f64;
                            }
                        }
                    }
                }
                assert!((via_cols - direct).abs() < 1e-5, "conv via cols {r} {o}");
            }
        }
    }
}

#[test]
fn im2col_regression_shapes() {
    // test-backend-ops: im2col(F32 input, F16 kernel, F16 dst, {12,12,2,32}, {3,3,2,32}, s1 p1 d1, 2D).
    let ine = [12, 12, 2, 32];
    let x = rand(ine, 3);
    let k = HostTensor::zeros(F16, [3, 3, 2, 32]);
    let mut d = HostTensor::zeros(F16, [18, 12, 12, 32]);
    let pr = params(&[1, 1, 1, 1, 1, 1, 1]);
    run_op(Op::Im2col, pr, &[Some(&k), Some(&x)], &mut d).unwrap();
    let want: Vec<f64> = ref_im2col_2d(&x.to_f32(), ine, [3, 3], [1, 1], [1, 1], [1, 1], [12, 12])
        .into_iter()
        .map(|v| half::f16::from_f64(v).to_f64())
        .collect();
    assert_close(&d.to_f32(), &want, 0.0, "im2col f16");
    // 1-D with dilation, stride and padding: {20,2,2,1} kernel {3,2,2,1}, s3 p3 d3.
    let x = rand([20, 2, 2, 1], 4);
    let k = HostTensor::zeros(F32, [3, 2, 2, 1]);
    let ow = (20 + 6 - 6 - 1) / 3 + 1;
    let mut d = HostTensor::zeros(F32, [6, ow, 2, 1]);
    run_op(
        Op::Im2col,
        params(&[3, 0, 3, 0, 3, 0, 0]),
        &[Some(&k), Some(&x)],
        &mut d,
    )
    .unwrap();
    // A 1-D image [20, IC=2, N=2] is a 2-D one of height 1 per (channel, batch).
    let xv = x.to_f32();
    let want = ref_im2col_2d(&xv, [20, 1, 2, 2], [3, 1], [3, 1], [3, 0], [3, 1], [ow, 1]);
    assert_close(&d.to_f32(), &want, 0.0, "im2col 1d");
}

#[test]
fn im2col_back_is_the_adjoint() {
    // <im2col(x), g> == <x, im2col_back(g)> for any x, g.
    for (two_d, ine, kne, pr) in [
        (true, [9, 7, 2, 2], [3, 2, 2, 1], [2, 3, 1, 2, 2, 1, 1]),
        (false, [11, 3, 2, 1], [4, 3, 1, 1], [3, 0, 2, 0, 2, 0, 0]),
    ] {
        let x = rand(ine, 5);
        let k = HostTensor::zeros(F32, kne);
        let p = params(&pr);
        let (s, pd, dl) = (
            [pr[0] as i64, pr[1] as i64],
            [pr[2] as i64, pr[3] as i64],
            [pr[4] as i64, pr[5] as i64],
        );
        let ow =
            ((ine[0] as i64 + 2 * pd[0] - dl[0] * (kne[0] as i64 - 1) - 1) / s[0] + 1) as usize;
        let cne = if two_d {
            let oh =
                ((ine[1] as i64 + 2 * pd[1] - dl[1] * (kne[1] as i64 - 1) - 1) / s[1] + 1) as usize;
            [ine[2] * kne[1] * kne[0], ow, oh, ine[3]]
        } else {
            [ine[1] * kne[0], ow, ine[2], 1]
        };
        let mut cols = HostTensor::zeros(F32, cne);
        run_op(Op::Im2col, p, &[Some(&k), Some(&x)], &mut cols).unwrap();
        let g = rand(cne, 6);
        let mut back = HostTensor::zeros(F32, ine);
        run_op(Op::Im2colBack, p, &[Some(&g), Some(&k)], &mut back).unwrap();
        let lhs: f64 = cols
            .to_f32()
            .iter()
            .zip(g.to_f32())
            .map(|(a, b)| *a as f64 * b as f64)
            .sum();
        let rhs: f64 = x
            .to_f32()
            .iter()
            .zip(back.to_f32())
            .map(|(a, b)| *a as f64 * b as f64)
            .sum();
        assert!(
            (lhs - rhs).abs() < 1e-4,
            "adjoint 2d={two_d}: {lhs} vs {rhs}"
        );
    }
}

#[test]
fn im2col_3d_matches_definition() {
    // test-backend-ops style: {20,20,10,3}-like input (smaller), kernel {3,3,3,3}, IC = 3, N = 1,
    // through a non-contiguous (permuted) input and both destination types.
    let (iw, ih, id, ic, n) = (6usize, 5usize, 4usize, 3usize, 2usize);
    let x = rand([iw, ih, id, ic * n], 7).permuted([1, 0, 2, 3]);
    let k = HostTensor::zeros(F32, [2, 3, 2, 4 * ic]);
    let (s, p, d) = ([1i64, 2, 1], [1i64, 0, 2], [2i64, 1, 1]);
    let out = |i: i64, k: i64, j: usize| ((i + 2 * p[j] - d[j] * (k - 1) - 1) / s[j] + 1) as usize;
    let (ow, oh, od) = (out(6, 2, 0), out(5, 3, 1), out(4, 2, 2));
    let xv = x.to_f32();
    let mut want = Vec::new();
    for b in 0..n {
        for oz in 0..od {
            for oy in 0..oh {
                for ox in 0..ow {
                    for c in 0..ic {
                        for kz in 0..2 {
                            for ky in 0..3 {
                                for kx in 0..2 {
                                    let sx = ox as i64 * s[0] + kx * d[0] - p[0];
                                    let sy = oy as i64 * s[1] + ky * d[1] - p[1];
                                    let sz = oz as i64 * s[2] + kz * d[2] - p[2];
                                    let inb = (0..iw as i64).contains(&sx)
                                        && (0..ih as i64).contains(&sy)
                                        && (0..id as i64).contains(&sz);
                                    want.push(if inb {
                                        let i = (((b * ic + c) * id + sz as usize) * ih
                                            + sy as usize)
                                            * iw
                                            + sx as usize;
                                        xv[i] as f64
                                    } else {
                                        0.0
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    for dt in [F32, F16] {
        let mut dst = HostTensor::zeros(dt, [ic * 12, ow, oh, od * n]);
        let pr = params(&[1, 2, 1, 1, 0, 2, 2, 1, 1, ic as i32]);
        run_op(Op::Im2col3d, pr, &[Some(&k), Some(&x)], &mut dst).unwrap();
        let tol = if dt == F16 { 1e-3 } else { 0.0 };
        assert_close(&dst.to_f32(), &want, tol, "im2col_3d");
    }
}

#[test]
fn im2col_rejects_bad_shapes() {
    let x = rand([10, 10, 3, 1], 8);
    let k = HostTensor::zeros(F16, [3, 3, 3, 1]);
    let mut d = HostTensor::zeros(F32, [27, 9, 10, 1]);
    let pr = params(&[1, 1, 1, 1, 1, 1, 1]);
    assert!(run_op(Op::Im2col, pr, &[Some(&k), Some(&x)], &mut d).is_err());
    let mut d = HostTensor::zeros(F32, [27, 10, 10, 1]);
    assert!(
        run_op(
            Op::Im2col,
            params(&[0, 1, 1, 1, 1, 1, 1]),
            &[Some(&k), Some(&x)],
            &mut d
        )
        .is_err()
    );
}
