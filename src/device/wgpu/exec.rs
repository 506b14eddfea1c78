//! Runs a graph: consecutive nodes with native kernels are encoded into one command buffer without any
//! readback; a node without one flushes that batch and runs through the host fallback.

use super::fallback::{self, HostKernel};
use super::kernels::{self, Ctx, Dispatch};
use crate::device::DeviceError;
use crate::ggml::{Graph, Op};

/// Which nodes ran where, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub native: usize,
    pub fallback: Vec<&'static str>,
}

/// Scratch bytes the graph's native kernels may ask for (an upper bound: shared regions count once
/// per consumer).
pub fn scratch_bytes(graph: &Graph) -> u64 {
    graph
        .compute_nodes()
        .map(|n| match graph.tensors[n].op {
            Op::MulMat => kernels::matmul::scratch_bytes(graph, n),
            Op::Rope => {
                kernels::scratch::Scratch::region_bytes(kernels::rope::table_bytes(graph, n))
            }
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

/// Runs every compute node of `graph` in order and waits for the GPU to finish.
pub fn run_graph(ctx: &Ctx, graph: &Graph, host: HostKernel) -> Result<Report, DeviceError> {
    let mut report = Report::default();
    let mut batch: Vec<Dispatch> = Vec::new();
    for node in graph.compute_nodes() {
        let planned = ctx
            .gpu
            .scoped("plan", || kernels::plan(ctx, graph, node))??;
        match planned {
            Some(d) => {
                batch.extend(d);
                report.native += 1;
            }
            None => {
                kernels::submit(ctx.gpu, &batch)?;
                batch.clear();
                let op = graph.tensors[node].op.name();
                tracing::debug!(op, node, "wgpu: running on the CPU fallback");
                fallback::run_node(ctx, graph, node, host)?;
                report.fallback.push(op);
            }
        }
    }
    kernels::submit(ctx.gpu, &batch)?;
    ctx.gpu.wait()?;
    Ok(report)
}
