use super::super::testutil::{HostTensor, Rng, assert_close, run_op};
use super::{FLAG_ALIGN_CORNERS, FLAG_ANTIALIAS, MODE_BICUBIC, MODE_BILINEAR, MODE_NEAREST};
use crate::ggml::{GgmlType, Op};

use GgmlType::F32;

fn rand(ne: [usize; 4], seed: u64) -> HostTensor {
    let n = ne.iter().product();
    HostTensor::from_f32(F32, ne, &Rng::new(seed).vec(n, -1.0, 1.0))
}

fn upscale(x: &HostTensor, ne: [usize; 4], mode: i32) -> Vec<f32> {
    let mut d = HostTensor::zeros(F32, ne);
    let mut p = [0; 16];
    p[0] = mode;
    run_op(Op::Upscale, p, &[Some(x)], &mut d).unwrap();
    d.to_f32()
}

#[test]
fn nearest_by_hand_and_through_a_transposed_source() {
    let x = HostTensor::from_f32(F32, [2, 1, 1, 1], &[1.0, 2.0]);
    assert_eq!(
        upscale(&x, [4, 1, 1, 1], MODE_NEAREST),
        [1.0, 1.0, 2.0, 2.0]
    );
    // test-backend-ops: a transposed source, scale 2 in dims 0 and 1.
    let x = rand([6, 5, 3, 2], 1).permuted([1, 0, 2, 3]);
    let xv = x.to_f32();
    let got = upscale(&x, [12, 10, 3, 2], MODE_NEAREST);
    for (i, g) in got.iter().enumerate() {
        let (i0, i1, p) = (i % 12, (i / 12) % 10, i / 120);
        assert_eq!(*g, xv[p * 30 + (i1 / 2) * 6 + i0 / 2], "{i}");
    }
    // Downscaling dims 2 and 3 picks floor(i * n_in / n_out).
    let x = rand([2, 1, 5, 3], 2);
    let xv = x.to_f32();
    let got = upscale(&x, [2, 1, 2, 2], MODE_NEAREST);
    for (i, g) in got.iter().enumerate() {
        let (i0, i2, i3) = (i % 2, (i / 2) % 2, i / 4);
        let (j2, j3) = (i2 * 5 / 2, i3 * 3 / 2);
        assert_eq!(*g, xv[(j3 * 5 + j2) * 2 + i0]);
    }
}

/// Separable 1-D interpolation in f64 with clamped taps; `kernel(t)` gives the tap weights around
/// floor(position).
fn ref_resample(
    src: &[f64],
    n_out: usize,
    align: bool,
    taps: &dyn Fn(f64) -> Vec<(i64, f64)>,
) -> Vec<f64> {
    let n = src.len();
    let (sf, off) = if align && n_out > 1 && n > 1 {
        ((n_out - 1) as f64 / (n - 1) as f64, 0.0)
    } else {
        (n_out as f64 / n as f64, if align { 0.0 } else { 0.5 })
    };
    (0..n_out)
        .map(|i| {
            let pos = (i as f64 + off) / sf - off;
            let base = pos.floor();
            taps(pos - base)
                .into_iter()
                .map(|(o, w)| w * src[(base as i64 + o).clamp(0, n as i64 - 1) as usize])
                .sum()
        })
        .collect()
}

fn linear_taps(t: f64) -> Vec<(i64, f64)> {
    vec![(0, 1.0 - t), (1, t)]
}

fn cubic_taps(t: f64) -> Vec<(i64, f64)> {
    let a = -0.75;
    let near = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    vec![
        (-1, far(t + 1.0)),
        (0, near(t)),
        (1, near(1.0 - t)),
        (2, far(2.0 - t)),
    ]
}

/// 2-D separable reference on one plane [w, h] -> [ow, oh].
fn ref_2d(
    plane: &[f32],
    [w, h]: [usize; 2],
    [ow, oh]: [usize; 2],
    align: bool,
    taps: &dyn Fn(f64) -> Vec<(i64, f64)>,
) -> Vec<f64> {
    let rows: Vec<Vec<f64>> = plane
        .chunks(w)
        .map(|r| {
            ref_resample(
                &r.iter().map(|v| *v as f64).collect::<Vec<_>>(),
                ow,
                align,
                taps,
            )
        })
        .collect();
    let mut out = vec![0f64; ow * oh];
    for x in 0..ow {
        let col: Vec<f64> = (0..h).map(|y| rows[y][x]).collect();
        for (y, v) in ref_resample(&col, oh, align, taps).into_iter().enumerate() {
            out[y * ow + x] = v;
        }
    }
    out
}

#[test]
fn bilinear_and_bicubic_match_separable_references() {
    // test-backend-ops: interpolate {2,5,7,11} -> {5,7,11,13}-like (planes kept), with and without
    // align corners, and a downscale {5,7} -> {2,5}.
    for (ine, one, align) in [
        ([2, 5, 3, 2], [5, 7, 3, 2], false),
        ([2, 5, 3, 2], [5, 7, 3, 2], true),
        ([5, 7, 2, 1], [2, 5, 2, 1], false),
        ([1, 4, 3, 2], [2, 8, 3, 2], true),
    ] {
        let x = rand(ine, 3);
        let xv = x.to_f32();
        for (mode, taps) in [
            (
                MODE_BILINEAR,
                &linear_taps as &dyn Fn(f64) -> Vec<(i64, f64)>,
            ),
            (MODE_BICUBIC, &cubic_taps),
        ] {
            let flags = mode | if align { FLAG_ALIGN_CORNERS } else { 0 };
            let got = upscale(&x, one, flags);
            let plane = ine[0] * ine[1];
            let want: Vec<f64> = xv
                .chunks(plane)
                .flat_map(|p| ref_2d(p, [ine[0], ine[1]], [one[0], one[1]], align, taps))
                .collect();
            if mode == MODE_BILINEAR {
                // ggml clamps both taps into the image, which the clamped reference also does, but
                // clamps dx/dy to [0, 1] after clamping x0: identical except beyond the edges where
                // both taps are the edge pixel.
                assert_close(&got, &want, 1e-5, "bilinear");
            } else {
                assert_close(&got, &want, 1e-5, "bicubic");
            }
        }
    }
}

#[test]
fn antialiased_bilinear() {
    // A constant image stays constant whatever the scale.
    let x = HostTensor::from_f32(F32, [9, 7, 1, 1], &[0.25; 63]);
    let flags = MODE_BILINEAR | FLAG_ANTIALIAS;
    for one in [[4, 3, 1, 1], [18, 14, 1, 1]] {
        let got = upscale(&x, one, flags);
        assert!(got.iter().all(|v| (v - 0.25).abs() < 1e-6), "{got:?}");
    }
    // Downscaling by exactly 2 with the widened triangle filter (support 2): output 0 of a ramp
    // 0, 1, 2, ... averages taps 0..2 with weights 0.75, 0.75, 0.25 (normalised).
    let ramp: Vec<f32> = (0..8).map(|v| v as f32).collect();
    let x = HostTensor::from_f32(F32, [8, 1, 1, 1], &ramp);
    let got = upscale(&x, [4, 1, 1, 1], flags);
    let w = [0.75f64, 0.75, 0.25];
    let want0 = (w[1] * 1.0 + w[2] * 2.0) / (w[0] + w[1] + w[2]);
    assert!((got[0] as f64 - want0).abs() < 1e-6, "{got:?}");
    // Interior outputs of a linear ramp stay on the ramp (the filter is symmetric): 2i + 0.5.
    assert!(
        (got[1] - 2.5).abs() < 1e-6 && (got[2] - 4.5).abs() < 1e-6,
        "{got:?}"
    );
}

#[test]
fn upscale_rejects_non_f32_and_unknown_modes() {
    let x = rand([2, 2, 1, 1], 4);
    let mut d = HostTensor::zeros(F32, [4, 4, 1, 1]);
    let mut p = [0; 16];
    p[0] = 3;
    assert!(run_op(Op::Upscale, p, &[Some(&x)], &mut d).is_err());
    p[0] = MODE_BICUBIC | FLAG_ANTIALIAS;
    assert!(run_op(Op::Upscale, p, &[Some(&x)], &mut d).is_err());
}
