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
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> src0: array<u32>;
@group(0) @binding(2) var<storage, read_write> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> d: array<u32>;

var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn mul_mat(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let id = wg_linear(wg, nwg);
    if (id >= p.nr * p.ncols) {
        return;
    }
    let r = id % p.nr;
    let col = id / p.nr;
    let i1 = col % p.ne11;
    let i2 = (col / p.ne11) % p.ne12;
    let i3 = col / (p.ne11 * p.ne12);
    let row = p.a_base + r * p.a_nb1 + (i2 / p.r2) * p.a_nb2 + (i3 / p.r3) * p.a_nb3;
    let vb = p.b_base + i1 * p.b_nb1 + i2 * p.b_nb2 + i3 * p.b_nb3;
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
        let o = p.d_base + (p.r0 + r) * p.d_nb0 + i1 * p.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
        d[o >> 2u] = bitcast<u32>(red[0]);
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
    let r = id % p.nr;
    let col = id / p.nr;
    let i1 = col % p.ne11;
    let i2 = (col / p.ne11) % p.ne12;
    let i3 = col / (p.ne11 * p.ne12);
    let row = p.a_base + r * p.a_nb1 + (i2 / p.r2) * p.a_nb2 + (i3 / p.r3) * p.a_nb3;
    let vb = p.b_base + i1 * p.b_nb1 + i2 * p.b_nb2 + i3 * p.b_nb3;
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
    let o = p.d_base + (p.r0 + r) * p.d_nb0 + i1 * p.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
    d[o >> 2u] = bitcast<u32>(s);
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

// ---- Products that follow llama.cpp's CPU arithmetic exactly (activations packed by act_quant.wgsl
// modes 3 and 4; `b_nb1..3` are then byte strides between activation columns).

// Quant `e` (0..) of the packed activation quants starting at byte `a`.
fn act_q(a: u32, e: u32) -> i32 {
    return sext8((b[(a >> 2u) + (e >> 2u)] >> ((e & 3u) * 8u)) & 0xffu);
}

// Quant `e` (0..31) of a q4_0 / q5_0 / q8_0 weight block at byte `bb`, as a signed integer.
fn w_q0(typ: u32, bb: u32, e: u32) -> i32 {
    switch typ {
        case 8u: {
            return sext8(rd8(bb + 2u + e));
        }
        case 6u: {
            let byte = rd8(bb + 6u + (e % 16u));
            let nib = select(byte >> 4u, byte & 0xfu, e < 16u);
            return i32(nib | (((u32_at(bb + 2u) >> e) & 1u) << 4u)) - 16;
        }
        default: {
            let byte = rd8(bb + 2u + (e % 16u));
            return i32(select(byte >> 4u, byte & 0xfu, e < 16u)) - 8;
        }
    }
}

// ggml's AVX2 `vec_dot_q*_0_q8_0` for one weight row and one activation column: per block, eight i32
// lanes of four consecutive products each, `acc[l] = fma(d_w·d_a, lane, acc[l])`, then ggml's
// horizontal sum order.
fn dot_q0(typ: u32, row: u32, col: u32, nblk: u32) -> f32 {
    var acc: array<f32, 8>;
    let bs = block_bytes(typ);
    for (var i = 0u; i < nblk; i++) {
        let bb = row + i * bs;
        let ab = col + 36u * i;
        let dd = rdh(bb) * bitcast<f32>(b[ab >> 2u]);
        for (var l = 0u; l < 8u; l++) {
            var s = 0;
            for (var t = 0u; t < 4u; t++) {
                s += w_q0(typ, bb, 4u * l + t) * act_q(ab + 4u, 4u * l + t);
            }
            acc[l] = fma(dd, f32(s), acc[l]);
        }
    }
    let r0 = acc[4] + acc[0];
    let r1 = acc[5] + acc[1];
    let r2 = acc[6] + acc[2];
    let r3 = acc[7] + acc[3];
    return (r0 + r2) + (r1 + r3);
}

// ggml's tiled K-quant path (q4_K, q6_K) for one weight row and one activation column: exact integer
// sums per super-block, then `res = fma(-dmin, s2, d·s1)`, `acc = fma(res, d8, acc)`.
fn dot_k(typ: u32, row: u32, col: u32, nblk: u32) -> f32 {
    var acc = 0.0;
    for (var i = 0u; i < nblk; i++) {
        let ab = col + 324u * i;
        let d8 = bitcast<f32>(b[ab >> 2u]);
        var s1 = 0;
        if (typ == 12u) {
            let bb = row + i * 144u;
            var s2 = 0;
            for (var c = 0u; c < 8u; c++) {
                let sm = q4k_scale_min(bb + 4u, c);
                var s = 0;
                for (var l = 0u; l < 32u; l++) {
                    let q = rd8(bb + 16u + (c / 2u) * 32u + l);
                    let nib = select(q >> 4u, q & 0xfu, c % 2u == 0u);
                    s += i32(nib) * act_q(ab + 4u, 32u * c + l);
                }
                s1 += i32(sm.x) * s;
                let bsum = bitcast<i32>(b[(ab >> 2u) + 65u + 2u * c]) + bitcast<i32>(b[(ab >> 2u) + 66u + 2u * c]);
                s2 += i32(sm.y) * bsum;
            }
            let res = fma(-rdh(bb + 2u), f32(s2), rdh(bb) * f32(s1));
            acc = fma(res, d8, acc);
        } else {
            let bb = row + i * 210u;
            for (var g = 0u; g < 16u; g++) {
                var s = 0;
                for (var l = 0u; l < 16u; l++) {
                    let j = 16u * g + l;
                    let n = j / 128u;
                    let qq = (j % 128u) / 32u;
                    let jl = j % 32u;
                    let ql = rd8(bb + 64u * n + jl + (qq & 1u) * 32u);
                    let lo = select(ql & 0xfu, ql >> 4u, qq >= 2u);
                    let hi = (rd8(bb + 128u + 32u * n + jl) >> (2u * qq)) & 3u;
                    s += (i32(lo | (hi << 4u)) - 32) * act_q(ab + 4u, j);
                }
                s1 += sext8(rd8(bb + 192u + g)) * s;
            }
            acc = fma(rdh(bb + 208u) * f32(s1), d8, acc);
        }
    }
    return acc;
}

@compute @workgroup_size(64)
fn mul_mat_exact(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let id = wg_linear(wg, nwg) * 64u + li;
    if (id >= p.nr * p.ncols) {
        return;
    }
    let r = id % p.nr;
    let c = id / p.nr;
    let i1 = c % p.ne11;
    let i2 = (c / p.ne11) % p.ne12;
    let i3 = c / (p.ne11 * p.ne12);
    let row = p.a_base + r * p.a_nb1 + (i2 / p.r2) * p.a_nb2 + (i3 / p.r3) * p.a_nb3;
    let col = p.b_base + i1 * p.b_nb1 + i2 * p.b_nb2 + i3 * p.b_nb3;
    var s: f32;
    if (p.typ == 12u || p.typ == 14u) {
        s = dot_k(p.typ, row, col, p.k / 256u);
    } else {
        s = dot_q0(p.typ, row, col, p.k / 32u);
    }
    let o = p.d_base + (p.r0 + r) * p.d_nb0 + i1 * p.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
    d[o >> 2u] = bitcast<u32>(s);
}
