//! FLASH_ATTN_EXT with ggml's CPU online softmax: running maximum M, sum S and V accumulator per query
//! row and head, keys skipped where the mask is -inf, optional logit softcap, ALiBi, sinks and GQA.
//!
//! Like ggml, two numeric flavours exist. The vector path (ggml's `one_chunk`, used for small batches
//! such as decoding) rounds Q to K's dot-product type (f16 for an f16 cache), accumulates K·Q in f32
//! and, for f16 V, keeps the V accumulator in f16. The tiled path (ggml's choice for batches of at
//! least 64 query rows with f32 or f16 K and V of the same type) keeps Q, K·Q and V·softmax in f32 and
//! updates the running maximum once per tile of 64 keys.

use half::{bf16, f16};

use super::rows::{Alibi, par_rows, src, want_type};
use super::{Dst, Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Tensor};
use crate::quant;

/// ggml's GGML_FA_TILE_Q and GGML_FA_TILE_KV.
const TILE_Q: usize = 64;
const TILE_KV: usize = 64;

const FLOAT_TYPES: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::Bf16];

/// K types ggml-cpu's FA accepts: a float type, or a block type with a dot kernel whose activation
/// type (Q's conversion) has a quantizer.
fn k_type_ok(t: GgmlType) -> bool {
    let vt = quant::vec_dot_type(t);
    FLOAT_TYPES.contains(&t)
        || (t.is_quantized()
            && quant::dot_fn(t).is_some()
            && quant::quantize_row(vt, &[], &mut []).is_ok())
}

/// V types: a float type or any block type ggml can dequantize.
fn v_type_ok(t: GgmlType) -> bool {
    FLOAT_TYPES.contains(&t) || (t.is_quantized() && quant::can_dequantize(t))
}

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let t = &graph.tensors[node];
    let q = graph.src(node, 0).ok_or("FLASH_ATTN_EXT: missing q")?;
    let k = graph.src(node, 1).ok_or("FLASH_ATTN_EXT: missing k")?;
    let v = graph.src(node, 2).ok_or("FLASH_ATTN_EXT: missing v")?;
    want_type(
        "FLASH_ATTN_EXT q",
        q.typ,
        &[GgmlType::F32, GgmlType::F16, GgmlType::Bf16],
    )?;
    for (name, x, ok) in [("k", k, k_type_ok(k.typ)), ("v", v, v_type_ok(v.typ))] {
        if !ok {
            return Err(format!(
                "FLASH_ATTN_EXT: {name} of type {} is not supported",
                x.typ.name()
            ));
        }
    }
    want_type("FLASH_ATTN_EXT dst", t.typ, &[GgmlType::F32])?;
    for (name, x) in [("k", k), ("v", v)] {
        if x.typ.is_quantized()
            && (x.nb[0] != x.typ.type_size() || x.typ.row_size(x.ne[0]).is_none())
        {
            return Err(format!(
                "FLASH_ATTN_EXT: {name} rows are not whole packed blocks"
            ));
        }
    }
    let [dk, n_batch, n_head, d3] = q.ne;
    let dv = v.ne[0];
    let bcast =
        |x: &Tensor| x.ne[2] > 0 && x.ne[3] > 0 && n_head % x.ne[2] == 0 && d3 % x.ne[3] == 0;
    if k.ne[0] != dk || k.ne[1] != v.ne[1] || !bcast(k) || !bcast(v) {
        return Err(format!(
            "FLASH_ATTN_EXT: q {:?}, k {:?}, v {:?} do not fit",
            q.ne, k.ne, v.ne
        ));
    }
    if t.ne != [dv, n_head, n_batch, d3] {
        return Err(format!(
            "FLASH_ATTN_EXT: dst {:?}, expected {:?}",
            t.ne,
            [dv, n_head, n_batch, d3]
        ));
    }
    if let Some(m) = graph.src(node, 3) {
        want_type(
            "FLASH_ATTN_EXT mask",
            m.typ,
            &[GgmlType::F16, GgmlType::F32],
        )?;
        if m.ne[0] < k.ne[1] || m.ne[1] < n_batch || !bcast(m) {
            return Err(format!(
                "FLASH_ATTN_EXT: mask {:?} for {} keys, {} rows, {} heads",
                m.ne, k.ne[1], n_batch, n_head
            ));
        }
    }
    if let Some(s) = graph.src(node, 4) {
        want_type("FLASH_ATTN_EXT sinks", s.typ, &[GgmlType::F32])?;
        if s.ne[0] < n_head {
            return Err(format!(
                "FLASH_ATTN_EXT: {} sinks for {n_head} heads",
                s.ne[0]
            ));
        }
    }
    match t.param_i32(3) {
        0 | 10 => Ok(()),
        p => Err(format!("FLASH_ATTN_EXT: precision {p} is not supported")),
    }
}

/// Everything a row needs.
struct Attn<'a> {
    q: &'a Src<'a>,
    k: &'a Src<'a>,
    v: &'a Src<'a>,
    mask: Option<&'a Src<'a>>,
    sinks: Option<&'a Src<'a>>,
    /// Already divided by the softcap when there is one.
    scale: f32,
    softcap: f32,
    alibi: Alibi,
    tiled: bool,
    /// K and V converted once for the tiled path (when they fit `tiles::MAX_FLOATS`).
    tiles: Option<tiles::Tiles>,
}

pub fn run(srcs: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    run_chunked(srcs, dst, usize::MAX)
}

/// FLASH_ATTN_EXT with the keys in chunks of `chunk`, each chunk's running state kept apart and the
/// chunks combined as ggml-cpu's split-KV path does (`ggml_flash_attn_ext_reduce_partials`). One chunk
/// is the plain path. The GPU kernels split long caches this way; this is their exact reference.
pub fn run_chunked(
    srcs: &[Option<Src<'_>>; MAX_SRC],
    dst: Dst<'_>,
    chunk: usize,
) -> Result<(), DeviceError> {
    run_with(srcs, dst, chunk, true)
}

/// `run_chunked`, with the tiled path's K and V converted once (`tiles`) or row by row.
fn run_with(
    srcs: &[Option<Src<'_>>; MAX_SRC],
    dst: Dst<'_>,
    chunk: usize,
    convert_once: bool,
) -> Result<(), DeviceError> {
    let t = dst.t;
    let op = "FLASH_ATTN_EXT";
    let (q, k, v) = (src(srcs, 0, op)?, src(srcs, 1, op)?, src(srcs, 2, op)?);
    let softcap = t.param_f32(2);
    let mut scale = t.param_f32(0);
    if softcap != 0.0 {
        scale /= softcap;
    }
    let kv_f = matches!(k.t.typ, GgmlType::F32 | GgmlType::F16);
    // ggml (x86 AVX2 build) tiles when DV is a multiple of its 8-float SIMD width.
    let tiled = q.t.typ == GgmlType::F32
        && kv_f
        && k.t.typ == v.t.typ
        && q.t.ne[1] >= TILE_Q
        && v.t.ne[0] % 8 == 0;
    let a = Attn {
        q,
        k,
        v,
        mask: srcs[3].as_ref(),
        sinks: srcs[4].as_ref(),
        scale,
        softcap,
        alibi: Alibi::new(t.param_f32(1), q.t.ne[2]),
        tiled,
        tiles: match tiled && convert_once {
            true => tiles::Tiles::new(k, v)?,
            false => None,
        },
    };
    let work = k.t.ne[1].saturating_mul(k.t.ne[0] + v.t.ne[0]);
    let n_kv = k.t.ne[1];
    let chunk = chunk.max(1);
    par_rows(t, dst.data, work, |r, out| {
        // dst row (head, query row, i3).
        let (h, iq1, iq3) = access::unravel_row(t, r);
        if n_kv <= chunk {
            let (_, sum) = a.partial(h, iq1, iq3, 0..n_kv, out)?;
            let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
            out.iter_mut().for_each(|o| *o *= inv);
            return Ok(());
        }
        let mut part = vec![0f32; out.len()];
        let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
        out.fill(0.0);
        for c0 in (0..n_kv).step_by(chunk) {
            let (mc, sc) = a.partial(h, iq1, iq3, c0..n_kv.min(c0 + chunk), &mut part)?;
            if sc == 0.0 {
                continue;
            }
            let m_new = m.max(mc);
            let (so, sn) = ((m - m_new).exp(), (mc - m_new).exp());
            // GCC contracts `a*so + b*sn` into fma(a, so, b*sn).
            for (o, p) in out.iter_mut().zip(&part) {
                *o = o.mul_add(so, p * sn);
            }
            sum = sum.mul_add(so, sc * sn);
            m = m_new;
        }
        if sum != 0.0 {
            let inv = 1.0 / sum;
            out.iter_mut().for_each(|o| *o *= inv);
        }
        Ok(())
    })
}

impl Attn<'_> {
    /// The unnormalized V accumulator of keys `keys` into `out`, and the running maximum and sum
    /// (ggml's one_chunk with partials; the sinks count in the chunk that starts at key 0).
    fn partial(
        &self,
        h: usize,
        iq1: usize,
        iq3: usize,
        keys: std::ops::Range<usize>,
        out: &mut [f32],
    ) -> Result<(f32, f32), DeviceError> {
        let (dk, dv) = (self.k.t.ne[0], self.v.t.ne[0]);
        let (nh, d3) = (self.q.t.ne[2], self.q.t.ne[3]);
        let (ik2, ik3) = (h / (nh / self.k.t.ne[2]), iq3 / (d3 / self.k.t.ne[3]));
        let (iv2, iv3) = (h / (nh / self.v.t.ne[2]), iq3 / (d3 / self.v.t.ne[3]));
        let mut qv = vec![0f32; dk];
        access::read_row(self.q.t, self.q.data, iq1, h, iq3, &mut qv)?;
        // Block-type K: ggml converts Q to K's vec_dot_type once and scores each key with the
        // type's own dot kernel on the raw K row.
        let k_dot = QuantK::new(self.k, &qv)?;
        if !self.tiled && k_dot.is_none() {
            round_to(quant::vec_dot_type(self.k.t.typ), &mut qv)?;
        }
        let slope = self.alibi.slope(h);
        let mask_at = |ic: usize| -> f32 {
            self.mask.map_or(0.0, |m| {
                let base = access::row_offset(m.t, iq1, h % m.t.ne[2], iq3 % m.t.ne[3]);
                slope * access::load(m.t.typ, m.data, base + ic * m.t.nb[0])
            })
        };
        let score = |ic: usize, kbuf: &mut [f32]| -> Result<f32, DeviceError> {
            let kq = match &k_dot {
                Some(kd) => kd.dot(self.k, ic, ik2, ik3)?,
                None => {
                    read_fast(self.k.t, self.k.data, ic, ik2, ik3, kbuf)?;
                    dot(&qv, kbuf)
                }
            };
            let mut s = kq * self.scale;
            if self.softcap != 0.0 {
                s = self.softcap * s.tanh();
            }
            Ok(s)
        };
        let mut kbuf = vec![0f32; dk];
        let mut vbuf = vec![0f32; dv];
        out.fill(0.0);
        let mut m = f32::NEG_INFINITY;
        let mut sum = 0f32;
        if self.tiled {
            // ggml's tiled path, rounding step for step: K·Q as one FMA chain over DK, scale, mask, the
            // tile's softmax through the vector exp, and V accumulated by FMA in key order.
            let mut p = [f32::NEG_INFINITY; TILE_KV];
            let mut kq = [0f32; TILE_KV];
            let tiles = self
                .tiles
                .as_ref()
                .filter(|_| keys.start.is_multiple_of(TILE_KV));
            for ic in keys.clone().step_by(TILE_KV) {
                let n = TILE_KV.min(keys.end - ic);
                p.fill(f32::NEG_INFINITY);
                let mut mv = [f32::NEG_INFINITY; TILE_KV];
                for (tk, m) in mv.iter_mut().enumerate().take(n) {
                    *m = mask_at(ic + tk);
                }
                // A tile the mask hides entirely adds nothing (as below, key by key).
                if mv.iter().all(|&m| m == f32::NEG_INFINITY) {
                    continue;
                }
                if let Some(tl) = tiles {
                    tl.scores(&qv, ik2, ik3, ic, &mut kq);
                }
                let mut tile_max = f32::NEG_INFINITY;
                for (tk, pk) in p.iter_mut().enumerate().take(n) {
                    let mv = mv[tk];
                    if mv == f32::NEG_INFINITY {
                        continue;
                    }
                    let kq = match tiles {
                        Some(_) => kq[tk],
                        None => {
                            read_fast(self.k.t, self.k.data, ic + tk, ik2, ik3, &mut kbuf)?;
                            qv.iter()
                                .zip(&kbuf)
                                .fold(0f32, |acc, (q, k)| q.mul_add(*k, acc))
                        }
                    };
                    let mut sc = kq * self.scale;
                    if self.softcap != 0.0 {
                        sc = sc.tanh() * self.softcap;
                    }
                    *pk = sc + mv;
                    tile_max = if tile_max > *pk { tile_max } else { *pk };
                }
                if tile_max == f32::NEG_INFINITY {
                    continue;
                }
                let m_new = m.max(tile_max);
                if m_new > m {
                    let ms = (m - m_new).exp();
                    out.iter_mut().for_each(|o| *o *= ms);
                    sum *= ms;
                }
                m = m_new;
                sum = (sum as f64 + super::vexp::soft_max(&mut p, m)) as f32;
                for (tk, &e) in p.iter().enumerate().take(n) {
                    if e == 0.0 {
                        continue; // fma(0, v, acc) == acc: masked and underflowed keys add nothing
                    }
                    let vrow = match tiles {
                        Some(tl) => tl.v_row(ic + tk, iv2, iv3),
                        None => {
                            read_fast(self.v.t, self.v.data, ic + tk, iv2, iv3, &mut vbuf)?;
                            &vbuf
                        }
                    };
                    for (o, v) in out.iter_mut().zip(vrow) {
                        *o = e.mul_add(*v, *o);
                    }
                }
            }
        } else {
            let acc_f16 = self.v.t.typ == GgmlType::F16;
            for ic in keys.clone() {
                let mv = mask_at(ic);
                if mv == f32::NEG_INFINITY {
                    continue;
                }
                let s = score(ic, &mut kbuf)? + mv;
                let (mut ms, mut vs) = (1f32, 1f32);
                if s > m {
                    ms = (m - s).exp();
                    m = s;
                    out.iter_mut().for_each(|o| *o *= ms);
                    if acc_f16 {
                        out.iter_mut().for_each(|o| *o = f16::from_f32(*o).to_f32());
                    }
                } else {
                    vs = (s - m).exp();
                }
                read_fast(self.v.t, self.v.data, ic, iv2, iv3, &mut vbuf)?;
                axpy(out, &vbuf, vs);
                if acc_f16 {
                    out.iter_mut().for_each(|o| *o = f16::from_f32(*o).to_f32());
                }
                sum = sum.mul_add(ms, vs); // GCC contracts `S*ms + vs` into an FMA
            }
        }
        if let (Some(sk), 0) = (self.sinks, keys.start) {
            let s = access::load(GgmlType::F32, sk.data, h * sk.t.nb[0]);
            let (mut ms, mut vs) = (1f32, 1f32);
            if s > m {
                ms = (m - s).exp();
                m = s;
                out.iter_mut().for_each(|o| *o *= ms);
            } else {
                vs = (s - m).exp();
            }
            sum = sum.mul_add(ms, vs);
        }
        Ok((m, sum))
    }
}

/// Q converted to a block-type K's `vec_dot_type` (ggml-cpu's `from_float`) and K's dot kernel.
struct QuantK {
    q: Vec<u8>,
    dot: quant::DotFn,
    row_bytes: usize,
}

impl QuantK {
    fn new(k: &Src<'_>, qv: &[f32]) -> Result<Option<Self>, DeviceError> {
        let typ = k.t.typ;
        if !typ.is_quantized() {
            return Ok(None);
        }
        let err = |e: String| DeviceError::op("FLASH_ATTN_EXT", e);
        let vt = quant::vec_dot_type(typ);
        let dot = quant::dot_fn(typ).ok_or_else(|| err(format!("no dot for {}", typ.name())))?;
        let (row_bytes, q_bytes) = typ
            .row_size(qv.len())
            .zip(vt.row_size(qv.len()))
            .ok_or_else(|| err("K row is not whole blocks".into()))?;
        let mut q = vec![0u8; q_bytes];
        quant::quantize_row_for_dot(vt, qv, &mut q).map_err(|e| err(e.to_string()))?;
        Ok(Some(QuantK { q, dot, row_bytes }))
    }

    /// K row `(i1, i2, i3)` · Q.
    fn dot(&self, k: &Src<'_>, i1: usize, i2: usize, i3: usize) -> Result<f32, DeviceError> {
        let base = access::row_offset(k.t, i1, i2, i3);
        let row = k
            .data
            .get(base..base + self.row_bytes)
            .ok_or_else(|| DeviceError::op("FLASH_ATTN_EXT", "K row outside its tensor"))?;
        Ok((self.dot)(row, &self.q))
    }
}

/// Rounds `x` through `typ` (what ggml's `from_float` into the K dot type does to Q).
fn round_to(typ: GgmlType, x: &mut [f32]) -> Result<(), DeviceError> {
    match typ {
        GgmlType::F32 => {}
        GgmlType::F16 => x.iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32()),
        GgmlType::Bf16 => x.iter_mut().for_each(|v| *v = bf16::from_f32(*v).to_f32()),
        _ => {
            let err = |e: quant::QuantError| DeviceError::op("FLASH_ATTN_EXT", e.to_string());
            let len = typ
                .row_size(x.len())
                .ok_or_else(|| DeviceError::op("FLASH_ATTN_EXT", "q row is not whole blocks"))?;
            let mut bytes = vec![0u8; len];
            quant::quantize_row(typ, x, &mut bytes).map_err(err)?;
            quant::dequantize_row(typ, &bytes, x).map_err(err)?;
        }
    }
    Ok(())
}

/// `access::read_row` with a fast path for packed f16 rows (hardware conversion when available).
fn read_fast(
    t: &Tensor,
    b: &[u8],
    i1: usize,
    i2: usize,
    i3: usize,
    out: &mut [f32],
) -> Result<(), DeviceError> {
    if t.typ == GgmlType::F16 && t.nb[0] == 2 {
        let base = access::row_offset(t, i1, i2, i3);
        let bytes = b
            .get(base..base + 2 * out.len())
            .ok_or_else(|| DeviceError::op("FLASH_ATTN_EXT", "row outside tensor"))?;
        if let Ok(h) = bytemuck::try_cast_slice::<u8, f16>(bytes) {
            use half::slice::HalfFloatSliceExt;
            h.convert_to_f32_slice(out);
            return Ok(());
        }
    }
    access::read_row(t, b, i1, i2, i3, out)
}

/// `ggml_vec_dot_f16` as the AVX2 build runs it: four 8-lane FMA accumulators over 32-element steps,
/// `GGML_F32x8_REDUCE` (pairwise vectors, then halves, then two horizontal adds), the tail in f64.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let np = a.len().min(b.len()) & !31;
    let mut sum = [[0f32; 8]; 4];
    for (ca, cb) in a[..np].chunks_exact(32).zip(b[..np].chunks_exact(32)) {
        for (j, acc) in sum.iter_mut().enumerate() {
            for (l, s) in acc.iter_mut().enumerate() {
                *s = ca[8 * j + l].mul_add(cb[8 * j + l], *s);
            }
        }
    }
    let x0: [f32; 8] = std::array::from_fn(|l| (sum[0][l] + sum[2][l]) + (sum[1][l] + sum[3][l]));
    let t0: [f32; 4] = std::array::from_fn(|k| x0[k] + x0[4 + k]);
    let mut total = ((t0[0] + t0[1]) + (t0[2] + t0[3])) as f64;
    for (x, y) in a[np..].iter().zip(&b[np..]) {
        total += (x * y) as f64;
    }
    total as f32
}

/// `y += x * a` with one rounding per element, like ggml's `ggml_vec_mad_*` (SIMD FMA).
fn axpy(y: &mut [f32], x: &[f32], a: f32) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = x.mul_add(a, *y);
    }
}

#[cfg(test)]
mod tests;
mod tiles;
