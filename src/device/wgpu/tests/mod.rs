//! Tests of the wgpu device. Shader validation needs no adapter; everything else runs on the first
//! adapter found (lavapipe on the project's machines) and is skipped with a printed reason when there
//! is none, except under CI (`CI` set), where a missing adapter fails.

mod act_fusion;
mod attention;
mod bench;
mod buffers;
mod conformance;
mod counters;
mod decode;
mod exact;
mod fusion;
mod graphs;
mod jobs;
mod kernels;
mod matmul;
mod refs;
mod rows;
mod shaders;

use std::sync::Arc;

use super::WgpuDevice;
use crate::device::host_kernels::testkit::HostTensor;
use crate::device::{Buffer, BufferSet, Device, DeviceOptions};
use crate::ggml::{DataRef, Graph, Op, Tensor, TensorFlags, contiguous_strides};

/// The test device, or `None` (after printing why) when this machine has no adapter. Panics when `CI`
/// is set: CI machines have lavapipe, so a missing adapter there is a broken setup, not a skip.
pub fn device_or_skip(test: &str) -> Option<WgpuDevice> {
    device_with(test, None)
}

/// Like `device_or_skip`, with the largest storage binding lowered to `binding` bytes so that the
/// split paths for big tensors run on small data.
pub fn device_with(test: &str, binding: Option<u64>) -> Option<WgpuDevice> {
    let Some(found) = super::discovery::first_adapter() else {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: CI is set but no wgpu adapter was found (install mesa-vulkan-drivers)");
        }
        eprintln!("skipping {test}: no wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
        return None;
    };
    let opts = DeviceOptions {
        threads: 1,
        mem_cap: None,
    };
    let dev = WgpuDevice::open_limited(&found.name, &found.adapter, &opts, binding)
        .unwrap_or_else(|e| panic!("{test}: cannot open {}: {e}", found.name));
    Some(dev)
}

/// ROPE parameters: `n_dims` rotated dims, `mode` (0 normal, 2 NeoX), base 10000, no YaRN scaling.
pub fn rope_params(n_dims: i32, mode: i32) -> [i32; 16] {
    let mut p = [0i32; 16];
    (p[1], p[2], p[4]) = (n_dims, mode, 4096);
    for (k, v) in [10000.0f32, 1.0, 0.0, 1.0, 32.0, 1.0].iter().enumerate() {
        p[5 + k] = v.to_bits() as i32;
    }
    p
}

/// Builds a graph whose tensors live in device buffers, one buffer per tensor at a small offset so
/// that kernels see tensors that do not start at the buffer base.
pub struct Builder<'d> {
    pub dev: &'d WgpuDevice,
    pub graph: Graph,
    pub buffers: BufferSet,
    /// The shared buffer tensors go into (`share`): handle, next free offset, size.
    shared: Option<(u64, usize, usize)>,
}

/// Offset of every tensor inside its buffer (a multiple of 4 and of the storage offset alignment's
/// divisors, but not of the alignment itself).
const PAD: usize = 20;

impl<'d> Builder<'d> {
    pub fn new(dev: &'d WgpuDevice) -> Self {
        Builder {
            dev,
            graph: Graph::default(),
            buffers: BufferSet::new(),
            shared: None,
        }
    }

    /// From now on tensors go into one buffer of `bytes` (as a model's weights or a graph's compute
    /// buffer share one), each 32-byte aligned past PAD; `None` goes back to a buffer per tensor.
    pub fn share(&mut self, bytes: Option<usize>) {
        self.shared = bytes.map(|n| {
            let handle = self.buffers.len() as u64 + 1;
            let buf: Arc<dyn Buffer> = self.dev.alloc(n).unwrap();
            buf.fill(0, n, 0x5a).unwrap();
            self.buffers.insert(handle, buf);
            (handle, PAD, n)
        });
    }

    fn place(&mut self, mut t: Tensor, bytes: Option<&[u8]>) -> usize {
        let len = t.nbytes().unwrap();
        if let Some((handle, next, size)) = self.shared {
            assert!(next + len <= size, "the shared buffer is full");
            if let Some(b) = bytes {
                self.buffers[&handle].write(next, b).unwrap();
            }
            self.shared = Some((handle, (next + len).next_multiple_of(32), size));
            t.data = Some(DataRef {
                buffer: handle,
                offset: next,
            });
            self.graph.tensors.push(t);
            return self.graph.tensors.len() - 1;
        }
        let handle = self.buffers.len() as u64 + 1;
        let buf: Arc<dyn Buffer> = self.dev.alloc(PAD + len + 8).unwrap();
        buf.fill(0, PAD + len + 8, 0x5a).unwrap();
        if let Some(b) = bytes {
            buf.write(PAD, b).unwrap();
        }
        self.buffers.insert(handle, buf);
        t.data = Some(DataRef {
            buffer: handle,
            offset: PAD,
        });
        self.graph.tensors.push(t);
        self.graph.tensors.len() - 1
    }

    /// A leaf holding `h`'s bytes (with `h`'s strides).
    pub fn input(&mut self, h: &HostTensor) -> usize {
        self.place(h.t.clone(), Some(&h.bytes))
    }

    /// A node computing `op` into a fresh tensor shaped like `out`.
    pub fn node(&mut self, out: Tensor, op: Op, params: [i32; 16], srcs: &[usize]) -> usize {
        let mut t = out;
        t.op = op;
        t.op_params = params;
        t.flags = TensorFlags::COMPUTE;
        for (k, &s) in srcs.iter().enumerate() {
            t.src[k] = Some(s);
        }
        let i = self.place(t, None);
        self.graph.nodes.push(i);
        i
    }

    /// A view of `src`'s memory (`ne`, `nb`, `offset` bytes in), not a node.
    pub fn view(
        &mut self,
        src: usize,
        ne: [usize; 4],
        nb: Option<[usize; 4]>,
        offset: usize,
    ) -> usize {
        let s = &self.graph.tensors[src];
        let mut t = Tensor::new(s.typ, ne);
        t.nb = nb.unwrap_or_else(|| contiguous_strides(s.typ, ne));
        let mut d = s.data.unwrap();
        d.offset += offset;
        t.data = Some(d);
        t.op = Op::View;
        t.src[0] = Some(src);
        t.view_src = Some(src);
        t.view_offs = offset as u64;
        self.graph.tensors.push(t);
        self.graph.tensors.len() - 1
    }

    /// A node writing into `at`'s memory (SET_ROWS into a cache, or an aliasing node).
    pub fn node_into(&mut self, at: usize, op: Op, params: [i32; 16], srcs: &[usize]) -> usize {
        let mut t = self.graph.tensors[at].clone();
        (t.op, t.op_params, t.flags, t.src) = (op, params, TensorFlags::COMPUTE, [None; 10]);
        for (k, &s) in srcs.iter().enumerate() {
            t.src[k] = Some(s);
        }
        self.graph.tensors.push(t);
        self.graph.nodes.push(self.graph.tensors.len() - 1);
        self.graph.tensors.len() - 1
    }

    /// The current bytes of tensor `i`.
    pub fn read(&self, i: usize) -> Vec<u8> {
        let t = &self.graph.tensors[i];
        let d = t.data.unwrap();
        let mut out = vec![0u8; t.nbytes().unwrap()];
        self.buffers[&d.buffer].read(d.offset, &mut out).unwrap();
        out
    }

    /// Tensor `i` as the CPU device computes it: the graph rerun on copies of every buffer (inputs
    /// are never written by the graphs tests build, so the copies hold the original inputs).
    pub fn on_cpu(&self, i: usize) -> Vec<f32> {
        let cpu = crate::device::cpu::CpuDevice::new(1, None).unwrap();
        let mut bufs = BufferSet::new();
        for (h, b) in &self.buffers {
            let mut bytes = vec![0u8; b.size()];
            b.read(0, &mut bytes).unwrap();
            let cb = cpu.alloc(b.size()).unwrap();
            cb.write(0, &bytes).unwrap();
            bufs.insert(*h, cb);
        }
        cpu.check_graph(&self.graph).unwrap();
        cpu.compute(&self.graph, &bufs).unwrap();
        let t = &self.graph.tensors[i];
        let d = t.data.unwrap();
        let mut bytes = vec![0u8; t.nbytes().unwrap()];
        bufs[&d.buffer].read(d.offset, &mut bytes).unwrap();
        HostTensor {
            t: t.clone(),
            bytes,
        }
        .to_f32()
    }

    /// Tensor `i` as f32 values in logical order.
    pub fn read_f32(&self, i: usize) -> Vec<f32> {
        HostTensor {
            t: self.graph.tensors[i].clone(),
            bytes: self.read(i),
        }
        .to_f32()
    }
}
