// NORM (op 0) and RMS_NORM (op 1) over dim 0, one workgroup per row, f32 in and out.
// `chain` fuses the nodes that follow in the graph: 1 adds MUL by a weight row `w` (broadcast over
// rows) into `m`, 2 also ADDs the residual `r` into `o`, 3 ROPEs the product into `o` instead (table
// path of rope.wgsl: the host's cos/sin cache in `r`, `clen` floats per i2; a row is a head, so the
// pairs it rotates are all the workgroup's own); `sc` then SCALEs the rotation by `sc_val` into `q`
// (free in a ROPE chain: it converts no activations). Every node's output is still written, each
// value rounded as the separate kernels round it (`hide` keeps the compiler from fusing the steps).
// With `aq_mode`, the chain's last output is also converted for the MUL_MATs that read it, as the
// act_quant pass would (act_quant_block.wgsl), into `q`: one dispatch fewer per such input.
// Both follow ggml-cpu's packed-row path: sums (of x, of the f32 squares) are f64 there; here
// float-float (a pair hi + lo, error-free additions), which rounds to the same f32 in practice.

struct P {
    op: u32,
    eps: f32,
    ne0: u32, ne1: u32, ne2: u32,
    nrows: u32,
    a_base: u32, a_nb0: u32, a_nb1: u32, a_nb2: u32, a_nb3: u32,
    d_base: u32, d_nb0: u32, d_nb1: u32, d_nb2: u32, d_nb3: u32,
    chain: u32,
    w_base: u32, w_nb0: u32, w_nb1: u32, w_nb2: u32, w_nb3: u32,
    w_ne1: u32, w_ne2: u32, w_ne3: u32,
    m_base: u32, m_nb0: u32, m_nb1: u32, m_nb2: u32, m_nb3: u32,
    r_base: u32, r_nb0: u32, r_nb1: u32, r_nb2: u32, r_nb3: u32,
    o_base: u32, o_nb0: u32, o_nb1: u32, o_nb2: u32, o_nb3: u32,
    aq_mode: u32, q_base: u32,
    neox: u32, n_dims: u32, clen: u32,
    sc: u32, sc_val: f32,
    s_base: u32, s_nb0: u32, s_nb1: u32, s_nb2: u32, s_nb3: u32,
    zero: u32,
    // norm_pair only: the next norm (op2, eps2) of the chain's output `o` and its weight MUL, into
    // d2 and m2 (elements contiguous; row strides as the first norm's).
    op2: u32, eps2: f32,
    w2_base: u32, w2_nb1: u32, w2_nb2: u32, w2_nb3: u32, w2_ne1: u32, w2_ne2: u32, w2_ne3: u32,
    d2_base: u32, d2_nb1: u32, d2_nb2: u32, d2_nb3: u32,
    m2_base: u32, m2_nb1: u32, m2_nb2: u32, m2_nb3: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> d: array<u32>;
@group(0) @binding(3) var<storage, read_write> w: array<u32>;
@group(0) @binding(4) var<storage, read_write> m: array<u32>;
@group(0) @binding(5) var<storage, read_write> r: array<u32>;
@group(0) @binding(6) var<storage, read_write> o: array<u32>;
@group(0) @binding(7) var<storage, read_write> q: array<u32>;

fn aq_st(w: u32, v: u32) {
    q[(p.q_base >> 2u) + w] = v;
}

// Element j of a ROPE chain's rotation at `ro`, and its SCALE at `rs` when there is one.
fn rope_out(ro: u32, rs: u32, j: u32, v: f32) {
    o[(ro + j * p.o_nb0) >> 2u] = bitcast<u32>(v);
    if (p.sc != 0u) {
        q[(rs + j * p.s_nb0) >> 2u] = bitcast<u32>(hide(v) * p.sc_val);
    }
}

// The chain of `row` (every node's output), by the whole workgroup.
fn chain_row(row: u32, li: u32) {
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
    let rw = p.w_base + (i1 % p.w_ne1) * p.w_nb1 + (i2 % p.w_ne2) * p.w_nb2 + (i3 % p.w_ne3) * p.w_nb3;
    let rm = p.m_base + i1 * p.m_nb1 + i2 * p.m_nb2 + i3 * p.m_nb3;
    let rr = p.r_base + i1 * p.r_nb1 + i2 * p.r_nb2 + i3 * p.r_nb3;
    let ro = p.o_base + i1 * p.o_nb1 + i2 * p.o_nb2 + i3 * p.o_nb3;
    for (var i = li; i < p.ne0; i += 256u) {
        let x = bitcast<f32>(a[(ra + i * p.a_nb0) >> 2u]) - mean;
        let y = x * scale;
        d[(rd + i * p.d_nb0) >> 2u] = bitcast<u32>(y);
        if (p.chain >= 1u) {
            let z = hide(y) * bitcast<f32>(w[(rw + i * p.w_nb0) >> 2u]);
            m[(rm + i * p.m_nb0) >> 2u] = bitcast<u32>(z);
            if (p.chain == 2u) {
                let s = hide(z) + bitcast<f32>(r[(rr + i * p.r_nb0) >> 2u]);
                o[(ro + i * p.o_nb0) >> 2u] = bitcast<u32>(s);
            }
        }
    }
    if (p.chain == 3u) {
        storageBarrier();
        let rs = p.s_base + i1 * p.s_nb1 + i2 * p.s_nb2 + i3 * p.s_nb3;
        for (var ip = li; ip < p.ne0 / 2u; ip += 256u) {
            let i0 = 2u * ip;
            if (i0 >= p.n_dims) {
                rope_out(ro, rs, i0, bitcast<f32>(m[(rm + i0 * p.m_nb0) >> 2u]));
                rope_out(ro, rs, i0 + 1u, bitcast<f32>(m[(rm + (i0 + 1u) * p.m_nb0) >> 2u]));
                continue;
            }
            let j = rope_pair(ip, p.n_dims, p.neox != 0u);
            let x0 = bitcast<f32>(m[(rm + j.x * p.m_nb0) >> 2u]);
            let x1 = bitcast<f32>(m[(rm + j.y * p.m_nb0) >> 2u]);
            let v = rope_rotate(x0, x1, bitcast<f32>(r[i2 * p.clen + i0]), bitcast<f32>(r[i2 * p.clen + i0 + 1u]));
            rope_out(ro, rs, j.x, v.x);
            rope_out(ro, rs, j.y, v.y);
        }
    }
}

// Converts `row`'s last output for the products reading it (the row is their activation column).
fn convert_row(row: u32, li: u32) {
    if (p.aq_mode != 0u) {
        // Written by the whole workgroup: wait for every invocation's part.
        storageBarrier();
        let units = p.ne0 / block_len(p.aq_mode);
        for (var b = li; b < units; b += 256u) {
            aq_unit(p.aq_mode, p.ne0, row * units + b);
        }
    }
}

@compute @workgroup_size(256)
fn norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let row = wg_linear(wg, nwg);
    if (row >= p.nrows) {
        return;
    }
    chain_row(row, li);
    convert_row(row, li);
}
