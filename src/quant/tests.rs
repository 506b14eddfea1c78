//! Codec tests: hand-built blocks with hand-computed values, exact quantizer outputs, round trips.

use super::testdata::{DEQUANT_TYPES, dequant};
use super::*;
use crate::testkit::Rng;
use GgmlType::*;

fn deq(typ: GgmlType, b: &[u8]) -> Vec<f32> {
    let n = b.len() / typ.type_size() * typ.block_size();
    let mut y = vec![0f32; n];
    dequantize_row(typ, b, &mut y).expect("dequantize");
    y
}

fn f16b(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

#[test]
fn q4_0_block_by_hand() {
    // d = 0.5; byte j = low nibble j, high nibble 15 - j.
    let mut b = vec![0x00, 0x38];
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = deq(Q4_0, &b);
    assert_eq!(y[0], -4.0); // (0 - 8) * 0.5
    assert_eq!(y[9], 0.5); // (9 - 8) * 0.5
    assert_eq!(y[16], 3.5); // (15 - 8) * 0.5
    assert_eq!(y[31], -4.0); // (0 - 8) * 0.5
}

#[test]
fn q4_1_block_by_hand() {
    // d = 0.25, m = -1; byte j = low 15 - j, high j.
    let mut b = vec![0x00, 0x34, 0x00, 0xBC];
    b.extend((0..16u8).map(|j| (15 - j) | (j << 4)));
    let y = deq(Q4_1, &b);
    assert_eq!(y[0], 15.0 * 0.25 - 1.0);
    assert_eq!(y[15], -1.0);
    assert_eq!(y[16], -1.0);
    assert_eq!(y[31], 15.0 * 0.25 - 1.0);
}

#[test]
fn q5_0_block_by_hand() {
    // d = 1; fifth bits set for elements 0, 17 and 31.
    let qh: u32 = 1 | (1 << 17) | (1 << 31);
    let mut b = vec![0x00, 0x3C];
    b.extend(qh.to_le_bytes());
    let mut qs = [0u8; 16];
    qs[0] = 0x13;
    qs[1] = 0xFF;
    qs[15] = 0x50;
    b.extend(qs);
    let y = deq(Q5_0, &b);
    assert_eq!(y[0], 3.0); // (3 | 16) - 16
    assert_eq!(y[16], -15.0); // 1 - 16
    assert_eq!(y[1], -1.0); // 15 - 16
    assert_eq!(y[17], 15.0); // (15 | 16) - 16
    assert_eq!(y[15], -16.0);
    assert_eq!(y[31], 5.0); // (5 | 16) - 16
    assert_eq!(y[5], -16.0);
}

#[test]
fn q5_1_block_by_hand() {
    // d = 0.5, m = 2; fifth bits set for elements 16..31; byte j = j | j << 4.
    let mut b = vec![0x00, 0x38, 0x00, 0x40];
    b.extend(0xFFFF_0000u32.to_le_bytes());
    b.extend((0..16u8).map(|j| j | (j << 4)));
    let y = deq(Q5_1, &b);
    for j in 0..16 {
        assert_eq!(y[j], j as f32 * 0.5 + 2.0);
        assert_eq!(y[j + 16], (j + 16) as f32 * 0.5 + 2.0);
    }
}

#[test]
fn q8_blocks_by_hand() {
    let mut b = vec![0x00, 0x40]; // d = 2
    b.extend((0..32).map(|j| (j as i8 - 16) as u8));
    let y = deq(Q8_0, &b);
    assert_eq!((y[0], y[16], y[31]), (-32.0, 0.0, 30.0));

    let mut k = 0.125f32.to_le_bytes().to_vec();
    k.extend((0..256i32).map(|j| (j - 128) as i8 as u8));
    k.extend([0u8; 32]);
    let y = deq(Q8K, &k);
    assert_eq!((y[0], y[128], y[255]), (-16.0, 0.0, 15.875));
}

#[test]
fn q2_k_block_by_hand() {
    // scale g = g, min g = 15 - g; quants: first half 0,1,2,3 by shift, second half 3,2,1,0;
    // byte l = 5 of the first window is all ones. d = 0.5, dmin = 0.25.
    let mut b: Vec<u8> = (0..16u8).map(|g| g | ((15 - g) << 4)).collect();
    let mut qs = [0xE4u8; 64];
    qs[32..].fill(0x1B);
    qs[5] = 0xFF;
    b.extend(qs);
    b.extend(f16b(0.5));
    b.extend(f16b(0.25));
    let y = deq(Q2K, &b);
    assert_eq!(y[0], -3.75); // 0.5*0*0 - 0.25*15
    assert_eq!(y[40], 1.0 - 3.25); // group 2, q 1
    assert_eq!(y[5], 0.5 * 0.0 * 3.0 - 3.75); // group 0, q 3 from byte 5
    assert_eq!(y[21], -3.5); // group 1 reads byte 16 + 5 (q 0): 0.5*1*0 - 0.25*14
    assert_eq!(y[37], -0.25); // shift 1 of byte 5 (q 3), group 2: 0.5*2*3 - 0.25*13
    assert_eq!(y[128], 0.5 * 8.0 * 3.0 - 0.25 * 7.0); // second half, shift 0, q 3
    assert_eq!(y[255], -0.0); // group 15, q 0, min 0
}

#[test]
fn q3_k_block_by_hand() {
    // All 16 scales 33 (=1 after -32) except scale 2 = 40 (8) and scale 13 = 0 (-32).
    let mut b = vec![0xFFu8; 32]; // hmask
    b[0] = 0xFE; // element 0 lacks its high bit: q - 4
    let mut qs = [0u8; 64];
    qs[0] = 0xE4; // elements 0, 32, 64, 96 get 0, 1, 2, 3
    qs[32 + 16] = 0x30; // element 128 + 64 + 16 = 208 gets 3
    b.extend(qs);
    b.extend([
        0x11, 0x11, 0x18, 0x11, 0x11, 0x01, 0x11, 0x11, 0xAA, 0x2A, 0xAA, 0xAA,
    ]);
    b.extend(f16b(0.5));
    let y = deq(Q3K, &b);
    assert_eq!(y[0], -2.0); // 0.5 * 1 * (0 - 4)
    assert_eq!(y[1], 0.0);
    assert_eq!(y[32], 4.0); // 0.5 * 8 * 1
    assert_eq!(y[64], 1.0);
    assert_eq!(y[96], 1.5);
    assert_eq!(y[208], -48.0); // 0.5 * -32 * 3
    assert_eq!(y[224], 0.0);
}

/// Q4_K/Q5_K scale field: scales [1, 2, 3, 4, 58, 0, 0, 0], mins [5, 6, 7, 8, 41, 0, 0, 0].
const K4_SCALES: [u8; 12] = [0xC1, 2, 3, 4, 0x85, 6, 7, 8, 0x9A, 0, 0, 0];

#[test]
fn q4_k_scale_packing() {
    let (sc, mn) = k_quants::scale_min_k4(&K4_SCALES);
    assert_eq!(sc, [1, 2, 3, 4, 58, 0, 0, 0]);
    assert_eq!(mn, [5, 6, 7, 8, 41, 0, 0, 0]);
}

#[test]
fn q4_k_block_by_hand() {
    let mut b = [f16b(1.0), f16b(0.5)].concat();
    b.extend(K4_SCALES);
    let mut qs = [0x21u8; 128];
    qs[64..96].fill(0x73);
    b.extend(qs);
    let y = deq(Q4K, &b);
    assert_eq!(y[0], -1.5); // 1*1 - 0.5*5
    assert_eq!(y[32], 1.0); // 2*2 - 0.5*6
    assert_eq!(y[64], -0.5); // 3*1 - 0.5*7
    assert_eq!(y[127], 4.0); // 4*2 - 0.5*8
    assert_eq!(y[128], 153.5); // 58*3 - 0.5*41
    assert_eq!(y[160], 0.0);
    assert_eq!(y[255], 0.0);
}

#[test]
fn q5_k_block_by_hand() {
    let mut b = [f16b(1.0), f16b(0.5)].concat();
    b.extend(K4_SCALES);
    let mut qh = [0u8; 32];
    qh[3] = 0b0001_0001; // +16 for element 3 (sub-block 0) and 128 + 3 (sub-block 4)
    b.extend(qh);
    b.extend([0x21u8; 128]);
    let y = deq(Q5K, &b);
    assert_eq!(y[0], -1.5);
    assert_eq!(y[3], 14.5); // 1*17 - 2.5
    assert_eq!(y[32], 1.0);
    assert_eq!(y[128], 37.5); // 58*1 - 20.5
    assert_eq!(y[131], 965.5); // 58*17 - 20.5
}

#[test]
fn q6_k_block_by_hand() {
    let mut ql = [0u8; 128];
    ql[0] = 0x21;
    ql[32] = 0x43;
    ql[64] = 0xFF;
    ql[96] = 0xFF;
    let mut qh = [0u8; 64];
    qh[0] = 0b11_10_01_00;
    qh[32] = 0xFF;
    let scales: Vec<u8> = (0..16).map(|g| (g as i8 - 8) as u8).collect();
    let b = [&ql[..], &qh, &scales, &f16b(0.5)].concat();
    let y = deq(Q6K, &b);
    assert_eq!(y[0], 124.0); // 0.5 * -8 * (1 - 32)
    assert_eq!(y[1], 128.0); // 0.5 * -8 * (0 - 32)
    assert_eq!(y[32], 39.0); // 0.5 * -6 * ((3|16) - 32)
    assert_eq!(y[64], -4.0); // 0.5 * -4 * ((2|32) - 32)
    assert_eq!(y[96], -20.0); // 0.5 * -2 * ((4|48) - 32)
    assert_eq!(y[128], 0.0); // scale 0
    assert_eq!(y[160], 31.0); // 0.5 * 2 * 31
    assert_eq!(y[192], 62.0);
    assert_eq!(y[224], 93.0);
}

#[test]
fn iq4_blocks_by_hand() {
    let mut b = vec![0x00, 0x38]; // d = 0.5
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = deq(Iq4Nl, &b);
    assert_eq!((y[0], y[16], y[8], y[31]), (-63.5, 56.5, 0.5, -63.5));

    // IQ4_XS: d = 0.25, sub-block scales ls = 28..35 (ls - 32 = -4..3), every byte 0xF0.
    let mut b = [f16b(0.25), 0xAA55u16.to_le_bytes()].concat();
    b.extend([0xDC, 0xFE, 0x10, 0x32]);
    b.extend([0xF0u8; 128]);
    let y = deq(Iq4Xs, &b);
    for ib in 0..8 {
        let s = 0.25 * (ib as f32 - 4.0);
        assert_eq!(y[32 * ib], s * -127.0, "sub-block {ib}");
        assert_eq!(y[32 * ib + 31], s * 113.0, "sub-block {ib}");
    }
}

#[test]
fn mxfp4_block_by_hand() {
    let qs: Vec<u8> = (0..16u8).map(|j| j | ((15 - j) << 4)).collect();
    let y = deq(Mxfp4, &[&[128u8][..], &qs].concat());
    assert_eq!((y[5], y[7], y[16], y[31]), (6.0, 12.0, -12.0, 0.0));
    let y = deq(Mxfp4, &[&[130u8][..], &qs].concat());
    assert_eq!(y[7], 48.0);
    let y = deq(Mxfp4, &[&[0u8][..], &qs].concat());
    assert_eq!(y[1], 2f32.powi(-128));
    let y = deq(Mxfp4, &[&[1u8][..], &qs].concat());
    assert_eq!(y[2], 2.0 * 2f32.powi(-127));
}

#[test]
fn float_rows_by_hand() {
    let b = [0x3C00u16, 0xC000, 0x7BFF, 0x0001]
        .map(u16::to_le_bytes)
        .concat();
    assert_eq!(deq(F16, &b), vec![1.0, -2.0, 65504.0, 2f32.powi(-24)]);
    let b = [0x3F80u16, 0xC040].map(u16::to_le_bytes).concat();
    assert_eq!(deq(Bf16, &b), vec![1.0, -3.0]);
    let mut out = [0u8; 4];
    quantize_row(
        Bf16,
        &[1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8)],
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [0x80, 0x3F, 0x82, 0x3F]); // ties to even
}

#[test]
fn q8_0_ref_and_cpu_round_differently() {
    let mut x = [0f32; 32];
    (x[0], x[1], x[2], x[3]) = (127.0, 2.5, -2.5, 0.5);
    let mut r = [0u8; 34];
    quantize_row(Q8_0, &x, &mut r).unwrap();
    assert_eq!(&r[..6], &[0x00, 0x3C, 127, 3, (-3i8) as u8, 1]); // roundf: half away from zero
    let mut c = [0u8; 34];
    quantize_row_for_dot(Q8_0, &x, &mut c).unwrap();
    assert_eq!(&c[..6], &[0x00, 0x3C, 127, 2, (-2i8) as u8, 0]); // AVX2: half to even
}

#[test]
fn q4_0_quantizer_by_hand() {
    // max = -8 -> d = 1; q = trunc(x + 8.5) capped at 15.
    let x: Vec<f32> = (0..16)
        .map(|j| j as f32 - 8.0)
        .chain((0..16).map(|j| (j as f32 - 8.0) / 2.0))
        .collect();
    let mut b = [0u8; 18];
    quantize_row(Q4_0, &x, &mut b).unwrap();
    assert_eq!(&b[..2], &[0x00, 0x3C]);
    for j in 0..16 {
        let hi = ((j as f32 - 8.0) / 2.0 + 8.5) as u8;
        assert_eq!(b[2 + j], j as u8 | (hi << 4), "byte {j}");
    }
}

#[test]
fn q8_k_quantizer_by_hand() {
    let mut x = [0f32; 256];
    (x[0], x[1], x[2], x[20]) = (-2.0, 1.0, 0.5, 0.25);
    let mut b = [0u8; 292];
    quantize_row(Q8K, &x, &mut b).unwrap();
    // iscale = -127 / -2 = 63.5: q = -127, 63.5 -> 64 (half to even), 31.75 -> 32, 15.875 -> 16.
    assert_eq!(f32::from_le_bytes([b[0], b[1], b[2], b[3]]), 1.0 / 63.5);
    assert_eq!(&b[4..7], &[(-127i8) as u8, 64, 32]);
    assert_eq!(b[24], 16);
    assert_eq!(i16::from_le_bytes([b[260], b[261]]), -31);
    assert_eq!(i16::from_le_bytes([b[262], b[263]]), 16);
    let zeros = [0f32; 256];
    quantize_row(Q8K, &zeros, &mut b).unwrap();
    assert!(b.iter().all(|&v| v == 0));
}

#[test]
fn q8_1_sum_field() {
    type Quantizer = fn(GgmlType, &[f32], &mut [u8]) -> Result<(), QuantError>;
    let x: Vec<f32> = (0..32).map(|j| j as f32 - 10.0).collect();
    for f in [quantize_row as Quantizer, quantize_row_for_dot] {
        let mut b = [0u8; 36];
        f(Q8_1, &x, &mut b).unwrap();
        // amax = 21, so d = 21/127 (stored as f16) and s = f16(d_f32 * Σq).
        let d = 21.0f32 / 127.0;
        let s: i32 = b[4..].iter().map(|&v| v as i8 as i32).sum();
        assert_eq!(&b[..2], &f16b(d));
        assert_eq!(&b[2..4], &f16b(d * s as f32));
        assert_eq!((b[4 + 31], b[4] as i8), (127, -60)); // -10 * 127/21 = -60.48
    }
}

/// Round trips on random data in [-1, 1): the bound per block is a fraction of the block's amax
/// (Q4_0/Q5_0 clamp the value opposite to the max to 15/31, an error of d) or of its range.
#[test]
fn quantize_dequantize_round_trips() {
    let mut rng = Rng::new(7);
    let n = 512;
    let x = rng.vec(n, -1.0, 1.0);
    for (typ, bound) in [
        (F32, 0.0),
        (F16, 1e-3),
        (Bf16, 8e-3),
        (Q4_0, 0.13),
        (Q4_1, 2.0 * 0.55 / 15.0),
        (Q5_0, 0.07),
        (Q5_1, 2.0 * 0.55 / 31.0),
        (Q8_0, 0.006),
        (Q8_1, 0.006),
        (Q8K, 0.0045),
        (Iq4Nl, 0.15),
    ] {
        let mut b = vec![0u8; typ.row_size(n).unwrap()];
        quantize_row(typ, &x, &mut b).unwrap();
        let y = dequant(typ, &b, n);
        let blk = if typ.block_size() == 1 {
            32
        } else {
            typ.block_size()
        };
        for (xb, yb) in x.chunks(blk).zip(y.chunks(blk)) {
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            for (a, b) in xb.iter().zip(yb) {
                assert!(
                    (a - b).abs() <= bound * amax + 1e-6,
                    "{}: {a} vs {b}",
                    typ.name()
                );
            }
        }
    }
}

#[test]
fn lengths_are_validated() {
    let mut out = [0f32; 32];
    assert!(matches!(
        dequantize_row(Q4_0, &[0u8; 17], &mut out),
        Err(QuantError::BadLength { .. })
    ));
    let mut small = [0f32; 33];
    assert!(dequantize_row(Q4_0, &[0u8; 18], &mut small).is_err());
    assert!(quantize_row(Q8_0, &[0f32; 33], &mut [0u8; 34]).is_err());
    assert!(quantize_row(Q8_0, &[0f32; 32], &mut [0u8; 35]).is_err());
    assert!(vec_dot(Q4_0, 32, &[0u8; 18], &[0u8; 33]).is_err());
    assert!(vec_dot(Q4K, 32, &[0u8; 144], &[0u8; 292]).is_err());
    assert_eq!(
        dequantize_row(I32, &[0u8; 4], &mut [0f32; 1]),
        Err(QuantError::Unsupported("i32"))
    );
    assert!(quantize_row(Iq2Xxs, &[0f32; 256], &mut [0u8; 66]).is_err());
    assert!(vec_dot(I32, 1, &[0u8; 4], &[0u8; 4]).is_err());
    for t in DEQUANT_TYPES {
        let n = t.block_size() * 2;
        let b = vec![0u8; t.row_size(n).unwrap()];
        assert!(
            dequantize_row(t, &b, &mut vec![0f32; n]).is_ok(),
            "{}",
            t.name()
        );
        assert!(dequantize_row(t, &b[1..], &mut vec![0f32; n]).is_err());
    }
}
