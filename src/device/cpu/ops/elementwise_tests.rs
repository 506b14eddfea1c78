//! Element-wise family against straightforward f64 references.
//!
//! Tolerances (absolute + relative, see `assert_close`): f32 results 1e-5 (one f32 rounding of a few
//! operations); f16 results 2e-3 (half an f16 ulp is 4.9e-4 relative, plus inputs already rounded);
//! bf16 results 1e-2 (half a bf16 ulp is 3.9e-3 relative). GELU/GELU_QUICK/GEGLU(_QUICK) go through
//! ggml's f16 tables even for f32, so they get the f16 tolerance.

use super::super::testutil::{HostTensor, Rng, assert_close, params_f32, run_op};
use crate::ggml::{GgmlType, GluOp, Op, UnaryOp};

use GgmlType::{Bf16, F16, F32};

pub(crate) fn tol(t: GgmlType) -> f64 {
    match t {
        F16 => 2e-3,
        Bf16 => 1e-2,
        _ => 1e-5,
    }
}

/// A random tensor (optionally stored permuted) and its values as stored, in logical order.
pub(crate) fn input(
    rng: &mut Rng,
    typ: GgmlType,
    ne: [usize; 4],
    lo: f32,
    hi: f32,
    perm: Option<[usize; 4]>,
) -> (HostTensor, Vec<f64>) {
    let n = ne.iter().product();
    let h = HostTensor::from_f32(typ, ne, &rng.vec(n, lo, hi));
    let vals = h.to_f32().iter().map(|&v| f64::from(v)).collect();
    (perm.map_or(h.clone(), |p| h.permuted(p)), vals)
}

/// Logical coordinates of flat index `i`.
pub(crate) fn coords(ne: [usize; 4], i: usize) -> [usize; 4] {
    [
        i % ne[0],
        (i / ne[0]) % ne[1],
        (i / (ne[0] * ne[1])) % ne[2],
        i / (ne[0] * ne[1] * ne[2]),
    ]
}

pub(crate) fn flat(ne: [usize; 4], c: [usize; 4]) -> usize {
    c[0] + ne[0] * (c[1] + ne[1] * (c[2] + ne[2] * c[3]))
}

fn erf_ref(x: f64) -> f64 {
    // Simpson's rule on 2/sqrt(pi) * exp(-t^2) over [0, x]: independent of the kernel's series.
    let n = 2000;
    let h = x / n as f64;
    let f = |t: f64| (-t * t).exp();
    let mut s = f(0.0) + f(x);
    for k in 1..n {
        s += f(k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
}

fn gelu_ref(x: f64) -> f64 {
    0.5 * x * (1.0 + (0.797_884_560_802_865_4 * x * (1.0 + 0.044715 * x * x)).tanh())
}

fn silu_ref(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

type Binary = fn(f64, f64) -> f64;
type Unary = fn(f64) -> f64;

const BINARY_TYPES: [(GgmlType, GgmlType, GgmlType); 7] = [
    (F32, F32, F32),
    (F16, F16, F16),
    (Bf16, Bf16, Bf16),
    (Bf16, F32, Bf16),
    (Bf16, F32, F32),
    (F16, F32, F16),
    (F16, F32, F32),
];

#[test]
fn binary_ops_broadcast_all_types_and_layouts() {
    let mut rng = Rng::new(1);
    let shapes = [
        ([7, 3, 2, 2], [7, 1, 2, 1]),
        ([12, 5, 3, 1], [4, 5, 1, 1]),
        ([5, 4, 3, 2], [5, 4, 3, 2]),
        ([9, 2, 1, 3], [1, 1, 1, 1]),
    ];
    let ops: [(Op, Binary); 4] = [
        (Op::Add, |a, b| a + b),
        (Op::Sub, |a, b| a - b),
        (Op::Mul, |a, b| a * b),
        (Op::Div, |a, b| a / b),
    ];
    for (op, f) in ops {
        for (t0, t1, td) in BINARY_TYPES {
            for (k, (ne0, ne1)) in shapes.iter().enumerate() {
                let p0 = (k % 2 == 1).then_some([2, 0, 3, 1]);
                let p1 = (k >= 2).then_some([1, 3, 0, 2]);
                let (a, av) = input(&mut rng, t0, *ne0, -2.0, 2.0, p0);
                let (b, bv) = input(&mut rng, t1, *ne1, 0.5, 2.0, p1);
                let mut d = HostTensor::zeros(td, *ne0);
                if k == 3 {
                    d = d.permuted([3, 1, 2, 0]);
                }
                run_op(op, [0; 16], &[Some(&a), Some(&b)], &mut d).unwrap();
                let want: Vec<f64> = (0..av.len())
                    .map(|i| {
                        let c = coords(*ne0, i);
                        let cb = [0, 1, 2, 3].map(|j| c[j] % ne1[j]);
                        f(av[i], bv[flat(*ne1, cb)])
                    })
                    .collect();
                let what = format!("{} {t0:?} {t1:?} -> {td:?} shape {k}", op.name());
                assert_close(&d.to_f32(), &want, tol(td), &what);
            }
        }
    }
}

#[test]
fn binary_large_runs_in_parallel_and_matches() {
    let mut rng = Rng::new(2);
    let ne = [1001, 67, 1, 1];
    let (a, av) = input(&mut rng, F32, ne, -1.0, 1.0, None);
    let (b, bv) = input(&mut rng, F32, [1001, 1, 1, 1], -1.0, 1.0, None);
    let mut d = HostTensor::zeros(F32, ne);
    run_op(Op::Mul, [0; 16], &[Some(&a), Some(&b)], &mut d).unwrap();
    let want: Vec<f64> = (0..av.len()).map(|i| av[i] * bv[i % 1001]).collect();
    assert_close(&d.to_f32(), &want, 1e-6, "large mul");
}

#[test]
fn binary_rejects_bad_shapes_and_types() {
    let a = HostTensor::zeros(F32, [6, 4, 1, 1]);
    let mut d = HostTensor::zeros(F32, [6, 4, 1, 1]);
    let b = HostTensor::zeros(F32, [4, 4, 1, 1]);
    assert!(run_op(Op::Add, [0; 16], &[Some(&a), Some(&b)], &mut d).is_err());
    let b = HostTensor::zeros(F32, [6, 3, 1, 1]);
    assert!(run_op(Op::Mul, [0; 16], &[Some(&a), Some(&b)], &mut d).is_err());
    let b = HostTensor::zeros(F32, [6, 1, 1, 1]);
    let mut wrong = HostTensor::zeros(F32, [6, 2, 2, 1]);
    assert!(run_op(Op::Sub, [0; 16], &[Some(&a), Some(&b)], &mut wrong).is_err());
    let bi = HostTensor::from_i32([6, 1, 1, 1], &[1; 6]);
    assert!(run_op(Op::Add, [0; 16], &[Some(&a), Some(&bi)], &mut d).is_err());
    let b16 = HostTensor::zeros(F16, [6, 1, 1, 1]);
    assert!(run_op(Op::Add, [0; 16], &[Some(&a), Some(&b16)], &mut d).is_err());
    assert!(run_op(Op::Add, [0; 16], &[Some(&a)], &mut d).is_err());
    let empty = HostTensor::zeros(F32, [0, 1, 1, 1]);
    assert!(run_op(Op::Add, [0; 16], &[Some(&a), Some(&empty)], &mut d).is_err());
}

#[test]
fn add_cast_quantized_src0() {
    let mut rng = Rng::new(3);
    let ne = [64, 3, 1, 1];
    let (a, av) = input(&mut rng, GgmlType::Q8_0, ne, -1.0, 1.0, None);
    let (b, bv) = input(&mut rng, F32, ne, -1.0, 1.0, None);
    let mut d = HostTensor::zeros(F32, ne);
    run_op(Op::Add, [0; 16], &[Some(&a), Some(&b)], &mut d).unwrap();
    let want: Vec<f64> = av.iter().zip(&bv).map(|(x, y)| x + y).collect();
    assert_close(&d.to_f32(), &want, 1e-5, "q8_0 + f32");
}

#[test]
fn add1_types() {
    let mut rng = Rng::new(4);
    for (t0, t1) in [
        (F32, F32),
        (F16, F16),
        (F16, F32),
        (Bf16, Bf16),
        (Bf16, F32),
    ] {
        let ne = [5, 3, 2, 1];
        let (a, av) = input(&mut rng, t0, ne, -2.0, 2.0, Some([1, 0, 2, 3]));
        let (b, bv) = input(&mut rng, t1, [1, 1, 1, 1], -2.0, 2.0, None);
        let mut d = HostTensor::zeros(t0, ne);
        run_op(Op::Add1, [0; 16], &[Some(&a), Some(&b)], &mut d).unwrap();
        let want: Vec<f64> = av.iter().map(|x| x + bv[0]).collect();
        assert_close(&d.to_f32(), &want, tol(t0), &format!("add1 {t0:?} {t1:?}"));
    }
    let a = HostTensor::zeros(F32, [4, 1, 1, 1]);
    let b = HostTensor::zeros(F32, [2, 1, 1, 1]);
    let mut d = HostTensor::zeros(F32, [4, 1, 1, 1]);
    assert!(run_op(Op::Add1, [0; 16], &[Some(&a), Some(&b)], &mut d).is_err());
}

#[test]
fn add_id_adds_selected_bias_rows() {
    let mut rng = Rng::new(5);
    let (n_embd, n_used, n_tok, n_exp) = (6, 3, 4, 5);
    let (a, av) = input(
        &mut rng,
        F32,
        [n_embd, n_used, n_tok, 1],
        -1.0,
        1.0,
        Some([0, 2, 1, 3]),
    );
    let (b, bv) = input(&mut rng, F32, [n_embd, n_exp, 1, 1], -1.0, 1.0, None);
    let idv: Vec<i32> = (0..n_used * n_tok)
        .map(|i| ((i * 7) % n_exp) as i32)
        .collect();
    let ids = HostTensor::from_i32([n_used, n_tok, 1, 1], &idv);
    let mut d = HostTensor::zeros(F32, [n_embd, n_used, n_tok, 1]);
    run_op(
        Op::AddId,
        [0; 16],
        &[Some(&a), Some(&b), Some(&ids)],
        &mut d,
    )
    .unwrap();
    let want: Vec<f64> = (0..av.len())
        .map(|i| {
            let c = coords([n_embd, n_used, n_tok, 1], i);
            let e = idv[c[1] + n_used * c[2]] as usize;
            av[i] + bv[c[0] + n_embd * e]
        })
        .collect();
    assert_close(&d.to_f32(), &want, 1e-6, "add_id");
    for bad in [n_exp as i32, -1, i32::MAX] {
        let mut idv = idv.clone();
        idv[5] = bad;
        let ids = HostTensor::from_i32([n_used, n_tok, 1, 1], &idv);
        let err = run_op(
            Op::AddId,
            [0; 16],
            &[Some(&a), Some(&b), Some(&ids)],
            &mut d,
        );
        assert!(err.unwrap_err().contains("out of range"), "id {bad}");
    }
    let ids = HostTensor::from_i32([n_used + 1, n_tok, 1, 1], &vec![0; (n_used + 1) * n_tok]);
    assert!(
        run_op(
            Op::AddId,
            [0; 16],
            &[Some(&a), Some(&b), Some(&ids)],
            &mut d
        )
        .is_err()
    );
}

#[test]
fn scale_clamp_leaky_fill() {
    let mut rng = Rng::new(6);
    let ne = [9, 4, 3, 1];
    let (a, av) = input(&mut rng, F32, ne, -3.0, 3.0, Some([2, 1, 0, 3]));
    let mut d = HostTensor::zeros(F32, ne);
    run_op(Op::Scale, params_f32(&[1.5, -0.25]), &[Some(&a)], &mut d).unwrap();
    let want: Vec<f64> = av.iter().map(|x| x * 1.5 - 0.25).collect();
    assert_close(&d.to_f32(), &want, 1e-6, "scale");
    for t in [F32, F16] {
        let (a, av) = input(&mut rng, t, ne, -3.0, 3.0, Some([1, 0, 2, 3]));
        let mut d = HostTensor::zeros(t, ne);
        run_op(Op::Clamp, params_f32(&[-1.0, 0.5]), &[Some(&a)], &mut d).unwrap();
        let want: Vec<f64> = av.iter().map(|x| x.clamp(-1.0, 0.5)).collect();
        assert_close(&d.to_f32(), &want, tol(t), "clamp");
        run_op(Op::LeakyRelu, params_f32(&[0.1]), &[Some(&a)], &mut d).unwrap();
        let want: Vec<f64> = av
            .iter()
            .map(|&x| if x > 0.0 { x } else { 0.1 * x })
            .collect();
        assert_close(&d.to_f32(), &want, tol(t), "leaky_relu");
        run_op(Op::Fill, params_f32(&[2.5]), &[Some(&a)], &mut d).unwrap();
        assert!(d.to_f32().iter().all(|&v| v == 2.5));
    }
    // ggml's MAX(MIN(x, max), min) sends NaN to max.
    let a = HostTensor::from_f32(F32, [2, 1, 1, 1], &[f32::NAN, 7.0]);
    let mut d = HostTensor::zeros(F32, [2, 1, 1, 1]);
    run_op(Op::Clamp, params_f32(&[-1.0, 0.5]), &[Some(&a)], &mut d).unwrap();
    assert_eq!(d.to_f32(), vec![0.5, 0.5]);
    let mut d16 = HostTensor::zeros(F16, [2, 1, 1, 1]);
    assert!(run_op(Op::Scale, params_f32(&[1.0]), &[Some(&a)], &mut d16).is_err());
}

/// SCALE on bf16 (test-backend-ops' `SCALE(type=bf16,ne=[10,10,10,10],scale=2,bias=1)` and
/// `scale=0.5,bias=0` on [100,10,10,10]): `s*x + b` rounded once to bf16.
#[test]
fn scale_bf16() {
    let mut rng = Rng::new(61);
    for (ne, s, b) in [([10, 10, 10, 10], 2.0, 1.0), ([100, 10, 10, 10], 0.5, 0.0)] {
        let (a, av) = input(&mut rng, Bf16, ne, -1.0, 1.0, None);
        let mut d = HostTensor::zeros(Bf16, ne);
        run_op(Op::Scale, params_f32(&[s, b]), &[Some(&a)], &mut d).unwrap();
        let want: Vec<f64> = av.iter().map(|x| x * f64::from(s) + f64::from(b)).collect();
        assert_close(&d.to_f32(), &want, tol(Bf16), "scale bf16");
    }
    let (a, _) = input(&mut rng, Bf16, [4, 1, 1, 1], -1.0, 1.0, None);
    let mut d = HostTensor::zeros(F32, [4, 1, 1, 1]);
    assert!(run_op(Op::Scale, params_f32(&[1.0]), &[Some(&a)], &mut d).is_err());
}

/// f64 reference of each unary op with the XIELU params used below.
fn unary_ref(op: UnaryOp, x: f64) -> f64 {
    use UnaryOp::*;
    let (an, ap, beta, eps) = (0.8, 0.5, 0.5, -1e-6);
    match op {
        Abs => x.abs(),
        Sgn => x.signum() * f64::from(u8::from(x != 0.0)),
        Neg => -x,
        Step => f64::from(u8::from(x > 0.0)),
        Tanh => x.tanh(),
        Elu => {
            if x > 0.0 {
                x
            } else {
                x.exp_m1()
            }
        }
        Relu => x.max(0.0),
        Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Gelu => gelu_ref(x),
        GeluQuick => x / (1.0 + (-1.702 * x).exp()),
        Silu => silu_ref(x),
        Hardswish => x * ((x + 3.0) / 6.0).clamp(0.0, 1.0),
        Hardsigmoid => ((x + 3.0) / 6.0).clamp(0.0, 1.0),
        Exp => x.exp(),
        Expm1 => x.exp_m1(),
        Softplus => {
            if x > 20.0 {
                x
            } else {
                x.exp().ln_1p()
            }
        }
        GeluErf => 0.5 * x * (1.0 + erf_ref(x / 2f64.sqrt())),
        Xielu => {
            if x > 0.0 {
                ap * x * x + beta * x
            } else {
                (x.min(eps).exp_m1() - x) * an + beta * x
            }
        }
        Floor => x.floor(),
        Ceil => x.ceil(),
        Round => x.round(),
        Trunc => x.trunc(),
    }
}

const UNARY_TYPES: [(GgmlType, GgmlType); 5] = [
    (F32, F32),
    (F16, F16),
    (Bf16, Bf16),
    (F16, F32),
    (Bf16, F32),
];

#[test]
fn all_unary_ops_all_types() {
    let mut rng = Rng::new(7);
    let xi = params_f32(&[0.0, 0.8, 0.5, 0.5, -1e-6]);
    for id in 0..UnaryOp::COUNT {
        let u = UnaryOp::from_u32(id).unwrap();
        for (k, (ts, td)) in UNARY_TYPES.into_iter().enumerate() {
            let ne = [13, 3, 2, 1 + k % 2];
            let (a, av) = input(&mut rng, ts, ne, -4.0, 4.0, Some([1, 2, 0, 3]));
            let mut d = HostTensor::zeros(td, ne);
            let mut p = xi;
            p[0] = id as i32;
            run_op(Op::Unary, p, &[Some(&a)], &mut d).unwrap();
            let want: Vec<f64> = av.iter().map(|&x| unary_ref(u, x)).collect();
            let table = matches!(u, UnaryOp::Gelu | UnaryOp::GeluQuick);
            let t = if table {
                tol(td).max(tol(F16))
            } else {
                tol(td)
            };
            assert_close(
                &d.to_f32(),
                &want,
                t,
                &format!("{} {ts:?}->{td:?}", u.name()),
            );
        }
    }
}

#[test]
fn math_ops_sqr_sqrt_log_sin_cos() {
    let mut rng = Rng::new(8);
    let ops: [(Op, Unary); 5] = [
        (Op::Sqr, |x| x * x),
        (Op::Sqrt, f64::sqrt),
        (Op::Log, f64::ln),
        (Op::Sin, f64::sin),
        (Op::Cos, f64::cos),
    ];
    for (op, f) in ops {
        for (ts, td) in UNARY_TYPES {
            let ne = [17, 5, 1, 2];
            let (a, av) = input(&mut rng, ts, ne, 0.1, 5.0, Some([3, 0, 1, 2]));
            let mut d = HostTensor::zeros(td, ne);
            run_op(op, [0; 16], &[Some(&a)], &mut d).unwrap();
            let want: Vec<f64> = av.iter().map(|&x| f(x)).collect();
            assert_close(
                &d.to_f32(),
                &want,
                tol(td),
                &format!("{} {ts:?}", op.name()),
            );
        }
    }
}

#[test]
fn unary_edge_cases_match_ggml() {
    let a = HostTensor::from_f32(F32, [6, 1, 1, 1], &[-12.0, 12.5, 25.0, -0.5, 0.5, f32::NAN]);
    let mut d = HostTensor::zeros(F32, [6, 1, 1, 1]);
    let mut p = [0i32; 16];
    p[0] = UnaryOp::Gelu as i32;
    run_op(Op::Unary, p, &[Some(&a)], &mut d).unwrap();
    let g = d.to_f32();
    assert_eq!(&g[..3], &[0.0, 12.5, 25.0]);
    p[0] = UnaryOp::Softplus as i32;
    run_op(Op::Unary, p, &[Some(&a)], &mut d).unwrap();
    assert_eq!(d.to_f32()[2], 25.0);
    p[0] = UnaryOp::Round as i32;
    run_op(Op::Unary, p, &[Some(&a)], &mut d).unwrap();
    assert_eq!(&d.to_f32()[3..5], &[-1.0, 1.0]);
    p[0] = UnaryOp::Sgn as i32;
    run_op(Op::Unary, p, &[Some(&a)], &mut d).unwrap();
    assert_eq!(d.to_f32()[5], 0.0);
    p[0] = 22;
    assert!(run_op(Op::Unary, p, &[Some(&a)], &mut d).is_err());
    p[0] = -1;
    assert!(run_op(Op::Unary, p, &[Some(&a)], &mut d).is_err());
    p[0] = 0;
    let mut di = HostTensor::zeros(GgmlType::I32, [6, 1, 1, 1]);
    assert!(run_op(Op::Unary, p, &[Some(&a)], &mut di).is_err());
    let mut d16 = HostTensor::zeros(F16, [6, 1, 1, 1]);
    assert!(run_op(Op::Unary, p, &[Some(&a)], &mut d16).is_err());
}

fn glu_ref(op: GluOp, x: f64, g: f64, alpha: f64, limit: f64) -> f64 {
    match op {
        GluOp::Reglu => x.max(0.0) * g,
        GluOp::Geglu => gelu_ref(x) * g,
        GluOp::Swiglu => silu_ref(x) * g,
        GluOp::SwigluOai => {
            let x = x.min(limit);
            x / (1.0 + (-alpha * x).exp()) * (g.clamp(-limit, limit) + 1.0)
        }
        GluOp::GegluErf => 0.5 * x * (1.0 + erf_ref(x / 2f64.sqrt())) * g,
        GluOp::GegluQuick => x / (1.0 + (-1.702 * x).exp()) * g,
        GluOp::SwigluClamp => silu_ref(x.min(limit)) * g.clamp(-limit, limit),
    }
}

#[test]
fn all_glu_ops_split_swapped_and_two_source() {
    let mut rng = Rng::new(9);
    let (alpha, limit) = (1.702f32, 2.5f32);
    for id in 0..GluOp::COUNT {
        let op = GluOp::from_u32(id).unwrap();
        for t in [F32, F16, Bf16] {
            let nc = 11;
            let rows = [nc, 3, 2, 1];
            let table = matches!(op, GluOp::Geglu | GluOp::GegluQuick);
            let tl = if table { tol(t).max(tol(F16)) } else { tol(t) };
            let mut p = params_f32(&[0.0, 0.0, alpha, limit]);
            p[0] = id as i32;
            for swapped in [0, 1] {
                p[1] = swapped;
                let ne = [2 * nc + 1, 3, 2, 1];
                let (a, av) = input(&mut rng, t, ne, -4.0, 4.0, Some([1, 0, 2, 3]));
                let mut d = HostTensor::zeros(t, rows);
                run_op(Op::Glu, p, &[Some(&a)], &mut d).unwrap();
                let want: Vec<f64> = (0..nc * 6)
                    .map(|i| {
                        let (i0, r) = (i % nc, i / nc);
                        let base = r * ne[0];
                        let (xo, go) = if swapped == 1 { (nc, 0) } else { (0, nc) };
                        let (x, g) = (av[base + xo + i0], av[base + go + i0]);
                        glu_ref(op, x, g, alpha.into(), limit.into())
                    })
                    .collect();
                let what = format!("{} {t:?} swapped {swapped}", op.name());
                assert_close(&d.to_f32(), &want, tl, &what);
            }
            let (a, av) = input(&mut rng, t, rows, -4.0, 4.0, None);
            let (b, bv) = input(&mut rng, t, rows, -4.0, 4.0, Some([2, 1, 0, 3]));
            let mut d = HostTensor::zeros(t, rows);
            run_op(Op::Glu, p, &[Some(&a), Some(&b)], &mut d).unwrap();
            let want: Vec<f64> = av
                .iter()
                .zip(&bv)
                .map(|(&x, &g)| glu_ref(op, x, g, alpha.into(), limit.into()))
                .collect();
            assert_close(
                &d.to_f32(),
                &want,
                tl,
                &format!("{} {t:?} two-source", op.name()),
            );
        }
    }
}

#[test]
fn glu_rejects_bad_params_and_shapes() {
    let a = HostTensor::zeros(F32, [8, 2, 1, 1]);
    let mut d = HostTensor::zeros(F32, [4, 2, 1, 1]);
    let mut p = [0i32; 16];
    run_op(Op::Glu, p, &[Some(&a)], &mut d).unwrap();
    p[0] = 7;
    assert!(run_op(Op::Glu, p, &[Some(&a)], &mut d).is_err());
    p[0] = 2;
    let mut wrong = HostTensor::zeros(F32, [5, 2, 1, 1]);
    assert!(run_op(Op::Glu, p, &[Some(&a)], &mut wrong).is_err());
    let b = HostTensor::zeros(F16, [8, 2, 1, 1]);
    let mut d8 = HostTensor::zeros(F32, [8, 2, 1, 1]);
    assert!(run_op(Op::Glu, p, &[Some(&a), Some(&b)], &mut d8).is_err());
    let b = HostTensor::zeros(F32, [8, 1, 1, 1]);
    assert!(run_op(Op::Glu, p, &[Some(&a), Some(&b)], &mut d8).is_err());
}

#[test]
fn large_strided_destination_in_blocks() {
    // 307200 f32 = 1.2 MB of rows: two blocks of the strided path, each computed in parallel.
    let mut rng = Rng::new(10);
    let ne = [512, 600, 1, 1];
    let (a, av) = input(&mut rng, F32, ne, -3.0, 3.0, None);
    let (b, bv) = input(&mut rng, F32, [512, 1, 1, 1], -3.0, 3.0, None);
    let mut d = HostTensor::zeros(F32, ne).permuted([1, 0, 2, 3]);
    run_op(Op::Sub, [0; 16], &[Some(&a), Some(&b)], &mut d).unwrap();
    let want: Vec<f64> = (0..av.len()).map(|i| av[i] - bv[i % 512]).collect();
    assert_close(&d.to_f32(), &want, 1e-6, "strided sub");
    let mut d = HostTensor::zeros(F16, ne).permuted([1, 0, 2, 3]);
    run_op(Op::Cpy, [0; 16], &[Some(&a)], &mut d).unwrap();
    assert_close(&d.to_f32(), &av, tol(F16), "strided f32 -> f16");
}
