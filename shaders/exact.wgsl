// IEEE single-precision helpers for bit-exact agreement with ggml-cpu. ggml rounds once where it uses
// FMA (AVX2 build) or f64 (`ggml_float`); WGSL's fma() may be a separate multiply and add (lavapipe),
// so these build the exact results from error-free transformations of plain f32 operations.

// A zero the compiler cannot see: every entry point that uses these helpers first sets it from a
// parameter word that is always 0. Shader compilers (Mesa's NIR) otherwise apply inexact algebra such
// as (a + b) - a = b, which erases the error terms below.
var<private> OPAQUE: u32;

fn hide(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) | OPAQUE);
}

// a + b = s + e exactly (Knuth's TwoSum; no branch, any magnitudes).
fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = hide(a + b);
    let bb = hide(s - a);
    return vec2<f32>(s, (a - (s - bb)) + (b - bb));
}

// Veltkamp split: a = hi + lo with at most 12 significant bits each.
fn split12(a: f32) -> vec2<f32> {
    let c = 4097.0 * a;
    let hi = c - (c - a);
    return vec2<f32>(hi, a - hi);
}

// a · b = p + e exactly (Dekker), barring overflow and underflow.
fn two_prod(a: f32, b: f32) -> vec2<f32> {
    let p = a * b;
    let x = split12(a);
    let y = split12(b);
    return vec2<f32>(p, ((x.x * y.x - p) + x.x * y.y + x.y * y.x) + x.y * y.y);
}

// a + b rounded to odd: exact sums stay, inexact ones take the neighbour with an odd last bit.
fn add_odd(a: f32, b: f32) -> f32 {
    let t = two_sum(a, b);
    let bits = bitcast<u32>(t.x);
    if (t.y == 0.0 || (bits & 1u) == 1u) {
        return t.x;
    }
    // The exact sum lies between t.x and its neighbour on the side of t.y.
    return bitcast<f32>(select(bits - 1u, bits + 1u, (t.y > 0.0) == (t.x > 0.0)));
}

// Set at pipeline creation when the device found its own fma() fused (see `probe::fma_is_fused`).
override FUSED_FMA: bool = false;

// a · b + c with one rounding: the hardware's where fused, else Boldo and Melquiond's emulation through
// round-to-odd.
fn fmaf(a: f32, b: f32, c: f32) -> f32 {
    if (FUSED_FMA) {
        return fma(a, b, c);
    }
    let p = a * b;
    let pc = p + c;
    // Zeros, infinities and NaN need no emulation (and would poison the error terms).
    if (p == 0.0 || c == 0.0 || !finite(pc) || !finite(p)) {
        return pc;
    }
    // Keep the splitting below overflow and the error terms above underflow: scale by 2^±64.
    let big = 1.8446744e19;
    if (max(abs(a), abs(b)) > 1.2676506e30) {
        if (abs(a) >= abs(b)) {
            return fma_core(a / big, b, c / big) * big;
        }
        return fma_core(a, b / big, c / big) * big;
    }
    if (abs(p) < 8.6736174e-19 && abs(c) < 8.6736174e-19) {
        return fma_core(a * big, b, c * big) / big;
    }
    return fma_core(a, b, c);
}

fn fma_core(a: f32, b: f32, c: f32) -> f32 {
    let p = two_prod(a, b);
    let s = two_sum(p.x, c);
    return s.x + add_odd(p.y, s.y);
}

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// ---- Float-float (hi + lo, about 48 significant bits), renormalized so that hi = RN(hi + lo).

fn ff_add(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let s = two_sum(x.x, y.x);
    return two_sum(s.x, s.y + (x.y + y.y));
}

fn ff_mul(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let p = two_prod(x.x, y.x);
    return two_sum(p.x, p.y + (x.x * y.y + x.y * y.x));
}

// 1 / (hi + lo) rounded to f32: a first quotient corrected by its exact remainder.
fn ff_recip(x: vec2<f32>) -> f32 {
    let q = 1.0 / x.x;
    let e = two_prod(q, x.x);
    let rem = ((1.0 - e.x) - e.y) - q * x.y;
    return q + rem * q;
}

// (hi + lo) / n rounded to f32, likewise.
fn ff_div(x: vec2<f32>, n: f32) -> f32 {
    let q = x.x / n;
    let prod = two_prod(q, n);
    let rem = ((x.x - prod.x) - prod.y) + x.y;
    return q + rem / n;
}

var<workgroup> ff_red: array<vec2<f32>, 256>;

// The float-float sum of `v` over a workgroup of 256 (every invocation gets it).
fn reduce_ff(li: u32, v: vec2<f32>) -> vec2<f32> {
    ff_red[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (li < s) {
            ff_red[li] = ff_add(ff_red[li], ff_red[li + s]);
        }
        workgroupBarrier();
    }
    let r = ff_red[0];
    workgroupBarrier();
    return r;
}

fn ffc(hi: u32, lo: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(hi), bitcast<f32>(lo));
}

// 2^(j/32) as glibc's exp2f table holds it (doubles), split into float-float.
const EXP2_HI = array<u32, 32>(
    0x3f800000u, 0x3f82cd87u, 0x3f85aac3u, 0x3f88980fu, 0x3f8b95c2u, 0x3f8ea43au, 0x3f91c3d3u, 0x3f94f4f0u,
    0x3f9837f0u, 0x3f9b8d3au, 0x3f9ef532u, 0x3fa27043u, 0x3fa5fed7u, 0x3fa9a15bu, 0x3fad583fu, 0x3fb123f6u,
    0x3fb504f3u, 0x3fb8fbafu, 0x3fbd08a4u, 0x3fc12c4du, 0x3fc5672au, 0x3fc9b9beu, 0x3fce248cu, 0x3fd2a81eu,
    0x3fd744fdu, 0x3fdbfbb8u, 0x3fe0ccdfu, 0x3fe5b907u, 0x3feac0c7u, 0x3fefe4bau, 0x3ff5257du, 0x3ffa83b3u);
const EXP2_LO = array<u32, 32>(
    0x00000000u, 0xb34ea7a9u, 0x334f9891u, 0xb37eda4bu, 0xb260aba1u, 0xb3697465u, 0x33675624u, 0xb32e0212u,
    0x33231b71u, 0xb30c5563u, 0x33412342u, 0x30c3125au, 0xb32c9d5eu, 0xb3162b08u, 0xb22deaf6u, 0xb37c5aa8u,
    0x32cfe77au, 0x330ec5f7u, 0xb3414fe8u, 0xb2d6663eu, 0x320aa837u, 0xb37323a2u, 0x3228fc24u, 0xb35c1daau,
    0xb2d4a58au, 0xb3504a1cu, 0xb21eab59u, 0xb2441be6u, 0xb24116deu, 0xb348464au, 0x32292436u, 0xb2923758u);

// libm's expf as glibc (2.28 and later) computes it: x·32/ln2 = k + r, 2^(k/32) from the table times
// a cubic in r, all in double, then rounded to float. Evaluated here in float-float, it gives glibc's
// float unless glibc's double lies within about 2^-44 of a rounding boundary (and for results below
// 2^-126, rounded twice here). ggml-cpu calls it in FLASH_ATTN_EXT and on SOFT_MAX tails.
fn expf_libm(x: f32) -> f32 {
    if (x != x) {
        return x;
    }
    if (x > bitcast<f32>(0x42b17217u)) {
        return bitcast<f32>(0x7f800000u);
    }
    if (x < bitcast<f32>(0xc2cff1b4u)) {
        return 0.0;
    }
    // z = x · 32/ln2 with the constant in three floats, so that r = z - k keeps ~48 bits.
    let a = two_prod(x, bitcast<f32>(0x4238aa3bu));
    let b = two_prod(x, bitcast<f32>(0x35257060u));
    var k = round(a.x);
    var r = two_sum(a.x - k, b.x);
    r = ff_add(r, vec2<f32>(a.y, 0.0));
    r = ff_add(r, vec2<f32>(b.y + x * bitcast<f32>(0xa8800000u), 0.0));
    if (r.x > 0.5) {
        k += 1.0;
        r = ff_add(r, vec2<f32>(-1.0, 0.0));
    } else if (r.x < -0.5) {
        k -= 1.0;
        r = ff_add(r, vec2<f32>(1.0, 0.0));
    }
    // glibc's poly_scaled: (C0·r + C1)·r² + (C2·r + 1).
    let c0 = ffc(0x35e357c2u, 0x29391239u);
    let c1 = ffc(0x3975fe73u, 0xacf053b1u);
    let c2 = ffc(0x3cb17218u, 0xae73ad2au);
    let zp = ff_add(ff_mul(c0, r), c1);
    var y = ff_add(ff_mul(c2, r), vec2<f32>(1.0, 0.0));
    y = ff_add(ff_mul(zp, ff_mul(r, r)), y);
    let ki = i32(k);
    let j = u32(ki & 31);
    y = ff_mul(y, ffc(EXP2_HI[j], EXP2_LO[j]));
    return ldexp(y.x, ki >> 5u);
}

// ggml's vectorized expf (`ggml_v_expf`, AVX2), one lane, FMA for FMA (see cpu::ops::vexp).
fn v_expf(x: f32) -> f32 {
    let rr = bitcast<f32>(0x4b400000u);
    let z = fmaf(x, bitcast<f32>(0x3fb8aa3bu), rr);
    let n = z - rr;
    let b = fmaf(-n, bitcast<f32>(0x35bfbe8eu), fmaf(-n, bitcast<f32>(0x3f317200u), x));
    let e = bitcast<u32>(z) << 23u;
    let k = bitcast<f32>(e + 0x3f800000u);
    let u = b * b;
    let j = fmaf(
        fmaf(fmaf(bitcast<f32>(0x3c072010u), b, bitcast<f32>(0x3d2b9f17u)), u,
             fmaf(bitcast<f32>(0x3e2aaf33u), b, bitcast<f32>(0x3efffedbu))),
        u, bitcast<f32>(0x3f7ffff6u) * b);
    if (abs(n) <= 126.0 || n != n) {
        return fmaf(k, j, k);
    }
    let g = select(0u, 0x82000000u, n <= 0.0);
    let s1 = bitcast<f32>(g + 0x7f000000u);
    let s2 = bitcast<f32>(e - g);
    if (abs(n) > 192.0) {
        return s1 * s1;
    }
    return fmaf(s2, j, s2) * s1;
}

// ROPE's element pair for pair `ip` of a row: adjacent (normal mode) or n_dims/2 apart (NeoX).
fn rope_pair(ip: u32, n_dims: u32, neox: bool) -> vec2<u32> {
    return select(vec2<u32>(2u * ip, 2u * ip + 1u), vec2<u32>(ip, ip + n_dims / 2u), neox);
}

// A pair rotated by a (cos, sin) of the host's table, rounded like ggml-cpu (FMA).
fn rope_rotate(x0: f32, x1: f32, c: f32, s: f32) -> vec2<f32> {
    return vec2<f32>(fmaf(x0, c, -(x1 * s)), fmaf(x0, s, x1 * c));
}
