//! Optimizer steps: OPT_STEP_ADAMW and OPT_STEP_SGD (f32). The node is a view of the parameter tensor
//! (`ggml_view_tensor(a)`), so the runner hands us a copy of the old weights as source 0 and their bytes
//! as the destination. ADAMW also updates its moments m and v (sources 2 and 3) in place: those arrive
//! mutably in `Dst::inout` (`writes_src`).
//!
//! Like ggml's kernels, every tensor is addressed with the parameter's (source 0's) row strides and
//! packed elements; the step parameters are read as packed floats.

use super::elementwise::rows::{ensure, shape, src_at, src_of};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op, Tensor};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let w = src_of(graph, node, 0)?;
    let n_state = if d.op == Op::OptStepAdamw { 3 } else { 1 };
    let params = src_of(graph, node, n_state + 1)?;
    let mut all = vec![d, w];
    for k in 1..=n_state {
        all.push(src_of(graph, node, k)?);
    }
    for t in &all {
        ensure(t.typ == GgmlType::F32 && t.ne == w.ne, || {
            format!(
                "{op}: {} differs from the f32 parameter {}",
                shape(t),
                shape(w)
            )
        })?;
    }
    ensure(w.nb[0] == 4, || {
        format!("{op}: parameter rows must be packed")
    })?;
    let n_params = if d.op == Op::OptStepAdamw { 7 } else { 2 };
    ensure(
        params.typ == GgmlType::F32 && params.nelements() == n_params,
        || {
            format!(
                "{op}: needs {n_params} f32 step parameters, got {}",
                shape(params)
            )
        },
    )
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    match dst.t.op {
        Op::OptStepAdamw => adamw(src, dst),
        Op::OptStepSgd => sgd(src, dst),
        _ => Err(DeviceError::op(op, "not an optimizer step")),
    }
}

/// The first `N` packed floats of a parameter tensor.
fn step_params<const N: usize>(s: &Src<'_>, op: &'static str) -> Result<[f32; N], DeviceError> {
    let bytes = s
        .data
        .get(..4 * N)
        .ok_or_else(|| DeviceError::op(op, "step parameters outside their tensor"))?;
    Ok(std::array::from_fn(|i| {
        f32::from_le_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    }))
}

/// Byte offset of every row of `w`, in ggml's row order.
fn row_offsets(w: &Tensor) -> impl Iterator<Item = usize> + '_ {
    let [_, ne1, ne2, ne3] = w.ne;
    (0..ne3).flat_map(move |i3| {
        (0..ne2)
            .flat_map(move |i2| (0..ne1).map(move |i1| i1 * w.nb[1] + i2 * w.nb[2] + i3 * w.nb[3]))
    })
}

/// The `n` packed f32 of a row at `off`, failing cleanly outside `data`.
fn row<'b>(
    data: &'b [u8],
    off: usize,
    n: usize,
    op: &'static str,
) -> Result<&'b [u8], DeviceError> {
    data.get(off..off + 4 * n)
        .ok_or_else(|| DeviceError::op(op, "row outside its tensor"))
}

fn row_mut<'b>(
    data: &'b mut [u8],
    off: usize,
    n: usize,
    op: &'static str,
) -> Result<&'b mut [u8], DeviceError> {
    data.get_mut(off..off + 4 * n)
        .ok_or_else(|| DeviceError::op(op, "row outside its tensor"))
}

fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

fn put_f32(b: &mut [u8], i: usize, v: f32) {
    b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
}

/// `w = w * (1 - alpha * wd) - alpha * g`.
fn sgd(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let (w, g) = (src_at(src, 0, op)?, src_at(src, 1, op)?);
    let [alpha, wd] = step_params::<2>(src_at(src, 2, op)?, op)?;
    let keep = 1.0 - alpha * wd;
    let n = w.t.ne[0];
    if w.t.nelements() == 0 {
        return Ok(());
    }
    for off in row_offsets(w.t) {
        let (wr, gr) = (row(w.data, off, n, op)?, row(g.data, off, n, op)?);
        let out = row_mut(dst.data, off, n, op)?;
        for i in 0..n {
            put_f32(out, i, f32_at(wr, i) * keep - alpha * f32_at(gr, i));
        }
    }
    Ok(())
}

/// AdamW with decoupled weight decay; `beta1h`/`beta2h` are the caller's bias corrections.
fn adamw(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let (w, g) = (src_at(src, 0, op)?, src_at(src, 1, op)?);
    let [alpha, beta1, beta2, eps, wd, beta1h, beta2h] = step_params::<7>(src_at(src, 4, op)?, op)?;
    let keep = 1.0 - alpha * wd;
    let n = w.t.ne[0];
    let Dst { data, inout, .. } = dst;
    let [_, _, m_slot, v_slot, ..] = inout;
    let (Some(m), Some(v)) = (m_slot, v_slot) else {
        return Err(DeviceError::op(
            op,
            "moments m and v were not passed in place",
        ));
    };
    if w.t.nelements() == 0 {
        return Ok(());
    }
    for off in row_offsets(w.t) {
        let (wr, gr) = (row(w.data, off, n, op)?, row(g.data, off, n, op)?);
        let mr = row_mut(m, off, n, op)?;
        let vr = row_mut(v, off, n, op)?;
        let out = row_mut(data, off, n, op)?;
        for i in 0..n {
            let gi = f32_at(gr, i);
            let mi = f32_at(mr, i) * beta1 + gi * (1.0 - beta1);
            let vi = f32_at(vr, i) * beta2 + gi * gi * (1.0 - beta2);
            put_f32(mr, i, mi);
            put_f32(vr, i, vi);
            let mh = mi * beta1h;
            let vh = (vi * beta2h).sqrt() + eps;
            put_f32(out, i, f32_at(wr, i) * keep - alpha * mh / vh);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "optim_tests.rs"]
mod tests;
