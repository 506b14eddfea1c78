//! llamafile's tinyBLAS arithmetic (`float::tiny_f32/f16/bf16`) for tiles of up to 4 weight rows × 4
//! activation columns: every row and column is converted to f32 once per tile instead of once per
//! pair, and a full tile runs its 16 independent 8-lane FMA chains side by side. Each output keeps
//! the pairwise kernel's bits: lane l sums elements l, l + 8, ... in order, then the same `hsum`.

use super::float::to_f32;
use crate::ggml::GgmlType;

const LANES: usize = 8;

/// Rows of F32, F16 or BF16 (`typ`) to f32, `k` elements each, into `out` (row after row): what
/// tinyBLAS's loads see. Converting once per row and matmul task instead of once per pair is most of
/// the speed; the FMAs are the same.
pub fn rows_to_f32(typ: GgmlType, rows: &[&[u8]], k: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(rows.len() * k, 0.0);
    let ts = typ.type_size();
    for (r, dst) in rows.iter().zip(out.chunks_exact_mut(k.max(1))) {
        to_f32(typ, &r[..(k * ts).min(r.len())], dst);
    }
}

/// `out[j * xs.len() + i] = tiny_blas(xs[i], ys[j])` for up to 4 rows and 4 columns already in f32
/// (`rows_to_f32`), all of one length that is a multiple of 8.
pub fn tile_f32(xs: &[&[f32]], ys: &[&[f32]], out: &mut [f32]) {
    let xr: Vec<&[[f32; LANES]]> = xs.iter().map(|x| x.as_chunks().0).collect();
    let yr: Vec<&[[f32; LANES]]> = ys.iter().map(|y| y.as_chunks().0).collect();
    if let (Ok(x4), Ok(y4)) = (<[_; 4]>::try_from(&xr[..]), <[_; 4]>::try_from(&yr[..])) {
        let acc = block4(&x4, &y4);
        for (j, accs) in acc.iter().enumerate() {
            for (i, a) in accs.iter().enumerate() {
                out[j * 4 + i] = hsum(a);
            }
        }
        return;
    }
    for (j, y) in yr.iter().enumerate() {
        for (i, x) in xr.iter().enumerate() {
            out[j * xs.len() + i] = hsum(&block(&[*x], &[*y])[0][0]);
        }
    }
}

/// The `R × C` accumulators, `acc[j][i]` for row i and column j, each over all chunks in order.
#[inline(always)]
fn block<const R: usize, const C: usize>(
    xs: &[&[[f32; LANES]]; R],
    ys: &[&[[f32; LANES]]; C],
) -> [[[f32; LANES]; R]; C] {
    let mut acc = [[[0f32; LANES]; R]; C];
    let chunks = xs.iter().chain(ys).map(|r| r.len()).min().unwrap_or(0);
    for k in 0..chunks {
        for (accs, y) in acc.iter_mut().zip(ys) {
            for (a, x) in accs.iter_mut().zip(xs) {
                for l in 0..LANES {
                    a[l] = x[k][l].mul_add(y[k][l], a[l]);
                }
            }
        }
    }
    acc
}

/// `block::<4, 4>` in sixteen ymm accumulators (LLVM kept the portable one's in memory).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
fn block4(xs: &[&[[f32; LANES]]; 4], ys: &[&[[f32; LANES]]; 4]) -> [[[f32; LANES]; 4]; 4] {
    // SAFETY: avx2 and fma are compile-time target features here (cfg above).
    unsafe { block4_avx2(xs, ys) }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[target_feature(enable = "avx2,fma")]
fn block4_avx2(xs: &[&[[f32; LANES]]; 4], ys: &[&[[f32; LANES]]; 4]) -> [[[f32; LANES]; 4]; 4] {
    use std::arch::x86_64::_mm256_storeu_ps;
    use std::arch::x86_64::{__m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps};
    let n = xs.iter().chain(ys).map(|r| r.len()).min().unwrap_or(0);
    let mut acc: [[__m256; 4]; 4] = [[_mm256_setzero_ps(); 4]; 4];
    for k in 0..n {
        // SAFETY: each load reads the 8 f32s of one `[f32; 8]` chunk (k < every row's length).
        let y: [__m256; 4] = std::array::from_fn(|j| unsafe { _mm256_loadu_ps(ys[j][k].as_ptr()) });
        for (i, x) in xs.iter().enumerate() {
            // SAFETY: as above.
            let x = unsafe { _mm256_loadu_ps(x[k].as_ptr()) };
            for (a, y) in acc.iter_mut().zip(&y) {
                a[i] = _mm256_fmadd_ps(x, *y, a[i]);
            }
        }
    }
    let mut out = [[[0f32; LANES]; 4]; 4];
    for (o, a) in out.iter_mut().zip(&acc) {
        for (o, a) in o.iter_mut().zip(a) {
            // SAFETY: the store writes exactly the 8 f32s of `o`.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *a) };
        }
    }
    out
}

#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
)))]
fn block4(xs: &[&[[f32; LANES]]; 4], ys: &[&[[f32; LANES]]; 4]) -> [[[f32; LANES]; 4]; 4] {
    block(xs, ys)
}

/// tinyBLAS's `hsum` of 8 lanes: halves, then pairs.
#[inline(always)]
fn hsum(acc: &[f32; LANES]) -> f32 {
    let r: [f32; 4] = std::array::from_fn(|i| acc[4 + i] + acc[i]);
    (r[0] + r[2]) + (r[1] + r[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::testdata::random_row;
    use crate::testkit::Rng;

    /// Every tile shape, every float type, K of 8 to 264: the pairwise kernel's bits.
    #[test]
    fn tiles_match_the_pairwise_kernel() {
        let mut rng = Rng::new(3);
        for typ in [GgmlType::F32, GgmlType::F16, GgmlType::Bf16] {
            let pair = crate::quant::tiny_blas_fn(typ).expect("tinyBLAS kernel");
            for k in [8, 64, 264] {
                let rows: Vec<Vec<u8>> = (0..4).map(|_| random_row(typ, k, &mut rng)).collect();
                let cols: Vec<Vec<u8>> = (0..4).map(|_| random_row(typ, k, &mut rng)).collect();
                let (mut xf, mut yf) = (Vec::new(), Vec::new());
                rows_to_f32(
                    typ,
                    &rows.iter().map(|r| &r[..]).collect::<Vec<_>>(),
                    k,
                    &mut xf,
                );
                rows_to_f32(
                    typ,
                    &cols.iter().map(|r| &r[..]).collect::<Vec<_>>(),
                    k,
                    &mut yf,
                );
                for (nx, ny) in [(4, 4), (1, 1), (3, 4), (4, 2), (2, 3)] {
                    let xs: Vec<&[f32]> = xf.chunks_exact(k).take(nx).collect();
                    let ys: Vec<&[f32]> = yf.chunks_exact(k).take(ny).collect();
                    let mut out = vec![0f32; nx * ny];
                    tile_f32(&xs, &ys, &mut out);
                    for j in 0..ny {
                        for i in 0..nx {
                            let want = pair(&rows[i], &cols[j]);
                            assert_eq!(
                                out[j * nx + i].to_bits(),
                                want.to_bits(),
                                "{typ:?} K={k} {nx}x{ny} ({i},{j})"
                            );
                        }
                    }
                }
            }
        }
    }
}
