//! Hostile types, shapes, sizes and graph structure, one named test per case: each closes only its own
//! connection (see `common::closes_only_itself`), except where a valid extreme must simply work.

mod common;

use ggrpc::client::GraphBuilder;
use ggrpc::ggml::{GgmlType, Op, TensorFlags};
use ggrpc::proto::{Command, WireGraph, WireTensor};

use common::{add_graph, closes_only_itself, set_tensor_payload, tensor_offset_size};

/// A GET_TENSOR of 4 bytes of a tensor at the start of `b`, with `typ` and `ne0` replaced.
fn get_with_type(
    c: &mut ggrpc::client::Client,
    b: ggrpc::client::RemoteBuffer,
    typ: u32,
    ne0: u32,
) {
    let t = WireTensor {
        typ,
        ne: [ne0, 1, 1, 1],
        ..common::f32_at(b, 0, 4)
    };
    c.send(Command::GetTensor as u8, &tensor_offset_size(&t, 0, 4))
        .unwrap();
}

/// Types 4 and 5 (Q4_2, Q4_3) were removed from ggml; their block size is 0 (a division by zero).
#[test]
fn removed_type_with_block_size_zero() {
    closes_only_itself("removed type 4", |c, b| get_with_type(c, b, 4, 32));
    closes_only_itself("removed type 5 in a graph", |c, b| {
        let (_, mut wg) = add_graph(b);
        wg.tensors[0].typ = 5;
        c.graph_compute(0, &wg).unwrap();
    });
}

#[test]
fn type_out_of_range() {
    closes_only_itself("type 43", |c, b| get_with_type(c, b, 43, 4));
    closes_only_itself("type u32::MAX", |c, b| get_with_type(c, b, u32::MAX, 4));
}

/// GHSA-mqp6-7pv6-fqjf: a row that ends in the middle of a quantization block.
#[test]
fn ne0_not_a_multiple_of_the_block_size() {
    closes_only_itself("Q4_0 with ne0 = 33", |c, b| get_with_type(c, b, 2, 33));
    closes_only_itself("Q8_0 SET_TENSOR with ne0 = 31", |c, b| {
        let t = WireTensor {
            typ: GgmlType::Q8_0 as u32,
            ne: [31, 1, 1, 1],
            nb: [34, 34, 34, 34],
            ..common::f32_at(b, 0, 4)
        };
        c.send(
            Command::SetTensor as u8,
            &set_tensor_payload(&t, 0, &[0; 34]),
        )
        .unwrap();
    });
}

#[test]
fn element_count_overflow() {
    closes_only_itself("ne = u32::MAX x 4", |c, b| {
        let t = WireTensor {
            ne: [u32::MAX; 4],
            ..common::f32_at(b, 0, 4)
        };
        c.send(Command::InitTensor as u8, &t.encode()).unwrap();
    });
}

/// GHSA-j8rj: `buffer == 0` with a raw `data` pointer must not be dereferenced.
#[test]
fn null_buffer_with_data() {
    closes_only_itself("graph input", |c, b| {
        let (_, mut wg) = add_graph(b);
        wg.tensors[0].buffer = 0;
        c.graph_compute(0, &wg).unwrap();
    });
    closes_only_itself("graph output", |c, b| {
        let (_, mut wg) = add_graph(b);
        wg.tensors[2].buffer = 0;
        c.graph_compute(0, &wg).unwrap();
    });
    closes_only_itself("SET_TENSOR", |c, b| {
        let t = WireTensor {
            buffer: 0,
            ..common::f32_at(b, 0, 4)
        };
        c.send(
            Command::SetTensor as u8,
            &set_tensor_payload(&t, 0, &[1; 16]),
        )
        .unwrap();
    });
}

#[test]
fn output_larger_than_its_buffer() {
    closes_only_itself("4096 floats in 4 KiB", |c, b| {
        let (_, mut wg) = add_graph(b);
        wg.tensors[2].ne = [4096, 1, 1, 1];
        wg.tensors[2].nb = [4, 4 * 4096, 4 * 4096, 4 * 4096];
        c.graph_compute(0, &wg).unwrap();
    });
    closes_only_itself("strides reach past the end", |c, b| {
        let (_, mut wg) = add_graph(b);
        wg.tensors[2].ne = [4, 2, 1, 1];
        wg.tensors[2].nb = [4, 4000, 8000, 8000];
        c.graph_compute(0, &wg).unwrap();
    });
}

#[test]
fn memset_size_overflow() {
    for (name, offset, size) in [
        ("size u64::MAX", 0, u64::MAX),
        ("offset + size wraps", 8, u64::MAX - 4),
        ("past the tensor", 0, 17),
    ] {
        closes_only_itself(name, |c, b| {
            let mut p = tensor_offset_size(&common::f32_at(b, 0, 4), offset, size);
            p.push(0xee);
            c.send(Command::MemsetTensor as u8, &p).unwrap();
        });
    }
}

#[test]
fn get_tensor_size_overflow() {
    for (name, offset, size) in [
        ("size u64::MAX", 0, u64::MAX),
        ("offset + size wraps", u64::MAX - 3, 8),
        ("size 1 << 63", 0, 1 << 63),
    ] {
        closes_only_itself(name, |c, b| {
            let t = common::f32_at(b, 0, 4);
            c.send(
                Command::GetTensor as u8,
                &tensor_offset_size(&t, offset, size),
            )
            .unwrap();
        });
    }
}

#[test]
fn unknown_node_ids() {
    closes_only_itself("node id not among the tensors", |c, b| {
        let (_, mut wg) = add_graph(b);
        wg.node_ids = vec![999];
        c.graph_compute(0, &wg).unwrap();
    });
    closes_only_itself("one good node, one unknown", |c, b| {
        let (_, mut wg) = add_graph(b);
        wg.node_ids = vec![3, u64::MAX];
        c.graph_compute(0, &wg).unwrap();
    });
}

/// Handles are per connection: another session's handle is unknown here, for every command.
#[test]
fn handle_from_another_connection() {
    let s = common::start();
    let mut owner = s.client();
    let ob = owner.alloc(0, 4096).unwrap();
    let ot = common::f32_at(ob, 0, 4);
    owner.set_f32(&ot, &[5.0; 4]).unwrap();
    type Attack = fn(&mut ggrpc::client::Client, ggrpc::client::RemoteBuffer);
    let attacks: [(&str, Attack); 5] = [
        ("SET_TENSOR", |c, b| {
            let t = common::f32_at(b, 0, 4);
            c.send(
                Command::SetTensor as u8,
                &set_tensor_payload(&t, 0, &[0; 16]),
            )
            .unwrap();
        }),
        ("GET_TENSOR", |c, b| {
            let t = common::f32_at(b, 0, 4);
            c.send(Command::GetTensor as u8, &tensor_offset_size(&t, 0, 16))
                .unwrap();
        }),
        ("FREE_BUFFER", |c, b| c.free(b).unwrap()),
        ("BUFFER_CLEAR", |c, b| c.clear(b, 0xff).unwrap()),
        ("graph output", |c, b| {
            let mine = c.alloc(0, 4096).unwrap();
            let (_, mut wg) = add_graph(mine);
            wg.tensors[2].buffer = b.handle;
            wg.tensors[2].data = b.base;
            c.graph_compute(0, &wg).unwrap();
        }),
    ];
    for (name, attack) in attacks {
        let mut thief = s.client();
        attack(&mut thief, ob);
        common::assert_closed(&mut thief);
        assert_eq!(owner.get_f32(&ot).unwrap(), vec![5.0; 4], "{name}");
    }
}

/// A 200 000-deep dependency chain (59 MB of graph): node k is `node k-1 + 1`, all on one float, and
/// the nodes are listed last-first so rebuilding from the first node walks the whole chain at once.
#[test]
fn deep_dependency_chain_of_200_000() {
    let s = common::start();
    let mut c = s.client();
    let n = 200_000u64;
    let buf = c.alloc(0, 128).unwrap();
    let one = WireTensor {
        id: 1,
        ..common::f32_at(buf, 0, 1)
    };
    let acc = WireTensor {
        id: 2,
        ..common::f32_at(buf, 64, 1)
    };
    c.set_f32(&one, &[1.0]).unwrap();
    c.set_f32(&acc, &[0.0]).unwrap();
    let mut tensors = vec![one, acc.clone()];
    for id in 3..n + 3 {
        tensors.push(WireTensor {
            id,
            op: Op::Add as u32,
            flags: TensorFlags::COMPUTE,
            src: [id - 1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            ..acc.clone()
        });
    }
    let wg = WireGraph {
        uid: 0,
        device: 0,
        node_ids: (3..n + 3).rev().collect(),
        tensors,
    };
    c.graph_compute(0, &wg).unwrap();
    assert_eq!(c.get_f32(&acc).unwrap(), vec![n as f32]);
}

/// ARGSORT and TOP_K write indices as wide as their destination; sizes that disagree are refused.
#[test]
fn argsort_and_top_k_sizes() {
    let attack = |ne_dst: [usize; 4], op: Op| {
        move |c: &mut ggrpc::client::Client, b: ggrpc::client::RemoteBuffer| {
            let mut g = GraphBuilder::new(b, 64);
            let a = g.input(GgmlType::F32, [8, 2, 1, 1]);
            let out = g.op(op, GgmlType::I32, ne_dst, &[a], [0; 16]);
            c.graph_compute(0, &g.graph(&[out])).unwrap();
        }
    };
    closes_only_itself("ARGSORT dst shorter", attack([4, 2, 1, 1], Op::Argsort));
    closes_only_itself("ARGSORT dst longer", attack([16, 2, 1, 1], Op::Argsort));
    closes_only_itself("TOP_K k > ne0", attack([9, 2, 1, 1], Op::TopK));
    closes_only_itself("TOP_K fewer rows", attack([4, 1, 1, 1], Op::TopK));
    closes_only_itself("ARGSORT bad order", |c, b| {
        let mut g = GraphBuilder::new(b, 64);
        let a = g.input(GgmlType::F32, [8, 2, 1, 1]);
        let out = g.op(Op::Argsort, GgmlType::I32, [8, 2, 1, 1], &[a], [7; 16]);
        c.graph_compute(0, &g.graph(&[out])).unwrap();
    });
}

/// Zero or overlapping strides let a 4-byte tensor claim 2^40 elements: a kernel would loop for hours
/// and hold the device's workers from every other client. A tensor's elements must fit in its bytes.
#[test]
fn more_elements_than_bytes() {
    closes_only_itself("zero strides", |c, b| {
        let (_, mut wg) = add_graph(b);
        for t in &mut wg.tensors {
            t.ne = [1 << 20, 1 << 20, 1, 1];
            t.nb = [0; 4];
        }
        c.graph_compute(0, &wg).unwrap();
    });
    closes_only_itself("rows overlap", |c, b| {
        let (_, mut wg) = add_graph(b);
        for t in &mut wg.tensors {
            t.ne = [64, 1 << 24, 1, 1];
            t.nb = [4, 4, 4 << 24, 4 << 24];
        }
        c.graph_compute(0, &wg).unwrap();
    });
    // A broadcast source with zero strides over a real destination is refused too.
    closes_only_itself("zero-stride source", |c, b| {
        let (_, mut wg) = add_graph(b);
        wg.tensors[1].ne = [1 << 20, 1 << 20, 1, 1];
        wg.tensors[1].nb = [0; 4];
        c.graph_compute(0, &wg).unwrap();
    });
}

/// Indices read from tensor contents (beside GET_ROWS/SET_ROWS in hostile.rs): expert ids of
/// MUL_MAT_ID and row ids of ADD_ID, too large or negative, fail the graph and close the connection.
#[test]
fn expert_and_row_ids_out_of_range() {
    for bad in [2i32, -1] {
        closes_only_itself("MUL_MAT_ID expert id", |c, b| {
            let mut g = GraphBuilder::new(b, 64);
            let experts = g.input(GgmlType::F32, [4, 2, 2, 1]);
            let x = g.input(GgmlType::F32, [4, 1, 1, 1]);
            let ids = g.input(GgmlType::I32, [1, 1, 1, 1]);
            let out = g.op(
                Op::MulMatId,
                GgmlType::F32,
                [2, 1, 1, 1],
                &[experts, x, ids],
                [0; 16],
            );
            c.set_tensor(&g.tensor(ids), 0, &bad.to_le_bytes(), false)
                .unwrap();
            c.graph_compute(0, &g.graph(&[out])).unwrap();
        });
        closes_only_itself("ADD_ID row id", |c, b| {
            let mut g = GraphBuilder::new(b, 64);
            let a = g.input(GgmlType::F32, [4, 2, 1, 1]);
            let rows = g.input(GgmlType::F32, [4, 2, 1, 1]);
            let ids = g.input(GgmlType::I32, [2, 1, 1, 1]);
            let out = g.op(
                Op::AddId,
                GgmlType::F32,
                [4, 2, 1, 1],
                &[a, rows, ids],
                [0; 16],
            );
            let v: Vec<u8> = [0, bad].iter().flat_map(|v| v.to_le_bytes()).collect();
            c.set_tensor(&g.tensor(ids), 0, &v, false).unwrap();
            c.graph_compute(0, &g.graph(&[out])).unwrap();
        });
    }
}

/// The same graphs with ids in range compute (so the cases above fail on the ids, not the shapes).
#[test]
fn expert_and_row_ids_in_range_work() {
    let s = common::start();
    let mut c = s.client();
    let b = c.alloc(0, 4096).unwrap();
    let mut g = GraphBuilder::new(b, 64);
    let a = g.input(GgmlType::F32, [4, 2, 1, 1]);
    let rows = g.input(GgmlType::F32, [4, 2, 1, 1]);
    let ids = g.input(GgmlType::I32, [2, 1, 1, 1]);
    let out = g.op(
        Op::AddId,
        GgmlType::F32,
        [4, 2, 1, 1],
        &[a, rows, ids],
        [0; 16],
    );
    c.set_f32(&g.tensor(a), &[1.0; 8]).unwrap();
    c.set_f32(&g.tensor(rows), &[0.0, 0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 5.0])
        .unwrap();
    let v: Vec<u8> = [1i32, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
    c.set_tensor(&g.tensor(ids), 0, &v, false).unwrap();
    let experts = g.input(GgmlType::F32, [4, 2, 2, 1]);
    let x = g.input(GgmlType::F32, [4, 1, 1, 1]);
    let eid = g.input(GgmlType::I32, [1, 1, 1, 1]);
    let mm = g.op(
        Op::MulMatId,
        GgmlType::F32,
        [2, 1, 1, 1],
        &[experts, x, eid],
        [0; 16],
    );
    let ev: Vec<f32> = (0..16).map(|i| i as f32).collect();
    c.set_f32(&g.tensor(experts), &ev).unwrap();
    c.set_f32(&g.tensor(x), &[1.0; 4]).unwrap();
    c.set_tensor(&g.tensor(eid), 0, &1i32.to_le_bytes(), false)
        .unwrap();
    c.graph_compute(0, &g.graph(&[out, mm])).unwrap();
    assert_eq!(
        c.get_f32(&g.tensor(out)).unwrap(),
        vec![6.0, 6.0, 6.0, 6.0, 1.0, 1.0, 1.0, 1.0]
    );
    // Expert 1's rows are 8..12 and 12..16: sums 38 and 54.
    assert_eq!(c.get_f32(&g.tensor(mm)).unwrap(), vec![38.0, 54.0]);
}
