//! Binding several tensors of one buffer through one window, for kernels that compute several
//! nodes in one dispatch (products of one activation, the K and V cache writes).

use super::{Ctx, View, addr};
use crate::device::DeviceError;
use crate::ggml::{Graph, Tensor};

/// Byte range of a tensor in its buffer.
fn range(t: &Tensor) -> Option<(u64, usize, usize)> {
    let d = t.data?;
    Some((d.buffer, d.offset, d.offset + t.nbytes()?))
}

/// Neither node's output overlaps the other's output or its first `srcs` sources (so one dispatch may
/// compute both in any order).
pub fn disjoint(graph: &Graph, m: usize, n: usize, srcs: usize) -> bool {
    let apart = |x: &Tensor, y: &Tensor| match (range(x), range(y)) {
        (Some((bx, x0, x1)), Some((by, y0, y1))) => bx != by || x1 <= y0 || y1 <= x0,
        _ => false,
    };
    let (tm, tn) = (&graph.tensors[m], &graph.tensors[n]);
    let ins = |i: usize| (0..srcs).map(move |k| graph.src(i, k));
    apart(tm, tn)
        && ins(n).all(|s| s.is_some_and(|s| apart(tm, s)))
        && ins(m).all(|s| s.is_some_and(|s| apart(tn, s)))
}

/// A window and the addresses of the tensors bound through it.
type Span = (View, Vec<[u32; 5]>);

/// One window spanning `ts` (all in one buffer), and each tensor's address inside it.
pub fn span(ctx: &Ctx, ts: &[&Tensor]) -> Result<Option<Span>, DeviceError> {
    let mut places = Vec::new();
    for t in ts {
        places.push(ctx.place(t)?);
    }
    let Some(&(wb, _, _)) = places.first() else {
        return Ok(None);
    };
    if places.iter().any(|(b, _, _)| !std::ptr::eq(*b, wb)) {
        return Ok(None);
    }
    let start = places.iter().map(|p| p.1).min().unwrap_or(0);
    let end = places.iter().map(|p| p.1 + p.2).max().unwrap_or(0);
    let Some(view) = View::new(ctx.gpu, &wb.buf, start, end - start) else {
        return Ok(None);
    };
    let mut addrs = Vec::new();
    for (t, p) in ts.iter().zip(&places) {
        let Some(mut a) = addr(&view, t) else {
            return Ok(None);
        };
        let Some(base) = u32::try_from(p.1 - start)
            .ok()
            .and_then(|o| o.checked_add(view.base))
        else {
            return Ok(None);
        };
        a[0] = base;
        addrs.push(a);
    }
    Ok(Some((view, addrs)))
}
