//! FLASH_ATTN_EXT against an f64 reference (GQA, f16 KV cache and mask, softcap, more KV positions
//! than one block; tolerance 1e-3 for f16 rounding) and bit for bit against the CPU device, whose two
//! numeric paths (vector below 64 query rows, tiled above) the kernel follows.

use std::sync::atomic::Ordering;

use super::kernels::li;
use super::refs::{close, random_tensor, same_bits};
use super::{Builder, device_or_skip};
use crate::device::DeviceError;
use crate::device::host_kernels::testkit::{HostTensor, Rng, params_f32};
use crate::device::host_kernels::{Dst, Src};
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
    // The last three with the GPU kernels (four query rows per workgroup on the tiled path).
    for (kt, softcap, masked, nq, shaped) in [
        (GgmlType::F16, 0.0f32, true, 3, false),
        (GgmlType::F32, 0.0, false, 3, false),
        (GgmlType::F16, 5.0, true, 3, false),
        (GgmlType::F16, 0.0, true, 66, false),
        (GgmlType::F32, 0.0, true, 66, false),
        (GgmlType::F16, 0.0, true, 66, true),
        (GgmlType::F32, 0.0, true, 65, true),
        (GgmlType::F16, 5.0, true, 64, true),
    ] {
        dev.gpu.gpu_kernels.store(shaped, Ordering::Relaxed);
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
        let what = format!(
            "flash_attn k {} softcap {softcap} rows {nq} gpu {shaped}",
            kt.name()
        );
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

/// test-backend-ops' sparse-attention cases (which lavapipe got wrong before caches were split into
/// chunks: its loop limiter ended the invocations): K (and V, or V as a sub-view of K) are views of a
/// cache twice as long, and the f16 mask keeps `live` randomly placed keys per row, the rest -inf.
/// Bit for bit against the CPU kernel with the same chunks, and close to the unchunked CPU device.
#[test]
fn flash_attn_long_cache_in_chunks() {
    let Some(dev) = device_or_skip("flash_attn_long_cache_in_chunks") else {
        return;
    };
    let mut rng = Rng::new(51);
    let chunk = crate::device::wgpu::kernels::attention::KV_CHUNK;
    // (dk, dv, kv heads, query heads, keys, query rows, live keys per row, V a view of K)
    for (dk, dv, hkv, nh, nkv, nq, live, v_of_k) in [
        (256, 256, 2, 24, 8192, 1, 2048, false),
        (576, 512, 1, 2, 4096, 64, 2048, true),
        (64, 64, 1, 4, chunk, 1, chunk, false),
        (64, 64, 1, 4, chunk + 1, 3, chunk + 1, false),
        (40, 24, 2, 4, 3 * chunk + 70, 66, 2 * chunk, false),
        (64, 64, 1, 4, 2 * chunk + 5, 67, chunk, true),
    ] {
        // The GPU kernels too (four query rows per workgroup on the tiled path), where lavapipe's
        // 65535 loop iterations per invocation allow them (narrow heads).
        dev.gpu.gpu_kernels.store(false, Ordering::Relaxed);
        if nq >= 64 && dk <= 64 {
            dev.gpu.gpu_kernels.store(true, Ordering::Relaxed);
        }
        let (q, _) = random_tensor(GgmlType::F32, [dk, nq, nh, 1], &mut rng);
        let (kc, _) = random_tensor(GgmlType::F16, [dk, 2 * nkv, hkv, 1], &mut rng);
        let (vc, _) = random_tensor(GgmlType::F16, [dv, 2 * nkv, hkv, 1], &mut rng);
        let mut mvals = vec![f32::NEG_INFINITY; nkv * nq];
        for (row, m) in mvals.chunks_exact_mut(nkv).enumerate() {
            let n = live - row % 17;
            let mut at: Vec<usize> = (0..nkv).collect();
            for i in 0..n {
                let j = i + (rng.next_u64() as usize) % (nkv - i);
                at.swap(i, j);
            }
            for (i, &j) in at[..n].iter().enumerate() {
                m[j] = -0.03125 * (1 + (i + row) % 7) as f32;
            }
        }
        let mask = HostTensor::from_f32(GgmlType::F16, [nkv, nq, 1, 1], &mvals);
        let mut g = Builder::new(&dev);
        let (qi, kci, mi) = (g.input(&q), g.input(&kc), g.input(&mask));
        let k = g.view(kci, [dk, nkv, hkv, 1], Some(kc.t.nb), 0);
        let v = if v_of_k {
            g.view(kci, [dv, nkv, hkv, 1], Some(kc.t.nb), 0)
        } else {
            let vci = g.input(&vc);
            g.view(vci, [dv, nkv, hkv, 1], Some(vc.t.nb), 0)
        };
        let scale = 1.0 / (dk as f32).sqrt();
        let out = Tensor::new(GgmlType::F32, [dv, nh, nq, 1]);
        let n = g.node(
            out,
            Op::FlashAttnExt,
            params_f32(&[scale, 0.0, 0.0]),
            &[qi, k, v, mi],
        );
        dev.compute_with(&g.graph, &g.buffers, no_fallback).unwrap();
        let shaped = dev.gpu.gpu_kernels.load(Ordering::Relaxed);
        let what = format!("flash_attn dk {dk} keys {nkv} rows {nq} live {live} gpu {shaped}");
        let got = g.read_f32(n);
        // The CPU kernel on the same chunks.
        let (kt, vt) = (&g.graph.tensors[k], &g.graph.tensors[v]);
        let vbytes = if v_of_k { &kc.bytes } else { &vc.bytes };
        let srcs: [Option<Src<'_>>; MAX_SRC] = std::array::from_fn(|i| match i {
            0 => Some(Src {
                t: &q.t,
                data: &q.bytes,
            }),
            1 => Some(Src {
                t: kt,
                data: &kc.bytes,
            }),
            2 => Some(Src {
                t: vt,
                data: vbytes,
            }),
            3 => Some(Src {
                t: &mask.t,
                data: &mask.bytes,
            }),
            _ => None,
        });
        let mut want = HostTensor::zeros(GgmlType::F32, [dv, nh, nq, 1]);
        let wt = g.graph.tensors[n].clone();
        crate::device::host_kernels::testkit::flash_attn_chunked(
            &srcs,
            Dst::new(&wt, &mut want.bytes),
            chunk,
        )
        .unwrap();
        same_bits(&got, &want.to_f32(), &what);
        // The unchunked CPU device: the chunks change only the rounding (f16 V accumulator on the
        // vector path).
        let cpu: Vec<f64> = g.on_cpu(n).iter().map(|&x| x as f64).collect();
        close(&got, &cpu, 2e-3, &format!("{what} vs one chunk"));
    }
    dev.gpu.gpu_kernels.store(false, Ordering::Relaxed);
}
