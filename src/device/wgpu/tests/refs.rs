//! Test-side references: random quantized blocks with an independent Rust dequantizer (written from
//! ggml's `dequantize_row_*`), and f64 references of the ops the kernel tests cover. When the crate's
//! own `quant` codec supports a type, the dequantizer is checked against it too.

use half::f16;

use crate::device::host_kernels::testkit::{HostTensor, Rng};
use crate::ggml::{GgmlType, Tensor};

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

fn get_f16(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Random bytes for `nblocks` blocks of `typ`, with sane scales (random bytes elsewhere).
pub fn random_blocks(typ: GgmlType, nblocks: usize, rng: &mut Rng) -> Vec<u8> {
    let bs = typ.type_size();
    let mut b: Vec<u8> = (0..bs * nblocks).map(|_| rng.next_u64() as u8).collect();
    for k in 0..nblocks {
        let o = k * bs;
        match typ {
            GgmlType::Q8_0 | GgmlType::Q5_0 | GgmlType::Q4_0 => {
                put_f16(&mut b, o, rng.uniform(-0.05, 0.05))
            }
            GgmlType::Q6K => put_f16(&mut b, o + 208, rng.uniform(-0.01, 0.01)),
            GgmlType::Q4_1 | GgmlType::Q5_1 => {
                put_f16(&mut b, o, rng.uniform(0.0, 0.05));
                put_f16(&mut b, o + 2, rng.uniform(-0.05, 0.05));
            }
            GgmlType::Q4K | GgmlType::Q5K => {
                put_f16(&mut b, o, rng.uniform(0.0, 0.01));
                put_f16(&mut b, o + 2, rng.uniform(0.0, 0.01));
            }
            GgmlType::Q2K => {
                put_f16(&mut b, o + 80, rng.uniform(0.0, 0.01));
                put_f16(&mut b, o + 82, rng.uniform(0.0, 0.01));
            }
            GgmlType::Q3K => put_f16(&mut b, o + 108, rng.uniform(-0.01, 0.01)),
            _ => panic!("no generator for {}", typ.name()),
        }
    }
    b
}

fn q4k_scale_min(s: &[u8], j: usize) -> (f32, f32) {
    if j < 4 {
        ((s[j] & 63) as f32, (s[j + 4] & 63) as f32)
    } else {
        let d = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        let m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        (d as f32, m as f32)
    }
}

/// Dequantizes one row of a block type.
pub fn dequant_row(typ: GgmlType, b: &[u8], out: &mut [f32]) {
    let bs = typ.type_size();
    let be = typ.block_size();
    for (k, (blk, y)) in b.chunks_exact(bs).zip(out.chunks_exact_mut(be)).enumerate() {
        let _ = k;
        match typ {
            GgmlType::Q8_0 => {
                let d = get_f16(blk, 0);
                for j in 0..32 {
                    y[j] = d * (blk[2 + j] as i8) as f32;
                }
            }
            GgmlType::Q4_0 => {
                let d = get_f16(blk, 0);
                for j in 0..16 {
                    y[j] = d * ((blk[2 + j] & 0xf) as f32 - 8.0);
                    y[j + 16] = d * ((blk[2 + j] >> 4) as f32 - 8.0);
                }
            }
            GgmlType::Q5_0 => {
                let d = get_f16(blk, 0);
                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                for j in 0..16 {
                    let xh0 = ((qh >> j) << 4) & 0x10;
                    let xh1 = (qh >> (j + 12)) & 0x10;
                    let x0 = ((blk[6 + j] & 0xf) as u32 | xh0) as i32 - 16;
                    let x1 = ((blk[6 + j] >> 4) as u32 | xh1) as i32 - 16;
                    y[j] = x0 as f32 * d;
                    y[j + 16] = x1 as f32 * d;
                }
            }
            GgmlType::Q4K => {
                let (d, dmin) = (get_f16(blk, 0), get_f16(blk, 2));
                let (sc, qs) = (&blk[4..16], &blk[16..144]);
                for p in 0..4 {
                    let (d1, m1) = q4k_scale_min(sc, 2 * p);
                    let (d2, m2) = q4k_scale_min(sc, 2 * p + 1);
                    for l in 0..32 {
                        let q = qs[32 * p + l];
                        y[64 * p + l] = d * d1 * (q & 0xf) as f32 - dmin * m1;
                        y[64 * p + 32 + l] = d * d2 * (q >> 4) as f32 - dmin * m2;
                    }
                }
            }
            GgmlType::Q6K => {
                let d = get_f16(blk, 208);
                for n in 0..2 {
                    let ql = &blk[64 * n..];
                    let qh = &blk[128 + 32 * n..];
                    let sc = &blk[192 + 8 * n..];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        let y = &mut y[128 * n..];
                        y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                }
            }
            // The rest: the crate's codec (itself tested against ggml's formats).
            _ => crate::quant::dequantize_row(typ, blk, y).unwrap(),
        }
    }
}

/// A random contiguous tensor of any tested type and its values as the reference sees them.
pub fn random_tensor(typ: GgmlType, ne: [usize; 4], rng: &mut Rng) -> (HostTensor, Vec<f32>) {
    if !typ.is_quantized() {
        let vals = rng.vec(ne.iter().product(), -1.0, 1.0);
        let h = HostTensor::from_f32(typ, ne, &vals);
        let seen = h.to_f32();
        return (h, seen);
    }
    let t = Tensor::new(typ, ne);
    let rows = t.nrows();
    let bytes = random_blocks(typ, rows * ne[0] / typ.block_size(), rng);
    let mut vals = vec![0f32; rows * ne[0]];
    let rs = typ.row_size(ne[0]).unwrap();
    for (r, out) in vals.chunks_exact_mut(ne[0]).enumerate() {
        dequant_row(typ, &bytes[r * rs..(r + 1) * rs], out);
    }
    (HostTensor { t, bytes }, vals)
}

/// Asserts `got` is within `tol * (1 + |want|)` of `want`, naming the first mismatch.
pub fn close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    crate::testkit::assert_close(got, want, tol, what);
}

/// Asserts `got` and the CPU device's `cpu` are the same bits, counting the elements that differ.
pub fn same_bits(got: &[f32], cpu: &[f32], what: &str) {
    let diff = got
        .iter()
        .zip(cpu)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(got.len(), cpu.len(), "{what}: lengths differ");
    assert_eq!(
        diff,
        0,
        "{what}: {diff} of {} differ from the CPU device",
        got.len()
    );
}

#[test]
fn reference_dequantizer_matches_the_crate_codec() {
    let mut rng = Rng::new(7);
    for typ in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K] {
        let b = random_blocks(typ, 2, &mut rng);
        let n = 2 * typ.block_size();
        let mut ours = vec![0f32; n];
        dequant_row(typ, &b, &mut ours);
        let mut theirs = vec![0f32; n];
        crate::quant::dequantize_row(typ, &b, &mut theirs).unwrap();
        assert_eq!(ours, theirs, "{}", typ.name());
    }
}
