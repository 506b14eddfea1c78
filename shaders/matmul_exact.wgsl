// MUL_MAT's kernels with llama.cpp's CPU arithmetic (with matmul.wgsl: its P and bindings).

// ---- Products that follow llama.cpp's CPU arithmetic (activations packed by act_quant.wgsl modes 3
// and 4; `b_nb1..3` are then byte strides between activation columns). One invocation per (weight
// row, up to NCE columns of one (i2, i3) slice): each weight block is decoded once for all of them.

const NCE: u32 = 4u;

// The weight type of the product this invocation computes (one of the dispatch's jobs).
var<private> wtyp: u32;

// The 32 quants of a q4_0 / q5_0 / q8_0 block at byte `bb`, as signed integers.
fn w_block_q0(typ: u32, bb: u32, out: ptr<function, array<i32, 32>>) {
    switch typ {
        case 8u: {
            for (var w = 0u; w < 8u; w++) {
                let q = u32_at(bb + 2u + 4u * w);
                for (var k = 0u; k < 4u; k++) {
                    (*out)[4u * w + k] = sext8((q >> (8u * k)) & 0xffu);
                }
            }
        }
        case 6u, 7u: {
            // q5_0 (minus 16) and q5_1 (unsigned; its min is applied separately).
            let q51 = typ == 7u;
            let qh = u32_at(bb + select(2u, 4u, q51));
            let off = select(16, 0, q51);
            for (var w = 0u; w < 4u; w++) {
                let q = u32_at(bb + select(6u, 8u, q51) + 4u * w);
                for (var k = 0u; k < 4u; k++) {
                    let j = 4u * w + k;
                    let byte = (q >> (8u * k)) & 0xffu;
                    (*out)[j] = i32((byte & 0xfu) | (((qh >> j) & 1u) << 4u)) - off;
                    (*out)[j + 16u] = i32((byte >> 4u) | (((qh >> (j + 16u)) & 1u) << 4u)) - off;
                }
            }
        }
        default: {
            // q4_0 (minus 8) and q4_1 (unsigned; its min is applied separately).
            let q1 = typ == 3u;
            let off = select(8, 0, q1);
            for (var w = 0u; w < 4u; w++) {
                let q = u32_at(bb + select(2u, 4u, q1) + 4u * w);
                for (var k = 0u; k < 4u; k++) {
                    let j = 4u * w + k;
                    let byte = (q >> (8u * k)) & 0xffu;
                    (*out)[j] = i32(byte & 0xfu) - off;
                    (*out)[j + 16u] = i32(byte >> 4u) - off;
                }
            }
        }
    }
}

// Σ of 4 weight quants (from `wq` at `e0`) times the 4 activation quants packed in word `aw`.
fn dot4(wq: ptr<function, array<i32, 32>>, e0: u32, aw: u32) -> i32 {
    var s = 0;
    for (var t = 0u; t < 4u; t++) {
        s += (*wq)[e0 + t] * sext8((aw >> (8u * t)) & 0xffu);
    }
    return s;
}

// ggml's `hsum_float_8` of acc[a..a + 8]: the two halves, then pairs.
fn hsum8(acc: array<f32, 32>, a: u32) -> f32 {
    let r0 = acc[a + 4u] + acc[a];
    let r1 = acc[a + 5u] + acc[a + 1u];
    let r2 = acc[a + 6u] + acc[a + 2u];
    let r3 = acc[a + 7u] + acc[a + 3u];
    return (r0 + r2) + (r1 + r3);
}

// ggml's AVX2 `vec_dot_q*_0_q8_0`: per block, eight i32 lanes of four consecutive products,
// `acc[l] = fmaf(d_w·d_a, lane, acc[l])`, then ggml's horizontal sum order.
fn exact_q0(row: u32, col0: u32, nc: u32, out: ptr<function, array<f32, 4>>) {
    var acc: array<f32, 32>;
    var summ: array<f32, 4>;
    var wq: array<i32, 32>;
    let bs = block_bytes(wtyp);
    // q4_1/q5_1 take Q8_1 activations (10 words a block: d, s, quants) and add min·s per block.
    let q1 = wtyp == 3u || wtyp == 7u;
    let words = select(9u, 10u, q1);
    let qo = select(1u, 2u, q1);
    for (var i = 0u; i < p.k / 32u; i++) {
        let bb = row + i * bs;
        w_block_q0(wtyp, bb, &wq);
        let dw = rdh(bb);
        for (var jj = 0u; jj < NCE; jj++) {
            if (jj < nc) {
                let aw = ((col0 + jj * p.b_nb1) >> 2u) + words * i;
                let dd = dw * bitcast<f32>(b[aw]);
                if (q1) {
                    summ[jj] += rdh(bb + 2u) * bitcast<f32>(b[aw + 1u]);
                }
                for (var l = 0u; l < 8u; l++) {
                    acc[8u * jj + l] = fmaf(dd, f32(dot4(&wq, 4u * l, b[aw + qo + l])), acc[8u * jj + l]);
                }
            }
        }
    }
    for (var jj = 0u; jj < NCE; jj++) {
        (*out)[jj] = hsum8(acc, 8u * jj);
        if (q1) {
            (*out)[jj] += summ[jj];
        }
    }
}

// The 32 quants of sub-block `c` (elements 32c..32c+31) of a K-quant block: q2_K (typ 10, 0..3), q3_K
// (11, -4..3), q4_K (12, 0..15), q5_K (13, 0..31) or q6_K (14, -32..31).
fn w_sub_k(typ: u32, bb: u32, c: u32, out: ptr<function, array<i32, 32>>) {
    if (typ == 10u || typ == 11u) {
        // q2_K: 2-bit quants 0..3; q3_K: the same low bits, minus 4 where the hmask bit is clear.
        let n = c / 4u;
        let sh = 2u * (c % 4u);
        let qs = bb + select(16u, 32u, typ == 11u);
        for (var w = 0u; w < 8u; w++) {
            let q = u32_at(qs + 32u * n + 4u * w);
            var h = 0xffffffffu;
            if (typ == 11u) {
                h = u32_at(bb + 4u * w);
            }
            for (var k = 0u; k < 4u; k++) {
                let lo = i32((q >> (8u * k + sh)) & 3u);
                let hb = (h >> (8u * k + 4u * n + c % 4u)) & 1u;
                (*out)[4u * w + k] = lo - select(4, 0, hb != 0u);
            }
        }
        return;
    }
    if (typ == 12u || typ == 13u) {
        // q5_K: the same nibbles after 32 bytes of high bits (bit c of byte e).
        let q5 = typ == 13u;
        let shift = (c % 2u) * 4u;
        let qs = bb + select(16u, 48u, q5);
        for (var w = 0u; w < 8u; w++) {
            let q = u32_at(qs + (c / 2u) * 32u + 4u * w);
            var h = 0u;
            if (q5) {
                h = u32_at(bb + 16u + 4u * w);
            }
            for (var k = 0u; k < 4u; k++) {
                (*out)[4u * w + k] = i32(((q >> (8u * k + shift)) & 0xfu) | (((h >> (8u * k + c)) & 1u) << 4u));
            }
        }
        return;
    }
    let n = c / 4u;
    let qq = c % 4u;
    let lshift = select(0u, 4u, qq >= 2u);
    for (var w = 0u; w < 8u; w++) {
        let ql = u32_at(bb + 64u * n + (qq & 1u) * 32u + 4u * w);
        let qh = u32_at(bb + 128u + 32u * n + 4u * w);
        for (var k = 0u; k < 4u; k++) {
            let lo = (ql >> (8u * k + lshift)) & 0xfu;
            let hi = (qh >> (8u * k + 2u * qq)) & 3u;
            (*out)[4u * w + k] = i32(lo | (hi << 4u)) - 32;
        }
    }
}

// Offsets of a K-quant block's f16 scale d and min scale dmin (0 when it has none).
fn kq_d(typ: u32) -> u32 {
    switch typ {
        case 10u: { return 80u; }
        case 11u: { return 108u; }
        case 14u: { return 208u; }
        default: { return 0u; }
    }
}

fn kq_dmin(typ: u32) -> u32 {
    switch typ {
        case 10u: { return 82u; }
        case 12u, 13u: { return 2u; }
        default: { return 0u; }
    }
}

// Sub-block c's integer scales and mins for its two halves of 16: (scale0, scale1, min0, min1).
fn kq_scales(typ: u32, bb: u32, c: u32) -> vec4<i32> {
    switch typ {
        case 10u: {
            let s0 = rd8(bb + 2u * c);
            let s1 = rd8(bb + 2u * c + 1u);
            return vec4<i32>(i32(s0 & 0xfu), i32(s1 & 0xfu), i32(s0 >> 4u), i32(s1 >> 4u));
        }
        case 11u: {
            var sc: array<i32, 2>;
            for (var h = 0u; h < 2u; h++) {
                let k = 2u * c + h;
                let t = k % 4u;
                let g = k / 4u;
                let lo = (rd8(bb + 96u + t + 4u * (g % 2u)) >> (4u * (g / 2u))) & 0xfu;
                let hi = (rd8(bb + 104u + t) >> (2u * g)) & 3u;
                sc[h] = i32(lo | (hi << 4u)) - 32;
            }
            return vec4<i32>(sc[0], sc[1], 0, 0);
        }
        case 12u, 13u: {
            let sm = q4k_scale_min(bb + 4u, c);
            return vec4<i32>(i32(sm.x), i32(sm.x), i32(sm.y), i32(sm.y));
        }
        default: {
            return vec4<i32>(sext8(rd8(bb + 192u + 2u * c)), sext8(rd8(bb + 193u + 2u * c)), 0, 0);
        }
    }
}

// ggml's tiled K-quant path (q2_K to q6_K): exact integer sums per super-block, then
// `res = fmaf(-dmin, s2, d·s1)` (formats with mins), `acc = fmaf(res, d8, acc)`.
fn exact_k(row: u32, col0: u32, nc: u32, out: ptr<function, array<f32, 4>>) {
    var acc: array<f32, 4>;
    var wq: array<i32, 32>;
    let bs = block_bytes(wtyp);
    let dmin_at = kq_dmin(wtyp);
    for (var i = 0u; i < p.k / 256u; i++) {
        let bb = row + i * bs;
        var s1: array<i32, 4>;
        var s2: array<i32, 4>;
        for (var c = 0u; c < 8u; c++) {
            w_sub_k(wtyp, bb, c, &wq);
            let sc = kq_scales(wtyp, bb, c);
            for (var jj = 0u; jj < NCE; jj++) {
                if (jj < nc) {
                    let aw = ((col0 + jj * p.b_nb1) >> 2u) + 81u * i;
                    var lo = 0;
                    var hi = 0;
                    for (var l = 0u; l < 4u; l++) {
                        lo += dot4(&wq, 4u * l, b[aw + 1u + 8u * c + l]);
                        hi += dot4(&wq, 16u + 4u * l, b[aw + 5u + 8u * c + l]);
                    }
                    s1[jj] += sc.x * lo + sc.y * hi;
                    s2[jj] += sc.z * bitcast<i32>(b[aw + 65u + 2u * c]) + sc.w * bitcast<i32>(b[aw + 66u + 2u * c]);
                }
            }
        }
        for (var jj = 0u; jj < NCE; jj++) {
            if (jj < nc) {
                let d8 = bitcast<f32>(b[((col0 + jj * p.b_nb1) >> 2u) + 81u * i]);
                var res = rdh(bb + kq_d(wtyp)) * f32(s1[jj]);
                if (dmin_at != 0u) {
                    res = fmaf(-rdh(bb + dmin_at), f32(s2[jj]), res);
                }
                acc[jj] = fmaf(res, d8, acc[jj]);
            }
        }
    }
    *out = acc;
}

// ggml's AVX2 `vec_dot_q{2..6}_K_q8_K` (fewer than 8 columns): per super-block, eight i32 lanes of four
// consecutive products each (lanes 0-3 and 4-7 of a 32-quant vector, each half with its sub-block
// scale), then `acc[l] = fmaf(d·d8, lane, acc[l])`. Mins: q2_K in the same eight lanes (an FMA before
// the scales'), q4_K in four more lanes, q5_K in one scalar.
fn exact_k_vec(row: u32, col0: u32, nc: u32, out: ptr<function, array<f32, 4>>) {
    var acc: array<f32, 32>;
    var accm: array<f32, 16>;
    var wq: array<i32, 32>;
    let typ = wtyp;
    let k4 = typ == 12u || typ == 13u;
    let bs = block_bytes(typ);
    for (var i = 0u; i < p.k / 256u; i++) {
        let bb = row + i * bs;
        var lanes: array<i32, 32>;
        var mins: array<i32, 16>;
        for (var c = 0u; c < 8u; c++) {
            w_sub_k(typ, bb, c, &wq);
            if (typ == 14u) {
                // ggml takes q6_K quants unsigned (0..63) and subtracts 32·Σ scale·bsum per lane.
                for (var e = 0u; e < 32u; e++) {
                    wq[e] += 32;
                }
            }
            let sc = kq_scales(typ, bb, c);
            for (var jj = 0u; jj < NCE; jj++) {
                if (jj < nc) {
                    let aw = ((col0 + jj * p.b_nb1) >> 2u) + 81u * i;
                    for (var l = 0u; l < 8u; l++) {
                        lanes[8u * jj + l] += select(sc.x, sc.y, l >= 4u) * dot4(&wq, 4u * l, b[aw + 1u + 8u * c + l]);
                    }
                    if (k4) {
                        let q8s = bitcast<i32>(b[aw + 65u + 2u * c]) + bitcast<i32>(b[aw + 66u + 2u * c]);
                        mins[4u * jj + c / 2u] += sc.z * q8s;
                    }
                }
            }
        }
        for (var jj = 0u; jj < NCE; jj++) {
            if (jj < nc) {
                let aw = ((col0 + jj * p.b_nb1) >> 2u) + 81u * i;
                let d8 = bitcast<f32>(b[aw]);
                let dd = rdh(bb + kq_d(typ)) * d8;
                let m = 4u * jj;
                if (typ == 13u) {
                    let total = (mins[m] + mins[m + 1u]) + (mins[m + 2u] + mins[m + 3u]);
                    accm[m] = fmaf(-d8 * rdh(bb + 2u), f32(total), accm[m]);
                } else if (typ == 12u) {
                    let dmin = -d8 * rdh(bb + 2u);
                    for (var t = 0u; t < 4u; t++) {
                        accm[m + t] = fmaf(dmin, f32(mins[m + t]), accm[m + t]);
                    }
                }
                for (var l = 0u; l < 8u; l++) {
                    var lane = lanes[8u * jj + l];
                    if (typ == 10u) {
                        var prod = 0;
                        for (var g = 2u * l; g < 2u * l + 2u; g++) {
                            prod += i32(rd8(bb + g) >> 4u) * bitcast<i32>(b[aw + 65u + g]);
                        }
                        acc[8u * jj + l] = fmaf(-d8 * rdh(bb + 82u), f32(prod), acc[8u * jj + l]);
                    } else if (typ == 14u) {
                        var off = 0;
                        for (var g = 2u * l; g < 2u * l + 2u; g++) {
                            off += sext8(rd8(bb + 192u + g)) * bitcast<i32>(b[aw + 65u + g]);
                        }
                        lane -= 32 * off;
                    }
                    acc[8u * jj + l] = fmaf(dd, f32(lane), acc[8u * jj + l]);
                }
            }
        }
    }
    for (var jj = 0u; jj < NCE; jj++) {
        (*out)[jj] = hsum8(acc, 8u * jj);
        if (k4) {
            // q4_K: ggml's 4-lane horizontal sum; q5_K: its scalar (lanes 1..3 stay 0).
            let m = 4u * jj;
            (*out)[jj] += (accm[m] + accm[m + 2u]) + (accm[m + 1u] + accm[m + 3u]);
        }
    }
}

// The product of a dispatch's job list that unit `id` belongs to, and the unit's index within it.
struct Job {
    typ: u32,
    nr: u32,
    a_base: u32,
    a_nb1: u32,
    d_base: u32,
    d_nb1: u32,
    id: u32,
}

fn job_of(id: u32) -> Job {
    var j = Job(p.typ, p.nr, p.a_base, p.a_nb1, p.d_base, p.d_nb1, id);
    for (var k = 0u; k < p.njobs; k++) {
        let w = p.jobs[2u * k];
        let o = p.jobs[2u * k + 1u];
        if (id >= o.z) {
            j = Job(w.x, w.y, w.z, w.w, o.x, o.y, id - o.z);
        }
    }
    return j;
}

@compute @workgroup_size(64)
fn mul_mat_exact(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let job = job_of(wg_linear(wg, nwg) * 64u + li);
    wtyp = job.typ;
    let nr = job.nr;
    let id = job.id;
    let ng = (p.ne11 + NCE - 1u) / NCE;
    if (id >= nr * ng * (p.ncols / p.ne11)) {
        return;
    }
    let r = id % nr;
    let g = id / nr;
    let j0 = (g % ng) * NCE;
    let slice = g / ng;
    let i2 = slice % p.ne12;
    let i3 = slice / p.ne12;
    let nc = min(NCE, p.ne11 - j0);
    let row = job.a_base + r * job.a_nb1 + (i2 / p.r2) * p.a_nb2 + (i3 / p.r3) * p.a_nb3;
    let col0 = p.b_base + j0 * p.b_nb1 + i2 * p.b_nb2 + i3 * p.b_nb3;
    var s: array<f32, 4>;
    // From 8 columns ggml takes its tiled path, below them its AVX2 vec_dot.
    let kq = wtyp >= 10u && wtyp <= 14u;
    if (kq && p.ne11 >= 8u) {
        exact_k(row, col0, nc, &s);
    } else if (kq) {
        exact_k_vec(row, col0, nc, &s);
    } else {
        exact_q0(row, col0, nc, &s);
    }
    for (var jj = 0u; jj < NCE; jj++) {
        if (jj < nc) {
            let o = job.d_base + (p.r0 + r) * p.d_nb0 + (j0 + jj) * job.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
            d[o >> 2u] = bitcast<u32>(s[jj]);
        }
    }
}
