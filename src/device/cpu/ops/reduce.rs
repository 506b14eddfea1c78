//! Reductions and orderings: SUM, SUM_ROWS, MEAN, ARGMAX, ARGSORT, TOP_K, CUMSUM.
//!
//! Accumulation follows ggml: f32 sums run in f64 (`ggml_float`) and are rounded once; SUM of f16/bf16
//! accumulates in f32. Sorting ties keep the lower index first and NaNs sort last, so results are
//! deterministic where ggml's `std::sort` is not.

use std::cmp::Ordering;

use rayon::prelude::*;

use super::elementwise::rows::{
    ensure, map_rows, map_rows_i32, read_row, row_index, shape, src_at, src_of,
};
use super::{Dst, Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op};

use GgmlType::{Bf16, F16, F32, I32};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let s = src_of(graph, node, 0)?;
    let float = matches!(s.typ, F32 | F16 | Bf16);
    let row_shape = [1, s.ne[1], s.ne[2], s.ne[3]];
    let (types_ok, shape_ok) = match d.op {
        Op::Sum => (float && d.typ == s.typ, d.ne == [1; 4]),
        Op::SumRows => (float && d.typ == s.typ, d.ne == row_shape),
        Op::Mean => (float && d.typ == F32, d.ne == row_shape),
        Op::Argmax => (
            s.typ == F32 && d.typ == I32,
            s.ne[2] == 1 && s.ne[3] == 1 && d.ne == [s.ne[1], 1, 1, 1],
        ),
        Op::Argsort => {
            let order = d.param_i32(0);
            ensure(order == 0 || order == 1, || {
                format!("{op}: bad sort order {order}")
            })?;
            (s.typ == F32 && d.typ == I32, d.ne == s.ne)
        }
        Op::TopK => (
            s.typ == F32 && d.typ == I32,
            d.ne[0] <= s.ne[0] && d.ne[1..] == s.ne[1..],
        ),
        Op::Cumsum => (s.typ == F32 && d.typ == F32, d.ne == s.ne),
        _ => return Err(format!("{op} is not a reduction")),
    };
    ensure(types_ok, || {
        format!(
            "{op}: unsupported types {} -> {}",
            s.typ.name(),
            d.typ.name()
        )
    })?;
    ensure(shape_ok, || {
        format!("{op}: bad shapes {} -> {}", shape(s), shape(d))
    })?;
    ensure(
        !matches!(d.op, Op::Argmax | Op::Argsort | Op::TopK) || s.ne[0] <= i32::MAX as usize,
        || format!("{op}: rows too long for i32 indices"),
    )
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let s = src_at(src, 0, op)?;
    let ne00 = s.t.ne[0];
    match dst.t.op {
        Op::Sum => sum(s, dst),
        Op::SumRows | Op::Mean => {
            let mean = dst.t.op == Op::Mean;
            map_rows(
                dst,
                || vec![0f32; ne00],
                move |buf, _, idx, out| {
                    read_row(s, idx, buf)?;
                    let v = buf.iter().map(|&x| f64::from(x)).sum::<f64>() as f32;
                    out[0] = if mean { v / ne00 as f32 } else { v };
                    Ok(())
                },
            )
        }
        Op::Cumsum => map_rows(
            dst,
            || (),
            |_, _, idx, out| {
                read_row(s, idx, out)?;
                let mut acc = 0f32;
                for v in out.iter_mut() {
                    acc += *v;
                    *v = acc;
                }
                Ok(())
            },
        ),
        Op::Argmax => argmax(s, dst),
        Op::Argsort => {
            let desc = dst.t.param_i32(0) == 1;
            map_rows_i32(
                dst,
                || vec![0f32; ne00],
                move |buf, _, idx, out| {
                    read_row(s, idx, buf)?;
                    out.iter_mut().enumerate().for_each(|(i, o)| *o = i as i32);
                    out.sort_by(|&a, &b| order(buf, a, b, desc));
                    Ok(())
                },
            )
        }
        Op::TopK => {
            let k = dst.t.ne[0];
            map_rows_i32(
                dst,
                || (vec![0f32; ne00], Vec::<i32>::with_capacity(ne00)),
                move |(buf, ids), _, idx, out| {
                    read_row(s, idx, buf)?;
                    ids.clear();
                    ids.extend(0..ne00 as i32);
                    let cmp = |a: &i32, b: &i32| order(buf, *a, *b, true);
                    if k > 0 && k < ne00 {
                        ids.select_nth_unstable_by(k - 1, cmp);
                    }
                    ids[..k].sort_unstable_by(cmp);
                    out.copy_from_slice(&ids[..k]);
                    Ok(())
                },
            )
        }
        _ => Err(DeviceError::op(op, "not a reduction")),
    }
}

/// Total order on row positions: by value (descending if `desc`), NaNs last, then by index.
fn order(row: &[f32], a: i32, b: i32, desc: bool) -> Ordering {
    let (x, y) = (row[a as usize], row[b as usize]);
    let by_value = match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
        _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    };
    by_value.then(a.cmp(&b))
}

/// SUM into a one-element dst: f32 rows summed in f64, f16/bf16 rows in f32 (ggml's `_ggf` helpers).
fn sum(s: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let mut buf = vec![0f32; s.t.ne[0]];
    let (mut wide, mut narrow) = (0f64, 0f32);
    let nrows = if s.t.nelements() == 0 { 0 } else { s.t.nrows() };
    for r in 0..nrows {
        sum_row(s, row_index(s.t, r), &mut buf)?;
        if s.t.typ == F32 {
            wide += buf.iter().map(|&x| f64::from(x)).sum::<f64>();
        } else {
            narrow += buf.iter().fold(0f32, |a, &x| a + x);
        }
    }
    let v = if s.t.typ == F32 { wide as f32 } else { narrow };
    map_rows(
        dst,
        || (),
        move |_, _, _, out| {
            out[0] = v;
            Ok(())
        },
    )
}

/// The row SUM adds up. ggml's kernel asserts nb[0] == element size only in debug builds and reads
/// ne[0] *packed* elements from each row start, so for a transposed source it sums those (not the
/// row's elements), and test-backend-ops compares against that. We do the same while the packed run
/// stays inside the source's bytes; where it would leave them (ggml would read past the tensor) we
/// fall back to the row's strided elements.
fn sum_row(s: &Src<'_>, idx: [usize; 3], out: &mut [f32]) -> Result<(), DeviceError> {
    let ts = s.t.typ.type_size();
    let base = access::row_offset(s.t, idx[0], idx[1], idx[2]);
    match s.data.get(base..base + ts * out.len()) {
        Some(bytes) => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = access::load(s.t.typ, bytes, i * ts);
            }
            Ok(())
        }
        None => read_row(s, idx, out),
    }
}

/// ggml's `ggml_vec_argmax_f32`: the last position where the running maximum is met.
fn argmax_row(row: &[f32]) -> i32 {
    let mut max = f32::NEG_INFINITY;
    let mut idx = 0;
    for (i, &x) in row.iter().enumerate() {
        max = if max > x { max } else { x };
        if max == x {
            idx = i as i32;
        }
    }
    idx
}

fn argmax(s: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let (ne00, ne01) = (s.t.ne[0], s.t.ne[1]);
    let one = |i: usize| -> Result<i32, DeviceError> {
        let mut buf = vec![0f32; ne00];
        read_row(s, [i, 0, 0], &mut buf)?;
        Ok(argmax_row(&buf))
    };
    let ids: Vec<i32> = if ne00 * ne01 >= 1 << 15 {
        (0..ne01)
            .into_par_iter()
            .map(one)
            .collect::<Result<_, _>>()?
    } else {
        (0..ne01).map(one).collect::<Result<_, _>>()?
    };
    map_rows_i32(
        dst,
        || (),
        move |_, _, _, out| {
            out.copy_from_slice(&ids);
            Ok(())
        },
    )
}

#[cfg(test)]
#[path = "reduce_tests.rs"]
mod tests;
