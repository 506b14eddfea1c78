// NORM (op 0) and RMS_NORM (op 1) over dim 0, one workgroup per row, f32 in and out.
// Both follow ggml-cpu's packed-row path: sums (of x, of the f32 squares) are f64 there; here
// float-float (a pair hi + lo, error-free additions), which rounds to the same f32 in practice.

struct P {
    op: u32,
    eps: f32,
    ne0: u32, ne1: u32, ne2: u32,
    nrows: u32,
    a_base: u32, a_nb0: u32, a_nb1: u32, a_nb2: u32, a_nb3: u32,
    d_base: u32, d_nb0: u32, d_nb1: u32, d_nb2: u32, d_nb3: u32,
    zero: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> d: array<u32>;

@compute @workgroup_size(256)
fn norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
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
        var acc = vec2<f32>(0.0, 0.0);
        for (var i = li; i < p.ne0; i += 256u) {
            acc = ff_add(acc, vec2<f32>(bitcast<f32>(a[(ra + i * p.a_nb0) >> 2u]), 0.0));
        }
        mean = reduce_ff(li, acc).x / n;
    }
    var acc = vec2<f32>(0.0, 0.0);
    for (var i = li; i < p.ne0; i += 256u) {
        let x = bitcast<f32>(a[(ra + i * p.a_nb0) >> 2u]) - mean;
        acc = ff_add(acc, vec2<f32>(x * x, 0.0));
    }
    let scale = 1.0 / sqrt(ff_div(reduce_ff(li, acc), n) + p.eps);
    for (var i = li; i < p.ne0; i += 256u) {
        let x = bitcast<f32>(a[(ra + i * p.a_nb0) >> 2u]) - mean;
        d[(rd + i * p.d_nb0) >> 2u] = bitcast<u32>(x * scale);
    }
}
