//! MUL_MAT and GET_ROWS for every supported weight type, including weights split across bindings.
//! Tolerances: see `kernels.rs`.

use super::kernels::{each, li};
use super::refs::{close, random_tensor, same_bits};
use std::sync::atomic::Ordering;

use super::{Builder, device_or_skip, device_with};
use crate::device::DeviceError;
use crate::device::host_kernels::testkit::{HostTensor, Rng};
use crate::device::host_kernels::{Dst, Src};
use crate::device::wgpu::kernels::matmul::act_mode;
use crate::ggml::{GgmlType, MAX_SRC, Op, Tensor};
use crate::quant;

const TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_1,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q5K,
    GgmlType::Q8_0,
    GgmlType::Q5_0,
    GgmlType::Q4K,
    GgmlType::Q6K,
];

fn no_fallback(_: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    Err(DeviceError::op(dst.t.op.name(), "unexpected CPU fallback"))
}

fn mat_mul_case(
    dev: &super::WgpuDevice,
    typ: GgmlType,
    a_ne: [usize; 4],
    b_ne: [usize; 4],
    rng: &mut Rng,
) {
    let (a, av) = random_tensor(typ, a_ne, rng);
    let (b, bv) = random_tensor(GgmlType::F32, b_ne, rng);
    let b = if b_ne[1] > 1 {
        b.permuted([0, 2, 1, 3])
    } else {
        b
    };
    let d_ne = [a_ne[1], b_ne[1], b_ne[2], b_ne[3]];
    let mut g = Builder::new(dev);
    let (ia, ib) = (g.input(&a), g.input(&b));
    let n = g.node(
        Tensor::new(GgmlType::F32, d_ne),
        Op::MulMat,
        [0; 16],
        &[ia, ib],
    );
    let r = dev.compute_with(&g.graph, &g.buffers, no_fallback).unwrap();
    assert_eq!(r.native, 1);
    let got = g.read_f32(n);
    let (r2, r3) = (b_ne[2] / a_ne[2], b_ne[3] / a_ne[3]);
    // The kernel's activations: rounded like ggml-cpu's where it follows llama.cpp's arithmetic, as
    // they are otherwise.
    let bq = if act_mode(typ) == 0 {
        bv.clone()
    } else {
        rounded_activations(typ, &bv, b_ne[0])
    };
    let want: Vec<f64> = each(d_ne)
        .map(|[m, j, i2, i3]| {
            (0..a_ne[0])
                .map(|k| {
                    av[li(a_ne, [k, m, i2 / r2, i3 / r3])] as f64
                        * bq[li(b_ne, [k, j, i2, i3])] as f64
                })
                .sum()
        })
        .collect();
    // Same rounded activations as ggml-cpu: only f32 summation order is left, except that Q4_1/Q5_1
    // apply their mins through Q8_1's `s`, which ggml rounds from the unrounded block scale.
    let tol = if act_mode(typ) == 5 { 1e-3 } else { 2e-5 };
    close(
        &got,
        &want,
        tol,
        &format!("mul_mat {} {a_ne:?} x {b_ne:?}", typ.name()),
    );
    // llama.cpp's arithmetic step by step, bit for bit (exact.wgsl's fmaf where ggml uses FMA): the
    // AVX2 dot products below 8 columns, tinyBLAS and the tiled K-quant path from 8; for F32 and F16
    // ggml_vec_dot_f32/f16 for one column, tinyBLAS from 2.
    if act_mode(typ) >= 3 || matches!(typ, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16) {
        let what = format!("mul_mat {} {a_ne:?} x {b_ne:?}", typ.name());
        same_bits(&got, &g.on_cpu(n), &what);
    }
}

/// Contiguous activation columns of length `k`, rounded through `vec_dot_type(typ)` as ggml-cpu does.
fn rounded_activations(typ: GgmlType, b: &[f32], k: usize) -> Vec<f32> {
    let vt = quant::vec_dot_type(typ);
    let mut out = vec![0f32; b.len()];
    for (col, o) in b.chunks_exact(k).zip(out.chunks_exact_mut(k)) {
        let mut q = vec![0u8; vt.row_size(k).unwrap()];
        quant::quantize_row_for_dot(vt, col, &mut q).unwrap();
        quant::dequantize_row(vt, &q, o).unwrap();
    }
    out
}

#[test]
fn mul_mat_every_weight_type() {
    let Some(dev) = device_or_skip("mul_mat_every_weight_type") else {
        return;
    };
    let mut rng = Rng::new(10);
    // Both kernel families: an invocation per row (CPU adapters), and the GPU-shaped ones (rows
    // split over invocations, prompt tiles with slices and broadcast weights).
    for shaped in [false, true] {
        dev.gpu.gpu_kernels.store(shaped, Ordering::Relaxed);
        for typ in TYPES {
            let k = if typ.block_size() == 256 { 512 } else { 96 };
            mat_mul_case(&dev, typ, [k, 7, 1, 1], [k, 1, 1, 1], &mut rng);
            mat_mul_case(&dev, typ, [k, 5, 2, 1], [k, 3, 4, 1], &mut rng);
            // Prompt-sized batches take the column-blocked kernel (a partial block of 8 included).
            mat_mul_case(&dev, typ, [k, 9, 1, 1], [k, 13, 2, 1], &mut rng);
            mat_mul_case(&dev, typ, [k, 70, 1, 1], [k, 17, 1, 1], &mut rng);
        }
        // Float weights with a tail past the 32-element steps.
        for typ in [GgmlType::F32, GgmlType::F16, GgmlType::Bf16] {
            mat_mul_case(&dev, typ, [109, 5, 1, 1], [109, 1, 1, 1], &mut rng);
        }
    }
    dev.gpu.gpu_kernels.store(false, Ordering::Relaxed);
    mat_mul_case(&dev, GgmlType::F32, [33, 9, 1, 2], [33, 4, 3, 2], &mut rng);
    // Long rows with few outputs take the workgroup-per-element kernel.
    for typ in [GgmlType::F32, GgmlType::Q8_0, GgmlType::Q4K] {
        mat_mul_case(&dev, typ, [9216, 2, 1, 1], [9216, 1, 1, 1], &mut rng);
    }
    mat_mul_case(
        &dev,
        GgmlType::F32,
        [9217, 2, 1, 1],
        [9217, 1, 1, 1],
        &mut rng,
    );
}

#[test]
fn mul_mat_and_get_rows_split_large_weights() {
    // A 4 KiB binding limit makes every weight below span several windows.
    let Some(dev) = device_with("mul_mat_and_get_rows_split_large_weights", Some(4096)) else {
        return;
    };
    let mut rng = Rng::new(11);
    for typ in [GgmlType::Q8_0, GgmlType::F32, GgmlType::Q6K] {
        let k = if typ.block_size() == 256 { 256 } else { 64 };
        mat_mul_case(&dev, typ, [k, 61, 1, 1], [k, 1, 1, 1], &mut rng);
        // The GPU-shaped kernels on each window: rows split for one column, tiles for five.
        dev.gpu.gpu_kernels.store(true, Ordering::Relaxed);
        mat_mul_case(&dev, typ, [k, 61, 1, 1], [k, 1, 1, 1], &mut rng);
        if typ.block_size() == 32 {
            mat_mul_case(&dev, typ, [k, 61, 1, 1], [k, 5, 1, 1], &mut rng);
        }
        dev.gpu.gpu_kernels.store(false, Ordering::Relaxed);
        // Three rows of output stay within one 4 KiB binding even for 256-wide rows.
        get_rows_case(&dev, typ, [k, 61, 1, 1], &[60, 0, 33], &mut rng);
    }
}

fn get_rows_case(
    dev: &super::WgpuDevice,
    typ: GgmlType,
    a_ne: [usize; 4],
    rows: &[i32],
    rng: &mut Rng,
) {
    let (a, av) = random_tensor(typ, a_ne, rng);
    let n = rows.len() / (a_ne[2] * a_ne[3]);
    let idx = HostTensor::from_i32([n, a_ne[2], a_ne[3], 1], rows);
    let d_ne = [a_ne[0], n, a_ne[2], a_ne[3]];
    let mut g = Builder::new(dev);
    let (ia, ii) = (g.input(&a), g.input(&idx));
    let out = g.node(
        Tensor::new(GgmlType::F32, d_ne),
        Op::GetRows,
        [0; 16],
        &[ia, ii],
    );
    dev.compute_with(&g.graph, &g.buffers, no_fallback).unwrap();
    let got = g.read_f32(out);
    let want: Vec<f64> = each(d_ne)
        .map(|[i0, i, j, k]| {
            let r = rows[i + n * (j + a_ne[2] * k)] as usize;
            av[li(a_ne, [i0, r, j, k])] as f64
        })
        .collect();
    close(&got, &want, 1e-6, &format!("get_rows {}", typ.name()));
}

#[test]
fn get_rows_every_weight_type() {
    let Some(dev) = device_or_skip("get_rows_every_weight_type") else {
        return;
    };
    let mut rng = Rng::new(12);
    for typ in TYPES {
        let k = if typ.block_size() == 256 { 256 } else { 64 };
        get_rows_case(&dev, typ, [k, 9, 2, 1], &[8, 0, 3, 1, 1, 7], &mut rng);
    }
}
