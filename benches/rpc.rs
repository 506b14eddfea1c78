//! One MUL_MAT per weight type, timed through the RPC protocol on running servers, so ggrpc and
//! llama.cpp's own rpc-server are measured the same way in the same run: the mat-vec of decode (in
//! bytes of weights per second) and a prompt-sized matmul (in multiply-adds per second, printed by
//! criterion as elements/s). `scripts/bench-ops.sh` starts both servers, runs this and prints the
//! ratios; by hand: `GGRPC_BENCH_SERVERS=ggrpc=127.0.0.1:50052,reference=127.0.0.1:50053 cargo bench
//! --bench rpc`. Each iteration is one GRAPH_COMPUTE plus a 4-byte GET_TENSOR of its result (the
//! reply that says the graph is done); the shapes are large enough that this round trip is a few
//! percent of the time.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ggrpc::client::{Client, GraphBuilder};
use ggrpc::ggml::{GgmlType, Op};
use ggrpc::proto::{WireGraph, WireTensor};
use ggrpc::quant;

/// Weight types a Gemma/Llama GGUF uses, and the float ones.
const TYPES: [GgmlType; 14] = [
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
    GgmlType::Iq4Nl,
    GgmlType::Iq4Xs,
    GgmlType::F16,
    GgmlType::F32,
];

/// (K, M, N): the mat-vec streams a 2048 × 8192 weight; the prompt matmul is 64 columns.
const SHAPES: [(usize, usize, usize); 2] = [(2048, 8192, 1), (2048, 2048, 64)];

/// `GGRPC_BENCH_SERVERS`: comma list of NAME=HOST:PORT.
fn servers() -> Vec<(String, String)> {
    let list = std::env::var("GGRPC_BENCH_SERVERS").unwrap_or_default();
    list.split(',')
        .filter_map(|s| s.split_once('='))
        .map(|(n, a)| (n.trim().to_string(), a.trim().to_string()))
        .collect()
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The bytes of a `rows` × `k` tensor of `typ` holding random values.
fn weights(typ: GgmlType, k: usize, rows: usize) -> Vec<u8> {
    let row = typ.row_size(k).expect("row size");
    let vals = values(k * rows, 7);
    let mut out = vec![0u8; row * rows];
    for (r, chunk) in out.chunks_exact_mut(row).enumerate() {
        quant::quantize_row(typ, &vals[r * k..(r + 1) * k], chunk).expect("quantize");
    }
    out
}

/// A connection holding one MUL_MAT's inputs, ready to compute it again and again.
struct Remote {
    client: Client,
    graph: WireGraph,
    out: WireTensor,
}

impl Remote {
    fn new(addr: &str, typ: GgmlType, (k, m, n): (usize, usize, usize)) -> Remote {
        let mut client = Client::connect(addr).expect("connect");
        let align = client.alignment(0).expect("alignment");
        let size = typ.row_size(k).expect("row") * m + 4 * (k * n + m * n) + 4 * align as usize;
        let buf = client.alloc(0, size as u64).expect("alloc");
        let mut g = GraphBuilder::new(buf, align);
        let w = g.input(typ, [k, m, 1, 1]);
        let x = g.input(GgmlType::F32, [k, n, 1, 1]);
        let out = g.op(Op::MulMat, GgmlType::F32, [m, n, 1, 1], &[w, x], [0; 16]);
        client
            .set_tensor(&g.tensor(w), 0, &weights(typ, k, m), false)
            .expect("weights");
        client
            .set_f32(&g.tensor(x), &values(k * n, 11))
            .expect("activations");
        Remote {
            client,
            graph: g.graph(&[out]),
            out: g.tensor(out),
        }
    }

    fn run(&mut self) {
        self.client.graph_compute(0, &self.graph).expect("compute");
        let r = self.client.get_tensor(&self.out, 0, 4).expect("result");
        assert_eq!(r.len(), 4);
    }
}

fn mul_mat(c: &mut Criterion) {
    let servers = servers();
    if servers.is_empty() {
        eprintln!(
            "rpc bench: set GGRPC_BENCH_SERVERS=NAME=HOST:PORT,... (scripts/bench-ops.sh does)"
        );
        return;
    }
    for shape @ (k, m, n) in SHAPES {
        let kind = if n == 1 { "mat_vec" } else { "prompt" };
        let mut group = c.benchmark_group(format!("rpc_{kind}_{k}x{m}_n{n}"));
        group
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2))
            .sample_size(20);
        for typ in TYPES {
            group.throughput(if n == 1 {
                Throughput::Bytes((typ.row_size(k).expect("row") * m) as u64)
            } else {
                Throughput::Elements((k * m * n) as u64)
            });
            // Adjacent, so both servers see the same machine state.
            for (name, addr) in &servers {
                let mut remote = Remote::new(addr, typ, shape);
                group.bench_function(format!("{}/{name}", typ.name()), |b| {
                    b.iter(|| remote.run())
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, mul_mat);
criterion_main!(benches);
