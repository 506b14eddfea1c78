//! exact.wgsl's error-free arithmetic against the host's IEEE results, and what this adapter's own
//! primitives do (printed, since that varies by driver).

use super::device_or_skip;
use crate::device::host_kernels::testkit::Rng;
use crate::device::host_kernels::testkit::vexp;
use crate::device::wgpu::kernels::Kernels;
use crate::device::wgpu::probe::{Op, eval, eval_with, fma_is_fused};

/// Triples spread over many binades, plus products that nearly cancel the addend (FMA's hard cases).
fn triples(n: usize) -> Vec<[f32; 3]> {
    let mut rng = Rng::new(7);
    let any = |rng: &mut Rng| {
        let m = rng.uniform(-1.0, 1.0);
        m * 2f32.powi((rng.next_u64() % 40) as i32 - 20)
    };
    (0..n)
        .map(|i| {
            let (a, b) = (any(&mut rng), any(&mut rng));
            let c = match i % 3 {
                0 => any(&mut rng),
                1 => -(a * b),
                _ => -(a * b) * (1.0 + rng.uniform(-1e-6, 1e-6)),
            };
            [a, b, c]
        })
        .collect()
}

fn mismatches(got: &[f32], want: impl Iterator<Item = f32>) -> usize {
    got.iter()
        .zip(want)
        .filter(|(g, w)| g.to_bits() != w.to_bits() && !(g.is_nan() && w.is_nan()))
        .count()
}

#[test]
fn adapter_float_primitives() {
    let Some(dev) = device_or_skip("adapter_float_primitives") else {
        return;
    };
    let xs = triples(30000);
    let run = |op| eval(&dev.gpu, op, &xs).unwrap();
    let plain = mismatches(&run(Op::MulAdd), xs.iter().map(|x| x[0] * x[1] + x[2]));
    let fused = mismatches(&run(Op::Fma), xs.iter().map(|x| x[0].mul_add(x[1], x[2])));
    let exact = mismatches(
        &run(Op::FmaExact),
        xs.iter().map(|x| x[0].mul_add(x[1], x[2])),
    );
    let div = mismatches(&run(Op::Div), xs.iter().map(|x| x[0] / x[1]));
    let sqrt = mismatches(&run(Op::Sqrt), xs.iter().map(|x| x[0].abs().sqrt()));
    let exp = mismatches(&run(Op::Exp), xs.iter().map(|x| x[0].exp()));
    let ts = mismatches(
        &run(Op::TwoSumErr),
        xs.iter().map(|x| {
            // Knuth's TwoSum on the host (Rust does not reassociate floats).
            let (a, b) = (x[0], x[1]);
            let s = a + b;
            let bb = s - a;
            (a - (s - bb)) + (b - bb)
        }),
    );
    let tp = mismatches(
        &run(Op::TwoProdErr),
        xs.iter().map(|x| {
            let p = x[0] * x[1];
            (x[0] as f64 * x[1] as f64 - p as f64) as f32
        }),
    );
    eprintln!(
        "{} triples, results that differ from the host's: a*b+c {plain}, fma() {fused}, \
         fmaf {exact}, a/b {div}, sqrt {sqrt}, exp {exp}, two_sum {ts}, two_prod {tp}",
        xs.len()
    );
    assert_eq!(
        plain, 0,
        "a*b+c is not a rounded multiply then a rounded add"
    );
    assert_eq!(exact, 0, "fmaf is not correctly rounded");
    assert_eq!(
        ts, 0,
        "two_sum's error term is not exact (compiler reassociation?)"
    );
    assert_eq!(tp, 0, "two_prod's error term is not exact");
}

/// Arguments for the exp tests: the whole range libm handles, dense where attention lives.
fn exp_args(n: usize) -> Vec<[f32; 3]> {
    let mut rng = Rng::new(9);
    (0..n)
        .map(|i| {
            let x = match i % 4 {
                0 => rng.uniform(-104.0, 89.0),
                1 => rng.uniform(-20.0, 0.0),
                2 => rng.uniform(-1.0, 1.0),
                _ => rng.uniform(-87.0, 0.0),
            };
            [x, 0.0, 0.0]
        })
        .chain(
            [
                0.0,
                -0.0,
                1.0,
                -1.0,
                f32::NEG_INFINITY,
                f32::INFINITY,
                -200.0,
                200.0,
            ]
            .map(|x| [x, 0.0, 0.0]),
        )
        .collect()
}

#[test]
fn expf_libm_matches_glibc_expf() {
    let Some(dev) = device_or_skip("expf_libm_matches_glibc_expf") else {
        return;
    };
    let xs = exp_args(1 << 20);
    let got = eval(&dev.gpu, Op::ExpLibm, &xs).unwrap();
    // glibc rounds to nearest in all but ~0.05% of cases: show that this is not plain rounding.
    let nearest = mismatches(&got, xs.iter().map(|x| (x[0] as f64).exp() as f32));
    // Below 2^-126 the result is rounded twice here (once in glibc): off by at most one subnormal ulp.
    let normal = |x: f32| x > -87.0 || x == f32::NEG_INFINITY;
    let (got_n, xs_n): (Vec<f32>, Vec<f32>) = got
        .iter()
        .zip(&xs)
        .filter(|(_, x)| normal(x[0]))
        .map(|(g, x)| (*g, x[0]))
        .unzip();
    let libm = mismatches(&got_n, xs_n.iter().map(|x| x.exp()));
    eprintln!(
        "{} arguments: {libm} differ from libm's expf, {nearest} from exp rounded to nearest",
        xs.len()
    );
    assert!(
        libm <= 2,
        "{libm} of {} differ from libm's expf",
        xs_n.len()
    );
}

#[test]
fn v_expf_matches_ggml_vector_exp() {
    let Some(dev) = device_or_skip("v_expf_matches_ggml_vector_exp") else {
        return;
    };
    let mut xs = exp_args(1 << 18);
    xs.extend([-150.0f32, -130.0, 100.0, 150.0, f32::NAN].map(|x| [x, 0.0, 0.0]));
    let got = eval(&dev.gpu, Op::ExpVec, &xs).unwrap();
    // Results below 2^-126 (x < -87.3) are rounded twice here: off by at most one subnormal ulp.
    let (got_n, xs_n): (Vec<f32>, Vec<f32>) = got
        .iter()
        .zip(&xs)
        .filter(|(_, x)| !(x[0] < -87.3 && x[0] > -104.0))
        .map(|(g, x)| (*g, x[0]))
        .unzip();
    let n = mismatches(&got_n, xs_n.iter().map(|&x| vexp::v_expf(x)));
    assert_eq!(n, 0, "{n} of {} differ from ggml_v_expf", xs_n.len());
}

#[test]
fn fmaf_uses_the_hardware_fma_when_told() {
    let Some(dev) = device_or_skip("fmaf_uses_the_hardware_fma_when_told") else {
        return;
    };
    let xs = triples(3000);
    let kernels = Kernels::default();
    kernels.set_fused_fma(true);
    let switched = eval_with(&dev.gpu, &kernels, Op::FmaExact, &xs).unwrap();
    let builtin = eval(&dev.gpu, Op::Fma, &xs).unwrap();
    let n = mismatches(&switched, builtin.iter().copied());
    assert_eq!(n, 0, "with FUSED_FMA, fmaf is not the builtin fma()");
    eprintln!("this adapter's fma() is fused: {}", fma_is_fused(&dev.gpu));
}
