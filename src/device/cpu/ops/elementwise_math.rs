//! Scalar formulas of ggml's CPU element-wise ops (`unary-ops.cpp`, `vec.h`), in f32 and in ggml's
//! evaluation order. GELU and GELU_QUICK go through ggml's f16 lookup tables, which we reproduce by
//! rounding the input and the result to f16.

use half::f16;

use crate::ggml::{GgmlType, GluOp, UnaryOp};

const GELU_COEF_A: f32 = 0.044715;
const GELU_QUICK_COEF: f32 = -1.702;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const SQRT_2_INV: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// C's `MIN(a, b)` macro: `a < b ? a : b` (a NaN `a` yields `b`).
#[inline]
pub fn c_min(a: f32, b: f32) -> f32 {
    if a < b { a } else { b }
}

/// C's `MAX(a, b)` macro: `a > b ? a : b`.
#[inline]
pub fn c_max(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// `std::min(x, hi)`: `hi < x ? hi : x` (a NaN `x` stays NaN).
#[inline]
fn std_min(x: f32, hi: f32) -> f32 {
    if hi < x { hi } else { x }
}

/// `std::clamp(x, lo, hi)`.
#[inline]
fn std_clamp(x: f32, lo: f32, hi: f32) -> f32 {
    if x < lo {
        lo
    } else if hi < x {
        hi
    } else {
        x
    }
}

#[inline]
fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// `ggml_gelu_f32`: the tanh approximation.
#[inline]
pub fn gelu_exact(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (GELU_COEF_A * x).mul_add(x, 1.0)).tanh())
}

/// `ggml_gelu_quick_f32`.
#[inline]
pub fn gelu_quick_exact(x: f32) -> f32 {
    x * (1.0 / (1.0 + (GELU_QUICK_COEF * x).exp()))
}

/// GELU as the CPU backend computes it for a source of type `src` (f16 table; f32 inputs are clamped
/// outside (-10, 10) first).
#[inline]
pub fn gelu(x: f32, src: GgmlType) -> f32 {
    match src {
        GgmlType::F32 if x <= -10.0 => 0.0,
        GgmlType::F32 if x >= 10.0 => x,
        GgmlType::F32 | GgmlType::F16 => GELU_TABLE[f16::from_f32(x).to_bits() as usize].to_f32(),
        _ => gelu_exact(x),
    }
}

/// ggml's `ggml_table_gelu_f16`: GELU of every f16 value, rounded to f16 (built once, 128 KiB).
static GELU_TABLE: std::sync::LazyLock<Vec<f16>> = std::sync::LazyLock::new(|| {
    (0..=u16::MAX)
        .map(|h| f16::from_f32(gelu_exact(f16::from_bits(h).to_f32())))
        .collect()
});

/// ggml's two f16 tables as f16 bits, indexed by the f16 bits of the input: GELU (65536 entries),
/// then GELU_QUICK (65536). GPU devices upload them to compute the same values.
pub fn gelu_tables_f16() -> Vec<u16> {
    let quick = (0..=u16::MAX)
        .map(|h| f16::from_f32(gelu_quick_exact(f16::from_bits(h).to_f32())).to_bits());
    GELU_TABLE
        .iter()
        .map(|v| v.to_bits())
        .chain(quick)
        .collect()
}

/// GELU_QUICK through the f16 table (no clamping, so large |x| saturate like ggml's table does).
#[inline]
pub fn gelu_quick(x: f32, src: GgmlType) -> f32 {
    match src {
        GgmlType::F32 | GgmlType::F16 => round_f16(gelu_quick_exact(round_f16(x))),
        _ => gelu_quick_exact(x),
    }
}

#[inline]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * SQRT_2_INV))
}

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `erff`, correctly rounded in practice: the all-positive series
/// erf(x) = 2/sqrt(pi) · exp(-x²) · Σ (2x²)^n · x / (2n+1)!! evaluated in f64 (|erf| rounds to 1 in f32
/// beyond |x| = 4).
pub fn erf(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let ax = f64::from(x.abs());
    if ax >= 4.0 {
        return 1f32.copysign(x);
    }
    let x2 = 2.0 * ax * ax;
    let mut term = ax;
    let mut sum = ax;
    let mut n = 0.0;
    while term > sum * 1e-17 {
        n += 1.0;
        term *= x2 / (2.0 * n + 1.0);
        sum += term;
    }
    let v = 2.0 / std::f64::consts::PI.sqrt() * (-ax * ax).exp() * sum;
    (v.min(1.0) as f32).copysign(x)
}

/// XIELU parameters (op_params f32 slots 1..=4).
#[derive(Clone, Copy, Debug, Default)]
pub struct Xielu {
    pub alpha_n: f32,
    pub alpha_p: f32,
    pub beta: f32,
    pub eps: f32,
}

/// One UNARY op on one value; `src` is the source type (it selects the GELU table behaviour).
#[inline]
pub fn unary(op: UnaryOp, x: f32, src: GgmlType, xi: Xielu) -> f32 {
    use UnaryOp::*;
    match op {
        Abs => x.abs(),
        Sgn => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        Neg => -x,
        Step => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Tanh => x.tanh(),
        Elu => {
            if x > 0.0 {
                x
            } else {
                x.exp_m1()
            }
        }
        Relu => {
            if x > 0.0 {
                x
            } else {
                0.0
            }
        }
        Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Gelu => gelu(x, src),
        GeluQuick => gelu_quick(x, src),
        Silu => silu(x),
        Hardswish => x * 1f32.min(0f32.max((x + 3.0) / 6.0)),
        Hardsigmoid => 1f32.min(0f32.max((x + 3.0) / 6.0)),
        Exp => x.exp(),
        // ggml computes expf(x) - 1 here, not expm1f.
        Expm1 => x.exp() - 1.0,
        Softplus => {
            if x > 20.0 {
                x
            } else {
                (1.0 + x.exp()).ln()
            }
        }
        GeluErf => gelu_erf(x),
        Xielu => {
            if x > 0.0 {
                xi.alpha_p * x * x + xi.beta * x
            } else {
                (x.min(xi.eps).exp_m1() - x) * xi.alpha_n + xi.beta * x
            }
        }
        Floor => x.floor(),
        Ceil => x.ceil(),
        Round => x.round(),
        Trunc => x.trunc(),
    }
}

#[inline]
fn each(row: &mut [f32], f: impl Fn(f32) -> f32) {
    row.iter_mut().for_each(|v| *v = f(*v));
}

/// Applies `op` to a whole row; the op is matched once so each loop is specialised.
pub fn unary_row(op: UnaryOp, row: &mut [f32], src: GgmlType, xi: Xielu) {
    macro_rules! by_op {
        ($($v:ident),*) => {
            match op {
                $(UnaryOp::$v => each(row, |x| unary(UnaryOp::$v, x, src, xi)),)*
            }
        };
    }
    by_op!(
        Abs,
        Sgn,
        Neg,
        Step,
        Tanh,
        Elu,
        Relu,
        Sigmoid,
        Gelu,
        GeluQuick,
        Silu,
        Hardswish,
        Hardsigmoid,
        Exp,
        Expm1,
        Softplus,
        GeluErf,
        Xielu,
        Floor,
        Ceil,
        Round,
        Trunc
    );
}

/// GLU parameters (op_params f32 slots 2 and 3).
#[derive(Clone, Copy, Debug, Default)]
pub struct GluParams {
    pub alpha: f32,
    pub limit: f32,
}

/// One GLU op: `x` is the activated half, `g` the gate it multiplies.
#[inline]
pub fn glu(op: GluOp, x: f32, g: f32, src: GgmlType, p: GluParams) -> f32 {
    match op {
        GluOp::Reglu => {
            if x > 0.0 {
                x * g
            } else {
                0.0
            }
        }
        GluOp::Geglu => match src {
            GgmlType::F32 if x <= -10.0 => 0.0,
            GgmlType::F32 if x >= 10.0 => x * g,
            _ => gelu(x, src) * g,
        },
        GluOp::Swiglu => silu(x) * g,
        GluOp::SwigluOai => {
            let x = std_min(x, p.limit);
            let y = std_clamp(g, -p.limit, p.limit);
            x / (1.0 + (p.alpha * -x).exp()) * (y + 1.0)
        }
        GluOp::GegluErf => 0.5 * x * (1.0 + erf(x * SQRT_2_INV)) * g,
        GluOp::GegluQuick => gelu_quick(x, src) * g,
        GluOp::SwigluClamp => {
            let x = std_min(x, p.limit);
            let y = std_clamp(g, -p.limit, p.limit);
            silu(x) * y
        }
    }
}

/// Applies `op` to rows `x` and `g` (same length as `out`), matching the op once.
pub fn glu_row(op: GluOp, out: &mut [f32], x: &[f32], g: &[f32], src: GgmlType, p: GluParams) {
    macro_rules! by_op {
        ($($v:ident),*) => {
            match op {
                $(GluOp::$v => out
                    .iter_mut()
                    .zip(x.iter().zip(g))
                    .for_each(|(o, (&x, &g))| *o = glu(GluOp::$v, x, g, src, p)),)*
            }
        };
    }
    by_op!(
        Reglu,
        Geglu,
        Swiglu,
        SwigluOai,
        GegluErf,
        GegluQuick,
        SwigluClamp
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_reference_values() {
        // erf values from the closed form tables (double precision).
        let cases = [
            (0.0f64, 0.0f64),
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (1.5, 0.966_105_146_475_310_7),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (3.9, 0.999_999_965_207_9),
        ];
        for (x, want) in cases {
            for s in [1.0, -1.0] {
                let got = erf((x * s) as f32);
                assert_eq!(got, (want * s) as f32, "erf({})", x * s);
            }
        }
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(-10.0), -1.0);
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_table_behaviour() {
        assert_eq!(gelu(-12.0, GgmlType::F32), 0.0);
        assert_eq!(gelu(12.5, GgmlType::F32), 12.5);
        // Inside the range the result is an f16 value.
        let v = gelu(0.3337, GgmlType::F32);
        assert_eq!(v, round_f16(v));
        assert!((f64::from(v) - 0.2105).abs() < 1e-3);
        // The quick table overflows to NaN at -inf like ggml's.
        assert!(gelu_quick(-1e6, GgmlType::F32).is_nan());
        assert_eq!(c_max(c_min(f32::NAN, 2.0), -2.0), 2.0);
    }
}
