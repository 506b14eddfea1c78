// CPY/CONT/DUP (mode 0: element e of src in logical order goes to element e of dst) and SET_ROWS
// (mode 1: src row (i1, i2, i3) goes to dst row idx[i1, i2 % ne11, i3 % ne12]). Types f32 (0) and f16
// (1). An f16 destination is written a whole word (two elements along dim 0) per invocation, so no two
// invocations share a word; the Rust side checks the alignment that needs. A SET_ROWS index outside
// dst skips the write and raises flag bit 2 (the run then fails, as with the CPU device).

struct P {
    mode: u32,
    st: u32,
    dt: u32,
    n: u32,
    s_ne0: u32, s_ne1: u32, s_ne2: u32,
    s_base: u32, s_nb0: u32, s_nb1: u32, s_nb2: u32, s_nb3: u32,
    d_ne0: u32, d_ne1: u32, d_ne2: u32,
    d_base: u32, d_nb0: u32, d_nb1: u32, d_nb2: u32, d_nb3: u32,
    i_base: u32, i_nb0: u32, i_nb1: u32, i_nb2: u32, i_ne1: u32, i_ne2: u32, i_wide: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> s: array<u32>;
@group(0) @binding(2) var<storage, read_write> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> d: array<u32>;
@group(0) @binding(4) var<storage, read_write> flags: array<atomic<u32>>;

fn ld(e: u32) -> f32 {
    let i0 = e % p.s_ne0;
    let i1 = (e / p.s_ne0) % p.s_ne1;
    let i2 = (e / (p.s_ne0 * p.s_ne1)) % p.s_ne2;
    let i3 = e / (p.s_ne0 * p.s_ne1 * p.s_ne2);
    let addr = p.s_base + i0 * p.s_nb0 + i1 * p.s_nb1 + i2 * p.s_nb2 + i3 * p.s_nb3;
    if (p.st == 1u) {
        return unpack2x16float(s[addr >> 2u])[(addr >> 1u) & 1u];
    }
    return bitcast<f32>(s[addr >> 2u]);
}

// Destination byte address of element `e` (mode 0: dst's logical order; mode 1: src's), or
// 0xffffffff when SET_ROWS's index is outside dst.
fn dst_addr(e: u32) -> u32 {
    if (p.mode == 0u) {
        let i0 = e % p.d_ne0;
        let i1 = (e / p.d_ne0) % p.d_ne1;
        let i2 = (e / (p.d_ne0 * p.d_ne1)) % p.d_ne2;
        let i3 = e / (p.d_ne0 * p.d_ne1 * p.d_ne2);
        return p.d_base + i0 * p.d_nb0 + i1 * p.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
    }
    let i0 = e % p.s_ne0;
    let i1 = (e / p.s_ne0) % p.s_ne1;
    let i2 = (e / (p.s_ne0 * p.s_ne1)) % p.s_ne2;
    let i3 = e / (p.s_ne0 * p.s_ne1 * p.s_ne2);
    let ia = p.i_base + i1 * p.i_nb0 + (i2 % p.i_ne1) * p.i_nb1 + (i3 % p.i_ne2) * p.i_nb2;
    let lo = idx[ia >> 2u];
    var bad = false;
    if (p.i_wide != 0u) {
        bad = idx[(ia >> 2u) + 1u] != 0u;
    } else {
        bad = bitcast<i32>(lo) < 0;
    }
    if (bad || lo >= p.d_ne1) {
        atomicOr(&flags[0], 2u);
        return 0xffffffffu;
    }
    return p.d_base + i0 * p.d_nb0 + lo * p.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
}

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let u = wg_linear(wg, nwg) * 256u + li;
    if (u >= p.n) {
        return;
    }
    if (p.dt == 0u) {
        let a = dst_addr(u);
        if (a != 0xffffffffu) {
            d[a >> 2u] = bitcast<u32>(ld(u));
        }
        return;
    }
    let e = 2u * u;
    let a = dst_addr(e);
    if (a != 0xffffffffu) {
        d[a >> 2u] = pack2x16float(vec2<f32>(ld(e), ld(e + 1u)));
    }
}
