//! Plumbing shared by the sequence-model families (SSM, RWKV/GLA, delta net, triangular solve, DSV4
//! hyper-connections, lightning indexer): f32 checks, whole sources read as logical f32 values (so views
//! with any strides read right), and writes of f32 runs into a packed f32 destination.

use super::{Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Tensor};
use crate::quant;

/// `Err(msg)` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

/// The i32 at byte offset `off`, if inside `data`.
pub fn load_i32(data: &[u8], off: usize) -> Option<i32> {
    let b = data.get(off..off.checked_add(4)?)?;
    Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Source `k` of `node`, which must be f32.
pub fn f32_src(graph: &Graph, node: usize, k: usize) -> Result<&Tensor, String> {
    let op = graph.tensors[node].op.name();
    let t = graph
        .src(node, k)
        .ok_or_else(|| format!("{op}: missing source {k}"))?;
    ensure(t.typ == GgmlType::F32, || {
        format!("{op}: source {k} is {}, not f32", t.typ.name())
    })?;
    Ok(t)
}

/// The node itself: a packed f32 tensor (ggml always creates it so).
pub fn f32_dst(graph: &Graph, node: usize) -> Result<&Tensor, String> {
    let d = &graph.tensors[node];
    ensure(d.typ == GgmlType::F32 && d.is_contiguous(), || {
        format!("{}: destination must be packed f32", d.op.name())
    })?;
    Ok(d)
}

/// `ne` of `t` must be `want` (as ggml's shape asserts).
pub fn want_ne(op: &str, what: &str, t: &Tensor, want: [usize; 4]) -> Result<(), String> {
    ensure(t.ne == want, || {
        format!("{op}: {what} is {:?}, expected {want:?}", t.ne)
    })
}

/// Source `k` at run time with its logical values (i0 fastest), dequantized to f32.
pub fn values<'s>(
    src: &'s [Option<Src<'_>>; MAX_SRC],
    k: usize,
    op: &'static str,
) -> Result<(&'s Tensor, Vec<f32>), DeviceError> {
    let s = src[k]
        .as_ref()
        .ok_or_else(|| DeviceError::op(op, format!("missing source {k}")))?;
    Ok((s.t, access::read_all(s.t, s.data)?))
}

/// Writes `vals` into a packed f32 destination starting at element `at`.
pub fn put(data: &mut [u8], at: usize, vals: &[f32], op: &'static str) -> Result<(), DeviceError> {
    let out = at
        .checked_mul(4)
        .and_then(|b| Some(b..b.checked_add(4 * vals.len())?))
        .and_then(|r| data.get_mut(r))
        .ok_or_else(|| DeviceError::op(op, "write outside destination"))?;
    for (c, v) in out.chunks_exact_mut(4).zip(vals) {
        c.copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

/// `ggml_vec_dot_f32` (its SIMD lane order and final FMAs) on two equal-length f32 slices.
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let f = quant::dot_fn(GgmlType::F32).unwrap_or(naive_dot_bytes);
    f(bytemuck::cast_slice(&x[..n]), bytemuck::cast_slice(&y[..n]))
}

fn naive_dot_bytes(x: &[u8], y: &[u8]) -> f32 {
    x.chunks_exact(4)
        .zip(y.chunks_exact(4))
        .map(|(a, b)| {
            f32::from_le_bytes([a[0], a[1], a[2], a[3]])
                * f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        })
        .sum()
}

/// ggml's `softplus` (`ggml_compute_softplus_f32`).
#[inline]
pub fn softplus(x: f32) -> f32 {
    if x > 20.0 { x } else { (1.0 + x.exp()).ln() }
}
