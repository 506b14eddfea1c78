//! Hostile and malformed requests: each closes only its own connection; the server, other sessions and
//! their buffers are untouched, and a fresh client still works.

mod common;

use ggrpc::client::{Client, GraphBuilder};
use ggrpc::ggml::{GgmlType, Op};
use ggrpc::proto::{Command, WireGraph, WireTensor};

use common::{add_graph, closes_only_itself, set_tensor_payload, tensor_offset_size};

#[test]
fn first_command_must_be_hello() {
    let s = common::start();
    let mut c = Client::connect_raw(s.addr).unwrap();
    c.send(Command::DeviceCount as u8, &[]).unwrap();
    common::assert_closed(&mut c);
    let mut c = Client::connect_raw(s.addr).unwrap();
    c.send(Command::Hello as u8, &[0; 23]).unwrap();
    common::assert_closed(&mut c);
    assert_eq!(s.client().device_count().unwrap(), 1);
}

#[test]
fn framing_errors() {
    closes_only_itself("second HELLO", |c, _| {
        c.send(Command::Hello as u8, &[0; 24]).unwrap()
    });
    closes_only_itself("NONE command", |c, _| c.send(18, &[]).unwrap());
    closes_only_itself("command 200", |c, _| c.send(200, &[]).unwrap());
    closes_only_itself("fixed length mismatch", |c, _| {
        c.send(Command::GetAlignment as u8, &[0; 5]).unwrap()
    });
    closes_only_itself("DEVICE_COUNT with payload", |c, _| {
        c.send(Command::DeviceCount as u8, &[0]).unwrap()
    });
    closes_only_itself("short SET_TENSOR", |c, _| {
        c.send(Command::SetTensor as u8, &[0; 100]).unwrap()
    });
}

#[test]
fn device_and_handle_checks() {
    closes_only_itself("device index", |c, _| {
        c.send(Command::GetAlignment as u8, &5u32.to_le_bytes())
            .unwrap()
    });
    closes_only_itself("alloc on bad device", |c, _| {
        let mut p = 9u32.to_le_bytes().to_vec();
        p.extend_from_slice(&64u64.to_le_bytes());
        c.send(Command::AllocBuffer as u8, &p).unwrap()
    });
    closes_only_itself("unknown handle", |c, _| {
        c.send(Command::BufferGetBase as u8, &777u64.to_le_bytes())
            .unwrap()
    });
    closes_only_itself("double free", |c, b| {
        c.free(b).unwrap();
        c.free(b).unwrap();
    });
    closes_only_itself("recompute without graph", |c, _| {
        c.graph_recompute(0, 1).unwrap()
    });
}

/// GHSA-wcr5-566p-9cwj and GHSA-5vm9-p64x-gqw9: `data` pointing outside the buffer.
#[test]
fn arbitrary_write_and_read_are_refused() {
    closes_only_itself("SET_TENSOR outside buffer", |c, b| {
        let t = WireTensor {
            data: 0x4141_4141,
            ..common::f32_at(b, 0, 4)
        };
        c.send(
            Command::SetTensor as u8,
            &set_tensor_payload(&t, 0, &[0xff; 16]),
        )
        .unwrap();
    });
    closes_only_itself("GET_TENSOR outside buffer", |c, b| {
        let t = common::f32_at(b, 4096 - 8, 4);
        c.send(Command::GetTensor as u8, &tensor_offset_size(&t, 0, 16))
            .unwrap();
    });
    closes_only_itself("SET_TENSOR past the tensor", |c, b| {
        let t = common::f32_at(b, 0, 4);
        c.send(
            Command::SetTensor as u8,
            &set_tensor_payload(&t, 8, &[0; 16]),
        )
        .unwrap();
    });
    closes_only_itself("GET_TENSOR offset+size wraps", |c, b| {
        let t = common::f32_at(b, 0, 4);
        c.send(
            Command::GetTensor as u8,
            &tensor_offset_size(&t, u64::MAX - 3, 8),
        )
        .unwrap();
    });
    closes_only_itself("MEMSET offset+size wraps", |c, b| {
        let mut p = tensor_offset_size(&common::f32_at(b, 0, 4), 8, u64::MAX - 4);
        p.push(0);
        c.send(Command::MemsetTensor as u8, &p).unwrap();
    });
    closes_only_itself("exabyte SET_TENSOR", |c, b| {
        let t = common::f32_at(b, 0, 4);
        let mut frame = vec![Command::SetTensor as u8];
        frame.extend_from_slice(&(1u64 << 60).to_le_bytes());
        frame.extend_from_slice(&set_tensor_payload(&t, 0, &[]));
        c.send_bytes(&frame).unwrap();
    });
    closes_only_itself("COPY_TENSOR larger source", |c, b| {
        let src = common::f32_at(b, 0, 512);
        let dst = common::f32_at(b, 4096 - 16, 4);
        let mut p = src.encode().to_vec();
        p.extend_from_slice(&dst.encode());
        c.send(Command::CopyTensor as u8, &p).unwrap();
    });
}

#[test]
fn hostile_graphs() {
    type Mutate = fn(&mut WireGraph);
    let cases: [(&str, Mutate); 6] = [
        ("custom op", |g| g.tensors[2].op = Op::Custom as u32),
        ("map_custom op", |g| g.tensors[2].op = Op::MapCustom1 as u32),
        ("op id out of range", |g| g.tensors[2].op = 101),
        ("node id 0", |g| g.node_ids = vec![0]),
        ("unknown source id", |g| g.tensors[2].src[1] = 12345),
        ("cycle", |g| g.tensors[0].src[0] = 3),
    ];
    for (name, mutate) in cases {
        closes_only_itself(name, |c, b| {
            let (_, mut wg) = add_graph(b);
            mutate(&mut wg);
            c.graph_compute(0, &wg).unwrap();
        });
    }
    closes_only_itself("counts lie about the payload", |c, b| {
        let (_, wg) = add_graph(b);
        // v8 layout: device u32 | uid u64 | n_nodes u32 ...
        let mut p = wg.encode(c.major());
        p[12..16].copy_from_slice(&1000u32.to_le_bytes());
        c.send(Command::GraphCompute as u8, &p).unwrap();
    });
    closes_only_itself("graph payload beyond the limit", |c, _| {
        let mut frame = vec![Command::GraphCompute as u8];
        frame.extend_from_slice(&u64::MAX.to_le_bytes());
        c.send_bytes(&frame).unwrap();
    });
}

/// GHSA-2phh-px2f-2qmx: GRAPH_RECOMPUTE after FREE_BUFFER must not touch freed memory.
#[test]
fn recompute_after_free_is_refused() {
    closes_only_itself("recompute after free", |c, b| {
        let other = c.alloc(0, 4096).unwrap();
        let (_, wg) = add_graph(b);
        // The graph may or may not compute on this build; either way the stored graph is dropped by FREE.
        c.graph_compute(0, &wg).unwrap();
        c.free(other).unwrap();
        c.graph_recompute(0, wg.uid).unwrap();
    });
}

#[test]
fn disconnect_mid_payload_leaves_the_server_serving() {
    let s = common::start();
    for _ in 0..20 {
        let mut c = s.client();
        let b = c.alloc(0, 1 << 16).unwrap();
        let t = common::f32_at(b, 0, 1024);
        let p = set_tensor_payload(&t, 0, &[0; 4096]);
        let mut frame = vec![Command::SetTensor as u8];
        frame.extend_from_slice(&(p.len() as u64).to_le_bytes());
        frame.extend_from_slice(&p[..p.len() / 2]);
        c.send_bytes(&frame).unwrap();
    }
    assert!(s.wait_used(0), "every aborted session freed its buffer");
    assert_eq!(s.client().device_count().unwrap(), 1);
}

/// Values inside tensors are checked where a kernel indexes with them.
#[test]
fn out_of_range_indices_in_tensor_data() {
    closes_only_itself("GET_ROWS index out of range", |c, b| {
        let mut g = GraphBuilder::new(b, 64);
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
        c.graph_compute(0, &g.graph(&[rows])).unwrap();
    });
    closes_only_itself("SET_ROWS negative index", |c, b| {
        let mut g = GraphBuilder::new(b, 64);
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
        c.graph_compute(0, &g.graph(&[set])).unwrap();
    });
}

#[test]
fn valid_get_rows_still_works() {
    let s = common::start();
    let mut c = s.client();
    let b = c.alloc(0, 4096).unwrap();
    let mut g = GraphBuilder::new(b, 64);
    let table = g.input(GgmlType::F32, [2, 3, 1, 1]);
    let idx = g.input(GgmlType::I32, [2, 1, 1, 1]);
    let rows = g.op(
        Op::GetRows,
        GgmlType::F32,
        [2, 2, 1, 1],
        &[table, idx],
        [0; 16],
    );
    c.set_f32(&g.tensor(table), &[0.0, 1.0, 10.0, 11.0, 20.0, 21.0])
        .unwrap();
    let ids: Vec<u8> = [2i32, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
    c.set_tensor(&g.tensor(idx), 0, &ids, false).unwrap();
    c.graph_compute(0, &g.graph(&[rows])).unwrap();
    assert_eq!(
        c.get_f32(&g.tensor(rows)).unwrap(),
        vec![20.0, 21.0, 0.0, 1.0]
    );
}
