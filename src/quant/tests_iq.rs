//! IQ2/IQ3/IQ1 grid formats: hand-built blocks against values worked out from the format (the grid
//! entries used are quoted from ggml-common.h beside each case), and ggml-cpu's `vec_dot_type`.
//! Their dot products are checked with every other weight type in `tests_dot`.

use super::*;
use GgmlType::*;

fn deq(typ: GgmlType, b: &[u8]) -> Vec<f32> {
    let mut y = vec![0f32; 256];
    dequantize_row(typ, b, &mut y).expect("dequantize");
    y
}

/// A zeroed block of `typ` with f16 `d` in its first two bytes.
fn block(typ: GgmlType, d: f32) -> Vec<u8> {
    let mut b = vec![0u8; typ.type_size()];
    b[0..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
    b
}

#[test]
fn iq2_xxs_block_by_hand() {
    // d = 1. Sub-block 0: grid indices [1, 0, 0, 0]; sign index 1 (ksigns 129: elements 0 and 7
    // negative) for group 0, 127 (ksigns 255: all negative) for group 3; scale 3.
    // grid[0] = 0x0808080808080808, grid[1] = 0x080808080808082b (element 0 is 0x2b = 43).
    let mut b = block(Iq2Xxs, 1.0);
    b[2] = 1;
    let aux: u32 = 1 | (127 << 21) | (3 << 28);
    b[6..10].copy_from_slice(&aux.to_le_bytes());
    let y = deq(Iq2Xxs, &b);
    let db = (0.5 + 3.0) * 0.25; // 0.875
    assert_eq!(y[0], -db * 43.0);
    assert_eq!(&y[1..7], &[db * 8.0; 6]);
    assert_eq!(y[7], -db * 8.0);
    assert_eq!(&y[8..24], &[7.0; 16]);
    assert_eq!(&y[24..32], &[-7.0; 8]);
    // Sub-blocks 1..7: scale 0 → db = 1/8, grid 0, no signs.
    assert!(y[32..].iter().all(|&v| v == 1.0));
}

#[test]
fn iq2_xs_block_by_hand() {
    // d = 0.5. Group 0: grid index 300 (0x1908190808191908 → 8,25,25,8,8,25,8,25), sign index 2
    // (ksigns 130: elements 1 and 7 negative). Scales byte 0x51: 1 for elements 0..15, 5 for 16..31.
    let mut b = block(Iq2Xs, 0.5);
    b[2..4].copy_from_slice(&(300u16 | (2 << 9)).to_le_bytes());
    b[66] = 0x51;
    let y = deq(Iq2Xs, &b);
    let lo = 0.5 * 1.5 * 0.25; // 0.1875
    let hi = 0.5 * 5.5 * 0.25;
    let want0 = [8.0, -25.0, 25.0, 8.0, 8.0, 25.0, 8.0, -25.0].map(|g| lo * g);
    assert_eq!(&y[0..8], &want0);
    assert_eq!(&y[8..16], &[lo * 8.0; 8]);
    assert_eq!(&y[16..32], &[hi * 8.0; 16]);
    assert_eq!(y[32], 0.5 * 0.5 * 0.25 * 8.0);
}

#[test]
fn iq2_s_block_by_hand() {
    // d = 1. Group 5 (sub-block 1, l = 1): grid index 700 = 0x2bc: qs[5] = 0xbc, qh[1] bits 2-3 = 2.
    // grid[700] = 0x1919082b2b080808 → 8,8,8,43,43,8,25,25. Sign byte 0x81: elements 0 and 7.
    // Scales byte 1 low nibble 2 → db = 2.5/4 for elements 32..47.
    let mut b = block(Iq2S, 1.0);
    b[2 + 5] = 0xbc;
    b[66 + 1] = 2 << 2;
    b[34 + 5] = 0x81;
    b[74 + 1] = 0x02;
    let y = deq(Iq2S, &b);
    assert_eq!(
        &y[40..48],
        &[-5.0, 5.0, 5.0, 26.875, 26.875, 5.0, 15.625, -15.625]
    );
    assert_eq!(&y[32..40], &[5.0; 8]); // group 4: grid 0, same scale
    assert_eq!(&y[48..64], &[1.0; 16]); // high nibble 0 → 1/8 · 8
}

#[test]
fn iq3_xxs_block_by_hand() {
    // d = 1. Group 0: grid indices 5 (0x04040c3e → 62,12,4,4) and 0 (0x04040404). Sub-block 0's u32
    // (byte 66): sign index 1 (elements 0 and 7 negative), scale 1 → db = 1.5/2 = 0.75.
    let mut b = block(Iq3Xxs, 1.0);
    b[2] = 5;
    b[66..70].copy_from_slice(&(1u32 | (1 << 28)).to_le_bytes());
    let y = deq(Iq3Xxs, &b);
    assert_eq!(&y[0..8], &[-46.5, 9.0, 3.0, 3.0, 3.0, 3.0, 3.0, -3.0]);
    assert_eq!(&y[8..32], &[3.0; 24]);
    assert_eq!(y[32], 0.25 * 4.0); // scale 0 → db = 1/4
}

#[test]
fn iq3_s_block_by_hand() {
    // d = 0.25. Group 1 (sub-block 0, l = 1): first index 300 = 0x12c (qs[2] = 0x2c, ninth bit in
    // qh[0] bit 2), grid[300] = 0x07030503 → 3,5,3,7; second index 1 (qs[3] = 1, qh[0] bit 3 clear),
    // grid[1] = 0x01010103 → 3,1,1,1. Sign byte 0x10: element 4. Scale nibble 2 → db = 0.25·5.
    let mut b = block(Iq3S, 0.25);
    b[2 + 2] = 0x2c;
    b[2 + 3] = 1;
    b[66] = 1 << 2;
    b[74 + 1] = 0x10;
    b[106] = 0x02;
    let y = deq(Iq3S, &b);
    assert_eq!(
        &y[8..16],
        &[3.75, 6.25, 3.75, 8.75, -3.75, 1.25, 1.25, 1.25]
    );
    assert_eq!(&y[0..8], &[1.25; 8]); // grid[0] = 0x01010101
    assert_eq!(&y[32..40], &[0.25; 8]); // sub-block 1: high nibble 0 → db = d
}

#[test]
fn iq1_s_block_by_hand() {
    // d = 0.5. Sub-block 0's qh = 5 (group 0's index bits 8-10) | s = 2 (bits 12-14) | bit 15 (δ
    // negative); qs[0] = 0xdc: index 0x5dc = 1500, grid 0x01ff00ff00ffff00 → 0,-1,-1,0,-1,0,-1,1.
    // dl = 0.5·5 = 2.5; value = 2.5·(grid − 1/8).
    let mut b = block(Iq1S, 0.5);
    b[2] = 0xdc;
    let qh: u16 = 5 | (2 << 12) | 0x8000;
    b[34..36].copy_from_slice(&qh.to_le_bytes());
    let y = deq(Iq1S, &b);
    let g = [0.0, -1.0, -1.0, 0.0, -1.0, 0.0, -1.0, 1.0];
    assert_eq!(&y[0..8], &g.map(|v| 2.5 * (v - 0.125)));
    // Groups 1..3: grid[0] = all −1.
    assert_eq!(&y[8..32], &[2.5 * -1.125; 24]);
    // Sub-block 1: s = 0, δ = +1/8.
    assert_eq!(y[32], 0.5 * -0.875);
}

#[test]
fn iq1_m_block_by_hand() {
    // d = 2 (f16 0x4000: only the top nibble of scales u16 3 is non-zero). Group 0: index 700 =
    // 0x2bc (qs[0] = 0xbc, low nibble of qh[0] = 2 | 8 for δ negative), grid 0x00ff00ff0000ff00 →
    // 0,-1,0,0,-1,0,-1,0. Scales u16 0: bits 0-2 = 3 (elements 0..15: 2s+1 = 7), bits 3-5 = 1
    // (16..31: 3).
    let mut b = vec![0u8; 56];
    b[0] = 0xbc;
    b[32] = 0x0a;
    b[48..50].copy_from_slice(&(3u16 | (1 << 3)).to_le_bytes());
    b[54..56].copy_from_slice(&0x4000u16.to_le_bytes());
    let y = deq(Iq1M, &b);
    let g = [0.0, -1.0, 0.0, 0.0, -1.0, 0.0, -1.0, 0.0];
    assert_eq!(&y[0..8], &g.map(|v| 14.0 * (v - 0.125)));
    assert_eq!(&y[8..16], &[14.0 * -0.875; 8]); // group 1: grid[0] = all −1, δ = +1/8
    assert_eq!(&y[16..32], &[6.0 * -0.875; 16]);
    assert_eq!(y[255], 2.0 * -0.875);
}

#[test]
fn iq1_s_dot_by_hand() {
    // Weights as in iq1_s_block_by_hand, one block; activations d8 = 1/4, q8 = 1 on elements 0..7,
    // 0 elsewhere (bsums[0] = 8). Exact sum: 2.5·(Σ grid − 8/8)·d8 = 2.5·(−3 − 1)·0.25.
    let mut x = block(Iq1S, 0.5);
    x[2] = 0xdc;
    x[34..36].copy_from_slice(&(5u16 | (2 << 12) | 0x8000).to_le_bytes());
    let mut y = vec![0u8; 292];
    y[0..4].copy_from_slice(&0.25f32.to_le_bytes());
    y[4..12].fill(1);
    y[260..262].copy_from_slice(&8i16.to_le_bytes());
    assert_eq!(vec_dot(Iq1S, 256, &x, &y), Ok(-2.5));
}

#[test]
fn iq2_xxs_dot_by_hand() {
    // Weights as in iq2_xxs_block_by_hand; q8 = 1 on elements 0..7 and 24..31, d8 = 1: the dot is
    // the sum of those dequantized values, 0.875·(−43 + 6·8 − 8) + 8·(−7).
    let mut x = block(Iq2Xxs, 1.0);
    x[2] = 1;
    x[6..10].copy_from_slice(&(1u32 | (127 << 21) | (3 << 28)).to_le_bytes());
    let mut y = vec![0u8; 292];
    y[0..4].copy_from_slice(&1f32.to_le_bytes());
    y[4..12].fill(1);
    y[28..36].fill(1);
    assert_eq!(vec_dot(Iq2Xxs, 256, &x, &y), Ok(0.875 * -3.0 - 56.0));
}

#[test]
fn iq_vec_dot_types_and_quantizers_follow_ggml_cpu() {
    for t in [Iq2Xxs, Iq2Xs, Iq2S, Iq3Xxs, Iq3S, Iq1S, Iq1M] {
        assert_eq!(vec_dot_type(t), Q8K, "{}", t.name());
        assert!(can_dequantize(t), "{}", t.name());
        assert!(scalar_dot_fn(t).is_some(), "{}", t.name());
        // ggml-cpu has no from_float for these: nothing may be converted to them.
        let mut out = vec![0u8; t.type_size()];
        assert_eq!(
            quantize_row(t, &[0.0; 256], &mut out),
            Err(QuantError::Unsupported(t.name()))
        );
    }
}
