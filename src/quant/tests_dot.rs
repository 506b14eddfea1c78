//! Dot-product tests: every weight type against an f64 dot of the dequantized rows.

use super::testdata::{WEIGHT_TYPES, dequant, random_row};
use super::*;
use crate::testkit::Rng;

/// Activations for a weight row of `typ`: random values in [-1, 1) converted like MUL_MAT does.
fn activations(typ: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let vt = vec_dot_type(typ);
    let x = rng.vec(n, -1.0, 1.0);
    let mut y = vec![0u8; vt.row_size(n).unwrap()];
    quantize_row_for_dot(vt, &x, &mut y).unwrap();
    y
}

/// The kernels sum integers exactly and scale once per (sub-)block in f32, so they agree with the
/// f64 dot of the dequantized rows to about f32 rounding of the per-block terms: 1e-5 relative to
/// Σ|x·y| (a wrong index or scale is off by O(1)). Q4_1/Q5_1 also use Q8_1's `s = d·Σq`, which is
/// stored as f16: each block adds up to |m·s|·2^-11 on top.
fn q8_1_slack(typ: GgmlType, x: &[u8], y: &[u8]) -> f64 {
    if vec_dot_type(typ) != GgmlType::Q8_1 {
        return 0.0;
    }
    let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32() as f64;
    let ts = typ.type_size();
    x.chunks_exact(ts)
        .zip(y.chunks_exact(36))
        .map(|(xb, yb)| (f16(&xb[2..]) * f16(&yb[2..])).abs() * 2f64.powi(-11))
        .sum()
}

#[test]
fn vec_dot_matches_dequantized_reference() {
    let mut rng = Rng::new(11);
    for typ in WEIGHT_TYPES {
        for n in [256, 512, 1024 + 256] {
            for _ in 0..4 {
                let x = random_row(typ, n, &mut rng);
                let y = activations(typ, n, &mut rng);
                let (xf, yf) = (dequant(typ, &x, n), dequant(vec_dot_type(typ), &y, n));
                let want: f64 = xf.iter().zip(&yf).map(|(a, b)| *a as f64 * *b as f64).sum();
                let scale: f64 = xf
                    .iter()
                    .zip(&yf)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                let tol = 1e-5 * scale + q8_1_slack(typ, &x, &y) + 1e-9;
                let got = vec_dot(typ, n, &x, &y).unwrap() as f64;
                let scalar = scalar_dot_fn(typ).unwrap()(&x, &y) as f64;
                for (kernel, got) in [("dispatched", got), ("portable", scalar)] {
                    assert!(
                        (got - want).abs() <= tol,
                        "{} {kernel} n={n}: got {got}, want {want} (scale {scale})",
                        typ.name()
                    );
                }
            }
        }
    }
}

#[test]
fn vec_dot_types_follow_ggml_cpu() {
    use GgmlType::*;
    for (t, v) in [
        (Q4_0, Q8_0),
        (Q5_0, Q8_0),
        (Q8_0, Q8_0),
        (Iq4Nl, Q8_0),
        (Mxfp4, Q8_0),
        (Q4_1, Q8_1),
        (Q5_1, Q8_1),
        (Q2K, Q8K),
        (Q3K, Q8K),
        (Q4K, Q8K),
        (Q5K, Q8K),
        (Q6K, Q8K),
        (Iq4Xs, Q8K),
        (F16, F16),
        (Bf16, Bf16),
        (F32, F32),
    ] {
        assert_eq!(vec_dot_type(t), v, "{}", t.name());
    }
}

#[test]
fn q8_0_dot_by_hand() {
    // x: d = 0.5, all quants 2; y: d = 0.25, quants j. Σ 2·j = 992, times 0.125 = 124.
    let mut x = vec![0x00, 0x38];
    x.extend([2u8; 32]);
    let mut y = vec![0x00, 0x34];
    y.extend(0..32u8);
    assert_eq!(vec_dot(GgmlType::Q8_0, 32, &x, &y), Ok(124.0));
}

#[test]
fn float_dots_handle_tails() {
    let mut rng = Rng::new(3);
    for typ in [GgmlType::F32, GgmlType::F16, GgmlType::Bf16] {
        for n in [1, 7, 31, 32, 33, 64, 100] {
            let x = random_row(typ, n, &mut rng);
            let y = random_row(typ, n, &mut rng);
            let (xf, yf) = (dequant(typ, &x, n), dequant(typ, &y, n));
            let want: f64 = xf.iter().zip(&yf).map(|(a, b)| *a as f64 * *b as f64).sum();
            let got = vec_dot(typ, n, &x, &y).unwrap() as f64;
            assert!(
                (got - want).abs() <= 1e-5 * n as f64,
                "{} n={n}",
                typ.name()
            );
        }
    }
}

/// The tiled-path kernels (`quant::tiled`): against the f64 dot of the dequantized rows and the
/// `vec_dot` kernel within f32 rounding; dispatched (AVX2) and portable versions bit-identical; the
/// per-block epilogue exactly as written out in ggml's AVX2 micro-kernel.
#[test]
fn tiled_dot_matches_vec_dot_and_reference() {
    use super::tiled::{scalar_tiled_dot_fn, tiled_dot_fn};
    let mut rng = Rng::new(29);
    let mut covered = 0;
    for typ in WEIGHT_TYPES {
        let Some(tiled) = tiled_dot_fn(typ) else {
            continue;
        };
        covered += 1;
        let portable = scalar_tiled_dot_fn(typ).unwrap();
        for n in [256, 512, 1024 + 256] {
            for _ in 0..4 {
                let x = random_row(typ, n, &mut rng);
                let y = activations(typ, n, &mut rng);
                let (xf, yf) = (dequant(typ, &x, n), dequant(vec_dot_type(typ), &y, n));
                let want: f64 = xf.iter().zip(&yf).map(|(a, b)| *a as f64 * *b as f64).sum();
                let scale: f64 = xf
                    .iter()
                    .zip(&yf)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                let tol = 1e-5 * scale + 1e-9;
                let got = tiled(&x, &y);
                assert_eq!(
                    got.to_bits(),
                    portable(&x, &y).to_bits(),
                    "{} n={n}: AVX2 and portable tiled kernels differ",
                    typ.name()
                );
                let dot = vec_dot(typ, n, &x, &y).unwrap() as f64;
                for (what, v) in [("f64 reference", want), ("vec_dot", dot)] {
                    assert!(
                        (got as f64 - v).abs() <= tol,
                        "{} n={n}: tiled {got} vs {what} {v} (scale {scale})",
                        typ.name()
                    );
                }
            }
        }
    }
    assert_eq!(covered, 6, "Q2_K..Q6_K and IQ4_XS have tiled kernels");
}

#[test]
fn tiled_q4_k_epilogue_by_hand() {
    // One Q4_K block: d = 0.5, dmin = 0.25, scales 1..8, mins 2, every quant 3; a Q8_K block with
    // d = 0.125 and every quant 5. s1 = Σ_j scale_j·32·15 = 36·480, s2 = Σ_j 2·(32·5) = 2560.
    // res = 0.5·17280 − 0.25·2560 = 8000; result 8000·0.125 = 1000.
    let mut x = vec![0u8; 144];
    x[0..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
    x[2..4].copy_from_slice(&half::f16::from_f32(0.25).to_le_bytes());
    // 6-bit scales/mins packed like ggml: j < 4 in bytes j (scale) and j + 4 (min), low 6 bits;
    // j >= 4: low nibbles in byte j + 4, high two bits in the top of bytes j - 4 / j.
    for j in 0..8u8 {
        let (sc, mn) = (j + 1, 2u8);
        let j = j as usize;
        if j < 4 {
            x[4 + j] = sc;
            x[4 + j + 4] = mn;
        } else {
            x[4 + j + 4] = (sc & 0x0F) | ((mn & 0x0F) << 4);
            x[4 + j - 4] |= (sc >> 4) << 6;
            x[4 + j] |= (mn >> 4) << 6;
        }
    }
    x[16..].fill(0x33);
    let mut y = vec![0u8; 292];
    y[0..4].copy_from_slice(&0.125f32.to_le_bytes());
    y[4..260].fill(5);
    for g in 0..16 {
        y[260 + 2 * g..262 + 2 * g].copy_from_slice(&80i16.to_le_bytes());
    }
    for f in [
        super::tiled::tiled_dot_fn(GgmlType::Q4K).unwrap(),
        super::tiled::scalar_tiled_dot_fn(GgmlType::Q4K).unwrap(),
    ] {
        assert_eq!(f(&x, &y), 1000.0);
    }
}

/// The register-tiled kernels give exactly `dot_fn`'s bits for every tile shape.
#[test]
fn tile_kernels_are_bit_identical_to_vec_dot() {
    use GgmlType::*;
    let mut rng = Rng::new(23);
    let mut covered = 0;
    for (typ, tile) in [Q8_0, Q5_0, Q4_0]
        .into_iter()
        .flat_map(|t| tile_fns(t).into_iter().map(move |f| (t, f)))
    {
        covered += 1;
        let dot = dot_fn(typ).unwrap();
        let n = 32 * 21;
        let xs: Vec<Vec<u8>> = (0..4).map(|_| random_row(typ, n, &mut rng)).collect();
        let ys: Vec<Vec<u8>> = (0..4).map(|_| activations(typ, n, &mut rng)).collect();
        for rm in 1..=4 {
            for rn in 1..=4 {
                let x: Vec<&[u8]> = xs[..rm].iter().map(|r| r.as_slice()).collect();
                let y: Vec<&[u8]> = ys[..rn].iter().map(|r| r.as_slice()).collect();
                let mut out = [f32::NAN; 16];
                tile(&x, &y, &mut out);
                for j in 0..rn {
                    for i in 0..rm {
                        let want = dot(x[i], y[j]);
                        assert_eq!(
                            out[j * rm + i].to_bits(),
                            want.to_bits(),
                            "{} tile {rm}x{rn} at ({i}, {j}): {} vs {want}",
                            typ.name(),
                            out[j * rm + i]
                        );
                    }
                }
            }
        }
    }
    if cfg!(all(target_arch = "x86_64", target_feature = "avx2")) {
        assert!(
            covered >= 3,
            "every Q*_0 type has a tile kernel on AVX2 builds"
        );
    }
}

/// The register-tiled kernels of the tiled K-quant path give exactly `tiled_dot_fn`'s bits.
#[test]
fn tiled_tile_kernels_are_bit_identical_to_tiled_dot() {
    let mut rng = Rng::new(29);
    let mut covered = 0;
    for (typ, tile) in WEIGHT_TYPES
        .into_iter()
        .flat_map(|t| tiled::tiled_tile_fns(t).into_iter().map(move |f| (t, f)))
    {
        covered += 1;
        let dot = tiled::tiled_dot_fn(typ).unwrap();
        let n = 256 * 3;
        let xs: Vec<Vec<u8>> = (0..4).map(|_| random_row(typ, n, &mut rng)).collect();
        let ys: Vec<Vec<u8>> = (0..4).map(|_| activations(typ, n, &mut rng)).collect();
        for (rm, rn) in (1..=4).flat_map(|m| (1..=4).map(move |n| (m, n))) {
            let x: Vec<&[u8]> = xs[..rm].iter().map(|r| r.as_slice()).collect();
            let y: Vec<&[u8]> = ys[..rn].iter().map(|r| r.as_slice()).collect();
            let mut out = [f32::NAN; 16];
            tile(&x, &y, &mut out);
            for (j, i) in (0..rn).flat_map(|j| (0..rm).map(move |i| (j, i))) {
                let want = dot(x[i], y[j]);
                assert_eq!(
                    out[j * rm + i].to_bits(),
                    want.to_bits(),
                    "{} {rm}x{rn}",
                    typ.name()
                );
            }
        }
    }
    if cfg!(all(target_arch = "x86_64", target_feature = "avx2")) {
        assert!(covered >= 1, "Q4_K has a tiled tile kernel on AVX2 builds");
    }
}
