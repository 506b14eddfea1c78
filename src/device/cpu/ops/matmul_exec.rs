//! Running a matmul's tasks: the plan (weight rows × columns per task), the kernels per task, and
//! the results written into dst.

use rayon::prelude::*;

use super::{Dst, Group, TileFn, Weights};
use crate::device::DeviceError;
use crate::quant::kpanel::{self, PANEL_COLS, PANEL_ROWS, PackedBlock, PanelRun, WeightBlock};
use crate::quant::tiny_tile;

/// Per-thread buffers of a task.
#[derive(Default)]
struct Scratch {
    row: Vec<u8>,
    weights: Vec<WeightBlock>,
    res: Vec<f32>,
}

/// Per group, its activation columns packed 16 at a time where the group uses the panel kernel
/// (else empty): packed once per matmul, shared by every task of the group.
fn pack_panels(
    w: &Weights<'_>,
    act: &[u8],
    act_row: usize,
    groups: &[Group],
    op: &'static str,
) -> Result<Vec<Vec<Vec<PackedBlock>>>, DeviceError> {
    let jobs: Vec<(usize, usize)> = groups
        .iter()
        .enumerate()
        .filter(|(_, g)| w.panel_for(g.cols.len()).is_some())
        .flat_map(|(gi, g)| (0..g.cols.len().div_ceil(PANEL_COLS)).map(move |p| (gi, p)))
        .collect();
    let packed: Vec<Vec<PackedBlock>> = jobs
        .par_iter()
        .map(|&(gi, p)| {
            let cols =
                &groups[gi].cols[p * PANEL_COLS..((p + 1) * PANEL_COLS).min(groups[gi].cols.len())];
            let ys = cols
                .iter()
                .map(|&(col, _)| activation(act, act_row, col, op))
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::new();
            kpanel::pack(&ys, &mut out);
            Ok(out)
        })
        .collect::<Result<_, DeviceError>>()?;
    let mut per_group: Vec<Vec<Vec<PackedBlock>>> = groups.iter().map(|_| Vec::new()).collect();
    for ((gi, _), p) in jobs.into_iter().zip(packed) {
        per_group[gi].push(p);
    }
    Ok(per_group)
}

/// One task through the panel kernel: 8 weight rows at a time (unpacked once) against the
/// task's columns, 16 per panel. `out` is column-major over the task's rows, as in `execute`.
#[allow(clippy::too_many_arguments)]
fn run_panels(
    run: PanelRun,
    w: &Weights<'_>,
    g: &Group,
    task: &Task,
    panels: &[Vec<PackedBlock>],
    out: &mut [f32],
    scratch: &mut Scratch,
    op: &'static str,
) -> Result<(), DeviceError> {
    let nrows = task.rows.len();
    // COL_TILE is a multiple of PANEL_COLS, so a task's columns start a panel.
    let p0 = task.cols.start / PANEL_COLS;
    let ps: Vec<&[PackedBlock]> = panels
        .get(p0..task.cols.end.div_ceil(PANEL_COLS))
        .ok_or_else(|| DeviceError::op(op, "columns outside the packed panels"))?
        .iter()
        .map(|p| p.as_slice())
        .collect();
    for r0 in task.rows.clone().step_by(PANEL_ROWS) {
        let r1 = (r0 + PANEL_ROWS).min(task.rows.end);
        let xs = (r0..r1)
            .map(|r| weight_row(w, g, r, op))
            .collect::<Result<Vec<_>, _>>()?;
        kpanel::unpack(w.t.typ, &xs, &mut scratch.weights);
        let rows = r1 - r0;
        scratch.res.clear();
        scratch.res.resize(ps.len() * PANEL_COLS * rows, 0.0);
        run(&scratch.weights, &ps, rows, &mut scratch.res);
        for j in 0..task.cols.len() {
            let at = j * nrows + (r0 - task.rows.start);
            out[at..at + rows].copy_from_slice(&scratch.res[j * rows..(j + 1) * rows]);
        }
    }
    Ok(())
}

/// Columns per task.
const COL_TILE: usize = 64;

/// Weight rows of one task (`rows`) times some of its group's columns (`cols`).
struct Task {
    group: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
}

/// Splits groups of `m` weight rows into tasks: columns in tiles of 64, rows in chunks sized so that
/// there are about 8 tasks per thread (at least 16 rows per task unless the matrix is smaller).
fn plan(groups: &[Group], m: usize) -> Vec<Task> {
    let tiles: usize = groups.iter().map(|g| g.cols.len().div_ceil(COL_TILE)).sum();
    let want = 8 * rayon::current_num_threads();
    let per_tile = want.div_ceil(tiles.max(1)).max(1);
    let chunk = m.div_ceil(per_tile).max(16.min(m)).max(1);
    let mut tasks = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for c0 in (0..g.cols.len()).step_by(COL_TILE) {
            for r0 in (0..m).step_by(chunk) {
                tasks.push(Task {
                    group: gi,
                    rows: r0..(r0 + chunk).min(m),
                    cols: c0..(c0 + COL_TILE).min(g.cols.len()),
                });
            }
        }
    }
    tasks
}

/// One task through a tile kernel: 4 weight rows at a time (kept in L1) across the task's columns,
/// 4 at a time. `out` is column-major over the task's rows, as in `execute`.
#[allow(clippy::too_many_arguments)]
fn run_tiles(
    tile: TileFn,
    w: &Weights<'_>,
    act: &[u8],
    act_row: usize,
    g: &Group,
    task: &Task,
    out: &mut [f32],
    op: &'static str,
) -> Result<(), DeviceError> {
    const R: usize = 4;
    let nrows = task.rows.len();
    let cols = &g.cols[task.cols.clone()];
    let mut res = [0f32; R * R];
    for r0 in task.rows.clone().step_by(R) {
        let r1 = (r0 + R).min(task.rows.end);
        let mut xs: [&[u8]; R] = [&[]; R];
        for (x, r) in xs.iter_mut().zip(r0..r1) {
            *x = weight_row(w, g, r, op)?;
        }
        let xs = &xs[..r1 - r0];
        for (c0, chunk) in cols.chunks(R).enumerate() {
            let mut ys: [&[u8]; R] = [&[]; R];
            for (y, &(col, _)) in ys.iter_mut().zip(chunk) {
                *y = activation(act, act_row, col, op)?;
            }
            tile(xs, &ys[..chunk.len()], &mut res);
            store_tile(
                out,
                &res,
                nrows,
                r0 - task.rows.start,
                c0 * R,
                xs.len(),
                chunk.len(),
            );
        }
    }
    Ok(())
}

/// Row `r` of the group's weights (elements adjacent: the tile and panel paths need no gather).
fn weight_row<'w>(
    w: &Weights<'w>,
    g: &Group,
    r: usize,
    op: &'static str,
) -> Result<&'w [u8], DeviceError> {
    let off = g.a_off + r * w.t.nb[1];
    w.data
        .get(off..off + w.row_bytes)
        .ok_or_else(|| DeviceError::op(op, "weight row outside src0"))
}

/// Activation column `col` (rows of `act_row` bytes, converted to the weight's `vec_dot_type`).
fn activation<'a>(
    act: &'a [u8],
    act_row: usize,
    col: usize,
    op: &'static str,
) -> Result<&'a [u8], DeviceError> {
    act.get(col * act_row..(col + 1) * act_row)
        .ok_or_else(|| DeviceError::op(op, "activation row out of range"))
}

/// A tile's results (`res[j * rows + i]`, `rows` × `cols`) into `out`, column-major over the task's
/// `nrows` rows, at task row `row` and task column `col`.
fn store_tile(
    out: &mut [f32],
    res: &[f32],
    nrows: usize,
    row: usize,
    col: usize,
    rows: usize,
    cols: usize,
) {
    const R: usize = 4;
    for j in 0..cols {
        let at = (col + j) * nrows + row;
        if rows == R {
            // Constant length: inline moves, not a memcpy call per tile column.
            out[at..at + R].copy_from_slice(&res[j * R..(j + 1) * R]);
        } else {
            out[at..at + rows].copy_from_slice(&res[j * rows..(j + 1) * rows]);
        }
    }
}

/// tinyBLAS's F32/F16/BF16 products in 4 × 4 tiles (`quant::tiny_tile`): the task's columns are
/// converted to f32 once, each block of 4 weight rows once for all of them.
fn run_float(
    w: &Weights<'_>,
    act: &[u8],
    act_row: usize,
    g: &Group,
    task: &Task,
    out: &mut [f32],
    op: &'static str,
) -> Result<(), DeviceError> {
    const R: usize = 4;
    let k = w.t.ne[0];
    let (typ, nrows) = (w.t.typ, task.rows.len());
    let cols = &g.cols[task.cols.clone()];
    let ys = cols
        .iter()
        .map(|&(col, _)| activation(act, act_row, col, op))
        .collect::<Result<Vec<&[u8]>, _>>()?;
    let (mut yf, mut xf) = (Vec::new(), Vec::new());
    tiny_tile::rows_to_f32(typ, &ys, k, &mut yf);
    let yf: Vec<&[f32]> = yf.chunks_exact(k).collect();
    let mut res = [0f32; R * R];
    for r0 in task.rows.clone().step_by(R) {
        let r1 = (r0 + R).min(task.rows.end);
        let xs = (r0..r1)
            .map(|r| weight_row(w, g, r, op))
            .collect::<Result<Vec<&[u8]>, _>>()?;
        tiny_tile::rows_to_f32(typ, &xs, k, &mut xf);
        let xr: Vec<&[f32]> = xf.chunks_exact(k).collect();
        for (c0, chunk) in yf.chunks(R).enumerate() {
            tiny_tile::tile_f32(&xr, chunk, &mut res);
            store_tile(
                out,
                &res,
                nrows,
                r0 - task.rows.start,
                c0 * R,
                xr.len(),
                chunk.len(),
            );
        }
    }
    Ok(())
}

/// Runs all tasks and writes every result element into dst (f32 at `col offset + row * nb[0]`):
/// straight from each task into its own slices of dst where `split_dst` can cut them, else
/// through a serial scatter.
pub(super) fn execute(
    w: &Weights<'_>,
    act: &[u8],
    act_row: usize,
    groups: &[Group],
    dst: Dst<'_>,
) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let m = w.t.ne[1];
    let nb0 = dst.t.nb[0];
    let tasks = plan(groups, m);
    let panels = pack_panels(w, act, act_row, groups, op)?;
    let run = |buf: &mut Scratch, task: &Task, out: &mut Vec<f32>| {
        out.clear();
        out.resize(task.rows.len() * task.cols.len(), 0.0);
        let g = &groups[task.group];
        if let Some(p) = w.panel_for(g.cols.len()) {
            return run_panels(p, w, g, task, &panels[task.group], out, buf, op);
        }
        run_task(w, act, act_row, g, task, out, &mut buf.row, op)
    };
    if let Some(pieces) = split_dst(groups, &tasks, m, nb0, dst.data) {
        return tasks.par_iter().zip(pieces).try_for_each_init(
            || (Scratch::default(), Vec::new()),
            |(buf, out), (task, cols)| {
                run(buf, task, out)?;
                let nrows = task.rows.len();
                for (piece, vals) in cols.into_iter().zip(out.chunks_exact(nrows)) {
                    for (c, v) in piece.chunks_exact_mut(4).zip(vals) {
                        c.copy_from_slice(&v.to_le_bytes());
                    }
                }
                Ok(())
            },
        );
    }
    let results: Vec<Vec<f32>> = tasks
        .par_iter()
        .map_init(Scratch::default, |buf, task| {
            let mut out = Vec::new();
            run(buf, task, &mut out).map(|()| out)
        })
        .collect::<Result<_, DeviceError>>()?;
    for (task, out) in tasks.iter().zip(&results) {
        let g = &groups[task.group];
        let nrows = task.rows.len();
        for (ci, &(_, base)) in g.cols[task.cols.clone()].iter().enumerate() {
            for (i, v) in out[ci * nrows..(ci + 1) * nrows].iter().enumerate() {
                let o = base + (task.rows.start + i) * nb0;
                dst.data
                    .get_mut(o..o + 4)
                    .ok_or_else(|| DeviceError::op(op, "result element outside dst"))?
                    .copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    Ok(())
}

/// One task's results into `out` (column-major over the task's rows).
#[allow(clippy::too_many_arguments)]
fn run_task(
    w: &Weights<'_>,
    act: &[u8],
    act_row: usize,
    g: &Group,
    task: &Task,
    out: &mut [f32],
    buf: &mut Vec<u8>,
    op: &'static str,
) -> Result<(), DeviceError> {
    const ROW_BLOCK: usize = 16;
    if w.tiny_tile && g.cols.len() >= 2 {
        return run_float(w, act, act_row, g, task, out, op);
    }
    if let Some(tile) = w.tile_for(g.cols.len()) {
        return run_tiles(tile, w, act, act_row, g, task, out, op);
    }
    let nrows = task.rows.len();
    let dot = w.dot_for(g.cols.len());
    for r0 in task.rows.clone().step_by(ROW_BLOCK) {
        let r1 = (r0 + ROW_BLOCK).min(task.rows.end);
        for (ci, &(col, _)) in g.cols[task.cols.clone()].iter().enumerate() {
            let y = activation(act, act_row, col, op)?;
            for r in r0..r1 {
                let x = w
                    .row(g.a_off + r * w.t.nb[1], buf)
                    .ok_or_else(|| DeviceError::op(op, "weight row outside src0"))?;
                out[ci * nrows + (r - task.rows.start)] = dot(x, y);
            }
        }
    }
    Ok(())
}

/// Per task, one slice of dst per column of the task (its rows of that column), when every column's
/// `m` results are adjacent f32s (`nb0 == 4`) inside dst and no two columns overlap; else `None`.
/// Tasks come from `plan`: group by group, column tile by column tile, row chunks in order.
fn split_dst<'d>(
    groups: &[Group],
    tasks: &[Task],
    m: usize,
    nb0: usize,
    dst: &'d mut [u8],
) -> Option<Vec<Vec<&'d mut [u8]>>> {
    if nb0 != 4 {
        return None;
    }
    let col_bytes = 4 * m;
    // The first task of each (group, column tile).
    let mut first = std::collections::HashMap::new();
    for (ti, t) in tasks.iter().enumerate() {
        first.entry((t.group, t.cols.start)).or_insert(ti);
    }
    let mut cols: Vec<(usize, usize, usize)> = groups
        .iter()
        .enumerate()
        .flat_map(|(gi, g)| g.cols.iter().enumerate().map(move |(ci, c)| (c.1, gi, ci)))
        .collect();
    cols.sort_unstable();
    let mut per_task: Vec<Vec<Option<&'d mut [u8]>>> = tasks
        .iter()
        .map(|t| (0..t.cols.len()).map(|_| None).collect())
        .collect();
    let (mut rest, mut pos) = (dst, 0usize);
    for (base, gi, ci) in cols {
        let skip = base.checked_sub(pos)?;
        if rest.len() < skip.checked_add(col_bytes)? {
            return None;
        }
        let (col, tail) = std::mem::take(&mut rest)[skip..].split_at_mut(col_bytes);
        (rest, pos) = (tail, base + col_bytes);
        let c0 = ci / COL_TILE * COL_TILE;
        let mut ti = *first.get(&(gi, c0))?;
        let mut col = col;
        while let Some(t) = tasks
            .get(ti)
            .filter(|t| t.group == gi && t.cols.start == c0)
        {
            if col.len() < 4 * t.rows.len() {
                return None;
            }
            let (piece, tail) = std::mem::take(&mut col).split_at_mut(4 * t.rows.len());
            *per_task[ti].get_mut(ci - c0)? = Some(piece);
            col = tail;
            ti += 1;
        }
    }
    per_task
        .into_iter()
        .map(|cols| cols.into_iter().collect::<Option<Vec<_>>>())
        .collect()
}
