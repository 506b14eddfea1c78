// FLASH_ATTN_EXT: one workgroup per (query row, head, dim 3); blocks of 64 KV positions, online
// softmax. q f32; k, v f16 or f32 (`kt`, `vt`: 0 f32, 1 f16); optional mask (f16/f32, `has_mask`
// 0/1/2 for none/f32/f16); GQA by head ratio; logit softcap. dst f32 [Dv, n_head, n_batch, d3].
// Each invocation owns output dims d = li, li + 64, ... (Dv <= 512).
// Two numeric flavours, as in ggml-cpu (`vec` = 1 for its vector path, used below 64 query rows):
// the vector path rounds Q to f16 for an f16 K, updates the running maximum key by key and keeps an
// f16 V accumulator rounded to f16 after every step; the tiled path keeps everything in f32 and
// updates the maximum once per block of 64 keys.

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
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> q: array<u32>;
@group(0) @binding(2) var<storage, read_write> k: array<u32>;
@group(0) @binding(3) var<storage, read_write> v: array<u32>;
@group(0) @binding(4) var<storage, read_write> m: array<u32>;
@group(0) @binding(5) var<storage, read_write> d: array<u32>;

var<workgroup> scores: array<f32, 64>;

const NEG: f32 = -3.4028235e38;

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

fn ldm(a: u32) -> f32 {
    if (p.has_mask == 2u) {
        return unpack2x16float(m[a >> 2u])[(a >> 1u) & 1u];
    }
    return bitcast<f32>(m[a >> 2u]);
}

@compute @workgroup_size(64)
fn flash_attn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let id = wg_linear(wg, nwg);
    let iq = id % p.nq;
    let h = (id / p.nq) % p.nh;
    let i3 = id / (p.nq * p.nh);
    let qa = p.q_base + iq * p.q_nb1 + h * p.q_nb2 + i3 * p.q_nb3;
    let ka = p.k_base + (h / p.rh) * p.k_nb2 + (i3 / p.r3) * p.k_nb3;
    let va = p.v_base + (h / p.rh) * p.v_nb2 + (i3 / p.r3) * p.v_nb3;
    let ma = p.m_base + iq * p.m_nb1 + (h % p.m_ne2) * p.m_nb2 + (i3 % p.m_ne3) * p.m_nb3;
    var acc: array<f32, 8>;
    var mx = NEG;
    var l = 0.0;
    let nblk = (p.n_kv + 63u) / 64u;
    for (var blk = 0u; blk < nblk; blk++) {
        let j = blk * 64u + li;
        var s = NEG;
        if (j < p.n_kv) {
            var dot = 0.0;
            for (var c = 0u; c < p.dk; c++) {
                dot = fma(ldq(qa + c * p.q_nb0), ldk(ka + j * p.k_nb1 + c * p.k_nb0), dot);
            }
            s = dot * p.scale;
            if (p.softcap != 0.0) {
                s = p.softcap * tanh_safe(s / p.softcap);
            }
            if (p.has_mask != 0u) {
                s += ldm(ma + j * p.m_nb0);
            }
            s = max(s, NEG);
        }
        scores[li] = s;
        workgroupBarrier();
        if (p.vec == 1u) {
            // ggml's one_chunk: every key updates M, S and the accumulator in turn.
            for (var t = 0u; t < 64u; t++) {
                let sc = scores[t];
                if (sc == NEG) {
                    continue;
                }
                var ms = 1.0;
                var vs = 1.0;
                if (sc > mx) {
                    ms = exp(mx - sc);
                    mx = sc;
                    for (var e = 0u; e < 8u; e++) {
                        acc[e] = vacc(acc[e] * ms);
                    }
                } else {
                    vs = exp(sc - mx);
                }
                let row = va + (blk * 64u + t) * p.v_nb1;
                for (var e = 0u; e < 8u; e++) {
                    let dd = li + 64u * e;
                    if (dd < p.dv) {
                        acc[e] = vacc(fma(ldv(row + dd * p.v_nb0), vs, acc[e]));
                    }
                }
                l = fma(l, ms, vs);
            }
            workgroupBarrier();
            continue;
        }
        var bm = NEG;
        for (var t = 0u; t < 64u; t++) {
            bm = max(bm, scores[t]);
        }
        let nm = max(mx, bm);
        if (nm > NEG) {
            let corr = select(exp(mx - nm), 0.0, mx == NEG);
            l *= corr;
            for (var e = 0u; e < 8u; e++) {
                acc[e] *= corr;
            }
            for (var t = 0u; t < 64u; t++) {
                let sc = scores[t];
                if (sc == NEG) {
                    continue;
                }
                let pj = exp(sc - nm);
                l += pj;
                let row = va + (blk * 64u + t) * p.v_nb1;
                for (var e = 0u; e < 8u; e++) {
                    let dd = li + 64u * e;
                    if (dd < p.dv) {
                        acc[e] = fma(pj, ldv(row + dd * p.v_nb0), acc[e]);
                    }
                }
            }
            mx = nm;
        }
        workgroupBarrier();
    }
    let inv = select(1.0 / l, 0.0, l == 0.0);
    let oa = p.d_base + h * p.d_nb1 + iq * p.d_nb2 + i3 * p.d_nb3;
    for (var e = 0u; e < 8u; e++) {
        let dd = li + 64u * e;
        if (dd < p.dv) {
            d[(oa + dd * p.d_nb0) >> 2u] = bitcast<u32>(acc[e] * inv);
        }
    }
}
