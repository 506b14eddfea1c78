// FLASH_ATTN_EXT: one workgroup per (query row, head, dim 3); blocks of 64 KV positions, online
// softmax. q f32; k, v f16 or f32 (`kt`, `vt`: 0 f32, 1 f16); optional mask (f16/f32, `has_mask`
// 0/1/2 for none/f32/f16); GQA by head ratio; logit softcap (`scale` arrives divided by it).
// dst f32 [Dv, n_head, n_batch, d3]. Each invocation owns output dims d = li, li + 64, ... (Dv <= 512).
// Both of ggml-cpu's numeric paths, step for step (`vec` = 1 for its vector path, used below 64 query
// rows), so that results are bit-identical without a softcap (tanh is the GPU's):
// - vector: Q rounded to f16 for an f16 K, K·Q in AVX2's 32-lane FMA layout, the running maximum
//   updated key by key with libm's expf, an f16 V accumulator for f16 V;
// - tiled: K·Q as one FMA chain, the maximum updated once per block of 64 keys, the block's weights
//   through ggml's vector exp and summed in f64 (float-float here), V accumulated by FMA in key order.
// With `aq_mode` (blocks dividing Dv, contiguous dst), the workgroup writing an output row (the single
// chunk's, or the reduce's) also converts it for the MUL_MAT reading the (reshaped) result, as the
// act_quant pass would (act_quant_block.wgsl, `aq_k` elements per column), into `aq`.

struct P {
    dk: u32, dv: u32, n_kv: u32, nq: u32, nh: u32,
    rh: u32, r3: u32,
    scale: f32, softcap: f32,
    kt: u32, vt: u32, has_mask: u32, m_ne2: u32, m_ne3: u32, vec: u32,
    q_base: u32, q_nb0: u32, q_nb1: u32, q_nb2: u32, q_nb3: u32,
    k_base: u32, k_nb0: u32, k_nb1: u32, k_nb2: u32, k_nb3: u32,
    v_base: u32, v_nb0: u32, v_nb1: u32, v_nb2: u32, v_nb3: u32,
    m_base: u32, m_nb0: u32, m_nb1: u32, m_nb2: u32, m_nb3: u32,
    d_base: u32, d_nb0: u32, d_nb1: u32, d_nb2: u32, d_nb3: u32,
    kv_chunk: u32, n_chunk: u32, rows: u32,
    aq_mode: u32, aq_k: u32,
    zero: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> q: array<u32>;
@group(0) @binding(2) var<storage, read_write> k: array<u32>;
@group(0) @binding(3) var<storage, read_write> v: array<u32>;
@group(0) @binding(4) var<storage, read_write> m: array<u32>;
@group(0) @binding(5) var<storage, read_write> d: array<u32>;
// Per (row, head, i3, chunk): maximum, sum, then the DV accumulators.
@group(0) @binding(6) var<storage, read_write> part: array<f32>;
@group(0) @binding(7) var<storage, read_write> aq: array<u32>;

// A block's scores, then its weights (`flash_attn`: 64; `flash_attn_rows`: 64 per query row).
var<workgroup> scores: array<f32, 256>;

fn ldk(a: u32) -> f32 {
    if (p.kt == 1u) {
        return unpack2x16float(k[a >> 2u])[(a >> 1u) & 1u];
    }
    return bitcast<f32>(k[a >> 2u]);
}

fn ldv(a: u32) -> f32 {
    if (p.vt == 1u) {
        return unpack2x16float(v[a >> 2u])[(a >> 1u) & 1u];
    }
    return bitcast<f32>(v[a >> 2u]);
}

// Q element as the dot product sees it (rounded to K's type on the vector path).
fn ldq(a: u32) -> f32 {
    let x = bitcast<f32>(q[a >> 2u]);
    return select(x, f16r(x), p.vec == 1u && p.kt == 1u);
}

// The V accumulator after a step (f16 storage on the vector path with f16 V).
fn vacc(x: f32) -> f32 {
    return select(x, f16r(x), p.vec == 1u && p.vt == 1u);
}

// Element i of activation column `col` of the contiguous output, as written.
fn aq_ld(col: u32, i: u32) -> f32 {
    return bitcast<f32>(d[(p.d_base >> 2u) + col * p.aq_k + i]);
}

fn aq_st(w: u32, v: u32) {
    aq[w] = v;
}

// With `aq_mode`, converts the output row at byte `oa` once the workgroup has written it (unless
// `live` is false): the row is whole units of the product's activations. Call in uniform control
// flow.
fn aq_row(oa: u32, li: u32, live: bool) {
    if (p.aq_mode != 0u) {
        storageBarrier();
        if (!live) {
            return;
        }
        let bs = block_len(p.aq_mode);
        let u0 = ((oa - p.d_base) >> 2u) / bs;
        for (var b = li; b < p.dv / bs; b += 64u) {
            aq_unit(p.aq_mode, p.aq_k, u0 + b);
        }
    }
}

fn ldm(a: u32) -> f32 {
    if (p.has_mask == 2u) {
        return unpack2x16float(m[a >> 2u])[(a >> 1u) & 1u];
    }
    return bitcast<f32>(m[a >> 2u]);
}

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}

// ggml_vec_dot_f16 (AVX2): four 8-lane FMA accumulators over 32-element steps, GGML_F32x8_REDUCE,
// the tail in f64.
fn dot_vec(qa: u32, kr: u32) -> f32 {
    var acc: array<f32, 32>;
    let np = p.dk & ~31u;
    for (var c0 = 0u; c0 < np; c0 += 32u) {
        for (var i = 0u; i < 32u; i++) {
            let c = c0 + i;
            acc[i] = fmaf(ldq(qa + c * p.q_nb0), ldk(kr + c * p.k_nb0), acc[i]);
        }
    }
    var x0: array<f32, 8>;
    for (var l = 0u; l < 8u; l++) {
        x0[l] = (acc[l] + acc[16u + l]) + (acc[8u + l] + acc[24u + l]);
    }
    let t0 = x0[0] + x0[4];
    let t1 = x0[1] + x0[5];
    let t2 = x0[2] + x0[6];
    let t3 = x0[3] + x0[7];
    var total = vec2<f32>((t0 + t1) + (t2 + t3), 0.0);
    for (var c = np; c < p.dk; c++) {
        total = ff_add(total, vec2<f32>(ldq(qa + c * p.q_nb0) * ldk(kr + c * p.k_nb0), 0.0));
    }
    return total.x;
}

// The tiled path's K·Q: one FMA chain over DK.
fn dot_chain(qa: u32, kr: u32) -> f32 {
    var kq = 0.0;
    for (var c = 0u; c < p.dk; c++) {
        kq = fmaf(ldq(qa + c * p.q_nb0), ldk(kr + c * p.k_nb0), kq);
    }
    return kq;
}

// Sum of 8 weights as ggml_vec_soft_max_f32's AVX2 reduction: halves, then pairs.
fn reduce8(o: u32) -> f32 {
    let t0 = scores[o + 4u] + scores[o];
    let t1 = scores[o + 5u] + scores[o + 1u];
    let t2 = scores[o + 6u] + scores[o + 2u];
    let t3 = scores[o + 7u] + scores[o + 3u];
    return (t0 + t2) + (t1 + t3);
}

@compute @workgroup_size(64)
fn flash_attn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let wid = wg_linear(wg, nwg);
    let chunk = wid % p.n_chunk;
    let id = wid / p.n_chunk;
    if (id >= p.rows) {
        return;
    }
    let iq = id % p.nq;
    let h = (id / p.nq) % p.nh;
    let i3 = id / (p.nq * p.nh);
    let qa = p.q_base + iq * p.q_nb1 + h * p.q_nb2 + i3 * p.q_nb3;
    let ka = p.k_base + (h / p.rh) * p.k_nb2 + (i3 / p.r3) * p.k_nb3;
    let va = p.v_base + (h / p.rh) * p.v_nb2 + (i3 / p.r3) * p.v_nb3;
    let ma = p.m_base + iq * p.m_nb1 + (h % p.m_ne2) * p.m_nb2 + (i3 % p.m_ne3) * p.m_nb3;
    let ninf = neg_inf();
    var acc: array<f32, 8>;
    var mx = ninf;
    var l = 0.0;
    let b0 = chunk * (p.kv_chunk / 64u);
    let nblk = min((p.n_kv + 63u) / 64u, b0 + p.kv_chunk / 64u);
    for (var blk = b0; blk < nblk; blk++) {
        // This invocation's key: -inf where masked or past the end.
        let j = blk * 64u + li;
        var s = ninf;
        if (j < p.n_kv) {
            var mv = 0.0;
            if (p.has_mask != 0u) {
                mv = ldm(ma + j * p.m_nb0);
            }
            if (mv != ninf) {
                let kr = ka + j * p.k_nb1;
                var sc: f32;
                if (p.vec == 1u) {
                    sc = dot_vec(qa, kr) * p.scale;
                } else {
                    sc = dot_chain(qa, kr) * p.scale;
                }
                if (p.softcap != 0.0) {
                    sc = tanh_safe(sc) * p.softcap;
                }
                s = sc + mv;
            }
        }
        scores[li] = s;
        workgroupBarrier();
        if (p.vec == 1u) {
            // ggml's one_chunk: every key updates M, S and the accumulator in turn.
            for (var t = 0u; t < 64u; t++) {
                let sc = scores[t];
                if (sc == ninf) {
                    continue;
                }
                var ms = 1.0;
                var vs = 1.0;
                if (sc > mx) {
                    ms = expf_libm(mx - sc);
                    mx = sc;
                    for (var e = 0u; e < 8u; e++) {
                        acc[e] = vacc(acc[e] * ms);
                    }
                } else {
                    vs = expf_libm(sc - mx);
                }
                let row = va + (blk * 64u + t) * p.v_nb1;
                for (var e = 0u; e < 8u; e++) {
                    let dd = li + 64u * e;
                    if (dd < p.dv) {
                        acc[e] = vacc(fmaf(ldv(row + dd * p.v_nb0), vs, acc[e]));
                    }
                }
                l = fmaf(l, ms, vs);
            }
            workgroupBarrier();
            continue;
        }
        var bm = ninf;
        for (var t = 0u; t < 64u; t++) {
            bm = select(scores[t], bm, bm > scores[t]);
        }
        let live = bm != ninf;
        var w = 0.0;
        if (live) {
            let nm = max(mx, bm);
            if (nm > mx) {
                let ms = expf_libm(mx - nm);
                for (var e = 0u; e < 8u; e++) {
                    acc[e] *= ms;
                }
                l *= ms;
            }
            mx = nm;
            w = v_expf(scores[li] - mx);
        }
        workgroupBarrier();
        scores[li] = w;
        workgroupBarrier();
        if (live) {
            var ts = vec2<f32>(0.0, 0.0);
            for (var c = 0u; c < 64u; c += 8u) {
                ts = ff_add(ts, vec2<f32>(reduce8(c), 0.0));
            }
            l = ff_add(vec2<f32>(l, 0.0), ts).x;
            for (var t = 0u; t < 64u; t++) {
                let wt = scores[t];
                if (wt == 0.0) {
                    continue;
                }
                let row = va + (blk * 64u + t) * p.v_nb1;
                for (var e = 0u; e < 8u; e++) {
                    let dd = li + 64u * e;
                    if (dd < p.dv) {
                        acc[e] = fmaf(wt, ldv(row + dd * p.v_nb0), acc[e]);
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if (p.n_chunk > 1u) {
        let pa = wid * (2u + p.dv);
        if (li == 0u) {
            part[pa] = mx;
            part[pa + 1u] = l;
        }
        for (var e = 0u; e < 8u; e++) {
            let dd = li + 64u * e;
            if (dd < p.dv) {
                part[pa + 2u + dd] = acc[e];
            }
        }
        return;
    }
    let inv = select(1.0 / l, 0.0, l == 0.0);
    let oa = p.d_base + h * p.d_nb1 + iq * p.d_nb2 + i3 * p.d_nb3;
    for (var e = 0u; e < 8u; e++) {
        let dd = li + 64u * e;
        if (dd < p.dv) {
            d[(oa + dd * p.d_nb0) >> 2u] = bitcast<u32>(acc[e] * inv);
        }
    }
    aq_row(oa, li, true);
}

// ggml_flash_attn_ext_reduce_partials: the chunks in order, each rescaled to the running maximum
// (GCC contracts `a·so + b·sn` into fma(a, so, b·sn)), then one scale by 1/S. One workgroup per
// (query row, head, i3).
@compute @workgroup_size(64)
fn flash_attn_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let id = wg_linear(wg, nwg);
    if (id >= p.rows) {
        return;
    }
    let iq = id % p.nq;
    let h = (id / p.nq) % p.nh;
    let i3 = id / (p.nq * p.nh);
    var acc: array<f32, 8>;
    var mx = neg_inf();
    var l = 0.0;
    for (var c = 0u; c < p.n_chunk; c++) {
        let pa = (id * p.n_chunk + c) * (2u + p.dv);
        let mc = part[pa];
        let lc = part[pa + 1u];
        if (lc == 0.0) {
            continue;
        }
        let nm = max(mx, mc);
        let so = expf_libm(mx - nm);
        let sn = expf_libm(mc - nm);
        for (var e = 0u; e < 8u; e++) {
            let dd = li + 64u * e;
            if (dd < p.dv) {
                acc[e] = fmaf(acc[e], so, hide(part[pa + 2u + dd] * sn));
            }
        }
        l = fmaf(l, so, hide(lc * sn));
        mx = nm;
    }
    let inv = select(1.0, 1.0 / l, l != 0.0);
    let oa = p.d_base + h * p.d_nb1 + iq * p.d_nb2 + i3 * p.d_nb3;
    for (var e = 0u; e < 8u; e++) {
        let dd = li + 64u * e;
        if (dd < p.dv) {
            d[(oa + dd * p.d_nb0) >> 2u] = bitcast<u32>(acc[e] * inv);
        }
    }
    aq_row(oa, li, true);
}
