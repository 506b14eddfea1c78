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
