//! The conformance table: at least one case per op of ggml's op table (views and custom ops aside), per
//! UNARY and GLU variant, and per weight type in MUL_MAT and GET_ROWS. Shapes are small and odd-sized
//! so they cross block, row and workgroup boundaries; tolerances are test-backend-ops' for the op.

use super::{Case, CaseBuilder};
use crate::device::host_kernels::testkit::HostTensor;
use crate::ggml::{GgmlType, GluOp, Op, UnaryOp};
use crate::quant;

use GgmlType::{F16, F32, I32};

/// Exact ops (copies, integer results) and ggml's default for float ops.
pub(super) const EXACT: f64 = 0.0;
pub(super) const DEFAULT: f64 = 1e-7;
/// Matrix products and attention (test-backend-ops: 5e-4).
pub(super) const MATMUL: f64 = 5e-4;

/// op_params from i32 values.
pub fn pi(v: &[i32]) -> [i32; 16] {
    let mut p = [0; 16];
    p[..v.len()].copy_from_slice(v);
    p
}

/// op_params from f32 values.
pub fn pf(v: &[f32]) -> [i32; 16] {
    let mut p = [0; 16];
    for (o, x) in p.iter_mut().zip(v) {
        *o = x.to_bits() as i32;
    }
    p
}

/// Stores f32 `v` at `p[i]`.
pub(super) fn with_f32(mut p: [i32; 16], i: usize, v: f32) -> [i32; 16] {
    p[i] = v.to_bits() as i32;
    p
}

/// A leaf of `typ` with bytes that decode to finite values for any block format (every byte below
/// 0x3c keeps each f16/f32 scale finite and below 1), for types ggml cannot quantize to.
fn raw_leaf(b: &mut CaseBuilder, typ: GgmlType, ne: [usize; 4]) -> usize {
    let t = crate::ggml::Tensor::new(typ, ne);
    let n = t.nbytes().expect("size");
    let bytes = (0..n).map(|_| (b.rng.next_u64() % 0x3c) as u8).collect();
    b.leaf(HostTensor { t, bytes })
}

/// A weight leaf: quantized from random values where `quant` can, else raw finite blocks.
fn weights(b: &mut CaseBuilder, typ: GgmlType, ne: [usize; 4]) -> usize {
    let probe = vec![0f32; typ.block_size()];
    let mut out = vec![0u8; typ.type_size()];
    if quant::quantize_row(typ, &probe, &mut out).is_ok() {
        b.rand(typ, ne, -1.0, 1.0)
    } else {
        raw_leaf(b, typ, ne)
    }
}

pub(super) fn case(seed: u64, name: String, tol: f64, f: impl FnOnce(&mut CaseBuilder)) -> Case {
    let mut b = CaseBuilder::new(seed);
    f(&mut b);
    b.finish(name, tol)
}

/// Every case.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    elementwise(&mut v);
    reductions(&mut v);
    layout(&mut v);
    products(&mut v);
    rows_and_attention(&mut v);
    super::cases_more::all(&mut v);
    super::cases_conv::all(&mut v);
    super::cases_seq::all(&mut v);
    v
}

fn elementwise(v: &mut Vec<Case>) {
    for (op, typ) in [
        (Op::Add, F32),
        (Op::Add, F16),
        (Op::Sub, F32),
        (Op::Mul, F32),
        (Op::Div, F32),
    ] {
        v.push(case(
            1,
            format!("{}_{}", op.name(), typ.name()),
            DEFAULT,
            |b| {
                let x = b.rand(typ, [33, 5, 3, 2], -1.0, 1.0);
                let y = b.rand(typ, [33, 1, 3, 1], 0.5, 1.5);
                b.node(typ, [33, 5, 3, 2], op, [0; 16], &[x, y]);
            },
        ));
    }
    v.push(case(2, "ADD_ID".into(), DEFAULT, |b| {
        let x = b.rand(F32, [16, 3, 4, 1], -1.0, 1.0);
        let y = b.rand(F32, [16, 5, 1, 1], -1.0, 1.0);
        let ids = b.ints([3, 4, 1, 1], &[0, 4, 2, 1, 1, 3, 4, 0, 2, 3, 3, 1]);
        b.node(F32, [16, 3, 4, 1], Op::AddId, [0; 16], &[x, y, ids]);
    }));
    v.push(case(3, "ADD1".into(), DEFAULT, |b| {
        let x = b.rand(F32, [10, 5, 1, 1], -1.0, 1.0);
        let y = b.rand(F32, [1, 1, 1, 1], -1.0, 1.0);
        b.node(F32, [10, 5, 1, 1], Op::Add1, [0; 16], &[x, y]);
    }));
    for (op, typ, params, lo) in [
        (Op::Scale, F32, pf(&[2.0, 0.5]), -1.0),
        (Op::Clamp, F32, pf(&[-0.5, 0.5]), -1.0),
        (Op::Sqr, F32, [0; 16], -1.0),
        (Op::Sqrt, F32, [0; 16], 0.1),
        (Op::Log, F32, [0; 16], 0.1),
        (Op::Sin, F32, [0; 16], -3.0),
        (Op::Cos, F32, [0; 16], -3.0),
        (Op::LeakyRelu, F32, pf(&[0.1]), -1.0),
        (Op::Fill, F32, pf(&[1.5]), -1.0),
    ] {
        v.push(case(
            4,
            format!("{}_{}", op.name(), typ.name()),
            DEFAULT,
            |b| {
                let x = b.rand(typ, [67, 3, 2, 1], lo, 2.0);
                b.node(typ, [67, 3, 2, 1], op, params, &[x]);
            },
        ));
    }
    for u in (0..UnaryOp::COUNT).filter_map(UnaryOp::from_u32) {
        for typ in [F32, F16] {
            let mut p = pi(&[u as i32]);
            if u == UnaryOp::Xielu {
                p = with_f32(
                    with_f32(with_f32(with_f32(p, 1, 0.8), 2, 0.8), 3, 0.5),
                    4,
                    1e-6,
                );
            }
            v.push(case(
                5,
                format!("UNARY_{}_{}", u.name(), typ.name()),
                DEFAULT,
                |b| {
                    let x = b.rand(typ, [67, 3, 2, 1], -3.0, 3.0);
                    b.node(typ, [67, 3, 2, 1], Op::Unary, p, &[x]);
                },
            ));
        }
    }
    for g in (0..GluOp::COUNT).filter_map(GluOp::from_u32) {
        let mut p = pi(&[g as i32, 0]);
        if matches!(g, GluOp::SwigluOai | GluOp::SwigluClamp) {
            p = with_f32(with_f32(p, 2, 1.702), 3, 7.0);
        }
        v.push(case(6, format!("GLU_{}", g.name()), DEFAULT, |b| {
            let x = b.rand(F32, [2 * 35, 3, 2, 1], -3.0, 3.0);
            b.node(F32, [35, 3, 2, 1], Op::Glu, p, &[x]);
        }));
        v.push(case(7, format!("GLU_{}_split", g.name()), DEFAULT, |b| {
            let x = b.rand(F32, [35, 3, 2, 1], -3.0, 3.0);
            let y = b.rand(F32, [35, 3, 2, 1], -3.0, 3.0);
            b.node(F32, [35, 3, 2, 1], Op::Glu, p, &[x, y]);
        }));
    }
}

fn reductions(v: &mut Vec<Case>) {
    let shape = [33, 7, 3, 1];
    for (op, out, typ, params, tol) in [
        (Op::Sum, [1, 1, 1, 1], F32, [0; 16], DEFAULT),
        (Op::SumRows, [1, 7, 3, 1], F32, [0; 16], DEFAULT),
        (Op::Mean, [1, 7, 3, 1], F32, [0; 16], DEFAULT),
        (Op::Cumsum, shape, F32, [0; 16], DEFAULT),
        (Op::Argsort, shape, I32, pi(&[0]), EXACT),
        (Op::TopK, [5, 7, 3, 1], I32, [0; 16], EXACT),
        (Op::Norm, shape, F32, pf(&[1e-5]), DEFAULT),
        (Op::RmsNorm, shape, F32, pf(&[1e-6]), DEFAULT),
        (Op::L2Norm, shape, F32, pf(&[1e-12]), DEFAULT),
        (
            Op::GroupNorm,
            shape,
            F32,
            with_f32(pi(&[3]), 1, 1e-6),
            DEFAULT,
        ),
        (Op::SoftMax, shape, F32, pf(&[0.5, 0.0]), DEFAULT),
        (Op::DiagMaskInf, shape, F32, pi(&[2]), EXACT),
        (Op::DiagMaskZero, shape, F32, pi(&[2]), EXACT),
    ] {
        v.push(case(10, op.name().into(), tol, |b| {
            let x = b.rand(F32, shape, -2.0, 2.0);
            b.node(typ, out, op, params, &[x]);
        }));
    }
    v.push(case(11, "ARGMAX".into(), EXACT, |b| {
        let x = b.rand(F32, [33, 7, 1, 1], -2.0, 2.0);
        b.node(I32, [7, 1, 1, 1], Op::Argmax, [0; 16], &[x]);
    }));
    v.push(case(12, "SOFT_MAX_mask".into(), DEFAULT, |b| {
        let x = b.rand(F32, [33, 7, 3, 1], -2.0, 2.0);
        let m = b.rand(F16, [33, 7, 1, 1], -1.0, 1.0);
        b.node(F32, [33, 7, 3, 1], Op::SoftMax, pf(&[0.5, 0.0]), &[x, m]);
    }));
}

fn layout(v: &mut Vec<Case>) {
    for op in [Op::Dup, Op::Cont] {
        v.push(case(20, format!("{}_permuted", op.name()), EXACT, |b| {
            let x = HostTensor::from_f32(F32, [6, 5, 4, 1], &b.rng.vec(120, -1.0, 1.0));
            let x = b.leaf(x.permuted([2, 0, 1, 3]));
            b.node(F32, [6, 5, 4, 1], op, [0; 16], &[x]);
        }));
    }
    for typ in GgmlType::ALL {
        let probe = vec![0f32; typ.block_size()];
        let mut out = vec![0u8; typ.type_size()];
        if quant::quantize_row(typ, &probe, &mut out).is_err() {
            continue;
        }
        let tol = if typ.is_quantized() { 1e-6 } else { EXACT };
        v.push(case(21, format!("CPY_f32_{}", typ.name()), tol, |b| {
            let x = b.rand(F32, [256, 3, 2, 1], -1.0, 1.0);
            let target = b.leaf(HostTensor::zeros(typ, [256, 3, 2, 1]));
            b.node_into(target, Op::Cpy, [0; 16], &[x, target]);
        }));
        v.push(case(22, format!("SET_ROWS_{}", typ.name()), tol, |b| {
            let x = b.rand(F32, [256, 3, 1, 1], -1.0, 1.0);
            let idx = b.longs([3, 1, 1, 1], &[5, 0, 2]);
            let target = b.leaf(HostTensor::zeros(typ, [256, 7, 1, 1]));
            b.node_into(target, Op::SetRows, [0; 16], &[x, idx]);
        }));
    }
    v.push(case(23, "CONCAT".into(), EXACT, |b| {
        let x = b.rand(F32, [8, 3, 2, 1], -1.0, 1.0);
        let y = b.rand(F32, [8, 4, 2, 1], -1.0, 1.0);
        b.node(F32, [8, 7, 2, 1], Op::Concat, pi(&[1]), &[x, y]);
    }));
    v.push(case(24, "REPEAT".into(), EXACT, |b| {
        let x = b.rand(F32, [4, 1, 3, 1], -1.0, 1.0);
        b.node(F32, [8, 2, 3, 1], Op::Repeat, [0; 16], &[x]);
    }));
    v.push(case(25, "PAD".into(), EXACT, |b| {
        let x = b.rand(F32, [5, 3, 2, 1], -1.0, 1.0);
        b.node(F32, [8, 4, 2, 1], Op::Pad, pi(&[1, 2, 0, 1]), &[x]);
    }));
    for op in [Op::Set, Op::Acc] {
        v.push(case(26, op.name().into(), DEFAULT, |b| {
            let x = b.rand(F32, [10, 5, 4, 1], -1.0, 1.0);
            let y = b.rand(F32, [4, 3, 2, 1], -1.0, 1.0);
            b.node(F32, [10, 5, 4, 1], op, pi(&[40, 200, 800, 44, 0]), &[x, y]);
        }));
    }
}

fn products(v: &mut Vec<Case>) {
    for typ in GgmlType::ALL {
        if quant::dot_fn(typ).is_none() {
            continue;
        }
        // 19 columns: prompt kernels (tiles, tensor cores) with ragged tails.
        for n in [1, 9, 19] {
            v.push(case(
                30,
                format!("MUL_MAT_{}_n{n}", typ.name()),
                MATMUL,
                |b| {
                    let a = weights(b, typ, [256, 17, 1, 1]);
                    let x = b.rand(F32, [256, n, 2, 1], -1.0, 1.0);
                    b.node(F32, [17, n, 2, 1], Op::MulMat, [0; 16], &[a, x]);
                },
            ));
        }
    }
    // Several prompt tiles with partial ones in both dimensions (64x16 on CUDA's tensor cores), K
    // two superblocks: a 32-value type with a min, a K-quant with mins, one with 16-value scales.
    for typ in [GgmlType::Q4_1, GgmlType::Q4K, GgmlType::Q6K] {
        v.push(case(
            33,
            format!("MUL_MAT_{}_m70_n40", typ.name()),
            MATMUL,
            |b| {
                let a = weights(b, typ, [512, 70, 1, 1]);
                let x = b.rand(F32, [512, 40, 1, 1], -1.0, 1.0);
                b.node(F32, [70, 40, 1, 1], Op::MulMat, [0; 16], &[a, x]);
            },
        ));
    }
    for typ in [F32, F16, GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4K] {
        v.push(case(
            31,
            format!("MUL_MAT_ID_{}", typ.name()),
            MATMUL,
            |b| {
                let a = weights(b, typ, [256, 8, 4, 1]);
                let x = b.rand(F32, [256, 2, 3, 1], -1.0, 1.0);
                let ids = b.ints([2, 3, 1, 1], &[0, 3, 2, 1, 3, 0]);
                b.node(F32, [8, 2, 3, 1], Op::MulMatId, [0; 16], &[a, x, ids]);
            },
        ));
    }
    v.push(case(32, "OUT_PROD".into(), MATMUL, |b| {
        let a = b.rand(F32, [8, 5, 1, 1], -1.0, 1.0);
        let x = b.rand(F32, [6, 5, 1, 1], -1.0, 1.0);
        b.node(F32, [8, 6, 1, 1], Op::OutProd, [0; 16], &[a, x]);
    }));
}

fn rows_and_attention(v: &mut Vec<Case>) {
    for typ in GgmlType::ALL {
        if !quant::can_dequantize(typ) {
            continue;
        }
        v.push(case(40, format!("GET_ROWS_{}", typ.name()), EXACT, |b| {
            let a = weights(b, typ, [256, 10, 1, 1]);
            let idx = b.ints([4, 1, 1, 1], &[9, 0, 3, 3]);
            b.node(F32, [256, 4, 1, 1], Op::GetRows, [0; 16], &[a, idx]);
        }));
    }
    for (mode, n_dims) in [(0, 64), (2, 32)] {
        let mut p = pi(&[0, n_dims, mode, 0, 4096]);
        for (k, x) in [10000.0f32, 1.0, 0.0, 1.0, 32.0, 1.0].iter().enumerate() {
            p = with_f32(p, 5 + k, *x);
        }
        v.push(case(41, format!("ROPE_mode{mode}"), DEFAULT, |b| {
            let x = b.rand(F32, [64, 3, 5, 1], -1.0, 1.0);
            let pos = b.ints([5, 1, 1, 1], &[0, 1, 7, 100, 511]);
            b.node(F32, [64, 3, 5, 1], Op::Rope, p, &[x, pos]);
        }));
    }
    // 70 query rows: ggml-cpu's tiled path (64 rows or more), 3: its vector path.
    for (kv, nq, tiled) in [(F16, 3, ""), (F32, 3, ""), (F16, 70, "_tiled")] {
        v.push(case(
            42,
            format!("FLASH_ATTN_EXT_{}{tiled}", kv.name()),
            MATMUL,
            |b| {
                let (dk, nh, nkv) = (64, 4, 80);
                let q = b.rand(F32, [dk, nq, nh, 1], -1.0, 1.0);
                let k = b.rand(kv, [dk, nkv, 2, 1], -1.0, 1.0);
                let val = b.rand(kv, [dk, nkv, 2, 1], -1.0, 1.0);
                let m = b.rand(F16, [nkv, nq + 1, 1, 1], -1.0, 1.0);
                let p = pf(&[0.125, 0.0, 0.0]);
                b.node(F32, [dk, nh, nq, 1], Op::FlashAttnExt, p, &[q, k, val, m]);
            },
        ));
    }
}

/// Ops a case may leave out: views (no computation) and custom ops, which carry function pointers
/// that mean nothing in another process (the reference refuses them too).
pub fn exempt(op: Op) -> bool {
    // FLASH_ATTN_BACK: no client can send one, since ggml_flash_attn_back aborts ("TODO: adapt to
    // ggml_flash_attn_ext() changes") before building the node.
    op.is_view() || op.is_custom() || op == Op::None || op == Op::FlashAttnBack
}

/// The names of the unary and GLU variants covered, and the ops, for the coverage test.
pub fn covered(cases: &[Case]) -> (Vec<Op>, Vec<String>) {
    let ops = cases.iter().map(|c| c.op).collect();
    let names = cases.iter().map(|c| c.name.clone()).collect();
    (ops, names)
}
