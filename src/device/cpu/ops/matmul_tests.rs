//! MUL_MAT / MUL_MAT_ID / OUT_PROD against straightforward f64 references.
//!
//! Tolerances. Tight: the reference uses the activations after the same conversion the kernel applies
//! (`quantize_row_for_dot` to Q8_0/Q8_1/Q8_K/F16/BF16, then dequantized), so only f32 rounding of
//! per-block terms remains: 1e-4 relative. Q4_1/Q5_1 also use Q8_1's `s = d·Σq`, stored as f16, which
//! adds up to |m·s|·2^-11 per block. Loose: against the unconverted f32 activations (|b| ≤ 1) the
//! conversion error per element is at most 0.0045·amax for Q8 (half a step of amax/127, plus f16
//! rounding of d), 2^-11 relative for f16 and 2^-8 for bf16, so the result may move by that times
//! Σ|a_k| (Q8 activations lose ~1e-2 relative on typical rows).

use super::*;
use crate::device::cpu::ops::testutil::{HostTensor, Rng, assert_close, run_op};
use crate::ggml::MAX_DIMS;
use crate::quant::testdata::{WEIGHT_TYPES, dequant, random_row};

/// A contiguous src0 of `typ` with random rows.
fn weights(typ: GgmlType, ne: [usize; MAX_DIMS], rng: &mut Rng) -> HostTensor {
    let t = Tensor::new(typ, ne);
    let rows = ne[1] * ne[2] * ne[3];
    let bytes = (0..rows)
        .flat_map(|_| random_row(typ, ne[0], rng))
        .collect();
    HostTensor { t, bytes }
}

fn acts(ne: [usize; MAX_DIMS], rng: &mut Rng) -> HostTensor {
    let n = ne.iter().product();
    HostTensor::from_f32(GgmlType::F32, ne, &rng.vec(n, -1.0, 1.0))
}

/// One activation row: raw values, the kernel's converted values, and its converted bytes.
struct ActRow {
    raw: Vec<f32>,
    conv: Vec<f32>,
    bytes: Vec<u8>,
}

fn act_rows(b: &HostTensor, vt: GgmlType) -> Vec<ActRow> {
    let k = b.t.ne[0];
    b.to_f32()
        .chunks(k)
        .map(|row| {
            let mut bytes = vec![0u8; vt.row_size(k).unwrap()];
            quant::quantize_row_for_dot(vt, row, &mut bytes).unwrap();
            ActRow {
                raw: row.to_vec(),
                conv: dequant(vt, &bytes, k),
                bytes,
            }
        })
        .collect()
}

/// Expected value of one result element and the allowed absolute errors (tight, loose).
struct Want {
    conv: f64,
    raw: f64,
    tight: f64,
    loose: f64,
}

fn loose_per_l1(typ: GgmlType) -> f64 {
    match quant::vec_dot_type(typ) {
        GgmlType::F32 => 1e-6,
        GgmlType::F16 => 2f64.powi(-11),
        GgmlType::Bf16 => 2f64.powi(-8),
        _ => 0.0045,
    }
}

/// Weight row `arow` (values and, for Q8_1 slack, its bytes) times activation row `b`.
fn want(typ: GgmlType, arow: &[f32], abytes: Option<&[u8]>, b: &ActRow) -> Want {
    let dot = |y: &[f32]| {
        arow.iter()
            .zip(y)
            .map(|(x, y)| *x as f64 * *y as f64)
            .sum::<f64>()
    };
    let (conv, raw) = (dot(&b.conv), dot(&b.raw));
    let l1: f64 = arow.iter().map(|x| x.abs() as f64).sum();
    let mut slack = 0.0;
    if let (GgmlType::Q8_1, Some(ab)) = (quant::vec_dot_type(typ), abytes) {
        let f16 = |c: &[u8]| half::f16::from_le_bytes([c[2], c[3]]).to_f32() as f64;
        let blocks = ab
            .chunks_exact(typ.type_size())
            .zip(b.bytes.chunks_exact(36));
        slack = blocks.map(|(x, y)| (f16(x) * f16(y)).abs()).sum::<f64>() * 2f64.powi(-11);
    }
    Want {
        conv,
        raw,
        tight: 1e-4 * (1.0 + conv.abs()) + slack,
        loose: loose_per_l1(typ) * l1 + 1e-4 * (1.0 + raw.abs()) + slack,
    }
}

/// The bytes of weight row `r` (logical order) when rows are packed.
fn row_bytes(a: &HostTensor, r: usize) -> Option<&[u8]> {
    let (i1, i2, i3) = access::unravel_row(&a.t, r);
    let off = access::row_offset(&a.t, i1, i2, i3);
    a.bytes.get(off..off + a.t.typ.row_size(a.t.ne[0])?)
}

/// MUL_MAT reference in logical dst order.
fn reference(a: &HostTensor, b: &HostTensor) -> Vec<Want> {
    let (an, bn) = (a.t.ne, b.t.ne);
    let av = a.to_f32();
    let rows = act_rows(b, quant::vec_dot_type(a.t.typ));
    let (k, m) = (an[0], an[1]);
    let (r2, r3) = (bn[2] / an[2], bn[3] / an[3]);
    let mut out = Vec::new();
    for i3 in 0..bn[3] {
        for i2 in 0..bn[2] {
            for n in 0..bn[1] {
                let brow = &rows[(i3 * bn[2] + i2) * bn[1] + n];
                for mm in 0..m {
                    let r = ((i3 / r3) * an[2] + i2 / r2) * m + mm;
                    out.push(want(a.t.typ, &av[r * k..][..k], row_bytes(a, r), brow));
                }
            }
        }
    }
    out
}

fn assert_wants(got: &[f32], want: &[Want], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let g = *g as f64;
        assert!(
            (g - w.conv).abs() <= w.tight,
            "{what}: element {i}: got {g}, want {}",
            w.conv
        );
        assert!(
            (g - w.raw).abs() <= w.loose,
            "{what}: element {i}: got {g}, exact {}",
            w.raw
        );
    }
}

fn check_mul_mat(a: &HostTensor, b: &HostTensor, dst: &mut HostTensor, what: &str) {
    run_op(Op::MulMat, [0; 16], &[Some(a), Some(b)], dst).expect(what);
    assert_wants(&dst.to_f32(), &reference(a, b), what);
}

fn out_shape(a: &HostTensor, b: &HostTensor) -> [usize; 4] {
    [a.t.ne[1], b.t.ne[1], b.t.ne[2], b.t.ne[3]]
}

#[test]
fn mul_mat_every_type_odd_shapes() {
    let mut rng = Rng::new(1);
    for typ in WEIGHT_TYPES {
        let k = if typ.block_size() == 256 { 512 } else { 96 };
        for (m, n) in [(7, 1), (7, 3), (33, 5)] {
            let a = weights(typ, [k, m, 1, 1], &mut rng);
            let b = acts([k, n, 1, 1], &mut rng);
            let mut dst = HostTensor::zeros(GgmlType::F32, out_shape(&a, &b));
            check_mul_mat(&a, &b, &mut dst, &format!("{} m={m} n={n}", typ.name()));
        }
    }
}

#[test]
fn mul_mat_many_rows_and_columns() {
    // Enough rows and columns for several tasks and column tiles.
    let mut rng = Rng::new(2);
    for typ in [GgmlType::Q4K, GgmlType::Q8_0, GgmlType::F16] {
        let a = weights(typ, [256, 300, 1, 1], &mut rng);
        let b = acts([256, 70, 1, 1], &mut rng);
        let mut dst = HostTensor::zeros(GgmlType::F32, out_shape(&a, &b));
        check_mul_mat(&a, &b, &mut dst, typ.name());
    }
}

/// K-quant weights switch from `vec_dot` to ggml's tiled-path kernel at 8 columns, bit for bit
/// (unless `GGML_CPU_TILED_MM` turns the path off, as in ggml).
#[test]
fn mul_mat_k_quants_take_tiled_path_from_8_columns() {
    let mut rng = Rng::new(12);
    for typ in [GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q2K, GgmlType::Iq4Xs] {
        let (k, m) = (512, 20);
        let a = weights(typ, [k, m, 1, 1], &mut rng);
        for n in [7usize, 8, 20] {
            let b = acts([k, n, 1, 1], &mut rng);
            let mut dst = HostTensor::zeros(GgmlType::F32, out_shape(&a, &b));
            let what = format!("{} n={n}", typ.name());
            check_mul_mat(&a, &b, &mut dst, &what);
            let dot = if quant::tiled::use_tiled(n) {
                quant::tiled::tiled_dot_fn(typ).unwrap()
            } else {
                quant::dot_fn(typ).unwrap()
            };
            let rows = act_rows(&b, quant::vec_dot_type(typ));
            let got = dst.to_f32();
            for (c, brow) in rows.iter().enumerate() {
                for r in 0..m {
                    let want = dot(row_bytes(&a, r).unwrap(), &brow.bytes);
                    assert_eq!(got[c * m + r].to_bits(), want.to_bits(), "{what} [{r},{c}]");
                }
            }
        }
    }
}

#[test]
fn mul_mat_broadcasts_over_dims_2_and_3() {
    let mut rng = Rng::new(3);
    for typ in [GgmlType::Q4_0, GgmlType::Q6K, GgmlType::F16, GgmlType::F32] {
        let k = typ.block_size().max(32);
        let a = weights(typ, [k, 5, 2, 3], &mut rng);
        let b = acts([k, 4, 4, 6], &mut rng);
        let mut dst = HostTensor::zeros(GgmlType::F32, out_shape(&a, &b));
        check_mul_mat(&a, &b, &mut dst, typ.name());
    }
}

#[test]
fn mul_mat_permuted_src1_and_strided_dst() {
    let mut rng = Rng::new(4);
    for typ in [GgmlType::Q5_0, GgmlType::Q4K, GgmlType::F16] {
        let k = typ.block_size().max(64);
        let a = weights(typ, [k, 6, 2, 1], &mut rng);
        let base = acts([k, 3, 2, 1], &mut rng);
        for perm in [[1, 0, 2, 3], [0, 2, 1, 3], [2, 1, 0, 3]] {
            let b = base.permuted(perm);
            let what = format!("{} perm {perm:?}", typ.name());
            let mut dst = HostTensor::zeros(GgmlType::F32, out_shape(&a, &b));
            check_mul_mat(&a, &b, &mut dst, &what);
            let mut dst = HostTensor::zeros(GgmlType::F32, out_shape(&a, &b)).permuted(perm);
            check_mul_mat(&a, &b, &mut dst, &format!("{what}, permuted dst"));
        }
    }
}

/// Keeps the first `nbytes` of `storage` under the view `t` (what the executor hands a kernel).
fn view(storage: &HostTensor, ne: [usize; 4], nb: [usize; 4]) -> HostTensor {
    let mut t = storage.t.clone();
    (t.ne, t.nb) = (ne, nb);
    let n = t.nbytes().unwrap();
    assert!(n <= storage.bytes.len());
    HostTensor {
        t,
        bytes: storage.bytes[..n].to_vec(),
    }
}

#[test]
fn mul_mat_attention_views() {
    let mut rng = Rng::new(5);
    let (d, h, ctx, n_kv, n_tok, n_head) = (64, 2, 10, 7, 3, 4);
    let (kq, v) = (
        acts([d, n_tok, n_head, 1], &mut rng),
        rng.vec(d * h * ctx, -1.0, 1.0),
    );
    for typ in [GgmlType::F16, GgmlType::F32] {
        let es = typ.type_size();
        // K cache [d*h, ctx]: view [d, n_kv, h] with nb1 = one token of all heads.
        let k_cache = HostTensor::from_f32(typ, [d * h, ctx, 1, 1], &v);
        let kv = view(
            &k_cache,
            [d, n_kv, h, 1],
            [es, d * h * es, d * es, d * h * ctx * es],
        );
        let mut dst = HostTensor::zeros(GgmlType::F32, [n_kv, n_tok, n_head, 1]);
        check_mul_mat(&kv, &kq, &mut dst, &format!("KQ {}", typ.name()));
        // Transposed V cache [ctx, d*h]: view [n_kv, d, h] with nb1 = ctx elements.
        let v_cache = HostTensor::from_f32(typ, [ctx, d * h, 1, 1], &v);
        let vt = view(
            &v_cache,
            [n_kv, d, h, 1],
            [es, ctx * es, ctx * d * es, ctx * d * h * es],
        );
        let p = acts([n_kv, n_tok, n_head, 1], &mut rng).permuted([0, 2, 1, 3]);
        let mut dst = HostTensor::zeros(GgmlType::F32, [d, n_tok, n_head, 1]);
        check_mul_mat(&vt, &p, &mut dst, &format!("KQV {}", typ.name()));
        // A transposed float matrix: elements of a row are not adjacent.
        let at = HostTensor::from_f32(typ, [d, 9, 1, 1], &v[..d * 9]).permuted([1, 0, 2, 3]);
        let b = acts([d, 2, 1, 1], &mut rng);
        let mut dst = HostTensor::zeros(GgmlType::F32, [9, 2, 1, 1]);
        check_mul_mat(&at, &b, &mut dst, &format!("transposed {}", typ.name()));
    }
}

#[test]
fn mul_mat_f16_activations() {
    let mut rng = Rng::new(6);
    let a = weights(GgmlType::Q8_0, [64, 5, 1, 1], &mut rng);
    let b = HostTensor::from_f32(GgmlType::F16, [64, 3, 1, 1], &rng.vec(192, -1.0, 1.0));
    let mut dst = HostTensor::zeros(GgmlType::F32, [5, 3, 1, 1]);
    check_mul_mat(&a, &b, &mut dst, "f16 src1");
}

#[test]
fn mul_mat_checks_shapes_and_types() {
    let mut rng = Rng::new(7);
    let a = weights(GgmlType::Q4_0, [64, 4, 2, 1], &mut rng);
    let run = |a: &HostTensor, b: &HostTensor, ne: [usize; 4], typ: GgmlType| {
        run_op(
            Op::MulMat,
            [0; 16],
            &[Some(a), Some(b)],
            &mut HostTensor::zeros(typ, ne),
        )
    };
    let f32 = GgmlType::F32;
    assert!(run(&a, &acts([64, 3, 2, 1], &mut rng), [4, 3, 2, 1], f32).is_ok());
    assert!(run(&a, &acts([32, 3, 2, 1], &mut rng), [4, 3, 2, 1], f32).is_err()); // K
    assert!(run(&a, &acts([64, 3, 3, 1], &mut rng), [4, 3, 3, 1], f32).is_err()); // broadcast
    assert!(run(&a, &acts([64, 3, 2, 1], &mut rng), [4, 2, 2, 1], f32).is_err()); // dst shape
    assert!(
        run(
            &a,
            &acts([64, 3, 2, 1], &mut rng),
            [4, 3, 2, 1],
            GgmlType::F16
        )
        .is_err()
    );
    let i32w = HostTensor::zeros(GgmlType::I32, [256, 2, 1, 1]); // no dot product for i32 weights
    assert!(run(&i32w, &acts([256, 1, 1, 1], &mut rng), [2, 1, 1, 1], f32).is_err());
    let k33 = HostTensor::zeros(GgmlType::F32, [33, 2, 1, 1]);
    assert!(run(&k33, &acts([33, 1, 1, 1], &mut rng), [2, 1, 1, 1], f32).is_ok());
}

/// MUL_MAT_ID reference in logical dst order.
fn reference_id(a: &HostTensor, b: &HostTensor, ids: &[i32], n_used: usize) -> Vec<Want> {
    let (k, m) = (a.t.ne[0], a.t.ne[1]);
    let (n_b, n_tok) = (b.t.ne[1], b.t.ne[2]);
    let av = a.to_f32();
    let rows = act_rows(b, quant::vec_dot_type(a.t.typ));
    let mut out = Vec::new();
    for t in 0..n_tok {
        for e in 0..n_used {
            let ex = ids[t * n_used + e] as usize;
            let brow = &rows[t * n_b + e % n_b];
            for mm in 0..m {
                let r = ex * m + mm;
                out.push(want(a.t.typ, &av[r * k..][..k], row_bytes(a, r), brow));
            }
        }
    }
    out
}

#[test]
fn mul_mat_id_random_ids() {
    let mut rng = Rng::new(8);
    let (n_exp, n_used, n_tok, m) = (4, 2, 5, 9);
    for typ in [
        GgmlType::Q4_0,
        GgmlType::Q4K,
        GgmlType::Mxfp4,
        GgmlType::F32,
        // test-backend-ops' large MUL_MAT_ID cases use these grid formats.
        GgmlType::Iq2Xxs,
        GgmlType::Iq3S,
        GgmlType::Iq1M,
    ] {
        let k = typ.block_size().max(64);
        let a = weights(typ, [k, m, n_exp, 1], &mut rng);
        for n_b in [1, n_used] {
            let b = acts([k, n_b, n_tok, 1], &mut rng);
            let idv: Vec<i32> = (0..n_used * n_tok)
                .map(|_| (rng.next_u64() % 4) as i32)
                .collect();
            let ids = HostTensor::from_i32([n_used, n_tok, 1, 1], &idv);
            let mut dst = HostTensor::zeros(GgmlType::F32, [m, n_used, n_tok, 1]);
            run_op(
                Op::MulMatId,
                [0; 16],
                &[Some(&a), Some(&b), Some(&ids)],
                &mut dst,
            )
            .unwrap();
            let what = format!("{} n_b={n_b}", typ.name());
            assert_wants(&dst.to_f32(), &reference_id(&a, &b, &idv, n_used), &what);
        }
    }
}

#[test]
fn mul_mat_id_rejects_bad_ids() {
    let mut rng = Rng::new(9);
    let a = weights(GgmlType::Q8_0, [32, 3, 4, 1], &mut rng);
    let b = acts([32, 1, 2, 1], &mut rng);
    for bad in [4, -1, i32::MAX, i32::MIN] {
        let ids = HostTensor::from_i32([2, 2, 1, 1], &[0, 1, 2, bad]);
        let mut dst = HostTensor::zeros(GgmlType::F32, [3, 2, 2, 1]);
        let err = run_op(
            Op::MulMatId,
            [0; 16],
            &[Some(&a), Some(&b), Some(&ids)],
            &mut dst,
        );
        assert!(err.unwrap_err().contains("out of range"), "id {bad}");
    }
    let ids = HostTensor::from_i32([3, 2, 1, 1], &[0; 6]);
    let b2 = acts([32, 2, 2, 1], &mut rng);
    let mut dst = HostTensor::zeros(GgmlType::F32, [3, 3, 2, 1]);
    assert!(
        run_op(
            Op::MulMatId,
            [0; 16],
            &[Some(&a), Some(&b2), Some(&ids)],
            &mut dst
        )
        .is_err()
    );
}

#[test]
fn out_prod_matches_reference() {
    let mut rng = Rng::new(10);
    let (k, ne1) = (6, 3);
    for typ in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q8_0,
        GgmlType::Iq2Xs,
        GgmlType::Iq1S,
    ] {
        // A whole block per row, as test-backend-ops' OUT_PROD(type_a=iq2_xs, m=256, ...).
        let ne0 = typ.block_size().max(32);
        let a = weights(typ, [ne0, k, 2, 1], &mut rng);
        let b = acts([ne1, k, 4, 1], &mut rng).permuted([1, 0, 2, 3]); // transposed, like ggml's
        let mut dst = HostTensor::zeros(GgmlType::F32, [ne0, ne1, 4, 1]);
        run_op(Op::OutProd, [0; 16], &[Some(&a), Some(&b)], &mut dst).unwrap();
        let (av, bv) = (a.to_f32(), b.to_f32());
        let mut want = Vec::new();
        for i2 in 0..4 {
            for i1 in 0..ne1 {
                for i0 in 0..ne0 {
                    want.push(
                        (0..k)
                            .map(|kk| {
                                let x = av[((i2 / 2) * k + kk) * ne0 + i0] as f64;
                                x * bv[(i2 * k + kk) * ne1 + i1] as f64
                            })
                            .sum(),
                    );
                }
            }
        }
        assert_close(&dst.to_f32(), &want, 1e-5, typ.name());
    }
}

/// Throughput of the decode hot path: `cargo test --release --lib bench_mat_vec -- --ignored
/// --nocapture`. Prints GB/s of weights for a 640×2048 mat-vec: single-threaded `vec_dot` over the
/// rows, and MUL_MAT on a 2-thread pool with the weights hot in cache or cycling through 160 MB of
/// copies (cold, like a real model). Each pass is timed alone; "best" is the fastest pass, "med" the
/// median (the build machine's cores are shared, so the best pass is the cleanest figure).
#[test]
#[ignore = "timing only"]
fn bench_mat_vec() {
    use std::time::Instant;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut rng = Rng::new(99);
    let stats = |mut t: Vec<f64>, bytes: usize| {
        t.sort_by(f64::total_cmp);
        (
            bytes as f64 / t[0] / 1e9,
            bytes as f64 / t[t.len() / 2] / 1e9,
        )
    };
    for (typ, k, m) in [
        (GgmlType::Q5_0, 640, 2048),
        (GgmlType::Q8_0, 640, 2048),
        (GgmlType::Q4K, 2048, 640),
        (GgmlType::Q6K, 2048, 640),
        (GgmlType::Q5_0, 2048, 640),
        (GgmlType::Q8_0, 2048, 640),
        (GgmlType::F16, 640, 2048),
    ] {
        let a = weights(typ, [k, m, 1, 1], &mut rng);
        let bytes = a.bytes.len();
        let copies = (160 << 20) / bytes + 1;
        let cold: Vec<HostTensor> = (0..copies).map(|_| a.clone()).collect();
        let b = acts([k, 1, 1, 1], &mut rng);
        let vt = quant::vec_dot_type(typ);
        let mut y = vec![0u8; vt.row_size(k).unwrap()];
        quant::quantize_row_for_dot(vt, &b.to_f32(), &mut y).unwrap();
        let (row, dot) = (typ.row_size(k).unwrap(), quant::dot_fn(typ).unwrap());
        let mut sink = 0f32;
        let passes: Vec<f64> = (0..300)
            .map(|_| {
                let t0 = Instant::now();
                for r in a.bytes.chunks_exact(row) {
                    sink += dot(r, &y);
                }
                t0.elapsed().as_secs_f64()
            })
            .collect();
        let (dot_best, dot_med) = stats(passes, bytes);
        let mut dst = HostTensor::zeros(GgmlType::F32, [m, 1, 1, 1]);
        let mut time = |ts: &[HostTensor], n: usize| {
            let passes = pool.install(|| {
                (0..n)
                    .map(|i| {
                        let t0 = Instant::now();
                        let a = &ts[i % ts.len()];
                        run_op(Op::MulMat, [0; 16], &[Some(a), Some(&b)], &mut dst).unwrap();
                        t0.elapsed().as_secs_f64()
                    })
                    .collect()
            });
            stats(passes, bytes)
        };
        let (hot, cold) = (time(std::slice::from_ref(&a), 300), time(&cold, 2 * copies));
        println!(
            "{:5} K={k:4} M={m:4} ({:7} B) GB/s best/med: vec_dot 1 thread {:5.1}/{:5.1} | \
             MUL_MAT 2 threads hot {:5.1}/{:5.1}, cold {:5.1}/{:5.1}  [{sink:.0}]",
            typ.name(),
            bytes,
            dot_best,
            dot_med,
            hot.0,
            hot.1,
            cold.0,
            cold.1,
        );
    }
}
