//! CPU kernels, one file per op family. Each kernel receives typed tensors with their bytes and must
//! index only inside them (all slice indexing is checked, a bug is a caught panic, never UB).

use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op, Tensor};

/// A source tensor and its bytes (`data[0]` is element 0; `data.len() == nbytes`). Empty when the op
/// does not read this source's contents (see `reads_src`).
pub struct Src<'a> {
    pub t: &'a Tensor,
    pub data: &'a [u8],
}

/// The node being computed and its bytes.
pub struct Dst<'a> {
    pub t: &'a Tensor,
    pub data: &'a mut [u8],
}

/// Whether `op` reads the contents of source `k` (SET_ROWS' destination, CPY's target do not count).
pub fn reads_src(op: Op, k: usize) -> bool {
    !matches!((op, k), (Op::Cpy, 1) | (Op::SetRows, 2))
}

/// Checks, before anything runs, that this CPU device implements the node (op, types, shapes).
pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let t = &graph.tensors[node];
    match t.op {
        Op::Add if t.typ == GgmlType::F32 => Ok(()),
        op => Err(format!("op {} not supported on CPU", op.name())),
    }
}

/// Runs one node.
pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let _ = (src, dst);
    Err(DeviceError::op("?", "not implemented"))
}
