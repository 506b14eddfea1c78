//! Test data shared by the codec and kernel tests: random rows of any supported type.

use super::f16_bytes;
use crate::ggml::GgmlType;
use crate::testkit::Rng;

/// Every type `dequantize_row` supports.
pub const DEQUANT_TYPES: [GgmlType; 24] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Q8K,
    GgmlType::Iq4Nl,
    GgmlType::Iq4Xs,
    GgmlType::Iq2Xxs,
    GgmlType::Iq2Xs,
    GgmlType::Iq2S,
    GgmlType::Iq3Xxs,
    GgmlType::Iq3S,
    GgmlType::Iq1S,
    GgmlType::Iq1M,
    GgmlType::Mxfp4,
];

/// Every weight type with a dot product.
pub const WEIGHT_TYPES: [GgmlType; 23] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Iq4Nl,
    GgmlType::Iq4Xs,
    GgmlType::Iq2Xxs,
    GgmlType::Iq2Xs,
    GgmlType::Iq2S,
    GgmlType::Iq3Xxs,
    GgmlType::Iq3S,
    GgmlType::Iq1S,
    GgmlType::Iq1M,
    GgmlType::Mxfp4,
];

/// A row of `n` elements of `typ` with values of magnitude about 1: float types from uniform values,
/// block types from random bytes whose scale fields are set to sane values (f16 scales in
/// [0.005, 0.05), MXFP4 exponents around 2^-4), so every bit pattern of the quants is exercised.
pub fn random_row(typ: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    use GgmlType::*;
    let size = typ.row_size(n).expect("whole blocks");
    if !typ.is_quantized() {
        let vals = rng.vec(n, -1.0, 1.0);
        let mut out = vec![0u8; size];
        super::quantize_row(typ, &vals, &mut out).expect("float row");
        return out;
    }
    let mut out: Vec<u8> = (0..size).map(|_| rng.next_u64() as u8).collect();
    let ts = typ.type_size();
    for b in out.chunks_exact_mut(ts) {
        let mut scale = |off: usize, rng: &mut Rng| {
            b[off..off + 2].copy_from_slice(&f16_bytes(rng.uniform(0.005, 0.05)));
        };
        match typ {
            Q4_0 | Q5_0 | Q8_0 | Iq4Nl | Iq4Xs => scale(0, rng),
            Iq2Xxs | Iq2Xs | Iq2S | Iq3Xxs | Iq3S | Iq1S => scale(0, rng),
            Iq1M => {
                // d's f16 bits are the top nibbles of the four scale u16s (bytes 49, 51, 53, 55).
                let d = f16_bytes(rng.uniform(0.005, 0.05));
                let bits = u16::from_le_bytes(d);
                for k in 0..4 {
                    let hi = &mut b[49 + 2 * k];
                    *hi = (*hi & 0x0F) | ((((bits >> (4 * k)) & 0x0F) as u8) << 4);
                }
            }
            Q4_1 | Q5_1 => {
                scale(0, rng);
                let m = -rng.uniform(0.0, 0.5);
                b[2..4].copy_from_slice(&f16_bytes(m));
            }
            Q2K => {
                scale(80, rng);
                scale(82, rng);
            }
            Q3K => scale(108, rng),
            Q4K | Q5K => {
                scale(0, rng);
                scale(2, rng);
            }
            Q6K => scale(208, rng),
            Mxfp4 => b[0] = 120 + (rng.next_u64() % 8) as u8,
            Q8K => {
                b[0..4].copy_from_slice(&rng.uniform(0.001, 0.01).to_le_bytes());
                let sums: Vec<i16> = (0..16)
                    .map(|g| (0..16).map(|l| b[4 + 16 * g + l] as i8 as i16).sum())
                    .collect();
                for (g, s) in sums.iter().enumerate() {
                    b[260 + 2 * g..262 + 2 * g].copy_from_slice(&s.to_le_bytes());
                }
            }
            _ => panic!("no random rows for {}", typ.name()),
        }
    }
    out
}

/// Dequantizes a row, including Q8_1 (which ggml cannot dequantize: value = d·q).
pub fn dequant(typ: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    if typ == GgmlType::Q8_1 {
        for (b, y) in bytes.chunks_exact(36).zip(out.chunks_exact_mut(32)) {
            let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            for j in 0..32 {
                y[j] = d * b[4 + j] as i8 as f32;
            }
        }
        return out;
    }
    super::dequantize_row(typ, bytes, &mut out).expect("dequantize");
    out
}
