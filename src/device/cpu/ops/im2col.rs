//! IM2COL (1-D and 2-D), IM2COL_BACK and IM2COL_3D, as ggml-cpu lays them out: one destination row per
//! output position holding the receptive field `[IC][KD][KH][KW]` (zeros where it leaves the input).
//! The values are copies, so the only rounding is the f16 conversion of an F16 destination.

use super::elementwise::rows::{ensure, map_rows, shape, src_at, src_of};
use super::spatial::{
    Vol, conv_out, ensure_params_at_least, ensure_shape, ensure_types, inside, param,
};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op, Tensor};

use GgmlType::{F16, F32};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let a = src_of(graph, node, 0)?;
    let b = src_of(graph, node, 1)?;
    match d.op {
        Op::Im2col => check_im2col(d, a, b),
        Op::Im2colBack => check_back(d, a, b),
        Op::Im2col3d => check_3d(d, a, b),
        _ => Err(format!("{} is not an im2col op", d.op.name())),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let a = src_at(src, 0, op)?;
    let b = src_at(src, 1, op)?;
    match dst.t.op {
        Op::Im2col => im2col(a.t, b, dst),
        Op::Im2colBack => im2col_back(a, b.t, dst),
        Op::Im2col3d => im2col_3d(a.t, b, dst),
        _ => Err(DeviceError::op(op, "not an im2col op")),
    }
}

/// Geometry of a 1-D or 2-D im2col: the image `[IW, IH, IC, N]` (IH = 1 in 1-D) and the kernel.
struct Geom {
    two_d: bool,
    iw: usize,
    ih: usize,
    ic: usize,
    n: usize,
    kw: usize,
    kh: usize,
    /// s0, s1, p0, p1, d0, d1.
    s: [i64; 2],
    p: [i64; 2],
    d: [i64; 2],
}

impl Geom {
    /// From the node's params, the kernel `k` and the image `img` (ggml_im2col's conventions).
    fn new(t: &Tensor, k: &Tensor, img: &Tensor) -> Self {
        let two_d = t.param_i32(6) == 1;
        Geom {
            two_d,
            iw: img.ne[0],
            ih: if two_d { img.ne[1] } else { 1 },
            ic: if two_d { img.ne[2] } else { img.ne[1] },
            n: if two_d { img.ne[3] } else { img.ne[2] },
            kw: k.ne[0],
            kh: if two_d { k.ne[1] } else { 1 },
            s: [param(t, 0), param(t, 1)],
            p: [param(t, 2), param(t, 3)],
            d: [param(t, 4), param(t, 5)],
        }
    }

    fn field(&self) -> usize {
        self.ic * self.kh * self.kw
    }

    fn ow(&self) -> i64 {
        conv_out(self.iw, self.kw, self.s[0], self.p[0], self.d[0])
    }

    fn oh(&self) -> i64 {
        if self.two_d {
            conv_out(self.ih, self.kh, self.s[1], self.p[1], self.d[1])
        } else {
            1
        }
    }

    /// The columns tensor's shape `[IC*KH*KW, OW, OH, N]` (`[IC*KW, OW, N, 1]` in 1-D).
    fn cols_shape(&self) -> [i64; 4] {
        let (f, ow, n) = (self.field() as i64, self.ow(), self.n as i64);
        if self.two_d {
            [f, ow, self.oh(), n]
        } else {
            [f, ow, n, 1]
        }
    }

    /// Image element `(iw, ih, ic, n)` in the image's logical order.
    fn img_idx(&self, img: &Vol, iw: usize, ih: usize, ic: usize, n: usize) -> usize {
        if self.two_d {
            img.idx(iw, ih, ic, n)
        } else {
            img.idx(iw, ic, n, 0)
        }
    }
}

fn check_strides(d: &Tensor, two_d: bool) -> Result<(), String> {
    let ks: &[usize] = if two_d { &[0, 1] } else { &[0] };
    ensure_params_at_least(d, ks, 1)
}

fn check_im2col(d: &Tensor, a: &Tensor, b: &Tensor) -> Result<(), String> {
    ensure_types(
        d,
        matches!(b.typ, F32 | F16) && matches!(d.typ, F32 | F16),
        &[b],
    )?;
    let g = Geom::new(d, a, b);
    check_strides(d, g.two_d)?;
    let kernel_ok = if g.two_d {
        a.ne[2] == b.ne[2]
    } else {
        a.ne[1] == b.ne[1] && b.ne[3] == 1
    };
    ensure(kernel_ok, || {
        format!(
            "IM2COL: kernel {} does not match image {}",
            shape(a),
            shape(b)
        )
    })?;
    ensure_shape(d, g.cols_shape(), b)
}

fn im2col(k: &Tensor, b: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let g = Geom::new(dst.t, k, b.t);
    let img = Vol::read(b)?;
    let (kh, kw) = (g.kh, g.kw);
    map_rows(
        dst,
        || (),
        |_, _, [i1, i2, i3], out| {
            // Row (ow, oh, n) in 2-D, (ow, n) in 1-D.
            let (ow, oh, n) = if g.two_d { (i1, i2, i3) } else { (i1, 0, i2) };
            for ic in 0..g.ic {
                for ky in 0..kh {
                    let y = oh as i64 * g.s[1] + ky as i64 * g.d[1] - g.p[1];
                    for kx in 0..kw {
                        let x = ow as i64 * g.s[0] + kx as i64 * g.d[0] - g.p[0];
                        out[(ic * kh + ky) * kw + kx] = match (inside(x, g.iw), inside(y, g.ih)) {
                            (Some(x), Some(y)) => img.v[g.img_idx(&img, x, y, ic, n)],
                            _ => 0.0,
                        };
                    }
                }
            }
            Ok(())
        },
    )
}

fn check_back(d: &Tensor, grad: &Tensor, k: &Tensor) -> Result<(), String> {
    ensure_types(
        d,
        grad.typ == F32 && matches!(k.typ, F32 | F16) && d.typ == F32,
        &[grad, k],
    )?;
    let g = Geom::new(d, k, d);
    check_strides(d, g.two_d)?;
    let (f, n) = (g.field(), g.n);
    let ok = if g.two_d {
        grad.ne[0] == f && grad.ne[3] == n
    } else {
        grad.ne[0] == f && grad.ne[2] == n && grad.ne[3] == 1
    };
    ensure(ok, || {
        format!(
            "IM2COL_BACK: gradient {} does not fit image {} and kernel {}",
            shape(grad),
            shape(d),
            shape(k)
        )
    })
}

/// Gradient of im2col: each image element sums the column entries it was copied into.
fn im2col_back(grad: &Src<'_>, k: &Tensor, dst: Dst<'_>) -> Result<(), DeviceError> {
    let g = Geom::new(dst.t, k, dst.t);
    let cols = Vol::read(grad)?;
    let ow_n = grad.t.ne[1] as i64;
    let oh_n = if g.two_d { grad.t.ne[2] as i64 } else { 1 };
    let (kh, kw) = (g.kh, g.kw);
    map_rows(
        dst,
        || (),
        |_, _, [i1, i2, i3], out| {
            let (ih, ic, n) = if g.two_d { (i1, i2, i3) } else { (0, i1, i2) };
            for (iw, o) in out.iter_mut().enumerate() {
                let mut acc = 0f32;
                for ky in 0..kh {
                    for kx in 0..kw {
                        // Positions the forward pass stepped over (not a multiple of the stride)
                        // received nothing.
                        let tw = iw as i64 + g.p[0] - kx as i64 * g.d[0];
                        if tw % g.s[0] != 0 {
                            continue;
                        }
                        let ow = tw / g.s[0];
                        let oh = if g.two_d {
                            let th = ih as i64 + g.p[1] - ky as i64 * g.d[1];
                            if th % g.s[1] != 0 {
                                continue;
                            }
                            th / g.s[1]
                        } else {
                            0
                        };
                        if ow < 0 || ow >= ow_n || oh < 0 || oh >= oh_n {
                            continue;
                        }
                        let col = (ic * kh + ky) * kw + kx;
                        let (ow, oh) = (ow as usize, oh as usize);
                        acc += if g.two_d {
                            cols.at(col, ow, oh, n)
                        } else {
                            cols.at(col, ow, n, 0)
                        };
                    }
                }
                *o = acc;
            }
            Ok(())
        },
    )
}

/// IM2COL_3D geometry: image `[IW, IH, ID, N*IC]`, kernel `[KW, KH, KD, OC*IC]`.
struct Geom3 {
    ic: usize,
    n: usize,
    i: [usize; 3],
    k: [usize; 3],
    s: [i64; 3],
    p: [i64; 3],
    d: [i64; 3],
}

impl Geom3 {
    fn new(t: &Tensor, k: &Tensor, img: &Tensor) -> Self {
        let ic = usize::try_from(t.param_i32(9)).unwrap_or(0);
        Geom3 {
            ic,
            n: img.ne[3].checked_div(ic).unwrap_or(0),
            i: [img.ne[0], img.ne[1], img.ne[2]],
            k: [k.ne[0], k.ne[1], k.ne[2]],
            s: [param(t, 0), param(t, 1), param(t, 2)],
            p: [param(t, 3), param(t, 4), param(t, 5)],
            d: [param(t, 6), param(t, 7), param(t, 8)],
        }
    }

    fn out(&self, k: usize) -> i64 {
        conv_out(self.i[k], self.k[k], self.s[k], self.p[k], self.d[k])
    }
}

fn check_3d(d: &Tensor, a: &Tensor, b: &Tensor) -> Result<(), String> {
    ensure_types(
        d,
        matches!(b.typ, F32 | F16) && matches!(d.typ, F32 | F16),
        &[b],
    )?;
    ensure_params_at_least(d, &[0, 1, 2, 9], 1)?;
    // N = ne[3] / IC truncates as in ggml; N = 0 gives an empty destination.
    let g = Geom3::new(d, a, b);
    let field = (g.ic * g.k[0] * g.k[1] * g.k[2]) as i64;
    let od = g.out(2);
    ensure_shape(d, [field, g.out(0), g.out(1), od * g.n as i64], b)
}

fn im2col_3d(k: &Tensor, b: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let g = Geom3::new(dst.t, k, b.t);
    let img = Vol::read(b)?;
    let od_n = dst.t.ne[3] / g.n.max(1);
    let [kw, kh, kd] = g.k;
    map_rows(
        dst,
        || (),
        |_, _, [ow, oh, i3], out| {
            let (n, od) = (i3 / od_n.max(1), i3 % od_n.max(1));
            let pos = [ow as i64, oh as i64, od as i64];
            let at = |k: usize, ki: usize| pos[k] * g.s[k] + ki as i64 * g.d[k] - g.p[k];
            for ic in 0..g.ic {
                for kz in 0..kd {
                    let z = inside(at(2, kz), g.i[2]);
                    for ky in 0..kh {
                        let y = inside(at(1, ky), g.i[1]);
                        for kx in 0..kw {
                            let x = inside(at(0, kx), g.i[0]);
                            out[((ic * kd + kz) * kh + ky) * kw + kx] = match (x, y, z) {
                                (Some(x), Some(y), Some(z)) => img.at(x, y, z, n * g.ic + ic),
                                _ => 0.0,
                            };
                        }
                    }
                }
            }
            Ok(())
        },
    )
}

#[cfg(test)]
#[path = "im2col_tests.rs"]
mod tests;
