// FLASH_ATTN_EXT as ggml-cpu computes it, with an f32 online softmax.
//   q F32 [DK, n_q, n_head, n_seq]; k [DK, n_kv, n_head_kv, n_seq_k] and v [DV, n_kv, n_head_v,
//   n_seq_v], each F16, F32, Q8_0 or Q4_0 (any row strides; block types need DK, DV multiples of
//   32); mask optional, F16 (or F32) [n_kv, >= n_q, ...]: mask(kv, iq, head % mask.ne2,
//   seq % mask.ne3); sinks optional, F32, one per head; d F32 [DV, n_head, n_q, n_seq]:
//   d(i0, head, iq, seq).
//   GQA/broadcast as ggml: k head = head / (n_head / k.ne2), k seq = seq / (n_seq / k.ne3), v alike.
//   Score s = dot(q, k) * scale; with softcap != 0, s = softcap * tanh(s * (scale / softcap))
//   (ggml's order); then s += slope * mask, slope the ALiBi slope of the head (1 without
//   max_bias). Keys whose slope * mask is -inf are skipped; a row with no key left (and no sink)
//   is written as zeros, never NaN.
//
// k_flash_attn: one block per (query iq, head, seq); 4 warps split the keys (warp w takes keys
//   w, w + 4, ...; its lanes split DK for the dot and DV for the accumulator, DV <= 512), then the
//   warps' (max, sum, accumulator) are combined in a fixed order (deterministic).
//   block 128, grid = (n_q, n_head, n_seq),
//   dynamic shared memory = (DK + DV + 8 + DK / 32) * 4 bytes (q row, combined accumulator, 4
//   maxima and 4 sums, Q's Q8_0 scales). Requires DV <= 512 (FA_MAX_DV).
//   tiled = 0 takes ggml-cpu's vector path (see fa_vector); the host sets tiled = 1 where ggml-cpu
//   tiles (64 query rows or more, F32/F16 K and V of one type, DV a multiple of 8): f32 throughout.

struct FlashP { Tensor q, k, v, mask, sinks, d; float scale, max_bias, softcap, m0, m1; int n_head_log2; int tiled; int pad; };

#define FA_WARPS 4
#define FA_MAX_DV 512
#define FA_VPL (FA_MAX_DV / WARP)

// Element e of a K/V row of type T.
template <int T>
__device__ __forceinline__ float kv_elem(const char *row, i64 nb0, i64 e) {
    if (T == T_F32 || T == T_F16) {
        return ld_f(row + e * nb0, T);
    }
    return dq_elem(T, (const u8 *)(row + (e >> 5) * nb0), (int)(e & 31));
}

template <int T>
__device__ __forceinline__ float k_dot(const float *q, const char *kr, i64 nb0, int DK, int lane) {
    float s = 0.0f;
    for (int e = lane; e < DK; e += WARP) {
        s += q[e] * kv_elem<T>(kr, nb0, e);
    }
    return warp_sum(s);
}

template <int T>
__device__ __forceinline__ void v_acc(float *acc, const char *vr, i64 nb0, int DV, int lane, float ms, float vs) {
    UNROLL
    for (int t = 0; t < FA_VPL; t++) {
        const int e = lane + WARP * t;
        if (e < DV) {
            acc[t] = acc[t] * ms + vs * kv_elem<T>(vr, nb0, e);
        }
    }
}

// ---- ggml-cpu's vector path (batches below 64 query rows, or quantized / mixed K and V) ------
// Q rounded to K's dot type (f16 for F16 K; Q8_0 blocks for Q8_0/Q4_0 K, scored by integer block
// sums), keys in order with the CPU's online-softmax steps, and an f16 accumulator for F16 V
// (rounded after every key, as ggml_vec_mad_f16 stores it). Each warp runs the whole key chain
// (the same scores in every warp) and keeps its own quarter of V's columns: no block barrier per
// key.

// Q8_0 block index e/32's scale for a quantized Q kept in shared memory.
template <int T>
__device__ __forceinline__ float k_dot_vec(const float *q, const float *qd, const char *kr, i64 nb0, int DK, int lane) {
    if (T == T_F32 || T == T_F16) {
        float s = 0.0f;
        for (int e = lane; e < DK; e += WARP) {
            s = fmaf(q[e], ld_f(kr + e * nb0, T), s);
        }
        return warp_sum(s);
    }
    // Q8_0 / Q4_0 K against Q as Q8_0: one exact integer sum per block, scaled in block order.
    float s = 0.0f;
    for (int b = 0; b < DK / 32; b++) {
        const u8 *blk = (const u8 *)(kr + b * nb0);
        int kq;
        if (T == T_Q8_0) {
            kq = ((const i8 *)blk)[2 + lane];
        } else {
            kq = (lane < 16 ? (blk[2 + lane] & 0xF) : (blk[2 + lane - 16] >> 4)) - 8;
        }
        const int sumi = warp_sum_i(kq * (int)q[32 * b + lane]);
        s += (float)sumi * (ld_h(blk) * qd[b]);
    }
    return s;
}

template <int TK, int TV>
__device__ void fa_vector(const FlashP &p, const float *qs, const float *qd, const char *kbase,
                          const char *vbase, const char *mrow, float slope, float scale, i64 head,
                          i64 iq, i64 seq) {
    const int DK = (int)p.q.ne[0], DV = (int)p.v.ne[0];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const i64 n_kv = p.k.ne[1];
    float M = NEG_INF, S = 0.0f;
    float acc[FA_VPL / FA_WARPS];
    UNROLL
    for (int t = 0; t < FA_VPL / FA_WARPS; t++) {
        acc[t] = 0.0f;
    }
    for (i64 kv = 0; kv < n_kv; kv++) {
        const float mv = mrow ? slope * ld_f(mrow + kv * p.mask.nb[0], p.mask.type) : 0.0f;
        if (mv == NEG_INF) {
            continue;
        }
        float s = k_dot_vec<TK>(qs, qd, kbase + kv * p.k.nb[1], p.k.nb[0], DK, lane) * scale;
        if (p.softcap != 0.0f) {
            s = p.softcap * tanhf(s);
        }
        s += mv;
        float ms = 1.0f, vs = 1.0f;
        const bool grow = s > M;
        if (grow) {
            ms = expf(M - s);
            M = s;
        } else {
            vs = expf(s - M);
        }
        const char *vr = vbase + kv * p.v.nb[1];
        UNROLL
        for (int t = 0; t < FA_VPL / FA_WARPS; t++) {
            const int e = lane + WARP * (warp + FA_WARPS * t);
            if (e < DV) {
                float a = acc[t];
                if (grow) {
                    a *= ms;
                    if (TV == T_F16) a = f16_to_f32(f32_to_f16(a));
                }
                a = fmaf(kv_elem<TV>(vr, p.v.nb[0], e), vs, a);
                if (TV == T_F16) a = f16_to_f32(f32_to_f16(a));
                acc[t] = a;
            }
        }
        S = fmaf(S, ms, vs);
    }
    if (p.sinks.data) {
        const float s = *(const float *)(p.sinks.data + head * p.sinks.nb[0]);
        float ms = 1.0f, vs = 1.0f;
        if (s > M) {
            ms = expf(M - s);
            M = s;
            UNROLL
            for (int t = 0; t < FA_VPL / FA_WARPS; t++) {
                acc[t] *= ms;
            }
        } else {
            vs = expf(s - M);
        }
        S = fmaf(S, ms, vs);
    }
    const float inv = S == 0.0f ? 0.0f : 1.0f / S;
    UNROLL
    for (int t = 0; t < FA_VPL / FA_WARPS; t++) {
        const int e = lane + WARP * (warp + FA_WARPS * t);
        if (e < DV) {
            *(float *)(p.d.data + t_off(p.d, e, head, iq, seq)) = acc[t] * inv;
        }
    }
}

extern "C" __global__ void k_flash_attn(const FlashP p) {
    DYN_SHARED(float, fa_sh);
    const int DK = (int)p.q.ne[0], DV = (int)p.v.ne[0];
    float *qs = fa_sh;             // DK
    float *accs = fa_sh + DK;      // DV
    float *ml = accs + DV;         // 4 maxima, 4 sums

    const i64 iq = blockIdx.x, head = blockIdx.y, seq = blockIdx.z;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    float *qd = ml + 2 * FA_WARPS;  // Q8_0 scales of Q (vector path, block-type K)
    const bool kq = p.k.type == T_Q8_0 || p.k.type == T_Q4_0;
    for (int e = tid; e < DK; e += blockDim.x) {
        float v = *(const float *)(p.q.data + t_off(p.q, e, iq, head, seq));
        if (!p.tiled && p.k.type == T_F16) {
            v = f16_to_f32(f32_to_f16(v));
        }
        qs[e] = v;
    }
    __syncthreads();
    if (!p.tiled && kq) {
        // Q as ggml-cpu's x86 quantize_row_q8_0: q = rint(x * 127/amax), d = amax/127 as f16.
        for (int b = warp; b < DK / 32; b += FA_WARPS) {
            const float x = qs[32 * b + lane];
            const float amax = warp_max(fabsf(x));
            const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
            const int q = max(-128, min(127, __float2int_rn(x * id)));
            __syncwarp();
            qs[32 * b + lane] = (float)q;
            if (lane == 0) {
                qd[b] = f16_to_f32(f32_to_f16(amax / 127.0f));
            }
        }
        __syncthreads();
    }

    const i64 n_head = p.q.ne[2], n_seq = p.q.ne[3];
    const char *kbase = p.k.data + (head / (n_head / p.k.ne[2])) * p.k.nb[2] + (seq / (n_seq / p.k.ne[3])) * p.k.nb[3];
    const char *vbase = p.v.data + (head / (n_head / p.v.ne[2])) * p.v.nb[2] + (seq / (n_seq / p.v.ne[3])) * p.v.nb[3];
    const char *mrow = 0;
    if (p.mask.data) {
        mrow = p.mask.data + t_off(p.mask, 0, iq, head % p.mask.ne[2], seq % p.mask.ne[3]);
    }
    const float slope = alibi_slope(p.max_bias, p.m0, p.m1, p.n_head_log2, head);
    const float scale = p.softcap != 0.0f ? p.scale / p.softcap : p.scale;
    const i64 n_kv = p.k.ne[1];

    if (!p.tiled) {
#define FA_V(TK, TV) fa_vector<TK, TV>(p, qs, qd, kbase, vbase, mrow, slope, scale, head, iq, seq)
#define FA_K(TK)                                   \
    switch (p.v.type) {                            \
    case T_F16: FA_V(TK, T_F16); break;            \
    case T_F32: FA_V(TK, T_F32); break;            \
    case T_Q8_0: FA_V(TK, T_Q8_0); break;          \
    default: FA_V(TK, T_Q4_0); break;              \
    }
        switch (p.k.type) {
        case T_F16: FA_K(T_F16); break;
        case T_F32: FA_K(T_F32); break;
        case T_Q8_0: FA_K(T_Q8_0); break;
        default: FA_K(T_Q4_0); break;
        }
#undef FA_K
#undef FA_V
        return;
    }

    float M = NEG_INF, L = 0.0f;
    float acc[FA_VPL];
    UNROLL
    for (int t = 0; t < FA_VPL; t++) {
        acc[t] = 0.0f;
    }

    for (i64 kv = warp; kv < n_kv; kv += FA_WARPS) {
        const float mv = mrow ? slope * ld_f(mrow + kv * p.mask.nb[0], p.mask.type) : 0.0f;
        if (mv == NEG_INF) {
            continue;  // uniform across the warp
        }
        const char *kr = kbase + kv * p.k.nb[1];
        float s;
        switch (p.k.type) {
        case T_F16: s = k_dot<T_F16>(qs, kr, p.k.nb[0], DK, lane); break;
        case T_F32: s = k_dot<T_F32>(qs, kr, p.k.nb[0], DK, lane); break;
        case T_Q8_0: s = k_dot<T_Q8_0>(qs, kr, p.k.nb[0], DK, lane); break;
        default: s = k_dot<T_Q4_0>(qs, kr, p.k.nb[0], DK, lane); break;
        }
        s *= scale;
        if (p.softcap != 0.0f) {
            s = p.softcap * tanhf(s);
        }
        s += mv;
        const float Mn = fmaxf(M, s);
        const float ms = expf(M - Mn);  // 0 for the first key (M = -inf)
        const float vs = expf(s - Mn);
        L = L * ms + vs;
        M = Mn;
        const char *vr = vbase + kv * p.v.nb[1];
        switch (p.v.type) {
        case T_F16: v_acc<T_F16>(acc, vr, p.v.nb[0], DV, lane, ms, vs); break;
        case T_F32: v_acc<T_F32>(acc, vr, p.v.nb[0], DV, lane, ms, vs); break;
        case T_Q8_0: v_acc<T_Q8_0>(acc, vr, p.v.nb[0], DV, lane, ms, vs); break;
        default: v_acc<T_Q4_0>(acc, vr, p.v.nb[0], DV, lane, ms, vs); break;
        }
    }

    if (lane == 0) {
        ml[warp] = M;
        ml[FA_WARPS + warp] = L;
    }
    __syncthreads();
    float Mg = NEG_INF;
    UNROLL
    for (int w = 0; w < FA_WARPS; w++) {
        Mg = fmaxf(Mg, ml[w]);
    }
    float sink = NEG_INF;
    if (p.sinks.data) {
        sink = *(const float *)(p.sinks.data + head * p.sinks.nb[0]);
        Mg = fmaxf(Mg, sink);
    }
    float Lg = 0.0f;
    UNROLL
    for (int w = 0; w < FA_WARPS; w++) {
        Lg += ml[w] == NEG_INF ? 0.0f : ml[FA_WARPS + w] * expf(ml[w] - Mg);
    }
    if (p.sinks.data) {
        Lg += expf(sink - Mg);
    }
    const float f = M == NEG_INF ? 0.0f : expf(M - Mg);
    // The warps add their scaled accumulators in order 0..3.
    for (int w = 0; w < FA_WARPS; w++) {
        if (warp == w) {
            UNROLL
            for (int t = 0; t < FA_VPL; t++) {
                const int e = lane + WARP * t;
                if (e < DV) {
                    accs[e] = (w == 0 ? 0.0f : accs[e]) + acc[t] * f;
                }
            }
        }
        __syncthreads();
    }
    const float inv = Lg > 0.0f ? 1.0f / Lg : 0.0f;
    for (int e = tid; e < DV; e += blockDim.x) {
        *(float *)(p.d.data + t_off(p.d, e, head, iq, seq)) = accs[e] * inv;
    }
}
