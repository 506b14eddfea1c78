//! Products of one activation run as jobs of one dispatch (gate/up): each output bit-identical to
//! the CPU device's; products whose weights or outputs are not in one buffer run one dispatch each.

use super::refs::{random_tensor, same_bits};
use super::{Builder, device_or_skip};
use crate::device::Device;
use crate::device::cpu::ops::testutil::Rng;
use crate::ggml::{GgmlType, Op, Tensor};

/// MUL_MATs of one `[k, cols]` activation by weights of `rows` rows each; weights in one buffer,
/// outputs in one buffer when `shared_out`. Checks every output, returns the graph's dispatches.
fn products(weights: &[(GgmlType, usize)], k: usize, cols: usize, shared_out: bool) -> Option<u64> {
    let dev = device_or_skip("products")?;
    let mut rng = Rng::new(120 + cols as u64);
    let mut g = Builder::new(&dev);
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
    Some(dev.counters().last_graph.dispatches)
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
