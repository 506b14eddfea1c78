// FLASH_ATTN_EXT's tiled path (64 query rows or more) for QT query rows of one head per workgroup
// (with attention.wgsl: its P, bindings and helpers): each K and V element is read once for all of
// them. Per row the arithmetic is `flash_attn`'s tiled path step for step (K·Q as one FMA chain, the
// maximum per block of 64 keys, ggml's vector exp, the weights summed in float-float, V by FMA in
// key order): the same bits.

const QT: u32 = 4u;

@compute @workgroup_size(64)
fn flash_attn_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let wid = wg_linear(wg, nwg);
    let chunk = wid % p.n_chunk;
    let grp = wid / p.n_chunk;
    let nqg = (p.nq + QT - 1u) / QT;
    if (grp >= nqg * (p.rows / p.nq)) {
        return;
    }
    let iq0 = (grp % nqg) * QT;
    let h = (grp / nqg) % p.nh;
    let i3 = grp / (nqg * p.nh);
    let ka = p.k_base + (h / p.rh) * p.k_nb2 + (i3 / p.r3) * p.k_nb3;
    let va = p.v_base + (h / p.rh) * p.v_nb2 + (i3 / p.r3) * p.v_nb3;
    let ninf = neg_inf();
    var acc: array<f32, 32>;
    var mx: array<f32, 4>;
    var l: array<f32, 4>;
    for (var t = 0u; t < QT; t++) {
        mx[t] = ninf;
    }
    let b0 = chunk * (p.kv_chunk / 64u);
    let nblk = min((p.n_kv + 63u) / 64u, b0 + p.kv_chunk / 64u);
    for (var blk = b0; blk < nblk; blk++) {
        // This invocation's key for every row: -inf where masked or past the end.
        let j = blk * 64u + li;
        var s: array<f32, 4>;
        for (var t = 0u; t < QT; t++) {
            s[t] = ninf;
        }
        if (j < p.n_kv) {
            let kr = ka + j * p.k_nb1;
            var kq: array<f32, 4>;
            for (var c = 0u; c < p.dk; c++) {
                let kv = ldk(kr + c * p.k_nb0);
                for (var t = 0u; t < QT; t++) {
                    if (iq0 + t < p.nq) {
                        let qa = p.q_base + (iq0 + t) * p.q_nb1 + h * p.q_nb2 + i3 * p.q_nb3;
                        kq[t] = fmaf(ldq(qa + c * p.q_nb0), kv, kq[t]);
                    }
                }
            }
            for (var t = 0u; t < QT; t++) {
                if (iq0 + t < p.nq) {
                    var mv = 0.0;
                    if (p.has_mask != 0u) {
                        let ma = p.m_base + (iq0 + t) * p.m_nb1 + (h % p.m_ne2) * p.m_nb2 + (i3 % p.m_ne3) * p.m_nb3;
                        mv = ldm(ma + j * p.m_nb0);
                    }
                    if (mv != ninf) {
                        var sc = kq[t] * p.scale;
                        if (p.softcap != 0.0) {
                            sc = tanh_safe(sc) * p.softcap;
                        }
                        s[t] = sc + mv;
                    }
                }
            }
        }
        for (var t = 0u; t < QT; t++) {
            scores[64u * t + li] = s[t];
        }
        workgroupBarrier();
        var w: array<f32, 4>;
        var live: array<bool, 4>;
        for (var t = 0u; t < QT; t++) {
            var bm = ninf;
            for (var x = 0u; x < 64u; x++) {
                let v = scores[64u * t + x];
                bm = select(v, bm, bm > v);
            }
            live[t] = bm != ninf;
            if (live[t]) {
                let nm = max(mx[t], bm);
                if (nm > mx[t]) {
                    let ms = expf_libm(mx[t] - nm);
                    for (var e = 0u; e < 8u; e++) {
                        acc[8u * t + e] *= ms;
                    }
                    l[t] *= ms;
                }
                mx[t] = nm;
                w[t] = v_expf(scores[64u * t + li] - mx[t]);
            }
        }
        workgroupBarrier();
        for (var t = 0u; t < QT; t++) {
            scores[64u * t + li] = w[t];
        }
        workgroupBarrier();
        for (var t = 0u; t < QT; t++) {
            if (live[t]) {
                var ts = vec2<f32>(0.0, 0.0);
                for (var c = 0u; c < 64u; c += 8u) {
                    ts = ff_add(ts, vec2<f32>(reduce8(64u * t + c), 0.0));
                }
                l[t] = ff_add(vec2<f32>(l[t], 0.0), ts).x;
            }
        }
        for (var x = 0u; x < 64u; x++) {
            let row = va + (blk * 64u + x) * p.v_nb1;
            for (var e = 0u; e < 8u; e++) {
                let dd = li + 64u * e;
                if (dd < p.dv) {
                    // A V element read once for every row whose weight for this key is not 0.
                    var vv = 0.0;
                    var loaded = false;
                    for (var t = 0u; t < QT; t++) {
                        let wt = scores[64u * t + x];
                        if (live[t] && wt != 0.0) {
                            if (!loaded) {
                                vv = ldv(row + dd * p.v_nb0);
                                loaded = true;
                            }
                            acc[8u * t + e] = fmaf(wt, vv, acc[8u * t + e]);
                        }
                    }
                }
            }
        }
        workgroupBarrier();
    }
    for (var t = 0u; t < QT; t++) {
        let iq = iq0 + t;
        let rl = iq < p.nq;
        if (p.n_chunk > 1u) {
            if (rl) {
                let pa = ((iq + p.nq * (h + p.nh * i3)) * p.n_chunk + chunk) * (2u + p.dv);
                if (li == 0u) {
                    part[pa] = mx[t];
                    part[pa + 1u] = l[t];
                }
                for (var e = 0u; e < 8u; e++) {
                    let dd = li + 64u * e;
                    if (dd < p.dv) {
                        part[pa + 2u + dd] = acc[8u * t + e];
                    }
                }
            }
            continue;
        }
        let inv = select(1.0 / l[t], 0.0, l[t] == 0.0);
        let oa = p.d_base + h * p.d_nb1 + iq * p.d_nb2 + i3 * p.d_nb3;
        if (rl) {
            for (var e = 0u; e < 8u; e++) {
                let dd = li + 64u * e;
                if (dd < p.dv) {
                    d[(oa + dd * p.d_nb0) >> 2u] = bitcast<u32>(acc[8u * t + e] * inv);
                }
            }
        }
        aq_row(oa, li, rl);
    }
}
