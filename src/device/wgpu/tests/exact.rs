//! exact.wgsl's error-free arithmetic against the host's IEEE results, and what this adapter's own
//! primitives do (printed, since that varies by driver).

use super::device_or_skip;
use crate::device::cpu::ops::testutil::Rng;
use crate::device::wgpu::probe::{Op, eval};

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
