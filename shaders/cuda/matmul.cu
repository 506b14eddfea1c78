// MUL_MAT: d[i0, i1, i2, i3] = dot(w row i0 of matrix (i2 / r2, i3 / r3), x column i1 of matrix
// (i2, i3)); w = src0 [K, M, ne02, ne03], x = src1 [K, N, ne12, ne13] F32, d [M, N, ne12, ne13]
// F32, r2 = ne12 / ne02, r3 = ne13 / ne03. Any strides for x, d and float w; block w needs its
// row's blocks at w.nb[0] apart (ggml's layout) and K a multiple of its block size.
//
// k_quantize_q8_1 (QuantizeP): every column (i1, i2, i3) of x (K floats at x.nb[0] apart) into
//   blocks_per_row (= ceil(K / 32)) block_q8_1, the tail past K padded with zeros. Column
//   c = i1 + N * (i2 + ne12 * i3) starts at q + c * blocks_per_row * 36. One warp per block.
//   block (32, 8), grid = (ceil(blocks_per_row / 8), N, ne12 * ne13); no dynamic shared memory.
//   q must be 4-byte aligned.
//
// k_mul_mat_vec_q (MatVecP): block w (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)
//   times the q8_1 columns in xq (written by k_quantize_q8_1 with the same blocks_per_row), dp4a
//   integer sums per 32 values, f32 scales. One warp per output element (row i0, column i1); the
//   lanes take consecutive 32-value chunks of the row (a K-quant superblock is 8 chunks, paired
//   with 8 q8_1 blocks) and reduce with shuffles.
//   block (32, 4) = 4 rows, grid = (ceil(M / 4), N, ne12 * ne13); no dynamic shared memory.
//
// k_mul_mat_f (MatMulFP): F32, F16 or BF16 w times F32 x, one warp per output element, lanes
//   strided along K (pairs of elements when both rows are contiguous and aligned), shuffle reduce.
//   block (32, 4) = 4 rows, grid = (ceil(M / 4), N, ne12 * ne13); no dynamic shared memory.

struct QuantizeP { Tensor x; char *q; i64 blocks_per_row; int mode; int pad; };
struct MatVecP { Tensor w, x, d; char *xq; i64 blocks_per_row; int r2, r3; };
struct MatMulFP { Tensor w, x, d; int r2, r3; };

extern "C" __global__ void k_quantize_q8_1(const QuantizeP p) {
    const i64 ib = (i64)blockIdx.x * 8 + threadIdx.y;
    const int lane = threadIdx.x, wi = threadIdx.y;
    const i64 i1 = blockIdx.y, z = blockIdx.z;
    const i64 i2 = z % p.x.ne[2], i3 = z / p.x.ne[2];
    const i64 i0 = ib * 32 + lane;
    const bool in = ib < p.blocks_per_row && i0 < p.x.ne[0];
    const float v = in ? *(const float *)(p.x.data + t_off(p.x, i0, i1, i2, i3)) : 0.0f;
    const i64 c = i1 + p.x.ne[1] * z;
    block_q8_1 *b = (block_q8_1 *)(p.q + (c * p.blocks_per_row + ib) * BS_Q8_1);
    if (p.mode == 1) {
        // ggml's Q8_K: one scale per 256 values (the 8 warps of this block), iscale = -127/max with
        // max the signed value of largest magnitude (the first such), q = min(127, rint(iscale*x)),
        // d = 1/iscale in f32.
        __shared__ float amax_w[8];
        __shared__ float max_w[8];
        const float ax = fabsf(v);
        const float am = warp_max(ax);
        const unsigned hit = __ballot_sync(0xffffffffu, ax == am);
        const int first = __ffs(hit) - 1;
        const float mv = __shfl_sync(0xffffffffu, v, first);
        if (lane == 0) {
            amax_w[wi] = am;
            max_w[wi] = mv;
        }
        __syncthreads();
        float amax = 0.0f, mx = 0.0f;
        for (int w = 0; w < 8; w++) {
            if (amax_w[w] > amax) {
                amax = amax_w[w];
                mx = max_w[w];
            }
        }
        if (ib >= p.blocks_per_row) {
            return;  // whole warp
        }
        const float iscale = amax != 0.0f ? -127.0f / mx : 0.0f;
        const int q = amax != 0.0f ? min(127, __float2int_rn(iscale * v)) : 0;
        b->qs[lane] = (i8)q;
        if (lane == 0) {
            *(float *)b = amax != 0.0f ? 1.0f / iscale : 0.0f;
        }
        return;
    }
    if (ib >= p.blocks_per_row) {
        return;  // whole warp
    }
    // ggml-cpu's x86 quantize_row_q8_0 / q8_1: q = rint(x * 127/amax), d = amax/127 as f16,
    // s = d * sum(q) as f16.
    const float amax = warp_max(fabsf(v));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const int q = max(-128, min(127, __float2int_rn(v * id)));
    const int sum = warp_sum_i(q);
    b->qs[lane] = (i8)q;
    if (lane == 0) {
        b->d = f32_to_f16(d);
        b->s = f32_to_f16(d * (float)sum);
    }
}

// ---- one 32-value chunk of a weight block against one q8_1 block ----------------------------
// b: the weight block, j: the chunk in it (0 for 32-value blocks, 0..7 for K-quants), y: q8_1.

// Spreads the low 4 bits of h to bit 4 of each byte.
__device__ __forceinline__ int spread4(int h) {
    return ((h & 1) << 4) | ((h & 2) << 11) | ((h & 4) << 18) | ((h & 8) << 25);
}

#define ONES 0x01010101

template <int T>
__device__ __forceinline__ float vdot(const u8 *b, int j, const u8 *y) {
    // K-quant activations carry Q8_K's f32 scale (mode 1), the others q8_1's f16 one.
    const bool kq = T == T_Q2_K || T == T_Q3_K || T == T_Q4_K || T == T_Q5_K || T == T_Q6_K;
    const float d8 = kq ? ld_f32(y) : ld_h(y);
    const u8 *yq = y + 4;
    if (T == T_Q4_0 || T == T_Q4_1 || T == T_Q5_0 || T == T_Q5_1) {
        const int qoff = T == T_Q4_0 ? 2 : T == T_Q4_1 ? 4 : T == T_Q5_0 ? 6 : 8;
        int qh = 0;
        if (T == T_Q5_0) qh = ld_i32_b2(b + 2);
        if (T == T_Q5_1) qh = ld_i32_b2(b + 4);
        int sumi = 0, sumy = 0;
        UNROLL
        for (int i = 0; i < 4; i++) {
            const int v = ld_i32_b2(b + qoff + 4 * i);
            int v0 = v & 0x0F0F0F0F, v1 = (v >> 4) & 0x0F0F0F0F;
            if (T == T_Q5_0 || T == T_Q5_1) {
                v0 |= spread4(qh >> (4 * i));
                v1 |= spread4(qh >> (16 + 4 * i));
            }
            const int u0 = ld_i32_b4(yq + 4 * i), u1 = ld_i32_b4(yq + 16 + 4 * i);
            sumi = __dp4a(v0, u0, sumi);
            sumi = __dp4a(v1, u1, sumi);
            sumy = __dp4a(ONES, u0, sumy);
            sumy = __dp4a(ONES, u1, sumy);
        }
        const float dw = ld_h(b);
        if (T == T_Q4_0) return dw * d8 * (float)(sumi - 8 * sumy);
        if (T == T_Q5_0) return dw * d8 * (float)(sumi - 16 * sumy);
        // Q4_1/Q5_1: the minimum times q8_1's s (d * sum(q), rounded to f16), as ggml does.
        return dw * d8 * (float)sumi + ld_h(b + 2) * ld_h(y + 2);
    }
    if (T == T_Q8_0) {
        int sumi = 0;
        UNROLL
        for (int i = 0; i < 8; i++) {
            sumi = __dp4a(ld_i32_b2(b + 2 + 4 * i), ld_i32_b4(yq + 4 * i), sumi);
        }
        return ld_h(b) * d8 * (float)sumi;
    }
    if (T == T_Q4_K || T == T_Q5_K) {
        const int c = j >> 1, up = j & 1;
        const u8 *qs = b + (T == T_Q4_K ? 16 : 48) + 32 * c;
        int sc, m;
        scale_min_k4(j, b + 4, sc, m);
        int sumi = 0, sumy = 0;
        UNROLL
        for (int i = 0; i < 8; i++) {
            int v = (ld_i32_b2(qs + 4 * i) >> (4 * up)) & 0x0F0F0F0F;
            if (T == T_Q5_K) {
                v |= ((ld_i32_b2(b + 16 + 4 * i) >> j) & ONES) << 4;
            }
            const int u = ld_i32_b4(yq + 4 * i);
            sumi = __dp4a(v, u, sumi);
            sumy = __dp4a(ONES, u, sumy);
        }
        return d8 * (ld_h(b) * (float)(sc * sumi) - ld_h(b + 2) * (float)(m * sumy));
    }
    // Q2_K, Q3_K, Q6_K: two 16-value halves with their own scales.
    int sumi[2] = {0, 0}, sumy[2] = {0, 0};
    UNROLL
    for (int i = 0; i < 8; i++) {
        int v;
        if (T == T_Q2_K || T == T_Q3_K) {
            const int half = j >> 2, shift = j & 3;
            v = (ld_i32_b2(b + (T == T_Q2_K ? 16 : 32) + 32 * half + 4 * i) >> (2 * shift)) & 0x03030303;
            if (T == T_Q3_K) {
                v |= ((ld_i32_b2(b + 4 * i) >> j) & ONES) << 2;  // hmask bit set: q, clear: q - 4
            }
        } else {
            const int h = j >> 2, k = j & 3;
            const int ql = (ld_i32_b2(b + 64 * h + 32 * (k & 1) + 4 * i) >> (4 * (k >> 1))) & 0x0F0F0F0F;
            const int qh = (ld_i32_b2(b + 128 + 32 * h + 4 * i) >> (2 * k)) & 0x03030303;
            v = ql | (qh << 4);
        }
        const int u = ld_i32_b4(yq + 4 * i);
        sumi[i >> 2] = __dp4a(v, u, sumi[i >> 2]);
        sumy[i >> 2] = __dp4a(ONES, u, sumy[i >> 2]);
    }
    if (T == T_Q2_K) {
        const int s0 = b[2 * j], s1 = b[2 * j + 1];
        const float dsum = (float)((s0 & 0xF) * sumi[0] + (s1 & 0xF) * sumi[1]);
        const float msum = (float)((s0 >> 4) * sumy[0] + (s1 >> 4) * sumy[1]);
        return d8 * (ld_h(b + 80) * dsum - ld_h(b + 82) * msum);
    }
    if (T == T_Q3_K) {
        const int s0 = scale_q3_k(2 * j, b + 96), s1 = scale_q3_k(2 * j + 1, b + 96);
        return d8 * ld_h(b + 108) * (float)(s0 * (sumi[0] - 4 * sumy[0]) + s1 * (sumi[1] - 4 * sumy[1]));
    }
    // Q6_K
    const int h = j >> 2, k = j & 3;
    const int s0 = ((const i8 *)b)[192 + 8 * h + 2 * k], s1 = ((const i8 *)b)[192 + 8 * h + 2 * k + 1];
    return d8 * ld_h(b + 208) * (float)(s0 * (sumi[0] - 32 * sumy[0]) + s1 * (sumi[1] - 32 * sumy[1]));
}

// The lane's share of one row's dot product: chunk u = lane, lane + 32, ... of `units`.
template <int T>
__device__ __forceinline__ float row_dot_q(const u8 *w, i64 wnb0, const u8 *y, i64 units, int lane) {
    const int cpb = (T == T_Q2_K || T == T_Q3_K || T == T_Q4_K || T == T_Q5_K || T == T_Q6_K) ? 8 : 1;
    float acc = 0.0f;
    for (i64 u = lane; u < units; u += WARP) {
        const i64 ib = cpb == 8 ? (u >> 3) : u;
        const int j = cpb == 8 ? (int)(u & 7) : 0;
        acc += vdot<T>(w + ib * wnb0, j, y + u * BS_Q8_1);
    }
    return acc;
}

extern "C" __global__ void k_mul_mat_vec_q(const MatVecP p) {
    const i64 row = (i64)blockIdx.x * 4 + threadIdx.y;
    if (row >= p.w.ne[1]) {
        return;  // whole warp
    }
    const int lane = threadIdx.x;
    const i64 col = blockIdx.y, z = blockIdx.z;
    const i64 i2 = z % p.x.ne[2], i3 = z / p.x.ne[2];
    const u8 *w = (const u8 *)p.w.data + row * p.w.nb[1] + (i2 / p.r2) * p.w.nb[2] + (i3 / p.r3) * p.w.nb[3];
    const u8 *y = (const u8 *)p.xq + (col + p.x.ne[1] * z) * p.blocks_per_row * BS_Q8_1;
    const i64 units = p.w.ne[0] / 32;  // 32-value chunks in the row
    const i64 nb0 = p.w.nb[0];
    float acc;
    switch (p.w.type) {
    case T_Q4_0: acc = row_dot_q<T_Q4_0>(w, nb0, y, units, lane); break;
    case T_Q4_1: acc = row_dot_q<T_Q4_1>(w, nb0, y, units, lane); break;
    case T_Q5_0: acc = row_dot_q<T_Q5_0>(w, nb0, y, units, lane); break;
    case T_Q5_1: acc = row_dot_q<T_Q5_1>(w, nb0, y, units, lane); break;
    case T_Q8_0: acc = row_dot_q<T_Q8_0>(w, nb0, y, units, lane); break;
    case T_Q2_K: acc = row_dot_q<T_Q2_K>(w, nb0, y, units, lane); break;
    case T_Q3_K: acc = row_dot_q<T_Q3_K>(w, nb0, y, units, lane); break;
    case T_Q4_K: acc = row_dot_q<T_Q4_K>(w, nb0, y, units, lane); break;
    case T_Q5_K: acc = row_dot_q<T_Q5_K>(w, nb0, y, units, lane); break;
    case T_Q6_K: acc = row_dot_q<T_Q6_K>(w, nb0, y, units, lane); break;
    default: acc = 0.0f; break;
    }
    acc = warp_sum(acc);
    if (lane == 0) {
        *(float *)(p.d.data + t_off(p.d, row, col, i2, i3)) = acc;
    }
}

// ---- float weights ----------------------------------------------------------------------------

// x rounded to the weights' type, as ggml-cpu converts activations to F16/BF16 before the dot.
template <int T>
__device__ __forceinline__ float act_f(float x) {
    if (T == T_F16) return f16_to_f32(f32_to_f16(x));
    if (T == T_BF16) return bf16_to_f32(f32_to_bf16(x));
    return x;
}

template <int T>
__device__ __forceinline__ float row_dot_f(const char *w, i64 wnb0, const char *x, i64 xnb0, i64 K, int lane) {
    const int es = T == T_F32 ? 4 : 2;
    float acc = 0.0f;
    if (wnb0 == es && xnb0 == 4 && (K & 1) == 0 && ((u64)w % (2 * es)) == 0 && ((u64)x % 8) == 0) {
        const i64 K2 = K >> 1;
        for (i64 k = lane; k < K2; k += WARP) {
            float w0, w1;
            if (T == T_F32) {
                const float2 v = ((const float2 *)w)[k];
                w0 = v.x;
                w1 = v.y;
            } else {
                const u32 v = ((const u32 *)w)[k];
                w0 = T == T_F16 ? f16_to_f32((u16)v) : bf16_to_f32((u16)v);
                w1 = T == T_F16 ? f16_to_f32((u16)(v >> 16)) : bf16_to_f32((u16)(v >> 16));
            }
            const float2 xv = ((const float2 *)x)[k];
            acc += w0 * act_f<T>(xv.x) + w1 * act_f<T>(xv.y);
        }
        return acc;
    }
    for (i64 k = lane; k < K; k += WARP) {
        acc += ld_f(w + k * wnb0, T) * act_f<T>(*(const float *)(x + k * xnb0));
    }
    return acc;
}

extern "C" __global__ void k_mul_mat_f(const MatMulFP p) {
    const i64 row = (i64)blockIdx.x * 4 + threadIdx.y;
    if (row >= p.w.ne[1]) {
        return;  // whole warp
    }
    const int lane = threadIdx.x;
    const i64 col = blockIdx.y, z = blockIdx.z;
    const i64 i2 = z % p.x.ne[2], i3 = z / p.x.ne[2];
    const char *w = p.w.data + row * p.w.nb[1] + (i2 / p.r2) * p.w.nb[2] + (i3 / p.r3) * p.w.nb[3];
    const char *x = p.x.data + t_off(p.x, 0, col, i2, i3);
    const i64 K = p.w.ne[0];
    float acc;
    switch (p.w.type) {
    case T_F32: acc = row_dot_f<T_F32>(w, p.w.nb[0], x, p.x.nb[0], K, lane); break;
    case T_F16: acc = row_dot_f<T_F16>(w, p.w.nb[0], x, p.x.nb[0], K, lane); break;
    case T_BF16: acc = row_dot_f<T_BF16>(w, p.w.nb[0], x, p.x.nb[0], K, lane); break;
    default: acc = 0.0f; break;
    }
    acc = warp_sum(acc);
    if (lane == 0) {
        *(float *)(p.d.data + t_off(p.d, row, col, i2, i3)) = acc;
    }
}

// ---- prompt matmul on int8 tensor cores -------------------------------------------------------
//
// k_mul_mat_q_mma (MatVecP, the same fields as k_mul_mat_vec_q; xq written by k_quantize_q8_1):
//   block w (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K; K a multiple of its block
//   size), for N >= 8. Each warp computes a 16-row x 16-column tile of d with int8 mma.sync
//   (s8 x s8 -> s32), one k32 step per 32-value chunk of the weights (a block, or 1/8 of a K-quant
//   superblock) against one q8_1 block, so every integer sum is exact before it is scaled in f32,
//   with the same per-chunk arithmetic as k_mul_mat_vec_q:
//   - one scale per 32 values (Q4_0, Q5_0, Q8_0, Q4_1, Q5_1, Q4_K, Q5_K): one m16n8k32 per chunk;
//   - two scales per 32 values (Q2_K, Q3_K, Q6_K: 16-value sub-blocks): two m16n8k16, one a half;
//   - a min term: Q4_1/Q5_1 take m * s of the q8_1 block (ggml's); Q4_K, Q5_K, Q2_K take
//     dmin * min * d8 * sum(y), the activation sums per chunk (or half) from a second mma with
//     all-ones weights.
//   Offsets (q - 8, q - 16, q - 4, q - 32) are applied per byte, so the weight fragments are the
//   signed values themselves. Fragments are loaded straight from global memory (no shared memory);
//   rows past M and columns past N are clamped on load and not stored.
//   block (32, 4) = 4 warps stacked along M (64 rows x 16 columns per block),
//   grid = (ceil(M / 64), ceil(N / 16), ne12 * ne13); no dynamic shared memory; sm_80 or newer.

__device__ __forceinline__ void mma_s8_16x8x32(int *c, const int *a, int b0, int b1) {
#ifdef GGRPC_CUDA_EMU
    emu_mma_m16n8k32_s8(c, a, b0, b1);  // the warp-collective PTX fragment layout, on the host
#else
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// m16n8k16: a0 = A(g, 4t..4t+3), a1 = A(g + 8, 4t..), b0 = B(4t.., g); c as for m16n8k32.
__device__ __forceinline__ void mma_s8_16x8x16(int *c, int a0, int a1, int b0) {
#ifdef GGRPC_CUDA_EMU
    emu_mma_m16n8k16_s8(c, a0, a1, b0);
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a0), "r"(a1), "r"(b0));
#endif
}

// Per byte: x - o for bytes x in 0..127 + o (o a byte value 1..128 repeated in each byte).
__device__ __forceinline__ int sub_bytes(int v, u32 o) {
    return (int)((((u32)v | 0x80808080u) - o) ^ 0x80808080u);
}

// The weight types whose 32-value chunks have two 16-value sub-blocks, and those with a min term.
template <int T>
__device__ __forceinline__ constexpr bool mma_halves() {
    return T == T_Q2_K || T == T_Q3_K || T == T_Q6_K;
}
template <int T>
__device__ __forceinline__ constexpr bool mma_min() {
    // Q4_1/Q5_1 take their min term from the activation block's s, as ggml-cpu does.
    return T == T_Q4_K || T == T_Q5_K || T == T_Q2_K;
}

// Signed values k..k+3 (k a multiple of 4) of chunk j of block b as four packed int8 (the values
// k_mul_mat_vec_q's sumi takes, less its per-block offset).
template <int T>
__device__ __forceinline__ int block_i8x4(const u8 *b, int j, int k) {
    if (T == T_Q8_0) {
        return ld_i32_b2(b + 2 + k);
    }
    if (T == T_Q4_0 || T == T_Q4_1 || T == T_Q5_0 || T == T_Q5_1) {
        const int qoff = T == T_Q4_0 ? 2 : T == T_Q4_1 ? 4 : T == T_Q5_0 ? 6 : 8;
        int v = k < 16 ? ld_i32_b2(b + qoff + k) & 0x0F0F0F0F : (ld_i32_b2(b + qoff + k - 16) >> 4) & 0x0F0F0F0F;
        if (T == T_Q5_0 || T == T_Q5_1) {
            v |= spread4(ld_i32_b2(b + (T == T_Q5_0 ? 2 : 4)) >> k);  // qh bit k + i: value k + i's bit 4
        }
        if (T == T_Q4_0) return sub_bytes(v, 0x08080808u);
        if (T == T_Q5_0) return sub_bytes(v, 0x10101010u);
        return v;
    }
    if (T == T_Q4_K || T == T_Q5_K) {
        const int c = j >> 1, up = j & 1;
        int v = (ld_i32_b2(b + (T == T_Q4_K ? 16 : 48) + 32 * c + k) >> (4 * up)) & 0x0F0F0F0F;
        if (T == T_Q5_K) {
            v |= ((ld_i32_b2(b + 16 + k) >> j) & ONES) << 4;
        }
        return v;
    }
    if (T == T_Q2_K || T == T_Q3_K) {
        const int half = j >> 2, shift = j & 3;
        int v = (ld_i32_b2(b + (T == T_Q2_K ? 16 : 32) + 32 * half + k) >> (2 * shift)) & 0x03030303;
        if (T == T_Q3_K) {
            v |= ((ld_i32_b2(b + k) >> j) & ONES) << 2;  // hmask bit set: q, clear: q - 4
            return sub_bytes(v, 0x04040404u);
        }
        return v;
    }
    // Q6_K
    const int h = j >> 2, q = j & 3;
    const int ql = (ld_i32_b2(b + 64 * h + 32 * (q & 1) + k) >> (4 * (q >> 1))) & 0x0F0F0F0F;
    const int qh = (ld_i32_b2(b + 128 + 32 * h + k) >> (2 * q)) & 0x03030303;
    return sub_bytes(ql | (qh << 4), 0x20202020u);
}

// One weight row's scales for chunk j of its block b.
struct ChunkScale {
    float d, dm;     // the block's scale and min scale (dm unused without a min term)
    int s[2], m[2];  // integer scales and mins per half (32-value sub-blocks: s[0], m[0] only)
};

template <int T>
__device__ __forceinline__ ChunkScale chunk_scale(const u8 *b, int j) {
    ChunkScale r = {0.0f, 0.0f, {1, 1}, {0, 0}};
    if (T == T_Q4_0 || T == T_Q5_0 || T == T_Q8_0) {
        r.d = ld_h(b);
    } else if (T == T_Q4_1 || T == T_Q5_1) {
        r.d = ld_h(b);
        r.dm = ld_h(b + 2);
    } else if (T == T_Q4_K || T == T_Q5_K) {
        scale_min_k4(j, b + 4, r.s[0], r.m[0]);
        r.d = ld_h(b);
        r.dm = ld_h(b + 2);
    } else if (T == T_Q2_K) {
        const int s0 = b[2 * j], s1 = b[2 * j + 1];
        r.s[0] = s0 & 0xF;
        r.s[1] = s1 & 0xF;
        r.m[0] = s0 >> 4;
        r.m[1] = s1 >> 4;
        r.d = ld_h(b + 80);
        r.dm = ld_h(b + 82);
    } else if (T == T_Q3_K) {
        r.s[0] = scale_q3_k(2 * j, b + 96);
        r.s[1] = scale_q3_k(2 * j + 1, b + 96);
        r.d = ld_h(b + 108);
    } else {  // Q6_K
        const int h = j >> 2, q = j & 3;
        r.s[0] = ((const i8 *)b)[192 + 8 * h + 2 * q];
        r.s[1] = ((const i8 *)b)[192 + 8 * h + 2 * q + 1];
        r.d = ld_h(b + 208);
    }
    return r;
}

// One output's share of one chunk, as vdot computes it: c the integer sums of the weights' signed
// values times the activations (per half for two-scale types), y the activations' sums (per half),
// y the activation block (its scale: Q8_K's f32 for K-quants, q8_1's f16 otherwise, as in vdot).
template <int T>
__device__ __forceinline__ float chunk_term(const ChunkScale &r, int c0, int c1, int y0, int y1, const u8 *y) {
    const bool kq = T == T_Q2_K || T == T_Q3_K || T == T_Q4_K || T == T_Q5_K || T == T_Q6_K;
    const float d8 = kq ? ld_f32(y) : ld_h(y);
    if (T == T_Q4_0 || T == T_Q5_0 || T == T_Q8_0) {
        return (float)c0 * (r.d * d8);
    }
    if (T == T_Q4_1 || T == T_Q5_1) {
        return r.d * d8 * (float)c0 + r.dm * ld_h(y + 2);
    }
    if (T == T_Q4_K || T == T_Q5_K) {
        return d8 * (r.d * (float)(r.s[0] * c0) - r.dm * (float)(r.m[0] * y0));
    }
    if (T == T_Q2_K) {
        return d8 * (r.d * (float)(r.s[0] * c0 + r.s[1] * c1) - r.dm * (float)(r.m[0] * y0 + r.m[1] * y1));
    }
    return d8 * r.d * (float)(r.s[0] * c0 + r.s[1] * c1);  // Q3_K, Q6_K (offsets in the values)
}

// The integer sums of one 16x8 tile for one chunk: c[h][e] for half h (h = 0 only, the whole
// chunk, for one-scale types), e the mma's output element.
template <int T>
__device__ __forceinline__ void chunk_mma(int (*c)[4], const int *a, int b0, int b1) {
    UNROLL
    for (int h = 0; h < 2; h++) {
        UNROLL
        for (int e = 0; e < 4; e++) {
            c[h][e] = 0;
        }
    }
    if (mma_halves<T>()) {
        mma_s8_16x8x16(c[0], a[0], a[1], b0);
        mma_s8_16x8x16(c[1], a[2], a[3], b1);
    } else {
        mma_s8_16x8x32(c[0], a, b0, b1);
    }
}

template <int T>
__device__ __forceinline__ void mma_tile(const MatVecP &p) {
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    const i64 M = p.w.ne[1], N = p.x.ne[1];
    const i64 row0 = (i64)blockIdx.x * 64 + threadIdx.y * 16;
    if (row0 >= M) {
        return;  // whole warp
    }
    const i64 col0 = (i64)blockIdx.y * 16, z = blockIdx.z;
    const i64 i2 = z % p.x.ne[2], i3 = z / p.x.ne[2];
    const char *wm = p.w.data + (i2 / p.r2) * p.w.nb[2] + (i3 / p.r3) * p.w.nb[3];
    const u8 *wa = (const u8 *)wm + min(row0 + g, M - 1) * p.w.nb[1];
    const u8 *wb = (const u8 *)wm + min(row0 + g + 8, M - 1) * p.w.nb[1];
    const i64 ystride = p.blocks_per_row * BS_Q8_1;
    const u8 *ym = (const u8 *)p.xq + N * z * ystride;
    const u8 *yb[2], *yd[2][2];
    UNROLL
    for (int j = 0; j < 2; j++) {
        yb[j] = ym + min(col0 + 8 * j + g, N - 1) * ystride;
        yd[j][0] = ym + min(col0 + 8 * j + 2 * t, N - 1) * ystride;
        yd[j][1] = ym + min(col0 + 8 * j + 2 * t + 1, N - 1) * ystride;
    }
    const int ones[4] = {ONES, ONES, ONES, ONES};
    const int cpb = (T == T_Q2_K || T == T_Q3_K || T == T_Q4_K || T == T_Q5_K || T == T_Q6_K) ? 8 : 1;
    float acc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    const i64 units = p.w.ne[0] / 32, nb0 = p.w.nb[0];  // 32-value chunks in the row
    for (i64 u = 0; u < units; u++) {
        const i64 ib = cpb == 8 ? (u >> 3) : u;
        const int jc = cpb == 8 ? (int)(u & 7) : 0;
        const u8 *ba = wa + ib * nb0, *bb = wb + ib * nb0;
        int a[4];
        a[0] = block_i8x4<T>(ba, jc, 4 * t);
        a[1] = block_i8x4<T>(bb, jc, 4 * t);
        a[2] = block_i8x4<T>(ba, jc, 16 + 4 * t);
        a[3] = block_i8x4<T>(bb, jc, 16 + 4 * t);
        const ChunkScale ra = chunk_scale<T>(ba, jc), rb = chunk_scale<T>(bb, jc);
        const i64 yo = u * BS_Q8_1;
        UNROLL
        for (int j = 0; j < 2; j++) {
            const int b0 = ld_i32_b4(yb[j] + yo + 4 + 4 * t), b1 = ld_i32_b4(yb[j] + yo + 4 + 16 + 4 * t);
            int c[2][4], cy[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
            chunk_mma<T>(c, a, b0, b1);
            if (mma_min<T>()) {
                chunk_mma<T>(cy, ones, b0, b1);  // every row: the column's activation sums
            }
            const u8 *y0 = yd[j][0] + yo, *y1 = yd[j][1] + yo;
            acc[j][0] += chunk_term<T>(ra, c[0][0], c[1][0], cy[0][0], cy[1][0], y0);
            acc[j][1] += chunk_term<T>(ra, c[0][1], c[1][1], cy[0][1], cy[1][1], y1);
            acc[j][2] += chunk_term<T>(rb, c[0][2], c[1][2], cy[0][2], cy[1][2], y0);
            acc[j][3] += chunk_term<T>(rb, c[0][3], c[1][3], cy[0][3], cy[1][3], y1);
        }
    }
    UNROLL
    for (int j = 0; j < 2; j++) {
        UNROLL
        for (int e = 0; e < 4; e++) {
            const i64 row = row0 + g + (e >= 2 ? 8 : 0);
            const i64 col = col0 + 8 * j + 2 * t + (e & 1);
            if (row < M && col < N) {
                *(float *)(p.d.data + t_off(p.d, row, col, i2, i3)) = acc[j][e];
            }
        }
    }
}

extern "C" __global__ void k_mul_mat_q_mma(const MatVecP p) {
    switch (p.w.type) {
    case T_Q4_0: mma_tile<T_Q4_0>(p); break;
    case T_Q4_1: mma_tile<T_Q4_1>(p); break;
    case T_Q5_0: mma_tile<T_Q5_0>(p); break;
    case T_Q5_1: mma_tile<T_Q5_1>(p); break;
    case T_Q8_0: mma_tile<T_Q8_0>(p); break;
    case T_Q2_K: mma_tile<T_Q2_K>(p); break;
    case T_Q3_K: mma_tile<T_Q3_K>(p); break;
    case T_Q4_K: mma_tile<T_Q4_K>(p); break;
    case T_Q5_K: mma_tile<T_Q5_K>(p); break;
    case T_Q6_K: mma_tile<T_Q6_K>(p); break;
    default: break;
    }
}
