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
const PARAM_SLOT: u64 = 512;

/// Encodes `batch` into one command buffer (one compute pass) and submits it. Does not wait.
pub fn submit(gpu: &Gpu, batch: &[Dispatch]) -> Result<(), DeviceError> {
    encode(gpu, batch)?.submit(gpu)
}

/// A batch ready to run any number of times: its parameter buffer and bind groups are built once, so
/// a rerun only records the pass again.
pub struct Encoded {
    /// Kept alive for the bind groups.
    _params: Option<wgpu::Buffer>,
    passes: Vec<(wgpu::ComputePipeline, wgpu::BindGroup, [u32; 3])>,
}

/// Writes the batch's parameters and creates its bind groups.
pub fn encode(gpu: &Gpu, batch: &[Dispatch]) -> Result<Encoded, DeviceError> {
    if batch.is_empty() {
        return Ok(Encoded {
            _params: None,
            passes: Vec::new(),
        });
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
    gpu.scoped("encode", || {
        let params = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ggrpc-params"),
            size: bytes.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue.write_buffer(&params, 0, &bytes);
        let passes =
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
                    let group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &d.pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    });
                    (d.pipeline.clone(), group, d.groups)
                })
                .collect();
        Encoded {
            _params: Some(params),
            passes,
        }
    })
}

impl Encoded {
    /// Records the batch into one command buffer (one compute pass) and submits it. Does not wait.
    pub fn submit(&self, gpu: &Gpu) -> Result<(), DeviceError> {
        self.submit_with(gpu, |_| false)
    }

    /// `submit`, with `tail` recording more commands after the pass into the last command buffer
    /// (it says whether it recorded any, so that a batch without dispatches still submits them).
    /// A long batch goes in `PIECES` command buffers, each submitted once recorded, so the GPU starts
    /// on the first while the host records the rest (queue order keeps their dependencies).
    pub fn submit_with(
        &self,
        gpu: &Gpu,
        tail: impl FnOnce(&mut wgpu::CommandEncoder) -> bool,
    ) -> Result<(), DeviceError> {
        let n = self.passes.len();
        let per = if n >= SPLIT_FROM {
            n.div_ceil(PIECES)
        } else {
            n.max(1)
        };
        gpu.scoped("dispatch", || {
            let mut pieces = self.passes.chunks(per).peekable();
            if pieces.peek().is_none() {
                let mut enc = gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
                if tail(&mut enc) {
                    gpu.submit(enc.finish(), 0);
                }
                return;
            }
            let mut tail = Some(tail);
            while let Some(piece) = pieces.next() {
                let mut enc = gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                    for (pipeline, group, g) in piece {
                        pass.set_pipeline(pipeline);
                        pass.set_bind_group(0, group, &[]);
                        pass.dispatch_workgroups(g[0], g[1], g[2]);
                    }
                }
                if pieces.peek().is_none()
                    && let Some(t) = tail.take()
                {
                    t(&mut enc);
                }
                gpu.submit(enc.finish(), piece.len() as u64);
            }
        })
    }
}

/// Batches of at least this many dispatches are submitted in `PIECES` command buffers.
const SPLIT_FROM: usize = 96;
const PIECES: usize = 3;

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
