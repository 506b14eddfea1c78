//! MUL_MAT, MUL_MAT_ID and OUT_PROD.
//!
//! MUL_MAT and MUL_MAT_ID follow ggml-cpu: every activation row is converted once to the weight type's
//! `vec_dot_type` (in parallel), then each output element is `quant::vec_dot(weight row, activation
//! row)`. Both ops reduce to "groups": one weight matrix (a plane of src0, or one expert) and the
//! activation rows (columns of the result) multiplied by it. Each group is cut into tasks of weight
//! rows × columns that rayon runs in parallel; a task walks 16 weight rows at a time across its
//! columns so the rows stay in L1 while the columns stream from L2. Results are scattered into dst
//! through its strides afterwards, so dst may have any layout.
//!
//! For K-quant and IQ4_XS weights, ggml-cpu does not use `vec_dot` once a group has ≥ 8 columns:
//! its tiled K-quant matmul takes over, with the same exact integer sums but a different float
//! epilogue per super-block. Such groups use `quant::tiled`'s kernels instead, so the results stay
//! bit-identical to llama.cpp's for every batch size.

use rayon::prelude::*;

use super::access::{self, read_row, unravel_row};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op, Tensor};
use crate::quant::{self, DotFn, TileFn};

/// `GGRPC_CPU_TILE=0` turns the register-tiled kernels off (for measuring them; same results).
fn tile_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("GGRPC_CPU_TILE").map_or(true, |v| v.trim() != "0"))
}

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let t = &graph.tensors[node];
    let src = |k: usize| {
        graph
            .src(node, k)
            .ok_or_else(|| format!("{}: missing source {k}", t.op.name()))
    };
    if t.typ != GgmlType::F32 {
        return Err(format!(
            "{}: result must be f32, not {}",
            t.op.name(),
            t.typ.name()
        ));
    }
    match t.op {
        Op::MulMat => check_mul_mat(t, src(0)?, src(1)?),
        Op::MulMatId => check_mul_mat_id(t, src(0)?, src(1)?, src(2)?),
        Op::OutProd => check_out_prod(t, src(0)?, src(1)?),
        op => Err(format!("{} is not a matmul op", op.name())),
    }
}

/// Weight type, activation type and the shared inner dimension.
fn check_operands(a: &Tensor, b: &Tensor) -> Result<(), String> {
    if quant::dot_fn(a.typ).is_none() {
        return Err(format!(
            "weights of type {} are not supported",
            a.typ.name()
        ));
    }
    if a.typ.is_quantized() && a.nb[0] != a.typ.type_size() {
        return Err("quantized weights must have packed blocks".into());
    }
    // ggml-cpu also takes activations already in the weights' `vec_dot_type` (used as they are).
    let pre_converted =
        b.typ.is_quantized() && b.typ == quant::vec_dot_type(a.typ) && b.nb[0] == b.typ.type_size();
    if !access::is_scalar_float(b.typ) && !pre_converted {
        return Err(format!(
            "activations of type {} are not supported",
            b.typ.name()
        ));
    }
    let k = a.ne[0];
    if b.ne[0] != k {
        return Err(format!("inner dimensions differ: {} vs {}", k, b.ne[0]));
    }
    if a.typ.row_size(k).is_none() || quant::vec_dot_type(a.typ).row_size(k).is_none() {
        return Err(format!(
            "row of {k} is not a whole number of {} blocks",
            a.typ.name()
        ));
    }
    Ok(())
}

fn check_mul_mat(t: &Tensor, a: &Tensor, b: &Tensor) -> Result<(), String> {
    check_operands(a, b).map_err(|e| format!("MUL_MAT: {e}"))?;
    if t.ne != [a.ne[1], b.ne[1], b.ne[2], b.ne[3]] {
        return Err(format!(
            "MUL_MAT: result shape {:?} != [{}, {:?}]",
            t.ne,
            a.ne[1],
            &b.ne[1..]
        ));
    }
    if a.ne[2] == 0
        || a.ne[3] == 0
        || !b.ne[2].is_multiple_of(a.ne[2])
        || !b.ne[3].is_multiple_of(a.ne[3])
    {
        return Err(format!(
            "MUL_MAT: cannot broadcast {:?} over {:?}",
            a.ne, b.ne
        ));
    }
    Ok(())
}

fn check_mul_mat_id(t: &Tensor, a: &Tensor, b: &Tensor, ids: &Tensor) -> Result<(), String> {
    check_operands(a, b).map_err(|e| format!("MUL_MAT_ID: {e}"))?;
    let (n_used, n_tok) = (ids.ne[0], ids.ne[1]);
    if ids.typ != GgmlType::I32 || ids.ne[2] != 1 || ids.ne[3] != 1 {
        return Err("MUL_MAT_ID: ids must be a 2-d i32 tensor".into());
    }
    if a.ne[3] != 1 || b.ne[3] != 1 || b.ne[2] != n_tok || b.ne[1] == 0 || n_used % b.ne[1] != 0 {
        return Err(format!(
            "MUL_MAT_ID: shapes {:?} {:?} {:?} do not fit",
            a.ne, b.ne, ids.ne
        ));
    }
    if t.ne != [a.ne[1], n_used, n_tok, 1] {
        return Err(format!("MUL_MAT_ID: result shape {:?} is wrong", t.ne));
    }
    Ok(())
}

fn check_out_prod(t: &Tensor, a: &Tensor, b: &Tensor) -> Result<(), String> {
    let packed = access::is_scalar_float(a.typ) || a.nb[0] == a.typ.type_size();
    if !quant::can_dequantize(a.typ) || !packed || a.typ.row_size(a.ne[0]).is_none() {
        return Err(format!(
            "OUT_PROD: src0 of type {} is not supported",
            a.typ.name()
        ));
    }
    if !access::is_scalar_float(b.typ) {
        return Err(format!(
            "OUT_PROD: src1 of type {} is not supported",
            b.typ.name()
        ));
    }
    if a.ne[1] != b.ne[1] || t.ne != [a.ne[0], b.ne[0], b.ne[2], b.ne[3]] {
        return Err(format!(
            "OUT_PROD: shapes {:?} {:?} -> {:?} do not fit",
            a.ne, b.ne, t.ne
        ));
    }
    if a.ne[2] == 0
        || a.ne[3] == 0
        || !b.ne[2].is_multiple_of(a.ne[2])
        || !b.ne[3].is_multiple_of(a.ne[3])
    {
        return Err(format!(
            "OUT_PROD: cannot broadcast {:?} over {:?}",
            a.ne, b.ne
        ));
    }
    Ok(())
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op;
    let get = |k: usize| {
        src[k]
            .as_ref()
            .ok_or_else(|| DeviceError::op(op.name(), format!("missing source {k}")))
    };
    if dst.t.nelements() == 0 {
        return Ok(());
    }
    match op {
        Op::MulMat if super::hadamard::applies(dst.t, get(0)?.t, get(1)?.t) => {
            super::hadamard::run(get(1)?, dst)
        }
        Op::MulMat => mul_mat(get(0)?, get(1)?, dst),
        Op::MulMatId => mul_mat_id(get(0)?, get(1)?, get(2)?, dst),
        Op::OutProd => out_prod(get(0)?, get(1)?, dst),
        _ => Err(DeviceError::op(op.name(), "not a matmul op")),
    }
}

/// One weight matrix and the activation rows it multiplies.
struct Group {
    /// Byte offset of the matrix (its row 0) in src0.
    a_off: usize,
    /// Per column: the activation row (index into the converted rows) and the byte offset in dst of
    /// the result element for weight row 0.
    cols: Vec<(usize, usize)>,
}

/// Converts every row of `b` (in `unravel_row` order) to `vt`, in parallel.
fn convert_rows(b: &Src<'_>, vt: GgmlType, op: &'static str) -> Result<Vec<u8>, DeviceError> {
    let k = b.t.ne[0];
    let row = vt
        .row_size(k)
        .ok_or_else(|| DeviceError::op(op, "activation row is not whole blocks"))?;
    let mut out = vec![0u8; row * b.t.nrows()];
    if b.t.typ == vt && vt.is_quantized() {
        for (r, dst) in out.chunks_exact_mut(row).enumerate() {
            let (i1, i2, i3) = unravel_row(b.t, r);
            let base = access::row_offset(b.t, i1, i2, i3);
            let src = b
                .data
                .get(base..base + row)
                .ok_or_else(|| DeviceError::op(op, "activation row outside src1"))?;
            dst.copy_from_slice(src);
        }
        return Ok(out);
    }
    out.par_chunks_mut(row).enumerate().try_for_each_init(
        || vec![0f32; k],
        |tmp, (r, dst)| {
            let (i1, i2, i3) = unravel_row(b.t, r);
            read_row(b.t, b.data, i1, i2, i3, tmp)?;
            quant::quantize_row_for_dot(vt, tmp, dst)
                .map_err(|e| DeviceError::op(op, e.to_string()))
        },
    )?;
    Ok(out)
}

/// The weight operand: its bytes, geometry and dot kernel.
struct Weights<'a> {
    t: &'a Tensor,
    data: &'a [u8],
    row_bytes: usize,
    /// Rows whose elements are not adjacent (float views with `nb[0] != type size`) are gathered.
    gather: bool,
    dot: DotFn,
    /// The kernel of ggml's tiled path (groups of ≥ 8 columns), for the types it covers.
    tiled: Option<DotFn>,
    /// llamafile's tinyBLAS kernel (MUL_MAT groups of ≥ 2 columns), where ggml would call it.
    tiny: Option<DotFn>,
    /// Whether `tiny`'s tiles may run on rows converted to f32 once (`matmul_exec::run_float`).
    pub(super) tiny_tile: bool,
    /// A register-tiled kernel bit-identical to `dot` (tiles of up to 4 rows × 4 columns).
    tile: Option<TileFn>,
    /// A register-tiled kernel bit-identical to `tiled`.
    tiled_tile: Option<TileFn>,
    /// A 16-column panel kernel bit-identical to `tiled` (`quant::kpanel`).
    panel: Option<quant::kpanel::PanelRun>,
}

impl<'a> Weights<'a> {
    fn new(a: &'a Src<'a>, op: &'static str) -> Result<Self, DeviceError> {
        let t = a.t;
        let dot = quant::dot_fn(t.typ).ok_or_else(|| DeviceError::op(op, "no dot kernel"))?;
        let row_bytes = t
            .typ
            .row_size(t.ne[0])
            .ok_or_else(|| DeviceError::op(op, "weight row is not whole blocks"))?;
        let gather = !t.typ.is_quantized() && t.ne[0] > 1 && t.nb[0] != t.typ.type_size();
        Ok(Weights {
            t,
            data: a.data,
            row_bytes,
            gather,
            dot,
            tiled: quant::tiled::tiled_dot_fn(t.typ),
            tiny: None,
            tiny_tile: false,
            tile: quant::tile_fn(t.typ).filter(|_| tile_enabled()),
            tiled_tile: quant::tiled::tiled_tile_fn(t.typ).filter(|_| tile_enabled()),
            panel: quant::kpanel::panel_fn(t.typ).filter(|_| tile_enabled()),
        })
    }

    /// The kernel ggml-cpu would apply to a group of `cols` columns (see the module comment).
    fn dot_for(&self, cols: usize) -> DotFn {
        if let Some(f) = self.tiny.filter(|_| cols >= 2) {
            return f;
        }
        match self.tiled {
            Some(f) if quant::tiled::use_tiled(cols) => f,
            _ => self.dot,
        }
    }

    /// The panel kernel for a group of `cols` columns, where it computes `dot_for`'s bits.
    fn panel_for(&self, cols: usize) -> Option<quant::kpanel::PanelRun> {
        self.panel
            .filter(|_| self.tiled.is_some() && !self.gather && quant::tiled::use_tiled(cols))
    }

    /// The register-tiled kernel for a group of `cols` columns, where it computes `dot_for`'s bits.
    /// A single column is a stream through the weights: row by row prefetches best.
    fn tile_for(&self, cols: usize) -> Option<TileFn> {
        if cols < 2 {
            return None;
        }
        if self.tiny.is_some() {
            return None;
        }
        match self.tiled {
            Some(_) if quant::tiled::use_tiled(cols) => self.tiled_tile,
            Some(_) => None,
            None => self.tile,
        }
    }

    /// The bytes of the row starting at byte `off`, gathered into `buf` when strided.
    fn row<'s>(&'s self, off: usize, buf: &'s mut Vec<u8>) -> Option<&'s [u8]> {
        if !self.gather {
            return self.data.get(off..off.checked_add(self.row_bytes)?);
        }
        let ts = self.t.typ.type_size();
        buf.clear();
        for i in 0..self.t.ne[0] {
            let o = off.checked_add(i.checked_mul(self.t.nb[0])?)?;
            buf.extend_from_slice(self.data.get(o..o.checked_add(ts)?)?);
        }
        Some(buf)
    }
}

fn mul_mat(a: &Src<'_>, b: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let (at, bt, dt) = (a.t, b.t, dst.t);
    if at.ne[0] == 0 {
        return access::write_all(dt, dst.data, &vec![0f32; dt.nelements()]);
    }
    let mut w = Weights::new(a, op)?;
    // ggml hands F32/F16/BF16 products to llamafile's tinyBLAS when K is a multiple of 8 (F32 ones
    // only with contiguous activations; the others are converted to a contiguous copy first).
    w.tiny = quant::tiny_blas_fn(at.typ)
        .filter(|_| at.ne[0] % 8 == 0 && (at.typ != GgmlType::F32 || bt.is_contiguous()));
    w.tiny_tile = w.tiny.is_some()
        && !w.gather
        && matches!(at.typ, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16)
        && tile_enabled();
    let vt = quant::vec_dot_type(at.typ);
    let act = convert_rows(b, vt, op)?;
    let act_row = vt.row_size(bt.ne[0]).unwrap_or(0);
    let (r2, r3) = (bt.ne[2] / at.ne[2].max(1), bt.ne[3] / at.ne[3].max(1));
    let mut groups = Vec::with_capacity(bt.ne[2] * bt.ne[3]);
    for i3 in 0..bt.ne[3] {
        for i2 in 0..bt.ne[2] {
            let first = (i3 * bt.ne[2] + i2) * bt.ne[1];
            groups.push(Group {
                a_off: (i2 / r2.max(1)) * at.nb[2] + (i3 / r3.max(1)) * at.nb[3],
                cols: (0..bt.ne[1])
                    .map(|n| (first + n, n * dt.nb[1] + i2 * dt.nb[2] + i3 * dt.nb[3]))
                    .collect(),
            });
        }
    }
    exec::execute(&w, &act, act_row, &groups, dst)
}

fn mul_mat_id(a: &Src<'_>, b: &Src<'_>, ids: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let (at, bt, it, dt) = (a.t, b.t, ids.t, dst.t);
    let (n_used, n_tok, n_b, n_exp) = (it.ne[0], it.ne[1], bt.ne[1], at.ne[2]);
    let mut groups: Vec<Group> = (0..n_exp)
        .map(|e| Group {
            a_off: e * at.nb[2],
            cols: Vec::new(),
        })
        .collect();
    for t in 0..n_tok {
        for e in 0..n_used {
            let o = e * it.nb[0] + t * it.nb[1];
            let raw = ids
                .data
                .get(o..o + 4)
                .map(|_| access::load_i32(ids.data, o))
                .ok_or_else(|| DeviceError::op(op, "id outside src2"))?;
            let g = usize::try_from(raw)
                .ok()
                .and_then(|x| groups.get_mut(x))
                .ok_or_else(|| {
                    DeviceError::op(op, format!("expert id {raw} out of range 0..{n_exp}"))
                })?;
            g.cols
                .push((t * n_b + e % n_b.max(1), e * dt.nb[1] + t * dt.nb[2]));
        }
    }
    groups.retain(|g| !g.cols.is_empty());
    if at.ne[0] == 0 {
        return access::write_all(dt, dst.data, &vec![0f32; dt.nelements()]);
    }
    let w = Weights::new(a, op)?;
    let vt = quant::vec_dot_type(at.typ);
    let act = convert_rows(b, vt, op)?;
    let act_row = vt.row_size(bt.ne[0]).unwrap_or(0);
    exec::execute(&w, &act, act_row, &groups, dst)
}

/// `dst[i0, i1, i2, i3] = Σ_k a[i0, k, i2/r2, i3/r3] · b[i1, k, i2, i3]`, accumulated in f32 in
/// increasing k with FMA like ggml's `ggml_vec_mad_f32`.
fn out_prod(a: &Src<'_>, b: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let (at, bt, dt) = (a.t, b.t, dst.t);
    let (ne0, k) = (at.ne[0], at.ne[1]);
    let a_vals = access::read_all(at, a.data)?;
    let (r2, r3) = (bt.ne[2] / at.ne[2].max(1), bt.ne[3] / at.ne[3].max(1));
    let rows: Vec<Vec<f32>> = (0..dt.nrows())
        .into_par_iter()
        .map(|r| {
            let (i1, i2, i3) = unravel_row(dt, r);
            let plane = ((i3 / r3.max(1)) * at.ne[2] + i2 / r2.max(1)) * k * ne0;
            let mut acc = vec![0f32; ne0];
            for kk in 0..k {
                let off = access::offset(bt, [i1, kk, i2, i3]);
                if off + bt.typ.type_size() > b.data.len() {
                    return Err(DeviceError::op("OUT_PROD", "src1 element out of range"));
                }
                let v = access::load(bt.typ, b.data, off);
                let row = a_vals
                    .get(plane + kk * ne0..plane + (kk + 1) * ne0)
                    .ok_or_else(|| DeviceError::op("OUT_PROD", "src0 row out of range"))?;
                for (d, &x) in acc.iter_mut().zip(row) {
                    *d = x.mul_add(v, *d);
                }
            }
            Ok(acc)
        })
        .collect::<Result<_, DeviceError>>()?;
    for (r, row) in rows.iter().enumerate() {
        let (i1, i2, i3) = unravel_row(dt, r);
        access::write_row(dt, dst.data, i1, i2, i3, row)?;
    }
    Ok(())
}

#[path = "matmul_exec.rs"]
mod exec;
#[cfg(test)]
#[path = "matmul_tests.rs"]
mod tests;
