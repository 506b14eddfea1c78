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

// a · b + c with one rounding (Boldo and Melquiond's emulation through round-to-odd).
fn fmaf(a: f32, b: f32, c: f32) -> f32 {
    let p = two_prod(a, b);
    let pc = p.x + c;
    // Zeros, infinities and NaN need no emulation (and would poison the error terms).
    if (p.x == 0.0 || c == 0.0 || !finite(pc) || !finite(p.x)) {
        return p.x + c;
    }
    let s = two_sum(p.x, c);
    return s.x + add_odd(p.y, s.y);
}

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}
