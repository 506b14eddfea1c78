//! SET_ROWS, CONCAT, REPEAT, PAD, SET and ACC.

use super::can_quantize;
use super::rows::{
    self, ensure, for_each_row, load_i32_checked, load_i64_checked, read_row, read_row_bytes,
    shape, src_of, whole_blocks,
};
use crate::device::DeviceError;
use crate::device::cpu::ops::{Dst, Src, access};
use crate::ggml::{GgmlType, Graph, Op, Tensor};

use GgmlType::{F16, F32, I32, I64};

pub fn check_set_rows(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let b = src_of(graph, node, 0)?;
    let idx = src_of(graph, node, 1)?;
    ensure(matches!(b.typ, F32 | F16), || {
        format!("{op}: values must be f32 or f16")
    })?;
    ensure(matches!(idx.typ, I64 | I32), || {
        format!("{op}: indices must be i64 or i32")
    })?;
    let dst_ok =
        matches!(d.typ, F32 | F16 | GgmlType::Bf16) || (can_quantize(d.typ) && whole_blocks(d));
    ensure(dst_ok, || {
        format!("{op}: cannot store rows as {}", d.typ.name())
    })?;
    ensure(
        d.ne[0] == b.ne[0]
            && d.ne[2] == b.ne[2]
            && d.ne[3] == b.ne[3]
            && idx.ne[0] == b.ne[1]
            && idx.ne[1] != 0
            && b.ne[2].is_multiple_of(idx.ne[1])
            && idx.ne[2] != 0
            && b.ne[3].is_multiple_of(idx.ne[2])
            && idx.ne[3] == 1,
        || {
            format!(
                "{op}: inconsistent shapes values {} idx {} dst {}",
                shape(b),
                shape(idx),
                shape(d)
            )
        },
    )
}

/// `dst[:, idx[i, j % c1, k % c2], j, k] = b[:, i, j, k]`; every index is checked before any write.
pub fn set_rows(b: &Src<'_>, idx: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let [n, ne2, ne3] = [b.t.ne[1], b.t.ne[2], b.t.ne[3]];
    let (c1, c2) = (idx.t.ne[1], idx.t.ne[2]);
    let rows_dst = dst.t.ne[1];
    if b.t.nelements() == 0 {
        return Ok(());
    }
    let mut targets = Vec::with_capacity(n * ne2 * ne3);
    for i3 in 0..ne3 {
        for i2 in 0..ne2 {
            for i in 0..n {
                let off = i * idx.t.nb[0] + (i2 % c1) * idx.t.nb[1] + (i3 % c2) * idx.t.nb[2];
                let v = match idx.t.typ {
                    I64 => load_i64_checked(idx.data, off),
                    _ => load_i32_checked(idx.data, off).map(i64::from),
                }
                .ok_or_else(|| DeviceError::op(op, "index outside its tensor"))?;
                let r = usize::try_from(v)
                    .ok()
                    .filter(|&r| r < rows_dst)
                    .ok_or_else(|| {
                        DeviceError::op(
                            op,
                            format!("row index {v} out of range for {rows_dst} rows"),
                        )
                    })?;
                targets.push(([i, i2, i3], r));
            }
        }
    }
    let mut vals = vec![0f32; b.t.ne[0]];
    for ([i, i2, i3], r) in targets {
        read_row(b, [i, i2, i3], &mut vals)?;
        access::write_row(dst.t, dst.data, r, i2, i3, &vals)?;
    }
    Ok(())
}

pub fn check_concat(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let a = src_of(graph, node, 0)?;
    let b = src_of(graph, node, 1)?;
    let dim = d.param_i32(0);
    ensure((0..4).contains(&dim), || format!("{op}: bad dim {dim}"))?;
    let dim = dim as usize;
    ensure(a.typ == b.typ && b.typ == d.typ, || {
        format!("{op}: types differ")
    })?;
    ensure(
        !d.typ.is_quantized() || (whole_blocks(a) && whole_blocks(b) && whole_blocks(d)),
        || format!("{op}: rows must be whole blocks"),
    )?;
    let ok = (0..4).all(|k| {
        if k == dim {
            a.ne[k].checked_add(b.ne[k]) == Some(d.ne[k])
        } else {
            a.ne[k] == d.ne[k] && b.ne[k] == d.ne[k]
        }
    });
    ensure(ok, || {
        format!(
            "{op}: {} + {} -> {} along {dim}",
            shape(a),
            shape(b),
            shape(d)
        )
    })
}

pub fn concat(a: &Src<'_>, b: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let dim = dst.t.param_i32(0).clamp(0, 3) as usize;
    let unit = a.t.typ.type_size();
    let blk = a.t.typ.block_size();
    let a_units = a.t.ne[0] / blk;
    let na = a.t.ne[dim];
    for_each_row(
        dst,
        || (),
        |_, _, idx, packed| {
            if dim == 0 {
                let (pa, pb) = packed.split_at_mut(a_units * unit);
                if !pa.is_empty() {
                    read_row_bytes(a.t, a.data, idx, pa)?;
                }
                if !pb.is_empty() {
                    read_row_bytes(b.t, b.data, idx, pb)?;
                }
                return Ok(());
            }
            if idx[dim - 1] < na {
                read_row_bytes(a.t, a.data, idx, packed)
            } else {
                let mut j = idx;
                j[dim - 1] -= na;
                read_row_bytes(b.t, b.data, j, packed)
            }
        },
    )
}

/// Tiles a over dst (`ggml_can_repeat(a, dst)` was checked).
pub fn repeat(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let ne = a.t.ne;
    let row = ne[0] * a.t.typ.type_size();
    for_each_row(
        dst,
        || vec![0u8; row],
        |buf, _, [i1, i2, i3], packed| {
            read_row_bytes(a.t, a.data, [i1 % ne[1], i2 % ne[2], i3 % ne[3]], buf)?;
            for chunk in packed.chunks_exact_mut(row) {
                chunk.copy_from_slice(buf);
            }
            Ok(())
        },
    )
}

/// The eight paddings `[lp0, rp0, lp1, rp1, ...]` and the circular flag.
fn pad_params(d: &Tensor) -> ([usize; 8], bool) {
    let p = std::array::from_fn(|k| usize::try_from(d.param_i32(k)).unwrap_or(0));
    (p, d.param_i32(8) != 0)
}

pub fn check_pad(d: &Tensor, a: &Tensor) -> Result<(), String> {
    let op = d.op.name();
    ensure(a.typ == d.typ && !d.typ.is_quantized(), || {
        format!(
            "{op}: unsupported types {} -> {}",
            a.typ.name(),
            d.typ.name()
        )
    })?;
    ensure((0..8).all(|k| d.param_i32(k) >= 0), || {
        format!("{op}: negative padding")
    })?;
    let (p, circular) = pad_params(d);
    let ok = (0..4).all(|k| {
        a.ne[k]
            .checked_add(p[2 * k])
            .and_then(|v| v.checked_add(p[2 * k + 1]))
            == Some(d.ne[k])
    });
    ensure(ok, || {
        format!("{op}: {} padded by {p:?} is not {}", shape(a), shape(d))
    })?;
    ensure(!circular || a.nelements() > 0 || d.nelements() == 0, || {
        format!("{op}: circular padding of an empty tensor")
    })
}

pub fn pad(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let (p, circular) = pad_params(dst.t);
    let ne = a.t.ne;
    let unit = a.t.typ.type_size();
    let row = ne[0] * unit;
    // Source coordinate of destination coordinate `i` along dim `k`, if any.
    let src_of = move |k: usize, i: usize| -> Option<usize> {
        if circular {
            Some((i + ne[k] - p[2 * k] % ne[k]) % ne[k])
        } else {
            i.checked_sub(p[2 * k]).filter(|&s| s < ne[k])
        }
    };
    for_each_row(
        dst,
        || vec![0u8; row],
        |buf, _, [i1, i2, i3], packed| {
            let (Some(j1), Some(j2), Some(j3)) = (src_of(1, i1), src_of(2, i2), src_of(3, i3))
            else {
                packed.fill(0);
                return Ok(());
            };
            if !buf.is_empty() {
                read_row_bytes(a.t, a.data, [j1, j2, j3], buf)?;
            }
            for (i0, u) in packed.chunks_exact_mut(unit).enumerate() {
                match src_of(0, i0) {
                    Some(j0) => u.copy_from_slice(&buf[j0 * unit..(j0 + 1) * unit]),
                    None => u.fill(0),
                }
            }
            Ok(())
        },
    )
}

/// The view of SET/ACC: strides nb1..nb3 and byte offset from op_params.
fn view_params(d: &Tensor) -> [usize; 4] {
    std::array::from_fn(|k| usize::try_from(d.param_i32(k)).unwrap_or(usize::MAX))
}

/// One past the last byte the view touches when it has b's shape, `None` on overflow.
fn view_end(d: &Tensor, b: &Tensor) -> Option<usize> {
    let [nb1, nb2, nb3, offset] = view_params(d);
    let es = d.typ.type_size();
    let mut end = offset.checked_add(es)?;
    for (k, nb) in [es, nb1, nb2, nb3].into_iter().enumerate() {
        end = end.checked_add((b.ne[k] - 1).checked_mul(nb)?)?;
    }
    Some(end)
}

pub fn check_set_acc(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let a = src_of(graph, node, 0)?;
    let b = src_of(graph, node, 1)?;
    let types: &[GgmlType] = if d.op == Op::Set { &[F32, I32] } else { &[F32] };
    ensure(
        types.contains(&d.typ) && a.typ == d.typ && b.typ == d.typ,
        || {
            format!(
                "{op}: unsupported types {} {} -> {}",
                a.typ.name(),
                b.typ.name(),
                d.typ.name()
            )
        },
    )?;
    ensure(
        a.ne == d.ne && a.is_contiguous() && d.is_contiguous(),
        || {
            format!(
                "{op}: a {} and dst {} must be the same contiguous shape",
                shape(a),
                shape(d)
            )
        },
    )?;
    ensure((0..4).all(|k| d.param_i32(k) >= 0), || {
        format!("{op}: negative view parameter")
    })?;
    if b.nelements() == 0 {
        return Ok(());
    }
    let size = d.nbytes().unwrap_or(0);
    ensure(view_end(d, b).is_some_and(|e| e <= size), || {
        format!(
            "{op}: view of {} at {:?} leaves dst ({size} bytes)",
            shape(b),
            view_params(d)
        )
    })
}

/// SET writes b into the view of a copy of a; ACC adds b to it (reading a, like ggml).
pub fn set_acc(a: &Src<'_>, b: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let n = dst.data.len();
    let from = a
        .data
        .get(..n)
        .ok_or_else(|| DeviceError::op(op, "a shorter than dst"))?;
    dst.data.copy_from_slice(from);
    if b.t.nelements() == 0 {
        return Ok(());
    }
    let [nb1, nb2, nb3, offset] = view_params(dst.t);
    let es = dst.t.typ.type_size();
    let typ = dst.t.typ;
    let oob = || DeviceError::op(op, "view outside dst");
    let ne = b.t.ne;
    for r in 0..b.t.nrows() {
        let [i1, i2, i3] = rows::row_index(b.t, r);
        for i0 in 0..ne[0] {
            let o = offset + i0 * es + i1 * nb1 + i2 * nb2 + i3 * nb3;
            let ob = access::offset(b.t, [i0, i1, i2, i3]);
            let src = b.data.get(ob..ob + es).ok_or_else(oob)?;
            if dst.t.op == Op::Set {
                dst.data
                    .get_mut(o..o + es)
                    .ok_or_else(oob)?
                    .copy_from_slice(src);
            } else {
                let x = a.data.get(o..o + es).ok_or_else(oob)?;
                let v = access::load(typ, x, 0) + access::load(typ, src, 0);
                access::store(typ, dst.data.get_mut(o..o + es).ok_or_else(oob)?, 0, v);
            }
        }
    }
    Ok(())
}
