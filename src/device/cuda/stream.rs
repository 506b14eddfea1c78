//! The GPU's queue: a CUDA stream per plan (so concurrent sessions run side by side, and a plan the
//! server keeps for GRAPH_RECOMPUTE owns its stream). From a plan's second run on, each batch is
//! replayed as a captured CUDA graph: one launch instead of one per kernel.

use std::sync::{Arc, Mutex};

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaFunction, CudaGraph, CudaStream, result};

use super::Shared;
use super::buffer::driver;
use super::exec::Queue;
use super::kernels::Launch;
use crate::device::DeviceError;

pub struct StreamQueue {
    shared: Arc<Shared>,
    stream: Option<Arc<CudaStream>>,
}

/// Launches with their functions, and their captured graph once the plan is replayed.
pub struct StreamBatch {
    launches: Vec<(CudaFunction, Launch)>,
    graph: Mutex<Option<CudaGraph>>,
}

// SAFETY: a batch belongs to one plan, used by one compute at a time (the graph cache's mutex or
// the compute call itself); its graph is launched only from there.
unsafe impl Send for StreamBatch {}

impl StreamQueue {
    pub fn new(shared: &Arc<Shared>) -> Result<Self, DeviceError> {
        Ok(StreamQueue {
            shared: shared.clone(),
            stream: Some(shared.stream()?),
        })
    }

    fn stream(&self) -> Result<&Arc<CudaStream>, DeviceError> {
        self.stream
            .as_ref()
            .ok_or_else(|| DeviceError::op("cuda", "queue without a stream"))
    }

    fn enqueue(&self, f: &CudaFunction, l: &Launch) -> Result<(), DeviceError> {
        let stream = self.stream()?;
        let mut args = [l.params().as_ptr() as *mut std::ffi::c_void];
        // SAFETY: the function comes from a module loaded in this context; its single parameter is
        // the struct whose bytes `params` holds (sizes asserted when the kernels compile); every
        // pointer in it was range-checked against a live buffer when planned, and those buffers
        // outlive the plan (the server drops a stored graph's plan before its buffers).
        unsafe {
            result::launch_kernel(
                f.cu_function(),
                l.grid,
                l.block,
                l.shared,
                stream.cu_stream(),
                &mut args,
            )
        }
        .map_err(|e| driver("launch", e))
    }

    /// Captures a batch into a graph; `None` when capture fails (the batch is then launched kernel
    /// by kernel, which is always correct).
    fn capture(&self, batch: &StreamBatch) -> Option<CudaGraph> {
        let stream = self.stream().ok()?;
        stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .ok()?;
        let enqueued = batch
            .launches
            .iter()
            .try_for_each(|(f, l)| self.enqueue(f, l));
        let graph = stream
            .end_capture(CUgraphInstantiate_flags(0))
            .ok()
            .flatten();
        enqueued.ok()?;
        graph
    }
}

impl Queue for StreamQueue {
    type Batch = StreamBatch;

    fn record(&self, launches: Vec<Launch>) -> Result<StreamBatch, DeviceError> {
        let launches = launches
            .into_iter()
            .map(|l| Ok((self.shared.kernels.function(l.kernel)?, l)))
            .collect::<Result<_, DeviceError>>()?;
        Ok(StreamBatch {
            launches,
            graph: Mutex::new(None),
        })
    }

    fn submit(&self, batch: &StreamBatch, replay: bool) -> Result<(), DeviceError> {
        if replay {
            let mut slot = batch
                .graph
                .lock()
                .map_err(|_| DeviceError::op("cuda", "graph slot poisoned"))?;
            if slot.is_none() {
                *slot = self.capture(batch);
            }
            if let Some(g) = slot.as_ref() {
                return g.launch().map_err(|e| driver("graph launch", e));
            }
        }
        batch
            .launches
            .iter()
            .try_for_each(|(f, l)| self.enqueue(f, l))
    }

    fn synchronize(&self) -> Result<(), DeviceError> {
        self.stream()?
            .synchronize()
            .map_err(|e| driver("synchronize", e))
    }

    fn launches(batch: &StreamBatch) -> usize {
        batch.launches.len()
    }
}

impl Drop for StreamQueue {
    /// The stream goes back to the device's pool once its work is done; a stream whose work failed
    /// is dropped instead.
    fn drop(&mut self) {
        if let Some(s) = self.stream.take()
            && s.synchronize().is_ok()
        {
            self.shared.give_back(s);
        }
    }
}
