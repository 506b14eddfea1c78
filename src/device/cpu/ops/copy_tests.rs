//! Copy family against straightforward references (tolerances as in the element-wise tests: one
//! rounding into the destination type).

use super::super::elementwise::tests::{coords, flat, input, tol};
use super::super::testutil::{HostTensor, Rng, assert_close, run_op};
use crate::ggml::{GgmlType, Op, Tensor};

use GgmlType::{Bf16, F16, F32, I32};

/// Block types with 64-element rows that round-trip within 0.1 on values in [-1, 1).
const QUANT_64: [GgmlType; 6] = [
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Iq4Nl,
];

#[test]
fn dup_cpy_cont_convert_between_float_types_and_shapes() {
    let mut rng = Rng::new(11);
    let pairs = [
        ([6, 4, 3, 1], [6, 4, 3, 1]),
        ([6, 4, 3, 1], [4, 6, 3, 1]),
        ([6, 4, 3, 1], [72, 1, 1, 1]),
        ([5, 3, 2, 2], [2, 15, 2, 1]),
    ];
    for op in [Op::Dup, Op::Cpy, Op::Cont] {
        for ts in [F32, F16, Bf16] {
            for td in [F32, F16, Bf16] {
                for (k, (sne, dne)) in pairs.iter().enumerate() {
                    let perm = k.is_multiple_of(2).then_some([2, 0, 3, 1]);
                    let (a, av) = input(&mut rng, ts, *sne, -3.0, 3.0, perm);
                    let mut d = HostTensor::zeros(td, *dne);
                    if k >= 2 {
                        d = d.permuted([1, 3, 0, 2]);
                    }
                    let target = d.clone();
                    run_op(op, [0; 16], &[Some(&a), Some(&target)], &mut d).unwrap();
                    let what = format!("{} {ts:?}->{td:?} case {k}", op.name());
                    assert_close(&d.to_f32(), &av, tol(td), &what);
                }
            }
        }
    }
}

#[test]
fn cpy_large_parallel_and_int_conversions() {
    let mut rng = Rng::new(12);
    let (a, av) = input(
        &mut rng,
        F32,
        [257, 300, 1, 1],
        -9.0,
        9.0,
        Some([1, 0, 2, 3]),
    );
    let mut d = HostTensor::zeros(F16, [300, 257, 1, 1]);
    run_op(Op::Cpy, [0; 16], &[Some(&a)], &mut d).unwrap();
    assert_close(&d.to_f32(), &av, tol(F16), "large f32->f16");

    let mut di = HostTensor::zeros(I32, [257 * 300, 1, 1, 1]);
    run_op(Op::Cpy, [0; 16], &[Some(&a)], &mut di).unwrap();
    let want: Vec<i32> = av.iter().map(|&v| v as f32 as i32).collect();
    assert_eq!(di.to_i32(), want);

    let iv: Vec<i32> = (0..24).map(|i| i * 37 - 400).collect();
    let ai = HostTensor::from_i32([4, 3, 2, 1], &iv).permuted([2, 1, 0, 3]);
    let mut df = HostTensor::zeros(F32, [6, 4, 1, 1]);
    run_op(Op::Cont, [0; 16], &[Some(&ai)], &mut df).unwrap();
    assert_eq!(
        df.to_f32(),
        iv.iter().map(|&v| v as f32).collect::<Vec<_>>()
    );
    let mut di = HostTensor::zeros(I32, [3, 8, 1, 1]);
    run_op(Op::Dup, [0; 16], &[Some(&ai)], &mut di).unwrap();
    assert_eq!(di.to_i32(), iv);
}

#[test]
fn same_type_block_copy_follows_logical_order() {
    // Q8_0 blocks are 34 opaque bytes here: a byte copy needs no codec.
    let q = GgmlType::Q8_0;
    let storage = Tensor::new(q, [64, 2, 3, 1]);
    let mut rng = Rng::new(13);
    let bytes: Vec<u8> = (0..storage.nbytes().unwrap())
        .map(|_| rng.next_u64() as u8)
        .collect();
    let mut view = storage.clone();
    view.ne = [64, 3, 2, 1];
    view.nb = [storage.nb[0], storage.nb[2], storage.nb[1], storage.nb[3]];
    let a = HostTensor {
        t: view.clone(),
        bytes: bytes.clone(),
    };
    let mut d = HostTensor::zeros(q, [128, 3, 1, 1]);
    run_op(Op::Cont, [0; 16], &[Some(&a)], &mut d).unwrap();
    let row = 68;
    for k in 0..6 {
        let (i1, i2) = (k % 3, k / 3);
        let src = i1 * view.nb[1] + i2 * view.nb[2];
        assert_eq!(
            &d.bytes[k * row..(k + 1) * row],
            &bytes[src..src + row],
            "row {k}"
        );
    }
}

#[test]
fn cpy_quantize_and_dequantize() {
    let mut rng = Rng::new(14);
    for q in QUANT_64 {
        let (a, av) = input(&mut rng, F32, [64, 3, 2, 1], -1.0, 1.0, Some([0, 2, 1, 3]));
        let mut dq = HostTensor::zeros(q, [64, 3, 2, 1]);
        run_op(Op::Cpy, [0; 16], &[Some(&a)], &mut dq).unwrap();
        let mut back = HostTensor::zeros(F32, [32, 12, 1, 1]);
        run_op(Op::Cpy, [0; 16], &[Some(&dq)], &mut back).unwrap();
        assert_close(&back.to_f32(), &av, 0.1, &format!("{q:?} round trip"));
        let mut b16 = HostTensor::zeros(F16, [64, 6, 1, 1]);
        let (h, hv) = input(&mut rng, F16, [64, 6, 1, 1], -1.0, 1.0, None);
        run_op(Op::Cpy, [0; 16], &[Some(&h)], &mut dq).unwrap();
        run_op(Op::Cpy, [0; 16], &[Some(&dq)], &mut back).unwrap();
        assert_close(&back.to_f32(), &hv, 0.1, &format!("f16 -> {q:?}"));
        assert!(run_op(Op::Cpy, [0; 16], &[Some(&dq)], &mut b16).is_err());
    }
}

#[test]
fn copy_rejects_unsupported() {
    let a = HostTensor::zeros(F32, [6, 4, 1, 1]);
    let mut d = HostTensor::zeros(F32, [5, 4, 1, 1]);
    assert!(run_op(Op::Cpy, [0; 16], &[Some(&a)], &mut d).is_err());
    let h = HostTensor::zeros(F16, [6, 4, 1, 1]);
    let mut di = HostTensor::zeros(I32, [6, 4, 1, 1]);
    assert!(run_op(Op::Cpy, [0; 16], &[Some(&h)], &mut di).is_err());
    let a = HostTensor::zeros(F32, [256, 1, 1, 1]);
    // ggml-cpu has no from_float for the IQ1/IQ2/IQ3 types.
    let mut dk = HostTensor::zeros(GgmlType::Iq2Xxs, [256, 1, 1, 1]);
    assert!(run_op(Op::Cpy, [0; 16], &[Some(&a)], &mut dk).is_err());
    assert!(run_op(Op::Cont, [0; 16], &[], &mut d).is_err());
}

fn set_rows_case(vt: GgmlType, dt: GgmlType, idx64: bool) {
    let mut rng = Rng::new(15);
    let (ne0, n, ne2, ne3, rows) = (5, 3, 2, 2, 7);
    let (b, bv) = input(
        &mut rng,
        vt,
        [ne0, n, ne2, ne3],
        -2.0,
        2.0,
        Some([1, 0, 2, 3]),
    );
    let (c1, c2) = (1, 2);
    let idv: Vec<i64> = vec![6, 0, 3, 2, 5, 1];
    let idx = if idx64 {
        HostTensor::from_i64([n, c1, c2, 1], &idv)
    } else {
        HostTensor::from_i32(
            [n, c1, c2, 1],
            &idv.iter().map(|&v| v as i32).collect::<Vec<_>>(),
        )
    };
    let (mut d, dv) = input(&mut rng, dt, [ne0, rows, ne2, ne3], -2.0, 2.0, None);
    let before = d.clone();
    run_op(
        Op::SetRows,
        [0; 16],
        &[Some(&b), Some(&idx), Some(&before)],
        &mut d,
    )
    .unwrap();
    let mut want = dv.clone();
    for i3 in 0..ne3 {
        for i2 in 0..ne2 {
            for i in 0..n {
                let r = idv[i + n * (i3 % c2)] as usize;
                for i0 in 0..ne0 {
                    want[flat([ne0, rows, ne2, ne3], [i0, r, i2, i3])] =
                        bv[flat([ne0, n, ne2, ne3], [i0, i, i2, i3])];
                }
            }
        }
    }
    assert_close(
        &d.to_f32(),
        &want,
        tol(dt),
        &format!("set_rows {vt:?}->{dt:?}"),
    );
    for bad in [7i64, -1, i64::MAX] {
        let mut v = idv.clone();
        v[4] = bad;
        let idx = HostTensor::from_i64([n, c1, c2, 1], &v);
        let mut d2 = before.clone();
        let err = run_op(
            Op::SetRows,
            [0; 16],
            &[Some(&b), Some(&idx), Some(&before)],
            &mut d2,
        );
        assert!(err.unwrap_err().contains("out of range"), "index {bad}");
        assert_eq!(d2.bytes, before.bytes, "no partial write for index {bad}");
    }
}

#[test]
fn set_rows_all_types_and_bad_indices() {
    for (vt, dt) in [(F32, F32), (F32, F16), (F32, Bf16), (F16, F16), (F16, F32)] {
        set_rows_case(vt, dt, true);
        set_rows_case(vt, dt, false);
    }
    let b = HostTensor::zeros(F32, [5, 3, 2, 1]);
    let idx = HostTensor::from_i64([2, 1, 1, 1], &[0, 1]);
    let mut d = HostTensor::zeros(F32, [5, 4, 2, 1]);
    let t = d.clone();
    assert!(
        run_op(
            Op::SetRows,
            [0; 16],
            &[Some(&b), Some(&idx), Some(&t)],
            &mut d
        )
        .is_err()
    );
    let idx = HostTensor::from_f32(F32, [3, 1, 1, 1], &[0.0; 3]);
    assert!(
        run_op(
            Op::SetRows,
            [0; 16],
            &[Some(&b), Some(&idx), Some(&t)],
            &mut d
        )
        .is_err()
    );
}

#[test]
fn set_rows_quantized_destination() {
    let mut rng = Rng::new(16);
    let (b, bv) = input(&mut rng, F32, [64, 2, 1, 1], -1.0, 1.0, None);
    let idx = HostTensor::from_i64([2, 1, 1, 1], &[3, 0]);
    for q in QUANT_64 {
        let mut d = HostTensor::zeros(q, [64, 4, 1, 1]);
        let t = d.clone();
        run_op(
            Op::SetRows,
            [0; 16],
            &[Some(&b), Some(&idx), Some(&t)],
            &mut d,
        )
        .unwrap();
        let got = d.to_f32();
        assert_close(&got[3 * 64..4 * 64], &bv[..64], 0.1, "row 3");
        assert_close(&got[..64], &bv[64..], 0.1, "row 0");
    }
}

#[test]
fn concat_every_dim_and_type() {
    let mut rng = Rng::new(17);
    for dim in 0..4 {
        for t in [F32, F16, Bf16, I32] {
            let ane = [3, 2, 4, 2];
            let mut bne = ane;
            bne[dim] = 5 - dim;
            let mut dne = ane;
            dne[dim] += bne[dim];
            let (a, av) = input(&mut rng, t, ane, -5.0, 5.0, Some([3, 1, 0, 2]));
            let (b, bv) = input(&mut rng, t, bne, -5.0, 5.0, Some([1, 2, 3, 0]));
            let mut d = HostTensor::zeros(t, dne);
            let mut p = [0i32; 16];
            p[0] = dim as i32;
            run_op(Op::Concat, p, &[Some(&a), Some(&b)], &mut d).unwrap();
            let want: Vec<f64> = (0..d.t.nelements())
                .map(|i| {
                    let mut c = coords(dne, i);
                    if c[dim] < ane[dim] {
                        av[flat(ane, c)]
                    } else {
                        c[dim] -= ane[dim];
                        bv[flat(bne, c)]
                    }
                })
                .collect();
            assert_close(&d.to_f32(), &want, 0.0, &format!("concat dim {dim} {t:?}"));
        }
    }
    let a = HostTensor::zeros(F32, [3, 2, 1, 1]);
    let b = HostTensor::zeros(F32, [3, 3, 1, 1]);
    let mut d = HostTensor::zeros(F32, [6, 2, 1, 1]);
    assert!(run_op(Op::Concat, [0; 16], &[Some(&a), Some(&b)], &mut d).is_err());
    let mut p = [0i32; 16];
    p[0] = 4;
    assert!(run_op(Op::Concat, p, &[Some(&a), Some(&a)], &mut d).is_err());
}

#[test]
fn repeat_tiles() {
    let mut rng = Rng::new(18);
    for t in [F32, F16, I32] {
        let (sne, dne) = ([3, 2, 1, 2], [6, 4, 2, 2]);
        let (a, av) = input(&mut rng, t, sne, -5.0, 5.0, Some([1, 0, 3, 2]));
        let mut d = HostTensor::zeros(t, dne);
        run_op(Op::Repeat, [0; 16], &[Some(&a)], &mut d).unwrap();
        let want: Vec<f64> = (0..d.t.nelements())
            .map(|i| {
                let c = coords(dne, i);
                av[flat(sne, std::array::from_fn(|k| c[k] % sne[k]))]
            })
            .collect();
        assert_close(&d.to_f32(), &want, 0.0, &format!("repeat {t:?}"));
    }
    let a = HostTensor::zeros(F32, [3, 2, 1, 1]);
    let mut d = HostTensor::zeros(F32, [4, 2, 1, 1]);
    assert!(run_op(Op::Repeat, [0; 16], &[Some(&a)], &mut d).is_err());
}

#[test]
fn pad_zero_and_circular() {
    let mut rng = Rng::new(19);
    let sne = [4, 3, 2, 1];
    let pads = [1i32, 2, 0, 3, 2, 1, 1, 0];
    let dne: [usize; 4] =
        std::array::from_fn(|k| sne[k] + (pads[2 * k] + pads[2 * k + 1]) as usize);
    for circular in [0, 1] {
        for t in [F32, F16] {
            let (a, av) = input(&mut rng, t, sne, -5.0, 5.0, Some([2, 3, 1, 0]));
            let mut d = HostTensor::zeros(t, dne);
            let mut p = [0i32; 16];
            p[..8].copy_from_slice(&pads);
            p[8] = circular;
            run_op(Op::Pad, p, &[Some(&a)], &mut d).unwrap();
            let want: Vec<f64> = (0..d.t.nelements())
                .map(|i| {
                    let c = coords(dne, i);
                    let s: Vec<i64> = (0..4)
                        .map(|k| c[k] as i64 - i64::from(pads[2 * k]))
                        .collect();
                    if circular == 1 {
                        let w: [usize; 4] =
                            std::array::from_fn(|k| s[k].rem_euclid(sne[k] as i64) as usize);
                        av[flat(sne, w)]
                    } else if (0..4).all(|k| s[k] >= 0 && s[k] < sne[k] as i64) {
                        av[flat(sne, std::array::from_fn(|k| s[k] as usize))]
                    } else {
                        0.0
                    }
                })
                .collect();
            assert_close(
                &d.to_f32(),
                &want,
                0.0,
                &format!("pad circular={circular} {t:?}"),
            );
        }
    }
    let a = HostTensor::zeros(F32, [4, 3, 1, 1]);
    let mut d = HostTensor::zeros(F32, [5, 3, 1, 1]);
    let mut p = [0i32; 16];
    p[0] = 2;
    assert!(run_op(Op::Pad, p, &[Some(&a)], &mut d).is_err());
    p[0] = -1;
    p[1] = 2;
    assert!(run_op(Op::Pad, p, &[Some(&a)], &mut d).is_err());
}

#[test]
fn set_and_acc_write_through_the_view() {
    let mut rng = Rng::new(20);
    let ane = [8, 4, 2, 1];
    let bne = [3, 2, 2, 1];
    let (nb1, nb2, nb3, offset) = (32usize, 128usize, 256usize, 4 * (1 + 8));
    let mut p = [0i32; 16];
    p[..4].copy_from_slice(&[nb1 as i32, nb2 as i32, nb3 as i32, offset as i32]);
    for (op, t) in [(Op::Set, F32), (Op::Set, I32), (Op::Acc, F32)] {
        let (a, av) = input(&mut rng, t, ane, -5.0, 5.0, None);
        let (b, bv) = input(&mut rng, t, bne, -5.0, 5.0, Some([1, 0, 2, 3]));
        let mut d = HostTensor::zeros(t, ane);
        run_op(op, p, &[Some(&a), Some(&b)], &mut d).unwrap();
        let mut want = av.clone();
        for (i, &v) in bv.iter().enumerate() {
            let c = coords(bne, i);
            let e = (offset + c[0] * 4 + c[1] * nb1 + c[2] * nb2 + c[3] * nb3) / 4;
            want[e] = if op == Op::Set { v } else { av[e] + v };
        }
        assert_close(&d.to_f32(), &want, 1e-6, &format!("{} {t:?}", op.name()));
    }
    let a = HostTensor::zeros(F32, ane);
    let b = HostTensor::zeros(F32, bne);
    let mut d = HostTensor::zeros(F32, ane);
    let mut bad = p;
    bad[3] = 4 * 60;
    assert!(run_op(Op::Acc, bad, &[Some(&a), Some(&b)], &mut d).is_err());
    bad = p;
    bad[0] = -4;
    assert!(run_op(Op::Set, bad, &[Some(&a), Some(&b)], &mut d).is_err());
    let bi = HostTensor::zeros(I32, bne);
    assert!(run_op(Op::Acc, p, &[Some(&a), Some(&bi)], &mut d).is_err());
}
