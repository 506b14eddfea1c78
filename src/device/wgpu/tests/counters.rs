//! Device counters: what a graph dispatches, submits and reads back, counted (never timed).

use super::refs::random_tensor;
use super::{Builder, device_or_skip};
use crate::device::host_kernels::testkit::{HostTensor, Rng, params_f32};
use crate::device::{Device, DeviceCounters, GraphCache, GraphCounts};
use crate::ggml::{GgmlType, Op, Tensor};

/// `after - before` for the cumulative counters (gauges and `last_graph` from `after`).
fn delta(before: &DeviceCounters, after: &DeviceCounters) -> DeviceCounters {
    DeviceCounters {
        graphs: after.graphs - before.graphs,
        nodes_computed: after.nodes_computed - before.nodes_computed,
        nodes_fallback: after.nodes_fallback - before.nodes_fallback,
        dispatches: after.dispatches - before.dispatches,
        submits: after.submits - before.submits,
        readbacks: after.readbacks - before.readbacks,
        ..*after
    }
}

/// The totals one graph with `g`'s numbers adds.
fn totals_of(g: GraphCounts, graphs: u64) -> (u64, u64, u64, u64, u64, u64) {
    (
        graphs,
        g.nodes * graphs,
        g.fallback * graphs,
        g.dispatches * graphs,
        g.submits * graphs,
        g.readbacks * graphs,
    )
}

fn totals(d: &DeviceCounters) -> (u64, u64, u64, u64, u64, u64) {
    (
        d.graphs,
        d.nodes_computed,
        d.nodes_fallback,
        d.dispatches,
        d.submits,
        d.readbacks,
    )
}

#[test]
fn native_graph_is_one_submit_without_readbacks() {
    let Some(dev) = device_or_skip("native_graph_is_one_submit_without_readbacks") else {
        return;
    };
    let mut rng = Rng::new(60);
    let ne = [9, 4, 1, 1];
    let (a, _) = random_tensor(GgmlType::F32, ne, &mut rng);
    let mut g = Builder::new(&dev);
    let ia = g.input(&a);
    let add = g.node(Tensor::new(GgmlType::F32, ne), Op::Add, [0; 16], &[ia, ia]);
    let scaled = g.node(
        Tensor::new(GgmlType::F32, ne),
        Op::Scale,
        params_f32(&[2.0, 0.0]),
        &[add],
    );
    // Not flagged COMPUTE: skipped, not counted.
    let skipped = g.node(Tensor::new(GgmlType::F32, ne), Op::Add, [0; 16], &[ia, ia]);
    g.graph.tensors[skipped].flags = 0;

    let before = dev.counters();
    let live: u64 = g.buffers.values().map(|b| b.size() as u64).sum();
    assert_eq!((before.bytes_allocated, before.buffers), (live, 4));
    dev.compute(&g.graph, &g.buffers).unwrap();
    let after = dev.counters();
    let want = GraphCounts {
        nodes: 2,
        fallback: 0,
        dispatches: 2,
        submits: 1,
        readbacks: 0,
    };
    assert_eq!(after.last_graph, want);
    assert_eq!(totals(&delta(&before, &after)), totals_of(want, 1));

    // GET_TENSOR of a GPU buffer: one copy submitted and waited on, outside any graph.
    let got = g.read_f32(scaled);
    let c = dev.counters();
    assert_eq!(
        (c.submits, c.readbacks),
        (after.submits + 1, after.readbacks + 1)
    );
    assert_eq!(c.last_graph, want);
    assert_eq!(got, g.on_cpu(scaled));

    drop(g);
    let c = dev.counters();
    assert_eq!((c.bytes_allocated, c.buffers), (0, 0));
}

#[test]
fn fallback_node_counts_its_downloads() {
    let Some(dev) = device_or_skip("fallback_node_counts_its_downloads") else {
        return;
    };
    let mut rng = Rng::new(61);
    let ne = [9, 4, 1, 1];
    let (a, _) = random_tensor(GgmlType::F32, ne, &mut rng);
    let mut g = Builder::new(&dev);
    let ia = g.input(&a);
    let add = g.node(Tensor::new(GgmlType::F32, ne), Op::Add, [0; 16], &[ia, ia]);
    // SUM_ROWS has no native kernel: it runs through the CPU kernels on host copies.
    let rows = g.node(
        Tensor::new(GgmlType::F32, [1, 4, 1, 1]),
        Op::SumRows,
        [0; 16],
        &[add],
    );
    let out = g.node(
        Tensor::new(GgmlType::F32, [1, 4, 1, 1]),
        Op::Scale,
        params_f32(&[0.5, 0.0]),
        &[rows],
    );
    let before = dev.counters();
    dev.compute(&g.graph, &g.buffers).unwrap();
    let after = dev.counters();
    // ADD's batch; the source and destination downloads; SCALE's batch. The aligned upload of the
    // result is a queue write, not a submission.
    let want = GraphCounts {
        nodes: 3,
        fallback: 1,
        dispatches: 2,
        submits: 4,
        readbacks: 2,
    };
    assert_eq!(after.last_graph, want);
    assert_eq!(totals(&delta(&before, &after)), totals_of(want, 1));
    assert_eq!(g.read_f32(out), g.on_cpu(out));
}

#[test]
fn stored_graph_replay_counts_the_same_per_graph_numbers() {
    let Some(dev) = device_or_skip("stored_graph_replay_counts_the_same_per_graph_numbers") else {
        return;
    };
    let mut rng = Rng::new(62);
    let (table, _) = random_tensor(GgmlType::F32, [8, 5, 1, 1], &mut rng);
    let ids = HostTensor::from_i32([2, 1, 1, 1], &[4, 1]);
    let (w, _) = random_tensor(GgmlType::Q8_0, [64, 16, 1, 1], &mut rng);
    let (x, _) = random_tensor(GgmlType::F32, [64, 1, 3, 1], &mut rng);
    let pos = HostTensor::from_i32([3, 1, 1, 1], &[0, 5, 9]);
    let mut g = Builder::new(&dev);
    let (it, ii) = (g.input(&table), g.input(&ids));
    let (iw, ix, ip) = (g.input(&w), g.input(&x), g.input(&pos));
    // GET_ROWS makes the run read the index flags back; ROPE reads its positions back.
    g.node(
        Tensor::new(GgmlType::F32, [8, 2, 1, 1]),
        Op::GetRows,
        [0; 16],
        &[it, ii],
    );
    let [.., out] = super::graphs::mm_rope_rows_scale(&mut g, iw, ix, ip);
    let cache = GraphCache::default();
    let before = dev.counters();
    dev.compute_cached(&g.graph, &g.buffers, &cache).unwrap();
    let first = dev.counters().last_graph;
    // New positions, as the client's SET_TENSOR before GRAPH_RECOMPUTE (an aligned queue write).
    let d = g.graph.tensors[ip].data.unwrap();
    let pos2 = HostTensor::from_i32([3, 1, 1, 1], &[100, 101, 4000]);
    g.buffers[&d.buffer].write(d.offset, &pos2.bytes).unwrap();
    dev.compute_cached(&g.graph, &g.buffers, &cache).unwrap();
    let after = dev.counters();
    assert_eq!(
        after.last_graph, first,
        "the replay counts as the first run did"
    );
    // The fallback's two downloads: positions come from the host's copy of what SET_TENSOR wrote,
    // the index flags with the final fence. Submits: those two copies, the batch before SUM_ROWS and
    // SCALE's (which also copies the flags out).
    let GraphCounts {
        nodes,
        fallback,
        dispatches,
        submits,
        readbacks,
    } = first;
    assert_eq!((nodes, fallback, submits, readbacks), (5, 1, 4, 2));
    assert!(dispatches >= 4, "one or more per native node: {first:?}");
    assert_eq!(totals(&delta(&before, &after)), totals_of(first, 2));
    assert_eq!(g.read_f32(out), g.on_cpu(out));
}

/// A long native batch is submitted in three command buffers (the GPU starts on the first while the
/// rest are recorded), in order: the result is the CPU device's.
#[test]
fn long_batches_are_submitted_in_pieces() {
    let Some(dev) = device_or_skip("long_batches_are_submitted_in_pieces") else {
        return;
    };
    let mut rng = Rng::new(63);
    let ne = [33, 2, 1, 1];
    let (a, _) = random_tensor(GgmlType::F32, ne, &mut rng);
    let mut g = Builder::new(&dev);
    let mut x = g.input(&a);
    // A chain: each node reads the one before, so any reordering across pieces shows.
    for k in 0..120 {
        let p = params_f32(&[1.0 + (k % 7) as f32 / 64.0, 0.25]);
        x = g.node(Tensor::new(GgmlType::F32, ne), Op::Scale, p, &[x]);
    }
    let want = g.on_cpu(x);
    dev.compute(&g.graph, &g.buffers).unwrap();
    let c = dev.counters().last_graph;
    assert_eq!((c.dispatches, c.submits, c.readbacks), (120, 3, 0), "{c:?}");
    assert_eq!(g.read_f32(x), want);
}
