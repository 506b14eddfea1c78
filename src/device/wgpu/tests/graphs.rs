//! Whole graphs: native nodes batched around CPU-fallback nodes, agreement with the CPU device, and
//! errors that end a computation cleanly.

use super::kernels::li;
use super::refs::{close, random_tensor};
use super::{Builder, device_or_skip};
use crate::device::cpu::CpuDevice;
use crate::device::host_kernels::testkit::{HostTensor, Rng, params_f32};
use crate::device::host_kernels::{self as ops, Dst, Src};
use crate::device::{Device, DeviceError, GraphCache};
use crate::ggml::{GgmlType, MAX_SRC, Op, Tensor};

/// A host kernel standing in for the CPU ops: SUM of contiguous f32 and SUM_ROWS.
fn host_sum(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let a = src[0]
        .as_ref()
        .ok_or_else(|| DeviceError::op("SUM", "no source"))?;
    let vals: Vec<f32> = a
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    match dst.t.op {
        Op::Sum => dst.data[..4].copy_from_slice(&vals.iter().sum::<f32>().to_le_bytes()),
        Op::SumRows => {
            for (r, row) in vals.chunks_exact(a.t.ne[0]).enumerate() {
                dst.data[4 * r..4 * r + 4].copy_from_slice(&row.iter().sum::<f32>().to_le_bytes());
            }
        }
        _ => return Err(DeviceError::op(dst.t.op.name(), "not in this test kernel")),
    }
    Ok(())
}

#[test]
fn fallback_nodes_between_native_nodes() {
    let Some(dev) = device_or_skip("fallback_nodes_between_native_nodes") else {
        return;
    };
    let mut rng = Rng::new(30);
    let ne = [9, 4, 1, 1];
    let (a, av) = random_tensor(GgmlType::F32, ne, &mut rng);
    let (b, bv) = random_tensor(GgmlType::F32, ne, &mut rng);
    let mut g = Builder::new(&dev);
    let (ia, ib) = (g.input(&a), g.input(&b));
    let add = g.node(Tensor::new(GgmlType::F32, ne), Op::Add, [0; 16], &[ia, ib]);
    let rows = g.node(
        Tensor::new(GgmlType::F32, [1, 4, 1, 1]),
        Op::SumRows,
        [0; 16],
        &[add],
    );
    let scaled = g.node(
        Tensor::new(GgmlType::F32, [1, 4, 1, 1]),
        Op::Scale,
        params_f32(&[2.0, 1.0]),
        &[rows],
    );
    let total = g.node(
        Tensor::new(GgmlType::F32, [1, 1, 1, 1]),
        Op::Sum,
        [0; 16],
        &[scaled],
    );
    let report = dev.compute_with(&g.graph, &g.buffers, host_sum).unwrap();
    assert_eq!(report.native, 2);
    assert_eq!(report.fallback, vec!["SUM_ROWS", "SUM"]);
    let want_rows: Vec<f64> = (0..4)
        .map(|r| {
            (0..9)
                .map(|i| (av[li(ne, [i, r, 0, 0])] + bv[li(ne, [i, r, 0, 0])]) as f64)
                .sum()
        })
        .collect();
    close(&g.read_f32(rows), &want_rows, 1e-5, "sum_rows");
    let want_scaled: Vec<f64> = want_rows.iter().map(|x| 2.0 * x + 1.0).collect();
    close(&g.read_f32(scaled), &want_scaled, 1e-5, "scale");
    close(&g.read_f32(total), &[want_scaled.iter().sum()], 1e-5, "sum");
}

#[test]
fn unsupported_ops_fail_cleanly() {
    let Some(dev) = device_or_skip("unsupported_ops_fail_cleanly") else {
        return;
    };
    let mut rng = Rng::new(31);
    let (a, _) = random_tensor(GgmlType::F32, [8, 2, 1, 1], &mut rng);
    let mut g = Builder::new(&dev);
    let ia = g.input(&a);
    g.node(
        Tensor::new(GgmlType::F32, [8, 2, 1, 1]),
        Op::Pad,
        [0; 16],
        &[ia],
    );
    if ops::check(&g.graph, 1).is_err() {
        assert!(
            dev.check_graph(&g.graph).is_err(),
            "PAD is neither native nor on the CPU"
        );
    }
    // A failing host kernel surfaces as an error, never a panic.
    let err = dev
        .compute_with(&g.graph, &g.buffers, host_sum)
        .unwrap_err();
    assert!(err.to_string().contains("PAD"), "{err}");
}

#[test]
fn small_graph_matches_the_cpu_device() {
    let Some(dev) = device_or_skip("small_graph_matches_the_cpu_device") else {
        return;
    };
    let mut rng = Rng::new(32);
    let (w, _) = random_tensor(GgmlType::F32, [16, 8, 1, 1], &mut rng);
    let (x, _) = random_tensor(GgmlType::F32, [16, 3, 1, 1], &mut rng);
    let build = |g: &mut Builder| {
        let (iw, ix) = (g.input(&w), g.input(&x));
        let mm = g.node(
            Tensor::new(GgmlType::F32, [8, 3, 1, 1]),
            Op::MulMat,
            [0; 16],
            &[iw, ix],
        );
        let n = g.node(
            Tensor::new(GgmlType::F32, [8, 3, 1, 1]),
            Op::RmsNorm,
            params_f32(&[1e-6]),
            &[mm],
        );
        let s = g.node(
            Tensor::new(GgmlType::F32, [8, 3, 1, 1]),
            Op::SoftMax,
            params_f32(&[1.0, 0.0]),
            &[n],
        );
        g.node(
            Tensor::new(GgmlType::F32, [1, 3, 1, 1]),
            Op::SumRows,
            [0; 16],
            &[s],
        )
    };
    let mut g = Builder::new(&dev);
    let out = build(&mut g);
    let cpu = CpuDevice::new(1, None).unwrap();
    cpu.check_graph(&g.graph).unwrap();
    dev.check_graph(&g.graph).unwrap();
    dev.compute(&g.graph, &g.buffers).unwrap();
    let got = g.read_f32(out);
    // The same graph in CPU buffers.
    let cg = g.graph.clone();
    let mut cbufs = crate::device::BufferSet::new();
    for (h, b) in &g.buffers {
        let mut bytes = vec![0u8; b.size()];
        b.read(0, &mut bytes).unwrap();
        let cb = cpu.alloc(b.size()).unwrap();
        cb.write(0, &bytes).unwrap();
        cbufs.insert(*h, cb);
    }
    cpu.compute(&cg, &cbufs).unwrap();
    let t = &cg.tensors[out];
    let d = t.data.unwrap();
    let mut bytes = vec![0u8; t.nbytes().unwrap()];
    cbufs[&d.buffer].read(d.offset, &mut bytes).unwrap();
    let want: Vec<f64> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
        .collect();
    close(&got, &want, 1e-4, "graph vs CPU device");
}

#[test]
fn stored_graph_replays_its_plan_with_new_inputs() {
    let Some(dev) = device_or_skip("stored_graph_replays_its_plan_with_new_inputs") else {
        return;
    };
    let mut rng = Rng::new(33);
    let (w, _) = random_tensor(GgmlType::Q8_0, [64, 16, 1, 1], &mut rng);
    let (x, _) = random_tensor(GgmlType::F32, [64, 1, 3, 1], &mut rng);
    let pos = HostTensor::from_i32([3, 1, 1, 1], &[0, 5, 9]);
    let mut g = Builder::new(&dev);
    let (iw, ix, ip) = (g.input(&w), g.input(&x), g.input(&pos));
    let [mm, r, _, out] = mm_rope_rows_scale(&mut g, iw, ix, ip);
    let cache = GraphCache::default();
    let first = dev
        .compute_cached_with(&g.graph, &g.buffers, ops::run, &cache)
        .unwrap();
    assert!(!first.replayed);
    assert_eq!(first.fallback, vec!["SUM_ROWS"]);
    assert_eq!(g.read_f32(r), g.on_cpu(r));
    // New activations and positions, as the client's SET_TENSORs before GRAPH_RECOMPUTE.
    let (x2, _) = random_tensor(GgmlType::F32, [64, 1, 3, 1], &mut rng);
    let pos2 = HostTensor::from_i32([3, 1, 1, 1], &[100, 101, 4000]);
    for (i, h) in [(ix, &x2), (ip, &pos2)] {
        let d = g.graph.tensors[i].data.unwrap();
        g.buffers[&d.buffer].write(d.offset, &h.bytes).unwrap();
    }
    let again = dev
        .compute_cached_with(&g.graph, &g.buffers, ops::run, &cache)
        .unwrap();
    assert!(again.replayed, "the second run did not reuse the plan");
    for n in [mm, r, out] {
        assert_eq!(g.read_f32(n), g.on_cpu(n), "node {n} after the replay");
    }
}

/// MUL_MAT (a Q8_0 weight) -> ROPE (NEOX, leaf positions) -> SUM_ROWS (host fallback) -> SCALE: a
/// stored graph that exercises planning, the positions readback and host steps. Returns the 4 nodes.
pub(super) fn mm_rope_rows_scale(g: &mut Builder, iw: usize, ix: usize, ip: usize) -> [usize; 4] {
    let mm = g.node(
        Tensor::new(GgmlType::F32, [16, 1, 3, 1]),
        Op::MulMat,
        [0; 16],
        &[iw, ix],
    );
    let mut rope = [0i32; 16];
    rope[1] = 16;
    rope[2] = 2;
    rope[4] = 4096;
    for (k, v) in [10000.0f32, 1.0, 0.0, 1.0, 32.0, 1.0].iter().enumerate() {
        rope[5 + k] = v.to_bits() as i32;
    }
    let r = g.node(
        Tensor::new(GgmlType::F32, [16, 1, 3, 1]),
        Op::Rope,
        rope,
        &[mm, ip],
    );
    let rows = g.node(
        Tensor::new(GgmlType::F32, [1, 1, 3, 1]),
        Op::SumRows,
        [0; 16],
        &[r],
    );
    let out = g.node(
        Tensor::new(GgmlType::F32, [1, 1, 3, 1]),
        Op::Scale,
        params_f32(&[0.5, 0.0]),
        &[rows],
    );
    [mm, r, rows, out]
}
