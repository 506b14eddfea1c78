// ROPE, normal (pairs x[2i], x[2i+1]) and NeoX (pairs x[i], x[i + n_dims/2]) modes; f32 in and out;
// positions i32, one per i2. One invocation per pair; dims past n_dims are copied.
// With `table` set, (cos, sin) come from the host-computed cache (`clen` floats per i2, ggml's own
// libm values) and the rotation rounds like ggml-cpu (FMA); otherwise they are computed here with
// ggml's rope_yarn formula and the GPU's sin/cos.

struct P {
    neox: u32,
    n_dims: u32,
    n: u32,
    ne0: u32, ne1: u32, ne2: u32,
    theta_scale: f32,
    freq_scale: f32,
    ext_factor: f32,
    attn_factor: f32,
    corr0: f32,
    corr1: f32,
    a_base: u32, a_nb0: u32, a_nb1: u32, a_nb2: u32, a_nb3: u32,
    pos_base: u32,
    d_base: u32, d_nb0: u32, d_nb1: u32, d_nb2: u32, d_nb3: u32,
    table: u32,
    clen: u32,
    zero: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> pos: array<u32>;
@group(0) @binding(3) var<storage, read_write> d: array<u32>;
@group(0) @binding(4) var<storage, read_write> cs: array<f32>;

fn ld(ra: u32, i: u32) -> f32 {
    return bitcast<f32>(a[(ra + i * p.a_nb0) >> 2u]);
}

fn st(rd: u32, i: u32, v: f32) {
    d[(rd + i * p.d_nb0) >> 2u] = bitcast<u32>(v);
}

@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let id = wg_linear(wg, nwg) * 256u + li;
    if (id >= p.n) {
        return;
    }
    let half = p.ne0 / 2u;
    let ip = id % half;
    let i1 = (id / half) % p.ne1;
    let i2 = (id / (half * p.ne1)) % p.ne2;
    let i3 = id / (half * p.ne1 * p.ne2);
    let ra = p.a_base + i1 * p.a_nb1 + i2 * p.a_nb2 + i3 * p.a_nb3;
    let rd = p.d_base + i1 * p.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
    let i0 = 2u * ip;
    if (i0 >= p.n_dims) {
        st(rd, i0, ld(ra, i0));
        st(rd, i0 + 1u, ld(ra, i0 + 1u));
        return;
    }
    let j = rope_pair(ip, p.n_dims, p.neox != 0u);
    let j0 = j.x;
    let j1 = j.y;
    let x0 = ld(ra, j0);
    let x1 = ld(ra, j1);
    if (p.table != 0u) {
        let v = rope_rotate(x0, x1, cs[i2 * p.clen + i0], cs[i2 * p.clen + i0 + 1u]);
        st(rd, j0, v.x);
        st(rd, j1, v.y);
        return;
    }
    let position = f32(bitcast<i32>(pos[(p.pos_base >> 2u) + i2]));
    let theta_extrap = position * pow(p.theta_scale, f32(ip));
    let theta_interp = p.freq_scale * theta_extrap;
    var theta = theta_interp;
    var mscale = p.attn_factor;
    if (p.ext_factor != 0.0) {
        let y = (f32(ip) - p.corr0) / max(0.001, p.corr1 - p.corr0);
        let ramp = (1.0 - min(1.0, max(0.0, y))) * p.ext_factor;
        theta = theta_interp * (1.0 - ramp) + theta_extrap * ramp;
        mscale *= 1.0 + 0.1 * log(1.0 / p.freq_scale);
    }
    let c = cos(theta) * mscale;
    let s = sin(theta) * mscale;
    st(rd, j0, x0 * c - x1 * s);
    st(rd, j1, x0 * s + x1 * c);
}
