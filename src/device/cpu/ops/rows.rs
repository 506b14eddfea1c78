//! Helpers shared by the row-wise families (norm, rope, softmax, attention): parallel computation of a
//! destination row by row, source lookup, and ggml's ALiBi slopes.

use rayon::prelude::*;

use super::{Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, MAX_SRC, Tensor};

/// Source `k` of a node, or an op error naming the missing slot.
pub fn src<'a, 'b>(
    srcs: &'b [Option<Src<'a>>; MAX_SRC],
    k: usize,
    op: &'static str,
) -> Result<&'b Src<'a>, DeviceError> {
    srcs[k]
        .as_ref()
        .ok_or_else(|| DeviceError::op(op, format!("missing source {k}")))
}

/// Computes every row of `dst` in parallel: `f(r, out)` fills logical row `r` (rows in i1, i2, i3 order)
/// as f32 and the result is stored with `dst`'s type and strides. `work_per_row` (a rough cost in
/// element operations) sets how many rows one task takes.
pub fn par_rows<F>(
    dst: &Tensor,
    data: &mut [u8],
    work_per_row: usize,
    f: F,
) -> Result<(), DeviceError>
where
    F: Fn(usize, &mut [f32]) -> Result<(), DeviceError> + Sync,
{
    let ne0 = dst.ne[0];
    let nrows = dst.nrows();
    if ne0 == 0 || nrows == 0 {
        return Ok(());
    }
    let min_len = (1 << 15) / work_per_row.max(1);
    let min_len = min_len.max(1);
    let ts = dst.typ.type_size();
    let packed = access::is_scalar_float(dst.typ)
        && dst.is_contiguous()
        && Some(data.len()) == ne0.checked_mul(ts).and_then(|b| b.checked_mul(nrows));
    if packed {
        let typ = dst.typ;
        return data
            .par_chunks_mut(ne0 * ts)
            .with_min_len(min_len)
            .enumerate()
            .try_for_each_init(
                || vec![0f32; ne0],
                |buf, (r, bytes)| {
                    f(r, buf)?;
                    encode(typ, buf, bytes);
                    Ok(())
                },
            );
    }
    // Strided destination: compute blocks of rows in parallel, then store them (bounded memory).
    let block = (BLOCK_ELEMS / ne0).max(1);
    let mut vals = vec![0f32; ne0 * block.min(nrows)];
    for r0 in (0..nrows).step_by(block) {
        let n = block.min(nrows - r0);
        let vals = &mut vals[..n * ne0];
        vals.par_chunks_mut(ne0)
            .with_min_len(min_len)
            .enumerate()
            .try_for_each(|(r, row)| f(r0 + r, row))?;
        for (r, row) in vals.chunks_exact(ne0).enumerate() {
            let (i1, i2, i3) = access::unravel_row(dst, r0 + r);
            access::write_row(dst, data, i1, i2, i3, row)?;
        }
    }
    Ok(())
}

/// Elements per block of a strided destination.
const BLOCK_ELEMS: usize = 1 << 20;

/// Packs f32 values into a contiguous row of a scalar float type.
fn encode(typ: GgmlType, vals: &[f32], bytes: &mut [u8]) {
    match typ {
        GgmlType::F32 => {
            for (c, v) in bytes.chunks_exact_mut(4).zip(vals) {
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        _ => {
            let ts = typ.type_size();
            for (i, &v) in vals.iter().enumerate() {
                access::store(typ, bytes, i * ts, v);
            }
        }
    }
}

/// ggml's `MAX(a, b)` macro (`a > b ? a : b`), whose NaN behaviour differs from `f32::max`.
#[inline]
pub fn cmax(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// ggml's `MIN(a, b)` macro (`a < b ? a : b`).
#[inline]
pub fn cmin(a: f32, b: f32) -> f32 {
    if a < b { a } else { b }
}

/// ALiBi slopes as ggml's SOFT_MAX and FLASH_ATTN_EXT compute them from `max_bias` and the head count.
#[derive(Clone, Copy, Debug)]
pub struct Alibi {
    max_bias: f32,
    n_head_log2: u32,
    m0: f32,
    m1: f32,
}

impl Alibi {
    pub fn new(max_bias: f32, n_head: usize) -> Self {
        let n_head = n_head as u32;
        // `1u << floor(log2(n_head))`; log2(0) = -inf saturates to 0 here.
        let n_head_log2 = 1u32 << ((n_head as f64).log2().floor() as u32).min(31);
        let m0 = 2f32.powf(-max_bias / n_head_log2 as f32);
        let m1 = 2f32.powf(-(max_bias / 2.0) / n_head_log2 as f32);
        Alibi {
            max_bias,
            n_head_log2,
            m0,
            m1,
        }
    }

    /// The slope of head `h` (1 when ALiBi is off).
    pub fn slope(&self, h: usize) -> f32 {
        if self.max_bias <= 0.0 || self.max_bias.is_nan() {
            return 1.0;
        }
        let h = h as u32;
        if h < self.n_head_log2 {
            self.m0.powf((h + 1) as f32)
        } else {
            let e = 2u32.wrapping_mul(h - self.n_head_log2).wrapping_add(1);
            self.m1.powf(e as f32)
        }
    }
}

/// Checks that a tensor of `typ` is one of `allowed`, naming it in the error.
pub fn want_type(what: &str, typ: GgmlType, allowed: &[GgmlType]) -> Result<(), String> {
    if allowed.contains(&typ) {
        Ok(())
    } else {
        Err(format!("{what}: type {} is not supported", typ.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alibi_slopes_follow_ggml() {
        // 8 heads, max_bias 8: m0 = 2^-1, slopes 2^-1 .. 2^-8.
        let a = Alibi::new(8.0, 8);
        for h in 0..8 {
            assert_eq!(a.slope(h), 0.5f32.powi(h as i32 + 1));
        }
        // 6 heads: n_head_log2 = 4; heads 4, 5 use m1 = 2^-1 with odd powers 1, 3.
        let a = Alibi::new(8.0, 6);
        assert_eq!(a.slope(3), 2f32.powf(-2.0).powf(4.0));
        assert_eq!(a.slope(4), 2f32.powf(-1.0));
        assert_eq!(a.slope(5), 2f32.powf(-1.0).powf(3.0));
        assert_eq!(Alibi::new(0.0, 6).slope(5), 1.0);
    }

    #[test]
    fn strided_destination_in_several_blocks() {
        use crate::device::cpu::ops::testutil::HostTensor;
        // More rows than one block holds, into a transposed f32 view and a packed f16 tensor.
        let ne = [3, BLOCK_ELEMS / 3 + 5, 1, 1];
        for mut d in [
            HostTensor::zeros(GgmlType::F32, ne).permuted([1, 0, 2, 3]),
            HostTensor::zeros(GgmlType::F16, ne),
        ] {
            par_rows(&d.t, &mut d.bytes, 3, |r, y| {
                for (i, v) in y.iter_mut().enumerate() {
                    *v = ((r * 3 + i) % 2048) as f32;
                }
                Ok(())
            })
            .unwrap();
            let got = d.to_f32();
            assert!(got.iter().enumerate().all(|(i, &v)| v == (i % 2048) as f32));
        }
    }
}
