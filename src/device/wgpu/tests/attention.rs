//! FLASH_ATTN_EXT against an f64 reference (GQA, f16 KV cache and mask, softcap, more KV positions
//! than one block; tolerance 1e-3 for f16 rounding) and bit for bit against the CPU device, whose two
//! numeric paths (vector below 64 query rows, tiled above) the kernel follows.

use super::kernels::li;
use super::refs::{close, random_tensor};
use super::{Builder, device_or_skip};
use crate::device::DeviceError;
use crate::device::cpu::ops::testutil::{HostTensor, Rng, params_f32};
use crate::device::cpu::ops::{Dst, Src};
use crate::ggml::{GgmlType, MAX_SRC, Op, Tensor};

fn no_fallback(_: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    Err(DeviceError::op(dst.t.op.name(), "unexpected CPU fallback"))
}

#[test]
fn flash_attn_gqa_f16_cache_mask_softcap() {
    let Some(dev) = device_or_skip("flash_attn_gqa_f16_cache_mask_softcap") else {
        return;
    };
    let mut rng = Rng::new(50);
    let (dk, dv, nh, nkv, hkv) = (40, 24, 4, 70, 2);
    for (kt, softcap, masked, nq) in [
        (GgmlType::F16, 0.0f32, true, 3),
        (GgmlType::F32, 0.0, false, 3),
        (GgmlType::F16, 5.0, true, 3),
        (GgmlType::F16, 0.0, true, 66),
        (GgmlType::F32, 0.0, true, 66),
    ] {
        let q_ne = [dk, nq, nh, 1];
        let (q, qv) = random_tensor(GgmlType::F32, q_ne, &mut rng);
        let (k, kv) = random_tensor(kt, [dk, nkv, hkv, 1], &mut rng);
        let (v, vv) = random_tensor(kt, [dv, nkv, hkv, 1], &mut rng);
        let m_ne = [nkv, nq + 1, 1, 1];
        let mut mvals = rng.vec(nkv * (nq + 1), -1.0, 1.0);
        for (i, x) in mvals.iter_mut().enumerate() {
            if i % nkv > 60 + i / nkv {
                *x = f32::NEG_INFINITY;
            }
        }
        let mask = HostTensor::from_f32(GgmlType::F16, m_ne, &mvals);
        let mv = mask.to_f32();
        let scale = 1.0 / (dk as f32).sqrt();
        let mut g = Builder::new(&dev);
        let mut srcs = vec![g.input(&q), g.input(&k), g.input(&v)];
        if masked {
            srcs.push(g.input(&mask));
        }
        let out = Tensor::new(GgmlType::F32, [dv, nh, nq, 1]);
        let n = g.node(
            out,
            Op::FlashAttnExt,
            params_f32(&[scale, 0.0, softcap]),
            &srcs,
        );
        dev.compute_with(&g.graph, &g.buffers, no_fallback).unwrap();
        let mut want = vec![0f64; dv * nh * nq];
        for i in 0..nq {
            for h in 0..nh {
                let hk = h / (nh / hkv);
                let s: Vec<f64> = (0..nkv)
                    .map(|j| {
                        let dot: f64 = (0..dk)
                            .map(|c| {
                                qv[li(q_ne, [c, i, h, 0])] as f64
                                    * kv[li([dk, nkv, hkv, 1], [c, j, hk, 0])] as f64
                            })
                            .sum();
                        let mut x = dot * scale as f64;
                        if softcap != 0.0 {
                            x = softcap as f64 * (x / softcap as f64).tanh();
                        }
                        if masked {
                            x += mv[li(m_ne, [j, i, 0, 0])] as f64;
                        }
                        x
                    })
                    .collect();
                let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                let sum: f64 = w.iter().sum();
                for d in 0..dv {
                    let o: f64 = (0..nkv)
                        .map(|j| w[j] * vv[li([dv, nkv, hkv, 1], [d, j, hk, 0])] as f64)
                        .sum();
                    want[li([dv, nh, nq, 1], [d, h, i, 0])] = o / sum;
                }
            }
        }
        let what = format!("flash_attn k {} softcap {softcap} rows {nq}", kt.name());
        let got = g.read_f32(n);
        close(&got, &want, 1e-3, &what);
        let cpu: Vec<f64> = g.on_cpu(n).iter().map(|&x| x as f64).collect();
        close(&got, &cpu, 2e-3, &format!("{what} vs CPU"));
        // Same rounding steps as ggml: bit-identical, except through the GPU's tanh (softcap).
        if softcap == 0.0 {
            let diff = got
                .iter()
                .zip(&cpu)
                .filter(|(g, c)| **g as f64 != **c)
                .count();
            assert_eq!(
                diff,
                0,
                "{what}: {diff} of {} differ from the CPU device",
                got.len()
            );
        }
    }
}
