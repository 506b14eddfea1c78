// NORM (op 0) and RMS_NORM (op 1) over dim 0, one workgroup per row, f32 in and out.
// RMS_NORM follows ggml-cpu: the squares (rounded to f32) are summed in f64 there; here in float-float
// (a pair hi + lo, error-free additions), which gives the same f32 mean in practice.

struct P {
    op: u32,
    eps: f32,
    ne0: u32, ne1: u32, ne2: u32,
    nrows: u32,
    a_base: u32, a_nb0: u32, a_nb1: u32, a_nb2: u32, a_nb3: u32,
    d_base: u32, d_nb0: u32, d_nb1: u32, d_nb2: u32, d_nb3: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> d: array<u32>;

var<workgroup> red: array<f32, 256>;
var<workgroup> red_lo: array<f32, 256>;

// a + b as an unevaluated pair (s, err) with s + err exact (Knuth's TwoSum).
fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = a + b;
    let bb = s - a;
    let err = (a - (s - bb)) + (b - bb);
    return vec2<f32>(s, err);
}

// (hi, lo) + (hi2, lo2), renormalized.
fn ff_add(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let s = two_sum(x.x, y.x);
    let t = s.y + (x.y + y.y);
    let r = s.x + t;
    return vec2<f32>(r, t - (r - s.x));
}

// The high 12 significant bits of x (the rest is exact in a second float).
fn hi12(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) & 0xfffff000u);
}

// (hi + lo) / n rounded to f32: a first quotient, corrected by the exact remainder (Dekker's product).
fn ff_div(x: vec2<f32>, n: f32) -> f32 {
    let q = x.x / n;
    let qh = hi12(q);
    let ql = q - qh;
    let nh = hi12(n);
    let nl = n - nh;
    let prod = q * n;
    let perr = ((qh * nh - prod) + qh * nl + ql * nh) + ql * nl;
    let rem = ((x.x - prod) - perr) + x.y;
    return q + rem / n;
}

fn reduce_ff(li: u32, v: vec2<f32>) -> vec2<f32> {
    red[li] = v.x;
    red_lo[li] = v.y;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (li < s) {
            let r = ff_add(vec2<f32>(red[li], red_lo[li]), vec2<f32>(red[li + s], red_lo[li + s]));
            red[li] = r.x;
            red_lo[li] = r.y;
        }
        workgroupBarrier();
    }
    let r = vec2<f32>(red[0], red_lo[0]);
    workgroupBarrier();
    return r;
}

fn reduce_sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (li < s) {
            red[li] += red[li + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = wg_linear(wg, nwg);
    if (row >= p.nrows) {
        return;
    }
    let i1 = row % p.ne1;
    let i2 = (row / p.ne1) % p.ne2;
    let i3 = row / (p.ne1 * p.ne2);
    let ra = p.a_base + i1 * p.a_nb1 + i2 * p.a_nb2 + i3 * p.a_nb3;
    let rd = p.d_base + i1 * p.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
    let n = f32(p.ne0);
    var mean = 0.0;
    if (p.op == 0u) {
        var s = 0.0;
        for (var i = li; i < p.ne0; i += 256u) {
            s += bitcast<f32>(a[(ra + i * p.a_nb0) >> 2u]);
        }
        mean = reduce_sum(li, s) / n;
    }
    var scale: f32;
    if (p.op == 1u) {
        var acc = vec2<f32>(0.0, 0.0);
        for (var i = li; i < p.ne0; i += 256u) {
            let x = bitcast<f32>(a[(ra + i * p.a_nb0) >> 2u]);
            acc = ff_add(acc, vec2<f32>(x * x, 0.0));
        }
        scale = 1.0 / sqrt(ff_div(reduce_ff(li, acc), n) + p.eps);
    } else {
        var s2 = 0.0;
        for (var i = li; i < p.ne0; i += 256u) {
            let x = bitcast<f32>(a[(ra + i * p.a_nb0) >> 2u]) - mean;
            s2 += x * x;
        }
        scale = 1.0 / sqrt(reduce_sum(li, s2) / n + p.eps);
    }
    for (var i = li; i < p.ne0; i += 256u) {
        let x = bitcast<f32>(a[(ra + i * p.a_nb0) >> 2u]) - mean;
        d[(rd + i * p.d_nb0) >> 2u] = bitcast<u32>(x * scale);
    }
}
