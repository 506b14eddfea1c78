//! wgpu device benchmarks on the first adapter found (lavapipe on the project's machines): mat-vec
//! MUL_MAT (token generation; throughput = weight bytes read), prompt-sized MUL_MAT (throughput in
//! "elements" = floating-point operations, so Gelem/s reads as GFLOP/s) and a Gemma 3 decode-step layer.
//! Run: `NODEVICE_SELECT=1 cargo bench --bench wgpu`. Without an adapter it prints why and does nothing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Bench, gemma_decode_layer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ggrpc::device::wgpu::WgpuDevice;
use ggrpc::device::wgpu::discovery::first_adapter;
use ggrpc::device::{Device, DeviceOptions};
use ggrpc::ggml::{GgmlType, Op};

fn gpu(size: usize) -> Option<Bench> {
    let Some(found) = first_adapter() else {
        eprintln!("wgpu benches: no adapter (install mesa-vulkan-drivers for lavapipe)");
        return None;
    };
    let opts = DeviceOptions {
        threads: 1,
        mem_cap: None,
    };
    let dev = WgpuDevice::open(&found.name, &found.adapter, &opts).expect("open adapter");
    eprintln!("wgpu benches on {} ({})", found.name, dev.description());
    Some(Bench::new(Arc::new(dev), size))
}

/// The kernels Gemma 3 270M's weights use, mat-vec and prompt batch (64 columns, the tiled kernel).
fn mul_mat(c: &mut Criterion) {
    let mut group = c.benchmark_group("wgpu_mul_mat");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (typ, k, m, n) in [
        (GgmlType::Q8_0, 640, 2048, 1),
        (GgmlType::Q5_0, 640, 2048, 1),
        (GgmlType::Q4K, 2048, 640, 1),
        (GgmlType::Q6K, 2048, 640, 1),
        (GgmlType::F16, 640, 2048, 1),
        (GgmlType::Q5_0, 640, 2048, 64),
        (GgmlType::Q4K, 2048, 640, 64),
        (GgmlType::Q6K, 2048, 640, 64),
    ] {
        let Some(mut b) = gpu(64 << 20) else {
            return;
        };
        let w = b.leaf(typ, [k, m, 1, 1]);
        let x = b.leaf(GgmlType::F32, [k, n, 1, 1]);
        b.node(Op::MulMat, GgmlType::F32, [m, n, 1, 1], &[w, x], [0; 16]);
        b.dev.check_graph(&b.graph).expect("supported");
        let (name, thr) = if n == 1 {
            let bytes = typ.row_size(k).expect("row") as u64 * m as u64;
            ("matvec", Throughput::Bytes(bytes))
        } else {
            ("prompt", Throughput::Elements(2 * (k * m * n) as u64))
        };
        group.throughput(thr);
        group.bench_function(format!("{name}_{}_{k}x{m}_n{n}", typ.name()), |bench| {
            bench.iter(|| b.run())
        });
    }
    group.finish();
}

fn decode_step(c: &mut Criterion) {
    let Some(mut b) = gpu(64 << 20) else {
        return;
    };
    gemma_decode_layer(&mut b);
    b.dev.check_graph(&b.graph).expect("supported");
    let mut group = c.benchmark_group("wgpu_decode");
    group.sample_size(10);
    group.bench_function("decode_step_gemma3_layer", |bench| bench.iter(|| b.run()));
    group.finish();
}

criterion_group!(benches, mul_mat, decode_step);
criterion_main!(benches);
