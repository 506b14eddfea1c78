//! SOFT_MAX, ROPE, CPY and SET_ROWS against f64 references. Tolerances: see `kernels.rs`.

use super::kernels::{each, li};
use super::refs::{close, random_tensor, same_bits};
use super::{Builder, device_or_skip};
use crate::device::host_kernels::testkit::{HostTensor, Rng, params_f32};
use crate::device::host_kernels::{Dst, Src};
use crate::device::{Device, DeviceError};
use crate::ggml::{GgmlType, MAX_SRC, Op, Tensor};

fn no_fallback(_: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    Err(DeviceError::op(dst.t.op.name(), "unexpected CPU fallback"))
}

#[test]
fn soft_max_scale_and_mask() {
    let Some(dev) = device_or_skip("soft_max_scale_and_mask") else {
        return;
    };
    let mut rng = Rng::new(20);
    // 37 = four chunks of ggml's vector exp and a tail of 5 through libm's; 2101 = more chunks than
    // the workgroup has invocations.
    for (ne0, mtyp) in [
        (37, None),
        (37, Some(GgmlType::F32)),
        (37, Some(GgmlType::F16)),
        (2101, Some(GgmlType::F16)),
    ] {
        let ne = [ne0, 4, 3, 1];
        let (a, av) = random_tensor(GgmlType::F32, ne, &mut rng);
        let m_ne = [ne0, 6, 1, 1];
        let mut mv = rng.vec(ne0 * 6, -2.0, 2.0);
        mv[5] = f32::NEG_INFINITY;
        let mask = mtyp.map(|t| HostTensor::from_f32(t, m_ne, &mv));
        let mvals = mask.as_ref().map(|m| m.to_f32());
        let mut g = Builder::new(&dev);
        let mut srcs = vec![g.input(&a)];
        if let Some(m) = &mask {
            srcs.push(g.input(m));
        }
        let n = g.node(
            Tensor::new(GgmlType::F32, ne),
            Op::SoftMax,
            params_f32(&[0.7, 0.0]),
            &srcs,
        );
        dev.compute_with(&g.graph, &g.buffers, no_fallback).unwrap();
        let got = g.read_f32(n);
        let mut want = Vec::new();
        for [_, i1, i2, i3] in each([1, ne[1], ne[2], ne[3]]) {
            let logits: Vec<f64> = (0..ne[0])
                .map(|i0| {
                    let m = mvals
                        .as_ref()
                        .map_or(0.0, |m| m[li(m_ne, [i0, i1, 0, 0])] as f64);
                    av[li(ne, [i0, i1, i2, i3])] as f64 * 0.7 + m
                })
                .collect();
            let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = logits.iter().map(|l| (l - mx).exp()).sum();
            want.extend(logits.iter().map(|l| (l - mx).exp() / s));
        }
        close(&got, &want, 1e-4, &format!("soft_max mask {mtyp:?}"));
        assert_eq!(got, g.on_cpu(n), "soft_max mask {mtyp:?} vs the CPU device");
    }
}

fn rope_ref(
    av: &[f32],
    ne: [usize; 4],
    pos: &[i32],
    p: &[f32; 6],
    n_dims: usize,
    neox: bool,
) -> Vec<f64> {
    let [base, fs, ext, attn, bf, bs] = p.map(|v| v as f64);
    let nd = n_dims as f64;
    let corr = |b: f64| nd * (4096.0 / (b * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln());
    let (low, high) = (corr(bf).floor().max(0.0), corr(bs).ceil().min(nd - 1.0));
    let mut out: Vec<f64> = av.iter().map(|&x| x as f64).collect();
    for [_, i1, i2, i3] in each([1, ne[1], ne[2], ne[3]]) {
        for ip in 0..n_dims / 2 {
            let te = pos[i2] as f64 * base.powf(-2.0 * ip as f64 / nd);
            let ti = fs * te;
            let (mut theta, mut ms) = (ti, attn);
            if ext != 0.0 {
                let y = (ip as f64 - low) / (high - low).max(0.001);
                let ramp = (1.0 - y.clamp(0.0, 1.0)) * ext;
                theta = ti * (1.0 - ramp) + te * ramp;
                ms *= 1.0 + 0.1 * (1.0 / fs).ln();
            }
            let (j0, j1) = if neox {
                (ip, ip + n_dims / 2)
            } else {
                (2 * ip, 2 * ip + 1)
            };
            let (a0, a1) = (li(ne, [j0, i1, i2, i3]), li(ne, [j1, i1, i2, i3]));
            let (x0, x1) = (av[a0] as f64, av[a1] as f64);
            out[a0] = (x0 * theta.cos() - x1 * theta.sin()) * ms;
            out[a1] = (x0 * theta.sin() + x1 * theta.cos()) * ms;
        }
    }
    out
}

#[test]
fn rope_normal_neox_yarn() {
    let Some(dev) = device_or_skip("rope_normal_neox_yarn") else {
        return;
    };
    let mut rng = Rng::new(21);
    let ne = [64, 3, 5, 1];
    let pos: Vec<i32> = vec![0, 1, 7, 100, 511];
    let pt = HostTensor::from_i32([5, 1, 1, 1], &pos);
    for (mode, n_dims, p) in [
        (0, 64, [10000.0f32, 1.0, 0.0, 1.0, 32.0, 1.0]),
        (2, 64, [1_000_000.0, 1.0, 0.0, 1.0, 32.0, 1.0]),
        (2, 32, [10000.0, 0.25, 1.0, 1.0, 32.0, 1.0]),
        (0, 48, [10000.0, 0.5, 0.5, 0.9, 32.0, 1.0]),
    ] {
        let (a, av) = random_tensor(GgmlType::F32, ne, &mut rng);
        let mut params = [0i32; 16];
        params[1] = n_dims;
        params[2] = mode;
        params[4] = 4096;
        for (k, v) in p.iter().enumerate() {
            params[5 + k] = v.to_bits() as i32;
        }
        let want = rope_ref(&av, ne, &pos, &p, n_dims as usize, mode == 2);
        let what = format!("rope mode {mode} n_dims {n_dims}");
        // Leaf positions: the host computes the cos/sin cache, and the result is the CPU's, bit for bit.
        let mut g = Builder::new(&dev);
        let (ia, ip) = (g.input(&a), g.input(&pt));
        let n = g.node(Tensor::new(GgmlType::F32, ne), Op::Rope, params, &[ia, ip]);
        dev.compute_with(&g.graph, &g.buffers, no_fallback).unwrap();
        let (got, cpu) = (g.read_f32(n), g.on_cpu(n));
        close(&got, &want, 2e-4, &what);
        same_bits(&got, &cpu, &what);
        // Positions computed by the graph (a CPY, run by the CPU fallback): the kernel's own angles.
        let mut g = Builder::new(&dev);
        let (ia, ip) = (g.input(&a), g.input(&pt));
        let ic = g.node(
            Tensor::new(GgmlType::I32, [5, 1, 1, 1]),
            Op::Cpy,
            [0; 16],
            &[ip],
        );
        let n = g.node(Tensor::new(GgmlType::F32, ne), Op::Rope, params, &[ia, ic]);
        dev.compute(&g.graph, &g.buffers).unwrap();
        close(
            &g.read_f32(n),
            &want,
            2e-4,
            &format!("{what}, computed positions"),
        );
    }
    // Freq factors (llama 3's rope_freqs): only through the host cache, bit for bit.
    let (a, _) = random_tensor(GgmlType::F32, ne, &mut rng);
    let ff = HostTensor::from_f32(GgmlType::F32, [32, 1, 1, 1], &rng.vec(32, 1.0, 8.0));
    let mut params = [0i32; 16];
    params[1] = 64;
    params[2] = 2;
    params[4] = 8192;
    for (k, v) in [500000.0f32, 1.0, 0.0, 1.0, 32.0, 1.0].iter().enumerate() {
        params[5 + k] = v.to_bits() as i32;
    }
    let mut g = Builder::new(&dev);
    let (ia, ip, iff) = (g.input(&a), g.input(&pt), g.input(&ff));
    let n = g.node(
        Tensor::new(GgmlType::F32, ne),
        Op::Rope,
        params,
        &[ia, ip, iff],
    );
    dev.compute_with(&g.graph, &g.buffers, no_fallback).unwrap();
    assert_eq!(g.read_f32(n), g.on_cpu(n), "rope with freq factors");
}

#[test]
fn cpy_between_f32_and_f16_any_layout() {
    let Some(dev) = device_or_skip("cpy_between_f32_and_f16_any_layout") else {
        return;
    };
    let mut rng = Rng::new(22);
    let ne = [6, 5, 3, 1];
    for (st, dt, op) in [
        (GgmlType::F32, GgmlType::F16, Op::Cpy),
        (GgmlType::F16, GgmlType::F32, Op::Cont),
        (GgmlType::F32, GgmlType::F32, Op::Dup),
    ] {
        let (a, av) = random_tensor(st, ne, &mut rng);
        let a = a.permuted([2, 0, 1, 3]);
        // The destination has another shape with the same element count.
        let out = Tensor::new(dt, [10, 9, 1, 1]);
        let mut g = Builder::new(&dev);
        let ia = g.input(&a);
        let srcs = if op == Op::Cpy {
            vec![ia, ia]
        } else {
            vec![ia]
        };
        let n = g.node(out, op, [0; 16], &srcs);
        dev.compute_with(&g.graph, &g.buffers, no_fallback).unwrap();
        let want: Vec<f64> = av.iter().map(|&x| x as f64).collect();
        let tol = if dt == GgmlType::F16 { 1e-3 } else { 1e-7 };
        close(
            &g.read_f32(n),
            &want,
            tol,
            &format!("{} {} -> {}", op.name(), st.name(), dt.name()),
        );
    }
}

#[test]
fn set_rows_into_f16_cache() {
    let Some(dev) = device_or_skip("set_rows_into_f16_cache") else {
        return;
    };
    let mut rng = Rng::new(23);
    let (d, cache_rows, n) = (8, 10, 3);
    for (wide, dt) in [(true, GgmlType::F16), (false, GgmlType::F32)] {
        let (src, sv) = random_tensor(GgmlType::F32, [d, n, 2, 1], &mut rng);
        let rows = [7i64, 2, 9];
        let idx = if wide {
            HostTensor::from_i64([n, 1, 1, 1], &rows)
        } else {
            HostTensor::from_i32([n, 1, 1, 1], &rows.map(|r| r as i32))
        };
        let (cache, cv) = random_tensor(dt, [d, cache_rows, 2, 1], &mut rng);
        let mut g = Builder::new(&dev);
        let (is, ii, ic) = (g.input(&src), g.input(&idx), g.input(&cache));
        // The node is a view of the cache: same memory.
        let mut node = g.graph.tensors[ic].clone();
        node.view_src = Some(ic);
        let n_id = g.node(node, Op::SetRows, [0; 16], &[is, ii, ic]);
        let c_data = g.graph.tensors[ic].data;
        g.graph.tensors[n_id].data = c_data;
        dev.compute_with(&g.graph, &g.buffers, no_fallback).unwrap();
        let mut want: Vec<f64> = cv.iter().map(|&x| x as f64).collect();
        for [i0, i1, i2, _] in each([d, n, 2, 1]) {
            want[li([d, cache_rows, 2, 1], [i0, rows[i1] as usize, i2, 0])] =
                sv[li([d, n, 2, 1], [i0, i1, i2, 0])] as f64;
        }
        let tol = if dt == GgmlType::F16 { 1e-3 } else { 0.0 };
        close(
            &g.read_f32(ic),
            &want,
            tol,
            &format!("set_rows wide={wide}"),
        );
    }
}

/// Out-of-range rows in GET_ROWS and SET_ROWS indices: the kernels touch nothing outside their
/// tensors, the run fails with the CPU kernels' words, and the device keeps working afterwards.
#[test]
fn out_of_range_row_indices_fail_the_run() {
    let Some(dev) = device_or_skip("out_of_range_row_indices_fail_the_run") else {
        return;
    };
    let mut rng = Rng::new(24);
    let (d, rows) = (8, 5);
    for bad in [5i64, -1, 1 << 40] {
        // GET_ROWS (i32 indices) reading a 5-row table.
        let (table, _) = random_tensor(GgmlType::F32, [d, rows, 1, 1], &mut rng);
        let idx = HostTensor::from_i32([2, 1, 1, 1], &[1, bad.min(i32::MAX as i64) as i32]);
        let mut g = Builder::new(&dev);
        let (it, ii) = (g.input(&table), g.input(&idx));
        let out = g.node(
            Tensor::new(GgmlType::F32, [d, 2, 1, 1]),
            Op::GetRows,
            [0; 16],
            &[it, ii],
        );
        let before = whole_buffer(&g, out);
        let err = dev
            .compute_with(&g.graph, &g.buffers, no_fallback)
            .unwrap_err();
        assert!(err.to_string().contains("GET_ROWS") && err.to_string().contains("out of range"));
        assert_outside_unchanged(&g, out, &before, "get_rows");

        // SET_ROWS (i64 indices) into a 5-row cache.
        let (src, _) = random_tensor(GgmlType::F32, [d, 2, 1, 1], &mut rng);
        let idx = HostTensor::from_i64([2, 1, 1, 1], &[0, bad]);
        let (cache, _) = random_tensor(GgmlType::F16, [d, rows, 1, 1], &mut rng);
        let mut g = Builder::new(&dev);
        let (is, ii, ic) = (g.input(&src), g.input(&idx), g.input(&cache));
        let mut node = g.graph.tensors[ic].clone();
        node.view_src = Some(ic);
        let n_id = g.node(node, Op::SetRows, [0; 16], &[is, ii, ic]);
        g.graph.tensors[n_id].data = g.graph.tensors[ic].data;
        let before = whole_buffer(&g, ic);
        let err = dev
            .compute_with(&g.graph, &g.buffers, no_fallback)
            .unwrap_err();
        assert!(err.to_string().contains("SET_ROWS") && err.to_string().contains("out of range"));
        assert_outside_unchanged(&g, ic, &before, "set_rows");
    }
    // The device is fine afterwards: a valid GET_ROWS runs.
    get_rows_ok(&dev, &mut rng);
}

fn get_rows_ok(dev: &super::WgpuDevice, rng: &mut Rng) {
    let (table, tv) = random_tensor(GgmlType::F32, [4, 3, 1, 1], rng);
    let idx = HostTensor::from_i32([1, 1, 1, 1], &[2]);
    let mut g = Builder::new(dev);
    let (it, ii) = (g.input(&table), g.input(&idx));
    let out = g.node(
        Tensor::new(GgmlType::F32, [4, 1, 1, 1]),
        Op::GetRows,
        [0; 16],
        &[it, ii],
    );
    dev.compute_with(&g.graph, &g.buffers, no_fallback).unwrap();
    let want: Vec<f64> = tv[8..12].iter().map(|&x| x as f64).collect();
    close(&g.read_f32(out), &want, 0.0, "get_rows after errors");
}

/// Every byte of the buffer holding tensor `i`.
fn whole_buffer(g: &Builder, i: usize) -> Vec<u8> {
    let h = g.graph.tensors[i].data.unwrap().buffer;
    let b = &g.buffers[&h];
    let mut out = vec![0u8; b.size()];
    b.read(0, &mut out).unwrap();
    out
}

/// The bytes of tensor `i`'s buffer outside the tensor are as they were.
fn assert_outside_unchanged(g: &Builder, i: usize, before: &[u8], what: &str) {
    let after = whole_buffer(g, i);
    let t = &g.graph.tensors[i];
    let (off, len) = (t.data.unwrap().offset, t.nbytes().unwrap());
    assert_eq!(
        after[..off],
        before[..off],
        "{what}: bytes before the tensor"
    );
    assert_eq!(
        after[off + len..],
        before[off + len..],
        "{what}: bytes after it"
    );
}
