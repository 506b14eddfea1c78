//! Host memory for the CPU device: one aligned allocation per buffer, counted against the device cap.

use crate::device::{Buffer, DeviceError, Usage};
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;

/// Alignment of every CPU buffer (ggml's CPU uses 32; 64 suits AVX-512 loads).
pub const CPU_BUFFER_ALIGN: usize = 64;

/// A host allocation. Concurrent access never happens: a buffer belongs to one session, and the session
/// runs its commands (and graph computations) one at a time.
pub struct CpuBuffer {
    ptr: NonNull<u8>,
    len: usize,
    /// The owning device's usage, given back on drop.
    used: Arc<Usage>,
}

// SAFETY: the buffer owns its allocation; shared access is serialized by the owning session (see above),
// and the executor only hands out non-overlapping mutable slices.
unsafe impl Send for CpuBuffer {}
// SAFETY: as for Send.
unsafe impl Sync for CpuBuffer {}

impl CpuBuffer {
    /// Allocates `len` zeroed bytes (lazily, for large sizes); `None` when the allocator refuses.
    pub(crate) fn new(len: usize, used: Arc<Usage>) -> Option<Self> {
        let ptr = if len == 0 {
            NonNull::<u64>::dangling().cast()
        } else {
            let layout = Layout::from_size_align(len, CPU_BUFFER_ALIGN).ok()?;
            // SAFETY: layout has a non-zero size.
            NonNull::new(unsafe { alloc_zeroed(layout) })?
        };
        used.buffer_created();
        Some(CpuBuffer { ptr, len, used })
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), DeviceError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(DeviceError::OutOfRange {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    /// Raw pointer to byte `offset`; the executor uses it to build non-overlapping slices.
    pub(crate) fn ptr_at(&self, offset: usize, len: usize) -> Result<*mut u8, DeviceError> {
        self.check(offset, len)?;
        // SAFETY: offset <= self.len, so the result is inside (or one past) the allocation.
        Ok(unsafe { self.ptr.as_ptr().add(offset) })
    }
}

impl Drop for CpuBuffer {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: allocated in `new` with this exact layout.
            unsafe {
                dealloc(
                    self.ptr.as_ptr(),
                    Layout::from_size_align_unchecked(self.len, CPU_BUFFER_ALIGN),
                )
            };
        }
        self.used.buffer_dropped(self.len as u64);
    }
}

impl Buffer for CpuBuffer {
    fn size(&self) -> usize {
        self.len
    }

    fn write(&self, offset: usize, data: &[u8]) -> Result<(), DeviceError> {
        let dst = self.ptr_at(offset, data.len())?;
        // SAFETY: range checked; `data` is a caller slice and cannot alias this allocation mutably.
        unsafe { std::ptr::copy(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), DeviceError> {
        let src = self.ptr_at(offset, out.len())?;
        // SAFETY: range checked; `out` is an exclusive caller slice.
        unsafe { std::ptr::copy(src, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), DeviceError> {
        let dst = self.ptr_at(offset, len)?;
        // SAFETY: range checked.
        unsafe { std::ptr::write_bytes(dst, value, len) };
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_fill_and_bounds() {
        let used = Arc::new(Usage::default());
        used.bytes.store(64, std::sync::atomic::Ordering::Relaxed); // as reserve_and_alloc does
        let b = CpuBuffer::new(64, used.clone()).unwrap();
        assert_eq!(used.buffers(), 1);
        assert_eq!(b.ptr_at(0, 0).unwrap() as usize % CPU_BUFFER_ALIGN, 0);
        b.fill(0, 64, 7).unwrap();
        b.write(60, &[1, 2, 3, 4]).unwrap();
        let mut out = [0u8; 6];
        b.read(58, &mut out).unwrap();
        assert_eq!(out, [7, 7, 1, 2, 3, 4]);
        assert!(b.write(61, &[0; 4]).is_err());
        assert!(b.read(usize::MAX, &mut out).is_err());
        assert!(b.fill(64, 1, 0).is_err());
        drop(b);
        assert_eq!((used.bytes(), used.buffers()), (0, 0));
    }
}
