//! A decoded compute graph: every reachable tensor once, sources before users, and the execution order.

use super::Tensor;

#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Leaves and nodes; `Tensor::src` indexes into this list, always pointing backwards or at itself.
    pub tensors: Vec<Tensor>,
    /// Execution order, as indices into `tensors`.
    pub nodes: Vec<usize>,
}

impl Graph {
    /// The nodes a device must run: flagged COMPUTE and not view-like.
    pub fn compute_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        self.nodes.iter().copied().filter(|&i| {
            let t = &self.tensors[i];
            t.has_flag(super::TensorFlags::COMPUTE) && !t.op.is_view()
        })
    }

    /// The source `k` of tensor `i`, if present.
    pub fn src(&self, i: usize, k: usize) -> Option<&Tensor> {
        self.tensors[i].src[k].map(|s| &self.tensors[s])
    }
}
