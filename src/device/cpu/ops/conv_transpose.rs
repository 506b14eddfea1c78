//! Transposed convolutions and their column form: CONV_TRANSPOSE_1D, CONV_TRANSPOSE_2D (each input
//! position scatters input-channel dot products onto the output, in ggml-cpu's order; an F16 kernel
//! sees its input rounded to f16) and COL2IM_1D (the overlap-add of columns, summed in f32).

use half::f16;
use rayon::prelude::*;

use super::elementwise::rows::{ensure, map_rows, shape, src_at, src_of};
use super::spatial::{Vol, ensure_params_at_least, ensure_shape, ensure_types, is_float, param};
use super::{Dst, Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op};

use GgmlType::{F16, F32};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let a = src_of(graph, node, 0)?;
    match d.op {
        Op::ConvTranspose1d => {
            let b = src_of(graph, node, 1)?;
            ensure_types(
                d,
                matches!(a.typ, F32 | F16) && b.typ == F32 && d.typ == F32,
                &[a, b],
            )?;
            ensure_params_at_least(d, &[0], 1)?;
            ensure(
                a.ne[2] == b.ne[1] && a.ne[3] == 1 && b.ne[2] == 1 && b.ne[3] == 1,
                || {
                    format!(
                        "CONV_TRANSPOSE_1D: kernel {} vs input {}",
                        shape(a),
                        shape(b)
                    )
                },
            )?;
            ensure(d.param_i32(1) == 0 && d.param_i32(2) == 1, || {
                "CONV_TRANSPOSE_1D: only padding 0 and dilation 1".into()
            })?;
            let len = (b.ne[0] as i64 - 1) * param(d, 0) + a.ne[0] as i64;
            ensure_shape(d, [len, a.ne[1] as i64, 1, 1], b)
        }
        Op::ConvTranspose2d => {
            let b = src_of(graph, node, 1)?;
            ensure_types(
                d,
                matches!(a.typ, F32 | F16) && b.typ == F32 && d.typ == F32,
                &[a, b],
            )?;
            ensure_params_at_least(d, &[0], 1)?;
            ensure(a.ne[3] == b.ne[2], || {
                format!(
                    "CONV_TRANSPOSE_2D: kernel {} vs input {}",
                    shape(a),
                    shape(b)
                )
            })?;
            let s = param(d, 0);
            let out = |i: usize| (b.ne[i] as i64 - 1) * s + a.ne[i] as i64;
            ensure_shape(d, [out(0), out(1), a.ne[2] as i64, b.ne[3] as i64], b)
        }
        Op::Col2im1d => {
            ensure_types(d, is_float(a.typ) && d.typ == a.typ, &[a])?;
            ensure_params_at_least(d, &[0, 1], 1)?;
            ensure_params_at_least(d, &[2], 0)?;
            let oc = d.param_i32(1) as usize;
            ensure(
                a.ne[0].is_multiple_of(oc) && a.ne[2] == 1 && a.ne[3] == 1,
                || format!("COL2IM_1D: columns {} are not K*{oc} by T", shape(a)),
            )?;
            let k = (a.ne[0] / oc) as i64;
            let len = (a.ne[1] as i64 - 1) * param(d, 0) + k - 2 * param(d, 2);
            ensure_shape(d, [len, oc as i64, 1, 1], a)
        }
        _ => Err(format!("{} is not a transposed convolution", d.op.name())),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let a = src_at(src, 0, op)?;
    if dst.t.nelements() == 0 {
        return Ok(());
    }
    match dst.t.op {
        Op::ConvTranspose1d => conv_transpose_1d(a, src_at(src, 1, op)?, dst),
        Op::ConvTranspose2d => conv_transpose_2d(a, src_at(src, 1, op)?, dst),
        Op::Col2im1d => col2im_1d(a, dst),
        _ => Err(DeviceError::op(op, "not a transposed convolution")),
    }
}

/// The input as the kernel type sees it: rounded to f16 for an F16 kernel.
fn as_kernel_type(typ: GgmlType, v: &mut [f32]) {
    if typ == F16 {
        v.iter_mut().for_each(|x| *x = f16::from_f32(*x).to_f32());
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Kernel `[K, Cout, Cin]`, input `[L, Cin]`: `out[cout][l*s + k] += Σ_cin x[cin][l] w[cin][cout][k]`.
fn conv_transpose_1d(a: &Src<'_>, b: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let [k, cout, cin, _] = a.t.ne;
    let l = b.t.ne[0];
    let s = dst.t.param_i32(0) as usize;
    let w = Vol::read(a)?;
    let mut x = Vol::read(b)?;
    as_kernel_type(a.t.typ, &mut x.v);
    // Channel-innermost copies, as ggml permutes them, so each dot is over adjacent values.
    let xs: Vec<f32> = (0..l)
        .flat_map(|i| (0..cin).map(move |c| (i, c)))
        .map(|(i, c)| x.at(i, c, 0, 0))
        .collect();
    let ws: Vec<f32> = (0..cout * k)
        .flat_map(|ok| (0..cin).map(move |c| (ok, c)))
        .map(|(ok, c)| w.at(ok % k, ok / k, c, 0))
        .collect();
    let len = dst.t.ne[0];
    let mut out = vec![0f32; cout * len];
    out.par_chunks_mut(len.max(1))
        .enumerate()
        .for_each(|(o, row)| {
            for i in 0..l {
                let xi = &xs[i * cin..(i + 1) * cin];
                for kk in 0..k {
                    let wk = &ws[(o * k + kk) * cin..(o * k + kk + 1) * cin];
                    row[i * s + kk] += dot(xi, wk);
                }
            }
        });
    access::write_all(dst.t, dst.data, &out)
}

/// Kernel `[Kw, Kh, Cout, Cin]`, input `[W, H, Cin, N]`: each input pixel adds its dot with the kernel
/// taps at `(y*s + ky, x*s + kx)` of every output channel.
fn conv_transpose_2d(a: &Src<'_>, b: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let [kw, kh, cout, cin] = a.t.ne;
    let [iw, ih, _, n] = b.t.ne;
    let [ow, oh, _, _] = dst.t.ne;
    let s = dst.t.param_i32(0) as usize;
    let w = Vol::read(a)?;
    let mut x = Vol::read(b)?;
    as_kernel_type(a.t.typ, &mut x.v);
    let xs: Vec<f32> = (0..n * ih * iw)
        .flat_map(|p| (0..cin).map(move |c| (p, c)))
        .map(|(p, c)| x.at(p % iw, (p / iw) % ih, c, p / (iw * ih)))
        .collect();
    let ws: Vec<f32> = (0..cout * kh * kw)
        .flat_map(|q| (0..cin).map(move |c| (q, c)))
        .map(|(q, c)| w.at(q % kw, (q / kw) % kh, q / (kw * kh), c))
        .collect();
    let plane = ow * oh;
    let mut out = vec![0f32; plane * cout * n];
    out.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(pi, dplane)| {
            let (o, bn) = (pi % cout, pi / cout);
            for y in 0..ih {
                for xx in 0..iw {
                    let at = ((bn * ih + y) * iw + xx) * cin;
                    let xi = &xs[at..at + cin];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let q = ((o * kh + ky) * kw + kx) * cin;
                            dplane[(y * s + ky) * ow + xx * s + kx] += dot(xi, &ws[q..q + cin]);
                        }
                    }
                }
            }
        });
    access::write_all(dst.t, dst.data, &out)
}

/// Columns `[K*OC, T_in]` to a signal `[T_out, OC]`: output `t` (shifted by the crop `p`) sums the
/// column entries `(oc*K + k, t_in)` with `t_in*s + k == t + p`, in increasing `t_in`.
fn col2im_1d(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let s = param(dst.t, 0);
    let oc_n = param(dst.t, 1).max(1) as usize;
    let p = param(dst.t, 2);
    let cols = Vol::read(a)?;
    let k = (a.t.ne[0] / oc_n) as i64;
    let t_in = a.t.ne[1] as i64;
    map_rows(
        dst,
        || (),
        |_, _, [oc, _, _], out| {
            for (t, o) in out.iter_mut().enumerate() {
                let abs = t as i64 + p;
                // ceil((abs - K + 1) / s) written as ggml does; its truncation is harmless since
                // the bound is clamped at 0 and each k is checked.
                let lo = ((abs - k + 1 + s - 1) / s).max(0);
                let hi = (abs / s).min(t_in - 1);
                let mut sum = 0f32;
                for ti in lo..=hi {
                    let kk = abs - ti * s;
                    if (0..k).contains(&kk) {
                        sum += cols.at(oc * k as usize + kk as usize, ti as usize, 0, 0);
                    }
                }
                *o = sum;
            }
            Ok(())
        },
    )
}

#[cfg(test)]
#[path = "conv_transpose_tests.rs"]
mod tests;
