//! The batch encoder: a run of dispatches becomes one uniform buffer (a parameter slot each), one
//! command buffer with one compute pass, one submission.

use super::Window;
use crate::device::DeviceError;
use crate::device::wgpu::gpu::Gpu;

/// One compute dispatch, ready to encode.
pub struct Dispatch {
    pub pipeline: wgpu::ComputePipeline,
    /// The uniform `P`, as 32-bit words.
    pub params: Vec<u32>,
    /// Storage bindings 1, 2, ...
    pub bindings: Vec<Window>,
    pub groups: [u32; 3],
}

/// Largest parameter block (bytes); one slot per dispatch in the batch's uniform buffer. The slot's
/// words past a dispatch's `params` are zero: kernels read their `zero` member (exact.wgsl) there.
const PARAM_SLOT: u64 = 256;

/// Encodes `batch` into one command buffer (one compute pass) and submits it. Does not wait.
pub fn submit(gpu: &Gpu, batch: &[Dispatch]) -> Result<(), DeviceError> {
    if batch.is_empty() {
        return Ok(());
    }
    let slot = PARAM_SLOT.max(u64::from(gpu.limits.min_uniform_buffer_offset_alignment));
    let mut bytes = vec![0u8; slot as usize * batch.len()];
    for (i, d) in batch.iter().enumerate() {
        let p: &[u8] = bytemuck::cast_slice(&d.params);
        if p.len() as u64 > PARAM_SLOT {
            return Err(DeviceError::op("wgpu", "parameter block too large"));
        }
        bytes[i * slot as usize..][..p.len()].copy_from_slice(p);
    }
    gpu.scoped("dispatch", || {
        let params = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ggrpc-params"),
            size: bytes.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue.write_buffer(&params, 0, &bytes);
        let groups: Vec<wgpu::BindGroup> =
            batch
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &params,
                            offset: i as u64 * slot,
                            size: wgpu::BufferSize::new(PARAM_SLOT),
                        }),
                    }];
                    entries.extend(d.bindings.iter().enumerate().map(|(k, w)| {
                        wgpu::BindGroupEntry {
                            binding: k as u32 + 1,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &w.buffer,
                                offset: w.offset,
                                size: wgpu::BufferSize::new(w.size),
                            }),
                        }
                    }));
                    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &d.pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    })
                })
                .collect();
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            for (d, g) in batch.iter().zip(&groups) {
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, g, &[]);
                pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
            }
        }
        gpu.queue.submit([enc.finish()]);
    })
}

/// Workgroup counts for `n` workgroups, folded into y when x would pass the per-dimension limit.
/// Shaders recover the linear index as `wg.x + wg.y * num_workgroups.x`.
pub fn groups(gpu: &Gpu, n: u64) -> Result<[u32; 3], DeviceError> {
    let max = u64::from(gpu.limits.max_compute_workgroups_per_dimension.max(1));
    let n = n.max(1);
    let x = n.min(max);
    let y = n.div_ceil(x);
    if y > max {
        return Err(DeviceError::op("wgpu", "dispatch too large"));
    }
    Ok([x as u32, y as u32, 1])
}
