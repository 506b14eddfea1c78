//! ggml's data model, as it travels in RPC v7: types, ops, tensors and graphs. Knows no backend.

mod graph;
mod op;
mod tensor;
mod types;

pub use graph::Graph;
pub use op::{GluOp, Op, UnaryOp};
pub use tensor::{DataRef, MAX_DIMS, MAX_SRC, Tensor, TensorFlags, contiguous_strides, nbytes};
pub use types::GgmlType;
