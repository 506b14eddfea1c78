//! Backward ops against their derivatives written out in f64 from the forward definitions (tolerance
//! 1e-5 for f32: a few roundings; 2e-3 for f16). Shapes mirror test-backend-ops' cases.

use super::super::elementwise::tests::{coords, flat, input, tol};
use super::super::testutil::{HostTensor, Rng, assert_close, params_f32, run_op};
use crate::ggml::{GgmlType, Op};

use GgmlType::{F16, F32, I32};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// d/dx silu(x) = s + x s (1 - s).
#[test]
fn silu_back_is_the_silu_derivative() {
    let mut rng = Rng::new(91);
    // test-backend-ops: SILU_BACK(type=f32,ne=[64,5,4,3],eps=0.000001).
    let ne = [64, 5, 4, 3];
    for t in [F32, F16] {
        let (dy, dyv) = input(&mut rng, t, ne, -1.0, 1.0, None);
        let (x, xv) = input(&mut rng, t, ne, -4.0, 4.0, None);
        let mut d = HostTensor::zeros(t, ne);
        run_op(Op::SiluBack, [0; 16], &[Some(&dy), Some(&x)], &mut d).unwrap();
        let want: Vec<f64> = xv
            .iter()
            .zip(&dyv)
            .map(|(&x, &g)| {
                let s = sigmoid(x);
                g * (s + x * s * (1.0 - s))
            })
            .collect();
        assert_close(&d.to_f32(), &want, tol(t), &format!("silu_back {t:?}"));
    }
    let (a, _) = input(&mut rng, F32, ne, -1.0, 1.0, None);
    let (b, _) = input(&mut rng, F16, ne, -1.0, 1.0, None);
    let mut d = HostTensor::zeros(F32, ne);
    assert!(run_op(Op::SiluBack, [0; 16], &[Some(&a), Some(&b)], &mut d).is_err());
}

/// y = x / rms(x), rms = sqrt(mean(x^2) + eps): dx_i = (dz_i - x_i * mean(x dz) / (mean(x^2) + eps)) / rms.
#[test]
fn rms_norm_back_is_the_rms_norm_gradient() {
    let mut rng = Rng::new(92);
    for (n, eps) in [(64, 1e-6f32), (1025, 1e-3)] {
        let ne = [n, 5, 4, 3];
        let (dz, dzv) = input(&mut rng, F32, ne, -10.0, 10.0, Some([0, 2, 1, 3]));
        let (x, xv) = input(&mut rng, F32, ne, -10.0, 10.0, None);
        let mut d = HostTensor::zeros(F32, ne);
        run_op(
            Op::RmsNormBack,
            params_f32(&[eps]),
            &[Some(&dz), Some(&x)],
            &mut d,
        )
        .unwrap();
        let mut want = Vec::new();
        for (xr, gr) in xv.chunks(n).zip(dzv.chunks(n)) {
            let ms = xr.iter().map(|v| v * v).sum::<f64>() / n as f64 + f64::from(eps);
            let mxdz = xr.iter().zip(gr).map(|(a, b)| a * b).sum::<f64>() / n as f64;
            want.extend(
                xr.iter()
                    .zip(gr)
                    .map(|(&x, &g)| (g - x * mxdz / ms) / ms.sqrt()),
            );
        }
        assert_close(&d.to_f32(), &want, 1e-5, &format!("rms_norm_back {n}"));
    }
}

/// dx = scale * y * (dy - sum(y dy)) for y = softmax(scale * x).
#[test]
fn soft_max_back_is_the_softmax_jacobian() {
    let mut rng = Rng::new(93);
    for (ne, scale) in [([16, 16, 1, 1], 1.0f32), ([15, 15, 2, 3], 0.1)] {
        let (dy, dyv) = input(&mut rng, F32, ne, -1.0, 1.0, None);
        let (y, yv) = input(&mut rng, F32, ne, 0.0, 1.0, Some([1, 0, 2, 3]));
        let mut d = HostTensor::zeros(F32, ne);
        let p = params_f32(&[scale, 0.0]);
        run_op(Op::SoftMaxBack, p, &[Some(&dy), Some(&y)], &mut d).unwrap();
        let mut want = Vec::new();
        for (yr, gr) in yv.chunks(ne[0]).zip(dyv.chunks(ne[0])) {
            let dot: f64 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
            want.extend(
                yr.iter()
                    .zip(gr)
                    .map(|(&y, &g)| f64::from(scale) * y * (g - dot)),
            );
        }
        assert_close(&d.to_f32(), &want, 1e-5, "soft_max_back");
    }
    // ALiBi is refused (supports_op).
    let (a, _) = input(&mut rng, F32, [4, 2, 1, 1], 0.0, 1.0, None);
    let mut d = HostTensor::zeros(F32, [4, 2, 1, 1]);
    let p = params_f32(&[1.0, 8.0]);
    assert!(run_op(Op::SoftMaxBack, p, &[Some(&a), Some(&a)], &mut d).is_err());
}

/// dst[k] = sum of the source over every position that repeats k.
#[test]
fn repeat_back_sums_the_repetitions() {
    let mut rng = Rng::new(94);
    let ne = [8, 6, 4, 2];
    for nr in [
        [1, 1, 1, 1],
        [2, 1, 1, 1],
        [1, 2, 1, 1],
        [1, 1, 2, 1],
        [1, 1, 1, 2],
        [2, 2, 2, 2],
    ] {
        let big: [usize; 4] = std::array::from_fn(|d| ne[d] * nr[d]);
        for view in [false, true] {
            // test-backend-ops' `v`: the source is the first half (in repeated dims) of a tensor
            // twice as large there, so its rows are strided.
            let full: [usize; 4] =
                std::array::from_fn(|d| big[d] * if view && nr[d] > 1 { 2 } else { 1 });
            let (storage, sv) = input(&mut rng, F32, full, -1.0, 1.0, None);
            let mut a = storage.clone();
            a.t.ne = big;
            let mut d = HostTensor::zeros(F32, ne);
            run_op(Op::RepeatBack, [0; 16], &[Some(&a)], &mut d).unwrap();
            let mut want = vec![0f64; ne.iter().product()];
            for e in 0..big.iter().product() {
                let c = coords(big, e);
                let k = std::array::from_fn(|d| c[d] % ne[d]);
                want[flat(ne, k)] += sv[flat(full, c)];
            }
            assert_close(
                &d.to_f32(),
                &want,
                1e-5,
                &format!("repeat_back {nr:?} {view}"),
            );
        }
    }
    let (a, _) = input(&mut rng, F32, [8, 6, 4, 2], -1.0, 1.0, None);
    let mut d = HostTensor::zeros(F32, [3, 6, 4, 2]);
    assert!(run_op(Op::RepeatBack, [0; 16], &[Some(&a)], &mut d).is_err());
}

/// dst[r] = sum of the gradient rows i with ids[i] == r; other rows zero.
#[test]
fn get_rows_back_scatters_and_adds() {
    let mut rng = Rng::new(95);
    // test-backend-ops: (n, m, r) = (256, 5, 4) for f32/f16, with and without a view of the ids;
    // (1, 70000, 4).
    for (t, n, m, r, view) in [
        (F32, 256, 5, 4, false),
        (F32, 256, 5, 4, true),
        (F16, 256, 5, 4, false),
        (F16, 256, 5, 4, true),
        (F32, 1, 70000, 4, false),
    ] {
        let ids: Vec<i32> = (0..r).map(|_| (rng.next_u64() % m as u64) as i32).collect();
        let ids = [&ids[..2], &[ids[0], ids[0]]].concat();
        let mut it = HostTensor::from_i32([r, 1, 1, 1], &ids);
        let used = if view { r / 2 } else { r };
        it.t.ne[0] = used;
        let (g, gv) = input(&mut rng, t, [n, r, 1, 1], -1.0, 1.0, None);
        let mut d = HostTensor::zeros(F32, [n, m, 1, 1]);
        run_op(Op::GetRowsBack, [0; 16], &[Some(&g), Some(&it)], &mut d).unwrap();
        let mut want = vec![0f64; n * m];
        for (i, &id) in ids[..used].iter().enumerate() {
            for j in 0..n {
                want[id as usize * n + j] += gv[i * n + j];
            }
        }
        assert_close(
            &d.to_f32(),
            &want,
            1e-6,
            &format!("get_rows_back {t:?} {n} {m}"),
        );
    }
    let g = HostTensor::zeros(F32, [4, 2, 1, 1]);
    let it = HostTensor::from_i32([2, 1, 1, 1], &[0, 3]);
    let mut d = HostTensor::zeros(F32, [4, 3, 1, 1]);
    assert!(run_op(Op::GetRowsBack, [0; 16], &[Some(&g), Some(&it)], &mut d).is_err());
    let it = HostTensor::from_i32([2, 1, 1, 1], &[0, -1]);
    assert!(run_op(Op::GetRowsBack, [0; 16], &[Some(&g), Some(&it)], &mut d).is_err());
    let bad = HostTensor::zeros(I32, [4, 2, 1, 1]);
    let it = HostTensor::from_i32([2, 1, 1, 1], &[0, 1]);
    assert!(run_op(Op::GetRowsBack, [0; 16], &[Some(&bad), Some(&it)], &mut d).is_err());
}
