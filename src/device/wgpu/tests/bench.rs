//! Mat-vec throughput on the test adapter (`cargo test --lib wgpu_matvec_bandwidth -- --ignored
//! --nocapture`): weight bytes read per second, the number that bounds token generation.

use std::time::Instant;

use super::refs::random_tensor;
use super::{Builder, device_or_skip};
use crate::device::DeviceError;
use crate::device::host_kernels::testkit::Rng;
use crate::device::host_kernels::{Dst, Src};
use crate::ggml::{GgmlType, MAX_SRC, Op, Tensor};

fn no_fallback(_: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    Err(DeviceError::op(dst.t.op.name(), "unexpected CPU fallback"))
}

#[test]
#[ignore = "benchmark"]
fn wgpu_matvec_bandwidth() {
    let Some(dev) = device_or_skip("wgpu_matvec_bandwidth") else {
        return;
    };
    let mut rng = Rng::new(40);
    for (typ, rows) in [
        (GgmlType::F32, 4096),
        (GgmlType::Q8_0, 16384),
        (GgmlType::Q5_0, 16384),
        (GgmlType::Q4K, 8192),
        (GgmlType::Q6K, 8192),
    ] {
        let k = if typ.block_size() == 256 { 2048 } else { 640 };
        let (a, _) = random_tensor(typ, [k, rows, 1, 1], &mut rng);
        let (x, _) = random_tensor(GgmlType::F32, [k, 1, 1, 1], &mut rng);
        let mut g = Builder::new(&dev);
        let (ia, ix) = (g.input(&a), g.input(&x));
        g.node(
            Tensor::new(GgmlType::F32, [rows, 1, 1, 1]),
            Op::MulMat,
            [0; 16],
            &[ia, ix],
        );
        dev.compute_with(&g.graph, &g.buffers, no_fallback).unwrap();
        let iters = 5;
        let t0 = Instant::now();
        for _ in 0..iters {
            dev.compute_with(&g.graph, &g.buffers, no_fallback).unwrap();
        }
        let s = t0.elapsed().as_secs_f64() / iters as f64;
        let bytes = a.bytes.len() as f64;
        eprintln!(
            "mat-vec {} {k}x{rows}: {:.2} ms, {:.2} GB/s of weights",
            typ.name(),
            s * 1e3,
            bytes / s / 1e9
        );
    }
}
