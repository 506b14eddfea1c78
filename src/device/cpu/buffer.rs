//! Host memory for the CPU device: one aligned allocation per buffer, counted against the device cap.
//! Large buffers are anonymous mappings: the OS gives zero pages on first touch, so a fresh buffer
//! costs nothing until the client writes it (a model load writes each byte once, not twice), and it
//! can never show bytes another session wrote (the heap could hand back a freed buffer's pages; the
//! kernel zeroes every page it maps).

use crate::device::{Buffer, DeviceError, Usage};
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;

/// Alignment of every CPU buffer (ggml's CPU uses 32; 64 suits AVX-512 loads).
pub const CPU_BUFFER_ALIGN: usize = 64;

/// Buffers from this size on are anonymous mappings (page-aligned); smaller ones come from the heap,
/// zeroed there.
const MAP_FROM: usize = 1 << 20;

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
        } else if len >= MAP_FROM {
            // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return None;
            }
            NonNull::new(p.cast::<u8>())?
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
        if self.len >= MAP_FROM {
            // SAFETY: mapped in `new` with this exact length, unmapped once.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        } else if self.len > 0 {
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

    /// Whether the page holding `p` is resident (mincore).
    fn resident(p: *mut u8) -> bool {
        let page = 4096;
        let base = (p as usize) & !(page - 1);
        let mut v = 0u8;
        // SAFETY: `base` is the start of a page of a live mapping; mincore writes one byte.
        let r = unsafe { libc::mincore(base as *mut libc::c_void, page, &mut v) };
        assert_eq!(r, 0, "mincore");
        v & 1 == 1
    }

    /// A large buffer takes its pages from the OS on first touch: nothing is committed before the
    /// client writes, and a buffer made after another was written and freed reads as zeros.
    #[test]
    fn large_buffers_are_fresh_zero_pages_committed_on_touch() {
        let len = 8 << 20;
        let used = Arc::new(Usage::default());
        let b = CpuBuffer::new(len, used.clone()).unwrap();
        let mid = b.ptr_at(len / 2, 1).unwrap();
        assert!(!resident(mid), "a fresh buffer is not committed");
        b.fill(0, len, 0xAB).unwrap();
        assert!(resident(mid));
        drop(b);
        for _ in 0..3 {
            let b = CpuBuffer::new(len, used.clone()).unwrap();
            let mut out = vec![1u8; len];
            b.read(0, &mut out).unwrap();
            assert!(
                out.iter().all(|&v| v == 0),
                "a fresh buffer shows old bytes"
            );
            b.fill(0, len, 0xCD).unwrap();
        }
        // The heap path zeroes too.
        let small = CpuBuffer::new(4096, used.clone()).unwrap();
        let mut out = vec![1u8; 4096];
        small.read(0, &mut out).unwrap();
        assert!(out.iter().all(|&v| v == 0));
    }
}
