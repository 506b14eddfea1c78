//! Matrix masks on f32: DIAG (a row vector spread onto the diagonal of a square matrix) and TRI (keep
//! the lower/upper triangle, with or without the diagonal, zero the rest).

use super::elementwise::rows::{ensure, map_rows, read_row, shape, src_at, src_of};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op};

/// `ggml_tri_type`.
const LOWER: i32 = 3;
const LOWER_DIAG: i32 = 2;
const UPPER: i32 = 1;
const UPPER_DIAG: i32 = 0;

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let d = &graph.tensors[node];
    let op = d.op.name();
    let a = src_of(graph, node, 0)?;
    ensure(a.typ == GgmlType::F32 && d.typ == GgmlType::F32, || {
        format!(
            "{op}: unsupported types {} -> {}",
            a.typ.name(),
            d.typ.name()
        )
    })?;
    match d.op {
        Op::Diag => ensure(
            a.ne[1] == 1 && d.ne == [a.ne[0], a.ne[0], a.ne[2], a.ne[3]],
            || format!("{op}: bad shapes {} -> {}", shape(a), shape(d)),
        ),
        Op::Tri => {
            ensure(a.ne == d.ne, || {
                format!("{op}: bad shapes {} -> {}", shape(a), shape(d))
            })?;
            let kind = d.param_i32(0);
            ensure((UPPER_DIAG..=LOWER).contains(&kind), || {
                format!("{op}: invalid tri type {kind}")
            })
        }
        _ => Err(format!("{op} is not a matrix mask")),
    }
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let a = src_at(src, 0, op)?;
    match dst.t.op {
        Op::Diag => {
            let n = a.t.ne[0];
            map_rows(
                dst,
                || vec![0f32; n],
                move |v, _, [i1, i2, i3], out| {
                    read_row(a, [0, i2, i3], v)?;
                    out.fill(0.0);
                    out[i1] = v[i1];
                    Ok(())
                },
            )
        }
        Op::Tri => {
            // Whether column i0 of row i1 is kept.
            let keep: fn(usize, usize) -> bool = match dst.t.param_i32(0) {
                LOWER => |i0, i1| i0 < i1,
                LOWER_DIAG => |i0, i1| i0 <= i1,
                UPPER => |i0, i1| i0 > i1,
                _ => |i0, i1| i0 >= i1,
            };
            map_rows(
                dst,
                || (),
                move |_, _, [i1, i2, i3], out| {
                    read_row(a, [i1, i2, i3], out)?;
                    for (i0, v) in out.iter_mut().enumerate() {
                        if !keep(i0, i1) {
                            *v = 0.0;
                        }
                    }
                    Ok(())
                },
            )
        }
        _ => Err(DeviceError::op(op, "not a matrix mask")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{HostTensor, Rng, run_op};
    use super::*;
    use crate::ggml::GgmlType::F32;

    #[test]
    fn diag_spreads_each_vector_on_its_matrix() {
        let mut rng = Rng::new(81);
        // test-backend-ops' {79, 1, 19, 13} shape, stored permuted in dims 2 and 3.
        let ne = [79, 1, 19, 13];
        let vals = rng.vec(ne.iter().product(), -1.0, 1.0);
        let a = HostTensor::from_f32(F32, ne, &vals).permuted([0, 1, 3, 2]);
        let mut d = HostTensor::zeros(F32, [79, 79, 19, 13]);
        run_op(Op::Diag, [0; 16], &[Some(&a)], &mut d).unwrap();
        let got = d.to_f32();
        for i3 in 0..13 {
            for i2 in 0..19 {
                for i1 in 0..79 {
                    for i0 in 0..79 {
                        let g = got[((i3 * 19 + i2) * 79 + i1) * 79 + i0];
                        let want = if i0 == i1 {
                            vals[(i3 * 19 + i2) * 79 + i0]
                        } else {
                            0.0
                        };
                        assert_eq!(g, want, "[{i0}, {i1}, {i2}, {i3}]");
                    }
                }
            }
        }
        let mut bad = HostTensor::zeros(F32, [79, 78, 19, 13]);
        assert!(run_op(Op::Diag, [0; 16], &[Some(&a)], &mut bad).is_err());
    }

    #[test]
    fn tri_keeps_each_triangle() {
        let mut rng = Rng::new(82);
        let ne = [10, 10, 4, 3];
        let vals = rng.vec(ne.iter().product(), -1.0, 1.0);
        let a = HostTensor::from_f32(F32, ne, &vals);
        // (type, keeps (column, row)) from ggml_tri_type's definitions.
        type Keeps = fn(usize, usize) -> bool;
        let kinds: [(i32, Keeps); 4] = [
            (0, |c, r| c >= r),
            (1, |c, r| c > r),
            (2, |c, r| c <= r),
            (3, |c, r| c < r),
        ];
        for (kind, keeps) in kinds {
            let mut p = [0; 16];
            p[0] = kind;
            let mut d = HostTensor::zeros(F32, ne);
            run_op(Op::Tri, p, &[Some(&a)], &mut d).unwrap();
            for (e, (&g, &v)) in d.to_f32().iter().zip(&vals).enumerate() {
                let (c, r) = (e % 10, (e / 10) % 10);
                assert_eq!(g, if keeps(c, r) { v } else { 0.0 }, "type {kind} at {e}");
            }
        }
        let mut p = [0; 16];
        p[0] = 4;
        let mut d = HostTensor::zeros(F32, ne);
        assert!(run_op(Op::Tri, p, &[Some(&a)], &mut d).is_err());
    }
}
