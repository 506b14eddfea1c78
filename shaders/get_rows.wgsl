// GET_ROWS: dst[:, i10, i11, i12] = src0[:, idx[i10, i11, i12], i11, i12] as f32; src0 of any type in
// quant.wgsl, indices i32. Rows outside [r0, r0 + nr) belong to another dispatch (large src0 split by
// rows) and are skipped; an index outside src0 writes zeros and raises flag bit 1 (the run then fails
// and the client's connection closes, as with the CPU device).

struct P {
    typ: u32,
    ne0: u32,
    r0: u32,
    nr: u32,
    rows_total: u32,
    n: u32,
    ne10: u32, ne11: u32,
    a_base: u32, a_nb1: u32, a_nb2: u32, a_nb3: u32,
    i_base: u32, i_nb0: u32, i_nb1: u32, i_nb2: u32,
    d_base: u32, d_nb0: u32, d_nb1: u32, d_nb2: u32, d_nb3: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> src0: array<u32>;
@group(0) @binding(2) var<storage, read_write> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> d: array<u32>;
@group(0) @binding(4) var<storage, read_write> flags: array<atomic<u32>>;

@compute @workgroup_size(256)
fn get_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * 256u + li;
    if (i >= p.n) {
        return;
    }
    let i0 = i % p.ne0;
    let i10 = (i / p.ne0) % p.ne10;
    let i11 = (i / (p.ne0 * p.ne10)) % p.ne11;
    let i12 = i / (p.ne0 * p.ne10 * p.ne11);
    let r = bitcast<i32>(idx[(p.i_base + i10 * p.i_nb0 + i11 * p.i_nb1 + i12 * p.i_nb2) >> 2u]);
    let o = (p.d_base + i0 * p.d_nb0 + i10 * p.d_nb1 + i11 * p.d_nb2 + i12 * p.d_nb3) >> 2u;
    if (r < 0 || u32(r) >= p.rows_total) {
        if (p.r0 == 0u) {
            d[o] = 0u;
            atomicOr(&flags[0], 1u);
        }
        return;
    }
    let ru = u32(r);
    if (ru < p.r0 || ru >= p.r0 + p.nr) {
        return;
    }
    let row = p.a_base + (ru - p.r0) * p.a_nb1 + i11 * p.a_nb2 + i12 * p.a_nb3;
    d[o] = bitcast<u32>(deq(p.typ, row, i0));
}
