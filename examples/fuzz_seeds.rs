//! Writes the fuzzers' seed corpora from real traffic: each scenario drives the project's client against
//! an in-process server through a recording proxy, and the bytes the client sent become seeds.
//!
//! `cargo run --release --example fuzz_seeds` (writes `fuzz/corpus/{proto,session,graph}/seed-*`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;

use ggrpc::client::{Client, GraphBuilder};
use ggrpc::device::{Device, cpu::CpuDevice};
use ggrpc::ggml::{GgmlType, Op};
use ggrpc::proto::Command;
use ggrpc::server::{Server, ServerConfig, Shared};

type Scenario = fn(&mut Client) -> io::Result<()>;

fn main() -> io::Result<()> {
    let scenarios: [(&str, Scenario); 11] = [
        ("buffers", buffers),
        ("v8-transfers", v8_transfers),
        ("add-recompute", add_recompute),
        ("mul-mat", |c| unary_graph(c, mul_mat)),
        ("mul-mat-q8", |c| unary_graph(c, mul_mat_q8)),
        ("get-rows", |c| unary_graph(c, get_rows)),
        ("rms-norm-scale", |c| unary_graph(c, rms_norm_scale)),
        ("soft-max", |c| unary_graph(c, soft_max)),
        ("argsort-top-k", |c| unary_graph(c, argsort_top_k)),
        ("sum-rows", |c| unary_graph(c, sum_rows)),
        ("cpy-f16", |c| unary_graph(c, cpy_f16)),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for t in ["proto", "session", "graph"] {
        std::fs::create_dir_all(root.join(t))?;
    }
    for (name, run) in scenarios {
        let bytes = record(run)?;
        std::fs::write(root.join("session").join(format!("seed-{name}")), &bytes)?;
        std::fs::write(root.join("proto").join(format!("seed-{name}")), &bytes)?;
        for (i, g) in graph_payloads(&bytes).into_iter().enumerate() {
            std::fs::write(root.join("graph").join(format!("seed-{name}-{i}")), g)?;
        }
        println!("{name}: {} bytes", bytes.len());
    }
    Ok(())
}

/// Runs `scenario` on a fresh server (so handles start at 1, as in the session fuzzer) and returns the
/// bytes the client sent. Fails if the server closed the connection (the scenario must be valid).
fn record(scenario: Scenario) -> io::Result<Vec<u8>> {
    let server = spawn_server()?;
    let proxy = TcpListener::bind("127.0.0.1:0")?;
    let proxy_addr = proxy.local_addr()?;
    let tap = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        let (mut from_client, _) = proxy.accept()?;
        let mut to_server = TcpStream::connect(server)?;
        let (mut back_src, mut back_dst) = (to_server.try_clone()?, from_client.try_clone()?);
        let back = std::thread::spawn(move || io::copy(&mut back_src, &mut back_dst));
        let mut seen = Vec::new();
        let mut buf = [0u8; 1 << 16];
        loop {
            let n = from_client.read(&mut buf)?;
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            to_server.write_all(&buf[..n])?;
        }
        to_server.shutdown(Shutdown::Both)?;
        let _ = back.join();
        Ok(seen)
    });
    let mut c = Client::connect(proxy_addr)?;
    scenario(&mut c)?;
    // A final round trip proves the server accepted everything before it.
    c.device_count()?;
    drop(c);
    tap.join()
        .map_err(|_| io::Error::other("proxy thread panicked"))?
}

fn spawn_server() -> io::Result<SocketAddr> {
    let cpu: Arc<dyn Device> =
        Arc::new(CpuDevice::new(1, Some(4 << 20)).map_err(io::Error::other)?);
    let shared = Shared::new(vec![cpu], None).with_sequential_handles();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let server = Server::bind("127.0.0.1:0", shared, ServerConfig::default())
                .await
                .expect("bind");
            tx.send(server.local_addr().expect("addr")).expect("send");
            let (_keep, stop) = tokio::sync::watch::channel(false);
            server.run(stop).await;
        });
    });
    rx.recv().map_err(io::Error::other)
}

/// GRAPH_COMPUTE payloads in a recorded stream (skipping the HELLO frame's framing like any other).
fn graph_payloads(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while b.len() >= 9 {
        let len = u64::from_le_bytes(b[1..9].try_into().expect("8 bytes")) as usize;
        let end = (9 + len).min(b.len());
        if b[0] == Command::GraphCompute as u8 {
            out.push(b[9..end].to_vec());
        }
        b = &b[end..];
    }
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The 8.0.0 additions a session can run alone: 2D rows in and out, and communicator requests the
/// server refuses without touching the network (world 3) or accepts as no-ops (COMM_FREE).
fn v8_transfers(c: &mut Client) -> io::Result<()> {
    use ggrpc::proto::{CommInit, Tensor2d};
    let b = c.alloc(0, 4096)?;
    let mut g = GraphBuilder::new(b, 64);
    let t = g.input(GgmlType::F32, [8, 4, 1, 1]);
    let rows = Tensor2d {
        tensor: g.tensor(t),
        offset: 4,
        size: 8,
        n_copies: 3,
        stride: 32,
    };
    c.set_tensor_2d(&rows, &[7; 24])?;
    c.get_tensor_2d(&rows)?;
    let refused = c.comm_init(&CommInit {
        device: 0,
        rank: 1,
        world: 3,
        port: 51052,
        host: b"127.0.0.1".to_vec(),
    })?;
    assert!(!refused, "world 3 is refused");
    c.comm_free(0)?;
    Ok(())
}

/// Every non-graph command once.
fn buffers(c: &mut Client) -> io::Result<()> {
    c.device_count()?;
    c.alignment(0)?;
    c.max_size(0)?;
    c.memory(0)?;
    let b = c.alloc(0, 4096)?;
    let b2 = c.alloc(0, 1024)?;
    let mut g = GraphBuilder::new(b, 64);
    let t = g.input(GgmlType::F32, [16, 2, 1, 1]);
    let t = g.tensor(t);
    c.init_tensor(&t)?;
    c.alloc_size(0, &t, &[])?;
    c.set_f32(&t, &[1.5; 32])?;
    c.set_tensor(&t, 8, &[0xab; 8], false)?;
    c.set_tensor_hash(&t, 0, &[0; 16])?;
    c.get_tensor(&t, 4, 16)?;
    c.memset(&t, 0, 8, 0x11)?;
    let mut g2 = GraphBuilder::new(b2, 64);
    let dst = g2.input(GgmlType::F32, [16, 2, 1, 1]);
    c.copy_tensor(&t, &g2.tensor(dst))?;
    c.clear(b2, 0)?;
    c.free(b2)?;
    c.alloc(0, 0)?;
    Ok(())
}

fn add_recompute(c: &mut Client) -> io::Result<()> {
    let buf = c.alloc(0, 1 << 12)?;
    let mut g = GraphBuilder::new(buf, 64);
    let a = g.input(GgmlType::F32, [4, 1, 1, 1]);
    let b = g.input(GgmlType::F32, [4, 1, 1, 1]);
    let sum = g.op(Op::Add, GgmlType::F32, [4, 1, 1, 1], &[a, b], [0; 16]);
    c.set_f32(&g.tensor(a), &[1.0, 2.0, 3.0, 4.0])?;
    c.set_f32(&g.tensor(b), &[10.0; 4])?;
    let wg = g.graph(&[sum]);
    c.graph_compute(0, &wg)?;
    c.set_f32(&g.tensor(a), &[0.5; 4])?;
    c.graph_recompute(0, wg.uid)?;
    c.get_f32(&g.tensor(sum))?;
    Ok(())
}

/// Allocates a buffer, lets `build` make a graph and fill its inputs, computes and reads the outputs.
fn unary_graph(
    c: &mut Client,
    build: fn(&mut GraphBuilder, &mut Client) -> io::Result<Vec<ggrpc::client::TensorId>>,
) -> io::Result<()> {
    let buf = c.alloc(0, 1 << 16)?;
    let mut g = GraphBuilder::new(buf, 64);
    let outs = build(&mut g, c)?;
    c.graph_compute(0, &g.graph(&outs))?;
    for o in outs {
        let t = g.tensor(o);
        let n = ggrpc::client::wire_nbytes(&t).unwrap_or(0);
        c.get_tensor(&t, 0, n)?;
    }
    Ok(())
}

type Ids = io::Result<Vec<ggrpc::client::TensorId>>;

fn fill(g: &GraphBuilder, c: &mut Client, t: ggrpc::client::TensorId, n: usize) -> io::Result<()> {
    let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    c.set_tensor(&g.tensor(t), 0, &f32_bytes(&v), false)
}

fn mul_mat(g: &mut GraphBuilder, c: &mut Client) -> Ids {
    let a = g.input(GgmlType::F32, [8, 4, 1, 1]);
    let b = g.input(GgmlType::F32, [8, 2, 1, 1]);
    fill(g, c, a, 32)?;
    fill(g, c, b, 16)?;
    Ok(vec![g.op(
        Op::MulMat,
        GgmlType::F32,
        [4, 2, 1, 1],
        &[a, b],
        [0; 16],
    )])
}

fn mul_mat_q8(g: &mut GraphBuilder, c: &mut Client) -> Ids {
    let a = g.input(GgmlType::Q8_0, [32, 4, 1, 1]);
    let b = g.input(GgmlType::F32, [32, 2, 1, 1]);
    c.set_tensor(&g.tensor(a), 0, &[1u8; 4 * 34], false)?;
    fill(g, c, b, 64)?;
    Ok(vec![g.op(
        Op::MulMat,
        GgmlType::F32,
        [4, 2, 1, 1],
        &[a, b],
        [0; 16],
    )])
}

fn get_rows(g: &mut GraphBuilder, c: &mut Client) -> Ids {
    let table = g.input(GgmlType::F32, [4, 3, 1, 1]);
    let idx = g.input(GgmlType::I32, [2, 1, 1, 1]);
    fill(g, c, table, 12)?;
    let ids: Vec<u8> = [2i32, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
    c.set_tensor(&g.tensor(idx), 0, &ids, false)?;
    Ok(vec![g.op(
        Op::GetRows,
        GgmlType::F32,
        [4, 2, 1, 1],
        &[table, idx],
        [0; 16],
    )])
}

fn params(vals: &[f32]) -> [i32; 16] {
    let mut p = [0i32; 16];
    for (d, v) in p.iter_mut().zip(vals) {
        *d = v.to_bits() as i32;
    }
    p
}

fn rms_norm_scale(g: &mut GraphBuilder, c: &mut Client) -> Ids {
    let a = g.input(GgmlType::F32, [8, 2, 1, 1]);
    fill(g, c, a, 16)?;
    let n = g.op(
        Op::RmsNorm,
        GgmlType::F32,
        [8, 2, 1, 1],
        &[a],
        params(&[1e-6]),
    );
    Ok(vec![g.op(
        Op::Scale,
        GgmlType::F32,
        [8, 2, 1, 1],
        &[n],
        params(&[0.5, 0.0]),
    )])
}

fn soft_max(g: &mut GraphBuilder, c: &mut Client) -> Ids {
    let a = g.input(GgmlType::F32, [8, 2, 1, 1]);
    fill(g, c, a, 16)?;
    Ok(vec![g.op(
        Op::SoftMax,
        GgmlType::F32,
        [8, 2, 1, 1],
        &[a],
        params(&[1.0, 0.0]),
    )])
}

fn argsort_top_k(g: &mut GraphBuilder, c: &mut Client) -> Ids {
    let a = g.input(GgmlType::F32, [8, 2, 1, 1]);
    fill(g, c, a, 16)?;
    let s = g.op(Op::Argsort, GgmlType::I32, [8, 2, 1, 1], &[a], [1; 16]);
    let k = g.op(Op::TopK, GgmlType::I32, [3, 2, 1, 1], &[a], [0; 16]);
    Ok(vec![s, k])
}

fn sum_rows(g: &mut GraphBuilder, c: &mut Client) -> Ids {
    let a = g.input(GgmlType::F32, [8, 2, 1, 1]);
    fill(g, c, a, 16)?;
    Ok(vec![g.op(
        Op::SumRows,
        GgmlType::F32,
        [1, 2, 1, 1],
        &[a],
        [0; 16],
    )])
}

fn cpy_f16(g: &mut GraphBuilder, c: &mut Client) -> Ids {
    let a = g.input(GgmlType::F32, [8, 2, 1, 1]);
    let dst = g.input(GgmlType::F16, [8, 2, 1, 1]);
    fill(g, c, a, 16)?;
    let cpy = g.op(Op::Cpy, GgmlType::F16, [8, 2, 1, 1], &[a, dst], [0; 16]);
    let data = g.tensor(dst).data;
    g.tensor_mut(cpy).data = data;
    Ok(vec![cpy])
}
