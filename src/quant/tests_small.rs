//! Tests of the low-bit codecs: Q1_0, Q2_0, TQ1_0, TQ2_0, NVFP4 (and MXFP4's quantizer).

use super::*;
use crate::testkit::Rng;
use GgmlType::*;

const TYPES: [GgmlType; 5] = [Q1_0, Q2_0, Tq1_0, Tq2_0, Nvfp4];

fn f16b(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

fn f16r(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

fn deq(typ: GgmlType, b: &[u8]) -> Vec<f32> {
    let n = b.len() / typ.type_size() * typ.block_size();
    let mut out = vec![0f32; n];
    dequantize_row(typ, b, &mut out).unwrap();
    out
}

fn quant(typ: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut b = vec![0u8; typ.row_size(x.len()).unwrap()];
    quantize_row(typ, x, &mut b).unwrap();
    b
}

/// Random blocks of `typ` with sane scales (f16 `d` in [0.005, 0.05), NVFP4 scales with exponents
/// 4..8), every other byte random.
fn random_row(typ: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out: Vec<u8> = (0..typ.row_size(n).unwrap())
        .map(|_| rng.next_u64() as u8)
        .collect();
    for b in out.chunks_exact_mut(typ.type_size()) {
        let d = f16b(rng.uniform(0.005, 0.05));
        match typ {
            Q1_0 | Q2_0 => b[0..2].copy_from_slice(&d),
            Tq1_0 => b[52..54].copy_from_slice(&d),
            Tq2_0 => b[64..66].copy_from_slice(&d),
            Nvfp4 => {
                for s in &mut b[0..4] {
                    *s = ((4 + rng.next_u64() % 4) << 3) as u8 | (*s & 7);
                }
            }
            _ => unreachable!(),
        }
    }
    out
}

#[test]
fn q1_0_block_by_hand() {
    let mut b = [0u8; 18];
    b[0..2].copy_from_slice(&f16b(0.5));
    b[2] = 0b0000_0101; // elements 0 and 2 positive
    b[17] = 0x80; // element 127 positive
    let y = deq(Q1_0, &b);
    for (j, v) in y.iter().enumerate() {
        let want = if [0, 2, 127].contains(&j) { 0.5 } else { -0.5 };
        assert_eq!(*v, want, "element {j}");
    }
}

#[test]
fn q2_0_block_by_hand() {
    let mut b = [0u8; 18];
    b[0..2].copy_from_slice(&f16b(0.25));
    b[2] = 0b11_10_01_00; // elements 0..4: codes 0, 1, 2, 3
    b[17] = 0b10 << 6; // element 63: code 2
    let y = deq(Q2_0, &b);
    assert_eq!(&y[0..4], &[-0.25, 0.0, 0.25, 0.5]);
    assert_eq!(y[63], 0.25);
    assert!(y[4..63].iter().all(|&v| v == -0.25));
}

#[test]
fn tq2_0_block_by_hand() {
    let mut b = [0x55u8; 66]; // all codes 1 → 0
    b[64..66].copy_from_slice(&f16b(2.0));
    b[0] = 0b10_01_00_01; // byte 0: elements 0, 32, 64, 96 = 0, -1, 0, +1
    b[33] = 0b11_01_01_01; // byte 33 (j=32, m=1): element 128 + 96 + 1 = 225 → code 3
    let y = deq(Tq2_0, &b);
    for (j, v) in y.iter().enumerate() {
        let want = match j {
            32 => -2.0,
            96 => 2.0,
            225 => 4.0,
            _ => 0.0,
        };
        assert_eq!(*v, want, "element {j}");
    }
}

/// A byte packing base-3 digits t0..t4 (most significant first) as `ceil(n·256/243)`.
fn tq1_byte(t: [u8; 5]) -> u8 {
    let n = t.iter().fold(0u32, |n, &d| n * 3 + d as u32);
    (n * 256).div_ceil(243) as u8
}

#[test]
fn tq1_0_block_by_hand() {
    let mut b = [tq1_byte([1; 5]); 54]; // all zero values
    b[48..52].fill(tq1_byte([1, 1, 1, 1, 0]));
    b[52..54].copy_from_slice(&f16b(1.5));
    b[3] = tq1_byte([2, 0, 1, 1, 2]); // elements 3, 35, 67, 99, 131
    b[40] = tq1_byte([1, 1, 0, 1, 1]); // element 160 + 2·16 + 8 = 200
    b[49] = tq1_byte([1, 1, 1, 2, 0]); // qh[1]: element 240 + 3·4 + 1 = 253
    let y = deq(Tq1_0, &b);
    for (j, v) in y.iter().enumerate() {
        let want = match j {
            3 | 131 | 253 => 1.5,
            35 | 200 => -1.5,
            _ => 0.0,
        };
        assert_eq!(*v, want, "element {j}");
    }
}

#[test]
fn ue4m3_scales_by_hand() {
    // exp 7, man 0 → 1.0; exp 8, man 4 → 3.0; subnormal man 3 → 3·2^-9; all halved.
    assert_eq!(nvfp4::ue4m3_half(7 << 3), 0.5);
    assert_eq!(nvfp4::ue4m3_half((8 << 3) | 4), 1.5);
    assert_eq!(nvfp4::ue4m3_half(3), 1.5 / 512.0);
    assert_eq!(nvfp4::ue4m3_half(0x7F), 0.0);
    assert_eq!(nvfp4::f32_to_ue4m3(1.0), 7 << 3);
    assert_eq!(nvfp4::f32_to_ue4m3(3.0), (8 << 3) | 4);
    assert_eq!(nvfp4::f32_to_ue4m3(1.0 + 1.0 / 16.0), (7 << 3) | 1); // the round bit carries
    assert_eq!(nvfp4::f32_to_ue4m3(1000.0), 0x7E);
    assert_eq!(nvfp4::f32_to_ue4m3(3.0 / 512.0), 3);
    assert_eq!(nvfp4::f32_to_ue4m3(-1.0), 0);
    // ggml saturates every exponent-15 value to 0x7E; every code below those survives a round trip.
    for c in 1u8..0x78 {
        assert_eq!(
            nvfp4::f32_to_ue4m3(2.0 * nvfp4::ue4m3_half(c)),
            c,
            "code {c:#x}"
        );
    }
}

#[test]
fn nvfp4_block_by_hand() {
    let mut b = [0u8; 36];
    b[0] = 7 << 3; // sub-block 0: d = 0.5
    b[2] = 8 << 3; // sub-block 2: d = 1
    b[4] = 0x9_7; // elements 0 (code 7 → 12) and 8 (code 9 → -1)
    b[4 + 16 + 7] = 0x5_0; // sub-block 2, element 32 + 15: code 5 → 6
    let y = deq(Nvfp4, &b);
    for (j, v) in y.iter().enumerate() {
        let want = match j {
            0 => 6.0,
            8 => -0.5,
            47 => 6.0,
            _ => 0.0,
        };
        assert_eq!(*v, want, "element {j}");
    }
}

/// Straightforward versions of each `quantize_row_*_ref` algorithm followed by dequantization, one
/// element at a time.
fn reference_round_trip(typ: GgmlType, x: &[f32]) -> Vec<f32> {
    let blk = typ.block_size();
    let mut out = Vec::new();
    for xb in x.chunks(blk) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        match typ {
            Q1_0 => {
                let mut s = 0f32;
                for v in xb {
                    s += v.abs();
                }
                let d = f16r(s / 128.0);
                out.extend(xb.iter().map(|&v| if v >= 0.0 { d } else { -d }));
            }
            Q2_0 | Tq1_0 | Tq2_0 => {
                let (lo, hi) = if typ == Q2_0 {
                    (-1.0, 2.0)
                } else {
                    (-1.0, 1.0)
                };
                let d = f16r(amax);
                let id = if amax > 0.0 { 1.0 / amax } else { 0.0 };
                out.extend(xb.iter().map(|&v| f32::clamp((v * id).round(), lo, hi) * d));
            }
            Nvfp4 => {
                const E2M1: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
                for sb in xb.chunks(16) {
                    let amax = sb.iter().fold(0f32, |a, v| a.max(v.abs()));
                    // The UE4M3 conversion itself is checked by hand in `ue4m3_scales_by_hand`.
                    let code = nvfp4::f32_to_ue4m3(amax / 6.0);
                    let d = 2.0 * nvfp4::ue4m3_half(code);
                    for &v in sb {
                        // Nearest magnitude; ties go to the smaller code (the first found).
                        let mut best = 0.0f32;
                        for &m in &E2M1 {
                            if (m * d - v.abs()).abs() < (best * d - v.abs()).abs() {
                                best = m;
                            }
                        }
                        // ggml keeps +0 for a value nearest to zero (code 0 precedes 8).
                        let val = best * d;
                        out.push(if v < 0.0 && best != 0.0 { -val } else { val });
                    }
                }
            }
            _ => unreachable!(),
        }
    }
    out
}

#[test]
fn quantize_dequantize_matches_reference() {
    let mut rng = Rng::new(5);
    for typ in TYPES {
        for n in [256, 1024] {
            let mut x = rng.vec(n, -1.0, 1.0);
            x[3] = 0.0;
            x[17] *= 1e-3;
            let y = deq(typ, &quant(typ, &x));
            let want = reference_round_trip(typ, &x);
            for (j, (a, b)) in y.iter().zip(&want).enumerate() {
                assert_eq!(a, b, "{} element {j} of {n}: x = {}", typ.name(), x[j]);
            }
        }
    }
}

#[test]
fn zero_and_constant_blocks_quantize_exactly() {
    for typ in TYPES {
        let n = 256;
        assert!(
            deq(typ, &quant(typ, &vec![0.0; n]))
                .iter()
                .all(|&v| v == 0.0)
        );
        // 0.75 = 6 · 2^-3 is exact in every format (NVFP4: scale 2^-3, E2M1 value 6).
        let y = deq(typ, &quant(typ, &vec![-0.75; n]));
        assert!(
            y.iter().all(|&v| v == -0.75),
            "{}: {:?}",
            typ.name(),
            &y[..4]
        );
    }
}

#[test]
fn mxfp4_quantizer_by_hand() {
    // amax 3 → e = floor(log2 3) − 2 + 127 = 126, value = F·2^(e−128) = F/4 (F the doubled E2M1).
    let mut x = [0f32; 32];
    x[0] = 3.0;
    x[1] = -1.0;
    x[16] = 0.26; // nearest 0.25 (F = 1)
    let b = quant(Mxfp4, &x);
    assert_eq!(b[0], 126);
    assert_eq!(b[1], 0x1_7); // element 0: code 7 (12/4 = 3); element 16: code 1
    assert_eq!(b[2] & 0xF, 12); // element 1: code 12 (-4/4 = -1)
    let y = deq(Mxfp4, &b);
    assert_eq!((y[0], y[1], y[16]), (3.0, -1.0, 0.25));
}

#[test]
fn vec_dot_types_and_dots_match_dequantized_reference() {
    for (typ, vt) in [
        (Q1_0, Q8_0),
        (Q2_0, Q8_0),
        (Nvfp4, Q8_0),
        (Tq1_0, Q8K),
        (Tq2_0, Q8K),
    ] {
        assert_eq!(vec_dot_type(typ), vt, "{}", typ.name());
    }
    let mut rng = Rng::new(9);
    for typ in TYPES {
        for n in [256, 768] {
            for _ in 0..4 {
                let x = random_row(typ, n, &mut rng);
                let vt = vec_dot_type(typ);
                let mut y = vec![0u8; vt.row_size(n).unwrap()];
                quantize_row_for_dot(vt, &rng.vec(n, -1.0, 1.0), &mut y).unwrap();
                let (xf, yf) = (deq(typ, &x), deq(vt, &y));
                let want: f64 = xf.iter().zip(&yf).map(|(a, b)| *a as f64 * *b as f64).sum();
                let scale: f64 = xf.iter().zip(&yf).map(|(a, b)| (a * b).abs() as f64).sum();
                let got = vec_dot(typ, n, &x, &y).unwrap() as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * scale + 1e-9,
                    "{} n={n}: {got} vs {want}",
                    typ.name()
                );
            }
        }
    }
}

#[test]
fn q1_0_dot_by_hand() {
    // Q1_0: d = 2, elements 0..32 positive, the rest negative. Q8_0 blocks: d_k = k + 1, all
    // quants 1 → Σ = 2·(1·32 − 2·32 − 3·32 − 4·32) = −512.
    let mut x = [0u8; 18];
    x[0..2].copy_from_slice(&f16b(2.0));
    x[2..6].fill(0xFF);
    let mut y = vec![0u8; 4 * 34];
    for (k, b) in y.chunks_exact_mut(34).enumerate() {
        b[0..2].copy_from_slice(&f16b(k as f32 + 1.0));
        b[2..].fill(1);
    }
    assert_eq!(vec_dot(Q1_0, 128, &x, &y).unwrap(), -512.0);
}

/// The K-quant, IQ4_XS and MXFP4 reference quantizers (CPY/SET_ROWS stores): zero rows stay zero
/// and random rows round-trip within a fraction of each block's amax that follows the bit width
/// (half a quant step for the 6/5/4-bit codes, more for the 3/2-bit ones whose scales are fitted
/// by least squares rather than to the max). Bit-exactness against ggml is what test-backend-ops'
/// SET_ROWS/CPY cases check (NMSE ≤ 1e-7).
#[test]
fn k_quant_quantizers_round_trip() {
    let mut rng = Rng::new(12);
    for (typ, bound) in [
        (Q6K, 0.03),
        (Q5K, 0.06),
        (Q4K, 0.12),
        (Q3K, 0.3),
        (Q2K, 0.5),
        (Iq4Xs, 0.15),
        (Mxfp4, 0.26),
    ] {
        let n = 512;
        assert!(
            deq(typ, &quant(typ, &vec![0.0; n]))
                .iter()
                .all(|&v| v == 0.0)
        );
        let x = rng.vec(n, -1.0, 1.0);
        let y = deq(typ, &quant(typ, &x));
        let blk = typ.block_size();
        for (xb, yb) in x.chunks(blk).zip(y.chunks(blk)) {
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            let worst = xb
                .iter()
                .zip(yb)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= bound * amax,
                "{}: error {worst} vs amax {amax}",
                typ.name()
            );
        }
    }
}

#[test]
fn q6_k_quantizer_by_hand() {
    // Every 16-element group is q/32 for q = -32, -28, ..., 28: the weighted fit gives exactly
    // 1/32 per group, so d = f16(-1/4096), every int8 group scale is -128 (d·s = 2^-5) and each
    // code is q + 32: the round trip is exact.
    let x: Vec<f32> = (0..256)
        .map(|i| (4 * (i % 16) - 32) as f32 / 32.0)
        .collect();
    let b = quant(Q6K, &x);
    assert_eq!(f16_at(b[208], b[209]), -1.0 / 4096.0);
    assert!(b[192..208].iter().all(|&s| s as i8 == -128));
    assert_eq!(deq(Q6K, &b), x);
}
