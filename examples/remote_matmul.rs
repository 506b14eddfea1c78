//! Multiplies two matrices on a running ggrpc (or llama.cpp) RPC server and checks the result locally.
//!
//! ```sh
//! cargo run --release &                                  # serves 127.0.0.1:50052
//! cargo run --release --example remote_matmul -- 127.0.0.1:50052
//! ```

use ggrpc::client::{Client, GraphBuilder};
use ggrpc::ggml::{GgmlType, Op};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50052".into());
    let (k, m, n) = (256usize, 96usize, 8usize);
    let mut c = Client::connect(&addr)?;
    let align = c.alignment(0)?;
    let buf = c.alloc(0, 1 << 20)?;
    let mut g = GraphBuilder::new(buf, align);
    // ggml convention: a is [K, M] (rows of weights), b is [K, N]; the product is [M, N].
    let a = g.input(GgmlType::F32, [k, m, 1, 1]);
    let b = g.input(GgmlType::F32, [k, n, 1, 1]);
    let prod = g.op(Op::MulMat, GgmlType::F32, [m, n, 1, 1], &[a, b], [0; 16]);
    let av: Vec<f32> = (0..k * m).map(|i| ((i % 13) as f32 - 6.0) / 8.0).collect();
    let bv: Vec<f32> = (0..k * n).map(|i| ((i % 7) as f32 - 3.0) / 4.0).collect();
    c.set_f32(&g.tensor(a), &av)?;
    c.set_f32(&g.tensor(b), &bv)?;
    let started = std::time::Instant::now();
    c.graph_compute(0, &g.graph(&[prod]))?;
    let got = c.get_f32(&g.tensor(prod))?;
    let elapsed = started.elapsed();
    let mut max_err = 0f32;
    for col in 0..n {
        for row in 0..m {
            let want: f32 = (0..k).map(|i| av[row * k + i] * bv[col * k + i]).sum();
            max_err = max_err.max((got[col * m + row] - want).abs());
        }
    }
    println!("{m}x{k} · {k}x{n} on {addr}: {elapsed:?} round trip, max |error| = {max_err:e}");
    c.free(buf)?;
    if max_err > 1e-3 {
        return Err(format!("result differs from the local product by {max_err}").into());
    }
    Ok(())
}
