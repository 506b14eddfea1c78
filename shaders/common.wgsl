// Helpers shared by every kernel: activation functions and bit manipulation. No bindings here.

const PI: f32 = 3.14159265358979;

// Linear workgroup index for dispatches folded into x and y (see `kernels::groups`).
fn wg_linear(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}

fn sext8(b: u32) -> i32 {
    return bitcast<i32>(b << 24u) >> 24u;
}

fn tanh_safe(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

fn gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + tanh_safe(0.7978845608028654 * x * (1.0 + 0.044715 * x * x)));
}

fn gelu_quick(x: f32) -> f32 {
    return x / (1.0 + exp(clamp(-1.702 * x, -80.0, 80.0)));
}

fn erf_approx(x: f32) -> f32 {
    // Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7).
    let s = sign(x);
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
    return s * y;
}

fn gelu_erf(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf_approx(x * 0.7071067811865476));
}

fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(clamp(-x, -80.0, 80.0)));
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(clamp(-x, -80.0, 80.0)));
}

// x rounded to the nearest f16 (ties to even), as f32; beyond f16's range ±inf, like ggml's conversion.
fn f16r(x: f32) -> f32 {
    if (abs(x) >= 65520.0) {
        return select(bitcast<f32>(0xff800000u), bitcast<f32>(0x7f800000u), x > 0.0);
    }
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

// x rounded to the nearest bf16 (ties to even), as f32 (ggml's `GGML_FP32_TO_BF16`; NaN stays NaN).
fn bf16r(x: f32) -> f32 {
    let u = bitcast<u32>(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return bitcast<f32>((u | 0x00400000u) & 0xffff0000u);
    }
    return bitcast<f32>((u + 0x7fffu + ((u >> 16u) & 1u)) & 0xffff0000u);
}
