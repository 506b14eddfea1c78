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
//   dynamic shared memory = (DK + DV + 8) * 4 bytes (q row, combined accumulator, 4 maxima and
//   4 sums). Requires DV <= 512 (FA_MAX_DV).

struct FlashP { Tensor q, k, v, mask, sinks, d; float scale, max_bias, softcap, m0, m1; int n_head_log2; };

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

extern "C" __global__ void k_flash_attn(const FlashP p) {
    DYN_SHARED(float, fa_sh);
    const int DK = (int)p.q.ne[0], DV = (int)p.v.ne[0];
    float *qs = fa_sh;             // DK
    float *accs = fa_sh + DK;      // DV
    float *ml = accs + DV;         // 4 maxima, 4 sums

    const i64 iq = blockIdx.x, head = blockIdx.y, seq = blockIdx.z;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    for (int e = tid; e < DK; e += blockDim.x) {
        qs[e] = *(const float *)(p.q.data + t_off(p.q, e, iq, head, seq));
    }
    __syncthreads();

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
