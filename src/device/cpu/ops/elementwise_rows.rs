//! Row plumbing shared by the element-wise, copy and reduction families: checks that read like ggml's
//! asserts, source lookup, and a row driver that fills every destination row (in parallel when the
//! destination is packed and large enough), converting to the destination type on the way out.

use rayon::prelude::*;

use super::super::{Dst, Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Tensor};
use crate::quant;

/// Below this many destination elements a node runs on the calling thread.
const PAR_MIN_ELEMS: usize = 1 << 15;
/// Aim for at least this many elements per rayon task.
const PAR_TASK_ELEMS: usize = 1 << 12;
/// Rows of a strided destination are computed this many bytes at a time before being scattered.
const STRIDED_BLOCK_BYTES: usize = 1 << 20;

/// Source `k` of `node`, or an error naming it.
pub fn src_of(graph: &Graph, node: usize, k: usize) -> Result<&Tensor, String> {
    graph
        .src(node, k)
        .ok_or_else(|| format!("{}: missing source {k}", graph.tensors[node].op.name()))
}

/// `Err(msg)` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

/// Shape as `[a, b, c, d]` for messages.
pub fn shape(t: &Tensor) -> String {
    format!("{}{:?}", t.typ.name(), t.ne)
}

/// Rows of a quantized tensor must be whole blocks.
pub fn whole_blocks(t: &Tensor) -> bool {
    t.ne[0].is_multiple_of(t.typ.block_size())
}

/// Source `k` at run time (check already required it; this keeps `run` total).
pub fn src_at<'s, 'a>(
    src: &'s [Option<Src<'a>>; MAX_SRC],
    k: usize,
    op: &'static str,
) -> Result<&'s Src<'a>, DeviceError> {
    src[k]
        .as_ref()
        .ok_or_else(|| DeviceError::op(op, format!("missing source {k}")))
}

/// `(i1, i2, i3)` of row `r` as an array.
#[inline]
pub fn row_index(t: &Tensor, r: usize) -> [usize; 3] {
    let (i1, i2, i3) = access::unravel_row(t, r);
    [i1, i2, i3]
}

/// Calls `f(state, r, [i1, i2, i3], packed)` for every row `r` of `dst`; `f` fills `packed` with the
/// row in dst's type, elements (blocks) adjacent. Rows of a packed destination are written in place;
/// otherwise they are computed a block at a time and scattered through the strides. Large
/// destinations are computed in parallel either way.
pub fn for_each_row<S, I, F>(dst: Dst<'_>, init: I, f: F) -> Result<(), DeviceError>
where
    S: Send,
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, usize, [usize; 3], &mut [u8]) -> Result<(), DeviceError> + Sync + Send,
{
    let t = dst.t;
    let op = t.op.name();
    if t.nelements() == 0 {
        return Ok(());
    }
    let row_bytes = t
        .typ
        .row_size(t.ne[0])
        .ok_or_else(|| DeviceError::op(op, "row is not a whole number of blocks"))?;
    let nrows = t.nrows();
    if t.is_contiguous() {
        let data = row_bytes
            .checked_mul(nrows)
            .and_then(|n| dst.data.get_mut(..n))
            .ok_or_else(|| DeviceError::op(op, "destination shorter than its shape"))?;
        if t.nelements() >= PAR_MIN_ELEMS && nrows > 1 {
            let min_len = (PAR_TASK_ELEMS / t.ne[0]).max(1);
            return data
                .par_chunks_mut(row_bytes)
                .enumerate()
                .with_min_len(min_len)
                .try_for_each_init(&init, |s, (r, row)| f(s, r, row_index(t, r), row));
        }
        let mut s = init();
        for (r, row) in data.chunks_mut(row_bytes).enumerate() {
            f(&mut s, r, row_index(t, r), row)?;
        }
        return Ok(());
    }
    // Strided destination: compute blocks of rows (in parallel when large), then scatter each row
    // through nb[0]; memory stays bounded by one block.
    let block_rows = (STRIDED_BLOCK_BYTES / row_bytes).clamp(1, nrows);
    let par = t.nelements() >= PAR_MIN_ELEMS && nrows > 1;
    let mut packed = vec![0u8; block_rows * row_bytes];
    let mut serial = init();
    let unit = t.typ.type_size();
    for r0 in (0..nrows).step_by(block_rows) {
        let n = block_rows.min(nrows - r0);
        let block = &mut packed[..n * row_bytes];
        if par {
            block
                .par_chunks_mut(row_bytes)
                .enumerate()
                .with_min_len((PAR_TASK_ELEMS / t.ne[0]).max(1))
                .try_for_each_init(&init, |s, (j, row)| f(s, r0 + j, row_index(t, r0 + j), row))?;
        } else {
            for (j, row) in block.chunks_mut(row_bytes).enumerate() {
                f(&mut serial, r0 + j, row_index(t, r0 + j), row)?;
            }
        }
        for (j, row) in block.chunks(row_bytes).enumerate() {
            let [i1, i2, i3] = row_index(t, r0 + j);
            let base = access::row_offset(t, i1, i2, i3);
            for (k, u) in row.chunks_exact(unit).enumerate() {
                let off = base + k * t.nb[0];
                dst.data
                    .get_mut(off..off + unit)
                    .ok_or_else(|| DeviceError::op(op, "row outside destination"))?
                    .copy_from_slice(u);
            }
        }
    }
    Ok(())
}

/// Like [`for_each_row`] with rows computed as f32 and converted to dst's type (ggml's rounding).
pub fn map_rows<S, I, F>(dst: Dst<'_>, init: I, f: F) -> Result<(), DeviceError>
where
    S: Send,
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, usize, [usize; 3], &mut [f32]) -> Result<(), DeviceError> + Sync + Send,
{
    let typ = dst.t.typ;
    let ne0 = dst.t.ne[0];
    for_each_row(
        dst,
        || (init(), vec![0f32; ne0]),
        |(s, vals), r, idx, bytes| {
            f(s, r, idx, vals)?;
            encode_row(typ, vals, bytes)
        },
    )
}

/// Like [`map_rows`] for an I32 destination.
pub fn map_rows_i32<S, I, F>(dst: Dst<'_>, init: I, f: F) -> Result<(), DeviceError>
where
    S: Send,
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, usize, [usize; 3], &mut [i32]) -> Result<(), DeviceError> + Sync + Send,
{
    let ne0 = dst.t.ne[0];
    for_each_row(
        dst,
        || (init(), vec![0i32; ne0]),
        |(s, vals), r, idx, bytes| {
            f(s, r, idx, vals)?;
            for (c, v) in bytes.chunks_exact_mut(4).zip(vals.iter()) {
                c.copy_from_slice(&v.to_le_bytes());
            }
            Ok(())
        },
    )
}

/// Converts `vals` into a packed row of `typ` (`bytes.len() == typ.row_size(vals.len())`).
pub fn encode_row(typ: GgmlType, vals: &[f32], bytes: &mut [u8]) -> Result<(), DeviceError> {
    match typ {
        GgmlType::F32 => {
            for (c, v) in bytes.chunks_exact_mut(4).zip(vals) {
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        t if t.is_quantized() => {
            // ggml-cpu's `from_float` (x86 rounding for Q8_0/Q8_1).
            quant::quantize_row_for_dot(t, vals, bytes)
                .map_err(|e| DeviceError::op("quantize", e.to_string()))?;
        }
        t => {
            let ts = t.type_size();
            if bytes.len() < vals.len() * ts {
                return Err(DeviceError::op("encode_row", "row buffer too short"));
            }
            for (i, &v) in vals.iter().enumerate() {
                access::store(t, bytes, i * ts, v);
            }
        }
    }
    Ok(())
}

/// Copies row `(i1, i2, i3)` of `t` into `out` as packed units (elements, or blocks when quantized).
pub fn read_row_bytes(
    t: &Tensor,
    data: &[u8],
    idx: [usize; 3],
    out: &mut [u8],
) -> Result<(), DeviceError> {
    let unit = t.typ.type_size();
    let base = access::row_offset(t, idx[0], idx[1], idx[2]);
    let oob = || DeviceError::op("read_row", "row outside tensor");
    if t.nb[0] == unit || out.len() <= unit {
        out.copy_from_slice(data.get(base..base + out.len()).ok_or_else(oob)?);
        return Ok(());
    }
    for (j, u) in out.chunks_exact_mut(unit).enumerate() {
        let off = base + j * t.nb[0];
        u.copy_from_slice(data.get(off..off + unit).ok_or_else(oob)?);
    }
    Ok(())
}

/// Reads row `idx` of a source as f32 (dequantizing).
#[inline]
pub fn read_row(s: &Src<'_>, idx: [usize; 3], out: &mut [f32]) -> Result<(), DeviceError> {
    access::read_row(s.t, s.data, idx[0], idx[1], idx[2], out)
}

/// Reads one i32 at byte offset `off`, failing cleanly outside `data`.
pub fn load_i32_checked(data: &[u8], off: usize) -> Option<i32> {
    let b = data.get(off..off.checked_add(4)?)?;
    Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads one i64 at byte offset `off`, failing cleanly outside `data`.
pub fn load_i64_checked(data: &[u8], off: usize) -> Option<i64> {
    let b = data.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(i64::from_le_bytes(a))
}
