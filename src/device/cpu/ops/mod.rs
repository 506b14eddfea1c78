//! CPU kernels, one file per op family. Each kernel receives typed tensors with their bytes and must
//! index only inside them (all slice indexing is checked: a bug is a caught panic, never UB).
//!
//! Every family module exposes `check(graph, node)`, run once per graph before anything executes (op,
//! types and shapes), and `run(src, dst)`, which must also check every index it reads *from tensor
//! contents* (GET_ROWS rows, SET_ROWS targets, ...) and fail cleanly when one is out of range.

pub mod access;
mod attention;
pub use attention::run_chunked as flash_attn_chunked;
mod backward;
mod conv;
mod conv_transpose;
mod copy;
mod delta_net;
mod diag;
mod dsv4;
mod elementwise;
pub use elementwise::gelu_tables_f16;
mod get_rows;
mod hadamard;
mod im2col;
mod loss;
#[cfg(test)]
mod lowbit_tests;
mod matmul;
mod misc_gen;
mod norm;
mod optim;
mod pool;
mod reduce;
pub mod rope;
mod rows;
mod rwkv;
mod seq_io;
mod softmax;
mod spatial;
mod ssm;
#[cfg(test)]
pub mod testutil;
mod upscale;
pub mod vexp;
mod window;

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
    /// The bytes of the sources this op also updates in place (`writes_src`), by source index; `None`
    /// for every other source (whose `Src::data` is then empty).
    pub inout: [Option<&'a mut [u8]>; MAX_SRC],
}

impl<'a> Dst<'a> {
    /// A destination for an op that updates no source in place.
    pub fn new(t: &'a Tensor, data: &'a mut [u8]) -> Self {
        Dst {
            t,
            data,
            inout: Default::default(),
        }
    }
}

/// Whether `op` reads the contents of source `k` (SET_ROWS' destination, CPY's target do not count).
pub fn reads_src(op: Op, k: usize) -> bool {
    !matches!((op, k), (Op::Cpy, 1) | (Op::SetRows, 2))
}

/// Whether `op` also writes source `k`'s bytes in place (OPT_STEP_ADAMW updates its moments m and v).
/// The runner hands such a source to the kernel mutably in `Dst::inout`, never as a copy, and refuses
/// a graph where it overlaps the destination or another written source.
pub fn writes_src(op: Op, k: usize) -> bool {
    matches!((op, k), (Op::OptStepAdamw, 2 | 3))
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
        Im2col | Im2colBack | Im2col3d => (im2col::check as CheckFn, im2col::run as RunFn),
        Conv2d | Conv3d | Conv2dDw => (conv::check as CheckFn, conv::run as RunFn),
        ConvTranspose1d | ConvTranspose2d | Col2im1d => (
            conv_transpose::check as CheckFn,
            conv_transpose::run as RunFn,
        ),
        Pool1d | Pool2d | Pool2dBack => (pool::check as CheckFn, pool::run as RunFn),
        Upscale => (upscale::check as CheckFn, upscale::run as RunFn),
        PadReflect1d | Roll | Arange | TimestepEmbedding => {
            (misc_gen::check as CheckFn, misc_gen::run as RunFn)
        }
        SsmConv | SsmScan => (ssm::check as CheckFn, ssm::run as RunFn),
        RwkvWkv6 | GatedLinearAttn | RwkvWkv7 => (rwkv::check as CheckFn, rwkv::run as RunFn),
        GatedDeltaNet | SolveTri => (delta_net::check as CheckFn, delta_net::run as RunFn),
        Dsv4HcComb | Dsv4HcPre | Dsv4HcPost | LightningIndexer => {
            (dsv4::check as CheckFn, dsv4::run as RunFn)
        }
        RopeBack => (rope::check as CheckFn, rope::run as RunFn),
        SiluBack | RmsNormBack | SoftMaxBack | RepeatBack | GetRowsBack => {
            (backward::check as CheckFn, backward::run as RunFn)
        }
        CountEqual | CrossEntropyLoss | CrossEntropyLossBack => {
            (loss::check as CheckFn, loss::run as RunFn)
        }
        OptStepAdamw | OptStepSgd => (optim::check as CheckFn, optim::run as RunFn),
        Diag | Tri => (diag::check as CheckFn, diag::run as RunFn),
        WinPart | WinUnpart | GetRelPos | AddRelPos => {
            (window::check as CheckFn, window::run as RunFn)
        }
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
