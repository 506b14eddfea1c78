// SOFT_MAX over dim 0 of f32 rows: softmax(x * scale + mask), one workgroup per row. The mask (f32 or
// f16, `has_mask` 0/1/2 for none/f32/f16) is indexed by the row's i1 and broadcast over dims 2 and 3.
// As ggml_vec_soft_max_f32 (AVX2): ggml's vector exp on 8-element chunks and libm's expf on the tail,
// chunks summed 8 lanes at a time and then in f64 (float-float here), scaled by (1 / sum) rounded
// from f64: bit-identical to ggml-cpu.

struct P {
    has_mask: u32,
    scale: f32,
    ne0: u32, ne1: u32, ne2: u32,
    nrows: u32,
    a_base: u32, a_nb0: u32, a_nb1: u32, a_nb2: u32, a_nb3: u32,
    m_base: u32, m_nb0: u32, m_nb1: u32, m_nb2: u32, m_nb3: u32, m_ne2: u32, m_ne3: u32,
    d_base: u32, d_nb0: u32, d_nb1: u32, d_nb2: u32, d_nb3: u32,
    zero: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> m: array<u32>;
@group(0) @binding(3) var<storage, read_write> d: array<u32>;

var<workgroup> red: array<f32, 256>;

fn reduce_max(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (li < s) {
            red[li] = max(red[li], red[li + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn logit(ra: u32, rm: u32, i: u32) -> f32 {
    var x = bitcast<f32>(a[(ra + i * p.a_nb0) >> 2u]) * p.scale;
    if (p.has_mask == 1u) {
        x += bitcast<f32>(m[(rm + i * p.m_nb0) >> 2u]);
    } else if (p.has_mask == 2u) {
        let ma = rm + i * p.m_nb0;
        x += unpack2x16float(m[ma >> 2u])[(ma >> 1u) & 1u];
    }
    return x;
}

@compute @workgroup_size(256)
fn soft_max(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let row = wg_linear(wg, nwg);
    if (row >= p.nrows) {
        return;
    }
    let i1 = row % p.ne1;
    let i2 = (row / p.ne1) % p.ne2;
    let i3 = row / (p.ne1 * p.ne2);
    let ra = p.a_base + i1 * p.a_nb1 + i2 * p.a_nb2 + i3 * p.a_nb3;
    let rm = p.m_base + i1 * p.m_nb1 + (i2 % p.m_ne2) * p.m_nb2 + (i3 % p.m_ne3) * p.m_nb3;
    let rd = p.d_base + i1 * p.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
    var mx = bitcast<f32>(0xff800000u);
    for (var i = li; i < p.ne0; i += 256u) {
        mx = max(mx, logit(ra, rm, i));
    }
    mx = reduce_max(li, mx);
    // Chunks of 8 through the vector exp; ggml sums each chunk's lanes (halves, then pairs) in f32.
    let nv = p.ne0 & ~7u;
    var acc = vec2<f32>(0.0, 0.0);
    for (var c = 8u * li; c < nv; c += 2048u) {
        var e: array<f32, 8>;
        for (var k = 0u; k < 8u; k++) {
            e[k] = v_expf(logit(ra, rm, c + k) - mx);
        }
        let t0 = e[4] + e[0];
        let t1 = e[5] + e[1];
        let t2 = e[6] + e[2];
        let t3 = e[7] + e[3];
        acc = ff_add(acc, vec2<f32>((t0 + t2) + (t1 + t3), 0.0));
    }
    for (var i = nv + li; i < p.ne0; i += 256u) {
        acc = ff_add(acc, vec2<f32>(expf_libm(logit(ra, rm, i) - mx), 0.0));
    }
    let sum = reduce_ff(li, acc);
    let inv = select(ff_recip(sum), bitcast<f32>(0x7f800000u), sum.x == 0.0);
    for (var i = li; i < p.ne0; i += 256u) {
        let x = logit(ra, rm, i) - mx;
        let e = select(expf_libm(x), v_expf(x), i < nv);
        d[(rd + i * p.d_nb0) >> 2u] = bitcast<u32>(e * inv);
    }
}
