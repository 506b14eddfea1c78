//! Test support: host tensors with their own bytes, a deterministic RNG, and a one-node runner that goes
//! through the same `check` + `run` path as a real graph.

use super::{Dst, Src, access};
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op, Tensor, TensorFlags};
pub use crate::testkit::{Rng, assert_close, params_f32};

/// A tensor and the bytes it owns (`bytes.len() == nbytes`).
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub t: Tensor,
    pub bytes: Vec<u8>,
}

impl HostTensor {
    /// A contiguous tensor of `typ` holding `vals` (quantized through `quant` for block types).
    pub fn from_f32(typ: GgmlType, ne: [usize; 4], vals: &[f32]) -> Self {
        let t = Tensor::new(typ, ne);
        let mut bytes = vec![0u8; t.nbytes().expect("size")];
        access::write_all(&t, &mut bytes, vals).expect("write");
        HostTensor { t, bytes }
    }

    /// A contiguous i32 tensor.
    pub fn from_i32(ne: [usize; 4], vals: &[i32]) -> Self {
        let t = Tensor::new(GgmlType::I32, ne);
        HostTensor {
            t,
            bytes: vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A contiguous i64 tensor.
    pub fn from_i64(ne: [usize; 4], vals: &[i64]) -> Self {
        let t = Tensor::new(GgmlType::I64, ne);
        HostTensor {
            t,
            bytes: vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A zeroed output tensor.
    pub fn zeros(typ: GgmlType, ne: [usize; 4]) -> Self {
        let t = Tensor::new(typ, ne);
        let n = t.nbytes().expect("size");
        HostTensor {
            t,
            bytes: vec![0; n],
        }
    }

    /// The values in logical order as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        access::read_all(&self.t, &self.bytes).expect("read")
    }

    /// The values in logical order as i32.
    pub fn to_i32(&self) -> Vec<i32> {
        self.bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// A non-contiguous copy with the same logical values: dims `perm` of a contiguous tensor stored in
    /// permuted order (ggml_permute semantics on the storage), so every stride differs from the default.
    pub fn permuted(&self, perm: [usize; 4]) -> Self {
        let vals = self.to_f32();
        let ne = self.t.ne;
        // Storage tensor has dims in order perm; the view maps logical dim d to storage dim perm[d].
        let mut sne = [0; 4];
        for d in 0..4 {
            sne[perm[d]] = ne[d];
        }
        let storage = Tensor::new(self.t.typ, sne);
        let mut view = storage.clone();
        for d in 0..4 {
            view.ne[d] = ne[d];
            view.nb[d] = storage.nb[perm[d]];
        }
        let mut bytes = vec![0u8; storage.nbytes().expect("size")];
        access::write_all(&view, &mut bytes, &vals).expect("write");
        HostTensor { t: view, bytes }
    }
}

/// Runs `op` with `params` on `srcs` into `dst` (whose type/shape/strides are taken as given), through
/// `check` then `run`. Returns the check or run error as a string.
pub fn run_op(
    op: Op,
    params: [i32; 16],
    srcs: &[Option<&HostTensor>],
    dst: &mut HostTensor,
) -> Result<(), String> {
    run_op_inout(op, params, srcs, &mut [], dst)
}

/// Like [`run_op`], with `inout` sources (index, tensor) that the op updates in place (`writes_src`);
/// their slots in `srcs` are ignored.
pub fn run_op_inout(
    op: Op,
    params: [i32; 16],
    srcs: &[Option<&HostTensor>],
    inout: &mut [(usize, &mut HostTensor)],
    dst: &mut HostTensor,
) -> Result<(), String> {
    let mut graph = Graph::default();
    let mut node = dst.t.clone();
    node.op = op;
    node.op_params = params;
    node.flags = TensorFlags::COMPUTE;
    let n_src = srcs
        .len()
        .max(inout.iter().map(|(k, _)| k + 1).max().unwrap_or(0));
    for k in 0..n_src {
        let t = match inout.iter().find(|(j, _)| *j == k) {
            Some((_, h)) => &h.t,
            None => match srcs.get(k).copied().flatten() {
                Some(s) => &s.t,
                None => continue,
            },
        };
        graph.tensors.push(t.clone());
        node.src[k] = Some(graph.tensors.len() - 1);
    }
    graph.tensors.push(node);
    let n = graph.tensors.len() - 1;
    graph.nodes.push(n);
    super::check(&graph, n)?;
    let t = &graph.tensors[n];
    let src: [Option<Src<'_>>; MAX_SRC] = std::array::from_fn(|k| {
        if inout.iter().any(|(j, _)| *j == k) {
            // Its bytes travel in `Dst::inout`.
            return Some(Src {
                t: &graph.tensors[t.src[k]?],
                data: &[],
            });
        }
        let s = srcs.get(k).copied().flatten()?;
        Some(Src {
            t: &s.t,
            data: &s.bytes,
        })
    });
    let mut d = Dst::new(t, &mut dst.bytes);
    for (k, h) in inout.iter_mut() {
        d.inout[*k] = Some(&mut h.bytes);
    }
    super::run(&src, d).map_err(|e| e.to_string())
}
