//! Every command both majors share, against a real server on loopback, driven by the Rust client
//! (8.0.0, the default; `protocol_v8.rs` has what 8.0.0 adds).

mod common;

use ggrpc::client::{Client, GraphBuilder, wire_nbytes};
use ggrpc::ggml::{GgmlType, Op};
use ggrpc::proto::{Command, Major, WireTensor};

#[test]
fn hello_reply_names_the_configured_major_with_zero_caps() {
    for (major, version) in [(Major::V8, [8, 0, 0, 0]), (Major::V7, [7, 0, 0, 0])] {
        let s = common::start_with(common::Options {
            major: Some(major),
            ..Default::default()
        });
        let mut c = Client::connect_raw(s.addr).unwrap();
        // A client offering RDMA caps still gets zeros back.
        c.send(Command::Hello as u8, &[0xab; 24]).unwrap();
        let r = c.recv(Some(28)).unwrap();
        assert_eq!(&r[..4], &version);
        assert!(r[4..].iter().all(|&b| b == 0));
    }
}

#[test]
fn device_queries() {
    let s = common::start();
    let mut c = s.client();
    assert_eq!(c.device_count().unwrap(), 1);
    let align = c.alignment(0).unwrap();
    assert!(align >= 32 && align.is_power_of_two());
    assert!(c.max_size(0).unwrap() >= 1 << 32);
    let (free, total) = c.memory(0).unwrap();
    assert!(total > 0 && free <= total);
}

#[test]
fn alloc_base_set_get_copy_memset_clear_free() {
    let s = common::start();
    let mut c = s.client();
    let align = c.alignment(0).unwrap();
    let buf = c.alloc(0, 4096).unwrap();
    assert_eq!(buf.size, 4096);
    assert!(buf.base != 0 && buf.base.is_multiple_of(align));
    let other = c.alloc(0, 4096).unwrap();
    assert_ne!(other.handle, buf.handle);
    assert!(
        other.base >= buf.base + 4096 || other.base + 4096 <= buf.base,
        "windows must not overlap"
    );

    let t = common::f32_at(buf, 64, 8);
    let data: Vec<u8> = (0..32).collect();
    c.set_tensor(&t, 0, &data, false).unwrap();
    assert_eq!(c.get_tensor(&t, 0, 32).unwrap(), data);
    // Partial write at an offset inside the tensor.
    c.set_tensor(&t, 8, &[0xee; 4], false).unwrap();
    assert_eq!(&c.get_tensor(&t, 4, 12).unwrap()[4..8], &[0xee; 4]);

    // COPY_TENSOR into the other buffer.
    let dst = common::f32_at(other, 128, 8);
    assert!(c.copy_tensor(&t, &dst).unwrap());
    assert_eq!(
        c.get_tensor(&dst, 0, 32).unwrap(),
        c.get_tensor(&t, 0, 32).unwrap()
    );

    // MEMSET_TENSOR part of it.
    c.memset(&dst, 4, 8, 0x5a).unwrap();
    let got = c.get_tensor(&dst, 0, 32).unwrap();
    assert_eq!(&got[4..12], &[0x5a; 8]);
    assert_eq!(got[12], data[12]);

    // BUFFER_CLEAR the whole buffer.
    c.clear(other, 0x11).unwrap();
    assert_eq!(c.get_tensor(&dst, 0, 32).unwrap(), vec![0x11; 32]);

    // INIT_TENSOR and GET_ALLOC_SIZE.
    c.init_tensor(&t).unwrap();
    assert_eq!(c.alloc_size(0, &t, &[]).unwrap(), 32);
    let q = WireTensor {
        typ: GgmlType::Q4_0 as u32,
        ne: [96, 2, 1, 1],
        nb: [18, 54, 108, 108],
        ..t.clone()
    };
    assert_eq!(
        c.alloc_size(0, &q, std::slice::from_ref(&t)).unwrap(),
        wire_nbytes(&q).unwrap()
    );

    c.free(buf).unwrap();
    c.free(other).unwrap();
    assert_eq!(c.device_count().unwrap(), 1, "connection still usable");
    assert!(s.wait_used(0), "freed buffers return their memory");
}

#[test]
fn zero_size_buffer_has_base_zero() {
    let s = common::start();
    let mut c = s.client();
    let b = c.alloc(0, 0).unwrap();
    assert_ne!(b.handle, 0);
    assert_eq!((b.base, b.size), (0, 0));
    c.clear(b, 1).unwrap();
    c.free(b).unwrap();
    assert_eq!(c.device_count().unwrap(), 1);
}

#[test]
fn allocation_past_the_cap_answers_zero_and_keeps_the_connection() {
    let s = common::start_with(common::Options {
        mem_cap: Some(1 << 20),
        ..Default::default()
    });
    let mut c = s.client();
    let (free, total) = c.memory(0).unwrap();
    assert_eq!((free, total), (1 << 20, 1 << 20));
    let a = c.alloc(0, 600 << 10).unwrap();
    let err = c.alloc(0, 600 << 10).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::OutOfMemory);
    // The cap is shared across sessions.
    let mut other = s.client();
    assert!(other.alloc(0, 600 << 10).is_err());
    c.free(a).unwrap();
    assert!(s.wait_used(0));
    assert!(other.alloc(0, 600 << 10).is_ok());
}

/// PROTOCOL.md Appendix C: a + b, then GRAPH_RECOMPUTE after new inputs.
#[test]
fn graph_compute_and_recompute() {
    let s = common::start();
    let mut c = s.client();
    let buf = c.alloc(0, 1 << 16).unwrap();
    let mut g = GraphBuilder::new(buf, c.alignment(0).unwrap());
    let a = g.input(GgmlType::F32, [4, 1, 1, 1]);
    let b = g.input(GgmlType::F32, [4, 1, 1, 1]);
    let sum = g.op(Op::Add, GgmlType::F32, [4, 1, 1, 1], &[a, b], [0; 16]);
    c.set_f32(&g.tensor(a), &[1.0, 2.0, 3.0, 4.0]).unwrap();
    c.set_f32(&g.tensor(b), &[10.0, 20.0, 30.0, 40.0]).unwrap();
    let wg = g.graph(&[sum]);
    c.graph_compute(0, &wg).unwrap();
    assert_eq!(
        c.get_f32(&g.tensor(sum)).unwrap(),
        vec![11.0, 22.0, 33.0, 44.0]
    );
    c.set_f32(&g.tensor(a), &[0.5; 4]).unwrap();
    c.graph_recompute(0, wg.uid).unwrap();
    assert_eq!(
        c.get_f32(&g.tensor(sum)).unwrap(),
        vec![10.5, 20.5, 30.5, 40.5]
    );
}

#[test]
fn nodes_without_compute_flag_are_skipped() {
    let s = common::start();
    let mut c = s.client();
    let buf = c.alloc(0, 1 << 16).unwrap();
    let mut g = GraphBuilder::new(buf, 64);
    let a = g.input(GgmlType::F32, [4, 1, 1, 1]);
    let sum = g.op(Op::Add, GgmlType::F32, [4, 1, 1, 1], &[a, a], [0; 16]);
    g.tensor_mut(sum).flags = 0;
    c.set_f32(&g.tensor(a), &[1.0; 4]).unwrap();
    c.set_f32(&g.tensor(sum), &[7.0; 4]).unwrap();
    c.graph_compute(0, &g.graph(&[sum])).unwrap();
    assert_eq!(c.get_f32(&g.tensor(sum)).unwrap(), vec![7.0; 4]);
}

#[test]
fn cache_round_trip_and_truncated_file_is_a_miss() {
    let dir = std::env::temp_dir().join(format!("ggrpc-it-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = common::start_with(common::Options {
        cache_dir: Some(dir.clone()),
        ..Default::default()
    });
    let mut c = s.client();
    let buf = c.alloc(0, 1 << 16).unwrap();
    let t = common::f32_at(buf, 0, 1024);
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    assert!(!c.set_tensor_hash(&t, 0, &data).unwrap(), "cold cache");
    c.set_tensor(&t, 0, &data, true).unwrap();
    c.device_count().unwrap(); // SET_TENSOR has no reply: a round trip orders it before the checks.
    let name = format!("{:016x}", ggrpc::proto::hash::fnv1a(&data));
    assert_eq!(std::fs::read(dir.join(&name)).unwrap(), data);
    // A warm hit loads the bytes into another tensor.
    let t2 = common::f32_at(buf, 8192, 1024);
    assert!(c.set_tensor_hash(&t2, 0, &data).unwrap());
    assert_eq!(c.get_tensor(&t2, 0, 4096).unwrap(), data);
    // A truncated file is a miss, not garbage.
    std::fs::write(dir.join(&name), &data[..100]).unwrap();
    let t3 = common::f32_at(buf, 16384, 1024);
    assert!(!c.set_tensor_hash(&t3, 0, &data).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_concurrent_clients_keep_separate_state() {
    let s = common::start();
    let mut a = s.client();
    let mut b = s.client();
    let ba = a.alloc(0, 4096).unwrap();
    let bb = b.alloc(0, 4096).unwrap();
    assert_ne!(ba.handle, bb.handle);
    let ta = common::f32_at(ba, 0, 4);
    let tb = common::f32_at(bb, 0, 4);
    a.set_f32(&ta, &[1.0; 4]).unwrap();
    b.set_f32(&tb, &[2.0; 4]).unwrap();
    assert_eq!(a.get_f32(&ta).unwrap(), vec![1.0; 4]);
    assert_eq!(b.get_f32(&tb).unwrap(), vec![2.0; 4]);
    // Handles are meaningless on another connection: b using a's handle is closed.
    let stolen = common::f32_at(ba, 0, 4);
    b.send(Command::GetTensor as u8, &{
        let mut p = stolen.encode().to_vec();
        p.extend_from_slice(&0u64.to_le_bytes());
        p.extend_from_slice(&16u64.to_le_bytes());
        p
    })
    .unwrap();
    common::assert_closed(&mut b);
    assert_eq!(a.get_f32(&ta).unwrap(), vec![1.0; 4]);
}

#[test]
fn disconnect_frees_the_session_buffers() {
    let s = common::start();
    {
        let mut c = s.client();
        c.alloc(0, 1 << 20).unwrap();
        c.alloc(0, 1 << 20).unwrap();
        assert_eq!(s.cpu.used(), 2 << 20);
    }
    assert!(s.wait_used(0));
}
