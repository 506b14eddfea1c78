//! Runs one node on the host: reads the sources' and the destination's byte ranges from the GPU,
//! calls a CPU kernel on plain byte slices (`cpu::ops::run` in production), and writes the destination
//! range back. Slow (two transfers per tensor) but makes every op the CPU device runs correct here.

use crate::device::cpu::ops::{self, Dst, Src};
use crate::device::{Buffer, DeviceError};
use crate::ggml::{Graph, MAX_SRC};

use super::kernels::Ctx;

/// A host kernel: what `cpu::ops::run` is.
pub type HostKernel = fn(&[Option<Src<'_>>; MAX_SRC], Dst<'_>) -> Result<(), DeviceError>;

/// Reads a tensor's bytes from the device.
fn download(ctx: &Ctx, graph: &Graph, i: usize) -> Result<Vec<u8>, DeviceError> {
    let (wb, off, len) = ctx.place(&graph.tensors[i])?;
    let mut out = vec![0u8; len as usize];
    wb.read(off as usize, &mut out)?;
    Ok(out)
}

/// Runs `graph.tensors[node]` with `kernel` on host copies of its tensors. All GPU work submitted so
/// far is ordered before the reads (same queue).
pub fn run_node(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
    kernel: HostKernel,
) -> Result<(), DeviceError> {
    let t = &graph.tensors[node];
    let mut owned: [Vec<u8>; MAX_SRC] = Default::default();
    // Sources the op updates in place: downloaded, handed over mutably, written back.
    let mut written: [Option<Vec<u8>>; MAX_SRC] = Default::default();
    for (k, slot) in owned.iter_mut().enumerate() {
        match t.src[k] {
            Some(s) if ops::writes_src(t.op, k) => written[k] = Some(download(ctx, graph, s)?),
            Some(s) if ops::reads_src(t.op, k) => *slot = download(ctx, graph, s)?,
            _ => {}
        }
    }
    let mut dst = download(ctx, graph, node)?;
    let srcs: [Option<Src<'_>>; MAX_SRC] = std::array::from_fn(|k| {
        Some(Src {
            t: &graph.tensors[t.src[k]?],
            data: &owned[k],
        })
    });
    let res = crate::device::host::guarded(t.op.name(), || {
        let mut d = Dst::new(t, &mut dst);
        for (slot, w) in d.inout.iter_mut().zip(written.iter_mut()) {
            *slot = w.as_deref_mut();
        }
        kernel(&srcs, d)
    });
    res?;
    for (k, w) in written.iter().enumerate() {
        if let (Some(bytes), Some(s)) = (w, t.src[k]) {
            let (wb, off, _) = ctx.place(&graph.tensors[s])?;
            wb.write_at(off as usize, bytes, false)?;
        }
    }
    let (wb, off, _) = ctx.place(t)?;
    wb.write_at(off as usize, &dst, false)
}
