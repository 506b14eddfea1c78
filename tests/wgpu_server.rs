//! The server with `--device Vulkan0`: a client computes a graph on the wgpu device over TCP.
//! Skipped with a printed reason when no adapter exists, failed when `CI` is set.
#![cfg(feature = "wgpu")]

use ggrpc::client::{Client, GraphBuilder};
use ggrpc::device::{self, DeviceOptions};
use ggrpc::ggml::{GgmlType, Op};
use ggrpc::server::{Server, ServerConfig, Shared};
use std::net::SocketAddr;
use std::thread::JoinHandle;
use tokio::sync::watch;

/// A server on `Vulkan0` in a background runtime: its address, the stop switch and the thread. `None`
/// (after printing why) when there is no adapter outside CI.
fn start_vulkan0(test: &str) -> Option<(SocketAddr, watch::Sender<bool>, JoinHandle<()>)> {
    let opts = DeviceOptions {
        threads: 1,
        mem_cap: None,
    };
    let devices = match device::select(&["Vulkan0".to_string()], &opts) {
        Ok(d) => d,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping {test}: {e}");
            return None;
        }
        Err(e) => panic!("{test}: CI is set but Vulkan0 is missing: {e}"),
    };
    let shared = Shared::new(devices, None);
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = watch::channel(false);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let config = ServerConfig {
                max_connections: 4,
                max_pending: 4,
            };
            let server = Server::bind("127.0.0.1:0", shared, config)
                .await
                .expect("bind");
            tx.send(server.local_addr().expect("addr")).expect("send");
            server.run(stop_rx).await;
        });
    });
    Some((rx.recv().expect("address"), stop, thread))
}

/// GET_ROWS and SET_ROWS indices outside their tensors reach the GPU kernels (checked there): the
/// attacker's connection closes, a bystander on the same GPU keeps its data, a fresh client works.
#[test]
fn vulkan0_out_of_range_indices_close_only_the_attacker() {
    let Some((addr, stop, thread)) = start_vulkan0("vulkan0_out_of_range_indices") else {
        return;
    };
    let mut bystander = Client::connect(addr).expect("connect");
    let bb = bystander.alloc(0, 4096).unwrap();
    let mut bg = GraphBuilder::new(bb, bystander.alignment(0).unwrap());
    let kept = bg.input(GgmlType::F32, [4, 1, 1, 1]);
    bystander
        .set_f32(&bg.tensor(kept), &[1.0, 2.0, 3.0, 4.0])
        .unwrap();
    for attack in ["get_rows", "set_rows"] {
        let mut c = Client::connect(addr).expect("connect");
        let b = c.alloc(0, 1 << 16).unwrap();
        let mut g = GraphBuilder::new(b, c.alignment(0).unwrap());
        let node = if attack == "get_rows" {
            let table = g.input(GgmlType::F32, [4, 3, 1, 1]);
            let idx = g.input(GgmlType::I32, [2, 1, 1, 1]);
            let rows = g.op(
                Op::GetRows,
                GgmlType::F32,
                [4, 2, 1, 1],
                &[table, idx],
                [0; 16],
            );
            let bad: Vec<u8> = [1i32, 1000].iter().flat_map(|v| v.to_le_bytes()).collect();
            c.set_tensor(&g.tensor(idx), 0, &bad, false).unwrap();
            rows
        } else {
            let vals = g.input(GgmlType::F32, [4, 1, 1, 1]);
            let idx = g.input(GgmlType::I64, [1, 1, 1, 1]);
            let cache = g.input(GgmlType::F16, [4, 8, 1, 1]);
            let set = g.op(
                Op::SetRows,
                GgmlType::F16,
                [4, 8, 1, 1],
                &[vals, idx, cache],
                [0; 16],
            );
            let data = g.tensor(cache).data;
            g.tensor_mut(set).data = data;
            c.set_tensor(&g.tensor(idx), 0, &(-3i64).to_le_bytes(), false)
                .unwrap();
            set
        };
        // GRAPH_COMPUTE has no reply: the server just closes the connection.
        c.graph_compute(0, &g.graph(&[node])).unwrap();
        // `is_closed` also answers true when the read times out: the time tells a close from that.
        c.set_read_timeout(Some(std::time::Duration::from_secs(30)));
        let started = std::time::Instant::now();
        assert!(
            c.is_closed() && started.elapsed() < std::time::Duration::from_secs(29),
            "{attack}: connection still open after an out-of-range index"
        );
    }
    assert_eq!(
        bystander.get_f32(&bg.tensor(kept)).unwrap(),
        vec![1.0, 2.0, 3.0, 4.0]
    );
    let mut fresh = Client::connect(addr).expect("connect");
    assert_eq!(fresh.device_count().unwrap(), 1);
    drop((bystander, fresh));
    let _ = stop.send(true);
    let _ = thread.join();
}

#[test]
fn vulkan0_serves_a_graph() {
    let Some((addr, stop, thread)) = start_vulkan0("vulkan0_serves_a_graph") else {
        return;
    };
    let mut c = Client::connect(addr).expect("connect");
    assert!(c.max_size(0).unwrap() >= 1 << 27);
    let buf = c.alloc(0, 1 << 16).unwrap();
    let mut g = GraphBuilder::new(buf, c.alignment(0).unwrap());
    let a = g.input(GgmlType::F32, [4, 1, 1, 1]);
    let b = g.input(GgmlType::F32, [4, 1, 1, 1]);
    let sum = g.op(Op::Add, GgmlType::F32, [4, 1, 1, 1], &[a, b], [0; 16]);
    let sq = g.op(Op::Mul, GgmlType::F32, [4, 1, 1, 1], &[sum, sum], [0; 16]);
    c.set_f32(&g.tensor(a), &[1.0, 2.0, 3.0, 4.0]).unwrap();
    c.set_f32(&g.tensor(b), &[10.0, 20.0, 30.0, 40.0]).unwrap();
    let wg = g.graph(&[sum, sq]);
    c.graph_compute(0, &wg).unwrap();
    assert_eq!(
        c.get_f32(&g.tensor(sq)).unwrap(),
        vec![121.0, 484.0, 1089.0, 1936.0]
    );
    c.set_f32(&g.tensor(a), &[0.0; 4]).unwrap();
    c.graph_recompute(0, wg.uid).unwrap();
    assert_eq!(
        c.get_f32(&g.tensor(sq)).unwrap(),
        vec![100.0, 400.0, 900.0, 1600.0]
    );
    drop(c);
    let _ = stop.send(true);
    let _ = thread.join();
}
