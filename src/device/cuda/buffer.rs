//! Device memory for the CUDA device: one `cuMemAlloc` per buffer, zeroed on creation (the driver
//! hands out memory another process or session may have written), counted against the device cap.
//! Transfers are synchronous: a buffer belongs to one session, whose commands run one at a time and
//! whose graphs finish (stream synchronized) before the next command is read.

use std::any::Any;
use std::sync::Arc;

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{CudaContext, DriverError, result};

use crate::device::{Buffer, DeviceError, Usage};

pub struct CudaBuffer {
    ctx: Arc<CudaContext>,
    ptr: CUdeviceptr,
    len: usize,
    used: Arc<Usage>,
}

/// A driver error as a device error.
pub fn driver(what: &'static str, e: DriverError) -> DeviceError {
    DeviceError::op(what, format!("CUDA: {e}"))
}

impl CudaBuffer {
    /// Allocates `len` zeroed bytes; `None` when the driver refuses (out of memory).
    pub fn new(ctx: &Arc<CudaContext>, len: usize, used: Arc<Usage>) -> Option<Self> {
        ctx.bind_to_thread().ok()?;
        // Zero-sized allocations are invalid in CUDA: keep one byte.
        let n = len.max(1);
        // SAFETY: the context is current; the result is checked.
        let ptr = unsafe { result::malloc_sync(n) }.ok()?;
        // SAFETY: `ptr` addresses `n` bytes just allocated.
        if unsafe { result::memset_d8_sync(ptr, 0, n) }.is_err() {
            // SAFETY: allocated above, never shared.
            let _ = unsafe { result::free_sync(ptr) };
            return None;
        }
        used.buffer_created();
        Some(CudaBuffer {
            ctx: ctx.clone(),
            ptr,
            len,
            used,
        })
    }

    /// Device address of byte `offset` after checking that `len` bytes from there are inside.
    pub fn addr(&self, offset: usize, len: usize) -> Result<CUdeviceptr, DeviceError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(self.ptr + offset as u64),
            _ => Err(DeviceError::OutOfRange {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    /// Whether this buffer lives in `ctx`.
    pub fn is_in(&self, ctx: &Arc<CudaContext>) -> bool {
        Arc::ptr_eq(&self.ctx, ctx)
    }

    fn bind(&self) -> Result<(), DeviceError> {
        self.ctx.bind_to_thread().map_err(|e| driver("bind", e))
    }
}

impl Drop for CudaBuffer {
    fn drop(&mut self) {
        if self.bind().is_ok() {
            // SAFETY: allocated in `new`; every graph using it has finished (computes synchronize).
            let _ = unsafe { result::free_sync(self.ptr) };
        }
        self.used.buffer_dropped(self.len as u64);
    }
}

impl Buffer for CudaBuffer {
    fn size(&self) -> usize {
        self.len
    }

    fn write(&self, offset: usize, data: &[u8]) -> Result<(), DeviceError> {
        let dst = self.addr(offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: range checked; the copy completes before the call returns.
        unsafe { result::memcpy_htod_sync(dst, data) }.map_err(|e| driver("SET_TENSOR", e))
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), DeviceError> {
        let src = self.addr(offset, out.len())?;
        if out.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: range checked; `out` is an exclusive host slice of the copied length.
        unsafe { result::memcpy_dtoh_sync(out, src) }.map_err(|e| driver("GET_TENSOR", e))
    }

    fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), DeviceError> {
        let dst = self.addr(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: range checked.
        unsafe { result::memset_d8_sync(dst, value, len) }.map_err(|e| driver("BUFFER_CLEAR", e))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Copies `len` bytes between two buffers of one context (ranges checked by the caller's `addr`).
pub fn copy(
    src: &CudaBuffer,
    src_offset: usize,
    dst: &CudaBuffer,
    dst_offset: usize,
    len: usize,
) -> Result<(), DeviceError> {
    let s = src.addr(src_offset, len)?;
    let d = dst.addr(dst_offset, len)?;
    if len == 0 {
        return Ok(());
    }
    src.bind()?;
    // SAFETY: both ranges checked and inside live allocations of this context.
    unsafe { result::memcpy_dtod_sync(d, s, len) }.map_err(|e| driver("COPY_TENSOR", e))
}
