//! Runs `shaders/probe.wgsl`: one float primitive over many (a, b, c) triples on this adapter. Tests
//! compare the results with the host's IEEE arithmetic.

use super::gpu::Gpu;
use super::kernels::{Dispatch, Kernels, Source, Window, groups, submit};
use crate::device::DeviceError;

/// The primitives probe.wgsl evaluates (its op codes).
#[derive(Clone, Copy, Debug)]
#[repr(u32)]
pub enum Op {
    /// `a * b + c` as written.
    MulAdd = 0,
    /// WGSL's `fma()`.
    Fma = 1,
    /// exact.wgsl's `fmaf`.
    FmaExact = 2,
    Div = 3,
    Sqrt = 4,
    /// The error term of exact.wgsl's `two_sum(a, b)`.
    TwoSumErr = 5,
    /// The error term of exact.wgsl's `two_prod(a, b)`.
    TwoProdErr = 6,
    Exp = 7,
    /// exact.wgsl's `expf_libm` (glibc's expf).
    ExpLibm = 8,
    /// exact.wgsl's `v_expf` (ggml's vector expf).
    ExpVec = 9,
}

/// `op` applied to every triple, on the GPU.
pub fn eval(gpu: &Gpu, op: Op, xs: &[[f32; 3]]) -> Result<Vec<f32>, DeviceError> {
    eval_with(gpu, &gpu.kernels, op, xs)
}

/// `eval` with pipelines from `kernels` (tests compile them with other constants).
pub fn eval_with(
    gpu: &Gpu,
    kernels: &Kernels,
    op: Op,
    xs: &[[f32; 3]],
) -> Result<Vec<f32>, DeviceError> {
    let n = u32::try_from(xs.len()).map_err(|_| DeviceError::op("probe", "too many inputs"))?;
    let bytes: &[u8] = bytemuck::cast_slice(xs);
    let make = |size: u64| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ggrpc-probe"),
            size: size.max(16),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    };
    let (input, output) = gpu.scoped("probe", || {
        let input = make(bytes.len() as u64);
        gpu.queue.write_buffer(&input, 0, bytes);
        (input, make(4 * u64::from(n)))
    })?;
    let window = |b: &wgpu::Buffer| Window {
        buffer: b.clone(),
        offset: 0,
        size: b.size(),
    };
    let d = Dispatch {
        pipeline: kernels.pipeline(&gpu.device, Source::Probe, "probe"),
        params: vec![op as u32, n, 0],
        bindings: vec![window(&input), window(&output)],
        groups: groups(gpu, u64::from(n).div_ceil(64))?,
    };
    submit(gpu, &[d])?;
    let out = gpu.read_words(&output, 0, 4 * u64::from(n))?;
    Ok(bytemuck::pod_collect_to_vec(&out))
}

/// Whether this device's `fma()` rounds once, judged on products that nearly cancel the addend (where
/// a separate multiply and add loses the low bits). lavapipe's does not.
pub fn fma_is_fused(gpu: &Gpu) -> bool {
    let xs: Vec<[f32; 3]> = (1..=256u32)
        .map(|i| {
            let a = 1.0 + i as f32 * f32::EPSILON * 3.0;
            let b = 1.0 - i as f32 * f32::EPSILON * 5.0;
            [a, b, -(a * b)]
        })
        .collect();
    match eval(gpu, Op::Fma, &xs) {
        Ok(got) => got
            .iter()
            .zip(&xs)
            .all(|(g, x)| g.to_bits() == x[0].mul_add(x[1], x[2]).to_bits()),
        Err(e) => {
            tracing::warn!("fma probe failed ({e}); emulating fused multiply-adds");
            false
        }
    }
}
