//! Runs a graph: consecutive nodes with native kernels are encoded into one command buffer without any
//! readback; a node without one flushes that batch and runs through the host fallback.
//!
//! Planning (choosing kernels, binding windows, writing parameters, creating bind groups) is kept as a
//! `Plan`, which the server stores with the graph, so GRAPH_RECOMPUTE only records the passes again.

use std::sync::Arc;

use super::WgpuBuffer;
use super::fallback::{self, HostKernel};
use super::gpu::Gpu;
use super::kernels::scratch::Scratch;
use super::kernels::{self, Ctx, Dispatch, Encoded, Window};
use crate::device::{BufferSet, DeviceError, GraphCounts};
use crate::ggml::{Graph, Op};

/// Which nodes ran where, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub native: usize,
    pub fallback: Vec<&'static str>,
    /// Whether the run reused a stored plan.
    pub replayed: bool,
    /// What the run did (nodes, dispatches, submits, readbacks), as the device counters count it.
    pub counts: GraphCounts,
}

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

/// One step of a planned graph.
enum Step {
    /// Native kernels of `nodes` nodes, one command buffer.
    Gpu { enc: Encoded, nodes: u64 },
    /// A node for the host fallback.
    Host(usize),
}

/// A planned graph, tied to the device, the graph and the buffers it was planned for.
pub struct Plan {
    gpu: Arc<Gpu>,
    steps: Vec<Step>,
    scratch: Option<Scratch>,
    /// Scratch regions derived from leaf values on the host, rewritten before every run.
    refresh: Vec<(usize, Window)>,
    report: Report,
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
        let mut report = Report::default();
        let mut steps = Vec::new();
        let mut batch: Vec<Dispatch> = Vec::new();
        let mut nodes = 0;
        let flush = |batch: &mut Vec<Dispatch>, nodes: &mut u64, steps: &mut Vec<Step>| {
            if *nodes > 0 {
                let enc = kernels::encode(gpu, batch)?;
                steps.push(Step::Gpu { enc, nodes: *nodes });
            }
            batch.clear();
            *nodes = 0;
            Ok::<_, DeviceError>(())
        };
        let order: Vec<usize> = graph.compute_nodes().collect();
        let mut i = 0;
        while i < order.len() {
            let node = order[i];
            i += 1;
            if let Some((d, used)) =
                gpu.scoped("plan", || kernels::plan_fused(&ctx, graph, &order[i - 1..]))??
            {
                trace_step(graph, &order[i - 1..i - 1 + used], d.len());
                batch.extend(d);
                nodes += used as u64;
                report.native += used;
                i += used - 1;
                continue;
            }
            match gpu.scoped("plan", || kernels::plan(&ctx, graph, node))?? {
                Some(d) => {
                    trace_step(graph, &order[i - 1..i], d.len());
                    batch.extend(d);
                    nodes += 1;
                    report.native += 1;
                }
                None => {
                    flush(&mut batch, &mut nodes, &mut steps)?;
                    steps.push(Step::Host(node));
                    report.fallback.push(graph.tensors[node].op.name());
                }
            }
        }
        flush(&mut batch, &mut nodes, &mut steps)?;
        let refresh = ctx.host.take_refresh();
        Ok(Plan {
            gpu: gpu.clone(),
            steps,
            scratch: Some(scratch),
            refresh,
            report,
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
        let n = self.steps.len();
        for (i, step) in self.steps.iter().enumerate() {
            // Nodes count once their work is submitted (or done, on the host).
            match step {
                Step::Gpu { enc, nodes } => {
                    // The last command buffer also copies the index flags out for the final fence.
                    enc.submit_with(gpu, |e| i + 1 == n && scratch.record_flag_copy(e))?;
                    gpu.tally.add(GraphCounts {
                        nodes: *nodes,
                        ..Default::default()
                    });
                }
                Step::Host(node) => {
                    let op = graph.tensors[*node].op.name();
                    tracing::debug!(op, node, "wgpu: running on the CPU fallback");
                    fallback::run_node(&ctx, graph, *node, host)?;
                    gpu.tally.add(GraphCounts {
                        nodes: 1,
                        fallback: 1,
                        ..Default::default()
                    });
                }
            }
        }
        if !matches!(self.steps.last(), Some(Step::Gpu { .. })) {
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
                ..self.report.clone()
            }),
            f => Err(super::index_error(f)),
        }
    }
}

/// One trace line per planned step: the ops it covers and its dispatches (for finding what to fuse).
fn trace_step(graph: &Graph, nodes: &[usize], dispatches: usize) {
    if tracing::enabled!(tracing::Level::TRACE) {
        let ops: Vec<&str> = nodes.iter().map(|&n| graph.tensors[n].op.name()).collect();
        // Where each output lies (buffer, offset, bytes): what a reordering must not clobber.
        let at: Vec<_> = nodes
            .iter()
            .map(|&n| {
                let t = &graph.tensors[n];
                t.data
                    .map(|d| (d.buffer, d.offset, t.nbytes().unwrap_or(0)))
            })
            .collect();
        tracing::trace!(?ops, ?at, dispatches, "wgpu plan step");
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
