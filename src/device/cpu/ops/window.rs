//! SAM's windowed attention helpers: WIN_PART / WIN_UNPART (split an f32 [C, W, H] image into zero
//! padded w x w windows and back), GET_REL_POS (gather relative-position rows, f16/bf16 copied as
//! 2-byte units) and ADD_REL_POS (add the decomposed height/width biases to attention scores).
//!
//! Like ggml's kernels these index every tensor as a packed array from its first byte (the ops build
//! contiguous tensors); each read and write is bounds-checked against the tensor's bytes.

use super::elementwise::rows::{ensure, shape, src_at, src_of};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op};

use GgmlType::{Bf16, F16, F32};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let a = src_of(graph, node, 0)?;
    let bad_shapes = || format!("{op}: bad shapes {} -> {}", shape(a), shape(d));
    match d.op {
        Op::WinPart => {
            ensure(a.typ == F32 && d.typ == F32, || format!("{op}: needs f32"))?;
            let [npx, npy, w] = [0, 1, 2].map(|i| usize::try_from(d.param_i32(i)).unwrap_or(0));
            ensure(w > 0, || format!("{op}: window size {w}"))?;
            ensure(
                a.ne[3] == 1 && d.ne == [a.ne[0], w, w, npx * npy],
                bad_shapes,
            )
        }
        Op::WinUnpart => {
            ensure(a.typ == F32 && d.typ == F32, || format!("{op}: needs f32"))?;
            let w = usize::try_from(d.param_i32(0)).unwrap_or(0);
            ensure(w > 0, || format!("{op}: window size {w}"))?;
            ensure(d.ne[0] == a.ne[0] && d.ne[3] == 1, bad_shapes)
        }
        Op::GetRelPos => {
            ensure(
                matches!(a.typ, F16 | Bf16) && matches!(d.typ, F16 | Bf16),
                || {
                    format!(
                        "{op}: unsupported types {} -> {}",
                        a.typ.name(),
                        d.typ.name()
                    )
                },
            )?;
            // ggml_get_rel_pos: a holds 2*kh - 1 rows of ne0 values.
            ensure(
                d.ne[0] == a.ne[0]
                    && d.ne[1] == d.ne[2]
                    && d.ne[3] == 1
                    && 2 * d.ne[1] == a.ne[1] + 1,
                bad_shapes,
            )
        }
        Op::AddRelPos => {
            let pw = src_of(graph, node, 1)?;
            let ph = src_of(graph, node, 2)?;
            ensure([a, pw, ph, d].iter().all(|t| t.typ == F32), || {
                format!("{op}: needs f32 tensors")
            })?;
            ensure(
                pw.ne == ph.ne
                    && d.ne == a.ne
                    && pw.ne[3] == a.ne[2]
                    && pw.ne[0] * pw.ne[0] == a.ne[0]
                    && pw.ne[1] * pw.ne[2] == a.ne[1],
                || {
                    format!(
                        "{op}: bad shapes {} {} {} -> {}",
                        shape(a),
                        shape(pw),
                        shape(ph),
                        shape(d)
                    )
                },
            )
        }
        _ => Err(format!("{op} is not a window op")),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let a = src_at(src, 0, op)?;
    match dst.t.op {
        Op::WinPart => win_part(a, dst),
        Op::WinUnpart => win_unpart(a, dst),
        Op::GetRelPos => get_rel_pos(a, dst),
        Op::AddRelPos => add_rel_pos(a, src_at(src, 1, op)?, src_at(src, 2, op)?, dst),
        _ => Err(DeviceError::op(op, "not a window op")),
    }
}

fn oob(op: &'static str) -> DeviceError {
    DeviceError::op(op, "element outside its tensor")
}

/// Packed element `i` (of `n` bytes) of `data`.
fn unit<'b>(data: &'b [u8], i: usize, n: usize, op: &'static str) -> Result<&'b [u8], DeviceError> {
    data.get(i * n..(i + 1) * n).ok_or_else(|| oob(op))
}

fn unit_mut<'b>(
    data: &'b mut [u8],
    i: usize,
    n: usize,
    op: &'static str,
) -> Result<&'b mut [u8], DeviceError> {
    data.get_mut(i * n..(i + 1) * n).ok_or_else(|| oob(op))
}

/// dst window (px, py) = i3 = py*npx + px holds a[:, px*w .., py*w ..], zero past a's edges.
fn win_part(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let [ne0, ne1, ne2, ne3] = dst.t.ne;
    let [_, ne01, ne02, _] = a.t.ne;
    let npx = dst.t.param_i32(0).max(1) as usize;
    let w = dst.t.param_i32(2).max(1) as usize;
    let mut i = 0;
    for i3 in 0..ne3 {
        let (py, px) = (i3 / npx, i3 % npx);
        for i2 in 0..ne2 {
            for i1 in 0..ne1 {
                let (y, x) = (py * w + i2, px * w + i1);
                for i0 in 0..ne0 {
                    let out = unit_mut(dst.data, i, 4, op)?;
                    if y >= ne02 || x >= ne01 {
                        out.fill(0);
                    } else {
                        out.copy_from_slice(unit(a.data, (y * ne01 + x) * ne0 + i0, 4, op)?);
                    }
                    i += 1;
                }
            }
        }
    }
    Ok(())
}

/// The inverse of WIN_PART for a dst of [C, W, H]: each pixel from its window, padding dropped.
fn win_unpart(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let [ne0, ne1, ne2, _] = dst.t.ne;
    let [ne00, ne01, ne02, _] = a.t.ne;
    let w = dst.t.param_i32(0).max(1) as usize;
    let npx = ne1.div_ceil(w);
    for i2 in 0..ne2 {
        for i1 in 0..ne1 {
            let window = (i2 / w) * npx + i1 / w;
            let base = ((window * ne02 + i2 % w) * ne01 + i1 % w) * ne00;
            for i0 in 0..ne0 {
                let v = unit(a.data, base + i0, 4, op)?;
                unit_mut(dst.data, (i2 * ne1 + i1) * ne0 + i0, 4, op)?.copy_from_slice(v);
            }
        }
    }
    Ok(())
}

/// dst[:, k, q] = a[:, (kh - 1 - k) + q]: the relative-position row of each (query, key) pair.
fn get_rel_pos(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let [ne0, ne1, ne2, _] = dst.t.ne;
    let ne00 = a.t.ne[0];
    for i2 in 0..ne2 {
        for i1 in 0..ne1 {
            let pos = ne1 - i1 - 1 + i2;
            for i0 in 0..ne0 {
                let v = unit(a.data, pos * ne00 + i0, 2, op)?;
                unit_mut(dst.data, (i2 * ne1 + i1) * ne0 + i0, 2, op)?.copy_from_slice(v);
            }
        }
    }
    Ok(())
}

fn f32_at(data: &[u8], i: usize, op: &'static str) -> Result<f32, DeviceError> {
    let b = unit(data, i, 4, op)?;
    Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Scores [k_w*k_h, q_w*q_h, heads] += ph broadcast along key columns and pw along key rows. Without
/// the in-place flag dst starts as a copy of a; with it dst already is a (ggml skips the copy).
fn add_rel_pos(a: &Src<'_>, pw: &Src<'_>, ph: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let inplace = dst.t.param_i32(0) != 0;
    let n = dst.t.nelements();
    let mut out = vec![0f32; n];
    let from = if inplace { &*dst.data } else { a.data };
    for (i, o) in out.iter_mut().enumerate() {
        *o = f32_at(from, i, op)?;
    }
    let [ne10, ne11, ne12, ne13] = pw.t.ne;
    for i13 in 0..ne13 {
        for i12 in 0..ne12 {
            for i11 in 0..ne11 {
                let row = ((i13 * ne12 + i12) * ne11 + i11) * ne10;
                for i10 in 0..ne10 {
                    let jp0 = row + i10;
                    let (w_e, h_e) = (f32_at(pw.data, jp0, op)?, f32_at(ph.data, jp0, op)?);
                    let jdh = jp0 * ne10;
                    let jdw = jdh - (ne10 - 1) * i10;
                    for j in 0..ne10 {
                        *out.get_mut(jdh + j).ok_or_else(|| oob(op))? += h_e;
                        *out.get_mut(jdw + j * ne10).ok_or_else(|| oob(op))? += w_e;
                    }
                }
            }
        }
    }
    for (i, v) in out.iter().enumerate() {
        unit_mut(dst.data, i, 4, op)?.copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
