//! Regression cases (test-backend-ops shapes) for the block types added after the first codecs:
//! Q1_0, Q2_0, NVFP4, TQ1_0, TQ2_0 in MUL_MAT, MUL_MAT_ID, OUT_PROD, GET_ROWS, SET_ROWS and CPY, plus
//! the K-quant/IQ4_XS/MXFP4 quantizers behind CPY and SET_ROWS. References are f64 sums over the
//! dequantized operands, or the codec's own row functions (checked by hand in `quant`) for stores.

use super::testutil::{HostTensor, Rng, assert_close, run_op};
use crate::ggml::{GgmlType, Op};
use crate::quant;

use GgmlType::*;

const NEW_TYPES: [GgmlType; 5] = [Q1_0, Q2_0, Nvfp4, Tq1_0, Tq2_0];

/// Every block type CPY/SET_ROWS must store that the first codecs could not.
const NEW_STORES: [GgmlType; 12] = [
    Q1_0, Q2_0, Nvfp4, Tq1_0, Tq2_0, Mxfp4, Q2K, Q3K, Q4K, Q5K, Q6K, Iq4Xs,
];

fn rand_f32(ne: [usize; 4], rng: &mut Rng) -> HostTensor {
    HostTensor::from_f32(F32, ne, &rng.vec(ne.iter().product(), -1.0, 1.0))
}

/// Σ_k a[k]·b'[k] in f64, b' the activation row after the kernel's conversion to `vec_dot_type`,
/// and the matching absolute tolerance (1e-5 of Σ|a·b'|: integer block sums, f32 scale products).
fn dot_ref(typ: GgmlType, a: &[f32], b: &[f32]) -> (f64, f64) {
    let vt = quant::vec_dot_type(typ);
    let mut bytes = vec![0u8; vt.row_size(b.len()).unwrap()];
    quant::quantize_row_for_dot(vt, b, &mut bytes).unwrap();
    let mut conv = vec![0f32; b.len()];
    quant::dequantize_row(vt, &bytes, &mut conv).unwrap();
    let sum = a
        .iter()
        .zip(&conv)
        .map(|(x, y)| *x as f64 * *y as f64)
        .sum();
    let l1: f64 = a
        .iter()
        .zip(&conv)
        .map(|(x, y)| (*x as f64 * *y as f64).abs())
        .sum();
    (sum, 1e-5 * l1 + 1e-9)
}

#[test]
fn mul_mat_low_bit_weights() {
    // MUL_MAT(type_a, f32, m=16, n=1..9, k=256) and k = 16·256, bs [3, 2] broadcast over nr [2, 1].
    let mut rng = Rng::new(40);
    for typ in NEW_TYPES {
        for (k, n, bs) in [(256, 9, [1, 1]), (4096, 1, [1, 1]), (256, 4, [3, 2])] {
            let a = HostTensor::from_f32(
                typ,
                [k, 16, bs[0], bs[1]],
                &rng.vec(k * 16 * bs[0] * bs[1], -1.0, 1.0),
            );
            let b = rand_f32([k, n, 2 * bs[0], bs[1]], &mut rng);
            let mut d = HostTensor::zeros(F32, [16, n, 2 * bs[0], bs[1]]);
            run_op(Op::MulMat, [0; 16], &[Some(&a), Some(&b)], &mut d).unwrap();
            let (av, bv, got) = (a.to_f32(), b.to_f32(), d.to_f32());
            for i3 in 0..bs[1] {
                for i2 in 0..2 * bs[0] {
                    for j in 0..n {
                        let brow = &bv[((i3 * 2 * bs[0] + i2) * n + j) * k..][..k];
                        for i in 0..16 {
                            let arow = &av[((i3 * bs[0] + i2 / 2) * 16 + i) * k..][..k];
                            let (want, tol) = dot_ref(typ, arow, brow);
                            let g = got[((i3 * 2 * bs[0] + i2) * n + j) * 16 + i] as f64;
                            assert!(
                                (g - want).abs() <= tol,
                                "{} k={k}: {g} vs {want}",
                                typ.name()
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn mul_mat_id_low_bit_weights() {
    // MUL_MAT_ID(type_a, f32, n_mats=4, n_used=2, b=0, m=16, n=3, k=256).
    let mut rng = Rng::new(41);
    let (k, m, n_exp, n_used, n_tok) = (256, 16, 4, 2, 3);
    let ids = [3, 0, 1, 3, 2, 2];
    for typ in NEW_TYPES {
        let a = HostTensor::from_f32(typ, [k, m, n_exp, 1], &rng.vec(k * m * n_exp, -1.0, 1.0));
        let b = rand_f32([k, 1, n_tok, 1], &mut rng);
        let idx = HostTensor::from_i32([n_used, n_tok, 1, 1], &ids);
        let mut d = HostTensor::zeros(F32, [m, n_used, n_tok, 1]);
        run_op(
            Op::MulMatId,
            [0; 16],
            &[Some(&a), Some(&b), Some(&idx)],
            &mut d,
        )
        .unwrap();
        let (av, bv, got) = (a.to_f32(), b.to_f32(), d.to_f32());
        for t in 0..n_tok {
            for e in 0..n_used {
                let ex = ids[t * n_used + e] as usize;
                for i in 0..m {
                    let (want, tol) = dot_ref(typ, &av[(ex * m + i) * k..][..k], &bv[t * k..][..k]);
                    let g = got[(t * n_used + e) * m + i] as f64;
                    assert!((g - want).abs() <= tol, "{}: {g} vs {want}", typ.name());
                }
            }
        }
    }
}

#[test]
fn out_prod_low_bit_src0() {
    // OUT_PROD(type_a, f32, m=256, n=16, k=16): dst[i0, i1] = Σ_k a[i0, k]·b[i1, k] in f32.
    let mut rng = Rng::new(42);
    for typ in NEW_TYPES {
        let a = HostTensor::from_f32(typ, [256, 16, 1, 1], &rng.vec(256 * 16, -1.0, 1.0));
        let b = rand_f32([16, 16, 1, 1], &mut rng);
        let mut d = HostTensor::zeros(F32, [256, 16, 1, 1]);
        run_op(Op::OutProd, [0; 16], &[Some(&a), Some(&b)], &mut d).unwrap();
        let (av, bv) = (a.to_f32(), b.to_f32());
        let want: Vec<f64> = (0..16 * 256)
            .map(|o| {
                let (i0, i1) = (o % 256, o / 256);
                (0..16)
                    .map(|kk| av[kk * 256 + i0] as f64 * bv[kk * 16 + i1] as f64)
                    .sum()
            })
            .collect();
        assert_close(&d.to_f32(), &want, 1e-5, typ.name());
    }
}

#[test]
fn get_rows_low_bit() {
    // GET_ROWS(type, n=256, m=5, r=4, be1=7): rows come back exactly dequantized.
    let mut rng = Rng::new(43);
    for typ in NEW_TYPES {
        let a = HostTensor::from_f32(typ, [256, 5, 7, 1], &rng.vec(256 * 5 * 7, -1.0, 1.0));
        let rows: Vec<i32> = (0..4 * 7).map(|i| i * 3 % 5).collect();
        let idx = HostTensor::from_i32([4, 7, 1, 1], &rows);
        let mut d = HostTensor::zeros(F32, [256, 4, 7, 1]);
        run_op(Op::GetRows, [0; 16], &[Some(&a), Some(&idx)], &mut d).unwrap();
        let (av, got) = (a.to_f32(), d.to_f32());
        for (r, &src) in rows.iter().enumerate() {
            let b = r / 4;
            let want = &av[(b * 5 + src as usize) * 256..][..256];
            assert_eq!(&got[r * 256..][..256], want, "{} row {r}", typ.name());
        }
    }
}

/// The bytes `quantize_row` (ggml's `from_float`) gives for each row of `vals`.
fn quantized_rows(typ: GgmlType, vals: &[f32], n: usize) -> Vec<u8> {
    vals.chunks(n)
        .flat_map(|row| {
            let mut b = vec![0u8; typ.row_size(n).unwrap()];
            quant::quantize_row_for_dot(typ, row, &mut b).unwrap();
            b
        })
        .collect()
}

#[test]
fn cpy_into_new_block_types() {
    // CPY(f16 -> type, [256, 4, 4, 4]) and CPY(f32 -> type) from a permuted source, then back to f32.
    let mut rng = Rng::new(44);
    for typ in NEW_STORES {
        let ne = [256, 4, 2, 2];
        let vals = rng.vec(256 * 16, -1.0, 1.0);
        let h = HostTensor::from_f32(F16, ne, &vals);
        let mut d = HostTensor::zeros(typ, ne);
        run_op(Op::Cpy, [0; 16], &[Some(&h)], &mut d).unwrap();
        assert_eq!(
            d.bytes,
            quantized_rows(typ, &h.to_f32(), 256),
            "f16 -> {}",
            typ.name()
        );
        let p = rand_f32([256, 2, 4, 2], &mut rng).permuted([0, 2, 1, 3]);
        run_op(Op::Cpy, [0; 16], &[Some(&p)], &mut d).unwrap();
        assert_eq!(
            d.bytes,
            quantized_rows(typ, &p.to_f32(), 256),
            "f32 -> {}",
            typ.name()
        );
        let mut back = HostTensor::zeros(F32, ne);
        run_op(Op::Cpy, [0; 16], &[Some(&d)], &mut back).unwrap();
        assert_eq!(back.to_f32(), d.to_f32(), "{} -> f32", typ.name());
    }
}

#[test]
fn set_rows_into_new_block_types() {
    // SET_ROWS(f32 -> type, [256, 5, 1, 3], i64 indices): the targeted rows hold from_float's bytes,
    // the others stay untouched.
    let mut rng = Rng::new(45);
    for typ in NEW_STORES {
        let b = rand_f32([256, 2, 1, 1], &mut rng);
        let idx = HostTensor::from_i64([2, 1, 1, 1], &[4, 1]);
        let mut d = HostTensor::zeros(typ, [256, 5, 1, 1]);
        d.bytes.fill(0x11);
        let before = d.clone();
        run_op(
            Op::SetRows,
            [0; 16],
            &[Some(&b), Some(&idx), Some(&before)],
            &mut d,
        )
        .unwrap();
        let row = typ.row_size(256).unwrap();
        let want = quantized_rows(typ, &b.to_f32(), 256);
        assert_eq!(
            &d.bytes[4 * row..5 * row],
            &want[..row],
            "{} row 4",
            typ.name()
        );
        assert_eq!(&d.bytes[row..2 * row], &want[row..], "{} row 1", typ.name());
        for r in [0, 2, 3] {
            assert!(d.bytes[r * row..(r + 1) * row].iter().all(|&x| x == 0x11));
        }
    }
}
