//! (placeholder: this family is being written)

use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{Graph, MAX_SRC};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    Err(format!(
        "{} is not implemented yet",
        graph.tensors[node].op.name()
    ))
}

pub fn run(_src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    Err(DeviceError::op(dst.t.op.name(), "not implemented yet"))
}
