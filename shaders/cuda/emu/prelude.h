// The CUDA built-ins the kernels in shaders/cuda/ use, for g++ on the CPU (GGRPC_CUDA_EMU).
// Included by emu.cpp before ../common.cuh and the family files; the runtime behind the
// emu_rt_* hooks (the cooperative scheduler of a block's threads) is in emu.cpp.
//
// Model: the threads of one block are cooperative user-space threads; one block runs at a time.
// A thread runs until it reaches __syncthreads() or a warp-collective (__shfl_*_sync,
// __syncwarp, __ballot_sync/__any_sync/__all_sync, the mma emulation), where it waits for every
// thread of its block (warp) that has not yet returned. `__shared__` variables are therefore
// plain statics, and atomics need no atomicity across blocks.
#pragma once

#ifndef GGRPC_CUDA_EMU
#error "emu/prelude.h is for the CUDA emulator build (define GGRPC_CUDA_EMU)"
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

// Nothing of the emulator but ggrpc_emu_launch leaves the shared object.
#pragma GCC visibility push(hidden)

// ---- qualifiers -------------------------------------------------------------------------------
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __shared__ static
#define __constant__ static
#define __restrict__ __restrict
#define __launch_bounds__(...)
// Every `__global__` bumps __COUNTER__ (through a dummy declaration), so emu.cpp can check at
// compile time that its dispatch table lists as many kernels as the sources define.
#define GGRPC_EMU_CAT2(a, b) a##b
#define GGRPC_EMU_CAT(a, b) GGRPC_EMU_CAT2(a, b)
#define __global__ int GGRPC_EMU_CAT(ggrpc_emu_kernel_mark_, __COUNTER__); extern "C"

// ---- vector types and the thread coordinates ---------------------------------------------------
struct uint3 { unsigned x, y, z; };
typedef uint3 dim3;
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// Set by the scheduler before it resumes a thread (globals with external linkage, so the compiler
// reloads them after every switch; see EMU_BARRIER).
extern uint3 threadIdx, blockIdx, blockDim, gridDim;
#define warpSize 32

// ---- runtime hooks (emu.cpp) ------------------------------------------------------------------
enum EmuWarpOp { EMU_OP_SHFL = 1, EMU_OP_VOTE, EMU_OP_SYNCWARP, EMU_OP_MMA };
void emu_rt_syncthreads();
// Deposits `n` words, waits for the warp's other live lanes, returns the warp generation's slot
// array (32 lanes x 6 words) and sets *present to the lanes that took part.
const uint32_t *emu_rt_warp(int op, const uint32_t *words, int n, unsigned *present);
int emu_rt_lane();
unsigned emu_rt_live_lanes();
void *emu_dyn_shared();

// A compiler barrier around every switch: memory (shared statics, threadIdx) is re-read after.
#define EMU_BARRIER() asm volatile("" ::: "memory")

// ---- block and warp synchronization -------------------------------------------------------------
static inline void __syncthreads() {
    EMU_BARRIER();
    emu_rt_syncthreads();
    EMU_BARRIER();
}
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)mask;
    unsigned present;
    EMU_BARRIER();
    emu_rt_warp(EMU_OP_SYNCWARP, nullptr, 0, &present);
    EMU_BARRIER();
}
static inline void __threadfence() { EMU_BARRIER(); }
static inline void __threadfence_block() { EMU_BARRIER(); }
static inline unsigned __activemask() { return emu_rt_live_lanes(); }

// The shuffles, with CUDA's width semantics (a source outside the lane's segment of `width`
// lanes, or a lane that did not take part, yields the caller's own value). The mask is not
// interpreted: every live lane of the warp must call (as FULL_MASK requires).
template <class T>
static inline T emu_shfl(T v, int src, bool valid) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type wider than 8 bytes");
    uint32_t w[2] = {0, 0};
    memcpy(w, &v, sizeof v);
    unsigned present;
    EMU_BARRIER();
    const uint32_t *slots = emu_rt_warp(EMU_OP_SHFL, w, 2, &present);
    EMU_BARRIER();
    if (!valid || !((present >> src) & 1u)) {
        return v;
    }
    T r;
    memcpy(&r, slots + 6 * src, sizeof r);
    return r;
}
template <class T>
static inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    (void)mask;
    const int lane = emu_rt_lane(), seg = lane & ~(width - 1);
    return emu_shfl(v, seg + (src_lane & (width - 1)), true);
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    (void)mask;
    const int lane = emu_rt_lane(), seg = lane & ~(width - 1), src = lane ^ lane_mask;
    return emu_shfl(v, src & 31, src >= seg && src < seg + width);
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    (void)mask;
    const int lane = emu_rt_lane(), seg = lane & ~(width - 1), src = lane + (int)delta;
    return emu_shfl(v, src & 31, src < seg + width);
}
template <class T>
static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    (void)mask;
    const int lane = emu_rt_lane(), seg = lane & ~(width - 1), src = lane - (int)delta;
    return emu_shfl(v, src & 31, src >= seg);
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
    (void)mask;
    const uint32_t w = pred != 0;
    unsigned present;
    EMU_BARRIER();
    const uint32_t *slots = emu_rt_warp(EMU_OP_VOTE, &w, 1, &present);
    EMU_BARRIER();
    unsigned r = 0;
    for (int l = 0; l < 32; l++) {
        if (((present >> l) & 1u) && slots[6 * l]) {
            r |= 1u << l;
        }
    }
    return r;
}
static inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
static inline int __all_sync(unsigned mask, int pred) {
    const unsigned live = emu_rt_live_lanes();
    return (__ballot_sync(mask, pred) & live) == live;
}

// mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 with the PTX ISA fragment layout: lane l,
// g = l / 4, t = l % 4, holds in a[0..3] A(g, 4t..4t+3), A(g + 8, 4t..), A(g, 16 + 4t..),
// A(g + 8, 16 + 4t..) and in b0, b1 B(4t.., g), B(16 + 4t.., g) (k in the bytes, lowest first);
// it gets D(g, 2t), D(g, 2t + 1), D(g + 8, 2t), D(g + 8, 2t + 1) added to c[0..3]. All 32 lanes
// must take part. The runtime calls emu_mma_tile once the whole warp has deposited its fragments.
static inline void emu_mma_tile(uint32_t (*slot)[6]) {
    int8_t A[16][32], B[8][32];  // A row-major, B column-major: both contiguous in k
    for (int l = 0; l < 32; l++) {
        const int g = l / 4, t = l % 4;
        for (int r = 0; r < 4; r++) {
            const int row = g + 8 * (r & 1), k0 = 4 * t + 16 * (r >> 1);
            for (int b = 0; b < 4; b++) {
                A[row][k0 + b] = (int8_t)(slot[l][r] >> (8 * b));
            }
        }
        for (int r = 0; r < 2; r++) {
            for (int b = 0; b < 4; b++) {
                B[g][4 * t + 16 * r + b] = (int8_t)(slot[l][4 + r] >> (8 * b));
            }
        }
    }
    for (int l = 0; l < 32; l++) {
        const int g = l / 4, t = l % 4;
        for (int e = 0; e < 4; e++) {
            const int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
            int s = 0;
            for (int k = 0; k < 32; k++) {
                s += (int)A[row][k] * (int)B[col][k];
            }
            slot[l][e] = (uint32_t)s;
        }
    }
}
static inline void emu_mma_m16n8k32_s8(int *c, const int *a, int b0, int b1) {
    const uint32_t w[6] = {(uint32_t)a[0], (uint32_t)a[1], (uint32_t)a[2], (uint32_t)a[3], (uint32_t)b0, (uint32_t)b1};
    unsigned present;
    EMU_BARRIER();
    const uint32_t *d = emu_rt_warp(EMU_OP_MMA, w, 6, &present) + 6 * emu_rt_lane();
    EMU_BARRIER();
    for (int e = 0; e < 4; e++) {
        c[e] += (int)d[e];
    }
}
// mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32: the PTX ISA's fragment layout for m16n8k16 with
// .s8/.u8 A and B ("Matrix Fragments for mma.m16n8k16 with integer type": A is two .b32, a0 with
// row groupID and a1 with row groupID + 8, both at columns threadID_in_group * 4 + i; B one .b32
// at rows threadID_in_group * 4 + i, column groupID; C/D as for m16n8k32) is the k = 0..15 half
// of m16n8k32's, so it runs as m16n8k32 with the k = 16..31 half zero.
static inline void emu_mma_m16n8k16_s8(int *c, int a0, int a1, int b0) {
    const int a[4] = {a0, a1, 0, 0};
    emu_mma_m16n8k32_s8(c, a, b0, 0);
}

// ---- atomics (one block runs at a time, but the memory may be seen by other host threads) ------
template <class T> static inline T atomicAdd(T *p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline float atomicAdd(float *p, float v) { const float o = *p; *p = o + v; return o; }
static inline double atomicAdd(double *p, double v) { const double o = *p; *p = o + v; return o; }
template <class T> static inline T atomicSub(T *p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
template <class T> static inline T atomicOr(T *p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }
template <class T> static inline T atomicAnd(T *p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }
template <class T> static inline T atomicXor(T *p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); }
template <class T> static inline T atomicExch(T *p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
template <class T> static inline T atomicMax(T *p, T v) { const T o = *p; if (v > o) *p = v; return o; }
template <class T> static inline T atomicMin(T *p, T v) { const T o = *p; if (v < o) *p = v; return o; }
template <class T> static inline T atomicCAS(T *p, T cmp, T v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}

// ---- integer and float intrinsics ---------------------------------------------------------------
template <class A, class B>
static inline std::common_type_t<A, B> min(A a, B b) { return b < a ? b : a; }
template <class A, class B>
static inline std::common_type_t<A, B> max(A a, B b) { return a < b ? b : a; }

static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static inline int __dp4a(int a, int b, int c) {
    for (int k = 0; k < 4; k++) {
        c += (int)(int8_t)(a >> (8 * k)) * (int)(int8_t)(b >> (8 * k));
    }
    return c;
}
static inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
    for (int k = 0; k < 4; k++) {
        c += ((a >> (8 * k)) & 0xffu) * ((b >> (8 * k)) & 0xffu);
    }
    return c;
}
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
template <class T> static inline T __ldg(const T *p) { return *p; }
// glibc declares __expf & co. itself: the fast CUDA variants are macros for the libm functions.
#define __expf expf
#define __logf logf
#define __powf powf
#define __sinf sinf
#define __cosf cosf
#define __tanhf tanhf
static inline float __fdividef(float x, float y) { return x / y; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }

// ---- f16 (bit-exact software conversions: no _Float16 or F16C needed) ---------------------------
// f16 -> f32 is exact; NaN keeps its payload (quieted).
static inline float emu_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t u;
    if (e == 0x1f) {
        u = sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u);
    } else if (e != 0) {
        u = sign | ((e + 112) << 23) | (m << 13);
    } else if (m == 0) {
        u = sign;
    } else {  // subnormal: normalize
        int sh = __builtin_clz(m) - 21;  // leading zeros within the 10-bit field, + 1
        u = sign | ((uint32_t)(113 - sh) << 23) | (((m << sh) & 0x3ffu) << 13);
    }
    return __uint_as_float(u);
}
// f32 -> f16, round to nearest even (cvt.rn.f16.f32): overflow to inf, subnormals, NaN -> 0x7fff
// (PTX's canonical NaN).
static inline uint16_t emu_f32_to_f16(float f) {
    const uint32_t u = __float_as_uint(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return 0x7fff;
    }
    if (a >= 0x477ff000u) {  // rounds to >= 65536: inf
        return sign | 0x7c00u;
    }
    if (a >= 0x38800000u) {  // normal f16 (>= 2^-14)
        const uint32_t r = a - 0x38000000u;  // rebias exponent: 127 - 15 = 112 (<< 23)
        const uint32_t half = r >> 13, rem = r & 0x1fffu;
        const uint32_t out = half + (rem > 0x1000u || (rem == 0x1000u && (half & 1u)));
        return sign | (uint16_t)out;
    }
    if (a < 0x33000000u) {  // below half the smallest subnormal (2^-25): zero (2^-25 itself ties to 0)
        return sign;
    }
    // subnormal f16: value = m * 2^-24
    const uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u;
    const int shift = 126 - (int)e;  // mant * 2^(e-150) / 2^-24 = mant >> (126 - e)
    const uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
    const uint32_t out = q + (rem > halfway || (rem == halfway && (q & 1u)));
    return sign | (uint16_t)out;
}

#pragma GCC visibility pop
