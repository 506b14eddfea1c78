//! Fused dispatches: a norm with the weight MUL and residual ADD after it runs as one dispatch, every
//! node's output bit-identical to the CPU device's, including when ggml-alloc placed an output over
//! an input (in place); a partial overlap, which one kernel could not order, keeps the nodes apart.

use super::refs::{close, random_tensor, same_bits};
use super::{Builder, device_or_skip, rope_params};
use crate::device::Device;
use crate::device::host_kernels::testkit::{HostTensor, Rng, params_f32};
use crate::ggml::{GgmlType, Op, Tensor};

/// RMS_NORM → MUL by a weight row → ADD of a residual over `rows` rows of `n`; with `in_place` the
/// MUL writes over the norm's output and the ADD over the residual. Returns the graph's dispatches.
fn norm_mul_add(rows: usize, n: usize, in_place: bool, op: Op) -> Option<u64> {
    let dev = device_or_skip("norm_mul_add")?;
    let mut rng = Rng::new(90);
    let mut g = Builder::new(&dev);
    let f32 = |ne| Tensor::new(GgmlType::F32, ne);
    let x = g.input(&random_tensor(GgmlType::F32, [n, rows, 1, 1], &mut rng).0);
    let w = g.input(&random_tensor(GgmlType::F32, [n, 1, 1, 1], &mut rng).0);
    let res = g.input(&random_tensor(GgmlType::F32, [n, rows, 1, 1], &mut rng).0);
    let nrm = g.node(f32([n, rows, 1, 1]), op, params_f32(&[1e-6]), &[x]);
    let (m, s) = if in_place {
        let m = g.node_into(nrm, Op::Mul, [0; 16], &[nrm, w]);
        (m, g.node_into(res, Op::Add, [0; 16], &[res, m]))
    } else {
        let m = g.node(f32([n, rows, 1, 1]), Op::Mul, [0; 16], &[nrm, w]);
        (m, g.node(f32([n, rows, 1, 1]), Op::Add, [0; 16], &[m, res]))
    };
    // The CPU device's results first: in place, the run overwrites the inputs.
    let want: Vec<Vec<f32>> = [nrm, m, s].iter().map(|&t| g.on_cpu(t)).collect();
    dev.compute(&g.graph, &g.buffers).unwrap();
    let what = format!("{} {rows}x{n} in place {in_place}", op.name());
    for (k, (t, name)) in [(nrm, "norm"), (m, "mul"), (s, "add")]
        .into_iter()
        .enumerate()
    {
        same_bits(&g.read_f32(t), &want[k], &format!("{what}: {name}"));
    }
    Some(dev.counters().last_graph.dispatches)
}

#[test]
fn norm_with_its_weight_and_residual_is_one_dispatch() {
    for (rows, n, in_place, op) in [
        (3, 640, false, Op::RmsNorm),
        (4, 256, true, Op::RmsNorm),
        (2, 100, false, Op::Norm),
    ] {
        let Some(d) = norm_mul_add(rows, n, in_place, op) else {
            return;
        };
        assert_eq!(d, 1, "{} {rows}x{n} in place {in_place}", op.name());
    }
}

#[test]
fn a_partly_overlapping_output_is_not_fused() {
    let Some(dev) = device_or_skip("a_partly_overlapping_output_is_not_fused") else {
        return;
    };
    let mut rng = Rng::new(91);
    let (n, rows) = (64, 4);
    let mut g = Builder::new(&dev);
    let x = g.input(&random_tensor(GgmlType::F32, [n, rows + 1, 1, 1], &mut rng).0);
    let w = g.input(&random_tensor(GgmlType::F32, [n, 1, 1, 1], &mut rng).0);
    let xin = g.view(x, [n, rows, 1, 1], None, 0);
    let nrm = g.node(
        Tensor::new(GgmlType::F32, [n, rows, 1, 1]),
        Op::RmsNorm,
        params_f32(&[1e-6]),
        &[xin],
    );
    // The product's memory starts one row into the norm input's: rows computed first would
    // overwrite inputs other workgroups have yet to read.
    let at = g.view(x, [n, rows, 1, 1], None, 4 * n);
    let prod = g.node_into(at, Op::Mul, [0; 16], &[nrm, w]);
    (
        g.graph.tensors[prod].view_src,
        g.graph.tensors[prod].view_offs,
    ) = (None, 0);
    let want = g.on_cpu(prod);
    dev.compute(&g.graph, &g.buffers).unwrap();
    assert_eq!(dev.counters().last_graph.dispatches, 2, "not fused");
    same_bits(&g.read_f32(prod), &want, "mul");
}

/// A norm chain converts its output for the products reading it (the first product's mode; others
/// keep their own conversion pass): the products stay bit-identical to the CPU device's.
#[test]
fn norm_chain_converts_activations_for_its_products() {
    let Some(dev) = device_or_skip("norm_chain_converts_activations_for_its_products") else {
        return;
    };
    let (n, rows, m) = (512, 3, 40);
    // (weight types of the products, dispatches: chain + products + remaining conversion passes)
    for (types, want) in [
        (vec![GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_0], 4),
        (vec![GgmlType::Q4K, GgmlType::Q6K], 3),
        (vec![GgmlType::Q4_1], 2),
        (vec![GgmlType::F16], 2),
        (vec![GgmlType::Q6K, GgmlType::Q8_0], 4),
    ] {
        let mut rng = Rng::new(92);
        let mut g = Builder::new(&dev);
        let f32 = |ne| Tensor::new(GgmlType::F32, ne);
        let x = g.input(&random_tensor(GgmlType::F32, [n, rows, 1, 1], &mut rng).0);
        let w = g.input(&random_tensor(GgmlType::F32, [n, 1, 1, 1], &mut rng).0);
        let nrm = g.node(f32([n, rows, 1, 1]), Op::RmsNorm, params_f32(&[1e-6]), &[x]);
        let h = g.node(f32([n, rows, 1, 1]), Op::Mul, [0; 16], &[nrm, w]);
        let prods: Vec<usize> = types
            .iter()
            .map(|&t| {
                let wt = g.input(&random_tensor(t, [n, m, 1, 1], &mut rng).0);
                g.node(f32([m, rows, 1, 1]), Op::MulMat, [0; 16], &[wt, h])
            })
            .collect();
        dev.compute(&g.graph, &g.buffers).unwrap();
        let names: Vec<&str> = types.iter().map(|t| t.name()).collect();
        for (&p, name) in prods.iter().zip(&names) {
            same_bits(&g.read_f32(p), &g.on_cpu(p), &format!("{names:?}: {name}"));
        }
        let counts = dev.counters().last_graph;
        assert_eq!(counts.dispatches, want, "{names:?}: {counts:?}");
    }
}

/// A per-head norm, its weight, the ROPE after them (Gemma 3's Q and K) and a SCALE of the rotated
/// heads (Gemma 3's Q) are one dispatch when
/// the host knows the positions, bit-identical in both modes, with part of each head rotated and in
/// place; positions the graph computes itself leave the ROPE on its own (angles from the GPU's
/// sin/cos, as before fusion).
#[test]
fn head_norm_weight_and_rope_are_one_dispatch() {
    let Some(dev) = device_or_skip("head_norm_weight_and_rope_are_one_dispatch") else {
        return;
    };
    let (hd, heads, toks) = (64, 3, 2);
    // (ROPE mode, rotated dims, in place, positions computed by the graph, a SCALE after, dispatches)
    for (mode, n_dims, in_place, computed, scaled, want) in [
        (2, 64, false, false, true, 1),
        (0, 32, true, false, false, 1),
        (2, 48, true, false, true, 1),
        (2, 64, false, true, true, 3),
    ] {
        let mut rng = Rng::new(93);
        let mut g = Builder::new(&dev);
        let ne = [hd, heads, toks, 1];
        let x = g.input(&random_tensor(GgmlType::F32, ne, &mut rng).0);
        let w = g.input(&random_tensor(GgmlType::F32, [hd, 1, 1, 1], &mut rng).0);
        let mut pos = g.input(&HostTensor::from_i32([toks, 1, 1, 1], &[5, 9]));
        if computed {
            // A CONT (on the host): the graph writes the positions (as a device-side copy would).
            let t = Tensor::new(GgmlType::I32, [toks, 1, 1, 1]);
            pos = g.node(t, Op::Cont, [0; 16], &[pos]);
        }
        let nrm = g.node(
            Tensor::new(GgmlType::F32, ne),
            Op::RmsNorm,
            params_f32(&[1e-6]),
            &[x],
        );
        let m = g.node(Tensor::new(GgmlType::F32, ne), Op::Mul, [0; 16], &[nrm, w]);
        let p = rope_params(n_dims, mode);
        let r = if in_place {
            g.node_into(m, Op::Rope, p, &[m, pos])
        } else {
            g.node(Tensor::new(GgmlType::F32, ne), Op::Rope, p, &[m, pos])
        };
        let sc = scaled.then(|| {
            let t = Tensor::new(GgmlType::F32, ne);
            g.node(t, Op::Scale, params_f32(&[0.0625, 0.0]), &[r])
        });
        let what = format!("mode {mode} dims {n_dims} in place {in_place} computed {computed}");
        let want_r = g.on_cpu(r);
        let want_s = sc.map(|t| g.on_cpu(t));
        dev.compute(&g.graph, &g.buffers).unwrap();
        if let (Some(t), Some(want)) = (sc, &want_s) {
            if computed {
                let want: Vec<f64> = want.iter().map(|&x| x as f64).collect();
                close(&g.read_f32(t), &want, 1e-4, &format!("{what}: scale"));
            } else {
                same_bits(&g.read_f32(t), want, &format!("{what}: scale"));
            }
        }
        if computed {
            // The GPU's own sin/cos (no host table): close, not the same bits.
            let want: Vec<f64> = want_r.iter().map(|&x| x as f64).collect();
            close(&g.read_f32(r), &want, 1e-4, &what);
        } else {
            same_bits(&g.read_f32(r), &want_r, &what);
        }
        let c = dev.counters().last_graph;
        assert_eq!(c.dispatches, want, "{what}: {c:?}");
    }
}

/// A layer's post-attention norm, its weight, the residual ADD, then the FFN norm of the sum and its
/// weight (and the conversion for the products reading it) are one dispatch; every node's output
/// bit-identical, in place as ggml-alloc places them or not.
#[test]
fn norm_residual_and_the_next_norm_are_one_dispatch() {
    let Some(dev) = device_or_skip("norm_residual_and_the_next_norm_are_one_dispatch") else {
        return;
    };
    // (rows, width, second op, in place, product weight, dispatches)
    for (rows, n, op2, in_place, wt, dispatches) in [
        (1, 640, Op::RmsNorm, true, GgmlType::Q5_0, 2),
        (3, 640, Op::RmsNorm, false, GgmlType::Q8_0, 2),
        (2, 512, Op::Norm, true, GgmlType::Q4K, 2),
        (2, 96, Op::RmsNorm, false, GgmlType::F32, 2),
    ] {
        let mut rng = Rng::new(94);
        let mut g = Builder::new(&dev);
        let ne = [n, rows, 1, 1];
        let f32 = || Tensor::new(GgmlType::F32, ne);
        let eps = params_f32(&[1e-6]);
        let x = g.input(&random_tensor(GgmlType::F32, ne, &mut rng).0);
        let res = g.input(&random_tensor(GgmlType::F32, ne, &mut rng).0);
        let w1 = g.input(&random_tensor(GgmlType::F32, [n, 1, 1, 1], &mut rng).0);
        let w2 = g.input(&random_tensor(GgmlType::F32, [n, 1, 1, 1], &mut rng).0);
        let wp = g.input(&random_tensor(wt, [n, 24, 1, 1], &mut rng).0);
        let n1 = g.node(f32(), Op::RmsNorm, eps, &[x]);
        let (m1, s, n2, m2) = if in_place {
            let m1 = g.node_into(n1, Op::Mul, [0; 16], &[n1, w1]);
            let s = g.node(f32(), Op::Add, [0; 16], &[m1, res]);
            let n2 = g.node(f32(), op2, eps, &[s]);
            (m1, s, n2, g.node_into(n2, Op::Mul, [0; 16], &[n2, w2]))
        } else {
            let m1 = g.node(f32(), Op::Mul, [0; 16], &[n1, w1]);
            let s = g.node(f32(), Op::Add, [0; 16], &[res, m1]);
            let n2 = g.node(f32(), op2, eps, &[s]);
            (m1, s, n2, g.node(f32(), Op::Mul, [0; 16], &[n2, w2]))
        };
        let prod = g.node(
            Tensor::new(GgmlType::F32, [24, rows, 1, 1]),
            Op::MulMat,
            [0; 16],
            &[wp, m2],
        );
        let outs = [(n1, "norm"), (m1, "mul"), (s, "add"), (n2, "norm 2")];
        let outs = [&outs[..], &[(m2, "mul 2"), (prod, "product")]].concat();
        let want: Vec<Vec<f32>> = outs.iter().map(|&(t, _)| g.on_cpu(t)).collect();
        dev.compute(&g.graph, &g.buffers).unwrap();
        let what = format!("{rows}x{n} {} in place {in_place} {wt:?}", op2.name());
        for (&(t, name), want) in outs.iter().zip(&want) {
            same_bits(&g.read_f32(t), want, &format!("{what}: {name}"));
        }
        let c = dev.counters().last_graph;
        assert_eq!(c.dispatches, dispatches, "{what}: {c:?}");
    }
}
