// The ABI between the Rust CUDA device (src/device/cuda/) and every kernel in this folder.
// Rust prepends this file to each family's .cu file and compiles the result with NVRTC; no header
// of the CUDA toolkit is included, so a machine with only the driver and libnvrtc can compile.
//
// Every kernel is `extern "C" __global__ void k_<name>(const <Family>P p)`: one parameter struct,
// passed by value, mirrored field for field by a #[repr(C)] struct on the Rust side. Types and op
// codes are ggml's own enum values (ggml_type, ggml_unary_op, ggml_glu_op).

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef signed char i8;

// One tensor as a kernel sees it: its first byte, ggml type, shape and byte strides.
struct Tensor {
    char *data;   // null: the optional source is absent
    int type;     // ggml_type
    int pad;
    i64 ne[4];
    i64 nb[4];
};

// Raised (atomicOr) when a kernel meets an index outside the tensor it indexes; the element is
// then skipped and the host fails the graph with a clear error.
#define FLAG_INDEX 1u

enum { T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8,
       T_Q2_K = 10, T_Q3_K = 11, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14,
       T_I32 = 26, T_I64 = 27, T_BF16 = 30 };

// ---------------------------------------------------------------------------------------------
// Shared device helpers (below the ABI). Everything here is header-free: f16 goes through inline
// PTX (the emulator's software conversion under GGRPC_CUDA_EMU), bf16 through bit shifts.

// The device-only constructs have a host path when GGRPC_CUDA_EMU is defined: shaders/cuda/emu/
// compiles these very sources with g++ into a CPU emulator (emu/prelude.h supplies the CUDA
// built-ins), so CI runs every kernel without a GPU. Without the macro this is plain CUDA C.
//   UNROLL                  `#pragma unroll` (g++ would warn on the unknown pragma)
//   DYN_SHARED(type, name)  the block's dynamic shared memory as `type name[]`
// plus the f16 conversions below and the mma.sync in matmul.cu.
#ifdef GGRPC_CUDA_EMU
#define UNROLL _Pragma("GCC unroll 32")
#define DYN_SHARED(type, name) type *const name = (type *)emu_dyn_shared()
#else
#define UNROLL _Pragma("unroll")
#define DYN_SHARED(type, name) extern __shared__ type name[]
#endif

#define WARP 32
#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)

// Block sizes and byte sizes of the ggml types the kernels read or write.
enum { QK4_0 = 32, QK8_0 = 32, QK_K = 256 };
enum { BS_Q4_0 = 18, BS_Q4_1 = 20, BS_Q5_0 = 22, BS_Q5_1 = 24, BS_Q8_0 = 34, BS_Q2_K = 84,
       BS_Q3_K = 110, BS_Q4_K = 144, BS_Q5_K = 176, BS_Q6_K = 210, BS_Q8_1 = 36 };

// The q8_1 activation block of the quantized matmul (36 bytes, 4-byte aligned when its column
// is): d = amax/127 (f16), s = d * sum(qs) (f16, ggml-cpu's quantize_row_q8_1_ref convention;
// the kernels here use integer sums of qs instead and never read s), qs = round(x/d).
struct block_q8_1 { u16 d; u16 s; i8 qs[32]; };

__device__ __forceinline__ float f16_to_f32(u16 h) {
#ifdef GGRPC_CUDA_EMU
    return emu_f16_to_f32(h);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}

__device__ __forceinline__ u16 f32_to_f16(float f) {
#ifdef GGRPC_CUDA_EMU
    return emu_f32_to_f16(f);
#else
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#endif
}

__device__ __forceinline__ float bf16_to_f32(u16 h) {
    return __int_as_float(((u32)h) << 16);
}

// ggml_compute_fp32_to_bf16: round to nearest even, NaN kept quiet.
__device__ __forceinline__ u16 f32_to_bf16(float f) {
    u32 u = (u32)__float_as_int(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (u16)((u >> 16) | 64u);
    }
    return (u16)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

// Unaligned-safe little-endian loads from byte pointers (block fields are only 2-byte aligned).
__device__ __forceinline__ u16 ld_u16(const u8 *p) {
    return *(const u16 *)p;  // ggml blocks hold f16 fields: 2-byte alignment is guaranteed
}
__device__ __forceinline__ float ld_h(const u8 *p) { return f16_to_f32(ld_u16(p)); }
// A 4-byte aligned f32 (Q8_K-style activation scales).
__device__ __forceinline__ float ld_f32(const u8 *p) { return *(const float *)p; }
// Four bytes from a 2-byte aligned address.
__device__ __forceinline__ int ld_i32_b2(const u8 *p) {
    const u16 *q = (const u16 *)p;
    return (int)((u32)q[0] | ((u32)q[1] << 16));
}
// Four bytes from a 4-byte aligned address.
__device__ __forceinline__ int ld_i32_b4(const u8 *p) { return *(const int *)p; }

// Byte size of one block (one element for float types) and elements per block.
__device__ __forceinline__ int type_block(int type) {
    switch (type) {
    case T_Q4_0: case T_Q4_1: case T_Q5_0: case T_Q5_1: case T_Q8_0: return 32;
    case T_Q2_K: case T_Q3_K: case T_Q4_K: case T_Q5_K: case T_Q6_K: return QK_K;
    default: return 1;
    }
}

__device__ __forceinline__ bool type_is_float(int type) {
    return type == T_F32 || type == T_F16 || type == T_BF16;
}

// One float element of type F32/F16/BF16 at p (I32 too, as a value).
__device__ __forceinline__ float ld_f(const char *p, int type) {
    switch (type) {
    case T_F32: return *(const float *)p;
    case T_F16: return f16_to_f32(*(const u16 *)p);
    case T_BF16: return bf16_to_f32(*(const u16 *)p);
    case T_I32: return (float)*(const int *)p;
    default: return 0.0f;
    }
}

__device__ __forceinline__ void st_f(char *p, int type, float v) {
    switch (type) {
    case T_F32: *(float *)p = v; break;
    case T_F16: *(u16 *)p = f32_to_f16(v); break;
    case T_BF16: *(u16 *)p = f32_to_bf16(v); break;
    default: break;
    }
}

// Byte offset of element (i0, i1, i2, i3) of a float tensor.
__device__ __forceinline__ i64 t_off(const Tensor &t, i64 i0, i64 i1, i64 i2, i64 i3) {
    return i0 * t.nb[0] + i1 * t.nb[1] + i2 * t.nb[2] + i3 * t.nb[3];
}

__device__ __forceinline__ i64 t_nel(const Tensor &t) {
    return t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3];
}

// Row-major (i0 fastest) coordinates of flat element index k in shape ne.
__device__ __forceinline__ void unravel(i64 k, const i64 *ne, i64 &i0, i64 &i1, i64 &i2, i64 &i3) {
    i0 = k % ne[0];
    k /= ne[0];
    i1 = k % ne[1];
    k /= ne[1];
    i2 = k % ne[2];
    i3 = k / ne[2];
}

// 6-bit scale j and min of a Q4_K/Q5_K block's 12 scale bytes (ggml's get_scale_min_k4).
__device__ __forceinline__ void scale_min_k4(int j, const u8 *q, int &sc, int &m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Q3_K scale `is` (0..15) from the 12 scale bytes, already minus 32.
__device__ __forceinline__ int scale_q3_k(int is, const u8 *s) {
    const int lo = is < 8 ? (s[is] & 0xF) : (s[is - 8] >> 4);
    const int hi = (s[8 + (is & 3)] >> (2 * (is >> 2))) & 3;
    return (lo | (hi << 4)) - 32;
}

// Element j of one block of a block type at b, exactly as ggml's dequantize_row_* computes it.
__device__ __forceinline__ float dq_elem(int type, const u8 *b, int j) {
    switch (type) {
    case T_Q4_0: {
        const int q = j < 16 ? (b[2 + j] & 0xF) : (b[2 + j - 16] >> 4);
        return (float)(q - 8) * ld_h(b);
    }
    case T_Q4_1: {
        const int q = j < 16 ? (b[4 + j] & 0xF) : (b[4 + j - 16] >> 4);
        return (float)q * ld_h(b) + ld_h(b + 2);
    }
    case T_Q5_0: {
        const int lo = j < 16 ? (b[6 + j] & 0xF) : (b[6 + j - 16] >> 4);
        const int hi = (b[2 + (j >> 3)] >> (j & 7)) & 1;
        return (float)((lo | (hi << 4)) - 16) * ld_h(b);
    }
    case T_Q5_1: {
        const int lo = j < 16 ? (b[8 + j] & 0xF) : (b[8 + j - 16] >> 4);
        const int hi = (b[4 + (j >> 3)] >> (j & 7)) & 1;
        return (float)(lo | (hi << 4)) * ld_h(b) + ld_h(b + 2);
    }
    case T_Q8_0:
        return (float)((const i8 *)b)[2 + j] * ld_h(b);
    case T_Q2_K: {
        const int half = j >> 7, shift = (j >> 5) & 3, l = j & 31;
        const int sc = b[j >> 4];
        const int q = (b[16 + 32 * half + l] >> (2 * shift)) & 3;
        const float dl = ld_h(b + 80) * (float)(sc & 0xF);
        const float ml = ld_h(b + 82) * (float)(sc >> 4);
        return dl * (float)q - ml;
    }
    case T_Q3_K: {
        const int half = j >> 7, shift = (j >> 5) & 3, l = j & 31;
        const int q = (b[32 + 32 * half + l] >> (2 * shift)) & 3;
        const int m = 4 * half + shift;
        const int hi = (b[l] & (1 << m)) ? 0 : 4;
        const float dl = ld_h(b + 108) * (float)scale_q3_k(j >> 4, b + 96);
        return dl * (float)(q - hi);
    }
    case T_Q4_K: {
        const int c = j >> 6, up = (j >> 5) & 1, l = j & 31;
        int sc, m;
        scale_min_k4(2 * c + up, b + 4, sc, m);
        const int q = (b[16 + 32 * c + l] >> (4 * up)) & 0xF;
        return ld_h(b) * (float)sc * (float)q - ld_h(b + 2) * (float)m;
    }
    case T_Q5_K: {
        const int c = j >> 6, up = (j >> 5) & 1, l = j & 31;
        int sc, m;
        scale_min_k4(2 * c + up, b + 4, sc, m);
        const int q = ((b[48 + 32 * c + l] >> (4 * up)) & 0xF) + (((b[16 + l] >> (2 * c + up)) & 1) << 4);
        return ld_h(b) * (float)sc * (float)q - ld_h(b + 2) * (float)m;
    }
    case T_Q6_K: {
        const int h = j >> 7, k = (j >> 5) & 3, l = j & 31;
        const int ql = (b[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0xF;
        const int qh = (b[128 + 32 * h + l] >> (2 * k)) & 3;
        const int q = (ql | (qh << 4)) - 32;
        const int sc = ((const i8 *)b)[192 + (j >> 4)];
        return ld_h(b + 208) * (float)sc * (float)q;
    }
    default:
        return 0.0f;
    }
}

// Element i0 of a row of any readable type (float types through nb0, block types by block).
__device__ __forceinline__ float ld_row_elem(const char *row, i64 nb0, int type, i64 i0) {
    if (type_is_float(type)) {
        return ld_f(row + i0 * nb0, type);
    }
    const int bs = type_block(type);
    return dq_elem(type, (const u8 *)(row + (i0 / bs) * nb0), (int)(i0 % bs));
}

// ggml's quantize_row_q8_0_ref on 32 floats.
__device__ __forceinline__ void quantize_block_q8_0(const float *x, u8 *b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        amax = fmaxf(amax, fabsf(x[j]));
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    *(u16 *)b = f32_to_f16(d);
    for (int j = 0; j < 32; j++) {
        ((i8 *)b)[2 + j] = (i8)roundf(x[j] * id);
    }
}

// ggml's quantize_row_q4_0_ref on 32 floats.
__device__ __forceinline__ void quantize_block_q4_0(const float *x, u8 *b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    *(u16 *)b = f32_to_f16(d);
    for (int j = 0; j < 16; j++) {
        const int q0 = min(15, (int)(x[j] * id + 8.5f));
        const int q1 = min(15, (int)(x[j + 16] * id + 8.5f));
        b[2 + j] = (u8)(q0 | (q1 << 4));
    }
}

__device__ __forceinline__ float warp_sum(float v) {
    UNROLL
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(FULL_MASK, v, o);
    }
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    UNROLL
    for (int o = 16; o > 0; o >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    }
    return v;
}

__device__ __forceinline__ int warp_sum_i(int v) {
    UNROLL
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(FULL_MASK, v, o);
    }
    return v;
}

// Sum / max over a 1-D block whose size is a multiple of 32 (<= 1024); every thread gets the
// result. `sh` is 32 floats of shared memory; the call begins and ends with a barrier, so it may
// be called repeatedly with the same `sh`.
__device__ __forceinline__ float block_sum(float v, float *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : NEG_INF;
    return warp_max(v);
}

// ALiBi slope of head h as ggml computes it (1 when max_bias is 0).
__device__ __forceinline__ float alibi_slope(float max_bias, float m0, float m1, int n_head_log2, i64 h) {
    if (max_bias <= 0.0f) {
        return 1.0f;
    }
    return h < n_head_log2 ? powf(m0, (float)(h + 1)) : powf(m1, (float)(2 * (h - n_head_log2) + 1));
}

// Grid-stride helpers for 1-D launches (block 256, grid.x <= 65535).
#define GRID_STRIDE(k, n) \
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < (n); k += (i64)blockDim.x * gridDim.x)
