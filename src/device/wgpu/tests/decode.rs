//! A Gemma-3-like decode step (one token, one layer) counted exactly: every node native, norms fused
//! with their weight MUL and residual ADD, one submission, no readback inside the graph (ROPE's positions come from the host's copy of what
//! SET_TENSOR wrote), and the host's copies forgotten once a kernel writes their memory.

use super::refs::random_tensor;
use super::{Builder, device_or_skip, rope_params};
use crate::device::host_kernels as cpu_ops;
use crate::device::host_kernels::testkit::{HostTensor, Rng, params_f32};
use crate::device::{Device, GraphCache, GraphCounts};
use crate::ggml::{GgmlType, GluOp, Op, Tensor, TensorFlags};

/// The graph's leaves the tests rewrite, and its output.
struct Decode {
    pos: usize,
    slot: usize,
    logits: usize,
}

const EMBD: usize = 64;
// A head is a whole number of Q8_0 blocks, as Gemma's 256 is of q8_K blocks (see below).
const HD: usize = 32;
const NH: usize = 4;
const NKVH: usize = 2;
const KV: usize = 8;
const FF: usize = 128;
const VOCAB: usize = 32;

fn decode_graph(g: &mut Builder, rng: &mut Rng) -> Decode {
    let f32 = |ne| Tensor::new(GgmlType::F32, ne);
    let mut w = |g: &mut Builder, typ, ne| g.input(&random_tensor(typ, ne, rng).0);
    let q8 = GgmlType::Q8_0;
    // As a client places them: the weights in one buffer, the caches in another, the inputs and
    // every node in a compute buffer (the products of one input, the K and V writes then merge).
    g.share(Some(1 << 20));
    let tok = w(g, q8, [EMBD, VOCAB, 1, 1]);
    let norms: Vec<usize> = (0..5)
        .map(|_| w(g, GgmlType::F32, [EMBD, 1, 1, 1]))
        .collect();
    let (qn, kn) = (
        w(g, GgmlType::F32, [HD, 1, 1, 1]),
        w(g, GgmlType::F32, [HD, 1, 1, 1]),
    );
    let (wq, wk) = (
        w(g, q8, [EMBD, NH * HD, 1, 1]),
        w(g, q8, [EMBD, NKVH * HD, 1, 1]),
    );
    let (wv, wo) = (
        w(g, q8, [EMBD, NKVH * HD, 1, 1]),
        w(g, q8, [NH * HD, EMBD, 1, 1]),
    );
    let (wg, wu, wd) = (
        w(g, q8, [EMBD, FF, 1, 1]),
        w(g, q8, [EMBD, FF, 1, 1]),
        w(g, q8, [FF, EMBD, 1, 1]),
    );
    g.share(Some(1 << 16));
    let kc = w(g, GgmlType::F16, [NKVH * HD, KV, 1, 1]);
    let vc = w(g, GgmlType::F16, [NKVH * HD, KV, 1, 1]);
    g.share(Some(1 << 20));
    let ids = g.input(&HostTensor::from_i32([1, 1, 1, 1], &[7]));
    let pos = g.input(&HostTensor::from_i32([1, 1, 1, 1], &[5]));
    let slot = g.input(&HostTensor::from_i32([1, 1, 1, 1], &[5]));
    let mvals: Vec<f32> = (0..KV)
        .map(|j| if j <= 5 { 0.0 } else { f32::NEG_INFINITY })
        .collect();
    let mask = g.input(&HostTensor::from_f32(GgmlType::F16, [KV, 1, 1, 1], &mvals));
    let eps = params_f32(&[1e-6]);

    let norm = |g: &mut Builder, x: usize, wt: usize| {
        let ne = g.graph.tensors[x].ne;
        let n = g.node(f32(ne), Op::RmsNorm, eps, &[x]);
        g.node(f32(ne), Op::Mul, [0; 16], &[n, wt])
    };
    let mm = |g: &mut Builder, wt: usize, x: usize| {
        let rows = g.graph.tensors[wt].ne[1];
        g.node(f32([rows, 1, 1, 1]), Op::MulMat, [0; 16], &[wt, x])
    };
    let x = g.node(f32([EMBD, 1, 1, 1]), Op::GetRows, [0; 16], &[tok, ids]);
    let x = g.node(
        f32([EMBD, 1, 1, 1]),
        Op::Scale,
        params_f32(&[8.0, 0.0]),
        &[x],
    );
    let h = norm(g, x, norms[0]);
    // llama.cpp's order: each projection right before what reads it.
    let q = mm(g, wq, h);
    let q = g.view(q, [HD, NH, 1, 1], None, 0);
    let q = norm(g, q, qn);
    let q = g.node(
        f32([HD, NH, 1, 1]),
        Op::Rope,
        rope_params(HD as i32, 2),
        &[q, pos],
    );
    let k = mm(g, wk, h);
    let k = g.view(k, [HD, NKVH, 1, 1], None, 0);
    let k = norm(g, k, kn);
    let k = g.node(
        f32([HD, NKVH, 1, 1]),
        Op::Rope,
        rope_params(HD as i32, 2),
        &[k, pos],
    );
    let k = g.view(k, [NKVH * HD, 1, 1, 1], None, 0);
    let v = mm(g, wv, h);
    let ks = g.node_into(kc, Op::SetRows, [0; 16], &[k, slot]);
    let vs = g.node_into(vc, Op::SetRows, [0; 16], &[v, slot]);
    // The caches as attention reads them: [HD, KV, NKVH], heads interleaved in each row.
    let nb = [2, 2 * NKVH * HD, 2 * HD, 2 * NKVH * HD * KV];
    let kv_ = g.view(ks, [HD, KV, NKVH, 1], Some(nb), 0);
    let vv = g.view(vs, [HD, KV, NKVH, 1], Some(nb), 0);
    let q = g.view(q, [HD, 1, NH, 1], Some([4, 4 * HD, 4 * HD, 4 * HD * NH]), 0);
    let scale = 1.0 / (HD as f32).sqrt();
    let a = g.node(
        f32([HD, NH, 1, 1]),
        Op::FlashAttnExt,
        params_f32(&[scale, 0.0, 0.0]),
        &[q, kv_, vv, mask],
    );
    let a = g.view(a, [NH * HD, 1, 1, 1], None, 0);
    let o = mm(g, wo, a);
    let o = norm(g, o, norms[1]);
    let x = g.node(f32([EMBD, 1, 1, 1]), Op::Add, [0; 16], &[o, x]);
    let h = norm(g, x, norms[2]);
    let (gate, up) = (mm(g, wg, h), mm(g, wu, h));
    let mut glu = [0i32; 16];
    glu[0] = GluOp::Geglu as i32;
    let a = g.node(f32([FF, 1, 1, 1]), Op::Glu, glu, &[gate, up]);
    let d = mm(g, wd, a);
    let d = norm(g, d, norms[3]);
    let x = g.node(f32([EMBD, 1, 1, 1]), Op::Add, [0; 16], &[d, x]);
    let x = norm(g, x, norms[4]);
    let logits = mm(g, tok, x);
    Decode { pos, slot, logits }
}

fn set_i32(g: &Builder, t: usize, v: i32) {
    let d = g.graph.tensors[t].data.unwrap();
    g.buffers[&d.buffer]
        .write(d.offset, &v.to_le_bytes())
        .unwrap();
}

#[test]
fn gemma3_like_decode_step_is_one_submit_without_readbacks() {
    let Some(dev) = device_or_skip("gemma3_like_decode_step_is_one_submit_without_readbacks")
    else {
        return;
    };
    let mut rng = Rng::new(70);
    let mut g = Builder::new(&dev);
    let d = decode_graph(&mut g, &mut rng);
    let cache = GraphCache::default();
    let mut seen = Vec::new();
    for (step, p) in [5, 6, 7].into_iter().enumerate() {
        // The client's SET_TENSORs before the step: position and cache slot (aligned queue writes).
        set_i32(&g, d.pos, p);
        set_i32(&g, d.slot, p);
        let before = dev.counters();
        // A planned graph, then two replays of its stored plan (GRAPH_RECOMPUTE).
        let report = dev
            .compute_cached_with(&g.graph, &g.buffers, cpu_ops::run, &cache)
            .unwrap();
        let after = dev.counters();
        assert_eq!(report.replayed, step > 0);
        assert_eq!(report.counts, after.last_graph, "the debug line's numbers");
        seen.push(after.last_graph);
        assert_eq!(
            (
                after.submits - before.submits,
                after.readbacks - before.readbacks
            ),
            (1, 0),
            "step {step}"
        );
        assert_eq!(
            g.read_f32(d.logits),
            g.on_cpu(d.logits),
            "step {step}: bit-identical"
        );
    }
    let nodes = g.graph.compute_nodes().count() as u64;
    let want = GraphCounts {
        nodes,
        fallback: 0,
        dispatches: seen[0].dispatches,
        submits: 1,
        readbacks: 0,
    };
    assert_eq!(seen, vec![want; 3]);
    // Each norm takes its weight MUL (and the residual ADD after the post-norms) into its dispatch,
    // converts its output for the products that read it (the QKV, gate/up and output products), and
    // the Q and K norms also rotate (ROPE). A post-norm's dispatch also computes the next norm (FFN,
    // output); gate/up are one dispatch, and so are the K and V cache writes. The attention converts
    // its heads for Wo, the GLU its output for the down projection: no product runs an activation
    // conversion pass of its own.
    assert_eq!((nodes, want.dispatches), (32, 17), "{want:?}");
}

/// A ROPE whose positions the host has not seen (a device-side copy wrote them) reads them back
/// once; a later graph whose kernel overwrites that memory makes the host's copy stale, so the next
/// ROPE reads it back again instead of using old positions.
#[test]
fn positions_the_host_has_not_seen_are_read_back() {
    let Some(dev) = device_or_skip("positions_the_host_has_not_seen_are_read_back") else {
        return;
    };
    let mut rng = Rng::new(71);
    let mut g = Builder::new(&dev);
    let (x, _) = random_tensor(GgmlType::F32, [HD, NH, 1, 1], &mut rng);
    let src = g.input(&HostTensor::from_i32([1, 1, 1, 1], &[9]));
    let ix = g.input(&x);
    let pos = g.input(&HostTensor::from_i32([1, 1, 1, 1], &[0]));
    let f32 = Tensor::new(GgmlType::F32, [HD, NH, 1, 1]);
    let r = g.node(f32, Op::Rope, rope_params(HD as i32, 2), &[ix, pos]);
    let (sd, pd) = (
        g.graph.tensors[src].data.unwrap(),
        g.graph.tensors[pos].data.unwrap(),
    );
    let (sb, pb) = (&g.buffers[&sd.buffer], &g.buffers[&pd.buffer]);
    assert!(
        dev.copy(sb.as_ref(), sd.offset, pb.as_ref(), pd.offset, 4)
            .unwrap()
    );
    let run = |g: &Builder| {
        dev.compute(&g.graph, &g.buffers).unwrap();
        assert_eq!(g.read_f32(r), g.on_cpu(r), "bit-identical");
        dev.counters().last_graph.readbacks
    };
    assert_eq!(run(&g), 1, "copied on the GPU: read back");
    assert_eq!(run(&g), 0, "read back once, then known");

    // Another graph's ADD writes the positions' memory (ggml-alloc reuses memory this way).
    let mut other = Builder::new(&dev);
    let a = other.input(&HostTensor::from_f32(GgmlType::F32, [1, 1, 1, 1], &[0.75]));
    let one = Tensor::new(GgmlType::F32, [1, 1, 1, 1]);
    let k = other.graph.tensors.len();
    let mut t = one;
    t.data = Some(pd);
    t.op = Op::Add;
    t.flags = TensorFlags::COMPUTE;
    t.src = [
        Some(a),
        Some(a),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ];
    other.graph.tensors.push(t);
    other.graph.nodes.push(k);
    other.buffers.insert(pd.buffer, pb.clone());
    dev.compute(&other.graph, &other.buffers).unwrap();
    assert_eq!(run(&g), 1, "overwritten by a kernel: read back again");
}
