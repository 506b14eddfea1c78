//! CPU kernels, one file per op family. Each kernel receives typed tensors with their bytes and must
//! index only inside them (all slice indexing is checked: a bug is a caught panic, never UB).
//!
//! Every family module exposes `check(graph, node)`, run once per graph before anything executes (op,
//! types and shapes), and `run(src, dst)`, which must also check every index it reads *from tensor
//! contents* (GET_ROWS rows, SET_ROWS targets, ...) and fail cleanly when one is out of range.

pub mod access;
mod attention;
mod copy;
mod elementwise;
pub use elementwise::gelu_tables_f16;
mod get_rows;
#[cfg(test)]
mod lowbit_tests;
mod matmul;
mod norm;
mod reduce;
pub mod rope;
mod rows;
mod softmax;
#[cfg(test)]
pub mod testutil;
pub mod vexp;

use crate::device::DeviceError;
use crate::ggml::{Graph, MAX_SRC, Op, Tensor};

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

type CheckFn = fn(&Graph, usize) -> Result<(), String>;
type RunFn = fn(&[Option<Src<'_>>; MAX_SRC], Dst<'_>) -> Result<(), DeviceError>;

/// The family that implements `op`, if any.
fn family(op: Op) -> Option<(CheckFn, RunFn)> {
    use Op::*;
    Some(match op {
        Add | Sub | Mul | Div | Add1 | AddId | Scale | Clamp | Sqr | Sqrt | Log | Sin | Cos
        | Unary | Glu | LeakyRelu | Fill => {
            (elementwise::check as CheckFn, elementwise::run as RunFn)
        }
        Dup | Cpy | Cont | SetRows | Concat | Repeat | Pad | Set | Acc => {
            (copy::check as CheckFn, copy::run as RunFn)
        }
        Sum | SumRows | Mean | Argmax | Argsort | TopK | Cumsum => {
            (reduce::check as CheckFn, reduce::run as RunFn)
        }
        Norm | RmsNorm | L2Norm | GroupNorm => (norm::check as CheckFn, norm::run as RunFn),
        Rope => (rope::check as CheckFn, rope::run as RunFn),
        SoftMax | DiagMaskInf | DiagMaskZero => (softmax::check as CheckFn, softmax::run as RunFn),
        FlashAttnExt => (attention::check as CheckFn, attention::run as RunFn),
        MulMat | MulMatId | OutProd => (matmul::check as CheckFn, matmul::run as RunFn),
        GetRows => (get_rows::check as CheckFn, get_rows::run as RunFn),
        _ => return Option::None,
    })
}

/// Checks, before anything runs, that this CPU device implements the node (op, types, shapes).
pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let t = &graph.tensors[node];
    let (check, _) =
        family(t.op).ok_or_else(|| format!("op {} is not implemented on CPU", t.op.name()))?;
    check(graph, node)
}

/// Runs one node.
pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op;
    let (_, run) =
        family(op).ok_or_else(|| DeviceError::op(op.name(), "not implemented on CPU"))?;
    run(src, dst)
}
