//! UPSCALE (ggml_upscale / ggml_interpolate) on F32: nearest, bilinear (optionally antialiased),
//! bicubic (alpha -0.75), with the align-corners flag; the same f32 arithmetic as ggml-cpu, so the
//! sample positions round the same way. Dims 2 and 3 always resample by nearest.

use super::elementwise::rows::{ensure, map_rows, src_at, src_of};
use super::spatial::{Vol, ensure_types};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC};

const MODE_NEAREST: i32 = 0;
const MODE_BILINEAR: i32 = 1;
const MODE_BICUBIC: i32 = 2;
const FLAG_ALIGN_CORNERS: i32 = 1 << 8;
const FLAG_ANTIALIAS: i32 = 1 << 9;

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let a = src_of(graph, node, 0)?;
    ensure_types(d, a.typ == GgmlType::F32 && d.typ == GgmlType::F32, &[a])?;
    let flags = d.param_i32(0);
    let mode = flags & 0xFF;
    ensure(
        matches!(mode, MODE_NEAREST | MODE_BILINEAR | MODE_BICUBIC),
        || format!("UPSCALE: unknown mode {mode}"),
    )?;
    ensure(flags & FLAG_ANTIALIAS == 0 || mode == MODE_BILINEAR, || {
        "UPSCALE: antialias needs bilinear mode".into()
    })?;
    ensure((0..4).all(|k| a.ne[k] > 0 || d.ne[k] == 0), || {
        "UPSCALE: empty source".into()
    })
}

/// Source index along a dim resampled by nearest: `i / sf` truncated (clamped for safety).
#[inline]
fn nearest(i: usize, sf: f32, n: usize) -> usize {
    ((i as f32 / sf) as usize).min(n.saturating_sub(1))
}

#[inline]
fn clamp_idx(i: i64, n: usize) -> usize {
    i.clamp(0, n as i64 - 1) as usize
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let a = src_at(src, 0, "UPSCALE")?;
    if dst.t.nelements() == 0 {
        return Ok(());
    }
    let x = Vol::read(a)?;
    let [ne00, ne01, ne02, ne03] = x.ne;
    let [ne0, ne1, ne2, ne3] = dst.t.ne;
    let mut sf = [
        ne0 as f32 / ne00 as f32,
        ne1 as f32 / ne01 as f32,
        ne2 as f32 / ne02 as f32,
        ne3 as f32 / ne03 as f32,
    ];
    let flags = dst.t.param_i32(0);
    let mode = flags & 0xFF;
    let mut off = 0.5f32;
    if flags & FLAG_ALIGN_CORNERS != 0 {
        off = 0.0;
        if ne0 > 1 && ne00 > 1 {
            sf[0] = (ne0 - 1) as f32 / (ne00 - 1) as f32;
        }
        if ne1 > 1 && ne01 > 1 {
            sf[1] = (ne1 - 1) as f32 / (ne01 - 1) as f32;
        }
    }
    let antialias = flags & FLAG_ANTIALIAS != 0;
    map_rows(
        dst,
        || (),
        |_, _, [i1, i2, i3], out| {
            let (j2, j3) = (nearest(i2, sf[2], ne02), nearest(i3, sf[3], ne03));
            let px = |xx: usize, yy: usize| x.at(xx, yy, j2, j3);
            match mode {
                MODE_NEAREST => {
                    let j1 = nearest(i1, sf[1], ne01);
                    for (i0, o) in out.iter_mut().enumerate() {
                        *o = px(nearest(i0, sf[0], ne00), j1);
                    }
                }
                MODE_BILINEAR if antialias => {
                    antialiased_row(&px, i1, [ne00, ne01], [sf[0], sf[1]], off, out)
                }
                MODE_BILINEAR => {
                    let y = (i1 as f32 + off) / sf[1] - off;
                    let y0f = y.floor() as i64;
                    let (y0, y1) = (clamp_idx(y0f, ne01), clamp_idx(y0f + 1, ne01));
                    let dy = (y - y0 as f32).clamp(0.0, 1.0);
                    for (i0, o) in out.iter_mut().enumerate() {
                        let xf = (i0 as f32 + off) / sf[0] - off;
                        let x0f = xf.floor() as i64;
                        let (x0, x1) = (clamp_idx(x0f, ne00), clamp_idx(x0f + 1, ne00));
                        let dx = (xf - x0 as f32).clamp(0.0, 1.0);
                        let (a, b, c, d) = (px(x0, y0), px(x1, y0), px(x0, y1), px(x1, y1));
                        *o = a * (1.0 - dx) * (1.0 - dy)
                            + b * dx * (1.0 - dy)
                            + c * (1.0 - dx) * dy
                            + d * dx * dy;
                    }
                }
                _ => {
                    let y = (i1 as f32 + off) / sf[1] - off;
                    let y0 = y.floor() as i64;
                    let dy = y - y0 as f32;
                    for (i0, o) in out.iter_mut().enumerate() {
                        let xf = (i0 as f32 + off) / sf[0] - off;
                        let x0 = xf.floor() as i64;
                        let dx = xf - x0 as f32;
                        let p = |xo: i64, yo: i64| {
                            px(clamp_idx(x0 + xo, ne00), clamp_idx(y0 + yo, ne01))
                        };
                        let r = |yo: i64| bicubic([p(-1, yo), p(0, yo), p(1, yo), p(2, yo)], dx);
                        *o = bicubic([r(-1), r(0), r(1), r(2)], dy);
                    }
                }
            }
            Ok(())
        },
    )
}

/// Cubic convolution with alpha = -0.75 (PyTorch's), weights written as ggml does.
fn bicubic(p: [f32; 4], x: f32) -> f32 {
    const A: f32 = -0.75;
    let w1 = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let w2 = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    p[0] * w2(x + 1.0) + p[1] * w1(x) + p[2] * w1(1.0 - x) + p[3] * w2(2.0 - x)
}

/// One output row of antialiased bilinear (a triangle filter widened by the downscale factor),
/// normalised by the weights that fell inside the image.
fn antialiased_row(
    px: &impl Fn(usize, usize) -> f32,
    i1: usize,
    ne: [usize; 2],
    sf: [f32; 2],
    off: f32,
    out: &mut [f32],
) {
    let tri = |x: f32| (1.0 - x.abs()).max(0.0);
    let support = [(1.0 / sf[0]).max(1.0), (1.0 / sf[1]).max(1.0)];
    let inv = [1.0 / support[0], 1.0 / support[1]];
    // float -> int64 truncation, then clamped, as ggml's std::max<int64_t>/std::min<int64_t>.
    let range = |c: f32, k: usize| {
        let lo = ((c - support[k] + off) as i64).max(0);
        let hi = ((c + support[k] + off) as i64).min(ne[k] as i64);
        lo..hi
    };
    let y = (i1 as f32 + off) / sf[1];
    for (i0, o) in out.iter_mut().enumerate() {
        let xc = (i0 as f32 + off) / sf[0];
        let (mut val, mut total) = (0f32, 0f32);
        for sy in range(y, 1) {
            let wy = tri((sy as f32 - y + off) * inv[1]);
            for sx in range(xc, 0) {
                let w = tri((sx as f32 - xc + off) * inv[0]) * wy;
                if w <= 0.0 {
                    continue;
                }
                val += px(sx as usize, sy as usize) * w;
                total += w;
            }
        }
        *o = if total > 0.0 { val / total } else { val };
    }
}

#[cfg(test)]
#[path = "upscale_tests.rs"]
mod tests;
