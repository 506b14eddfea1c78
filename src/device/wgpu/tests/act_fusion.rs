//! Producers that convert their own output for the MUL_MAT reading it (GLU → FFN down projection):
//! the product's act_quant dispatch disappears, and the product and the producer's own output stay
//! bit-identical to the CPU device's. Where the conversion cannot be fused (the output overwritten
//! in between), the pass comes back and the results are still exact.

use super::refs::{random_tensor, same_bits};
use super::{Builder, device_or_skip};
use crate::device::Device;
use crate::device::cpu::ops::testutil::{HostTensor, Rng, params_f32};
use crate::ggml::{GgmlType, GluOp, Op, Tensor};

/// GEGLU over `[ff, cols]` (two sources, or one source of `[2ff, cols]` halves), then a product by
/// a `typ` weight of `[ff, 24]`; with `overwrite` an in-place SCALE rewrites the GLU's output before
/// the product reads it. Returns the graph's dispatches.
fn glu_down(typ: GgmlType, ff: usize, cols: usize, two: bool, overwrite: bool) -> Option<u64> {
    let dev = device_or_skip("glu_down")?;
    let mut rng = Rng::new(110);
    let mut g = Builder::new(&dev);
    let f32 = |ne| Tensor::new(GgmlType::F32, ne);
    let mut p = [0i32; 16];
    p[0] = GluOp::Geglu as i32;
    // Inputs in GELU's interesting range, so that the table and its clamps both matter.
    let mut input = |g: &mut Builder, n0: usize| {
        let vals: Vec<f32> = rng.vec(n0 * cols, -4.0, 4.0);
        g.input(&HostTensor::from_f32(
            GgmlType::F32,
            [n0, cols, 1, 1],
            &vals,
        ))
    };
    let glu = if two {
        let (a, b) = (input(&mut g, ff), input(&mut g, ff));
        g.node(f32([ff, cols, 1, 1]), Op::Glu, p, &[a, b])
    } else {
        let a = input(&mut g, 2 * ff);
        g.node(f32([ff, cols, 1, 1]), Op::Glu, p, &[a])
    };
    let x = if overwrite {
        g.node_into(glu, Op::Scale, params_f32(&[0.5, 0.25]), &[glu]);
        glu
    } else {
        glu
    };
    let w = g.input(&random_tensor(typ, [ff, 24, 1, 1], &mut rng).0);
    let d = g.node(f32([24, cols, 1, 1]), Op::MulMat, [0; 16], &[w, x]);
    dev.compute(&g.graph, &g.buffers).unwrap();
    let what = format!(
        "{} ff {ff} cols {cols} two {two} overwrite {overwrite}",
        typ.name()
    );
    same_bits(&g.read_f32(glu), &g.on_cpu(glu), &format!("{what}: glu"));
    same_bits(&g.read_f32(d), &g.on_cpu(d), &format!("{what}: product"));
    Some(dev.counters().last_graph.dispatches)
}

#[test]
fn glu_converts_activations_for_the_down_projection() {
    // (weight, ff, columns, two sources, dispatches): the GLU and the product, no conversion pass.
    for (typ, ff, cols, two, want) in [
        (GgmlType::Q4K, 512, 2, true, 2),
        (GgmlType::Q4K, 512, 1, true, 2),
        (GgmlType::Q6K, 256, 3, false, 2),
        (GgmlType::Q8_0, 96, 3, true, 2),
        (GgmlType::Q5_0, 64, 1, true, 2),
        (GgmlType::Q4_1, 64, 2, true, 2),
        (GgmlType::F16, 64, 2, true, 2),
        (GgmlType::F32, 64, 2, true, 2),
    ] {
        let Some(d) = glu_down(typ, ff, cols, two, false) else {
            return;
        };
        assert_eq!(d, want, "{} ff {ff} cols {cols}", typ.name());
    }
}

#[test]
fn glu_output_overwritten_before_the_product_keeps_the_conversion_pass() {
    // GLU, SCALE (in place), act_quant of the scaled values, product.
    for typ in [GgmlType::Q4K, GgmlType::Q8_0] {
        let Some(d) = glu_down(typ, 256, 2, true, true) else {
            return;
        };
        assert_eq!(d, 4, "{}", typ.name());
    }
}
