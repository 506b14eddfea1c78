// The `norm_pair` kernel's source (with norm.wgsl): a second norm and its weight MUL after a chain,
// into d2 and m2; the conversion reads m2.

@group(0) @binding(8) var<storage, read_write> d2: array<u32>;
@group(0) @binding(9) var<storage, read_write> w2: array<u32>;
@group(0) @binding(10) var<storage, read_write> m2: array<u32>;

// Element i of row `col` of the second MUL's output, for the activation conversion.
fn aq_ld(col: u32, i: u32) -> f32 {
    let i1 = col % p.ne1;
    let i2 = (col / p.ne1) % p.ne2;
    let i3 = col / (p.ne1 * p.ne2);
    return bitcast<f32>(m2[(p.m2_base + 4u * i + i1 * p.m2_nb1 + i2 * p.m2_nb2 + i3 * p.m2_nb3) >> 2u]);
}

// A chain with a residual ADD, then the next norm of its output and that norm's weight MUL (the
// post-attention norm, residual and FFN norm of a layer): the second norm's arithmetic is `norm`'s
// on the rows `o` holds once the whole workgroup has written them.
@compute @workgroup_size(256)
fn norm_pair(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let row = wg_linear(wg, nwg);
    if (row >= p.nrows) {
        return;
    }
    chain_row(row, li);
    storageBarrier();
    let i1 = row % p.ne1;
    let i2 = (row / p.ne1) % p.ne2;
    let i3 = row / (p.ne1 * p.ne2);
    let ro = p.o_base + i1 * p.o_nb1 + i2 * p.o_nb2 + i3 * p.o_nb3;
    let n = f32(p.ne0);
    var mean = 0.0;
    if (p.op2 == 0u) {
        var acc = vec2<f32>(0.0, 0.0);
        for (var i = li; i < p.ne0; i += 256u) {
            acc = ff_add(acc, vec2<f32>(bitcast<f32>(o[(ro + i * p.o_nb0) >> 2u]), 0.0));
        }
        mean = reduce_ff(li, acc).x / n;
    }
    var acc = vec2<f32>(0.0, 0.0);
    for (var i = li; i < p.ne0; i += 256u) {
        let x = bitcast<f32>(o[(ro + i * p.o_nb0) >> 2u]) - mean;
        acc = ff_add(acc, vec2<f32>(x * x, 0.0));
    }
    let scale = 1.0 / sqrt(ff_div(reduce_ff(li, acc), n) + p.eps2);
    let rd = p.d2_base + i1 * p.d2_nb1 + i2 * p.d2_nb2 + i3 * p.d2_nb3;
    let rw = p.w2_base + (i1 % p.w2_ne1) * p.w2_nb1 + (i2 % p.w2_ne2) * p.w2_nb2 + (i3 % p.w2_ne3) * p.w2_nb3;
    let rm = p.m2_base + i1 * p.m2_nb1 + i2 * p.m2_nb2 + i3 * p.m2_nb3;
    for (var i = li; i < p.ne0; i += 256u) {
        let x = bitcast<f32>(o[(ro + i * p.o_nb0) >> 2u]) - mean;
        let y = x * scale;
        d2[(rd + 4u * i) >> 2u] = bitcast<u32>(y);
        let z = hide(y) * bitcast<f32>(w2[(rw + 4u * i) >> 2u]);
        m2[(rm + 4u * i) >> 2u] = bitcast<u32>(z);
    }
    convert_row(row, li);
}
