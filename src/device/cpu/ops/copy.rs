//! Copies and layout ops: DUP/CPY/CONT (type conversion, quantize, dequantize, reshaping copies),
//! SET_ROWS, CONCAT, REPEAT, PAD, SET and ACC.
//!
//! DUP/CPY/CONT follow ggml_cpy: element k of the source in logical order (i0 fastest) becomes element
//! k of the destination in its logical order, whatever the two shapes and strides.

#[path = "copy_layout.rs"]
mod layout;

use super::elementwise::rows::{
    self, ensure, for_each_row, map_rows, read_row, shape, src_at, src_of, whole_blocks,
};
use super::{Dst, Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op, Tensor};

use GgmlType::{Bf16, F16, F32, I32};

/// Whether a CPY or SET_ROWS may quantize into block type `t`: every type with a quantizer
/// (ggml-cpu refuses only the IQ1/IQ2/IQ3 types, which lack `from_float`).
pub(super) fn can_quantize(t: GgmlType) -> bool {
    t.is_quantized() && crate::quant::quantize_row(t, &[], &mut []).is_ok()
}

fn is_float(t: GgmlType) -> bool {
    matches!(t, F32 | F16 | Bf16)
}

/// Whether ggml's dup can convert `s` into `d`.
fn copy_types_ok(s: &Tensor, d: &Tensor) -> bool {
    match (s.typ, d.typ) {
        (a, b) if a == b => !a.is_quantized() || (whole_blocks(s) && whole_blocks(d)),
        (a, b) if is_float(a) && is_float(b) => true,
        (F32, I32) | (I32, F32) => true,
        (a, q) if is_float(a) && can_quantize(q) => whole_blocks(d),
        (q, F32) => q.is_quantized() && whole_blocks(s),
        _ => false,
    }
}

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let s0 = src_of(graph, node, 0)?;
    match d.op {
        Op::Dup | Op::Cpy | Op::Cont => {
            ensure(s0.nelements() == d.nelements(), || {
                format!(
                    "{op}: {} and {} differ in element count",
                    shape(s0),
                    shape(d)
                )
            })?;
            ensure(copy_types_ok(s0, d), || {
                format!("{op}: cannot convert {} to {}", shape(s0), shape(d))
            })
        }
        Op::SetRows => layout::check_set_rows(graph, node),
        Op::Concat => layout::check_concat(graph, node),
        Op::Repeat => {
            ensure(s0.typ == d.typ && !d.typ.is_quantized(), || {
                format!(
                    "{op}: unsupported types {} -> {}",
                    s0.typ.name(),
                    d.typ.name()
                )
            })?;
            ensure(super::elementwise::can_repeat(s0, d), || {
                format!("{op}: {} does not tile {}", shape(s0), shape(d))
            })
        }
        Op::Pad => layout::check_pad(d, s0),
        Op::Set | Op::Acc => layout::check_set_acc(graph, node),
        _ => Err(format!("{op} is not a copy op")),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let s0 = src_at(src, 0, op)?;
    match dst.t.op {
        Op::Dup | Op::Cpy | Op::Cont if s0.t.typ == dst.t.typ => copy_units(s0, dst),
        Op::Dup | Op::Cpy | Op::Cont => convert(s0, dst),
        Op::SetRows => layout::set_rows(s0, src_at(src, 1, op)?, dst),
        Op::Concat => layout::concat(s0, src_at(src, 1, op)?, dst),
        Op::Repeat => layout::repeat(s0, dst),
        Op::Pad => layout::pad(s0, dst),
        Op::Set | Op::Acc => layout::set_acc(s0, src_at(src, 1, op)?, dst),
        _ => Err(DeviceError::op(op, "not a copy op")),
    }
}

/// Walks the logical range `[k0, k0 + len)` of a tensor with `per_row` units per row as pieces
/// `(row, first unit in row, count, position in range)`.
fn segments(
    per_row: usize,
    k0: usize,
    len: usize,
    mut f: impl FnMut(usize, usize, usize, usize) -> Result<(), DeviceError>,
) -> Result<(), DeviceError> {
    let mut pos = 0;
    while pos < len {
        let k = k0 + pos;
        let (r, off) = (k / per_row, k % per_row);
        let cnt = (per_row - off).min(len - pos);
        f(r, off, cnt, pos)?;
        pos += cnt;
    }
    Ok(())
}

/// Same-type copy as raw units (elements, or blocks of a block type), in logical order.
fn copy_units(s: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    if s.t.nelements() == 0 {
        return Ok(());
    }
    if s.t.is_contiguous() && dst.t.is_contiguous() {
        let n = dst.data.len();
        let from = s
            .data
            .get(..n)
            .ok_or_else(|| DeviceError::op(op, "source shorter than destination"))?;
        dst.data.copy_from_slice(from);
        return Ok(());
    }
    let unit = s.t.typ.type_size();
    let blk = s.t.typ.block_size();
    let (su, du) = (s.t.ne[0] / blk, dst.t.ne[0] / blk);
    let oob = || DeviceError::op(op, "source row outside its tensor");
    for_each_row(
        dst,
        || (),
        |_, r, _, packed| {
            segments(su, r * du, du, |sr, off, cnt, pos| {
                let [i1, i2, i3] = rows::row_index(s.t, sr);
                let base = access::row_offset(s.t, i1, i2, i3) + off * s.t.nb[0];
                let out = &mut packed[pos * unit..(pos + cnt) * unit];
                if s.t.nb[0] == unit {
                    out.copy_from_slice(s.data.get(base..base + cnt * unit).ok_or_else(oob)?);
                } else {
                    for (j, u) in out.chunks_exact_mut(unit).enumerate() {
                        let o = base + j * s.t.nb[0];
                        u.copy_from_slice(s.data.get(o..o + unit).ok_or_else(oob)?);
                    }
                }
                Ok(())
            })
        },
    )
}

/// Converting copy through f32: each destination row gathers its logical span of the source.
fn convert(s: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let (sn0, dn0) = (s.t.ne[0], dst.t.ne[0]);
    if s.t.nelements() == 0 {
        return Ok(());
    }
    // Scratch: the last block-type source row dequantized, by row number.
    map_rows(
        dst,
        || {
            (
                usize::MAX,
                vec![0f32; if s.t.typ.is_quantized() { sn0 } else { 0 }],
            )
        },
        |(cached, row), r, _, out| {
            segments(sn0, r * dn0, dn0, |sr, off, cnt, pos| {
                let idx = rows::row_index(s.t, sr);
                let out = &mut out[pos..pos + cnt];
                if off == 0 && cnt == sn0 {
                    return read_row(s, idx, out);
                }
                if s.t.typ.is_quantized() {
                    if *cached != sr {
                        read_row(s, idx, row)?;
                        *cached = sr;
                    }
                    out.copy_from_slice(&row[off..off + cnt]);
                    return Ok(());
                }
                let base = access::row_offset(s.t, idx[0], idx[1], idx[2]);
                let last = base + (off + cnt - 1) * s.t.nb[0] + s.t.typ.type_size();
                if last > s.data.len() {
                    return Err(DeviceError::op("convert", "source row outside its tensor"));
                }
                for (j, o) in out.iter_mut().enumerate() {
                    *o = access::load(s.t.typ, s.data, base + (off + j) * s.t.nb[0]);
                }
                Ok(())
            })
        },
    )
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
