// NORM (op 0) and RMS_NORM (op 1) over dim 0, one workgroup per row, f32 in and out.

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
    var s2 = 0.0;
    for (var i = li; i < p.ne0; i += 256u) {
        let x = bitcast<f32>(a[(ra + i * p.a_nb0) >> 2u]) - mean;
        s2 += x * x;
    }
    let scale = 1.0 / sqrt(reduce_sum(li, s2) / n + p.eps);
    for (var i = li; i < p.ne0; i += 256u) {
        let x = bitcast<f32>(a[(ra + i * p.a_nb0) >> 2u]) - mean;
        d[(rd + i * p.d_nb0) >> 2u] = bitcast<u32>(x * scale);
    }
}
