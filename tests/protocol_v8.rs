//! What RPC 8.0.0 adds, over TCP against a real server: the per-device graph cache keyed by uid, 2D
//! transfers, communicators between two servers, and the commands each major knows.

mod common;

use ggrpc::client::{Client, GraphBuilder, TensorId};
use ggrpc::ggml::{GgmlType, Op};
use ggrpc::proto::{CommInit, GRAPH_CACHE_MAX, Major, Tensor2d};

/// a + b in a fresh buffer: the builder, its three tensors.
fn add_graph(c: &mut Client) -> (GraphBuilder, [TensorId; 3]) {
    let buf = c.alloc(0, 1 << 12).unwrap();
    let mut g = GraphBuilder::new(buf, c.alignment(0).unwrap());
    let a = g.input(GgmlType::F32, [4, 1, 1, 1]);
    let b = g.input(GgmlType::F32, [4, 1, 1, 1]);
    let sum = g.op(Op::Add, GgmlType::F32, [4, 1, 1, 1], &[a, b], [0; 16]);
    (g, [a, b, sum])
}

#[test]
fn graphs_are_kept_by_uid_per_device() {
    let s = common::start();
    let mut c = s.client();
    assert_eq!(c.major(), Major::V8);
    let (g, [a, b, sum]) = add_graph(&mut c);
    let scale = {
        let mut g = g;
        let mut p = [0i32; 16];
        p[0] = 3f32.to_bits() as i32;
        let t = g.op(Op::Scale, GgmlType::F32, [4, 1, 1, 1], &[a], p);
        (g, t)
    };
    let (g, tripled) = scale;
    let add = g.graph(&[sum]);
    let triple = g.graph(&[tripled]);
    assert_ne!(add.uid, triple.uid);
    c.set_f32(&g.tensor(a), &[1.0, 2.0, 3.0, 4.0]).unwrap();
    c.set_f32(&g.tensor(b), &[10.0; 4]).unwrap();
    c.graph_compute(0, &add).unwrap();
    c.graph_compute(0, &triple).unwrap();
    c.set_f32(&g.tensor(a), &[2.0; 4]).unwrap();
    // Both graphs are still there, each under its own uid.
    c.graph_recompute(0, add.uid).unwrap();
    assert_eq!(c.get_f32(&g.tensor(sum)).unwrap(), vec![12.0; 4]);
    c.graph_recompute(0, triple.uid).unwrap();
    assert_eq!(c.get_f32(&g.tensor(tripled)).unwrap(), vec![6.0; 4]);
}

#[test]
fn unknown_uids_close_only_that_connection() {
    let s = common::start();
    let mut bystander = s.client();
    let (g, [.., sum]) = add_graph(&mut bystander);
    let wg = g.graph(&[sum]);
    bystander.graph_compute(0, &wg).unwrap();
    // Another session cannot name this session's uid, and uid 0 is never kept.
    for uid in [wg.uid, 0, 999_999] {
        let mut c = s.client();
        if uid == 0 {
            let (g, [.., sum]) = add_graph(&mut c);
            let mut wg = g.graph(&[sum]);
            wg.uid = 0;
            c.graph_compute(0, &wg).unwrap();
        }
        c.graph_recompute(0, uid).unwrap();
        common::assert_closed(&mut c);
    }
    bystander.graph_recompute(0, wg.uid).unwrap();
    assert_eq!(bystander.device_count().unwrap(), 1);
}

/// At `GRAPH_CACHE_MAX` graphs the next new uid clears the device's cache, where the client clears
/// its own record; and FREE_BUFFER invalidates what was kept.
#[test]
fn the_cache_clears_in_lockstep_with_the_client() {
    let s = common::start();
    let mut c = s.client();
    let (g, [.., sum]) = add_graph(&mut c);
    let first = g.graph(&[sum]);
    c.graph_compute(0, &first).unwrap();
    let mut wg = g.graph(&[sum]);
    for i in 1..GRAPH_CACHE_MAX as u64 {
        wg.uid = 1_000_000 + i;
        c.graph_compute(0, &wg).unwrap();
    }
    c.graph_recompute(0, first.uid).unwrap();
    c.graph_recompute(0, wg.uid).unwrap();
    assert_eq!(c.device_count().unwrap(), 1, "1024 graphs all kept");
    wg.uid = 5_000_000;
    c.graph_compute(0, &wg).unwrap();
    c.graph_recompute(0, wg.uid).unwrap();
    assert_eq!(c.device_count().unwrap(), 1);
    c.graph_recompute(0, first.uid).unwrap();
    common::assert_closed(&mut c);

    let mut c = s.client();
    let (g, [.., sum]) = add_graph(&mut c);
    let wg = g.graph(&[sum]);
    c.graph_compute(0, &wg).unwrap();
    let spare = c.alloc(0, 64).unwrap();
    c.free(spare).unwrap();
    c.graph_recompute(0, wg.uid).unwrap();
    common::assert_closed(&mut c);
}

#[test]
fn two_d_rows_go_where_the_stride_says() {
    let s = common::start();
    let mut c = s.client();
    let buf = c.alloc(0, 1 << 12).unwrap();
    let mut g = GraphBuilder::new(buf, 64);
    let id = g_input(&mut g);
    let t = g.tensor(id);
    c.set_f32(&t, &[0.0; 32]).unwrap();
    // Rows of 2 floats, every 8 floats, starting at float 1.
    let rows = Tensor2d {
        tensor: t.clone(),
        offset: 4,
        size: 8,
        n_copies: 4,
        stride: 32,
    };
    let data: Vec<u8> = (1..=8).flat_map(|v| (v as f32).to_le_bytes()).collect();
    c.set_tensor_2d(&rows, &data).unwrap();
    let all = c.get_f32(&t).unwrap();
    let mut want = vec![0.0f32; 32];
    for r in 0..4 {
        want[1 + 8 * r] = (2 * r + 1) as f32;
        want[2 + 8 * r] = (2 * r + 2) as f32;
    }
    assert_eq!(all, want);
    assert_eq!(c.get_tensor_2d(&rows).unwrap(), data);
    // Bad requests close only their connection: past the tensor, empty, lying about the data.
    let bad: [(&str, Tensor2d, usize); 4] = [
        (
            "past the end",
            Tensor2d {
                n_copies: 5,
                ..rows.clone()
            },
            40,
        ),
        (
            "no rows",
            Tensor2d {
                n_copies: 0,
                ..rows.clone()
            },
            0,
        ),
        ("data size", rows.clone(), 8),
        (
            "read more than the tensor",
            Tensor2d {
                stride: 0,
                n_copies: 17,
                ..rows.clone()
            },
            136,
        ),
    ];
    for (name, r, len) in bad {
        let mut c = s.client();
        let b = c.alloc(0, 1 << 12).unwrap();
        let mut g = GraphBuilder::new(b, 64);
        let id = g_input(&mut g);
        let t = g.tensor(id);
        let r = Tensor2d { tensor: t, ..r };
        if name.starts_with("read") {
            c.request(&ggrpc::proto::Request::GetTensor2d(r)).unwrap();
        } else {
            c.set_tensor_2d(&r, &vec![0; len]).unwrap();
        }
        common::assert_closed(&mut c);
    }
    assert_eq!(c.get_tensor_2d(&rows).unwrap(), data);
}

fn g_input(g: &mut GraphBuilder) -> TensorId {
    g.input(GgmlType::F32, [32, 1, 1, 1])
}

#[test]
fn each_major_knows_only_its_commands() {
    let v7 = common::start_with(common::Options {
        major: Some(Major::V7),
        ..Default::default()
    });
    let mut c = v7.client();
    assert_eq!(c.major(), Major::V7);
    // v7: GRAPH_RECOMPUTE names the device's last graph (4 bytes); 18 is NONE and closes.
    let (g, [a, _, sum]) = add_graph(&mut c);
    c.set_f32(&g.tensor(a), &[1.0; 4]).unwrap();
    c.graph_compute(0, &g.graph(&[sum])).unwrap();
    c.graph_recompute(0, 0).unwrap();
    assert_eq!(c.device_count().unwrap(), 1);
    c.send(18, &[0; 300]).unwrap();
    common::assert_closed(&mut c);
    let v8 = common::start();
    let mut c = v8.client();
    c.send(23, &[]).unwrap();
    common::assert_closed(&mut c);
    // A v8 GRAPH_RECOMPUTE must carry the uid.
    let mut c = v8.client();
    c.send(16, &[0; 4]).unwrap();
    common::assert_closed(&mut c);
}

fn comm_req(rank: u32, world: u32, port: u16) -> CommInit {
    CommInit {
        device: 0,
        rank,
        world,
        port: port as u32,
        host: b"127.0.0.1".to_vec(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two servers join a communicator as llama.cpp's `split_mode=tensor` makes them (both COMM_INITs in
/// flight at once) and sum partials, small ones in f32 and large ones with the peer's in bf16.
#[test]
fn two_servers_allreduce_partials() {
    let (s0, s1) = (common::start(), common::start());
    let port = free_port();
    let mut joins = Vec::new();
    for (rank, addr) in [(0, s0.addr), (1, s1.addr)] {
        joins.push(std::thread::spawn(move || {
            let mut c = Client::connect(addr).unwrap();
            assert!(
                c.comm_init(&comm_req(rank, 2, port)).unwrap(),
                "rank {rank}"
            );
            c
        }));
    }
    let clients: Vec<Client> = joins.into_iter().map(|j| j.join().unwrap()).collect();
    let n = 40_000u32; // ≥ 32768: the peer's partial travels as bf16
    let mut work = Vec::new();
    for (rank, mut c) in clients.into_iter().enumerate() {
        work.push(std::thread::spawn(move || {
            let buf = c.alloc(0, 8 * n as u64).unwrap();
            let small = common::f32_at(buf, 0, 3);
            let large = common::f32_at(buf, 64, n);
            let mine = if rank == 0 { 1.0 + 1.0 / 1024.0 } else { 2.0 };
            c.set_f32(&small, &[rank as f32 + 0.5; 3]).unwrap();
            c.set_f32(&large, &vec![mine; n as usize]).unwrap();
            c.comm_allreduce(0, &small).unwrap();
            c.comm_allreduce(0, &large).unwrap();
            let out = (c.get_f32(&small).unwrap(), c.get_f32(&large).unwrap());
            c.comm_free(0).unwrap();
            assert_eq!(c.device_count().unwrap(), 1);
            out
        }));
    }
    let r: Vec<_> = work.into_iter().map(|j| j.join().unwrap()).collect();
    assert_eq!(r[0].0, vec![2.0; 3]);
    assert_eq!(r[1].0, vec![2.0; 3]);
    // Each rank keeps its own partial exactly and adds the peer's rounded to bf16, as the reference.
    assert!(r[0].1.iter().all(|&v| v == 3.0 + 1.0 / 1024.0));
    assert!(r[1].1.iter().all(|&v| v == 3.0));
}

#[test]
fn communicators_can_be_refused() {
    let off = common::start_with(common::Options {
        no_comm: true,
        ..Default::default()
    });
    let mut c = off.client();
    assert!(!c.comm_init(&comm_req(0, 2, free_port())).unwrap());
    // An allreduce without a communicator closes the connection, as in the reference.
    let buf = c.alloc(0, 64).unwrap();
    c.comm_allreduce(0, &common::f32_at(buf, 0, 4)).unwrap();
    common::assert_closed(&mut c);
    let on = common::start();
    let mut c = on.client();
    assert!(
        !c.comm_init(&comm_req(0, 3, free_port())).unwrap(),
        "world 3"
    );
    assert!(
        !c.comm_init(&comm_req(1, 2, 80)).unwrap(),
        "privileged port"
    );
    let mut far = comm_req(1, 2, 6000);
    far.host = b"192.0.2.1".to_vec();
    assert!(!c.comm_init(&far).unwrap(), "loopback server, remote peer");
    assert_eq!(c.device_count().unwrap(), 1);
}
