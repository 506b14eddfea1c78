//! K-quants (256-element super-blocks): layouts, scale unpacking and `dequantize_row_q{2..6}_K`.
//!
//! Q2_K (84 B): scales[16] @0 (low nibble scale, high nibble min), qs[64] @16, d @80, dmin @82.
//! Q3_K (110 B): hmask[32] @0, qs[64] @32, scales[12] @96 (sixteen 6-bit), d @108.
//! Q4_K (144 B): d @0, dmin @2, scales[12] @4 (eight 6-bit scale/min pairs), qs[128] @16.
//! Q5_K (176 B): d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48.
//! Q6_K (210 B): ql[128] @0, qh[64] @128, scales[16] i8 @192, d @208.

use super::f16_at;

pub(super) const QK_K: usize = 256;

/// The eight 6-bit scale/min pairs of a Q4_K/Q5_K block as four u32 whose bytes are scales 0..7
/// then mins 0..7 (ggml's `utmp` unpacking; equal to `get_scale_min_k4` for every pair).
#[inline(always)]
pub(super) fn k4_packed(s: &[u8; 12]) -> [u32; 4] {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let u0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let u1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let u2 = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    [
        u0 & KMASK1,
        (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4),
        u1 & KMASK1,
        ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4),
    ]
}

/// (scales, mins) of a Q4_K/Q5_K block.
#[inline(always)]
pub(super) fn scale_min_k4(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let p = k4_packed(s);
    let (a, b, c, d) = (
        p[0].to_le_bytes(),
        p[1].to_le_bytes(),
        p[2].to_le_bytes(),
        p[3].to_le_bytes(),
    );
    (
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]],
        [c[0], c[1], c[2], c[3], d[0], d[1], d[2], d[3]],
    )
}

/// The sixteen 6-bit Q3_K scales, already minus 32.
#[inline(always)]
pub(super) fn scales_q3_k(s: &[u8; 12]) -> [i32; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let a0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let a1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let tmp = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    std::array::from_fn(|k| (aux[k / 4].to_le_bytes()[k % 4] as i8) as i32 - 32)
}

/// A 12-byte scale field starting at `OFF`.
#[inline(always)]
pub(super) fn scale_bytes<const OFF: usize, const B: usize>(b: &[u8; B]) -> [u8; 12] {
    std::array::from_fn(|i| b[OFF + i])
}

pub(super) fn dequant_q2_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<84>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK_K>().0)
    {
        let d = f16_at(b[80], b[81]);
        let min = f16_at(b[82], b[83]);
        for e in 0..QK_K {
            let (half, shift, l) = (e / 128, (e / 32) % 4, e % 32);
            let sc = b[e / 16];
            let q = (b[16 + 32 * half + l] >> (2 * shift)) & 3;
            let dl = d * (sc & 0x0F) as f32;
            let ml = min * (sc >> 4) as f32;
            y[e] = dl * q as f32 - ml;
        }
    }
}

pub(super) fn dequant_q3_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<110>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK_K>().0)
    {
        let d_all = f16_at(b[108], b[109]);
        let sc = scales_q3_k(&scale_bytes::<96, 110>(b));
        for e in 0..QK_K {
            let (half, shift, l) = (e / 128, (e / 32) % 4, e % 32);
            let q = ((b[32 + 32 * half + l] >> (2 * shift)) & 3) as i32;
            let m = 4 * half + shift;
            let hi = if b[l] & (1 << m) != 0 { 0 } else { 4 };
            let dl = d_all * sc[e / 16] as f32;
            y[e] = dl * (q - hi) as f32;
        }
    }
}

pub(super) fn dequant_q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<144>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK_K>().0)
    {
        let d = f16_at(b[0], b[1]);
        let min = f16_at(b[2], b[3]);
        let (sc, mn) = scale_min_k4(&scale_bytes::<4, 144>(b));
        for c in 0..4 {
            let (d1, m1) = (d * sc[2 * c] as f32, min * mn[2 * c] as f32);
            let (d2, m2) = (d * sc[2 * c + 1] as f32, min * mn[2 * c + 1] as f32);
            for l in 0..32 {
                let q = b[16 + 32 * c + l];
                y[64 * c + l] = d1 * (q & 0x0F) as f32 - m1;
                y[64 * c + 32 + l] = d2 * (q >> 4) as f32 - m2;
            }
        }
    }
}

pub(super) fn dequant_q5_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<176>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK_K>().0)
    {
        let d = f16_at(b[0], b[1]);
        let min = f16_at(b[2], b[3]);
        let (sc, mn) = scale_min_k4(&scale_bytes::<4, 176>(b));
        for c in 0..4 {
            let (d1, m1) = (d * sc[2 * c] as f32, min * mn[2 * c] as f32);
            let (d2, m2) = (d * sc[2 * c + 1] as f32, min * mn[2 * c + 1] as f32);
            for l in 0..32 {
                let q = b[48 + 32 * c + l];
                let h = b[16 + l];
                let h1 = if h & (1 << (2 * c)) != 0 { 16 } else { 0 };
                let h2 = if h & (2 << (2 * c)) != 0 { 16 } else { 0 };
                y[64 * c + l] = d1 * ((q & 0x0F) + h1) as f32 - m1;
                y[64 * c + 32 + l] = d2 * ((q >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// The 256 Q6_K quants (minus 32) of a block, in element order.
#[inline(always)]
pub(super) fn unpack_q6_k(b: &[u8; 210]) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for h in 0..2 {
        for l in 0..32 {
            let ql0 = b[64 * h + l];
            let ql1 = b[64 * h + l + 32];
            let qh = b[128 + 32 * h + l];
            a[128 * h + l] = ((ql0 & 0x0F) | ((qh & 3) << 4)) as i8 - 32;
            a[128 * h + l + 32] = ((ql1 & 0x0F) | (((qh >> 2) & 3) << 4)) as i8 - 32;
            a[128 * h + l + 64] = ((ql0 >> 4) | (((qh >> 4) & 3) << 4)) as i8 - 32;
            a[128 * h + l + 96] = ((ql1 >> 4) | (((qh >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    a
}

pub(super) fn dequant_q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .as_chunks::<210>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<QK_K>().0)
    {
        let d = f16_at(b[208], b[209]);
        let a = unpack_q6_k(b);
        for e in 0..QK_K {
            let sc = b[192 + e / 16] as i8;
            y[e] = d * sc as f32 * a[e] as f32;
        }
    }
}
