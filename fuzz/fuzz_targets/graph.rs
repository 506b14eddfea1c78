//! GRAPH_COMPUTE payloads: parsing, rebuilding the DAG (`proto::build_graph`) and the CPU device's
//! per-node checks. Invariants: sources come before their users, every node and source index is in
//! range, every tensor with memory lies inside its buffer.
#![no_main]

use std::sync::LazyLock;

use ggrpc::device::Device;
use ggrpc::device::cpu::CpuDevice;
use ggrpc::proto::{Major, WireGraph, build_graph};
use ggrpc_fuzz::FakeBuffers;
use libfuzzer_sys::fuzz_target;

static CPU: LazyLock<CpuDevice> =
    LazyLock::new(|| CpuDevice::new(1, Some(1 << 20)).expect("cpu device"));

fuzz_target!(|data: &[u8]| {
    for major in Major::ALL {
        check(data, major);
    }
});

fn check(data: &[u8], major: Major) {
    let Ok(wg) = WireGraph::parse(data, major) else {
        return;
    };
    let Ok(g) = build_graph(&wg, &FakeBuffers) else {
        return;
    };
    assert_eq!(g.nodes.len(), wg.node_ids.len());
    assert!(g.nodes.iter().all(|&n| n < g.tensors.len()));
    for (i, t) in g.tensors.iter().enumerate() {
        for &s in t.src.iter().flatten().chain(t.view_src.iter()) {
            assert!(s <= i, "source {s} of tensor {i} comes after it");
        }
        if let Some(d) = t.data {
            let n = t.nbytes().expect("built tensor has a size");
            assert!(d.offset + n <= 1 << 20, "tensor escapes its buffer");
        }
    }
    let _ = CPU.check_graph(&g);
}
