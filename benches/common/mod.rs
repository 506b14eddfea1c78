//! Shared by the benchmarks (and `examples/gpu_bench.rs`): graphs built by hand in one buffer of any
//! `Device`.
#![allow(dead_code)]

pub mod stats;

use std::sync::Arc;

use ggrpc::device::{BufferSet, Device, GraphCache};
use ggrpc::ggml::{DataRef, GgmlType, Graph, Op, Tensor, TensorFlags};

/// Builds graphs whose tensors all live in one buffer of the device under test.
pub struct Bench {
    pub dev: Arc<dyn Device>,
    pub buffers: BufferSet,
    next: usize,
    pub graph: Graph,
}

const HANDLE: u64 = 1;

impl Bench {
    pub fn new(dev: Arc<dyn Device>, size: usize) -> Self {
        let buf = dev.alloc(size).expect("alloc");
        let mut buffers = BufferSet::new();
        buffers.insert(HANDLE, buf);
        Bench {
            dev,
            buffers,
            next: 0,
            graph: Graph::default(),
        }
    }

    /// A leaf filled with a deterministic pattern (quantized types get valid small scales).
    pub fn leaf(&mut self, typ: GgmlType, ne: [usize; 4]) -> usize {
        let mut t = Tensor::new(typ, ne);
        let n = t.nbytes().expect("size");
        t.data = Some(DataRef {
            buffer: HANDLE,
            offset: self.next,
        });
        let bytes: Vec<u8> = if typ.is_quantized() {
            // Fill every block with small f16 scales (0x2000 ~ 0.0078) and varied quants.
            (0..n)
                .map(|i| {
                    if i % typ.type_size() < 2 {
                        [0x00, 0x20][i % 2]
                    } else {
                        (i * 37 % 251) as u8
                    }
                })
                .collect()
        } else if typ == GgmlType::I32 {
            (0..n / 4)
                .flat_map(|i| (i as i32 % 7).to_le_bytes())
                .collect()
        } else {
            (0..n / 4)
                .flat_map(|i| (((i % 17) as f32 - 8.0) / 16.0).to_le_bytes())
                .collect()
        };
        self.buffers[&HANDLE]
            .write(self.next, &bytes)
            .expect("write");
        self.next = (self.next + n).div_ceil(256) * 256;
        self.graph.tensors.push(t);
        self.graph.tensors.len() - 1
    }

    pub fn node(
        &mut self,
        op: Op,
        typ: GgmlType,
        ne: [usize; 4],
        srcs: &[usize],
        params: [i32; 16],
    ) -> usize {
        let mut t = Tensor::new(typ, ne);
        t.op = op;
        t.op_params = params;
        t.flags = TensorFlags::COMPUTE;
        for (k, s) in srcs.iter().enumerate() {
            t.src[k] = Some(*s);
        }
        t.data = Some(DataRef {
            buffer: HANDLE,
            offset: self.next,
        });
        self.next = (self.next + t.nbytes().expect("size")).div_ceil(256) * 256;
        self.graph.tensors.push(t);
        let i = self.graph.tensors.len() - 1;
        self.graph.nodes.push(i);
        i
    }

    pub fn run(&self) {
        self.dev
            .compute(&self.graph, &self.buffers)
            .expect("compute");
    }

    /// `run` as a stored graph runs again (GRAPH_RECOMPUTE): a GPU device replays its planned work.
    pub fn run_cached(&self, cache: &GraphCache) {
        self.dev
            .compute_cached(&self.graph, &self.buffers, cache)
            .expect("compute");
    }
}

pub fn f(v: f32) -> i32 {
    v.to_bits() as i32
}

/// One decode step of a Gemma-3-270M-shaped layer: norm, q/k/v projections, rope, attention over a
/// 256-entry f16 KV cache, output projection, gated FFN (needs about 8 MiB).
pub fn gemma_decode_layer(b: &mut Bench) {
    let (d, hd, nh, ff, kv) = (640usize, 256usize, 4usize, 2048usize, 256usize);
    let x = b.leaf(GgmlType::F32, [d, 1, 1, 1]);
    let norm_w = b.leaf(GgmlType::F32, [d, 1, 1, 1]);
    let wq = b.leaf(GgmlType::Q5_0, [d, hd * nh, 1, 1]);
    let wk = b.leaf(GgmlType::Q5_0, [d, hd, 1, 1]);
    let wo = b.leaf(GgmlType::Q4K, [hd * nh, d, 1, 1]);
    let wg = b.leaf(GgmlType::Q5_0, [d, ff, 1, 1]);
    let wu = b.leaf(GgmlType::Q5_0, [d, ff, 1, 1]);
    let wd = b.leaf(GgmlType::Q6K, [ff, d, 1, 1]);
    let pos = b.leaf(GgmlType::I32, [1, 1, 1, 1]);
    let kcache = b.leaf(GgmlType::F16, [hd, kv, 1, 1]);
    let vcache = b.leaf(GgmlType::F16, [hd, kv, 1, 1]);
    let mut eps = [0i32; 16];
    eps[0] = f(1e-6);
    let n = b.node(Op::RmsNorm, GgmlType::F32, [d, 1, 1, 1], &[x], eps);
    let n = b.node(Op::Mul, GgmlType::F32, [d, 1, 1, 1], &[n, norm_w], [0; 16]);
    let q = b.node(
        Op::MulMat,
        GgmlType::F32,
        [hd * nh, 1, 1, 1],
        &[wq, n],
        [0; 16],
    );
    b.node(Op::MulMat, GgmlType::F32, [hd, 1, 1, 1], &[wk, n], [0; 16]);
    let mut q3 = b.graph.tensors[q].clone();
    q3.ne = [hd, nh, 1, 1];
    q3.nb = [4, 4 * hd, 4 * hd * nh, 4 * hd * nh];
    q3.op = Op::Reshape;
    q3.flags = 0;
    q3.src = [None; 10];
    b.graph.tensors.push(q3);
    let q3 = b.graph.tensors.len() - 1;
    let mut rope = [0i32; 16];
    rope[1] = hd as i32;
    rope[2] = 2;
    rope[5] = f(10000.0);
    rope[6] = f(1.0);
    rope[8] = f(1.0);
    rope[9] = f(32.0);
    rope[10] = f(1.0);
    let qr = b.node(Op::Rope, GgmlType::F32, [hd, nh, 1, 1], &[q3, pos], rope);
    let mut fa = [0i32; 16];
    fa[0] = f(1.0 / 16.0);
    let mut q4 = b.graph.tensors[qr].clone();
    q4.ne = [hd, 1, nh, 1];
    q4.nb = [4, 4 * hd * nh, 4 * hd, 4 * hd * nh];
    q4.op = Op::Permute;
    q4.flags = 0;
    q4.src = [None; 10];
    b.graph.tensors.push(q4);
    let q4 = b.graph.tensors.len() - 1;
    let mut kc = b.graph.tensors[kcache].clone();
    kc.ne = [hd, kv, 1, 1];
    b.graph.tensors.push(kc);
    let kc = b.graph.tensors.len() - 1;
    let attn = b.node(
        Op::FlashAttnExt,
        GgmlType::F32,
        [hd, nh, 1, 1],
        &[q4, kc, vcache],
        fa,
    );
    let mut a2 = b.graph.tensors[attn].clone();
    a2.ne = [hd * nh, 1, 1, 1];
    a2.nb = [4, 4 * hd * nh, 4 * hd * nh, 4 * hd * nh];
    a2.op = Op::Reshape;
    a2.flags = 0;
    a2.src = [None; 10];
    b.graph.tensors.push(a2);
    let a2 = b.graph.tensors.len() - 1;
    let o = b.node(Op::MulMat, GgmlType::F32, [d, 1, 1, 1], &[wo, a2], [0; 16]);
    let h = b.node(Op::Add, GgmlType::F32, [d, 1, 1, 1], &[o, x], [0; 16]);
    let g = b.node(Op::MulMat, GgmlType::F32, [ff, 1, 1, 1], &[wg, h], [0; 16]);
    let u = b.node(Op::MulMat, GgmlType::F32, [ff, 1, 1, 1], &[wu, h], [0; 16]);
    let mut glu = [0i32; 16];
    glu[0] = 1; // GEGLU, as Gemma
    let act = b.node(Op::Glu, GgmlType::F32, [ff, 1, 1, 1], &[g, u], glu);
    b.node(Op::MulMat, GgmlType::F32, [d, 1, 1, 1], &[wd, act], [0; 16]);
}
