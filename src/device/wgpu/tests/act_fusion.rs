//! Producers that convert their own output for the MUL_MAT reading it (GLU → FFN down projection,
//! FLASH_ATTN_EXT → reshape → Wo, also when a long cache splits the attention into chunks): the
//! product's act_quant dispatch disappears, and the products stay bit-identical to the CPU device's
//! on the same activations. Where the conversion cannot be fused (blocks wider than a head, the
//! output overwritten in between), the pass comes back and the results are still exact.

use super::refs::{close, random_tensor, same_bits};
use super::{Builder, device_or_skip};
use crate::device::Device;
use crate::device::host_kernels::testkit::{HostTensor, Rng, params_f32};
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

/// FLASH_ATTN_EXT over `nkv` f16 keys, its `[hd, nh, nq]` output reshaped to `[hd·nh, nq]`, then a
/// product by a `typ` weight (Gemma's Wo). Checks the attention output against the CPU device's
/// (bit for bit when it runs as one chunk, else close) and the product bit for bit against the CPU
/// device's product of the GPU's attention output. Returns the graph's dispatches.
fn attn_wo(typ: GgmlType, hd: usize, nh: usize, nq: usize, nkv: usize) -> Option<u64> {
    let dev = device_or_skip("attn_wo")?;
    let mut rng = Rng::new(111);
    let mut g = Builder::new(&dev);
    let q = g.input(&random_tensor(GgmlType::F32, [hd, nq, nh, 1], &mut rng).0);
    let k = g.input(&random_tensor(GgmlType::F16, [hd, nkv, 1, 1], &mut rng).0);
    let v = g.input(&random_tensor(GgmlType::F16, [hd, nkv, 1, 1], &mut rng).0);
    let mvals: Vec<f32> = (0..nkv * nq)
        .map(|i| {
            if i % nkv > nkv - 3 {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = g.input(&HostTensor::from_f32(
        GgmlType::F16,
        [nkv, nq, 1, 1],
        &mvals,
    ));
    let scale = 1.0 / (hd as f32).sqrt();
    let out = Tensor::new(GgmlType::F32, [hd, nh, nq, 1]);
    let fa = g.node(
        out,
        Op::FlashAttnExt,
        params_f32(&[scale, 0.0, 0.0]),
        &[q, k, v, mask],
    );
    // ggml_reshape_2d, as llama.cpp's attention builds it.
    let r = g.view(fa, [hd * nh, nq, 1, 1], None, 0);
    g.graph.tensors[r].op = Op::Reshape;
    let (wt, _) = random_tensor(typ, [hd * nh, 40, 1, 1], &mut rng);
    let w = g.input(&wt);
    let o = g.node(
        Tensor::new(GgmlType::F32, [40, nq, 1, 1]),
        Op::MulMat,
        [0; 16],
        &[w, r],
    );
    dev.compute(&g.graph, &g.buffers).unwrap();
    let dispatches = dev.counters().last_graph.dispatches;
    let what = format!("{} hd {hd} heads {nh} rows {nq} keys {nkv}", typ.name());
    let got = g.read_f32(fa);
    if nkv <= crate::device::wgpu::kernels::attention::KV_CHUNK {
        same_bits(&got, &g.on_cpu(fa), &format!("{what}: attention"));
        same_bits(&g.read_f32(o), &g.on_cpu(o), &format!("{what}: product"));
    } else {
        let cpu: Vec<f64> = g.on_cpu(fa).iter().map(|&x| x as f64).collect();
        close(&got, &cpu, 2e-3, &format!("{what}: attention vs one chunk"));
    }
    // The product alone, on the CPU device, from the GPU's attention output.
    let mut h = Builder::new(&dev);
    let x = h.input(&HostTensor {
        t: Tensor::new(GgmlType::F32, [hd * nh, nq, 1, 1]),
        bytes: g.read(fa),
    });
    let w = h.input(&wt);
    let p = h.node(
        Tensor::new(GgmlType::F32, [40, nq, 1, 1]),
        Op::MulMat,
        [0; 16],
        &[w, x],
    );
    same_bits(
        &g.read_f32(o),
        &h.on_cpu(p),
        &format!("{what}: product of the GPU's attention"),
    );
    Some(dispatches)
}

#[test]
fn attention_converts_activations_for_the_output_projection() {
    let chunk = crate::device::wgpu::kernels::attention::KV_CHUNK;
    // (weight, head dim, heads, query rows, keys, dispatches)
    for (typ, hd, nh, nq, nkv, want) in [
        // Gemma 3 270M's Wo: q8_K blocks of one head each. Attention and product only.
        (GgmlType::Q4K, 256, 2, 1, 40, 2),
        (GgmlType::Q6K, 256, 2, 2, 40, 2),
        (GgmlType::Q8_0, 64, 3, 2, 70, 2),
        (GgmlType::Q5_0, 32, 4, 1, 40, 2),
        // Blocks of 32 span two heads of 16 (two workgroups): the conversion pass stays.
        (GgmlType::Q8_0, 16, 4, 1, 40, 3),
        // A cache of two chunks: the reduce converts. Attention, its reduce and the product.
        (GgmlType::Q8_0, 64, 2, 1, chunk + 8, 3),
        (GgmlType::Q4K, 256, 2, 2, chunk + 8, 3),
    ] {
        let Some(d) = attn_wo(typ, hd, nh, nq, nkv) else {
            return;
        };
        assert_eq!(d, want, "{} hd {hd} keys {nkv}", typ.name());
    }
}
