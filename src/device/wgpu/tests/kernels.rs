//! Each native kernel against an f64 reference on random inputs: contiguous, permuted, broadcast, odd
//! sizes, every supported type. Graphs run with a fallback that fails, so these prove the GPU path.
//!
//! Tolerances (relative, `tol * (1 + |want|)`): 1e-5 for exact-formula f32 ops; 1e-4 for reductions
//! and transcendental activations (GPU exp/tanh/erf approximations, summation order); 2e-4 for
//! matrix products with K ≤ 512 of values in [-1, 1] (f32 accumulation in another order; ggml's CPU
//! additionally quantizes activations to 8 bits for quantized weights, which these references do not);
//! 1e-3 for f16 results (half an f16 ulp).

use super::refs::{close, random_tensor, same_bits};
use super::{Builder, device_or_skip};
use crate::device::host_kernels::testkit::{HostTensor, Rng, params_f32};
use crate::device::host_kernels::{Dst, Src};
use crate::device::{Device, DeviceError};
use crate::ggml::{GgmlType, MAX_SRC, Op, Tensor};

fn no_fallback(_: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    Err(DeviceError::op(dst.t.op.name(), "unexpected CPU fallback"))
}

/// Logical index of `(i0, i1, i2, i3)` in a tensor of shape `ne`.
pub fn li(ne: [usize; 4], i: [usize; 4]) -> usize {
    i[0] + ne[0] * (i[1] + ne[1] * (i[2] + ne[2] * i[3]))
}

/// Every index of shape `ne`, i0 fastest.
pub fn each(ne: [usize; 4]) -> impl Iterator<Item = [usize; 4]> {
    (0..ne[3]).flat_map(move |i3| {
        (0..ne[2]).flat_map(move |i2| {
            (0..ne[1]).flat_map(move |i1| (0..ne[0]).map(move |i0| [i0, i1, i2, i3]))
        })
    })
}

/// Runs one node natively and returns its output values.
fn run1(
    dev: &super::WgpuDevice,
    op: Op,
    params: [i32; 16],
    srcs: &[&HostTensor],
    out: Tensor,
) -> Vec<f32> {
    let mut b = Builder::new(dev);
    let ids: Vec<usize> = srcs.iter().map(|h| b.input(h)).collect();
    let n = b.node(out, op, params, &ids);
    let r = dev.compute_with(&b.graph, &b.buffers, no_fallback).unwrap();
    assert_eq!(r.native, 1, "{}", op.name());
    b.read_f32(n)
}

#[test]
fn binary_ops_broadcast_strided_f16() {
    let Some(dev) = device_or_skip("binary_ops_broadcast_strided_f16") else {
        return;
    };
    let mut rng = Rng::new(1);
    let ne = [33, 5, 3, 2];
    for (bne, btyp, permute) in [
        (ne, GgmlType::F32, false),
        ([33, 1, 3, 1], GgmlType::F32, false),
        ([1, 5, 1, 2], GgmlType::F16, true),
    ] {
        let (a, av) = random_tensor(GgmlType::F32, ne, &mut rng);
        let a = if permute { a.permuted([1, 0, 2, 3]) } else { a };
        let (bt, bv) = random_tensor(btyp, bne, &mut rng);
        for (op, f) in [
            (Op::Add, (|x, y| x + y) as fn(f64, f64) -> f64),
            (Op::Sub, |x, y| x - y),
            (Op::Mul, |x, y| x * y),
            (Op::Div, |x, y| x / y),
        ] {
            let got = run1(
                &dev,
                op,
                [0; 16],
                &[&a, &bt],
                Tensor::new(GgmlType::F32, ne),
            );
            let want: Vec<f64> = each(ne)
                .map(|i| {
                    let j = [i[0] % bne[0], i[1] % bne[1], i[2] % bne[2], i[3] % bne[3]];
                    f(av[li(ne, i)] as f64, bv[li(bne, j)] as f64)
                })
                .collect();
            let tol = if op == Op::Div { 1e-4 } else { 1e-5 };
            close(&got, &want, tol, &format!("{} b={bne:?}", op.name()));
        }
    }
}

#[test]
fn unary_scale_and_math_ops() {
    let Some(dev) = device_or_skip("unary_scale_and_math_ops") else {
        return;
    };
    let mut rng = Rng::new(2);
    let ne = [17, 3, 2, 1];
    let (a, av) = random_tensor(GgmlType::F32, ne, &mut rng);
    let a = a.permuted([0, 2, 1, 3]);
    let silu = |x: f64| x / (1.0 + (-x).exp());
    type Case = (Op, [i32; 16], Box<dyn Fn(f64) -> f64>);
    let cases: Vec<Case> = vec![
        (
            Op::Scale,
            params_f32(&[0.5, 0.25]),
            Box::new(|x| x * 0.5 + 0.25),
        ),
        (Op::Sqr, [0; 16], Box::new(|x| x * x)),
        (Op::Sin, [0; 16], Box::new(f64::sin)),
        (Op::Cos, [0; 16], Box::new(f64::cos)),
        (Op::Unary, [10; 16], Box::new(silu)),
        (Op::Unary, [6; 16], Box::new(|x: f64| x.max(0.0))),
        (Op::Unary, [2; 16], Box::new(|x: f64| -x)),
        (Op::Unary, [4; 16], Box::new(f64::tanh)),
        (
            Op::Unary,
            [7; 16],
            Box::new(|x: f64| 1.0 / (1.0 + (-x).exp())),
        ),
        (Op::Unary, [13; 16], Box::new(f64::exp)),
    ];
    for (op, params, f) in cases {
        let got = run1(&dev, op, params, &[&a], Tensor::new(GgmlType::F32, ne));
        let want: Vec<f64> = av.iter().map(|&x| f(x as f64)).collect();
        close(&got, &want, 1e-4, &format!("{} {}", op.name(), params[0]));
    }
    // GELU and GELU_QUICK round through f16 like ggml's tables.
    for (code, f) in [(8, gelu_ggml as fn(f32) -> f32), (9, gelu_quick_ggml)] {
        let got = run1(
            &dev,
            Op::Unary,
            [code; 16],
            &[&a],
            Tensor::new(GgmlType::F32, ne),
        );
        let want: Vec<f32> = av.iter().map(|&x| f(x)).collect();
        assert_f16_table(&got, &want, &format!("unary {code}"));
    }
}

fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + (0.7978845608028654 * x * (1.0 + 0.044715 * x * x)).tanh())
}

fn r16(x: f64) -> f32 {
    half::f16::from_f64(x).to_f32()
}

/// ggml-cpu's GELU of an f32: its f16 table, clamped outside (-10, 10).
fn gelu_ggml(x: f32) -> f32 {
    match x {
        x if x <= -10.0 => 0.0,
        x if x >= 10.0 => x,
        x => r16(gelu_f64(r16(x as f64) as f64)),
    }
}

fn gelu_quick_ggml(x: f32) -> f32 {
    let x = r16(x as f64) as f64;
    r16(x / (1.0 + (-1.702 * x).exp()))
}

/// Results of an f16-table function: the kernels read ggml's own tables, so every value is identical.
fn assert_f16_table(got: &[f32], want: &[f32], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn glu_split_swapped_and_two_sources() {
    let Some(dev) = device_or_skip("glu_split_swapped_and_two_sources") else {
        return;
    };
    let mut rng = Rng::new(3);
    let (nc, rows) = (19, 4);
    let (a, av) = random_tensor(GgmlType::F32, [2 * nc, rows, 1, 1], &mut rng);
    let (g, gv) = random_tensor(GgmlType::F32, [nc, rows, 1, 1], &mut rng);
    let (x, xv) = random_tensor(GgmlType::F32, [nc, rows, 1, 1], &mut rng);
    let silu = |x: f64| x / (1.0 + (-x).exp());
    let gelu = |x: f64| gelu_ggml(x as f32) as f64;
    let out = Tensor::new(GgmlType::F32, [nc, rows, 1, 1]);
    for (code, act) in [
        (2, silu as fn(f64) -> f64),
        (1, gelu),
        (0, |x: f64| x.max(0.0)),
    ] {
        for swapped in [0, 1] {
            let mut p = [0; 16];
            p[0] = code;
            p[1] = swapped;
            let got = run1(&dev, Op::Glu, p, &[&a], out.clone());
            let want: Vec<f64> = (0..rows)
                .flat_map(|r| (0..nc).map(move |i| (r, i)))
                .map(|(r, i)| {
                    let (lo, hi) = (av[r * 2 * nc + i] as f64, av[r * 2 * nc + nc + i] as f64);
                    if swapped == 1 {
                        act(hi) * lo
                    } else {
                        act(lo) * hi
                    }
                })
                .collect();
            close(&got, &want, 1e-4, &format!("glu {code} swapped {swapped}"));
        }
        let mut p = [0; 16];
        p[0] = code;
        let got = run1(&dev, Op::Glu, p, &[&x, &g], out.clone());
        let want: Vec<f64> = xv
            .iter()
            .zip(&gv)
            .map(|(&x, &g)| act(x as f64) * g as f64)
            .collect();
        close(&got, &want, 1e-4, &format!("glu {code} two sources"));
    }
}

#[test]
fn norm_and_rms_norm_rows() {
    let Some(dev) = device_or_skip("norm_and_rms_norm_rows") else {
        return;
    };
    let mut rng = Rng::new(4);
    for ne in [[37, 5, 2, 1], [640, 300, 1, 1]] {
        let (a, av) = random_tensor(GgmlType::F32, ne, &mut rng);
        let a = a.permuted([0, 2, 1, 3]);
        let eps = 1e-6f32;
        for op in [Op::RmsNorm, Op::Norm] {
            let got = run1(
                &dev,
                op,
                params_f32(&[eps]),
                &[&a],
                Tensor::new(GgmlType::F32, ne),
            );
            let mut want = Vec::new();
            for row in av.chunks_exact(ne[0]) {
                let n = ne[0] as f64;
                let mean = if op == Op::Norm {
                    row.iter().map(|&x| x as f64).sum::<f64>() / n
                } else {
                    0.0
                };
                let var = row.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
                let s = 1.0 / (var + eps as f64).sqrt();
                want.extend(row.iter().map(|&x| (x as f64 - mean) * s));
            }
            close(&got, &want, 1e-4, &format!("{} {ne:?}", op.name()));
            norm_matches_cpu(&dev, op, &a, ne, eps);
        }
    }
}

/// NORM and RMS_NORM bit-identical to the CPU device (ggml's f64 sums, emulated in float-float).
fn norm_matches_cpu(dev: &super::WgpuDevice, op: Op, a: &HostTensor, ne: [usize; 4], eps: f32) {
    let mut g = Builder::new(dev);
    let ia = g.input(a);
    let n = g.node(
        Tensor::new(GgmlType::F32, ne),
        op,
        params_f32(&[eps]),
        &[ia],
    );
    dev.compute(&g.graph, &g.buffers).unwrap();
    same_bits(
        &g.read_f32(n),
        &g.on_cpu(n),
        &format!("{} {ne:?}", op.name()),
    );
}
