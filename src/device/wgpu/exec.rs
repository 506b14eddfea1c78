//! Runs a graph: consecutive nodes with native kernels are encoded into one command buffer without any
//! readback; a node without one flushes that batch and runs through the host kernels (the shared
//! `device::runner` does the splitting; this file adds what is wgpu's: scratch, index flags, host
//! shadows).
//!
//! Planning (choosing kernels, binding windows, writing parameters, creating bind groups) is kept as a
//! `Plan`, which the server stores with the graph, so GRAPH_RECOMPUTE only records the passes again.

use std::sync::Arc;

use super::WgpuBuffer;
use super::gpu::Gpu;
use super::kernels::scratch::Scratch;
use super::kernels::{self, Ctx, Dispatch, Encoded, Window};
use crate::device::host_kernels::HostKernel;
use crate::device::runner::{Backend, Planned, Segments};
use crate::device::{Buffer, BufferSet, DeviceError, GraphCounts};
use crate::ggml::{Graph, Op, Tensor};

pub use crate::device::runner::Report;

/// Scratch bytes the graph's native kernels may ask for (an upper bound: shared regions count once
/// per consumer).
pub fn scratch_bytes(graph: &Graph) -> u64 {
    graph
        .compute_nodes()
        .map(|n| match graph.tensors[n].op {
            Op::MulMat => kernels::matmul::scratch_bytes(graph, n),
            Op::Rope => Scratch::region_bytes(kernels::rope::table_bytes(graph, n)),
            Op::FlashAttnExt => kernels::attention::scratch_bytes(graph, n),
            _ => 0,
        })
        .sum()
}

/// Whether any node may raise an index flag (see `kernels::scratch`).
pub fn needs_flags(graph: &Graph) -> bool {
    graph
        .compute_nodes()
        .any(|n| matches!(graph.tensors[n].op, Op::GetRows | Op::SetRows))
}

/// A planned graph, tied to the device, the graph and the buffers it was planned for.
pub struct Plan {
    gpu: Arc<Gpu>,
    segments: Segments<Encoded>,
    scratch: Option<Scratch>,
    /// Scratch regions derived from leaf values on the host, rewritten before every run.
    refresh: Vec<(usize, Window)>,
}

impl Plan {
    /// Plans every compute node of `graph` (nothing runs yet).
    pub fn new(gpu: &Arc<Gpu>, graph: &Graph, buffers: &BufferSet) -> Result<Plan, DeviceError> {
        let scratch = Scratch::new(gpu, scratch_bytes(graph), needs_flags(graph));
        let ctx = Ctx {
            gpu,
            buffers,
            scratch: &scratch,
            host: Default::default(),
        };
        let segments = Segments::plan(&ctx, graph)?;
        let refresh = ctx.host.take_refresh();
        Ok(Plan {
            gpu: gpu.clone(),
            segments,
            scratch: Some(scratch),
            refresh,
        })
    }

    /// Whether the plan was made on `gpu`.
    pub fn is_for(&self, gpu: &Arc<Gpu>) -> bool {
        Arc::ptr_eq(&self.gpu, gpu)
    }

    /// Runs the planned steps in order and waits for the GPU. `fresh` says whether the plan was just
    /// made (its host-derived regions are then current); a replay first rewrites them.
    pub fn run(
        &self,
        graph: &Graph,
        buffers: &BufferSet,
        host: HostKernel,
        fresh: bool,
    ) -> Result<Report, DeviceError> {
        let Some(scratch) = self.scratch.as_ref() else {
            return Err(DeviceError::op("wgpu", "plan without scratch"));
        };
        let gpu = &*self.gpu;
        let ctx = Ctx {
            gpu,
            buffers,
            scratch,
            host: Default::default(),
        };
        if !fresh {
            scratch.clear_flags(gpu);
            for (node, win) in &self.refresh {
                kernels::rope::refresh_table(&ctx, graph, *node, win)?;
            }
        }
        // The host's copies of what the graph writes are stale from here on (planning and the table
        // refresh above were their last use).
        forget_written(&ctx, graph);
        self.segments.run(&ctx, graph, host)?;
        if !self.segments.ends_native() {
            gpu.scoped("flags", || {
                let mut e = gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
                if scratch.record_flag_copy(&mut e) {
                    gpu.submit(e.finish(), 0);
                }
            })?;
        }
        // One wait for the whole graph, which also maps the flag word.
        let flags = scratch.map_flags();
        gpu.wait()?;
        match scratch.read_flags(flags)? {
            0 => Ok(Report {
                replayed: !fresh,
                ..self.segments.report().clone()
            }),
            f => Err(super::index_error(f)),
        }
    }
}

/// Invalidates the buffers' host shadows of the memory the graph's nodes write.
fn forget_written(ctx: &Ctx, graph: &Graph) {
    for n in graph.compute_nodes() {
        for (d, len) in kernels::host::written_by(graph, n) {
            let wb = ctx
                .buffers
                .get(&d.buffer)
                .and_then(|b| b.as_any().downcast_ref::<WgpuBuffer>());
            if let Some(wb) = wb {
                wb.invalidate(d.offset as u64, len as u64);
            }
        }
    }
}

impl Drop for Plan {
    /// The scratch buffer goes back to the device's pool: anything a later graph submits is ordered
    /// after this plan's work on the same queue.
    fn drop(&mut self) {
        if let Some(s) = self.scratch.take() {
            s.release(&self.gpu);
        }
    }
}

/// The wgpu device as the shared runner sees it: the fused planners first, then the single-node
/// ones, each inside an error scope.
impl Backend for Ctx<'_> {
    type Work = Dispatch;
    type Batch = Encoded;

    fn device_name(&self) -> &str {
        "wgpu"
    }

    fn plan(&self, graph: &Graph, nodes: &[usize]) -> Result<Planned<Dispatch>, DeviceError> {
        if let Some(fused) = self
            .gpu
            .scoped("plan", || kernels::plan_fused(self, graph, nodes))??
        {
            return Ok(Some(fused));
        }
        let Some(&node) = nodes.first() else {
            return Ok(None);
        };
        let single = self
            .gpu
            .scoped("plan", || kernels::plan(self, graph, node))??;
        Ok(single.map(|d| (d, 1)))
    }

    fn encode(&self, work: &mut Vec<Dispatch>) -> Result<Encoded, DeviceError> {
        kernels::encode(self.gpu, work)
    }

    fn submit(&self, batch: &Encoded, last: bool) -> Result<(), DeviceError> {
        // The last command buffer also copies the index flags out for the final fence.
        batch.submit_with(self.gpu, |e| last && self.scratch.record_flag_copy(e))
    }

    fn download(&self, t: &Tensor) -> Result<Vec<u8>, DeviceError> {
        let (wb, off, len) = self.place(t)?;
        let mut out = vec![0u8; len as usize];
        wb.read(off as usize, &mut out)?;
        Ok(out)
    }

    fn upload(&self, t: &Tensor, bytes: &[u8]) -> Result<(), DeviceError> {
        let (wb, off, _) = self.place(t)?;
        wb.write_at(off as usize, bytes, false)
    }

    fn tally(&self, counts: GraphCounts) {
        self.gpu.tally.add(counts);
    }
}
