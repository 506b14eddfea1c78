// ADD, SUB, MUL, DIV with ggml broadcasting: src1 repeats over dst (i % ne1 per dim). Strides in bytes;
// sources f32 or f16, destination f32.

struct P {
    op: u32,
    t0: u32,
    t1: u32,
    n: u32,
    ne0: u32, ne1: u32, ne2: u32, ne3: u32,
    a_base: u32, a_nb0: u32, a_nb1: u32, a_nb2: u32, a_nb3: u32,
    b_base: u32, b_nb0: u32, b_nb1: u32, b_nb2: u32, b_nb3: u32,
    b_ne0: u32, b_ne1: u32, b_ne2: u32, b_ne3: u32,
    d_base: u32, d_nb0: u32, d_nb1: u32, d_nb2: u32, d_nb3: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> d: array<u32>;

fn ld_a(addr: u32) -> f32 {
    if (p.t0 == 1u) {
        return unpack2x16float(a[addr >> 2u])[(addr >> 1u) & 1u];
    }
    return bitcast<f32>(a[addr >> 2u]);
}

fn ld_b(addr: u32) -> f32 {
    if (p.t1 == 1u) {
        return unpack2x16float(b[addr >> 2u])[(addr >> 1u) & 1u];
    }
    return bitcast<f32>(b[addr >> 2u]);
}

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * 256u + li;
    if (i >= p.n) {
        return;
    }
    let i0 = i % p.ne0;
    let i1 = (i / p.ne0) % p.ne1;
    let i2 = (i / (p.ne0 * p.ne1)) % p.ne2;
    let i3 = i / (p.ne0 * p.ne1 * p.ne2);
    let x = ld_a(p.a_base + i0 * p.a_nb0 + i1 * p.a_nb1 + i2 * p.a_nb2 + i3 * p.a_nb3);
    let y = ld_b(p.b_base + (i0 % p.b_ne0) * p.b_nb0 + (i1 % p.b_ne1) * p.b_nb1 + (i2 % p.b_ne2) * p.b_nb2 + (i3 % p.b_ne3) * p.b_nb3);
    var r: f32;
    switch p.op {
        case 0u: { r = x + y; }
        case 1u: { r = x - y; }
        case 2u: { r = x * y; }
        default: { r = x / y; }
    }
    d[(p.d_base + i0 * p.d_nb0 + i1 * p.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3) >> 2u] = bitcast<u32>(r);
}
