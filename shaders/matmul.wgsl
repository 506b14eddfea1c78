// MUL_MAT: dst[i, j] = sum_k src0[k, i] * src1[k, j] (ggml layout: src0 rows are weight rows, dst is
// f32 [ne01, ne11, ne12, ne13], src0 broadcast over dims 2 and 3). src0 of any type in quant.wgsl,
// dequantized in-shader; src1 f32. One workgroup per dst element (mat-vec shape: the weight row is read
// once per activation column).
// Large weights are split by rows: this dispatch covers src0 rows [r0, r0 + nr).

struct P {
    typ: u32,
    k: u32,
    r0: u32,
    nr: u32,
    ncols: u32,
    ne11: u32, ne12: u32,
    r2: u32, r3: u32,
    a_base: u32, a_nb1: u32, a_nb2: u32, a_nb3: u32,
    b_base: u32, b_nb0: u32, b_nb1: u32, b_nb2: u32, b_nb3: u32,
    d_base: u32, d_nb0: u32, d_nb1: u32, d_nb2: u32, d_nb3: u32,
    // mul_mat_float only: 1 for llamafile's tinyBLAS arithmetic (0 elsewhere: the slot is zeroed).
    tiny: u32,
    // Past the parameters the host writes: always 0 (see exact.wgsl's OPAQUE).
    zero: u32,
    // mul_mat_exact only: more products on the same activations in this dispatch (Q/K/V, gate/up).
    // Product j + 1 is `(typ, nr, a_base, a_nb1)` in jobs[2j] and `(d_base, d_nb1, first unit, 0)`
    // in jobs[2j + 1]; its weights and outputs lie in the same windows as the first product's.
    njobs: u32,
    jobs: array<vec4<u32>, 6>,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> src0: array<u32>;
@group(0) @binding(2) var<storage, read_write> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> d: array<u32>;

var<workgroup> red: array<f32, 64>;

// The dst element `id` of a kernel with one element per invocation (or workgroup): the byte addresses of
// its weight row and activation column, and of its result.
struct Elem {
    row: u32,
    vb: u32,
    o: u32,
}

fn elem(id: u32) -> Elem {
    let r = id % p.nr;
    let col = id / p.nr;
    let i1 = col % p.ne11;
    let i2 = (col / p.ne11) % p.ne12;
    let i3 = col / (p.ne11 * p.ne12);
    var e: Elem;
    e.row = p.a_base + r * p.a_nb1 + (i2 / p.r2) * p.a_nb2 + (i3 / p.r3) * p.a_nb3;
    e.vb = p.b_base + i1 * p.b_nb1 + i2 * p.b_nb2 + i3 * p.b_nb3;
    e.o = p.d_base + (p.r0 + r) * p.d_nb0 + i1 * p.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
    return e;
}

@compute @workgroup_size(64)
fn mul_mat(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let id = wg_linear(wg, nwg);
    if (id >= p.nr * p.ncols) {
        return;
    }
    let e = elem(id);
    let row = e.row;
    let vb = e.vb;
    var s = 0.0;
    if (p.k % 32u == 0u) {
        // Whole 32-element chunks: one scale read and word loads per chunk.
        var w: array<f32, 32>;
        for (var c = li; c < p.k / 32u; c += 64u) {
            deq32(p.typ, row, c, &w);
            let base = vb + 32u * c * p.b_nb0;
            for (var j = 0u; j < 32u; j++) {
                s += w[j] * bitcast<f32>(b[(base + j * p.b_nb0) >> 2u]);
            }
        }
    } else {
        for (var k = li; k < p.k; k += 64u) {
            s += deq(p.typ, row, k) * bitcast<f32>(b[(vb + k * p.b_nb0) >> 2u]);
        }
    }
    red[li] = s;
    workgroupBarrier();
    for (var h = 32u; h > 0u; h >>= 1u) {
        if (li < h) {
            red[li] += red[li + h];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        d[e.o >> 2u] = bitcast<u32>(red[0]);
    }
}

// The same product with one invocation per dst element (no workgroup reduction): on SIMD-over-
// invocations implementations (lavapipe) this keeps every lane busy on a different weight row.
@compute @workgroup_size(64)
fn mul_mat_thread(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let id = wg_linear(wg, nwg) * 64u + li;
    if (id >= p.nr * p.ncols) {
        return;
    }
    let e = elem(id);
    let row = e.row;
    let vb = e.vb;
    var s = 0.0;
    if (p.k % 32u == 0u) {
        var w: array<f32, 32>;
        for (var c = 0u; c < p.k / 32u; c++) {
            deq32(p.typ, row, c, &w);
            let base = vb + 32u * c * p.b_nb0;
            for (var j = 0u; j < 32u; j++) {
                s += w[j] * bitcast<f32>(b[(base + j * p.b_nb0) >> 2u]);
            }
        }
    } else {
        for (var k = 0u; k < p.k; k++) {
            s += deq(p.typ, row, k) * bitcast<f32>(b[(vb + k * p.b_nb0) >> 2u]);
        }
    }
    d[e.o >> 2u] = bitcast<u32>(s);
}

// ggml_vec_dot_f32/f16/bf16's end for weight row `row` and activations at `vb`: the 32 lane
// accumulators (over elements below `np`) reduced as GGML_F32x8_REDUCE, then the tail by FMA in f32
// or summed in f64 (float-float) for f16 and bf16.
fn vec_dot_end(acc: array<f32, 32>, row: u32, vb: u32, np: u32) -> f32 {
    var v: array<f32, 8>;
    for (var l = 0u; l < 8u; l++) {
        v[l] = (acc[l] + acc[16u + l]) + (acc[8u + l] + acc[24u + l]);
    }
    var s: f32;
    if (p.typ == 30u) {
        // ggml_vec_dot_bf16 (AVX2) ends with movehl/movehdup instead of two hadds.
        s = ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
    } else {
        s = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
    }
    var t = vec2<f32>(s, 0.0);
    for (var k = np; k < p.k; k++) {
        let w = deq(p.typ, row, k);
        let x = bitcast<f32>(b[(vb + k * p.b_nb0) >> 2u]);
        if (p.typ == 0u) {
            s = fmaf(w, x, s);
        } else {
            t = ff_add(t, vec2<f32>(w * x, 0.0));
        }
    }
    if (p.typ != 0u) {
        s = t.x;
    }
    return s;
}

// F32, F16 and BF16 weights as ggml-cpu multiplies them (activations arrive rounded to the type), one
// invocation per dst element. `tiny`: llamafile's tinyBLAS (8 FMA chains over elements l, l + 8, ...,
// then its hsum), which ggml uses from 2 columns when K is a multiple of 8; otherwise
// ggml_vec_dot_f32/f16/bf16 (four 8-lane FMA accumulators over 32-element steps, GGML_F32x8_REDUCE,
// the tail by FMA in f32 or summed in f64 for f16 and bf16).
@compute @workgroup_size(64)
fn mul_mat_float(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let id = wg_linear(wg, nwg) * 64u + li;
    if (id >= p.nr * p.ncols) {
        return;
    }
    let e = elem(id);
    let row = e.row;
    let vb = e.vb;
    var s: f32;
    if (p.tiny != 0u) {
        var acc: array<f32, 8>;
        for (var i = 0u; i + 8u <= p.k; i += 8u) {
            for (var l = 0u; l < 8u; l++) {
                let x = bitcast<f32>(b[(vb + (i + l) * p.b_nb0) >> 2u]);
                acc[l] = fmaf(deq(p.typ, row, i + l), x, acc[l]);
            }
        }
        s = ((acc[4] + acc[0]) + (acc[6] + acc[2])) + ((acc[5] + acc[1]) + (acc[7] + acc[3]));
    } else {
        var acc: array<f32, 32>;
        let np = p.k & ~31u;
        for (var c0 = 0u; c0 < np; c0 += 32u) {
            for (var i = 0u; i < 32u; i++) {
                let x = bitcast<f32>(b[(vb + (c0 + i) * p.b_nb0) >> 2u]);
                acc[i] = fmaf(deq(p.typ, row, c0 + i), x, acc[i]);
            }
        }
        s = vec_dot_end(acc, row, vb, np);
    }
    d[e.o >> 2u] = bitcast<u32>(s);
}

// Prompt-sized products: one invocation per (weight row, 8 consecutive activation columns of one
// (i2, i3) slice), so each decoded 32-element weight chunk serves 8 columns. Per column the sum runs
// in the same order as `mul_mat_thread`, so a column's result does not depend on the batch size.
@compute @workgroup_size(64)
fn mul_mat_cols(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let id = wg_linear(wg, nwg) * 64u + li;
    let ng = (p.ne11 + 7u) / 8u;
    if (id >= p.nr * ng * (p.ncols / p.ne11)) {
        return;
    }
    let r = id % p.nr;
    let g = id / p.nr;
    let j0 = (g % ng) * 8u;
    let slice = g / ng;
    let i2 = slice % p.ne12;
    let i3 = slice / p.ne12;
    let nc = min(8u, p.ne11 - j0);
    let row = p.a_base + r * p.a_nb1 + (i2 / p.r2) * p.a_nb2 + (i3 / p.r3) * p.a_nb3;
    let vb = p.b_base + j0 * p.b_nb1 + i2 * p.b_nb2 + i3 * p.b_nb3;
    var s: array<f32, 8>;
    if (p.k % 32u == 0u) {
        var w: array<f32, 32>;
        for (var c = 0u; c < p.k / 32u; c++) {
            deq32(p.typ, row, c, &w);
            for (var jj = 0u; jj < nc; jj++) {
                let base = vb + jj * p.b_nb1 + 32u * c * p.b_nb0;
                var t = s[jj];
                for (var j = 0u; j < 32u; j++) {
                    t += w[j] * bitcast<f32>(b[(base + j * p.b_nb0) >> 2u]);
                }
                s[jj] = t;
            }
        }
    } else {
        for (var k = 0u; k < p.k; k++) {
            let wv = deq(p.typ, row, k);
            for (var jj = 0u; jj < nc; jj++) {
                s[jj] += wv * bitcast<f32>(b[(vb + jj * p.b_nb1 + k * p.b_nb0) >> 2u]);
            }
        }
    }
    for (var jj = 0u; jj < nc; jj++) {
        let o = p.d_base + (p.r0 + r) * p.d_nb0 + (j0 + jj) * p.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
        d[o >> 2u] = bitcast<u32>(s[jj]);
    }
}
