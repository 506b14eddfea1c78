//! Byte fill of a buffer range (BUFFER_CLEAR with a non-zero value, MEMSET at unaligned edges).

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
