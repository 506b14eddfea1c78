//! Runs a graph on host memory: resolves each node's tensors to byte slices and calls its kernel.
//!
//! Aliasing rule: a node's destination is the only mutable slice. A source that overlaps the destination
//! (in-place ops, views of the output) is copied first, so kernels never see aliased memory. Sources an
//! op updates in place (`ops::writes_src`) are passed mutably and must not overlap any other output.

use std::borrow::Cow;

use super::buffer::CpuBuffer;
use super::ops::{self, Dst, Src};
use crate::device::{BufferSet, DeviceError, GraphCounts, Tally};
use crate::ggml::{Graph, MAX_SRC, Tensor};

/// A tensor's byte range: buffer handle, pointer to its first byte, length.
struct Span {
    buffer: u64,
    ptr: *mut u8,
    len: usize,
}

fn span(t: &Tensor, buffers: &BufferSet) -> Result<Span, DeviceError> {
    let (buf, offset, len) = crate::device::locate(t, buffers)?;
    let cpu = buf
        .as_any()
        .downcast_ref::<CpuBuffer>()
        .ok_or(DeviceError::ForeignBuffer)?;
    Ok(Span {
        // `locate` succeeded, so the tensor has memory.
        buffer: t.data.map_or(0, |d| d.buffer),
        ptr: cpu.ptr_at(offset, len)?,
        len,
    })
}

fn overlaps(a: &Span, b: &Span) -> bool {
    a.buffer == b.buffer && a.len > 0 && b.len > 0 && {
        let (a0, b0) = (a.ptr as usize, b.ptr as usize);
        a0 < b0 + b.len && b0 < a0 + a.len
    }
}

/// Runs one node. Panics inside kernels are caught and reported, never unwound into the server.
pub fn run_node(graph: &Graph, node: usize, buffers: &BufferSet) -> Result<(), DeviceError> {
    let t = &graph.tensors[node];
    let dst_span = span(t, buffers)?;
    // Sources the op updates in place: each must lie apart from the destination and from the others,
    // so that every mutable slice made below is the only slice into its bytes.
    let mut written: [Option<Span>; MAX_SRC] = Default::default();
    for k in 0..MAX_SRC {
        let Some(s) = t.src[k] else { continue };
        if !ops::writes_src(t.op, k) {
            continue;
        }
        let sp = span(&graph.tensors[s], buffers)?;
        if overlaps(&sp, &dst_span) || written.iter().flatten().any(|w| overlaps(w, &sp)) {
            return Err(DeviceError::op(
                t.op.name(),
                format!("source {k} is written in place and overlaps another output"),
            ));
        }
        written[k] = Some(sp);
    }
    let mut owned: [Option<Cow<'_, [u8]>>; MAX_SRC] = Default::default();
    for (k, slot) in owned.iter_mut().enumerate() {
        let Some(s) = t.src[k] else { continue };
        if !ops::reads_src(t.op, k) || written[k].is_some() {
            continue;
        }
        let sp = span(&graph.tensors[s], buffers)?;
        // SAFETY: `sp` lies inside a live CpuBuffer (checked by `ptr_at`); the only mutable slices
        // created below are the destination and the written sources, and sources overlapping any of
        // them are copied out before those exist.
        let bytes = unsafe { std::slice::from_raw_parts(sp.ptr as *const u8, sp.len) };
        let aliased =
            overlaps(&sp, &dst_span) || written.iter().flatten().any(|w| overlaps(w, &sp));
        *slot = Some(if aliased {
            Cow::Owned(bytes.to_vec())
        } else {
            Cow::Borrowed(bytes)
        });
    }
    let srcs: [Option<Src<'_>>; MAX_SRC] = std::array::from_fn(|k| {
        let tensor = &graph.tensors[t.src[k]?];
        Some(Src {
            t: tensor,
            data: owned[k].as_deref().unwrap_or(&[]),
        })
    });
    // SAFETY: the destination range is inside a live CpuBuffer and no other slice into it is alive
    // (overlapping sources were copied above; borrowed sources and written sources do not overlap it).
    let dst_bytes = unsafe { std::slice::from_raw_parts_mut(dst_span.ptr, dst_span.len) };
    let mut dst = Dst::new(t, dst_bytes);
    for (slot, sp) in dst.inout.iter_mut().zip(&written) {
        if let Some(sp) = sp {
            // SAFETY: inside a live CpuBuffer; disjoint from the destination, from the other written
            // sources (checked above) and from every borrowed source (those overlapping were copied).
            *slot = Some(unsafe { std::slice::from_raw_parts_mut(sp.ptr, sp.len) });
        }
    }
    crate::device::host::guarded(t.op.name(), || ops::run(&srcs, dst))
}

/// One node run, for the device counters.
const ONE_NODE: GraphCounts = GraphCounts {
    nodes: 1,
    fallback: 0,
    dispatches: 0,
    submits: 0,
    readbacks: 0,
};

/// The op's name; for matmuls also the weight type and shape and the number of columns.
fn profile_label(graph: &Graph, node: usize) -> String {
    let t = &graph.tensors[node];
    match (t.op, graph.src(node, 0)) {
        (crate::ggml::Op::MulMat | crate::ggml::Op::MulMatId, Some(a)) => format!(
            "{} {} {}x{} n{}",
            t.op.name(),
            a.typ.name(),
            a.ne[0],
            a.ne[1],
            t.ne[1] * t.ne[2] * t.ne[3]
        ),
        _ => t.op.name().to_string(),
    }
}

/// Runs every compute node in order, counting each in `tally`. With `RUST_LOG=ggrpc::profile=trace`,
/// logs the time spent per op.
pub fn run_graph(graph: &Graph, buffers: &BufferSet, tally: &Tally) -> Result<(), DeviceError> {
    if !tracing::enabled!(target: "ggrpc::profile", tracing::Level::TRACE) {
        for node in graph.compute_nodes() {
            run_node(graph, node, buffers)?;
            tally.add(ONE_NODE);
        }
        return Ok(());
    }
    let mut per_op: std::collections::BTreeMap<String, (u32, std::time::Duration)> =
        Default::default();
    for node in graph.compute_nodes() {
        let started = std::time::Instant::now();
        run_node(graph, node, buffers)?;
        tally.add(ONE_NODE);
        let e = per_op.entry(profile_label(graph, node)).or_default();
        e.0 += 1;
        e.1 += started.elapsed();
    }
    let mut rows: Vec<_> = per_op.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.1));
    for (op, (n, t)) in rows {
        tracing::trace!(target: "ggrpc::profile", "{op:<32} x{n:<4} {:>9.3} ms", t.as_secs_f64() * 1e3);
    }
    Ok(())
}
