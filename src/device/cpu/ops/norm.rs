//! NORM, RMS_NORM, L2_NORM and GROUP_NORM on f32 tensors with arbitrary strides, with ggml's
//! accumulation choices (f64 `ggml_float` sums where ggml uses them, f32 elsewhere).

use rayon::prelude::*;

use super::rows::{par_rows, src};
use super::{Dst, Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let t = &graph.tensors[node];
    let a = graph.src(node, 0).ok_or("missing source 0")?;
    if a.typ != GgmlType::F32 || t.typ != GgmlType::F32 {
        return Err(format!(
            "{}: only f32 -> f32 is supported (got {} -> {})",
            t.op.name(),
            a.typ.name(),
            t.typ.name()
        ));
    }
    if a.ne != t.ne {
        return Err(format!(
            "{}: shapes differ ({:?} vs {:?})",
            t.op.name(),
            a.ne,
            t.ne
        ));
    }
    if t.op == Op::GroupNorm {
        if t.param_i32(0) <= 0 {
            return Err(format!("GROUP_NORM: n_groups {} <= 0", t.param_i32(0)));
        }
    } else {
        let eps = t.param_f32(0);
        // GGML_ASSERT(eps >= 0.0f), which NaN fails too.
        if eps.is_nan() || eps < 0.0 {
            return Err(format!("{}: eps {eps} < 0", t.op.name()));
        }
    }
    Ok(())
}

pub fn run(srcs: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let t = dst.t;
    let op = t.op.name();
    let a = src(srcs, 0, op)?;
    let ne0 = t.ne[0];
    let n = ne0 as f32;
    match t.op {
        Op::RmsNorm => {
            let eps = t.param_f32(0);
            par_rows(t, dst.data, 2 * ne0, |r, y| {
                let (i1, i2, i3) = access::unravel_row(t, r);
                access::read_row(a.t, a.data, i1, i2, i3, y)?;
                let sum: f64 = y.iter().map(|&x| (x * x) as f64).sum();
                let mean = (sum / ne0 as f64) as f32;
                let scale = 1.0f32 / (mean + eps).sqrt();
                y.iter_mut().for_each(|v| *v *= scale);
                Ok(())
            })
        }
        Op::L2Norm => {
            let eps = t.param_f32(0);
            par_rows(t, dst.data, 2 * ne0, |r, y| {
                let (i1, i2, i3) = access::unravel_row(t, r);
                access::read_row(a.t, a.data, i1, i2, i3, y)?;
                let sum: f64 = y.iter().map(|&x| (x * x) as f64).sum();
                let scale = 1.0f32 / (sum as f32).sqrt().max(eps);
                y.iter_mut().for_each(|v| *v *= scale);
                Ok(())
            })
        }
        Op::Norm => {
            let eps = t.param_f32(0);
            // ggml's packed-row path sums in f64; its strided path in f32.
            let packed = a.t.nb[0] == 4 && t.nb[0] == 4;
            par_rows(t, dst.data, 3 * ne0, |r, y| {
                let (i1, i2, i3) = access::unravel_row(t, r);
                access::read_row(a.t, a.data, i1, i2, i3, y)?;
                let variance = if packed {
                    let mean = y.iter().map(|&x| x as f64).sum::<f64>() as f32 / n;
                    let mut sum2 = 0f64;
                    for v in y.iter_mut() {
                        *v -= mean;
                        sum2 += (*v * *v) as f64;
                    }
                    (sum2 / ne0 as f64) as f32
                } else {
                    let mean = y.iter().fold(0f32, |s, &x| s + x) / n;
                    let mut sum2 = 0f32;
                    for v in y.iter_mut() {
                        *v -= mean;
                        sum2 += *v * *v;
                    }
                    sum2 / n
                };
                let scale = 1.0f32 / (variance + eps).sqrt();
                y.iter_mut().for_each(|v| *v *= scale);
                Ok(())
            })
        }
        Op::GroupNorm => group_norm(a, dst),
        _ => Err(DeviceError::op(op, "not a norm op")),
    }
}

/// GROUP_NORM: channels (dim 2) split into `n_groups` groups of `ceil(ne2 / n_groups)`; each group of
/// each dim-3 slice is normalized with its own mean and variance.
fn group_norm(a: &Src<'_>, dst: Dst<'_>) -> Result<(), DeviceError> {
    let t = dst.t;
    let [ne0, ne1, ne2, ne3] = t.ne;
    let n_groups = usize::try_from(t.param_i32(0).max(1)).unwrap_or(1);
    let eps = t.param_f32(1);
    let per_group = ne2.div_ceil(n_groups).max(1);
    let used_groups = ne2.div_ceil(per_group);
    // (mean, scale) per (group, i3).
    let stats: Vec<(f32, f32)> = (0..used_groups * ne3)
        .into_par_iter()
        .map(|gi| -> Result<(f32, f32), DeviceError> {
            let (g, i3) = (gi % used_groups, gi / used_groups);
            let (start, end) = (g * per_group, ((g + 1) * per_group).min(ne2));
            let count = (ne0 * ne1 * (end - start)) as f64;
            let mut row = vec![0f32; ne0];
            let mut sum = 0f64;
            for i2 in start..end {
                for i1 in 0..ne1 {
                    access::read_row(a.t, a.data, i1, i2, i3, &mut row)?;
                    sum += row.iter().map(|&x| x as f64).sum::<f64>();
                }
            }
            let mean = (sum / count) as f32;
            let mut sum2 = 0f64;
            for i2 in start..end {
                for i1 in 0..ne1 {
                    access::read_row(a.t, a.data, i1, i2, i3, &mut row)?;
                    sum2 += row
                        .iter()
                        .map(|&x| {
                            let v = x - mean;
                            (v * v) as f64
                        })
                        .sum::<f64>();
                }
            }
            let variance = (sum2 / count) as f32;
            Ok((mean, 1.0f32 / (variance + eps).sqrt()))
        })
        .collect::<Result<_, _>>()?;
    par_rows(t, dst.data, 2 * ne0, |r, y| {
        let (i1, i2, i3) = access::unravel_row(t, r);
        let (mean, scale) = stats[i2 / per_group + i3 * used_groups];
        access::read_row(a.t, a.data, i1, i2, i3, y)?;
        y.iter_mut().for_each(|v| *v = (*v - mean) * scale);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{HostTensor, Rng, assert_close, params_f32, run_op};
    use crate::ggml::{GgmlType, Op};

    fn rows_ref(vals: &[f32], ne0: usize, f: impl Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
        vals.chunks(ne0)
            .flat_map(|r| f(&r.iter().map(|&v| v as f64).collect::<Vec<_>>()))
            .collect()
    }

    fn run1(op: Op, params: [i32; 16], a: &HostTensor) -> Result<Vec<f32>, String> {
        let mut d = HostTensor::zeros(GgmlType::F32, a.t.ne);
        run_op(op, params, &[Some(a)], &mut d)?;
        Ok(d.to_f32())
    }

    #[test]
    fn row_norms_match_reference_contiguous_and_permuted() {
        let mut rng = Rng::new(1);
        let ne = [37, 5, 3, 2];
        let vals = rng.vec(ne.iter().product(), -3.0, 3.0);
        let a = HostTensor::from_f32(GgmlType::F32, ne, &vals);
        let eps = 1e-5f32;
        let e = eps as f64;
        let rms = rows_ref(&vals, 37, |r| {
            let m = r.iter().map(|x| x * x).sum::<f64>() / r.len() as f64;
            r.iter().map(|x| x / (m + e).sqrt()).collect()
        });
        let l2 = rows_ref(&vals, 37, |r| {
            let s = r.iter().map(|x| x * x).sum::<f64>().sqrt().max(e);
            r.iter().map(|x| x / s).collect()
        });
        let norm = rows_ref(&vals, 37, |r| {
            let mean = r.iter().sum::<f64>() / r.len() as f64;
            let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / r.len() as f64;
            r.iter().map(|x| (x - mean) / (var + e).sqrt()).collect()
        });
        for src in [
            a.clone(),
            a.permuted([2, 0, 3, 1]),
            a.permuted([1, 2, 0, 3]),
        ] {
            let p = params_f32(&[eps]);
            assert_close(&run1(Op::RmsNorm, p, &src).unwrap(), &rms, 1e-5, "rms");
            assert_close(&run1(Op::L2Norm, p, &src).unwrap(), &l2, 1e-5, "l2");
            assert_close(&run1(Op::Norm, p, &src).unwrap(), &norm, 1e-5, "norm");
        }
        // A zero row: l2 divides by eps, rms by sqrt(eps).
        let z = HostTensor::from_f32(GgmlType::F32, [4, 1, 1, 1], &[0.0; 4]);
        assert_eq!(run1(Op::L2Norm, params_f32(&[1e-6]), &z).unwrap(), [0.0; 4]);
    }

    #[test]
    fn rms_norm_into_permuted_destination() {
        let mut rng = Rng::new(7);
        let ne = [8, 3, 4, 1];
        let vals = rng.vec(96, -1.0, 1.0);
        let a = HostTensor::from_f32(GgmlType::F32, ne, &vals);
        let mut d = HostTensor::zeros(GgmlType::F32, ne).permuted([1, 2, 0, 3]);
        run_op(Op::RmsNorm, params_f32(&[1e-6]), &[Some(&a)], &mut d).unwrap();
        let want = rows_ref(&vals, 8, |r| {
            let m = r.iter().map(|x| x * x).sum::<f64>() / 8.0;
            r.iter().map(|x| x / (m + 1e-6).sqrt()).collect()
        });
        assert_close(&d.to_f32(), &want, 1e-5, "rms permuted dst");
    }

    #[test]
    fn group_norm_matches_reference() {
        let mut rng = Rng::new(3);
        // 7 channels in 3 groups of ceil(7/3) = 3: {0,1,2}, {3,4,5}, {6}.
        let ne = [5, 4, 7, 2];
        let vals = rng.vec(ne.iter().product(), -2.0, 2.0);
        let a = HostTensor::from_f32(GgmlType::F32, ne, &vals);
        let eps = 1e-6f32;
        let mut want = vec![0f64; vals.len()];
        let plane = 5 * 4;
        for i3 in 0..2 {
            for (s, e) in [(0, 3), (3, 6), (6, 7)] {
                let idx: Vec<usize> = (s..e)
                    .flat_map(|c| (0..plane).map(move |k| i3 * 7 * plane + c * plane + k))
                    .collect();
                let mean = idx.iter().map(|&i| vals[i] as f64).sum::<f64>() / idx.len() as f64;
                let var = idx
                    .iter()
                    .map(|&i| (vals[i] as f64 - mean).powi(2))
                    .sum::<f64>()
                    / idx.len() as f64;
                for &i in &idx {
                    want[i] = (vals[i] as f64 - mean) / (var + eps as f64).sqrt();
                }
            }
        }
        let mut p = params_f32(&[0.0, eps]);
        p[0] = 3;
        for src in [a.clone(), a.permuted([0, 2, 1, 3])] {
            assert_close(&run1(Op::GroupNorm, p, &src).unwrap(), &want, 1e-5, "group");
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        let a = HostTensor::from_f32(GgmlType::F32, [4, 2, 1, 1], &[1.0; 8]);
        let h = HostTensor::from_f32(GgmlType::F16, [4, 2, 1, 1], &[1.0; 8]);
        assert!(run1(Op::RmsNorm, params_f32(&[1e-5]), &h).is_err());
        assert!(run1(Op::RmsNorm, params_f32(&[-1.0]), &a).is_err());
        assert!(run1(Op::Norm, params_f32(&[f32::NAN]), &a).is_err());
        assert!(run1(Op::GroupNorm, [0; 16], &a).is_err());
        let mut d = HostTensor::zeros(GgmlType::F32, [4, 1, 2, 1]);
        assert!(run_op(Op::RmsNorm, [0; 16], &[Some(&a)], &mut d).is_err());
        let mut d = HostTensor::zeros(GgmlType::F32, [4, 2, 1, 1]);
        assert!(run_op(Op::RmsNorm, [0; 16], &[None], &mut d).is_err());
    }
}
