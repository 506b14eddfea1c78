//! The graph runner GPU devices share: it splits a graph into segments of consecutive nodes the
//! device has native kernels for (each recorded once and submitted without any readback) and single
//! nodes it has none for, which run through the host kernels on copies of their tensors. A device
//! supplies only its planner, encoder and tensor transfers (`Backend`); adding an op to a device
//! touches its kernels and planner, never this file.

use crate::device::host_kernels::{self, Dst, HostKernel, Src};
use crate::device::{DeviceError, GraphCounts};
use crate::ggml::{Graph, MAX_SRC, Tensor};

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

/// A planner's answer for the nodes from some position on: the work and how many nodes it covers.
pub type Planned<W> = Option<(Vec<W>, usize)>;

/// What a device gives the runner, for one graph and its buffers.
pub trait Backend {
    /// One planned unit of native work (a dispatch, a kernel launch).
    type Work;
    /// The work of consecutive nodes, recorded for one submission.
    type Batch;
    /// The device's name, for logs.
    fn device_name(&self) -> &str;
    /// Native work computing `nodes[0]`, possibly fused with the nodes right after it, and how many
    /// nodes it covers (≥ 1); `None` when the device has no kernel for `nodes[0]`.
    fn plan(&self, graph: &Graph, nodes: &[usize]) -> Result<Planned<Self::Work>, DeviceError>;
    /// Records `work` (drained) for submission.
    fn encode(&self, work: &mut Vec<Self::Work>) -> Result<Self::Batch, DeviceError>;
    /// Submits a batch after everything submitted before; `last` when no step follows.
    fn submit(&self, batch: &Self::Batch, last: bool) -> Result<(), DeviceError>;
    /// The bytes of `t`, after all submitted work.
    fn download(&self, t: &Tensor) -> Result<Vec<u8>, DeviceError>;
    /// Writes the bytes of `t`, ordered before any later submission.
    fn upload(&self, t: &Tensor, bytes: &[u8]) -> Result<(), DeviceError>;
    /// Counts finished work on the device's counters.
    fn tally(&self, counts: GraphCounts);
}

/// One step of a planned graph.
enum Step<B> {
    /// Native work of `nodes` nodes.
    Native { batch: B, nodes: u64 },
    /// A node for the host kernels.
    Host(usize),
}

/// A graph split into steps, ready to run (and to run again for GRAPH_RECOMPUTE).
pub struct Segments<B> {
    steps: Vec<Step<B>>,
    report: Report,
}

impl<B> Segments<B> {
    /// Plans every compute node of `graph` (nothing runs yet).
    pub fn plan<D: Backend<Batch = B>>(dev: &D, graph: &Graph) -> Result<Self, DeviceError> {
        let mut report = Report::default();
        let mut steps = Vec::new();
        let mut work = Vec::new();
        let mut nodes = 0u64;
        let flush = |work: &mut Vec<D::Work>, nodes: &mut u64, steps: &mut Vec<Step<B>>| {
            if *nodes > 0 {
                let batch = dev.encode(work)?;
                steps.push(Step::Native {
                    batch,
                    nodes: *nodes,
                });
            }
            work.clear();
            *nodes = 0;
            Ok::<_, DeviceError>(())
        };
        let order: Vec<usize> = graph.compute_nodes().collect();
        let mut i = 0;
        while i < order.len() {
            match dev.plan(graph, &order[i..])? {
                Some((w, used)) => {
                    let used = used.clamp(1, order.len() - i);
                    trace_step(dev.device_name(), graph, &order[i..i + used], w.len());
                    work.extend(w);
                    nodes += used as u64;
                    report.native += used;
                    i += used;
                }
                None => {
                    flush(&mut work, &mut nodes, &mut steps)?;
                    steps.push(Step::Host(order[i]));
                    report.fallback.push(graph.tensors[order[i]].op.name());
                    i += 1;
                }
            }
        }
        flush(&mut work, &mut nodes, &mut steps)?;
        Ok(Segments { steps, report })
    }

    /// What planning found (the counts are filled in by the device after a run).
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Whether the last step is native work (else the device's final submission comes after a host
    /// node).
    pub fn ends_native(&self) -> bool {
        matches!(self.steps.last(), Some(Step::Native { .. }))
    }

    /// Runs the steps in order; nodes count once their work is submitted (or done, on the host). The
    /// caller waits for the device afterwards.
    pub fn run<D: Backend<Batch = B>>(
        &self,
        dev: &D,
        graph: &Graph,
        host: HostKernel,
    ) -> Result<(), DeviceError> {
        let n = self.steps.len();
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Native { batch, nodes } => {
                    dev.submit(batch, i + 1 == n)?;
                    dev.tally(GraphCounts {
                        nodes: *nodes,
                        ..Default::default()
                    });
                }
                Step::Host(node) => {
                    let op = graph.tensors[*node].op.name();
                    tracing::debug!(op, node, device = dev.device_name(), "running on the host");
                    run_host_node(dev, graph, *node, host)?;
                    dev.tally(GraphCounts {
                        nodes: 1,
                        fallback: 1,
                        ..Default::default()
                    });
                }
            }
        }
        Ok(())
    }
}

/// Runs `graph.tensors[node]` with `kernel` on host copies of its tensors: the sources and the
/// destination are downloaded (after all work submitted so far), the destination and any source the
/// op updates in place are uploaded again. Slow, but every op the CPU device runs is correct on any
/// device this way.
pub fn run_host_node<D: Backend>(
    dev: &D,
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
            Some(s) if host_kernels::writes_src(t.op, k) => {
                written[k] = Some(dev.download(&graph.tensors[s])?)
            }
            Some(s) if host_kernels::reads_src(t.op, k) => {
                *slot = dev.download(&graph.tensors[s])?
            }
            _ => {}
        }
    }
    let mut dst = dev.download(t)?;
    let srcs: [Option<Src<'_>>; MAX_SRC] = std::array::from_fn(|k| {
        Some(Src {
            t: &graph.tensors[t.src[k]?],
            data: &owned[k],
        })
    });
    crate::device::host::guarded(t.op.name(), || {
        let mut d = Dst::new(t, &mut dst);
        for (slot, w) in d.inout.iter_mut().zip(written.iter_mut()) {
            *slot = w.as_deref_mut();
        }
        kernel(&srcs, d)
    })?;
    for (k, w) in written.iter().enumerate() {
        if let (Some(bytes), Some(s)) = (w, t.src[k]) {
            dev.upload(&graph.tensors[s], bytes)?;
        }
    }
    dev.upload(t, &dst)
}

/// One trace line per planned step: the ops it covers and its work items (for finding what to fuse).
fn trace_step(device: &str, graph: &Graph, nodes: &[usize], work: usize) {
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
        tracing::trace!(device, ?ops, ?at, work, "plan step");
    }
}
