//! MUL_MAT with src0 f32/f16/bf16 or any of q4_0, q4_1, q5_0, q5_1, q8_0, q2_K..q6_K (decoded in-shader)
//! and src1 f32: `call_mul_mat`.
//! A src0 larger than one storage binding (Gemma 3's tied 170 MiB output matrix) is split into row
//! ranges, one dispatch each. Activations are first rounded to the weight type's `vec_dot_type` as
//! ggml-cpu does (act_quant.wgsl), so results carry llama.cpp's own quantization error.

use super::scratch::Scratch;
use super::{Ctx, Dispatch, Source, View, Window, addr, groups, small, u};
use std::sync::atomic::Ordering;

use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, Op, Tensor};

/// The weight types `deq` in quant.wgsl decodes (ggml type ids).
pub fn weight_type_id(t: GgmlType) -> Option<u32> {
    Some(match t {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q5_0 => 6,
        GgmlType::Q5_1 => 7,
        GgmlType::Q8_0 => 8,
        GgmlType::Q2K => 10,
        GgmlType::Q3K => 11,
        GgmlType::Q4K => 12,
        GgmlType::Q5K => 13,
        GgmlType::Q6K => 14,
        GgmlType::Bf16 => 30,
        _ => return None,
    })
}

/// Rows of a weight tensor whose elements are contiguous (nb0 = element size for scalar types;
/// block types always are) and start on 4-byte (f32) or 2-byte (f16, blocks) boundaries.
pub fn weight_rows_ok(a: &Tensor) -> bool {
    let scalar = matches!(a.typ, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16);
    let elem_ok = !scalar || a.nb[0] == a.typ.type_size();
    let align = if a.typ == GgmlType::F32 { 4 } else { 2 };
    weight_type_id(a.typ).is_some()
        && elem_ok
        && a.nb[1..].iter().all(|n| n % align == 0)
        && a.data.is_none_or(|d| d.offset % align == 0)
}

/// One binding window of a weight tensor's rows: rows `[r0, r0 + nr)`, bound as `view`, and the
/// tensor's addresses inside it (`addr`).
pub struct RowWindow {
    pub r0: usize,
    pub nr: usize,
    pub view: View,
    pub addr: [u32; 5],
}

/// The windows covering `a`'s rows: one when the tensor fits a binding, else 2-D weights split into
/// row ranges of half a binding each (the window start is rounded down to the offset alignment).
/// `None` when `a` cannot be bound that way (the op then runs on the CPU).
pub fn row_windows(ctx: &Ctx, a: &Tensor) -> Result<Option<Vec<RowWindow>>, DeviceError> {
    let (wa, a_off, a_len) = ctx.place(a)?;
    let rows = a.ne[1];
    let per = if View::new(ctx.gpu, &wa.buf, a_off, a_len).is_some() {
        rows.max(1)
    } else if a.ne[2] == 1 && a.ne[3] == 1 && a.nb[1] > 0 {
        let half = ctx.gpu.limits.max_storage_buffer_binding_size.min(1 << 31) as usize / 2;
        (half / a.nb[1]).max(1)
    } else {
        return Ok(None);
    };
    let mut out = Vec::new();
    let mut r0 = 0;
    loop {
        let nr = per.min(rows - r0);
        let len = if nr == rows {
            a_len
        } else {
            (nr * a.nb[1]) as u64
        };
        let start = a_off + (r0 * a.nb[1]) as u64;
        let Some(view) = View::new(ctx.gpu, &wa.buf, start, len) else {
            return Ok(None);
        };
        let Some(addr) = addr(&view, a) else {
            return Ok(None);
        };
        out.push(RowWindow { r0, nr, view, addr });
        r0 += nr;
        if r0 >= rows {
            return Ok(Some(out));
        }
    }
}

pub fn supports(graph: &Graph, node: usize) -> bool {
    let t = &graph.tensors[node];
    let (Some(a), Some(b)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return false;
    };
    weight_rows_ok(a)
        && b.typ == GgmlType::F32
        && t.typ == GgmlType::F32
        && b.nb.iter().chain(&t.nb).all(|n| n % 4 == 0)
        && a.ne[0] == b.ne[0]
        && a.ne[1] == t.ne[0]
        && b.ne[1] == t.ne[1]
        && b.ne[2] == t.ne[2]
        && b.ne[3] == t.ne[3]
        && a.ne[2] > 0
        && a.ne[3] > 0
        && b.ne[2] % a.ne[2] == 0
        && b.ne[3] % a.ne[3] == 0
        && small(b)
        && small(t)
}

/// How MUL_MAT rounds activations for weights of `typ` (modes of act_quant.wgsl; 0 = used as they are).
pub fn act_mode(typ: GgmlType) -> u32 {
    match typ {
        GgmlType::F16 => 1,
        GgmlType::Bf16 => 2,
        GgmlType::Q4_1 | GgmlType::Q5_1 => 5,
        t if exact(t) => {
            if t.block_size() == 256 {
                4
            } else {
                3
            }
        }
        _ => 0,
    }
}

/// Scratch bytes the node needs for its rounded activations (0 when it runs on the raw ones).
pub fn scratch_bytes(graph: &Graph, node: usize) -> u64 {
    let (Some(a), Some(b)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return 0;
    };
    if act_mode(a.typ) == 0 || !supports(graph, node) {
        return 0;
    }
    Scratch::region_bytes(act_bytes(act_mode(a.typ), b.nelements()))
}

/// Bytes of `n` activations converted by act_quant.wgsl in `mode` (see its layouts).
pub fn act_bytes(mode: u32, n: usize) -> u64 {
    match mode {
        3 => 36 * (n / 32) as u64,
        4 => 324 * (n / 256) as u64,
        5 => 40 * (n / 32) as u64,
        _ => 4 * n as u64,
    }
}

/// The kernel shaped for GPUs for `typ` weights times `cols` activation columns in each of `slices`
/// slices, over `rows` rows, and its workgroup count; `None` where the device takes the kernels with
/// an invocation per row (CPU adapters), for K-quant products of 2 to 7 columns and for float
/// weights' prompts.
pub fn gpu_kernel(
    ctx: &Ctx,
    typ: GgmlType,
    rows: usize,
    cols: usize,
    slices: usize,
) -> Option<(&'static str, u64)> {
    if !ctx.gpu.gpu_kernels.load(Ordering::Relaxed) {
        return None;
    }
    let float = matches!(typ, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16);
    if float && cols * slices == 1 {
        return Some(("mul_mat_vec_float", (rows as u64).div_ceil(2)));
    }
    if !exact(typ) {
        return None;
    }
    let blocks32 = typ.block_size() == 32;
    let rows = rows as u64;
    let tiles = |r: u64| slices as u64 * rows.div_ceil(r) * (cols as u64).div_ceil(8);
    Some(match (cols * slices == 1, blocks32) {
        // MV_R, KV_R, TL_R x TL_C and TK_R x TL_C of matmul_gpu.wgsl.
        (true, true) => ("mul_mat_vec", rows.div_ceil(4)),
        (true, false) => ("mul_mat_vec_k", rows.div_ceil(16)),
        (false, true) => ("mul_mat_tile", tiles(32)),
        // ggml's tiled K-quant arithmetic starts at 8 columns; below, exact_k_vec's lanes.
        (false, false) if cols >= 8 => ("mul_mat_tile_k", tiles(16)),
        (false, false) => return None,
    })
}

/// Whether the packed-activation kernel (`mul_mat_exact`, llama.cpp's arithmetic) serves `typ`.
pub fn exact(typ: GgmlType) -> bool {
    matches!(
        typ,
        GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::Q2K
            | GgmlType::Q3K
            | GgmlType::Q4K
            | GgmlType::Q5K
            | GgmlType::Q6K
    )
}

/// The activations as the product kernel reads them: `b` itself, or its rounded copy in scratch
/// (written by an `act_quant` dispatch pushed to `out` the first time the graph needs it).
pub fn activations(
    ctx: &Ctx,
    graph: &Graph,
    node: usize,
    mode: u32,
    out: &mut Vec<Dispatch>,
) -> Result<Option<(Window, [u32; 5])>, DeviceError> {
    let (Some(b), Some(src1)) = (graph.src(node, 1), graph.tensors[node].src[1]) else {
        return Ok(None);
    };
    let Some(vb) = ctx.view(b)? else {
        return Ok(None);
    };
    let Some(ab) = addr(&vb, b) else {
        return Ok(None);
    };
    if mode == 0 {
        return Ok(Some((vb.window, ab)));
    }
    let k = b.ne[0];
    let Some((win, fresh)) = ctx
        .scratch
        .region((src1, mode), act_bytes(mode, b.nelements()))
    else {
        return Ok(None);
    };
    let block = match mode {
        3 | 5 => 32,
        4 => 256,
        _ => 1,
    };
    let units = b.nelements() / block;
    let (Some(ku), Some(nu), Some(n11), Some(n12)) = (u(k), u(units), u(b.ne[1]), u(b.ne[2]))
    else {
        return Ok(None);
    };
    if fresh {
        let mut params = vec![mode, ku, nu, n11, n12];
        params.extend(ab);
        params.push(0);
        out.push(Dispatch {
            pipeline: ctx.pipeline(Source::ActQuant, "act_quant"),
            params,
            bindings: vec![vb.window, win.clone()],
            groups: groups(ctx.gpu, (units as u64).div_ceil(64))?,
        });
    }
    // Byte strides between activation columns in the converted layout.
    let col = act_bytes(mode, k) as usize;
    let (Some(nb1), Some(nb2), Some(nb3)) = (u(col), u(col * b.ne[1]), u(col * b.ne[1] * b.ne[2]))
    else {
        return Ok(None);
    };
    Ok(Some((win, [0, 4, nb1, nb2, nb3])))
}

pub fn plan(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    let t = &graph.tensors[node];
    let (Some(a), Some(b)) = (graph.src(node, 0), graph.src(node, 1)) else {
        return Ok(None);
    };
    let Some(vd) = ctx.view(t)? else {
        return Ok(None);
    };
    let (Some(ad), Some(typ)) = (addr(&vd, t), weight_type_id(a.typ)) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    let Some((b_win, ab)) = activations(ctx, graph, node, act_mode(a.typ), &mut out)? else {
        return Ok(None);
    };
    let Some(windows) = row_windows(ctx, a)? else {
        return Ok(None);
    };
    let ncols = b.ne[1] * b.ne[2] * b.ne[3];
    // Batches of columns share each decoded weight chunk; single columns take one invocation per
    // dst element, unless it is a long reduction over few outputs, where a workgroup per element
    // spreads K over 64 invocations.
    let float = matches!(a.typ, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16);
    let (entry, units_per_group) = if exact(a.typ) {
        ("mul_mat_exact", 64)
    } else if float {
        ("mul_mat_float", 64)
    } else if b.ne[1] >= 4 {
        ("mul_mat_cols", 64)
    } else if a.ne[0] <= 8192 || a.ne[1] * b.ne[1] >= 4096 {
        ("mul_mat_thread", 64)
    } else {
        ("mul_mat", 1)
    };
    for RowWindow {
        r0,
        nr,
        view: va,
        addr: aa,
    } in windows
    {
        let p = [
            Some(typ),
            u(a.ne[0]),
            u(r0),
            u(nr),
            u(ncols),
            u(b.ne[1]),
            u(b.ne[2]),
            u(b.ne[2] / a.ne[2]),
            u(b.ne[3] / a.ne[3]),
        ];
        let Some(p) = p.into_iter().collect::<Option<Vec<u32>>>() else {
            return Ok(None);
        };
        let mut params = p;
        params.extend([aa[0], aa[2], aa[3], aa[4]]);
        params.extend(ab);
        params.extend(ad);
        if float {
            // ggml's tinyBLAS condition (F16/BF16 activations are a contiguous converted copy here).
            let tiny =
                b.ne[1] >= 2 && a.ne[0] % 8 == 0 && (a.typ != GgmlType::F32 || b.is_contiguous());
            params.push(u32::from(tiny));
        }
        // Column-blocked kernels: 8 (mul_mat_cols) or 4 (mul_mat_exact) columns per invocation.
        let units = match entry {
            "mul_mat_cols" => nr * b.ne[1].div_ceil(8) * b.ne[2] * b.ne[3],
            "mul_mat_exact" => nr * b.ne[1].div_ceil(4) * b.ne[2] * b.ne[3],
            _ => nr * ncols,
        };
        let (entry, workgroups) = gpu_kernel(ctx, a.typ, nr, b.ne[1], b.ne[2] * b.ne[3])
            .unwrap_or((entry, (units as u64).div_ceil(units_per_group)));
        out.push(Dispatch {
            pipeline: ctx.pipeline(Source::MatMul, entry),
            params,
            bindings: vec![va.window, b_win.clone(), vd.window.clone()],
            groups: groups(ctx.gpu, workgroups)?,
        });
    }
    Ok(Some(out))
}

/// Elements per converted unit of `mode` (a block; one element for the float modes).
pub fn act_block(mode: u32) -> usize {
    match mode {
        3 | 5 => 32,
        4 => 256,
        _ => 1,
    }
}

/// The product a kernel may convert its own output for (as `activations` would, saving the
/// `act_quant` dispatch): the first natively supported MUL_MAT after `producer` with converted
/// activations whose src1 holds exactly the producer's output (the producer itself, or a
/// VIEW/RESHAPE of it over the same bytes, contiguous). Returns the src1 tensor (the scratch key)
/// and the mode. `None` when there is none, or a node in between writes the producer's memory
/// (the product would then read other values).
pub fn act_consumer(graph: &Graph, producer: usize) -> Option<(usize, u32)> {
    let p = &graph.tensors[producer];
    let pd = p.data?;
    let p_end = pd.offset.checked_add(p.nbytes()?)?;
    if p.typ != GgmlType::F32 || !p.is_contiguous() {
        return None;
    }
    // The same bytes, read the same way: no reordering view and no in-place op in between.
    let holds_output = |mut i: usize| {
        let b = &graph.tensors[i];
        if b.data != Some(pd) || !b.is_contiguous() || b.nelements() != p.nelements() {
            return false;
        }
        for _ in 0..graph.tensors.len() {
            if i == producer {
                return true;
            }
            let t = &graph.tensors[i];
            match (t.op, t.view_src) {
                (Op::View | Op::Reshape, Some(s)) if s < graph.tensors.len() => i = s,
                _ => return false,
            }
        }
        false
    };
    for n in graph.compute_nodes().skip_while(|&n| n != producer).skip(1) {
        let t = &graph.tensors[n];
        if let (Op::MulMat, Some(w), Some(src1)) = (t.op, graph.src(n, 0), t.src[1]) {
            let mode = act_mode(w.typ);
            if mode != 0
                && holds_output(src1)
                && graph.tensors[src1].ne[0].is_multiple_of(act_block(mode))
                && super::supports(graph, n)
            {
                return Some((src1, mode));
            }
        }
        if overlaps(t, pd.buffer, pd.offset, p_end) {
            return None;
        }
    }
    None
}

/// Whether `t`'s memory meets bytes `[start, end)` of `buffer` (or cannot be told).
fn overlaps(t: &Tensor, buffer: u64, start: usize, end: usize) -> bool {
    let (Some(d), Some(n)) = (t.data, t.nbytes()) else {
        return true;
    };
    d.buffer == buffer && d.offset < end && start < d.offset.saturating_add(n)
}

/// The region of `consumer` (from `act_consumer`) for `producer`'s output, when no kernel has
/// claimed it yet: the producer must then fill it.
pub fn claim_act(
    ctx: &Ctx,
    graph: &Graph,
    producer: usize,
    consumer: (usize, u32),
) -> Option<Window> {
    let n = graph.tensors[producer].nelements();
    match ctx.scratch.region(consumer, act_bytes(consumer.1, n)) {
        Some((w, true)) => Some(w),
        _ => None,
    }
}
