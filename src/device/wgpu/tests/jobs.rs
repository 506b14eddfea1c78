//! Products of one activation run as jobs of one dispatch (gate/up): each output bit-identical to
//! the CPU device's; products whose weights or outputs are not in one buffer run one dispatch each.

use super::refs::{random_tensor, same_bits};
use super::{Builder, device_or_skip, device_with};
use crate::device::Device;
use crate::device::host_kernels::testkit::{HostTensor, Rng};
use crate::device::wgpu::WgpuDevice;
use crate::ggml::{GgmlType, Op, Tensor};

/// MUL_MATs of one `[k, cols]` activation by weights of `rows` rows each; weights in one buffer,
/// outputs in one buffer when `shared_out`. Checks every output, returns the graph's dispatches.
fn products(weights: &[(GgmlType, usize)], k: usize, cols: usize, shared_out: bool) -> Option<u64> {
    let dev = device_or_skip("products")?;
    Some(products_on(&dev, weights, k, cols, shared_out))
}

fn products_on(
    dev: &WgpuDevice,
    weights: &[(GgmlType, usize)],
    k: usize,
    cols: usize,
    shared_out: bool,
) -> u64 {
    let mut rng = Rng::new(120 + cols as u64);
    let mut g = Builder::new(dev);
    g.share(Some(1 << 20));
    let ws: Vec<usize> = weights
        .iter()
        .map(|&(typ, rows)| g.input(&random_tensor(typ, [k, rows, 1, 1], &mut rng).0))
        .collect();
    g.share(None);
    let x = g.input(&random_tensor(GgmlType::F32, [k, cols, 1, 1], &mut rng).0);
    g.share(shared_out.then_some(1 << 20));
    let outs: Vec<usize> = ws
        .iter()
        .zip(weights)
        .map(|(&w, &(_, rows))| {
            let out = Tensor::new(GgmlType::F32, [rows, cols, 1, 1]);
            g.node(out, Op::MulMat, [0; 16], &[w, x])
        })
        .collect();
    let want: Vec<Vec<f32>> = outs.iter().map(|&o| g.on_cpu(o)).collect();
    dev.compute(&g.graph, &g.buffers).unwrap();
    for (j, (&o, want)) in outs.iter().zip(&want).enumerate() {
        let what = format!("{weights:?} k={k} cols={cols}: product {j}");
        same_bits(&g.read_f32(o), want, &what);
    }
    dev.counters().last_graph.dispatches
}

#[test]
fn products_of_one_activation_are_one_dispatch() {
    use GgmlType::*;
    type Case<'a> = (&'a [(GgmlType, usize)], usize, usize);
    let cases: [Case; 6] = [
        // Gemma 3 270M's gate/up: Q5_0, 640 wide.
        (&[(Q5_0, 96), (Q5_0, 96)], 640, 1),
        (&[(Q5_0, 64), (Q8_0, 32), (Q4_0, 40)], 64, 5),
        (&[(Q4_1, 16), (Q5_1, 24)], 96, 3),
        (&[(Q4K, 48), (Q6K, 16)], 512, 1),
        // From 8 columns the K-quants take ggml's tiled path.
        (&[(Q4K, 8), (Q5K, 12), (Q3K, 4), (Q2K, 8)], 256, 9),
        (&[(Q8_0, 70), (Q8_0, 33)], 32, 2),
    ];
    for (weights, k, cols) in cases {
        // The activation conversion, then one dispatch for every product.
        let Some(d) = products(weights, k, cols, true) else {
            return;
        };
        assert_eq!(d, 2, "{weights:?} k={k} cols={cols}");
    }
}

#[test]
fn products_with_outputs_in_separate_buffers_run_apart() {
    let weights = [
        (GgmlType::Q5_0, 32),
        (GgmlType::Q8_0, 16),
        (GgmlType::Q5_0, 8),
    ];
    let Some(d) = products(&weights, 64, 2, false) else {
        return;
    };
    assert_eq!(d, 1 + weights.len() as u64);
}

/// A layer's K and V cache writes: two SET_ROWS into one buffer; `bad` puts V's slot past the cache.
fn cache_writes(dst: GgmlType, bad: bool) -> Option<(u64, bool)> {
    let dev = device_or_skip("cache_writes")?;
    let mut rng = Rng::new(130);
    let (d, slots, n) = (32, 12, 3);
    let mut g = Builder::new(&dev);
    g.share(Some(1 << 16));
    let k = g.input(&random_tensor(GgmlType::F32, [d, n, 1, 1], &mut rng).0);
    let v = g.input(&random_tensor(GgmlType::F32, [d, n, 1, 1], &mut rng).0);
    let ki = g.input(&HostTensor::from_i64([n, 1, 1, 1], &[4, 0, 11]));
    let vrows = if bad { [4, 12, 11] } else { [4, 0, 11] };
    let vi = g.input(&HostTensor::from_i64([n, 1, 1, 1], &vrows));
    g.share(Some(1 << 16));
    let kc = g.input(&random_tensor(dst, [d, slots, 1, 1], &mut rng).0);
    let vc = g.input(&random_tensor(dst, [d, slots, 1, 1], &mut rng).0);
    let ks = g.node_into(kc, Op::SetRows, [0; 16], &[k, ki]);
    let vs = g.node_into(vc, Op::SetRows, [0; 16], &[v, vi]);
    if bad {
        let failed = dev.compute(&g.graph, &g.buffers).is_err();
        return Some((dev.counters().last_graph.dispatches, failed));
    }
    let want = [g.on_cpu(ks), g.on_cpu(vs)];
    dev.compute(&g.graph, &g.buffers).unwrap();
    same_bits(&g.read_f32(ks), &want[0], &format!("K cache {dst:?}"));
    same_bits(&g.read_f32(vs), &want[1], &format!("V cache {dst:?}"));
    Some((dev.counters().last_graph.dispatches, false))
}

#[test]
fn k_and_v_cache_writes_are_one_dispatch() {
    for dst in [GgmlType::F16, GgmlType::F32] {
        let Some((d, _)) = cache_writes(dst, false) else {
            return;
        };
        assert_eq!(d, 1, "{dst:?}");
    }
    // The second job's index is checked like the first's: the run fails.
    let Some((_, failed)) = cache_writes(GgmlType::F16, true) else {
        return;
    };
    assert!(failed, "a V slot past the cache must fail the run");
}

/// The kernels shaped for GPUs (lavapipe takes a row per invocation unless told): row-splitting
/// mat-vecs for every block type and prompt tiles for 32-blocks, reductions of one to several
/// chunks, rows not a multiple of a workgroup's, alone and as jobs (tiles crossing products);
/// bit-identical to the CPU device.
#[test]
fn gpu_kernels_keep_the_bits() {
    use GgmlType::*;
    let Some(dev) = device_or_skip("gpu_kernels_keep_the_bits") else {
        return;
    };
    dev.gpu
        .gpu_kernels
        .store(true, std::sync::atomic::Ordering::Relaxed);
    type Case<'a> = (&'a [(GgmlType, usize)], usize);
    let cases: [Case; 13] = [
        (&[(Q4K, 33)], 1024),
        (&[(Q6K, 17)], 2048),
        (&[(Q5K, 5)], 256),
        (&[(Q3K, 16)], 1280),
        (&[(Q2K, 21)], 512),
        (&[(Q8_0, 70)], 640),
        (&[(Q5_0, 33)], 32),
        (&[(Q4_0, 9)], 544),
        (&[(Q4_1, 17)], 96),
        (&[(Q5_1, 6)], 1056),
        (&[(Q5_0, 96), (Q5_0, 96)], 640),
        (&[(Q8_0, 13), (Q4_0, 7), (Q5_0, 5)], 512),
        (&[(Q4K, 20), (Q6K, 9)], 768),
    ];
    for (weights, k) in cases {
        // The activation conversion, then one product dispatch (prompt tiles for 32-blocks; the
        // K-quants' prompts keep mul_mat_exact).
        for cols in [1, 3, 9] {
            let d = products_on(&dev, weights, k, cols, true);
            assert_eq!(d, 2, "{weights:?} k={k} cols={cols}");
        }
    }
    // A weight larger than one binding: row ranges, one dispatch each (the product's `r0`).
    let Some(small) = device_with("gpu_kernels_keep_the_bits", Some(16 << 10)) else {
        return;
    };
    small
        .gpu
        .gpu_kernels
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let d = products_on(&small, &[(Q8_0, 100)], 640, 1, true);
    assert!(d > 2, "{d} dispatches: the weight was not split");
}
