// MUL_MAT's kernels shaped for GPUs (with matmul.wgsl and matmul_exact.wgsl), chosen on hardware
// adapters: the same arithmetic as matmul_exact.wgsl's, spread differently over invocations.

// ---- One activation column (decode) for q4_0..q8_0 and q4_1/q5_1 weights, shaped for GPUs: MV_T
// invocations split each weight row's blocks, so neighbouring invocations read neighbouring blocks.
// A chunk of MV_T blocks at a time, each block's scale product and eight integer lane sums (exact in
// any order, from dot4I8Packed) go to workgroup memory; per lane the float chain then runs in block
// order as exact_q0's does, and one invocation adds the lanes as ggml does: the same bits.
const MV_T: u32 = 16u;
const MV_R: u32 = 4u;
const MV_W: u32 = 10u;
var<workgroup> mv_blk: array<u32, 640>;
var<workgroup> mv_acc: array<f32, 36>;

@compute @workgroup_size(64)
fn mul_mat_vec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let t = li % MV_T;
    let rr = li / MV_T;
    let job = job_of(wg_linear(wg, nwg) * MV_R + rr);
    wtyp = job.typ;
    let live = job.id < job.nr;
    let row = job.a_base + job.id * job.a_nb1;
    let bs = block_bytes(wtyp);
    let q1 = wtyp == 3u || wtyp == 7u;
    let words = select(9u, 10u, q1);
    let qo = select(1u, 2u, q1);
    let nb = p.k / 32u;
    let slot = (rr * MV_T + t) * MV_W;
    var wq: array<i32, 32>;
    var acc = 0.0;
    for (var c0 = 0u; c0 < nb; c0 += MV_T) {
        let i = c0 + t;
        if (live && i < nb) {
            let bb = row + i * bs;
            let q8 = wtyp == 8u;
            if (!q8) {
                w_block_q0(wtyp, bb, &wq);
            }
            let aw = (p.b_base >> 2u) + words * i;
            mv_blk[slot] = bitcast<u32>(rdh(bb) * bitcast<f32>(b[aw]));
            for (var l = 0u; l < 8u; l++) {
                // Four signed 8-bit weights against four activations: DP4a where the GPU has it.
                var wv = 0u;
                if (q8) {
                    wv = u32_at(bb + 2u + 4u * l);
                } else {
                    let e = 4u * l;
                    wv = pack4xI8(vec4<i32>(wq[e], wq[e + 1u], wq[e + 2u], wq[e + 3u]));
                }
                mv_blk[slot + 1u + l] = bitcast<u32>(dot4I8Packed(wv, b[aw + qo + l]));
            }
            if (q1) {
                mv_blk[slot + 9u] = bitcast<u32>(rdh(bb + 2u) * bitcast<f32>(b[aw + 1u]));
            }
        }
        workgroupBarrier();
        // Lane t's chain (t < 8), or the mins' sum (t = 8, q4_1/q5_1).
        if (live && (t < 8u || (t == 8u && q1))) {
            for (var j = 0u; j < min(MV_T, nb - c0); j++) {
                let s = (rr * MV_T + j) * MV_W;
                if (t < 8u) {
                    acc = fmaf(bitcast<f32>(mv_blk[s]), f32(bitcast<i32>(mv_blk[s + 1u + t])), acc);
                } else {
                    acc += bitcast<f32>(mv_blk[s + 9u]);
                }
            }
        }
        workgroupBarrier();
    }
    if (t < 9u) {
        mv_acc[rr * 9u + t] = acc;
    }
    workgroupBarrier();
    if (live && t == 0u) {
        var lanes: array<f32, 32>;
        for (var l = 0u; l < 8u; l++) {
            lanes[l] = mv_acc[rr * 9u + l];
        }
        var r = hsum8(lanes, 0u);
        if (q1) {
            r += mv_acc[rr * 9u + 8u];
        }
        d[(job.d_base + (p.r0 + job.id) * p.d_nb0) >> 2u] = bitcast<u32>(r);
    }
}

// ---- One activation column for q2_K..q6_K weights, shaped for GPUs as mul_mat_vec: KV_T invocations
// split each row's super-blocks; a super-block's integer sums (exact_k_vec's lanes, mins and q2_K/q6_K
// corrections) and its scale products go to workgroup memory, then each float chain of exact_k_vec
// runs in super-block order in one invocation: the same bits.
const KV_T: u32 = 4u;
const KV_R: u32 = 16u;
const KV_W: u32 = 18u;
var<workgroup> kv_blk: array<u32, 1152>;
var<workgroup> kv_acc: array<f32, 192>;

// Super-block `i` of the weight row at `row`: its payload at `o` in kv_blk: [0] d·d8, [1..9) the
// lanes, [9] the mins' (or q2_K's) coefficient, [10..18) q2_K's lane corrections, q4_K's four mins
// or q5_K's one.
fn kv_block(row: u32, i: u32, o: u32) {
    var wq: array<i32, 32>;
    var lanes: array<i32, 8>;
    var mins: array<i32, 4>;
    let typ = wtyp;
    let k4 = typ == 12u || typ == 13u;
    let bb = row + i * block_bytes(typ);
    let aw = (p.b_base >> 2u) + 81u * i;
    for (var c = 0u; c < 8u; c++) {
        w_sub_k(typ, bb, c, &wq);
        if (typ == 14u) {
            for (var e = 0u; e < 32u; e++) {
                wq[e] += 32;
            }
        }
        let sc = kq_scales(typ, bb, c);
        for (var l = 0u; l < 8u; l++) {
            lanes[l] += select(sc.x, sc.y, l >= 4u) * dot4(&wq, 4u * l, b[aw + 1u + 8u * c + l]);
        }
        if (k4) {
            mins[c / 2u] += sc.z * (bitcast<i32>(b[aw + 65u + 2u * c]) + bitcast<i32>(b[aw + 66u + 2u * c]));
        }
    }
    let d8 = bitcast<f32>(b[aw]);
    kv_blk[o] = bitcast<u32>(rdh(bb + kq_d(typ)) * d8);
    if (k4) {
        kv_blk[o + 9u] = bitcast<u32>(-d8 * rdh(bb + 2u));
        if (typ == 13u) {
            kv_blk[o + 10u] = bitcast<u32>((mins[0] + mins[1]) + (mins[2] + mins[3]));
        } else {
            for (var m = 0u; m < 4u; m++) {
                kv_blk[o + 10u + m] = bitcast<u32>(mins[m]);
            }
        }
    } else if (typ == 10u) {
        kv_blk[o + 9u] = bitcast<u32>(-d8 * rdh(bb + 82u));
    }
    for (var l = 0u; l < 8u; l++) {
        var lane = lanes[l];
        var corr = 0;
        for (var g = 2u * l; g < 2u * l + 2u; g++) {
            if (typ == 10u) {
                corr += i32(rd8(bb + g) >> 4u) * bitcast<i32>(b[aw + 65u + g]);
            } else if (typ == 14u) {
                corr += sext8(rd8(bb + 192u + g)) * bitcast<i32>(b[aw + 65u + g]);
            }
        }
        if (typ == 14u) {
            lane -= 32 * corr;
        } else if (typ == 10u) {
            kv_blk[o + 10u + l] = bitcast<u32>(corr);
        }
        kv_blk[o + 1u + l] = bitcast<u32>(lane);
    }
}

@compute @workgroup_size(64)
fn mul_mat_vec_k(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let t = li % KV_T;
    let rr = li / KV_T;
    let job = job_of(wg_linear(wg, nwg) * KV_R + rr);
    wtyp = job.typ;
    let live = job.id < job.nr;
    let row = job.a_base + job.id * job.a_nb1;
    let nb = p.k / 256u;
    // This invocation's chains: lanes t and t + 4, and mins chain t (q4_K; q5_K's one is chain 0).
    var acc0 = 0.0;
    var acc1 = 0.0;
    var accm = 0.0;
    for (var c0 = 0u; c0 < nb; c0 += KV_T) {
        if (live && c0 + t < nb) {
            kv_block(row, c0 + t, (rr * KV_T + t) * KV_W);
        }
        workgroupBarrier();
        if (live) {
            for (var j = 0u; j < min(KV_T, nb - c0); j++) {
                let s = (rr * KV_T + j) * KV_W;
                let dd = bitcast<f32>(kv_blk[s]);
                let coef = bitcast<f32>(kv_blk[s + 9u]);
                if (wtyp == 12u || (wtyp == 13u && t == 0u)) {
                    accm = fmaf(coef, f32(bitcast<i32>(kv_blk[s + 10u + t])), accm);
                }
                if (wtyp == 10u) {
                    acc0 = fmaf(coef, f32(bitcast<i32>(kv_blk[s + 10u + t])), acc0);
                    acc1 = fmaf(coef, f32(bitcast<i32>(kv_blk[s + 14u + t])), acc1);
                }
                acc0 = fmaf(dd, f32(bitcast<i32>(kv_blk[s + 1u + t])), acc0);
                acc1 = fmaf(dd, f32(bitcast<i32>(kv_blk[s + 5u + t])), acc1);
            }
        }
        workgroupBarrier();
    }
    kv_acc[rr * 12u + t] = acc0;
    kv_acc[rr * 12u + 4u + t] = acc1;
    kv_acc[rr * 12u + 8u + t] = accm;
    workgroupBarrier();
    if (live && t == 0u) {
        var lanes: array<f32, 32>;
        for (var l = 0u; l < 8u; l++) {
            lanes[l] = kv_acc[rr * 12u + l];
        }
        var r = hsum8(lanes, 0u);
        if (wtyp == 12u || wtyp == 13u) {
            let m = rr * 12u + 8u;
            r += (kv_acc[m] + kv_acc[m + 2u]) + (kv_acc[m + 1u] + kv_acc[m + 3u]);
        }
        d[(job.d_base + (p.r0 + job.id) * p.d_nb0) >> 2u] = bitcast<u32>(r);
    }
}

// ---- Two columns or more of 32-block weights, tiled for GPUs: a workgroup computes TL_R rows × TL_C
// columns. Per block step, each row's weight block (as packed 8-bit words) and each column's
// activation block are staged in workgroup memory once for the whole tile; each invocation then
// updates the lane chains of its row and four columns with dot4I8Packed, in block order as exact_q0
// does: the same bits.
const TL_R: u32 = 32u;
const TL_C: u32 = 8u;
var<workgroup> tl_w: array<u32, 320>;
var<workgroup> tl_a: array<u32, 80>;

// Rows of all the dispatch's jobs.
fn rows_total() -> u32 {
    if (p.njobs == 0u) {
        return p.nr;
    }
    let k = p.njobs - 1u;
    return p.jobs[2u * k + 1u].z + p.jobs[2u * k].y;
}

@compute @workgroup_size(64)
fn mul_mat_tile(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let tr = (rows_total() + TL_R - 1u) / TL_R;
    let tc = (p.ne11 + TL_C - 1u) / TL_C;
    let tile = wg_linear(wg, nwg);
    let slice = tile / (tr * tc);
    if (slice >= p.ncols / p.ne11) {
        return;
    }
    let i2 = slice % p.ne12;
    let i3 = slice / p.ne12;
    let r = li % TL_R;
    let cg = li / TL_R;
    let job = job_of((tile % tr) * TL_R + r);
    wtyp = job.typ;
    let live = job.id < job.nr;
    let row = job.a_base + job.id * job.a_nb1 + (i2 / p.r2) * p.a_nb2 + (i3 / p.r3) * p.a_nb3;
    let j0 = ((tile / tr) % tc) * TL_C;
    // The activations' layout is the first job's (every job shares the conversion mode).
    let q1 = p.typ == 3u || p.typ == 7u;
    let words = select(9u, 10u, q1);
    let qo = select(1u, 2u, q1);
    let bs = block_bytes(wtyp);
    var acc: array<f32, 32>;
    var summ: array<f32, 4>;
    var wq: array<i32, 32>;
    for (var i = 0u; i < p.k / 32u; i++) {
        if (li < TL_R && live) {
            let bb = row + i * bs;
            let q8 = wtyp == 8u;
            if (!q8) {
                w_block_q0(wtyp, bb, &wq);
            }
            for (var l = 0u; l < 8u; l++) {
                if (q8) {
                    tl_w[r * 10u + l] = u32_at(bb + 2u + 4u * l);
                } else {
                    let e = 4u * l;
                    tl_w[r * 10u + l] = pack4xI8(vec4<i32>(wq[e], wq[e + 1u], wq[e + 2u], wq[e + 3u]));
                }
            }
            tl_w[r * 10u + 8u] = bitcast<u32>(rdh(bb));
            tl_w[r * 10u + 9u] = bitcast<u32>(select(0.0, rdh(bb + 2u), q1));
        } else if (li >= TL_R && li < TL_R + TL_C && j0 + li - TL_R < p.ne11) {
            let c = li - TL_R;
            let aw = ((p.b_base + (j0 + c) * p.b_nb1 + i2 * p.b_nb2 + i3 * p.b_nb3) >> 2u) + words * i;
            for (var w = 0u; w < words; w++) {
                tl_a[c * 10u + w] = b[aw + w];
            }
        }
        workgroupBarrier();
        if (live) {
            let dw = bitcast<f32>(tl_w[r * 10u + 8u]);
            for (var jj = 0u; jj < NCE; jj++) {
                let c = cg * NCE + jj;
                if (j0 + c < p.ne11) {
                    let a = c * 10u;
                    let dd = dw * bitcast<f32>(tl_a[a]);
                    if (q1) {
                        summ[jj] += bitcast<f32>(tl_w[r * 10u + 9u]) * bitcast<f32>(tl_a[a + 1u]);
                    }
                    for (var l = 0u; l < 8u; l++) {
                        let lane = dot4I8Packed(tl_w[r * 10u + l], tl_a[a + qo + l]);
                        acc[8u * jj + l] = fmaf(dd, f32(lane), acc[8u * jj + l]);
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        for (var jj = 0u; jj < NCE; jj++) {
            let j = j0 + cg * NCE + jj;
            if (j < p.ne11) {
                var s = hsum8(acc, 8u * jj);
                if (q1) {
                    s += summ[jj];
                }
                let o = job.d_base + (p.r0 + job.id) * p.d_nb0 + j * job.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
                d[o >> 2u] = bitcast<u32>(s);
            }
        }
    }
}

// ---- Eight columns or more of q2_K..q6_K weights (ggml's tiled K-quant path), tiled for GPUs: a
// workgroup computes TK_R rows × TL_C columns. Per super-block step, each row's quants (packed 8-bit
// words), sub-block scales and d/dmin, and each column's q8_K block are staged once; each invocation
// then forms exact_k's integer sums s1, s2 for its row and two columns with dot4I8Packed and applies
// its float steps in super-block order: the same bits.
const TK_R: u32 = 16u;
const TK_W: u32 = 98u;
var<workgroup> tk_w: array<u32, 1568>;
var<workgroup> tk_a: array<u32, 648>;

@compute @workgroup_size(64)
fn mul_mat_tile_k(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let tr = (rows_total() + TK_R - 1u) / TK_R;
    let tc = (p.ne11 + TL_C - 1u) / TL_C;
    let tile = wg_linear(wg, nwg);
    let slice = tile / (tr * tc);
    if (slice >= p.ncols / p.ne11) {
        return;
    }
    let i2 = slice % p.ne12;
    let i3 = slice / p.ne12;
    let r0 = (tile % tr) * TK_R;
    let j0 = ((tile / tr) % tc) * TL_C;
    let r = li % TK_R;
    let cg = li / TK_R;
    let job = job_of(r0 + r);
    let live = job.id < job.nr;
    var acc: array<f32, 2>;
    var wq: array<i32, 32>;
    for (var i = 0u; i < p.k / 256u; i++) {
        // Two (row, sub-block) units per invocation: quants as words, then the four scales.
        for (var u = li; u < TK_R * 8u; u += 64u) {
            let ur = u / 8u;
            let c = u % 8u;
            let uj = job_of(r0 + ur);
            if (uj.id < uj.nr) {
                let typ = uj.typ;
                let bb = uj.a_base + uj.id * uj.a_nb1 + (i2 / p.r2) * p.a_nb2 + (i3 / p.r3) * p.a_nb3
                    + i * block_bytes(typ);
                w_sub_k(typ, bb, c, &wq);
                let o = ur * TK_W;
                for (var l = 0u; l < 8u; l++) {
                    let e = 4u * l;
                    tk_w[o + 8u * c + l] = pack4xI8(vec4<i32>(wq[e], wq[e + 1u], wq[e + 2u], wq[e + 3u]));
                }
                let sc = kq_scales(typ, bb, c);
                tk_w[o + 64u + 4u * c] = bitcast<u32>(sc.x);
                tk_w[o + 65u + 4u * c] = bitcast<u32>(sc.y);
                tk_w[o + 66u + 4u * c] = bitcast<u32>(sc.z);
                tk_w[o + 67u + 4u * c] = bitcast<u32>(sc.w);
                if (c == 0u) {
                    tk_w[o + 96u] = bitcast<u32>(rdh(bb + kq_d(typ)));
                    let dm = kq_dmin(typ);
                    tk_w[o + 97u] = bitcast<u32>(select(0.0, rdh(bb + dm), dm != 0u));
                }
            }
        }
        for (var u = li; u < TL_C * 81u; u += 64u) {
            let c = u / 81u;
            if (j0 + c < p.ne11) {
                let aw = ((p.b_base + (j0 + c) * p.b_nb1 + i2 * p.b_nb2 + i3 * p.b_nb3) >> 2u) + 81u * i;
                tk_a[u] = b[aw + u % 81u];
            }
        }
        workgroupBarrier();
        if (live) {
            let o = r * TK_W;
            for (var jj = 0u; jj < 2u; jj++) {
                let c = 2u * cg + jj;
                if (j0 + c < p.ne11) {
                    let a = c * 81u;
                    var s1 = 0;
                    var s2 = 0;
                    for (var sb = 0u; sb < 8u; sb++) {
                        var lo = 0;
                        var hi = 0;
                        for (var l = 0u; l < 4u; l++) {
                            lo += dot4I8Packed(tk_w[o + 8u * sb + l], tk_a[a + 1u + 8u * sb + l]);
                            hi += dot4I8Packed(tk_w[o + 8u * sb + 4u + l], tk_a[a + 5u + 8u * sb + l]);
                        }
                        let sc = o + 64u + 4u * sb;
                        s1 += bitcast<i32>(tk_w[sc]) * lo + bitcast<i32>(tk_w[sc + 1u]) * hi;
                        s2 += bitcast<i32>(tk_w[sc + 2u]) * bitcast<i32>(tk_a[a + 65u + 2u * sb])
                            + bitcast<i32>(tk_w[sc + 3u]) * bitcast<i32>(tk_a[a + 66u + 2u * sb]);
                    }
                    var res = bitcast<f32>(tk_w[o + 96u]) * f32(s1);
                    if (kq_dmin(job.typ) != 0u) {
                        res = fmaf(-bitcast<f32>(tk_w[o + 97u]), f32(s2), res);
                    }
                    acc[jj] = fmaf(res, bitcast<f32>(tk_a[a]), acc[jj]);
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        for (var jj = 0u; jj < 2u; jj++) {
            let j = j0 + 2u * cg + jj;
            if (j < p.ne11) {
                let o = job.d_base + (p.r0 + job.id) * p.d_nb0 + j * job.d_nb1 + i2 * p.d_nb2 + i3 * p.d_nb3;
                d[o >> 2u] = bitcast<u32>(acc[jj]);
            }
        }
    }
}

// ---- One activation column of F32, F16 or BF16 weights, shaped for GPUs: ggml_vec_dot's 32 FMA
// lanes over 32-element steps are 32 invocations (lane i reads elements i, i + 32, ...: coalesced),
// then one invocation reduces them and adds the tail as `mul_mat_float` does: the same bits. Two rows
// per workgroup.
var<workgroup> vf_acc: array<f32, 64>;

@compute @workgroup_size(64)
fn mul_mat_vec_float(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let i = li % 32u;
    let rr = li / 32u;
    let r = wg_linear(wg, nwg) * 2u + rr;
    let live = r < p.nr;
    let row = p.a_base + r * p.a_nb1;
    let vb = p.b_base;
    let np = p.k & ~31u;
    var acc = 0.0;
    if (live) {
        for (var c0 = 0u; c0 < np; c0 += 32u) {
            let x = bitcast<f32>(b[(vb + (c0 + i) * p.b_nb0) >> 2u]);
            acc = fmaf(deq(p.typ, row, c0 + i), x, acc);
        }
    }
    vf_acc[li] = acc;
    workgroupBarrier();
    if (!live || i != 0u) {
        return;
    }
    var lanes: array<f32, 32>;
    for (var l = 0u; l < 32u; l++) {
        lanes[l] = vf_acc[32u * rr + l];
    }
    let s = vec_dot_end(lanes, row, vb, np);
    d[(p.d_base + (p.r0 + r) * p.d_nb0) >> 2u] = bitcast<u32>(s);
}
