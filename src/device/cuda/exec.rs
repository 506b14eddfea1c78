//! Runs a graph through the shared runner: consecutive nodes with kernels are one batch of launches
//! on the plan's queue; a node without one waits for the queue and runs on the host. The queue is a
//! CUDA stream on a GPU (`stream`) or the kernel emulator in tests; everything else here is shared.

use std::sync::Arc;

use super::kernels::{self, Ctx, Launch, Scratch, Target};
use crate::device::host_kernels::HostKernel;
use crate::device::runner::{Backend, Planned, Segments};
use crate::device::{Buffer, BufferSet, DeviceError, GraphCounts, Tally};
use crate::ggml::{Graph, Tensor};

pub use crate::device::runner::Report;

/// Where a plan's launches go.
pub trait Queue: Send {
    /// Recorded launches (a GPU keeps their functions and, once replayed, a captured graph).
    type Batch: Send;
    fn record(&self, launches: Vec<Launch>) -> Result<Self::Batch, DeviceError>;
    /// Enqueues a batch after everything enqueued before; `replay` when the plan ran before.
    fn submit(&self, batch: &Self::Batch, replay: bool) -> Result<(), DeviceError>;
    /// Waits until everything enqueued has finished.
    fn synchronize(&self) -> Result<(), DeviceError>;
    /// Launches in a batch (for the counters).
    fn launches(batch: &Self::Batch) -> usize;
}

/// A planned graph, tied to the device, the graph and the buffers it was planned for.
pub struct Plan<Q: Queue> {
    /// Identifies the device the plan was made on.
    device: usize,
    queue: Q,
    segments: Segments<Q::Batch>,
    /// The flag word and the kernels' scratch regions.
    scratch_mem: Arc<dyn Buffer>,
    scratch: Scratch,
}

impl<Q: Queue> Plan<Q> {
    /// Plans every compute node of `graph` (nothing runs yet). `alloc` gives device memory for the
    /// scratch; `device` is an identity `is_for` compares.
    pub fn new(
        target: &dyn Target,
        device: usize,
        queue: Q,
        alloc: impl FnOnce(usize) -> Option<Arc<dyn Buffer>>,
        tally: &Tally,
        graph: &Graph,
        buffers: &BufferSet,
    ) -> Result<Self, DeviceError> {
        let (need, regions) = kernels::scratch_need(graph);
        let size = Scratch::bytes_for(need, regions);
        let scratch_mem = alloc(size as usize).ok_or_else(|| {
            DeviceError::op("cuda", format!("no memory for {size} scratch bytes"))
        })?;
        let base = target.addr(scratch_mem.as_ref(), 0, size as usize)?;
        let scratch = Scratch::new(base, size);
        let run = Run {
            ctx: Ctx {
                target,
                buffers,
                scratch: &scratch,
            },
            queue: &queue,
            tally,
            replay: false,
        };
        let segments = Segments::plan(&run, graph)?;
        Ok(Plan {
            device,
            queue,
            segments,
            scratch_mem,
            scratch,
        })
    }

    /// Whether the plan was made on `device`.
    pub fn is_for(&self, device: usize) -> bool {
        self.device == device
    }

    /// Runs the plan and waits for it. `replay` says whether it ran before.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        target: &dyn Target,
        tally: &Tally,
        graph: &Graph,
        buffers: &BufferSet,
        host: HostKernel,
        replay: bool,
    ) -> Result<Report, DeviceError> {
        self.scratch_mem.fill(0, 4, 0)?;
        let run = Run {
            ctx: Ctx {
                target,
                buffers,
                scratch: &self.scratch,
            },
            queue: &self.queue,
            tally,
            replay,
        };
        self.segments.run(&run, graph, host)?;
        self.queue.synchronize()?;
        let mut flag = [0u8; 4];
        self.scratch_mem.read(0, &mut flag)?;
        match u32::from_le_bytes(flag) {
            0 => Ok(Report {
                replayed: replay,
                ..self.segments.report().clone()
            }),
            _ => Err(DeviceError::op(
                "GET_ROWS/SET_ROWS",
                "row index out of range (found by the GPU kernel)",
            )),
        }
    }
}

/// One run (or the planning) of a plan, as the shared runner sees the device.
struct Run<'a, Q: Queue> {
    ctx: Ctx<'a>,
    queue: &'a Q,
    tally: &'a Tally,
    replay: bool,
}

impl<Q: Queue> Run<'_, Q> {
    /// The buffer holding `t` and the tensor's offset and length in it, range-checked.
    fn buffer_of(&self, t: &Tensor) -> Result<(&Arc<dyn Buffer>, usize, usize), DeviceError> {
        self.ctx.place(t)?;
        crate::device::locate(t, self.ctx.buffers)
    }
}

impl<Q: Queue> Backend for Run<'_, Q> {
    type Work = Launch;
    type Batch = Q::Batch;

    fn device_name(&self) -> &str {
        "cuda"
    }

    fn plan(&self, graph: &Graph, nodes: &[usize]) -> Result<Planned<Launch>, DeviceError> {
        let Some(&node) = nodes.first() else {
            return Ok(None);
        };
        Ok(kernels::plan(&self.ctx, graph, node)?.map(|l| (l, 1)))
    }

    fn encode(&self, work: &mut Vec<Launch>) -> Result<Q::Batch, DeviceError> {
        self.queue.record(std::mem::take(work))
    }

    fn submit(&self, batch: &Q::Batch, _last: bool) -> Result<(), DeviceError> {
        self.tally.add(GraphCounts {
            dispatches: Q::launches(batch) as u64,
            submits: 1,
            ..Default::default()
        });
        self.queue.submit(batch, self.replay)
    }

    fn download(&self, t: &Tensor) -> Result<Vec<u8>, DeviceError> {
        self.queue.synchronize()?;
        let (buf, offset, len) = self.buffer_of(t)?;
        let mut out = vec![0u8; len];
        buf.read(offset, &mut out)?;
        self.tally.add(GraphCounts {
            readbacks: 1,
            ..Default::default()
        });
        Ok(out)
    }

    fn upload(&self, t: &Tensor, bytes: &[u8]) -> Result<(), DeviceError> {
        let (buf, offset, len) = self.buffer_of(t)?;
        buf.write(offset, &bytes[..len.min(bytes.len())])
    }

    fn tally(&self, counts: GraphCounts) {
        self.tally.add(counts);
    }
}
