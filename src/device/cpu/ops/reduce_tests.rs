//! Reductions against f64 references. SUM/SUM_ROWS/MEAN results are one rounding of an f64 sum for f32
//! (tolerance 1e-5), f16/bf16 as in the element-wise tests; CUMSUM accumulates in f32 (1e-5 over rows of
//! a few dozen values in [-1, 1]). Orderings are compared exactly.

use super::super::elementwise::tests::{input, tol};
use super::super::testutil::{HostTensor, Rng, assert_close, run_op};
use crate::ggml::{GgmlType, Op};

use GgmlType::{Bf16, F16, F32, I32};

fn row_sums(v: &[f64], ne0: usize) -> Vec<f64> {
    v.chunks(ne0).map(|r| r.iter().sum()).collect()
}

#[test]
fn sum_sum_rows_mean() {
    let mut rng = Rng::new(21);
    let ne = [37, 5, 3, 2];
    for t in [F32, F16, Bf16] {
        // SUM of a row-packed (permuted, non-contiguous) source is the plain sum; a transposed one
        // is covered by `sum_of_a_transposed_source_reads_packed_runs`.
        let (a, av) = input(&mut rng, t, ne, -1.0, 1.0, Some([0, 2, 1, 3]));
        let mut d = HostTensor::zeros(t, [1, 1, 1, 1]);
        run_op(Op::Sum, [0; 16], &[Some(&a)], &mut d).unwrap();
        // f16/bf16 accumulate in f32: allow for the rounding of 1110 additions.
        let t_sum = if t == F32 { 1e-5 } else { tol(t) };
        assert_close(
            &d.to_f32(),
            &[av.iter().sum()],
            t_sum,
            &format!("sum {t:?}"),
        );

        let (a, av) = input(&mut rng, t, ne, -1.0, 1.0, Some([2, 0, 1, 3]));
        let rne = [1, 5, 3, 2];
        let mut d = HostTensor::zeros(t, rne);
        run_op(Op::SumRows, [0; 16], &[Some(&a)], &mut d).unwrap();
        assert_close(
            &d.to_f32(),
            &row_sums(&av, 37),
            tol(t),
            &format!("sum_rows {t:?}"),
        );

        let mut d = HostTensor::zeros(F32, rne).permuted([0, 2, 1, 3]);
        run_op(Op::Mean, [0; 16], &[Some(&a)], &mut d).unwrap();
        let want: Vec<f64> = row_sums(&av, 37).iter().map(|s| s / 37.0).collect();
        assert_close(&d.to_f32(), &want, 1e-5, &format!("mean {t:?}"));
    }
    let a = HostTensor::zeros(F32, ne);
    let mut d = HostTensor::zeros(F32, [2, 1, 1, 1]);
    assert!(run_op(Op::Sum, [0; 16], &[Some(&a)], &mut d).is_err());
    let mut d = HostTensor::zeros(F16, [1, 5, 3, 2]);
    assert!(run_op(Op::Mean, [0; 16], &[Some(&a)], &mut d).is_err());
    assert!(run_op(Op::SumRows, [0; 16], &[Some(&a)], &mut d).is_err());
}

/// test-backend-ops' `SUM(type=f32,ne=[33,256,1,1],permute=[1,0,2,3])`: a [33, 256] tensor viewed as
/// [256, 33] (nb = [132, 4]). ggml-cpu sums ne0 = 256 *packed* values from each of the 33 row starts,
/// i.e. storage[r .. r + 256] for r in 0..33, and that is what the test expects; same for f16/bf16.
#[test]
fn sum_of_a_transposed_source_reads_packed_runs() {
    let mut rng = Rng::new(26);
    for t in [F32, F16, Bf16] {
        let storage = HostTensor::from_f32(t, [33, 256, 1, 1], &rng.vec(33 * 256, -1.0, 1.0));
        let flat = storage.to_f32();
        let mut a = storage.clone();
        let ts = t.type_size();
        a.t.ne = [256, 33, 1, 1];
        a.t.nb = [33 * ts, ts, 33 * 256 * ts, 33 * 256 * ts];
        let mut d = HostTensor::zeros(t, [1, 1, 1, 1]);
        run_op(Op::Sum, [0; 16], &[Some(&a)], &mut d).unwrap();
        let want: f64 = (0..33)
            .map(|r| flat[r..r + 256].iter().map(|&v| f64::from(v)).sum::<f64>())
            .sum();
        let t_sum = if t == F32 { 1e-5 } else { tol(t) };
        assert_close(
            &d.to_f32(),
            &[want],
            t_sum,
            &format!("transposed sum {t:?}"),
        );
    }
    // A broadcast view (nb0 = 0) over 2 floats: a packed run of 5 would leave the tensor's 8 bytes,
    // so each row falls back to its strided elements: 5 * (a + b).
    let mut a = HostTensor::from_f32(F32, [2, 1, 1, 1], &[1.5, -0.25]);
    a.t.ne = [5, 2, 1, 1];
    a.t.nb = [0, 4, 8, 8];
    let mut d = HostTensor::zeros(F32, [1, 1, 1, 1]);
    run_op(Op::Sum, [0; 16], &[Some(&a)], &mut d).unwrap();
    assert_eq!(d.to_f32(), vec![6.25]);
}

#[test]
fn cumsum_rows() {
    let mut rng = Rng::new(22);
    let ne = [29, 4, 3, 1];
    let (a, av) = input(&mut rng, F32, ne, -1.0, 1.0, Some([1, 2, 0, 3]));
    let mut d = HostTensor::zeros(F32, ne);
    run_op(Op::Cumsum, [0; 16], &[Some(&a)], &mut d).unwrap();
    let want: Vec<f64> = av
        .chunks(29)
        .flat_map(|r| {
            r.iter()
                .scan(0.0, |s, &x| {
                    Some({
                        *s += x;
                        *s
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_close(&d.to_f32(), &want, 1e-5, "cumsum");
    let mut d16 = HostTensor::zeros(F16, ne);
    assert!(run_op(Op::Cumsum, [0; 16], &[Some(&a)], &mut d16).is_err());
}

/// Reference: positions ordered by value (descending if `desc`), ties by index.
fn sorted(row: &[f64], desc: bool) -> Vec<i32> {
    let mut ids: Vec<i32> = (0..row.len() as i32).collect();
    ids.sort_by(|&a, &b| {
        let (x, y) = (row[a as usize], row[b as usize]);
        let o = if desc {
            y.partial_cmp(&x)
        } else {
            x.partial_cmp(&y)
        };
        o.unwrap().then(a.cmp(&b))
    });
    ids
}

#[test]
fn argmax_takes_last_maximum() {
    let mut rng = Rng::new(23);
    let (a, av) = input(&mut rng, F32, [19, 6, 1, 1], -3.0, 3.0, Some([1, 0, 2, 3]));
    let mut d = HostTensor::zeros(I32, [6, 1, 1, 1]);
    run_op(Op::Argmax, [0; 16], &[Some(&a)], &mut d).unwrap();
    let want: Vec<i32> = av.chunks(19).map(|r| sorted(r, true)[0]).collect();
    assert_eq!(d.to_i32(), want);
    let a = HostTensor::from_f32(
        F32,
        [4, 2, 1, 1],
        &[1.0, 3.0, 3.0, 2.0, -1.0, -1.0, -2.0, -5.0],
    );
    let mut d = HostTensor::zeros(I32, [2, 1, 1, 1]);
    run_op(Op::Argmax, [0; 16], &[Some(&a)], &mut d).unwrap();
    assert_eq!(d.to_i32(), vec![2, 1]);
    let a3 = HostTensor::zeros(F32, [4, 2, 2, 1]);
    assert!(run_op(Op::Argmax, [0; 16], &[Some(&a3)], &mut d).is_err());
}

#[test]
fn argsort_both_orders_with_ties() {
    let mut rng = Rng::new(24);
    let ne = [23, 3, 2, 2];
    for desc in [0, 1] {
        let (a, av) = input(&mut rng, F32, ne, -3.0, 3.0, Some([3, 2, 0, 1]));
        let mut d = HostTensor::zeros(I32, ne);
        let mut p = [0i32; 16];
        p[0] = desc;
        run_op(Op::Argsort, p, &[Some(&a)], &mut d).unwrap();
        let want: Vec<i32> = av.chunks(23).flat_map(|r| sorted(r, desc == 1)).collect();
        assert_eq!(d.to_i32(), want, "order {desc}");
    }
    let a = HostTensor::from_f32(F32, [5, 1, 1, 1], &[2.0, 1.0, 2.0, -0.0, 0.0]);
    let mut d = HostTensor::zeros(I32, [5, 1, 1, 1]);
    let mut p = [0i32; 16];
    run_op(Op::Argsort, p, &[Some(&a)], &mut d).unwrap();
    assert_eq!(d.to_i32(), vec![3, 4, 1, 0, 2]);
    p[0] = 1;
    run_op(Op::Argsort, p, &[Some(&a)], &mut d).unwrap();
    assert_eq!(d.to_i32(), vec![0, 2, 1, 3, 4]);
    p[0] = 2;
    assert!(run_op(Op::Argsort, p, &[Some(&a)], &mut d).is_err());
}

#[test]
fn top_k_descending() {
    let mut rng = Rng::new(25);
    for (ne, k) in [
        ([10, 4, 2, 1], 4),
        ([10, 3, 1, 1], 10),
        ([301, 200, 1, 1], 5),
        ([7, 2, 1, 1], 1),
    ] {
        let (a, av) = input(&mut rng, F32, ne, -3.0, 3.0, Some([1, 0, 2, 3]));
        let mut d = HostTensor::zeros(I32, [k, ne[1], ne[2], ne[3]]);
        run_op(Op::TopK, [0; 16], &[Some(&a)], &mut d).unwrap();
        let want: Vec<i32> = av
            .chunks(ne[0])
            .flat_map(|r| sorted(r, true)[..k].to_vec())
            .collect();
        assert_eq!(d.to_i32(), want, "top {k} of {ne:?}");
    }
    let a = HostTensor::from_f32(F32, [6, 1, 1, 1], &[f32::NAN, 1.0, 5.0, 1.0, 5.0, 0.0]);
    let mut d = HostTensor::zeros(I32, [4, 1, 1, 1]);
    run_op(Op::TopK, [0; 16], &[Some(&a)], &mut d).unwrap();
    assert_eq!(d.to_i32(), vec![2, 4, 1, 3]);
    let mut d = HostTensor::zeros(I32, [7, 1, 1, 1]);
    assert!(run_op(Op::TopK, [0; 16], &[Some(&a)], &mut d).is_err());
    let mut d = HostTensor::zeros(F32, [2, 1, 1, 1]);
    assert!(run_op(Op::TopK, [0; 16], &[Some(&a)], &mut d).is_err());
}
