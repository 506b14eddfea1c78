//! MUL_MAT: quantized weights times F32 activations through `k_quantize_q8_1` (each activation column
//! into 36-byte q8_1 blocks in scratch) and `k_mul_mat_vec_q` (one warp a row, dp4a block sums, warp
//! reduction; prompts (16 columns or more) of the types `mma_ok` lists through `k_mul_mat_q_mma` on
//! int8 tensor cores); F32/F16/BF16 weights through `k_mul_mat_f`.

use bytemuck::{Pod, Zeroable};

use super::{Ctx, CuTensor, Family, Launch};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct QuantizeP {
    pub x: CuTensor,
    pub q: u64,
    pub blocks_per_row: i64,
    /// 0: q8_1 blocks (ggml's Q8_0/Q8_1 activations); 1: Q8_K's per-256 f32 scale in each block
    /// (the K-quants' activations), so the integer sums are ggml-cpu's.
    pub mode: i32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct MatVecP {
    pub w: CuTensor,
    pub x: CuTensor,
    pub d: CuTensor,
    pub xq: u64,
    pub blocks_per_row: i64,
    pub r2: i32,
    pub r3: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct MatMulFP {
    pub w: CuTensor,
    pub x: CuTensor,
    pub d: CuTensor,
    pub r2: i32,
    pub r3: i32,
}

/// Columns from which the tensor-core kernel pays (below, every column re-reading the weights is
/// cheaper than idle tile columns).
const MMA_MIN_COLS: u64 = 16;

/// The weight types `k_mul_mat_q_mma` can take (all tested against the mat-vec kernel).
pub const MMA_TYPES: [GgmlType; 10] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

/// The types the tensor-core kernel takes by default. Every type of `MMA_TYPES` is within float
/// summation order of the mat-vec kernel (and of ggml-cpu) op by op, but Gemma 3 270M's logits sit
/// at the edge of the bound with any non-bit-identical arithmetic (README, "Devices"): through the
/// emulator, Q8_0/Q4_0 on tensor cores gave top-1 127/130, every type 124/130, none 123/130. Until the
/// epilogues follow ggml-cpu's float order, the default is the configuration measured inside it.
pub const MMA_DEFAULT: [GgmlType; 2] = [GgmlType::Q4_0, GgmlType::Q8_0];

/// Which weight types take the tensor-core kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mma {
    Off,
    Default,
    All,
}

impl Mma {
    /// `GGRPC_CUDA_MMA`: `0` off, `all` every type of `MMA_TYPES`, else `MMA_DEFAULT`.
    pub fn from_env() -> Mma {
        match std::env::var("GGRPC_CUDA_MMA").as_deref() {
            Ok("0") => Mma::Off,
            Ok("all") => Mma::All,
            _ => Mma::Default,
        }
    }
}

/// Whether `k_mul_mat_q_mma` runs `typ` here (sm_80 or newer).
fn mma_ok(ctx: &Ctx, typ: GgmlType) -> bool {
    let listed = match ctx.target.mma() {
        Mma::Off => false,
        Mma::Default => MMA_DEFAULT.contains(&typ),
        Mma::All => MMA_TYPES.contains(&typ),
    };
    listed && ctx.arch() >= 80
}

/// Bytes of one q8_1 block (f16 scale, f16 sum, 32 int8).
const Q8_1_BYTES: u64 = 36;

/// Block weight types: the mat-vec kernel takes every one, the tensor-core kernel too.
fn quantized(t: GgmlType) -> bool {
    MMA_TYPES.contains(&t)
}

/// Shapes both kernels take: d = [M, N, ne12, ne13], weights broadcast over the batch dims.
fn shapes(w: &Tensor, x: &Tensor, t: &Tensor) -> Option<(i32, i32)> {
    let ok = x.typ == GgmlType::F32
        && t.typ == GgmlType::F32
        && w.ne[0] == x.ne[0]
        && t.ne == [w.ne[1], x.ne[1], x.ne[2], x.ne[3]]
        && w.ne[2] > 0
        && w.ne[3] > 0
        && x.ne[2].is_multiple_of(w.ne[2])
        && x.ne[3].is_multiple_of(w.ne[3]);
    ok.then(|| {
        (
            i32::try_from(x.ne[2] / w.ne[2]).ok(),
            i32::try_from(x.ne[3] / w.ne[3]).ok(),
        )
    })
    .and_then(|(a, b)| Some((a?, b?)))
}

/// Scratch bytes a MUL_MAT node takes (its quantized activation).
pub fn scratch_bytes(graph: &Graph, node: usize) -> u64 {
    let (Some(w), Some(x)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return 0;
    };
    if !quantized(w.typ) {
        return 0;
    }
    let cols = (x.ne[1] * x.ne[2] * x.ne[3]) as u64;
    cols * (x.ne[0] as u64).div_ceil(32) * Q8_1_BYTES
}

pub fn plan(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Launch>>, DeviceError> {
    let t = &graph.tensors[node];
    let (Some(w), Some(x)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return Ok(None);
    };
    let Some((r2, r3)) = shapes(w, x, t) else {
        return Ok(None);
    };
    let (m, n, batch) = (t.ne[0] as u64, t.ne[1] as u64, (t.ne[2] * t.ne[3]) as u64);
    let grid = (m.div_ceil(4), n, batch);
    let (wt, xt, dt) = (
        ctx.src(graph, node, 0)?,
        ctx.src(graph, node, 1)?,
        ctx.tensor(t)?,
    );
    if matches!(w.typ, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16) {
        let Some(func) = ctx.function(Family::MatMul, "k_mul_mat_f") else {
            return Ok(None);
        };
        let p = MatMulFP {
            w: wt,
            x: xt,
            d: dt,
            r2,
            r3,
        };
        return Ok(Launch::one(func, grid, (32, 4, 1), 0, &p));
    }
    let k = w.ne[0];
    if !quantized(w.typ) || !k.is_multiple_of(w.typ.block_size()) {
        return Ok(None);
    }
    let (Some(fq), Some(fv)) = (
        ctx.function(Family::MatMul, "k_quantize_q8_1"),
        ctx.function(Family::MatMul, "k_mul_mat_vec_q"),
    ) else {
        return Ok(None);
    };
    let bpr = (k / 32) as u64;
    let Some(xq) = ctx.scratch.region(n * batch * bpr * Q8_1_BYTES) else {
        return Ok(None);
    };
    let q = QuantizeP {
        x: xt,
        q: xq,
        blocks_per_row: bpr as i64,
        mode: i32::from(w.typ.block_size() == 256),
        pad: 0,
    };
    let v = MatVecP {
        w: wt,
        x: xt,
        d: dt,
        xq,
        blocks_per_row: bpr as i64,
        r2,
        r3,
    };
    let quant = Launch::new(fq, (bpr.div_ceil(8), n, batch), (32, 8, 1), 0, &q);
    let dot = match ctx.function(Family::MatMul, "k_mul_mat_q_mma") {
        // Prompts on int8 tensor cores: 64×16 tiles, one k32 step per 32-value chunk.
        Some(mma) if n >= MMA_MIN_COLS && mma_ok(ctx, w.typ) => Launch::new(
            mma,
            (m.div_ceil(64), n.div_ceil(16), batch),
            (32, 4, 1),
            0,
            &v,
        ),
        _ => Launch::new(fv, grid, (32, 4, 1), 0, &v),
    };
    Ok(quant.zip(dot).map(|(a, b)| vec![a, b]))
}
