// Element-wise UNARY ops (ggml_unary_op codes), SCALE/SQR/SQRT/LOG/SIN/COS (codes 100..105) and
// the GLU family. Sources and destinations F32 or F16 with any strides; computed in f32.
//
// k_unary: grid-stride over the elements of d (same shape as a).
//   block 256, grid.x = min(ceil(n / 256), 65535), n = elements of d; no dynamic shared memory.
// k_glu: grid-stride over the elements of d.
//   block 256, grid.x = min(ceil(n / 256), 65535), n = elements of d; no dynamic shared memory.
//
// GELU and GELU_QUICK (and GEGLU, GEGLU_QUICK) compute what ggml-cpu's f16 tables hold, on the fly:
// the input rounded to f16, the closed form, the result rounded to f16 (GELU clamped outside
// (-10, 10) first, as ggml-cpu does for f32). The f16 rounding hides the last-ulp differences
// between the device's tanhf/expf and glibc's, so the values are the CPU's (almost always exactly).

struct UnaryP { Tensor a, d; int op; float p0, p1; };
struct GluP { Tensor a, b, d; int op; int swapped; float alpha, limit; };

#define GELU_COEF_A 0.044715f
#define GELU_QUICK_COEF -1.702f
#define SQRT_2_OVER_PI 0.79788456080286535587989211986876f
#define SQRT_2_INV 0.70710678118654752440084436210484f

__device__ __forceinline__ float op_gelu(float x) {
    return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * x * (1.0f + GELU_COEF_A * x * x)));
}
__device__ __forceinline__ float op_gelu_quick(float x) {
    return x * (1.0f / (1.0f + expf(GELU_QUICK_COEF * x)));
}
__device__ __forceinline__ float round_f16(float x) {
    return f16_to_f32(f32_to_f16(x));
}
__device__ __forceinline__ float gelu_table(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return round_f16(op_gelu(round_f16(x)));
}
__device__ __forceinline__ float gelu_quick_table(float x) {
    return round_f16(op_gelu_quick(round_f16(x)));
}
__device__ __forceinline__ float op_gelu_erf(float x) {
    return 0.5f * x * (1.0f + erff(x * SQRT_2_INV));
}
__device__ __forceinline__ float op_silu(float x) {
    return x / (1.0f + expf(-x));
}

__device__ __forceinline__ float unary_op(int op, float x, float p0, float p1) {
    switch (op) {
    case 0: return fabsf(x);
    case 1: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
    case 2: return -x;
    case 3: return x > 0.0f ? 1.0f : 0.0f;
    case 4: return tanhf(x);
    case 5: return x > 0.0f ? x : expm1f(x);
    case 6: return x > 0.0f ? x : 0.0f;
    case 7: return 1.0f / (1.0f + expf(-x));
    case 8: return gelu_table(x);
    case 9: return gelu_quick_table(x);
    case 10: return op_silu(x);
    case 11: return x * fminf(1.0f, fmaxf(0.0f, (x + 3.0f) / 6.0f));
    case 12: return fminf(1.0f, fmaxf(0.0f, (x + 3.0f) / 6.0f));
    case 13: return expf(x);
    case 14: return expm1f(x);
    case 15: return x > 20.0f ? x : logf(1.0f + expf(x));
    case 16: return op_gelu_erf(x);
    case 18: return floorf(x);
    case 19: return ceilf(x);
    case 20: return roundf(x);
    case 21: return truncf(x);
    case 100: return x * p0 + p1;
    case 101: return x * x;
    case 102: return sqrtf(x);
    case 103: return logf(x);
    case 104: return sinf(x);
    case 105: return cosf(x);
    default: return x;
    }
}

extern "C" __global__ void k_unary(const UnaryP p) {
    const i64 n = t_nel(p.d);
    GRID_STRIDE(k, n) {
        i64 i0, i1, i2, i3;
        unravel(k, p.d.ne, i0, i1, i2, i3);
        const float x = ld_f(p.a.data + t_off(p.a, i0, i1, i2, i3), p.a.type);
        st_f(p.d.data + t_off(p.d, i0, i1, i2, i3), p.d.type, unary_op(p.op, x, p.p0, p.p1));
    }
}

// std::min(x, hi) and std::clamp(x, lo, hi) as ggml-cpu evaluates them.
__device__ __forceinline__ float std_min(float x, float hi) { return hi < x ? hi : x; }
__device__ __forceinline__ float std_clamp(float x, float lo, float hi) {
    return x < lo ? lo : (hi < x ? hi : x);
}

__device__ __forceinline__ float glu_op(int op, float x, float g, float alpha, float limit) {
    switch (op) {
    case 0: return x > 0.0f ? x * g : 0.0f;                     // REGLU
    case 1: return gelu_table(x) * g;                           // GEGLU
    case 2: return op_silu(x) * g;                              // SWIGLU
    case 3: {                                                   // SWIGLU_OAI
        const float xc = std_min(x, limit);
        const float gc = std_clamp(g, -limit, limit);
        return xc / (1.0f + expf(alpha * (-xc))) * (gc + 1.0f);
    }
    case 4: return op_gelu_erf(x) * g;                          // GEGLU_ERF
    case 5: return gelu_quick_table(x) * g;                     // GEGLU_QUICK
    case 6: {                                                   // SWIGLU_CLAMP
        const float xc = std_min(x, limit);
        const float gc = std_clamp(g, -limit, limit);
        return op_silu(xc) * gc;
    }
    default: return 0.0f;
    }
}

// x = a(i0), g = b(i0) when b is present; otherwise a's rows hold both halves: x = a(i0),
// g = a(i0 + d.ne0), or the other way round when swapped.
extern "C" __global__ void k_glu(const GluP p) {
    const i64 n = t_nel(p.d);
    const i64 nc = p.d.ne[0];
    GRID_STRIDE(k, n) {
        i64 i0, i1, i2, i3;
        unravel(k, p.d.ne, i0, i1, i2, i3);
        float x, g;
        if (p.b.data) {
            x = ld_f(p.a.data + t_off(p.a, i0, i1, i2, i3), p.a.type);
            g = ld_f(p.b.data + t_off(p.b, i0, i1, i2, i3), p.b.type);
        } else {
            const char *row = p.a.data + t_off(p.a, 0, i1, i2, i3);
            const float lo = ld_f(row + i0 * p.a.nb[0], p.a.type);
            const float hi = ld_f(row + (i0 + nc) * p.a.nb[0], p.a.type);
            x = p.swapped ? hi : lo;
            g = p.swapped ? lo : hi;
        }
        st_f(p.d.data + t_off(p.d, i0, i1, i2, i3), p.d.type, glu_op(p.op, x, g, p.alpha, p.limit));
    }
}
