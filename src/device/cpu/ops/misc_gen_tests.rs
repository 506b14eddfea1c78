use super::super::testutil::{HostTensor, Rng, assert_close, params_f32, run_op};
use crate::ggml::{GgmlType, Op};

use GgmlType::F32;

fn params(v: &[i32]) -> [i32; 16] {
    let mut p = [0; 16];
    p[..v.len()].copy_from_slice(v);
    p
}

#[test]
fn arange_by_hand_and_large() {
    let mut d = HostTensor::zeros(F32, [4, 1, 1, 1]);
    run_op(Op::Arange, params_f32(&[1.0, 2.9, 0.5]), &[], &mut d).unwrap();
    assert_eq!(d.to_f32(), [1.0, 1.5, 2.0, 2.5]);
    // test-backend-ops: 0 .. 1048576 step 1.
    let n = 1 << 20;
    let mut d = HostTensor::zeros(F32, [n, 1, 1, 1]);
    run_op(Op::Arange, params_f32(&[0.0, n as f32, 1.0]), &[], &mut d).unwrap();
    assert!(d.to_f32().iter().enumerate().all(|(i, v)| *v == i as f32));
    // The element count must be ceil((stop - start) / step).
    let mut d = HostTensor::zeros(F32, [5, 1, 1, 1]);
    assert!(run_op(Op::Arange, params_f32(&[1.0, 2.9, 0.5]), &[], &mut d).is_err());
}

#[test]
fn pad_reflect_1d_by_hand_and_regression() {
    let x = HostTensor::from_f32(F32, [4, 1, 1, 1], &[1.0, 2.0, 3.0, 4.0]);
    let mut d = HostTensor::zeros(F32, [7, 1, 1, 1]);
    run_op(Op::PadReflect1d, params(&[2, 1]), &[Some(&x)], &mut d).unwrap();
    assert_eq!(d.to_f32(), [3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0]);
    // test-backend-ops: {512, 34, 2, 1} padded by 10, 9.
    let ne = [512, 34, 2, 1];
    let xv = Rng::new(1).vec(512 * 68, -1.0, 1.0);
    let x = HostTensor::from_f32(F32, ne, &xv);
    let mut d = HostTensor::zeros(F32, [531, 34, 2, 1]);
    run_op(Op::PadReflect1d, params(&[10, 9]), &[Some(&x)], &mut d).unwrap();
    let want: Vec<f64> = xv
        .chunks(512)
        .flat_map(|r| {
            (0..531).map(move |i| {
                // Reflection about the ends: index -k maps to k, 511 + k to 511 - k.
                let j = i as i64 - 10;
                let j = if j < 0 {
                    -j
                } else if j > 511 {
                    1022 - j
                } else {
                    j
                };
                r[j as usize] as f64
            })
        })
        .collect();
    assert_close(&d.to_f32(), &want, 0.0, "pad_reflect_1d");
    let mut bad = HostTensor::zeros(F32, [12, 1, 1, 1]);
    assert!(run_op(Op::PadReflect1d, params(&[4, 4]), &[Some(&x)], &mut bad).is_err());
}

#[test]
fn roll_matches_index_arithmetic() {
    // test-backend-ops: {10, 5, 4, 3} rolled by (3, -2, 1, -1), contiguous and permuted source.
    let ne = [10usize, 5, 4, 3];
    let n: usize = ne.iter().product();
    let base = HostTensor::from_f32(F32, ne, &(0..n).map(|v| v as f32).collect::<Vec<_>>());
    let shifts = [3i64, -2, 1, -1];
    for src in [base.clone(), base.permuted([0, 2, 1, 3])] {
        let mut d = HostTensor::zeros(F32, ne);
        run_op(Op::Roll, params(&[3, -2, 1, -1]), &[Some(&src)], &mut d).unwrap();
        for (i, v) in d.to_f32().iter().enumerate() {
            let c = [i % 10, (i / 10) % 5, (i / 50) % 4, i / 200];
            let s: Vec<usize> = (0..4)
                .map(|k| (c[k] as i64 - shifts[k]).rem_euclid(ne[k] as i64) as usize)
                .collect();
            assert_eq!(
                *v,
                (((s[3] * 4 + s[2]) * 5 + s[1]) * 10 + s[0]) as f32,
                "{i}"
            );
        }
    }
    let mut d = HostTensor::zeros(F32, ne);
    assert!(run_op(Op::Roll, params(&[10, 0, 0, 0]), &[Some(&base)], &mut d).is_err());
}

#[test]
fn timestep_embedding_matches_formula() {
    // test-backend-ops: timesteps {2, 1, 1, 1}, dim 320, max_period 10000; and an odd dim.
    for dim in [320usize, 7] {
        let ts = HostTensor::from_f32(F32, [2, 1, 1, 1], &[3.0, 250.5]);
        let mut d = HostTensor::zeros(F32, [dim, 2, 1, 1]);
        run_op(
            Op::TimestepEmbedding,
            params(&[dim as i32, 10000]),
            &[Some(&ts)],
            &mut d,
        )
        .unwrap();
        let half = dim / 2;
        let mut want = Vec::new();
        for t in [3.0f64, 250.5] {
            let mut row = vec![0f64; dim];
            for j in 0..half {
                let f = (-(10000f64).ln() * j as f64 / half as f64).exp();
                row[j] = (t * f).cos();
                row[j + half] = (t * f).sin();
            }
            want.extend(row);
        }
        // f32 evaluation of arguments up to ~250: phase error ~ 250 * 2^-24 relative.
        assert_close(&d.to_f32(), &want, 1e-4, "timestep_embedding");
    }
}
