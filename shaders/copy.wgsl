// CPY/CONT/DUP (mode 0: element e of src in logical order goes to element e of dst) and SET_ROWS
// (mode 1: src row (i1, i2, i3) goes to dst row idx[i1, i2 % ne11, i3 % ne12]). Types f32 (0) and f16
// (1). An f16 destination is written a whole word (two elements along dim 0) per invocation, so no two
// invocations share a word; the Rust side checks the alignment that needs. A SET_ROWS index outside
// dst skips the write and raises flag bit 2 (the run then fails, as with the CPU device).
// A dispatch runs one or two such jobs (the K and V cache writes of a layer): the second one's
// units follow the first's, its tensors in the same windows (`n` = 0: no second job).

struct J {
    mode: u32,
    st: u32,
    dt: u32,
    n: u32,
    s_ne0: u32, s_ne1: u32, s_ne2: u32,
    s_base: u32, s_nb0: u32, s_nb1: u32, s_nb2: u32, s_nb3: u32,
    d_ne0: u32, d_ne1: u32, d_ne2: u32,
    d_base: u32, d_nb0: u32, d_nb1: u32, d_nb2: u32, d_nb3: u32,
    i_base: u32, i_nb0: u32, i_nb1: u32, i_nb2: u32, i_ne1: u32, i_ne2: u32, i_wide: u32,
    // Pads J to a multiple of 16 bytes, as uniform structs nested in P need.
    pad: u32,
}

struct P {
    j0: J,
    j1: J,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> s: array<u32>;
@group(0) @binding(2) var<storage, read_write> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> d: array<u32>;
@group(0) @binding(4) var<storage, read_write> flags: array<atomic<u32>>;

fn ld(q: J, e: u32) -> f32 {
    let i0 = e % q.s_ne0;
    let i1 = (e / q.s_ne0) % q.s_ne1;
    let i2 = (e / (q.s_ne0 * q.s_ne1)) % q.s_ne2;
    let i3 = e / (q.s_ne0 * q.s_ne1 * q.s_ne2);
    let addr = q.s_base + i0 * q.s_nb0 + i1 * q.s_nb1 + i2 * q.s_nb2 + i3 * q.s_nb3;
    if (q.st == 1u) {
        return unpack2x16float(s[addr >> 2u])[(addr >> 1u) & 1u];
    }
    return bitcast<f32>(s[addr >> 2u]);
}

// Destination byte address of element `e` (mode 0: dst's logical order; mode 1: src's), or
// 0xffffffff when SET_ROWS's index is outside dst.
fn dst_addr(q: J, e: u32) -> u32 {
    if (q.mode == 0u) {
        let i0 = e % q.d_ne0;
        let i1 = (e / q.d_ne0) % q.d_ne1;
        let i2 = (e / (q.d_ne0 * q.d_ne1)) % q.d_ne2;
        let i3 = e / (q.d_ne0 * q.d_ne1 * q.d_ne2);
        return q.d_base + i0 * q.d_nb0 + i1 * q.d_nb1 + i2 * q.d_nb2 + i3 * q.d_nb3;
    }
    let i0 = e % q.s_ne0;
    let i1 = (e / q.s_ne0) % q.s_ne1;
    let i2 = (e / (q.s_ne0 * q.s_ne1)) % q.s_ne2;
    let i3 = e / (q.s_ne0 * q.s_ne1 * q.s_ne2);
    let ia = q.i_base + i1 * q.i_nb0 + (i2 % q.i_ne1) * q.i_nb1 + (i3 % q.i_ne2) * q.i_nb2;
    let lo = idx[ia >> 2u];
    var bad = false;
    if (q.i_wide != 0u) {
        bad = idx[(ia >> 2u) + 1u] != 0u;
    } else {
        bad = bitcast<i32>(lo) < 0;
    }
    if (bad || lo >= q.d_ne1) {
        atomicOr(&flags[0], 2u);
        return 0xffffffffu;
    }
    return q.d_base + i0 * q.d_nb0 + lo * q.d_nb1 + i2 * q.d_nb2 + i3 * q.d_nb3;
}

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    var u = wg_linear(wg, nwg) * 256u + li;
    var q = p.j0;
    if (u >= q.n) {
        u -= q.n;
        q = p.j1;
        if (u >= q.n) {
            return;
        }
    }
    if (q.dt == 0u) {
        let a = dst_addr(q, u);
        if (a != 0xffffffffu) {
            d[a >> 2u] = bitcast<u32>(ld(q, u));
        }
        return;
    }
    let e = 2u * u;
    let a = dst_addr(q, e);
    if (a != 0xffffffffu) {
        d[a >> 2u] = pack2x16float(vec2<f32>(ld(q, e), ld(q, e + 1u)));
    }
}
