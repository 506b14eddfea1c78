//! SOFT_MAX (scale, ALiBi max_bias, optional f16/f32 mask and f32 sinks), DIAG_MASK_INF and
//! DIAG_MASK_ZERO, as ggml's CPU backend computes them.

use super::rows::{Alibi, cmax, par_rows, src, want_type};
use super::{Dst, Src, access};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Op};

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let t = &graph.tensors[node];
    let name = t.op.name();
    let a = graph.src(node, 0).ok_or("missing source 0")?;
    want_type(name, a.typ, &[GgmlType::F32])?;
    want_type(name, t.typ, &[GgmlType::F32])?;
    if a.ne != t.ne {
        return Err(format!("{name}: shapes differ ({:?} vs {:?})", a.ne, t.ne));
    }
    if t.op != Op::SoftMax {
        if t.param_i32(0) < 0 {
            return Err(format!("{name}: n_past {} < 0", t.param_i32(0)));
        }
        return Ok(());
    }
    if let Some(m) = graph.src(node, 1) {
        want_type("SOFT_MAX mask", m.typ, &[GgmlType::F16, GgmlType::F32])?;
        let ok = m.ne[0] == a.ne[0]
            && m.ne[1] >= a.ne[1]
            && m.ne[2] > 0
            && m.ne[3] > 0
            && a.ne[2] % m.ne[2] == 0
            && a.ne[3] % m.ne[3] == 0;
        if !ok {
            return Err(format!(
                "SOFT_MAX: mask {:?} does not broadcast over {:?}",
                m.ne, a.ne
            ));
        }
    }
    if let Some(s) = graph.src(node, 2) {
        want_type("SOFT_MAX sinks", s.typ, &[GgmlType::F32])?;
        if s.ne[0] < a.ne[2] {
            return Err(format!("SOFT_MAX: {} sinks for {} heads", s.ne[0], a.ne[2]));
        }
    }
    Ok(())
}

pub fn run(srcs: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let t = dst.t;
    let op = t.op.name();
    let a = src(srcs, 0, op)?;
    let ne0 = t.ne[0];
    if t.op != Op::SoftMax {
        // Element (i0, i1) is masked when i0 > n_past + i1.
        let n_past =
            usize::try_from(t.param_i32(0)).map_err(|_| DeviceError::op(op, "n_past < 0"))?;
        let value = if t.op == Op::DiagMaskInf {
            f32::NEG_INFINITY
        } else {
            0.0
        };
        return par_rows(t, dst.data, ne0, |r, y| {
            let (i1, i2, i3) = access::unravel_row(t, r);
            access::read_row(a.t, a.data, i1, i2, i3, y)?;
            let first = (n_past + i1 + 1).min(ne0);
            y[first..].iter_mut().for_each(|v| *v = value);
            Ok(())
        });
    }
    let scale = t.param_f32(0);
    let alibi = Alibi::new(t.param_f32(1), t.ne[2]);
    let mask = srcs[1].as_ref();
    let sinks = srcs[2].as_ref();
    par_rows(t, dst.data, 4 * ne0, |r, y| {
        let (i1, i2, i3) = access::unravel_row(t, r);
        access::read_row(a.t, a.data, i1, i2, i3, y)?;
        y.iter_mut().for_each(|v| *v *= scale);
        if let Some(m) = mask {
            let slope = alibi.slope(i2);
            let (m2, m3) = (i2 % m.t.ne[2], i3 % m.t.ne[3]);
            let base = access::row_offset(m.t, i1, m2, m3);
            for (i, v) in y.iter_mut().enumerate() {
                *v += slope * access::load(m.t.typ, m.data, base + i * m.t.nb[0]);
            }
        }
        let mut max = y.iter().fold(f32::NEG_INFINITY, |m, &v| cmax(m, v));
        let sink = sinks.map(|s| access::load(GgmlType::F32, s.data, i2 * s.t.nb[0]));
        if let Some(s) = sink {
            max = cmax(max, s);
        }
        let mut sum = super::vexp::soft_max(y, max);
        if let Some(s) = sink {
            sum += (s - max).exp() as f64;
        }
        let inv = (1.0 / sum) as f32;
        y.iter_mut().for_each(|v| *v *= inv);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{HostTensor, Rng, assert_close, params_f32, run_op};
    use crate::ggml::{GgmlType, Op};

    /// softmax(x·scale + slope·mask) over rows, with an optional sink per head; f64 throughout.
    fn reference(
        x: &[f32],
        ne: [usize; 4],
        scale: f64,
        mask: Option<(&[f32], [usize; 4])>,
        slopes: &[f64],
        sinks: Option<&[f32]>,
    ) -> Vec<f64> {
        let mut out = Vec::new();
        for i3 in 0..ne[3] {
            for i2 in 0..ne[2] {
                for i1 in 0..ne[1] {
                    let row = &x[((i3 * ne[2] + i2) * ne[1] + i1) * ne[0]..][..ne[0]];
                    let w: Vec<f64> = (0..ne[0])
                        .map(|i| {
                            let m = mask.map_or(0.0, |(m, mne)| {
                                let (j2, j3) = (i2 % mne[2], i3 % mne[3]);
                                m[((j3 * mne[2] + j2) * mne[1] + i1) * mne[0] + i] as f64
                            });
                            row[i] as f64 * scale + slopes[i2] * m
                        })
                        .collect();
                    let sink = sinks.map(|s| s[i2] as f64);
                    let max = w
                        .iter()
                        .copied()
                        .chain(sink)
                        .fold(f64::NEG_INFINITY, f64::max);
                    let den: f64 = w
                        .iter()
                        .chain(sink.iter())
                        .map(|v| (v - max).exp())
                        .sum::<f64>();
                    out.extend(w.iter().map(|v| (v - max).exp() / den));
                }
            }
        }
        out
    }

    #[test]
    fn plain_softmax_on_permuted_input() {
        let mut rng = Rng::new(11);
        let ne = [19, 3, 4, 2];
        let x = rng.vec(ne.iter().product(), -4.0, 4.0);
        let a = HostTensor::from_f32(GgmlType::F32, ne, &x);
        let want = reference(&x, ne, 0.7, None, &[1.0; 4], None);
        for src in [a.clone(), a.permuted([3, 1, 0, 2])] {
            let mut d = HostTensor::zeros(GgmlType::F32, ne);
            run_op(Op::SoftMax, params_f32(&[0.7]), &[Some(&src)], &mut d).unwrap();
            assert_close(&d.to_f32(), &want, 1e-6, "softmax");
        }
    }

    #[test]
    fn mask_alibi_and_sinks() {
        let mut rng = Rng::new(12);
        let ne = [13, 5, 6, 2];
        let x = rng.vec(ne.iter().product(), -2.0, 2.0);
        // Mask with extra rows (padded batch), broadcast over heads (ne2 = 3 divides 6) and dim 3.
        let mne = [13, 8, 3, 1];
        let mut m = rng.vec(mne.iter().product(), -1.0, 0.0);
        for (i, v) in m.iter_mut().enumerate() {
            if i % 7 == 3 {
                *v = f32::NEG_INFINITY;
            }
        }
        let sinks = rng.vec(6, -1.0, 2.0);
        let a = HostTensor::from_f32(GgmlType::F32, ne, &x);
        let s = HostTensor::from_f32(GgmlType::F32, [6, 1, 1, 1], &sinks);
        let alibi = super::Alibi::new(4.0, 6);
        let slopes: Vec<f64> = (0..6).map(|h| alibi.slope(h) as f64).collect();
        for mtyp in [GgmlType::F16, GgmlType::F32] {
            let mt = HostTensor::from_f32(mtyp, mne, &m);
            let mvals = mt.to_f32();
            for (bias, sink) in [(0.0, None), (4.0, None), (4.0, Some(&s)), (0.0, Some(&s))] {
                let sl = if bias > 0.0 {
                    slopes.clone()
                } else {
                    vec![1.0; 6]
                };
                let want = reference(
                    &x,
                    ne,
                    0.5,
                    Some((&mvals, mne)),
                    &sl,
                    sink.map(|_| &sinks[..]),
                );
                let mut d = HostTensor::zeros(GgmlType::F32, ne);
                run_op(
                    Op::SoftMax,
                    params_f32(&[0.5, bias]),
                    &[Some(&a), Some(&mt), sink],
                    &mut d,
                )
                .unwrap();
                assert_close(&d.to_f32(), &want, 1e-6, "masked softmax");
            }
        }
    }

    #[test]
    fn fully_masked_row_is_nan_without_sink_and_zero_with_one() {
        let a = HostTensor::from_f32(
            GgmlType::F32,
            [4, 2, 1, 1],
            &[1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5],
        );
        let inf = f32::NEG_INFINITY;
        let m = HostTensor::from_f32(
            GgmlType::F16,
            [4, 2, 1, 1],
            &[inf, inf, inf, inf, 0.0, inf, 0.0, inf],
        );
        let mut d = HostTensor::zeros(GgmlType::F32, [4, 2, 1, 1]);
        run_op(
            Op::SoftMax,
            params_f32(&[1.0]),
            &[Some(&a), Some(&m)],
            &mut d,
        )
        .unwrap();
        let got = d.to_f32();
        // ggml: max = -inf, exp(-inf - -inf) = NaN.
        assert!(got[..4].iter().all(|v| v.is_nan()), "{got:?}");
        assert_eq!(&got[4..], &[0.5, 0.0, 0.5, 0.0]);
        let s = HostTensor::from_f32(GgmlType::F32, [1, 1, 1, 1], &[0.0]);
        run_op(
            Op::SoftMax,
            params_f32(&[1.0]),
            &[Some(&a), Some(&m), Some(&s)],
            &mut d,
        )
        .unwrap();
        let got = d.to_f32();
        assert_eq!(&got[..4], &[0.0; 4]);
        let p = 1.0 / (2.0 + (-0.5f64).exp());
        assert_close(&got[4..], &[p, 0.0, p, 0.0], 1e-6, "sink row");
    }

    #[test]
    fn diag_masks() {
        let mut rng = Rng::new(5);
        let ne = [6, 4, 2, 2];
        let x = rng.vec(ne.iter().product(), -1.0, 1.0);
        let a = HostTensor::from_f32(GgmlType::F32, ne, &x);
        for (op, val) in [
            (Op::DiagMaskInf, f64::NEG_INFINITY),
            (Op::DiagMaskZero, 0.0),
        ] {
            let n_past = 1usize;
            let want: Vec<f64> = x
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let (i0, i1) = (i % 6, (i / 6) % 4);
                    if i0 > n_past + i1 { val } else { v as f64 }
                })
                .collect();
            for src in [a.clone(), a.permuted([1, 0, 3, 2])] {
                let mut d = HostTensor::zeros(GgmlType::F32, ne);
                let mut p = [0; 16];
                p[0] = n_past as i32;
                run_op(op, p, &[Some(&src)], &mut d).unwrap();
                assert_close(&d.to_f32(), &want, 0.0, "diag mask");
            }
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let a = HostTensor::from_f32(GgmlType::F32, [4, 3, 2, 1], &[0.0; 24]);
        let mut d = HostTensor::zeros(GgmlType::F32, [4, 3, 2, 1]);
        let p = params_f32(&[1.0]);
        for mne in [[4, 2, 1, 1], [5, 3, 1, 1], [4, 3, 3, 1], [4, 3, 0, 1]] {
            let m = HostTensor::zeros(GgmlType::F16, mne);
            assert!(
                run_op(Op::SoftMax, p, &[Some(&a), Some(&m)], &mut d).is_err(),
                "{mne:?}"
            );
        }
        let m = HostTensor::zeros(GgmlType::Bf16, [4, 3, 1, 1]);
        assert!(run_op(Op::SoftMax, p, &[Some(&a), Some(&m)], &mut d).is_err());
        let s = HostTensor::zeros(GgmlType::F32, [1, 1, 1, 1]);
        assert!(run_op(Op::SoftMax, p, &[Some(&a), None, Some(&s)], &mut d).is_err());
        let h = HostTensor::zeros(GgmlType::F16, [4, 3, 2, 1]);
        assert!(run_op(Op::SoftMax, p, &[Some(&h)], &mut d).is_err());
        let mut p = [0; 16];
        p[0] = -1;
        assert!(run_op(Op::DiagMaskInf, p, &[Some(&a)], &mut d).is_err());
    }
}
