//! Losses against f64 evaluations of their definitions: cross-entropy -mean_rows(sum(p log softmax(z)))
//! (tolerance 1e-5 relative), its gradient (softmax(z) - p) * g / rows (1e-5), and exact counts.

use super::super::elementwise::tests::input;
use super::super::testutil::{HostTensor, Rng, assert_close, run_op};
use crate::ggml::{GgmlType, Op};

use GgmlType::{F32, I32, I64};

fn softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Labels that add up to 1 per row, as test-backend-ops' softmax of random labels.
fn labels(rng: &mut Rng, ne: [usize; 4]) -> (HostTensor, Vec<f64>) {
    let raw = rng.vec(ne.iter().product(), -100.0, 100.0);
    let p: Vec<f64> = raw
        .chunks(ne[0])
        .flat_map(|r| softmax(&r.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()))
        .collect();
    let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
    let h = HostTensor::from_f32(F32, ne, &p32);
    let stored = h.to_f32().iter().map(|&v| f64::from(v)).collect();
    (h, stored)
}

#[test]
fn cross_entropy_loss_of_softmax_labels() {
    let mut rng = Rng::new(101);
    // test-backend-ops: {10, 5, 4, 3} and {30000, 1, 1, 1}, logits in [-100, 100].
    for ne in [[10, 5, 4, 3], [30000, 1, 1, 1]] {
        let (z, zv) = input(&mut rng, F32, ne, -100.0, 100.0, None);
        let (p, pv) = labels(&mut rng, ne);
        let mut d = HostTensor::zeros(F32, [1, 1, 1, 1]);
        run_op(Op::CrossEntropyLoss, [0; 16], &[Some(&z), Some(&p)], &mut d).unwrap();
        let rows = zv.len() / ne[0];
        let mut total = 0.0;
        for (zr, pr) in zv.chunks(ne[0]).zip(pv.chunks(ne[0])) {
            let max = zr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + zr.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            total += zr.iter().zip(pr).map(|(z, p)| p * (z - lse)).sum::<f64>();
        }
        let want = -total / rows as f64;
        assert_close(&d.to_f32(), &[want], 1e-5, &format!("loss {ne:?}"));
    }
    let z = HostTensor::zeros(F32, [4, 2, 1, 1]);
    let mut d = HostTensor::zeros(F32, [2, 1, 1, 1]);
    assert!(run_op(Op::CrossEntropyLoss, [0; 16], &[Some(&z), Some(&z)], &mut d).is_err());
}

#[test]
fn cross_entropy_loss_back_is_softmax_minus_labels() {
    let mut rng = Rng::new(102);
    for ne in [[10, 5, 4, 3], [30000, 1, 1, 1]] {
        let g = HostTensor::from_f32(F32, [1, 1, 1, 1], &[0.75]);
        let (z, zv) = input(&mut rng, F32, ne, -1.0, 1.0, None);
        let (p, pv) = labels(&mut rng, ne);
        let mut d = HostTensor::zeros(F32, ne);
        let srcs = [Some(&g), Some(&z), Some(&p)];
        run_op(Op::CrossEntropyLossBack, [0; 16], &srcs, &mut d).unwrap();
        let rows = zv.len() / ne[0];
        let want: Vec<f64> = zv
            .chunks(ne[0])
            .zip(pv.chunks(ne[0]))
            .flat_map(|(zr, pr)| {
                softmax(zr)
                    .iter()
                    .zip(pr)
                    .map(|(s, p)| (s - p) * 0.75 / rows as f64)
                    .collect::<Vec<_>>()
            })
            .collect();
        // Values are ~1e-5 for the long row: compare with an absolute floor well below them.
        assert_close(&d.to_f32(), &want, 1e-7, &format!("loss_back {ne:?}"));
    }
    // A transposed logits tensor is refused (GGML_ASSERT(ggml_is_contiguous)).
    let g = HostTensor::from_f32(F32, [1, 1, 1, 1], &[1.0]);
    let (z, _) = input(&mut rng, F32, [4, 3, 1, 1], -1.0, 1.0, Some([1, 0, 2, 3]));
    let (p, _) = input(&mut rng, F32, [4, 3, 1, 1], 0.0, 1.0, None);
    let mut d = HostTensor::zeros(F32, [4, 3, 1, 1]);
    let srcs = [Some(&g), Some(&z), Some(&p)];
    assert!(run_op(Op::CrossEntropyLossBack, [0; 16], &srcs, &mut d).is_err());
}

#[test]
fn count_equal_counts_matches() {
    // test-backend-ops compares argmax results of [4, 500] and [4, 5000] tensors.
    let mut rng = Rng::new(103);
    for n in [500, 5000] {
        let a: Vec<i32> = (0..n).map(|_| (rng.next_u64() % 4) as i32).collect();
        let b: Vec<i32> = (0..n).map(|_| (rng.next_u64() % 4) as i32).collect();
        let want = a.iter().zip(&b).filter(|(x, y)| x == y).count() as i64;
        let (at, bt) = (
            HostTensor::from_i32([n, 1, 1, 1], &a),
            HostTensor::from_i32([n, 1, 1, 1], &b),
        );
        let mut d = HostTensor::zeros(I64, [1, 1, 1, 1]);
        run_op(Op::CountEqual, [0; 16], &[Some(&at), Some(&bt)], &mut d).unwrap();
        assert_eq!(i64::from_le_bytes(d.bytes[..8].try_into().unwrap()), want);
    }
    // Several rows and planes, one source transposed: counts by logical position.
    let a: Vec<i32> = (0..24).collect();
    let b: Vec<i32> = (0..24).map(|i| if i % 3 == 0 { i } else { -1 }).collect();
    let at = HostTensor::from_i32([4, 3, 2, 1], &a);
    // b stored as [3, 4, 2] and viewed transposed to [4, 3, 2].
    let stored: Vec<i32> = (0..24)
        .map(|s| {
            let (i1, i0, i2) = (s % 3, (s / 3) % 4, s / 12);
            b[(i2 * 3 + i1) * 4 + i0]
        })
        .collect();
    let mut bt = HostTensor::from_i32([3, 4, 2, 1], &stored);
    bt.t.ne = [4, 3, 2, 1];
    bt.t.nb = [12, 4, 48, 96];
    let mut d = HostTensor::zeros(I64, [1, 1, 1, 1]);
    run_op(Op::CountEqual, [0; 16], &[Some(&at), Some(&bt)], &mut d).unwrap();
    assert_eq!(i64::from_le_bytes(d.bytes[..8].try_into().unwrap()), 8);
    let mut bad = HostTensor::zeros(I32, [1, 1, 1, 1]);
    assert!(run_op(Op::CountEqual, [0; 16], &[Some(&at), Some(&bt)], &mut bad).is_err());
}
