use super::super::testutil::{HostTensor, Rng, assert_close, run_op};
use super::{POOL_AVG, POOL_MAX};
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

fn pool_out(i: usize, k: usize, s: usize, p: usize) -> usize {
    (i + 2 * p - k) / s + 1
}

#[test]
fn pool_1d_by_hand() {
    let x = HostTensor::from_f32(F32, [4, 1, 1, 1], &[1.0, 2.0, 3.0, 4.0]);
    let mut d = HostTensor::zeros(F32, [2, 1, 1, 1]);
    run_op(
        Op::Pool1d,
        params(&[POOL_AVG, 2, 2, 0]),
        &[Some(&x)],
        &mut d,
    )
    .unwrap();
    assert_eq!(d.to_f32(), [1.5, 3.5]);
    run_op(
        Op::Pool1d,
        params(&[POOL_MAX, 2, 2, 0]),
        &[Some(&x)],
        &mut d,
    )
    .unwrap();
    assert_eq!(d.to_f32(), [2.0, 4.0]);
    // Padding 1, k 2, s 2: windows [-1, 0] and [1, 2], [3, 4]; the average counts only real taps.
    let mut d = HostTensor::zeros(F32, [3, 1, 1, 1]);
    run_op(
        Op::Pool1d,
        params(&[POOL_AVG, 2, 2, 1]),
        &[Some(&x)],
        &mut d,
    )
    .unwrap();
    assert_eq!(d.to_f32(), [1.0, 2.5, 4.0]);
    // k 1, s 2, p 3: taps at -3, -1, 1, 3; windows entirely in the padding give -FLT_MAX (max)
    // or 0 (average).
    let mut d = HostTensor::zeros(F32, [4, 1, 1, 1]);
    run_op(
        Op::Pool1d,
        params(&[POOL_MAX, 1, 2, 3]),
        &[Some(&x)],
        &mut d,
    )
    .unwrap();
    assert_eq!(d.to_f32(), [-f32::MAX, -f32::MAX, 2.0, 4.0]);
    run_op(
        Op::Pool1d,
        params(&[POOL_AVG, 1, 2, 3]),
        &[Some(&x)],
        &mut d,
    )
    .unwrap();
    assert_eq!(d.to_f32(), [0.0, 0.0, 2.0, 4.0]);
}

#[test]
fn pool_1d_matches_reference() {
    // test-backend-ops: {11,1,3,2} and {10,3,2,1}, every k, s, p of the suite.
    for ne in [[11, 1, 3, 2], [10, 3, 2, 1]] {
        let x = rand(F32, ne, 1);
        let xv = x.to_f32();
        for max in [false, true] {
            for (k, s, p) in [(1, 1, 0), (3, 2, 1), (2, 3, 3), (3, 1, 2)] {
                let ow = pool_out(ne[0], k, s, p);
                let mut want = Vec::new();
                for row in xv.chunks(ne[0]) {
                    for o in 0..ow {
                        let taps: Vec<f64> = (0..k)
                            .filter_map(|j| (o * s + j).checked_sub(p))
                            .filter(|&i| i < ne[0])
                            .map(|i| row[i] as f64)
                            .collect();
                        want.push(match (max, taps.is_empty()) {
                            (true, true) => -f32::MAX as f64,
                            (true, false) => taps.iter().cloned().fold(f64::MIN, f64::max),
                            (false, true) => 0.0,
                            (false, false) => taps.iter().sum::<f64>() / taps.len() as f64,
                        });
                    }
                }
                let mut d = HostTensor::zeros(F32, [ow, ne[1], ne[2], ne[3]]);
                let kind = if max { POOL_MAX } else { POOL_AVG };
                let pr = params(&[kind, k as i32, s as i32, p as i32]);
                run_op(Op::Pool1d, pr, &[Some(&x)], &mut d).unwrap();
                assert_close(&d.to_f32(), &want, 1e-6, "pool_1d");
            }
        }
    }
}

/// POOL_2D from the definition: averages divide by the whole window.
fn ref_pool_2d(
    xv: &[f32],
    ne: [usize; 4],
    max: bool,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
) -> Vec<f64> {
    let (ow, oh) = (
        pool_out(ne[0], k[0], s[0], p[0]),
        pool_out(ne[1], k[1], s[1], p[1]),
    );
    let mut want = Vec::new();
    for plane in xv.chunks(ne[0] * ne[1]) {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut taps = Vec::new();
                for ky in 0..k[1] {
                    for kx in 0..k[0] {
                        let (y, x) = (
                            (oy * s[1] + ky).checked_sub(p[1]),
                            (ox * s[0] + kx).checked_sub(p[0]),
                        );
                        if let (Some(y), Some(x)) = (y, x)
                            && y < ne[1]
                            && x < ne[0]
                        {
                            taps.push(plane[y * ne[0] + x] as f64);
                        }
                    }
                }
                want.push(if max {
                    taps.iter().cloned().fold(-f32::MAX as f64, f64::max)
                } else {
                    taps.iter().sum::<f64>() / (k[0] * k[1]) as f64
                });
            }
        }
    }
    want
}

#[test]
fn pool_2d_matches_reference() {
    // test-backend-ops: {10,10,3,1}, k in {1,3}, s in {1,2}, p in {0,1}, F32 (and an F16 input).
    let ne = [10, 10, 3, 1];
    for typ in [F32, F16] {
        let x = rand(typ, ne, 2);
        let xv = x.to_f32();
        for max in [false, true] {
            for (k, s, p) in [
                ([3, 3], [1, 1], [1, 1]),
                ([1, 3], [2, 1], [0, 1]),
                ([3, 1], [2, 2], [1, 0]),
            ] {
                let want = ref_pool_2d(&xv, ne, max, k, s, p);
                let (ow, oh) = (
                    pool_out(10, k[0], s[0], p[0]),
                    pool_out(10, k[1], s[1], p[1]),
                );
                let mut d = HostTensor::zeros(F32, [ow, oh, 3, 1]);
                let kind = if max { POOL_MAX } else { POOL_AVG };
                let pr = params(&[
                    kind,
                    k[0] as i32,
                    k[1] as i32,
                    s[0] as i32,
                    s[1] as i32,
                    p[0] as i32,
                    p[1] as i32,
                ]);
                run_op(Op::Pool2d, pr, &[Some(&x)], &mut d).unwrap();
                assert_close(&d.to_f32(), &want, 1e-6, "pool_2d");
            }
        }
    }
}

#[test]
fn pool_2d_back_avg_is_the_adjoint_and_max_routes_to_the_argmax() {
    let ne = [7, 6, 2, 1];
    let x = rand(F32, ne, 3);
    let (k, s, p) = ([3usize, 2usize], [2usize, 1usize], [1usize, 1usize]);
    let (ow, oh) = (pool_out(7, 3, 2, 1), pool_out(6, 2, 1, 1));
    let g = rand(F32, [ow, oh, 2, 1], 4);
    let pr = |kind| {
        params(&[
            kind,
            k[0] as i32,
            k[1] as i32,
            s[0] as i32,
            s[1] as i32,
            p[0] as i32,
            p[1] as i32,
        ])
    };
    // Average: <pool(x), g> == <x, back(g)>.
    let mut fwd = HostTensor::zeros(F32, [ow, oh, 2, 1]);
    run_op(Op::Pool2d, pr(POOL_AVG), &[Some(&x)], &mut fwd).unwrap();
    let mut back = HostTensor::zeros(F32, ne);
    run_op(
        Op::Pool2dBack,
        pr(POOL_AVG),
        &[Some(&g), Some(&x)],
        &mut back,
    )
    .unwrap();
    let dot = |a: &HostTensor, b: &HostTensor| -> f64 {
        a.to_f32()
            .iter()
            .zip(b.to_f32())
            .map(|(u, v)| *u as f64 * v as f64)
            .sum()
    };
    assert!((dot(&fwd, &g) - dot(&x, &back)).abs() < 1e-4);
    // Max: the gradient mass is conserved and lands only where the input equals a window's max.
    run_op(Op::Pool2d, pr(POOL_MAX), &[Some(&x)], &mut fwd).unwrap();
    run_op(
        Op::Pool2dBack,
        pr(POOL_MAX),
        &[Some(&g), Some(&x)],
        &mut back,
    )
    .unwrap();
    let total: f64 = g.to_f32().iter().map(|v| *v as f64).sum();
    let got: f64 = back.to_f32().iter().map(|v| *v as f64).sum();
    assert!((total - got).abs() < 1e-4);
    let maxima = fwd.to_f32();
    for (i, (b, xv)) in back.to_f32().iter().zip(x.to_f32()).enumerate() {
        if *b != 0.0 {
            let plane = i / 42;
            assert!(
                maxima[plane * ow * oh..(plane + 1) * ow * oh].contains(&xv),
                "{i}"
            );
        }
    }
    // By hand: a 2x2 input, one 2x2 window: all gradient to the max at (1, 0).
    let x = HostTensor::from_f32(F32, [2, 2, 1, 1], &[1.0, 5.0, 2.0, 3.0]);
    let g = HostTensor::from_f32(F32, [1, 1, 1, 1], &[7.0]);
    let mut back = HostTensor::zeros(F32, [2, 2, 1, 1]);
    run_op(
        Op::Pool2dBack,
        params(&[POOL_MAX, 2, 2, 2, 2, 0, 0]),
        &[Some(&g), Some(&x)],
        &mut back,
    )
    .unwrap();
    assert_eq!(back.to_f32(), [0.0, 7.0, 0.0, 0.0]);
}

#[test]
fn pool_rejects_unknown_kind() {
    let x = rand(F32, [4, 1, 1, 1], 5);
    let mut d = HostTensor::zeros(F32, [2, 1, 1, 1]);
    assert!(run_op(Op::Pool1d, params(&[2, 2, 2, 0]), &[Some(&x)], &mut d).is_err());
}
