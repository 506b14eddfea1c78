//! Byte fill of a buffer range (BUFFER_CLEAR with a non-zero value, MEMSET at unaligned edges), and
//! the partial edge words of an unaligned write (so that it needs no read-modify-write on the host).

use super::{Dispatch, Source, View, groups, submit};
use crate::device::DeviceError;
use crate::device::wgpu::gpu::{Gpu, WORD, align_down, align_up};

/// Sets bytes `[start, end)` of `buf` to `value`, window by window when the range exceeds one binding.
pub fn call_fill(
    gpu: &Gpu,
    buf: &wgpu::Buffer,
    start: u64,
    end: u64,
    value: u8,
) -> Result<(), DeviceError> {
    let pipeline = gpu.scoped("fill", || {
        gpu.kernels.pipeline(&gpu.device, Source::Fill, "fill")
    })?;
    // Windows start at aligned offsets, so keep each chunk well inside one binding.
    let chunk = align_down(gpu.limits.max_storage_buffer_binding_size / 2, WORD).max(WORD);
    let mut batch = Vec::new();
    let mut lo = start;
    while lo < end {
        let hi = (lo + chunk).min(end);
        let view = View::new(gpu, buf, lo, hi - lo)
            .ok_or_else(|| DeviceError::op("fill", "window does not fit a binding"))?;
        let w0 = view.window.offset;
        let nwords = align_up(hi - w0, WORD) / WORD;
        batch.push(Dispatch {
            pipeline: pipeline.clone(),
            params: vec![
                (lo - w0) as u32,
                (hi - w0) as u32,
                u32::from_ne_bytes([value; 4]),
                nwords as u32,
            ],
            bindings: vec![view.window],
            groups: groups(gpu, nwords.div_ceil(256))?,
        });
        lo = hi;
    }
    submit(gpu, &batch)
}

/// Sets the bytes `[lo, hi)` of `buf`, each range inside one word, to the matching bytes of `word`
/// (byte `k` of the little-endian word goes to address `align_down(lo, 4) + k`): one submission.
pub fn call_edges(
    gpu: &Gpu,
    buf: &wgpu::Buffer,
    edges: &[(u64, u64, u32)],
) -> Result<(), DeviceError> {
    let pipeline = gpu.scoped("write", || {
        gpu.kernels.pipeline(&gpu.device, Source::Fill, "fill")
    })?;
    let mut batch = Vec::new();
    for &(lo, hi, word) in edges {
        let view = View::new(gpu, buf, lo, hi - lo)
            .ok_or_else(|| DeviceError::op("write", "window does not fit a binding"))?;
        let w0 = view.window.offset;
        batch.push(Dispatch {
            pipeline: pipeline.clone(),
            params: vec![
                (lo - w0) as u32,
                (hi - w0) as u32,
                word,
                (align_up(hi - w0, WORD) / WORD) as u32,
            ],
            bindings: vec![view.window],
            groups: [1, 1, 1],
        });
    }
    submit(gpu, &batch)
}
