use super::super::testutil::{HostTensor, Rng, assert_close, run_op};
use crate::ggml::{GgmlType, Op};

use GgmlType::{F16, F32};

fn rand(typ: GgmlType, ne: [usize; 4], seed: u64) -> HostTensor {
    let n = ne.iter().product();
    HostTensor::from_f32(typ, ne, &Rng::new(seed).vec(n, -1.0, 1.0))
}

fn params(v: &[i32]) -> [i32; 16] {
    let mut p = [0; 16];
    p[..v.len()].copy_from_slice(v);
    p
}

fn out_size(i: usize, k: usize, s: i32, p: i32, d: i32) -> usize {
    ((i as i32 + 2 * p - d * (k as i32 - 1) - 1) / s + 1) as usize
}

fn round_f16(v: f32) -> f64 {
    half::f16::from_f32(v).to_f64()
}

/// Direct 2-D convolution from the definition (f64), input rounded to f16 for an F16 kernel.
fn ref_conv_2d(x: &HostTensor, k: &HostTensor, s: [i32; 2], p: [i32; 2], d: [i32; 2]) -> Vec<f64> {
    let [iw, ih, c, n] = x.t.ne;
    let [kw, kh, _, oc] = k.t.ne;
    let (ow, oh) = (
        out_size(iw, kw, s[0], p[0], d[0]),
        out_size(ih, kh, s[1], p[1], d[1]),
    );
    let (xv, kv) = (x.to_f32(), k.to_f32());
    let rd = |v: f32| {
        if k.t.typ == F16 {
            round_f16(v)
        } else {
            v as f64
        }
    };
    let mut out = vec![0f64; ow * oh * oc * n];
    for b in 0..n {
        for o in 0..oc {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0f64;
                    for ci in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let y =
                                    (oy * s[1] as usize + ky * d[1] as usize) as i64 - p[1] as i64;
                                let xx =
                                    (ox * s[0] as usize + kx * d[0] as usize) as i64 - p[0] as i64;
                                if y < 0 || xx < 0 || y >= ih as i64 || xx >= iw as i64 {
                                    continue;
                                }
                                let xi = ((b * c + ci) * ih + y as usize) * iw + xx as usize;
                                let ki = ((o * c + ci) * kh + ky) * kw + kx;
                                acc += rd(xv[xi]) * kv[ki] as f64;
                            }
                        }
                    }
                    out[((b * oc + o) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    out
}

#[test]
fn conv_2d_by_hand() {
    // All-ones 3x3 image, 2x2 kernel [1, 2; 3, 4], stride 1, no padding: every output is 10.
    let x = HostTensor::from_f32(F32, [3, 3, 1, 1], &[1.0; 9]);
    let k = HostTensor::from_f32(F32, [2, 2, 1, 1], &[1.0, 2.0, 3.0, 4.0]);
    let mut d = HostTensor::zeros(F32, [2, 2, 1, 1]);
    run_op(
        Op::Conv2d,
        params(&[1, 1, 0, 0, 1, 1]),
        &[Some(&k), Some(&x)],
        &mut d,
    )
    .unwrap();
    assert_eq!(d.to_f32(), [10.0; 4]);
    // Padding 1: the top-left output sees only the kernel's bottom-right tap.
    let mut d = HostTensor::zeros(F32, [4, 4, 1, 1]);
    run_op(
        Op::Conv2d,
        params(&[1, 1, 1, 1, 1, 1]),
        &[Some(&k), Some(&x)],
        &mut d,
    )
    .unwrap();
    assert_eq!(d.to_f32()[0], 4.0);
    assert_eq!(d.to_f32()[5], 10.0);
}

#[test]
fn conv_2d_matches_direct_loops() {
    // test-backend-ops: {19,17,16,3} x {3,3,16,33} F16, s (2,3), p (4,2), d (2,1); and an F32 one
    // with a permuted (CWHN) input.
    for (typ, ine, kne, s, p, dl, perm) in [
        (
            F16,
            [19, 17, 16, 3],
            [3, 3, 16, 33],
            [2, 3],
            [4, 2],
            [2, 1],
            false,
        ),
        (
            F32,
            [13, 11, 5, 2],
            [3, 2, 5, 4],
            [1, 2],
            [1, 0],
            [1, 2],
            true,
        ),
    ] {
        let mut x = rand(F32, ine, 1);
        let k = rand(typ, kne, 2);
        let want = ref_conv_2d(&x, &k, s, p, dl);
        if perm {
            x = x.permuted([1, 2, 0, 3]);
        }
        let (ow, oh) = (
            out_size(ine[0], kne[0], s[0], p[0], dl[0]),
            out_size(ine[1], kne[1], s[1], p[1], dl[1]),
        );
        let mut d = HostTensor::zeros(F32, [ow, oh, kne[3], ine[3]]);
        let pr = params(&[s[0], s[1], p[0], p[1], dl[0], dl[1]]);
        run_op(Op::Conv2d, pr, &[Some(&k), Some(&x)], &mut d).unwrap();
        assert_close(&d.to_f32(), &want, 1e-4, "conv_2d");
    }
}

#[test]
fn conv_3d_matches_direct_loops() {
    // test-backend-ops: N=2, IC=5, ID=7, IH=9, IW=13, OC=4 (17 there), K=(2,3,4), s=(2,1,3),
    // p=(3,2,2), d=(2,1,2), F16 and F32 kernels.
    let (n, c, id, ih, iw, oc) = (2usize, 5usize, 7usize, 9usize, 13usize, 4usize);
    let (kd, kh, kw) = (2usize, 3usize, 4usize);
    let (s, p, d) = ([2, 1, 3], [3, 2, 2], [2, 1, 2]);
    for typ in [F32, F16] {
        let x = rand(F32, [iw, ih, id, c * n], 3);
        let k = rand(typ, [kw, kh, kd, c * oc], 4);
        let (ow, oh, od) = (
            out_size(iw, kw, s[0], p[0], d[0]),
            out_size(ih, kh, s[1], p[1], d[1]),
            out_size(id, kd, s[2], p[2], d[2]),
        );
        let (xv, kv) = (x.to_f32(), k.to_f32());
        let rd = |v: f32| if typ == F16 { round_f16(v) } else { v as f64 };
        let mut want = vec![0f64; ow * oh * od * oc * n];
        for b in 0..n {
            for o in 0..oc {
                for oz in 0..od {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = 0f64;
                            for ci in 0..c {
                                for kz in 0..kd {
                                    for ky in 0..kh {
                                        for kx in 0..kw {
                                            let z =
                                                (oz as i32 * s[2] + kz as i32 * d[2] - p[2]) as i64;
                                            let y =
                                                (oy as i32 * s[1] + ky as i32 * d[1] - p[1]) as i64;
                                            let xx =
                                                (ox as i32 * s[0] + kx as i32 * d[0] - p[0]) as i64;
                                            if z < 0
                                                || y < 0
                                                || xx < 0
                                                || z >= id as i64
                                                || y >= ih as i64
                                                || xx >= iw as i64
                                            {
                                                continue;
                                            }
                                            let xi = (((b * c + ci) * id + z as usize) * ih
                                                + y as usize)
                                                * iw
                                                + xx as usize;
                                            let ki = (((o * c + ci) * kd + kz) * kh + ky) * kw + kx;
                                            acc += rd(xv[xi]) * kv[ki] as f64;
                                        }
                                    }
                                }
                            }
                            want[(((b * oc + o) * od + oz) * oh + oy) * ow + ox] = acc;
                        }
                    }
                }
            }
        }
        let mut dst = HostTensor::zeros(F32, [ow, oh, od, oc * n]);
        let pr = params(&[
            s[0], s[1], s[2], p[0], p[1], p[2], d[0], d[1], d[2], c as i32, n as i32, oc as i32,
        ]);
        run_op(Op::Conv3d, pr, &[Some(&k), Some(&x)], &mut dst).unwrap();
        assert_close(&dst.to_f32(), &want, 1e-4, "conv_3d");
    }
}

#[test]
fn conv_2d_dw_matches_direct_loops_in_both_layouts() {
    // test-backend-ops: {32,8,64,1} x {3,3,1,64}, stride 2, padding 1, dilation 1, WHCN and CWHN.
    let (ine, s, p, dl) = ([32usize, 8, 64, 1], 2i32, 1i32, 1i32);
    for typ in [F32, F16] {
        for cwhn in [false, true] {
            let x0 = rand(F32, ine, 5);
            let k0 = rand(typ, [3, 3, 1, 64], 6);
            let (xv, kv) = (x0.to_f32(), k0.to_f32());
            let (ow, oh) = (out_size(32, 3, s, p, dl), out_size(8, 3, s, p, dl));
            let mut want = vec![0f64; ow * oh * 64];
            for c in 0..64 {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0f64;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let y = oy as i32 * s + ky * dl - p;
                                let xx = ox as i32 * s + kx * dl - p;
                                if (0..8).contains(&y) && (0..32).contains(&xx) {
                                    acc += kv[(c * 3 + ky as usize) * 3 + kx as usize] as f64
                                        * xv[(c * 8 + y as usize) * 32 + xx as usize] as f64;
                                }
                            }
                        }
                        want[(c * oh + oy) * ow + ox] = acc;
                    }
                }
            }
            let (x, k, mut d) = if cwhn {
                (
                    x0.permuted([1, 2, 0, 3]),
                    k0.permuted([1, 2, 3, 0]),
                    HostTensor::zeros(F32, [ow, oh, 64, 1]).permuted([1, 2, 0, 3]),
                )
            } else {
                (x0, k0, HostTensor::zeros(F32, [ow, oh, 64, 1]))
            };
            let pr = params(&[s, s, p, p, dl, dl]);
            run_op(Op::Conv2dDw, pr, &[Some(&k), Some(&x)], &mut d).unwrap();
            assert_close(&d.to_f32(), &want, 1e-5, "conv_2d_dw");
        }
    }
}

#[test]
fn conv_rejects_mismatched_channels() {
    let x = rand(F32, [8, 8, 3, 1], 7);
    let k = rand(F32, [3, 3, 2, 4], 8);
    let mut d = HostTensor::zeros(F32, [6, 6, 4, 1]);
    assert!(
        run_op(
            Op::Conv2d,
            params(&[1, 1, 0, 0, 1, 1]),
            &[Some(&k), Some(&x)],
            &mut d
        )
        .is_err()
    );
}
