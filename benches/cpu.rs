//! CPU device benchmarks: quantized mat-vecs (the decode hot path), one prompt-sized MUL_MAT, and a
//! decode-step graph shaped like one Gemma 3 270M layer. Run: `cargo bench --bench cpu`
//! (`GGRPC_BENCH_THREADS=N` sets the worker count; default every core).

mod common;

use std::sync::Arc;

use common::{Bench, gemma_decode_layer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ggrpc::device::cpu::CpuDevice;
use ggrpc::ggml::{GgmlType, Op};

/// A CPU device with `GGRPC_BENCH_THREADS` workers (default: every core).
fn cpu(size: usize) -> Bench {
    let threads = std::env::var("GGRPC_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    Bench::new(Arc::new(CpuDevice::new(threads, None).expect("cpu")), size)
}

fn mul_mat(c: &mut Criterion) {
    let mut group = c.benchmark_group("mul_mat");
    for (typ, k, m, n) in [
        (GgmlType::Q8_0, 640, 2048, 1),
        (GgmlType::Q5_0, 640, 2048, 1),
        (GgmlType::Q4K, 2048, 640, 1),
        (GgmlType::Q5_0, 640, 2048, 64),
        (GgmlType::Q4K, 2048, 640, 64),
        (GgmlType::Q6K, 2048, 640, 64),
        (GgmlType::Q3K, 2048, 2048, 1),
        (GgmlType::F16, 2048, 2048, 64),
    ] {
        let mut b = cpu(64 << 20);
        let w = b.leaf(typ, [k, m, 1, 1]);
        let x = b.leaf(GgmlType::F32, [k, n, 1, 1]);
        b.node(Op::MulMat, GgmlType::F32, [m, n, 1, 1], &[w, x], [0; 16]);
        b.dev.check_graph(&b.graph).expect("supported");
        group.throughput(Throughput::Bytes(
            typ.row_size(k).expect("row") as u64 * m as u64,
        ));
        group.bench_function(format!("{}_{k}x{m}_n{n}", typ.name()), |bench| {
            bench.iter(|| b.run())
        });
    }
    group.finish();
}

/// One decode step of a Gemma-3-270M-shaped layer (see `common::gemma_decode_layer`).
fn decode_step(c: &mut Criterion) {
    let mut b = cpu(64 << 20);
    gemma_decode_layer(&mut b);
    b.dev.check_graph(&b.graph).expect("supported");
    c.bench_function("decode_step_gemma3_layer", |bench| bench.iter(|| b.run()));
}

criterion_group!(benches, mul_mat, decode_step);
criterion_main!(benches);
