//! Optimizer steps against the update rules written out in f64 (tolerance 1e-5: a few f32 roundings),
//! plus ADAMW run through the CPU device's graph runner with the node aliasing its parameter, as
//! ggml_opt_step_adamw builds it, to check the in-place moments.

use super::super::testutil::{HostTensor, Rng, assert_close, run_op, run_op_inout};
use crate::device::cpu::CpuDevice;
use crate::device::{BufferSet, Device};
use crate::ggml::{DataRef, GgmlType, Graph, Op, Tensor, TensorFlags};

use GgmlType::F32;

/// test-backend-ops' shape: {10, 5, 4, 3}, every value in [0, 1).
const NE: [usize; 4] = [10, 5, 4, 3];

#[test]
fn sgd_matches_the_update_rule() {
    let mut rng = Rng::new(71);
    let n = NE.iter().product();
    let (w, g) = (rng.vec(n, 0.0, 1.0), rng.vec(n, 0.0, 1.0));
    let (alpha, wd) = (0.3f32, 0.6f32);
    let wt = HostTensor::from_f32(F32, NE, &w);
    let gt = HostTensor::from_f32(F32, NE, &g);
    let pt = HostTensor::from_f32(F32, [2, 1, 1, 1], &[alpha, wd]);
    let mut d = HostTensor::zeros(F32, NE);
    run_op(
        Op::OptStepSgd,
        [0; 16],
        &[Some(&wt), Some(&gt), Some(&pt)],
        &mut d,
    )
    .unwrap();
    let (a, l) = (f64::from(alpha), f64::from(wd));
    let want: Vec<f64> = w
        .iter()
        .zip(&g)
        .map(|(&w, &g)| f64::from(w) * (1.0 - a * l) - a * f64::from(g))
        .collect();
    assert_close(&d.to_f32(), &want, 1e-5, "sgd");
    // Wrong parameter count, or a non-f32 parameter.
    let p3 = HostTensor::from_f32(F32, [3, 1, 1, 1], &[0.0; 3]);
    assert!(
        run_op(
            Op::OptStepSgd,
            [0; 16],
            &[Some(&wt), Some(&gt), Some(&p3)],
            &mut d
        )
        .is_err()
    );
    let w16 = HostTensor::from_f32(GgmlType::F16, NE, &w);
    assert!(
        run_op(
            Op::OptStepSgd,
            [0; 16],
            &[Some(&w16), Some(&gt), Some(&pt)],
            &mut d
        )
        .is_err()
    );
}

/// One AdamW step in f64: (w', m', v').
fn adamw_ref(w: f64, g: f64, m: f64, v: f64, p: &[f64; 7]) -> (f64, f64, f64) {
    let [alpha, b1, b2, eps, wd, b1h, b2h] = *p;
    let m = b1 * m + (1.0 - b1) * g;
    let v = b2 * v + (1.0 - b2) * g * g;
    let w = w * (1.0 - alpha * wd) - alpha * (m * b1h) / ((v * b2h).sqrt() + eps);
    (w, m, v)
}

fn adamw_inputs(rng: &mut Rng) -> ([Vec<f32>; 4], [f32; 7]) {
    let n = NE.iter().product();
    let vecs = std::array::from_fn(|_| rng.vec(n, 0.0, 1.0));
    (vecs, [0.01, 0.9, 0.999, 1e-8, 0.1, 1.5, 1.2])
}

fn check_adamw(got: [&[f32]; 3], inputs: &[Vec<f32>; 4], p: &[f32; 7]) {
    let p64 = p.map(f64::from);
    let [w, g, m, v] = inputs;
    let mut want = [vec![], vec![], vec![]];
    for i in 0..w.len() {
        let (a, b, c) = adamw_ref(
            f64::from(w[i]),
            f64::from(g[i]),
            f64::from(m[i]),
            f64::from(v[i]),
            &p64,
        );
        want[0].push(a);
        want[1].push(b);
        want[2].push(c);
    }
    for (k, what) in ["w", "m", "v"].iter().enumerate() {
        assert_close(got[k], &want[k], 1e-5, &format!("adamw {what}"));
    }
}

#[test]
fn adamw_updates_weights_and_moments() {
    let mut rng = Rng::new(72);
    let (inputs, p) = adamw_inputs(&mut rng);
    let [w, g, m, v] = inputs.clone().map(|x| HostTensor::from_f32(F32, NE, &x));
    let (mut m, mut v) = (m, v);
    let pt = HostTensor::from_f32(F32, [7, 1, 1, 1], &p);
    let mut d = HostTensor::zeros(F32, NE);
    let srcs = [Some(&w), Some(&g), None, None, Some(&pt)];
    run_op_inout(
        Op::OptStepAdamw,
        [0; 16],
        &srcs,
        &mut [(2, &mut m), (3, &mut v)],
        &mut d,
    )
    .unwrap();
    check_adamw([&d.to_f32(), &m.to_f32(), &v.to_f32()], &inputs, &p);
    // Without the moments handed over in place the kernel refuses rather than dropping the update.
    let (m0, v0) = (m.clone(), v.clone());
    let srcs = [Some(&w), Some(&g), Some(&m0), Some(&v0), Some(&pt)];
    assert!(run_op(Op::OptStepAdamw, [0; 16], &srcs, &mut d).is_err());
}

/// ggml_opt_step_adamw's graph on the CPU device: the node is a view of `a` (same bytes), m and v are
/// updated in place; and a graph whose m overlaps the node is refused.
#[test]
fn adamw_through_the_graph_runner_aliases_the_parameter() {
    let mut rng = Rng::new(73);
    let (inputs, p) = adamw_inputs(&mut rng);
    let dev = CpuDevice::new(1, None).unwrap();
    let n: usize = NE.iter().product();
    let bytes = 4 * n;
    let buf = dev.alloc(4 * bytes + 64).unwrap();
    for (k, vals) in inputs.iter().enumerate() {
        buf.write(k * bytes, bytemuck::cast_slice(&vals[..]))
            .unwrap();
    }
    buf.write(4 * bytes, bytemuck::cast_slice(&p[..])).unwrap();
    let buffers = BufferSet::from([(1, buf)]);
    let tensor = |ne: [usize; 4], offset| {
        let mut t = Tensor::new(F32, ne);
        t.data = Some(DataRef { buffer: 1, offset });
        t
    };
    let mut node = tensor(NE, 0);
    node.op = Op::OptStepAdamw;
    node.flags = TensorFlags::COMPUTE;
    for k in 0..5 {
        node.src[k] = Some(k);
    }
    let mut graph = Graph {
        tensors: vec![
            tensor(NE, 0),
            tensor(NE, bytes),
            tensor(NE, 2 * bytes),
            tensor(NE, 3 * bytes),
            tensor([7, 1, 1, 1], 4 * bytes),
            node,
        ],
        nodes: vec![5],
    };
    dev.check_graph(&graph).unwrap();
    dev.compute(&graph, &buffers).unwrap();
    let read = |k: usize| {
        let mut out = vec![0f32; n];
        buffers[&1]
            .read(k * bytes, bytemuck::cast_slice_mut(&mut out[..]))
            .unwrap();
        out
    };
    let (w1, m1, v1) = (read(0), read(2), read(3));
    check_adamw([&w1, &m1, &v1], &inputs, &p);
    assert_eq!(read(1), inputs[1], "the gradient is untouched");

    // m placed on the weights: two outputs share bytes.
    graph.tensors[2] = tensor(NE, 0);
    assert!(dev.compute(&graph, &buffers).is_err());
    assert_eq!(read(0), w1, "nothing ran");
}
