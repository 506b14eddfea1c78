//! Direct convolutions: CONV_2D, CONV_3D (im2col of one output row at a time, then dot products with
//! the kernel rows in the kernel's type, as ggml-cpu's im2col + mul_mat does: an F16 kernel sees its
//! input rounded to f16) and the depthwise CONV_2D_DW (f32 sums over the window, ky outer, kx inner).

use half::f16;
use rayon::prelude::*;

use super::elementwise::rows::{ensure, map_rows, shape, src_at, src_of};
use super::spatial::{
    Vol, conv_out, ensure_params_at_least, ensure_shape, ensure_types, inside, param,
};
use super::{Dst, Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op, Tensor};
use crate::quant;

use GgmlType::{F16, F32};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let k = src_of(graph, node, 0)?;
    let x = src_of(graph, node, 1)?;
    ensure_types(
        d,
        matches!(k.typ, F32 | F16) && x.typ == F32 && d.typ == F32,
        &[k, x],
    )?;
    match d.op {
        Op::Conv2d => {
            ensure_params_at_least(d, &[0, 1], 1)?;
            ensure(k.ne[2] == x.ne[2], || {
                format!("CONV_2D: kernel {} vs input {}", shape(k), shape(x))
            })?;
            let (s, p, dl) = (
                [param(d, 0), param(d, 1)],
                [param(d, 2), param(d, 3)],
                [param(d, 4), param(d, 5)],
            );
            let want = [
                conv_out(x.ne[0], k.ne[0], s[0], p[0], dl[0]),
                conv_out(x.ne[1], k.ne[1], s[1], p[1], dl[1]),
                k.ne[3] as i64,
                x.ne[3] as i64,
            ];
            ensure_shape(d, want, x)
        }
        Op::Conv3d => {
            ensure_params_at_least(d, &[0, 1, 2, 9, 10, 11], 1)?;
            let g = Geom3::new(d);
            ensure(k.ne[3] == g.c * g.oc && x.ne[3] == g.c * g.n, || {
                format!(
                    "CONV_3D: kernel {} / input {} do not hold {} in and {} out channels, batch {}",
                    shape(k),
                    shape(x),
                    g.c,
                    g.oc,
                    g.n
                )
            })?;
            let out = |i: usize| conv_out(x.ne[i], k.ne[i], g.s[i], g.p[i], g.d[i]);
            ensure_shape(d, [out(0), out(1), out(2), (g.oc * g.n) as i64], x)
        }
        Op::Conv2dDw => {
            ensure(k.ne[2] == 1 && k.ne[3] == x.ne[2], || {
                format!("CONV_2D_DW: kernel {} vs input {}", shape(k), shape(x))
            })?;
            ensure_params_at_least(d, &[0, 1], 1)?;
            let want = [
                conv_out(x.ne[0], k.ne[0], param(d, 0), param(d, 2), param(d, 4)),
                conv_out(x.ne[1], k.ne[1], param(d, 1), param(d, 3), param(d, 5)),
                x.ne[2] as i64,
                x.ne[3] as i64,
            ];
            ensure_shape(d, want, x)
        }
        _ => Err(format!("{} is not a direct convolution", d.op.name())),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let k = src_at(src, 0, op)?;
    let x = src_at(src, 1, op)?;
    if dst.t.nelements() == 0 {
        return Ok(());
    }
    match dst.t.op {
        Op::Conv2d => conv_2d(k, x, dst),
        Op::Conv3d => conv_3d(k, x, dst),
        Op::Conv2dDw => conv_2d_dw(k, x, dst),
        _ => Err(DeviceError::op(op, "not a direct convolution")),
    }
}

/// CONV_3D parameters (ggml_conv_3d_direct): strides, paddings, dilations per dim; channels in, batch,
/// channels out.
struct Geom3 {
    s: [i64; 3],
    p: [i64; 3],
    d: [i64; 3],
    c: usize,
    n: usize,
    oc: usize,
}

impl Geom3 {
    fn new(t: &Tensor) -> Self {
        let u = |k: usize| usize::try_from(t.param_i32(k)).unwrap_or(0);
        Geom3 {
            s: [param(t, 0), param(t, 1), param(t, 2)],
            p: [param(t, 3), param(t, 4), param(t, 5)],
            d: [param(t, 6), param(t, 7), param(t, 8)],
            c: u(9),
            n: u(10),
            oc: u(11),
        }
    }
}

/// The kernel as `oc` packed rows of `row_len` elements of its own type (F32 or F16).
fn kernel_rows(k: &Src<'_>, oc: usize, row_len: usize) -> Result<Vec<u8>, DeviceError> {
    let vals = access::read_all(k.t, k.data)?;
    let mut out = vec![0u8; oc * row_len * k.t.typ.type_size()];
    encode(k.t.typ, &vals[..oc * row_len], &mut out);
    Ok(out)
}

/// Packs f32 values as F32 or F16 (round to nearest even, as GGML_CPU_FP32_TO_FP16).
fn encode(typ: GgmlType, vals: &[f32], out: &mut [u8]) {
    if typ == F16 {
        for (o, v) in out.chunks_exact_mut(2).zip(vals) {
            o.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
        }
    } else {
        for (o, v) in out.chunks_exact_mut(4).zip(vals) {
            o.copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// For each of `items` groups of `per_item` patches (receptive fields of `field` elements, filled by
/// `fill(item, j, patch)`), the dot products with every kernel row, as `[oc][j]` per item.
fn patch_gemm<F>(
    typ: GgmlType,
    kernel: &[u8],
    oc: usize,
    field: usize,
    items: usize,
    per_item: usize,
    fill: F,
) -> Result<Vec<Vec<f32>>, DeviceError>
where
    F: Fn(usize, usize, &mut [f32]) + Sync,
{
    let dot = quant::dot_fn(typ).ok_or_else(|| DeviceError::op("conv", "no dot kernel"))?;
    let row = field * typ.type_size();
    if row == 0 {
        // An empty kernel (some dim 0) sums nothing: ggml's mul_mat with K = 0 gives zeros.
        return Ok(vec![vec![0f32; oc * per_item]; items]);
    }
    Ok((0..items)
        .into_par_iter()
        .map_init(
            || (vec![0f32; field], Vec::<u8>::new()),
            |(vals, patches), item| {
                patches.resize(per_item * row, 0);
                for (j, p) in patches.chunks_exact_mut(row).enumerate() {
                    fill(item, j, vals);
                    encode(typ, vals, p);
                }
                let mut out = vec![0f32; oc * per_item];
                for (krow, o) in kernel.chunks_exact(row).zip(out.chunks_exact_mut(per_item)) {
                    for (p, v) in patches.chunks_exact(row).zip(o.iter_mut()) {
                        *v = dot(krow, p);
                    }
                }
                out
            },
        )
        .collect())
}

fn conv_2d(k: &Src<'_>, x: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let t = dst.t;
    let (s, p, d) = (
        [param(t, 0), param(t, 1)],
        [param(t, 2), param(t, 3)],
        [param(t, 4), param(t, 5)],
    );
    let [kw, kh, c, oc] = k.t.ne;
    let [ow, oh, _, n] = t.ne;
    let field = kw * kh * c;
    let img = Vol::read(x)?;
    let kernel = kernel_rows(k, oc, field)?;
    let per_row = patch_gemm(k.t.typ, &kernel, oc, field, n * oh, ow, |item, ox, out| {
        let (b, oy) = (item / oh, item % oh);
        for ic in 0..c {
            for ky in 0..kh {
                let sy = inside(oy as i64 * s[1] + ky as i64 * d[1] - p[1], img.ne[1]);
                for kx in 0..kw {
                    let sx = inside(ox as i64 * s[0] + kx as i64 * d[0] - p[0], img.ne[0]);
                    out[(ic * kh + ky) * kw + kx] = match (sx, sy) {
                        (Some(sx), Some(sy)) => img.at(sx, sy, ic, b),
                        _ => 0.0,
                    };
                }
            }
        }
    })?;
    let mut out = vec![0f32; t.nelements()];
    for (item, r) in per_row.iter().enumerate() {
        let (b, oy) = (item / oh, item % oh);
        for (o, vals) in r.chunks_exact(ow).enumerate() {
            let at = ((b * oc + o) * oh + oy) * ow;
            out[at..at + ow].copy_from_slice(vals);
        }
    }
    access::write_all(t, dst.data, &out)
}

fn conv_3d(k: &Src<'_>, x: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let t = dst.t;
    let g = Geom3::new(t);
    let [kw, kh, kd, _] = k.t.ne;
    let [ow, oh, od, _] = t.ne;
    let (c, oc) = (g.c, g.oc);
    let field = kw * kh * kd * c;
    let img = Vol::read(x)?;
    let kernel = kernel_rows(k, oc, field)?;
    let items = g.n * od * oh;
    let per_row = patch_gemm(k.t.typ, &kernel, oc, field, items, ow, |item, ox, out| {
        let (b, oz, oy) = (item / (od * oh), (item / oh) % od, item % oh);
        let at = |i: usize, o: usize, ki: usize| o as i64 * g.s[i] + ki as i64 * g.d[i] - g.p[i];
        for ic in 0..c {
            for kz in 0..kd {
                let sz = inside(at(2, oz, kz), img.ne[2]);
                for ky in 0..kh {
                    let sy = inside(at(1, oy, ky), img.ne[1]);
                    for kx in 0..kw {
                        let sx = inside(at(0, ox, kx), img.ne[0]);
                        out[((ic * kd + kz) * kh + ky) * kw + kx] = match (sx, sy, sz) {
                            (Some(sx), Some(sy), Some(sz)) => img.at(sx, sy, sz, b * c + ic),
                            _ => 0.0,
                        };
                    }
                }
            }
        }
    })?;
    let mut out = vec![0f32; t.nelements()];
    for (item, r) in per_row.iter().enumerate() {
        let (b, oz, oy) = (item / (od * oh), (item / oh) % od, item % oh);
        for (o, vals) in r.chunks_exact(ow).enumerate() {
            let at = (((b * oc + o) * od + oz) * oh + oy) * ow;
            out[at..at + ow].copy_from_slice(vals);
        }
    }
    access::write_all(t, dst.data, &out)
}

fn conv_2d_dw(k: &Src<'_>, x: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let t = dst.t;
    let (s, p, d) = (
        [param(t, 0), param(t, 1)],
        [param(t, 2), param(t, 3)],
        [param(t, 4), param(t, 5)],
    );
    let knl = Vol::read(k)?;
    let img = Vol::read(x)?;
    let [kw, kh, _, _] = k.t.ne;
    map_rows(
        dst,
        || (),
        |_, _, [oy, ch, b], out| {
            for (ox, o) in out.iter_mut().enumerate() {
                let mut sum = 0f32;
                for ky in 0..kh {
                    let Some(sy) = inside(oy as i64 * s[1] + ky as i64 * d[1] - p[1], img.ne[1])
                    else {
                        continue;
                    };
                    for kx in 0..kw {
                        let Some(sx) =
                            inside(ox as i64 * s[0] + kx as i64 * d[0] - p[0], img.ne[0])
                        else {
                            continue;
                        };
                        sum += knl.at(kx, ky, 0, ch) * img.at(sx, sy, ch, b);
                    }
                }
                *o = sum;
            }
            Ok(())
        },
    )
}

#[cfg(test)]
#[path = "conv_tests.rs"]
mod tests;
