//! Losses and metrics: COUNT_EQUAL (i32 -> one i64), CROSS_ENTROPY_LOSS and CROSS_ENTROPY_LOSS_BACK
//! (f32), with ggml-cpu's arithmetic: the loss takes a scalar `expf` log-softmax with an f64 sum, its
//! gradient the vectorised softmax (`vexp::soft_max`, bit-exact with the AVX2 build).
//!
//! Both cross-entropy kernels address row r at r*nb[1] with packed elements, as ggml's do (their
//! "TODO: handle transposed/permuted matrices"); the reads are bounds-checked.

use super::elementwise::rows::{ensure, shape, src_at, src_of};
use super::{Dst, Src, access, vexp};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op, Tensor};

use GgmlType::{F32, I32, I64};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let a = src_of(graph, node, 0)?;
    let b = src_of(graph, node, 1)?;
    let scalar = |t: &Tensor| t.ne == [1; 4];
    match d.op {
        Op::CountEqual => {
            ensure(a.typ == I32 && b.typ == I32 && d.typ == I64, || {
                format!("{op}: needs i32 sources and an i64 dst")
            })?;
            ensure(a.ne == b.ne && scalar(d), || {
                format!("{op}: bad shapes {} {} -> {}", shape(a), shape(b), shape(d))
            })
        }
        Op::CrossEntropyLoss => {
            ensure(a.typ == F32 && b.typ == F32 && d.typ == F32, || {
                format!("{op}: needs f32 logits, labels and dst")
            })?;
            ensure(a.ne == b.ne && scalar(d), || {
                format!("{op}: bad shapes {} {} -> {}", shape(a), shape(b), shape(d))
            })?;
            ensure(a.nb[0] == 4 && b.nb[0] == 4, || {
                format!("{op}: rows must be packed")
            })
        }
        Op::CrossEntropyLossBack => {
            let c = src_of(graph, node, 2)?;
            ensure([a, b, c, d].iter().all(|t| t.typ == F32), || {
                format!("{op}: needs f32 tensors")
            })?;
            ensure(scalar(a) && b.ne == c.ne && b.ne == d.ne, || {
                format!(
                    "{op}: bad shapes {} {} {} -> {}",
                    shape(a),
                    shape(b),
                    shape(c),
                    shape(d)
                )
            })?;
            // GGML_ASSERTs of the kernel.
            ensure([a, b, c, d].iter().all(|t| t.is_contiguous()), || {
                format!("{op}: tensors must be contiguous")
            })
        }
        _ => Err(format!("{op} is not a loss")),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let a = src_at(src, 0, op)?;
    let b = src_at(src, 1, op)?;
    match dst.t.op {
        Op::CountEqual => count_equal(a, b, dst),
        Op::CrossEntropyLoss => cross_entropy_loss(a, b, dst),
        Op::CrossEntropyLossBack => cross_entropy_loss_back(a, b, src_at(src, 2, op)?, dst),
        _ => Err(DeviceError::op(op, "not a loss")),
    }
}

fn put_scalar(dst: Dst<'_>, bytes: &[u8]) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    dst.data
        .get_mut(..bytes.len())
        .ok_or_else(|| DeviceError::op(op, "destination too small"))?
        .copy_from_slice(bytes);
    Ok(())
}

/// How many positions hold equal values in a and b.
fn count_equal(a: &Src<'_>, b: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let mut count = 0i64;
    let n = a.t.nelements();
    let ne = a.t.ne;
    for e in 0..n {
        let i = [
            e % ne[0],
            (e / ne[0]) % ne[1],
            (e / (ne[0] * ne[1])) % ne[2],
            e / (ne[0] * ne[1] * ne[2]),
        ];
        let read = |s: &Src<'_>| {
            super::elementwise::rows::load_i32_checked(s.data, access::offset(s.t, i))
                .ok_or_else(|| DeviceError::op(op, "element outside its tensor"))
        };
        count += i64::from(read(a)? == read(b)?);
    }
    put_scalar(dst, &count.to_le_bytes())
}

/// Row `r` (`out.len()` packed f32) of `s` at r*nb[1].
fn flat_row(s: &Src<'_>, r: usize, out: &mut [f32], op: &'static str) -> Result<(), DeviceError> {
    let off = r * s.t.nb[1];
    let bytes = s
        .data
        .get(off..off + 4 * out.len())
        .ok_or_else(|| DeviceError::op(op, "row outside its tensor"))?;
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(())
}

fn row_max(row: &[f32]) -> f32 {
    row.iter()
        .fold(f32::NEG_INFINITY, |m, &x| if m > x { m } else { x })
}

/// `-mean over rows of sum(labels * log_softmax(logits))`.
fn cross_entropy_loss(logits: &Src<'_>, labels: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let n = logits.t.ne[0];
    let nrows = logits.t.nrows();
    let (mut st, mut lab) = (vec![0f32; n], vec![0f32; n]);
    let mut total = 0f32;
    for r in 0..nrows {
        flat_row(logits, r, &mut st, op)?;
        flat_row(labels, r, &mut lab, op)?;
        let max = row_max(&st);
        let mut sum = 0f64;
        for v in st.iter_mut() {
            *v -= max;
            sum += f64::from(v.exp());
        }
        let log_sum = (sum as f32).ln();
        let row_sum: f64 = st
            .iter()
            .zip(&lab)
            .map(|(&v, &l)| f64::from((v - log_sum) * l))
            .sum();
        total += row_sum as f32;
    }
    let loss = total * (-1.0 / nrows as f32);
    put_scalar(dst, &loss.to_le_bytes())
}

/// `(softmax(logits) - labels) * grad / nrows`, row by row.
fn cross_entropy_loss_back(
    grad: &Src<'_>,
    logits: &Src<'_>,
    labels: &Src<'_>,
    dst: Dst<'_>,
) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let n = logits.t.ne[0];
    let nrows = logits.t.nrows();
    let mut g = [0f32; 1];
    flat_row(grad, 0, &mut g, op)?;
    let d_by_nr = g[0] / nrows as f32;
    let (mut y, mut lab) = (vec![0f32; n], vec![0f32; n]);
    for r in 0..nrows {
        flat_row(logits, r, &mut y, op)?;
        flat_row(labels, r, &mut lab, op)?;
        let max = row_max(&y);
        let sum = vexp::soft_max(&mut y, max);
        let inv = (1.0 / sum) as f32;
        let off = r * dst.t.nb[1];
        let out = dst
            .data
            .get_mut(off..off + 4 * n)
            .ok_or_else(|| DeviceError::op(op, "row outside destination"))?;
        for ((c, &v), &l) in out.chunks_exact_mut(4).zip(&y).zip(&lab) {
            c.copy_from_slice(&(((v * inv) - l) * d_by_nr).to_le_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "loss_tests.rs"]
mod tests;
