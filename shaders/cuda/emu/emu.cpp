// Build: g++ -std=c++20 -O2 -shared -fPIC -pthread -Wall -Wextra -o /tmp/libggrpc_cuda_emu.so shaders/cuda/emu/emu.cpp
//
// A CPU emulator of the CUDA kernels in shaders/cuda/: this one translation unit compiles the very
// kernel sources (../common.cuh and every family .cu, with GGRPC_CUDA_EMU defined, see
// prelude.h) and exports one function:
//
//   extern "C" int ggrpc_emu_launch(const char *kernel, const unsigned grid[3],
//                                   const unsigned block[3], unsigned dyn_shared_bytes,
//                                   const void *params);
//
// It runs `kernel` (a k_* name) over `grid` x `block` with `dyn_shared_bytes` of dynamic shared
// memory; `params` points at the bytes of the kernel's by-value parameter struct (read with
// memcpy: any alignment; sizeof(struct) bytes are read). It returns when every block has run:
//   0  done
//   1  unknown kernel name
//   2  a block cannot proceed: its threads wait at different barriers (deadlock), lanes of a warp
//      meet different warp-collectives, or an mma.sync runs with fewer than 32 live lanes; the
//      launch stops at that block (earlier blocks' writes stay)
//   3  dyn_shared_bytes > 48 KiB (what a CUDA device gives without opting in)
//   4  an invalid launch configuration: a zero grid or block dimension, or more than 1024
//      threads per block (block.z <= 64)
// Thread-safe: launches from several host threads run one after another (a global mutex).
//
// Execution model: blocks run one after another (x fastest, then y, z); the threads of a block
// are cooperative user-space threads on their own 64 KiB stacks (pooled, reused across blocks
// and launches), scheduled in thread order. A thread runs until it returns or reaches
// __syncthreads() / a warp-collective; a barrier opens when every thread of the block (warp)
// that has not returned has arrived. When nothing can run and some thread still waits, the block
// is deadlocked (2). Dynamic shared memory is filled with 0xff bytes (NaN as f32) before each
// block, so a kernel reading what it never wrote shows it.
//
// Adding a kernel: list it in GGRPC_EMU_KERNELS below; a static_assert counts the __global__
// functions of the sources against that list, so a kernel missing from it fails the build.

#define GGRPC_CUDA_EMU 1

// x86-64: a hand-written switch of the callee-saved registers (no signal-mask system call, unlike
// swapcontext); elsewhere, or with GGRPC_EMU_UCONTEXT defined, ucontext.
#if defined(__x86_64__) && !defined(GGRPC_EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
#else
#define EMU_ASM_SWITCH 0
#include <ucontext.h>
#endif

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mutex>
#include <new>

#include "prelude.h"

#pragma GCC visibility push(hidden)

constexpr int kGlobalsBefore = __COUNTER__;
#include "../common.cuh"
#include "../binary.cu"
#include "../unary.cu"
#include "../norm.cu"
#include "../softmax.cu"
#include "../rope.cu"
#include "../get_rows.cu"
#include "../copy.cu"
#include "../matmul.cu"
#include "../attention.cu"
#ifdef GGRPC_EMU_TEST_SOURCE  // extra kernels of a test driver that #includes this file
#include GGRPC_EMU_TEST_SOURCE
#endif
constexpr int kGlobalsDefined = __COUNTER__ - kGlobalsBefore - 1;

#ifndef GGRPC_EMU_TEST_KERNELS
#define GGRPC_EMU_TEST_KERNELS(X)
#endif

// Every `extern "C" __global__` kernel of the family files, by name.
#define GGRPC_EMU_KERNELS(X) \
    X(k_binary)              \
    X(k_unary)               \
    X(k_glu)                 \
    X(k_norm)                \
    X(k_soft_max)            \
    X(k_rope)                \
    X(k_get_rows)            \
    X(k_copy)                \
    X(k_set_rows)            \
    X(k_quantize_q8_1)       \
    X(k_mul_mat_vec_q)       \
    X(k_mul_mat_f)           \
    X(k_mul_mat_q_mma)       \
    X(k_flash_attn)          \
    GGRPC_EMU_TEST_KERNELS(X)

uint3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {

constexpr unsigned kMaxThreads = 1024;
constexpr unsigned kMaxDynShared = 48 * 1024;
constexpr size_t kStack = 64 * 1024;

// ---- context switch -----------------------------------------------------------------------------
#if EMU_ASM_SWITCH
extern "C" void ggrpc_emu_switch(void **save_sp, void *to_sp);
extern "C" void ggrpc_emu_trampoline();
asm(R"(
    .text
    .p2align 4
    .globl ggrpc_emu_switch
    .hidden ggrpc_emu_switch
    .type ggrpc_emu_switch, @function
ggrpc_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size ggrpc_emu_switch, .-ggrpc_emu_switch

    .p2align 4
    .globl ggrpc_emu_trampoline
    .hidden ggrpc_emu_trampoline
    .type ggrpc_emu_trampoline, @function
ggrpc_emu_trampoline:
    call ggrpc_emu_co_main@PLT
    ud2
    .size ggrpc_emu_trampoline, .-ggrpc_emu_trampoline
)");
#endif

enum State : uint8_t { RUNNABLE, AT_WARP, AT_BLOCK, EXITED };

struct Co {
    char *stack;  // kStack bytes above a guard page
#if EMU_ASM_SWITCH
    void *sp;
#else
    ucontext_t uc;
#endif
    State st;
    uint32_t lin;  // linear thread index in the block
    uint3 tid;
};

struct Warp {
    int live, arrived, gen, op;
    bool bad;
    unsigned present[2];
    uint32_t slot[2][32][6];
};

struct Sched {
    Co *pool[kMaxThreads] = {};
    unsigned pool_n = 0;
    Co *cur = nullptr;
#if EMU_ASM_SWITCH
    void *sp = nullptr;
#else
    ucontext_t uc;
#endif
    void (*body)() = nullptr;
    unsigned n = 0;  // threads per block
    int block_live = 0, block_arrived = 0;
    int error = 0;
    Warp warps[kMaxThreads / 32];
    uint16_t queue[kMaxThreads];  // ring of runnable threads
    unsigned qhead = 0, qlen = 0;
};

Sched g;
std::mutex g_mutex;
alignas(64) unsigned char g_dyn_shared[kMaxDynShared];

extern "C" void ggrpc_emu_co_main();

inline void switch_to(Co *from, Co *to) {
    g.cur = to;
    threadIdx = to->tid;
#if EMU_ASM_SWITCH
    ggrpc_emu_switch(&from->sp, to->sp);
#else
    swapcontext(&from->uc, &to->uc);
#endif
}

inline void to_sched(Co *c) {
#if EMU_ASM_SWITCH
    ggrpc_emu_switch(&c->sp, g.sp);
#else
    swapcontext(&c->uc, &g.uc);
#endif
}

inline void to_thread(Co *c) {
    g.cur = c;
    threadIdx = c->tid;
#if EMU_ASM_SWITCH
    ggrpc_emu_switch(&g.sp, c->sp);
#else
    swapcontext(&g.uc, &c->uc);
#endif
}

// Points the thread at the top of ggrpc_emu_co_main again (a fresh coroutine).
void reset(Co *c) {
#if EMU_ASM_SWITCH
    // Popped by ggrpc_emu_switch: r15 r14 r13 r12 rbx rbp, then the return address; the
    // trampoline then starts with rsp 16-aligned, as a call needs.
    void **top = (void **)(c->stack + kStack);
    void **sp = top - 9;
    for (int i = 0; i < 6; i++) {
        sp[i] = nullptr;
    }
    sp[6] = (void *)&ggrpc_emu_trampoline;
    sp[7] = nullptr;
    sp[8] = nullptr;
    c->sp = sp;
#else
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = c->stack;
    c->uc.uc_stack.ss_size = kStack;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, ggrpc_emu_co_main, 0);
#endif
}

Co *new_co() {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *m = mmap(nullptr, kStack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        return nullptr;
    }
    mprotect(m, page, PROT_NONE);  // guard: a stack overflow faults instead of corrupting
    Co *c = new (std::nothrow) Co();
    if (!c) {
        munmap(m, kStack + page);
        return nullptr;
    }
    c->stack = (char *)m + page;
    reset(c);
    return c;
}

// Released threads go to the front of the queue, so a warp (block) that passed a barrier runs
// on before the others start: fewer stacks in the cache at a time.
inline void push_front(unsigned t) {
    g.qhead = (g.qhead + kMaxThreads - 1) % kMaxThreads;
    g.queue[g.qhead] = (uint16_t)t;
    g.qlen++;
}

inline unsigned pop() {
    const unsigned t = g.queue[g.qhead];
    g.qhead = (g.qhead + 1) % kMaxThreads;
    g.qlen--;
    return t;
}

// The thread `c` waits (or has returned): the next runnable thread takes over directly, or the
// scheduler when there is none (the block is done or deadlocked) or the block failed.
inline void yield(Co *c) {
    if (g.qlen > 0 && g.error == 0) {
        switch_to(c, g.pool[pop()]);
    } else {
        to_sched(c);
    }
}

// Opens the warp's barrier: every lane waiting there becomes runnable (in lane order).
void release_warp(unsigned w) {
    Warp &wp = g.warps[w];
    if (wp.bad) {
        g.error = 2;
        return;
    }
    if (wp.op == EMU_OP_MMA) {
        if (wp.arrived != 32) {
            g.error = 2;  // mma.sync needs the whole warp
            return;
        }
        emu_mma_tile(wp.slot[wp.gen & 1]);  // each lane's slot now holds its 4 results
    }
    const unsigned lo = 32 * w, hi = lo + 32 < g.n ? lo + 32 : g.n;
    for (unsigned t = hi; t-- > lo;) {
        Co *c = g.pool[t];
        if (c->st == AT_WARP && c != g.cur) {
            c->st = RUNNABLE;
            push_front(t);
        }
    }
    wp.arrived = 0;
    wp.op = 0;
    wp.gen++;
    wp.present[wp.gen & 1] = 0;
}

void release_block() {
    for (unsigned t = g.n; t-- > 0;) {
        Co *c = g.pool[t];
        if (c->st == AT_BLOCK && c != g.cur) {
            c->st = RUNNABLE;
            push_front(t);
        }
    }
    g.block_arrived = 0;
}

// The thread that just returned from the kernel body: it leaves every barrier's count.
void thread_exit(Co *c) {
    c->st = EXITED;
    Warp &wp = g.warps[c->lin / 32];
    wp.live--;
    g.block_live--;
    if (wp.arrived > 0 && wp.arrived == wp.live) {
        release_warp(c->lin / 32);
    }
    if (g.block_arrived > 0 && g.block_arrived == g.block_live) {
        release_block();
    }
}

// Runs one block to completion; 0, or 2 when it cannot proceed.
int run_block() {
    const unsigned n = g.n;
    for (unsigned w = 0; w < (n + 31) / 32; w++) {
        Warp &wp = g.warps[w];
        wp.live = (int)((w + 1) * 32 <= n ? 32 : n - 32 * w);
        wp.arrived = 0;
        wp.gen = 0;
        wp.op = 0;
        wp.bad = false;
        wp.present[0] = wp.present[1] = 0;
    }
    g.block_live = (int)n;
    g.block_arrived = 0;
    g.error = 0;
    g.qhead = 0;
    g.qlen = n;
    for (unsigned t = 0; t < n; t++) {
        g.queue[t] = (uint16_t)t;
        g.pool[t]->st = RUNNABLE;
    }
    // The threads hand over to each other (yield); the scheduler is back when none can run.
    while (g.qlen > 0 && g.error == 0) {
        to_thread(g.pool[pop()]);
    }
    g.cur = nullptr;
    if (g.error == 0 && g.block_live == 0) {
        return 0;
    }
    // Deadlock (or a broken collective): the waiting threads' stacks are abandoned.
    for (unsigned t = 0; t < n; t++) {
        if (g.pool[t]->st != EXITED) {
            reset(g.pool[t]);
        }
    }
    return 2;
}

// ---- the dispatch table --------------------------------------------------------------------------
template <class P>
P param_of(void (*)(P));

template <auto K>
struct Kernel {
    using P = decltype(param_of(K));
    static_assert(std::is_trivially_copyable_v<P>);
    static inline P params;
    static void body() { K(params); }
    static void set(const void *bytes) { memcpy((void *)&params, bytes, sizeof(P)); }
};

struct Entry {
    const char *name;
    void (*body)();
    void (*set)(const void *);
};

#define GGRPC_EMU_ENTRY(k) {#k, &Kernel<&k>::body, &Kernel<&k>::set},
constexpr Entry kTable[] = {GGRPC_EMU_KERNELS(GGRPC_EMU_ENTRY)};
constexpr int kTableSize = sizeof(kTable) / sizeof(kTable[0]);

constexpr bool names_unique() {
    for (int i = 0; i < kTableSize; i++) {
        for (int j = 0; j < i; j++) {
            const char *a = kTable[i].name, *b = kTable[j].name;
            while (*a && *a == *b) {
                a++;
                b++;
            }
            if (*a == *b) {
                return false;
            }
        }
    }
    return true;
}
static_assert(kTableSize == kGlobalsDefined,
              "the number of __global__ kernels in shaders/cuda/*.cu differs from GGRPC_EMU_KERNELS in emu.cpp: add the new kernel there");
static_assert(names_unique(), "a kernel is listed twice in GGRPC_EMU_KERNELS");

}  // namespace emu

// ---- the hooks prelude.h declares -------------------------------------------------------------------
using emu::g;

extern "C" void ggrpc_emu_co_main() {
    for (;;) {
        g.body();
        emu::Co *c = g.cur;
        emu::thread_exit(c);
        emu::yield(c);  // resumed here as a thread of a later block
    }
}

void emu_rt_syncthreads() {
    emu::Co *c = g.cur;
    c->st = emu::AT_BLOCK;
    g.block_arrived++;
    if (g.block_arrived == g.block_live) {
        emu::release_block();  // the last to arrive: it goes on without a switch
        c->st = emu::RUNNABLE;
        return;
    }
    emu::yield(c);
}

const uint32_t *emu_rt_warp(int op, const uint32_t *words, int n, unsigned *present) {
    emu::Co *c = g.cur;
    const unsigned w = c->lin / 32, lane = c->lin % 32;
    emu::Warp &wp = g.warps[w];
    const int gen = wp.gen;
    for (int i = 0; i < n; i++) {
        wp.slot[gen & 1][lane][i] = words[i];
    }
    wp.present[gen & 1] |= 1u << lane;
    if (wp.arrived == 0) {
        wp.op = op;
    } else if (wp.op != op) {
        wp.bad = true;
    }
    wp.arrived++;
    c->st = emu::AT_WARP;
    if (wp.arrived == wp.live) {
        emu::release_warp(w);
        if (g.error) {
            emu::to_sched(c);  // never resumed: the block is abandoned
        }
        c->st = emu::RUNNABLE;
    } else {
        emu::yield(c);
    }
    // The lanes read generation `gen` while the fastest may already deposit into gen + 1.
    *present = wp.present[gen & 1];
    return &wp.slot[gen & 1][0][0];
}

int emu_rt_lane() { return (int)(g.cur->lin % 32); }

unsigned emu_rt_live_lanes() {
    const unsigned lo = g.cur->lin & ~31u;
    unsigned m = 0;
    for (unsigned t = lo; t < lo + 32 && t < g.n; t++) {
        if (g.pool[t]->st != emu::EXITED) {
            m |= 1u << (t - lo);
        }
    }
    return m;
}

void *emu_dyn_shared() { return emu::g_dyn_shared; }

#pragma GCC visibility pop

extern "C" __attribute__((visibility("default"))) int ggrpc_emu_launch(const char *kernel, const unsigned grid[3],
                                                                       const unsigned block[3], unsigned dyn_shared_bytes,
                                                                       const void *params) {
    const emu::Entry *e = nullptr;
    for (const emu::Entry &x : emu::kTable) {
        if (strcmp(x.name, kernel) == 0) {
            e = &x;
        }
    }
    if (!e) {
        return 1;
    }
    if (dyn_shared_bytes > emu::kMaxDynShared) {
        return 3;
    }
    const unsigned long long nt = (unsigned long long)block[0] * block[1] * block[2];
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || nt == 0 || nt > emu::kMaxThreads || block[2] > 64) {
        return 4;
    }
    std::lock_guard<std::mutex> lock(emu::g_mutex);
    while (g.pool_n < nt) {
        emu::Co *c = emu::new_co();
        if (!c) {
            abort();  // out of memory for 64 KiB stacks
        }
        g.pool[g.pool_n++] = c;
    }
    e->set(params);
    g.body = e->body;
    g.n = (unsigned)nt;
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    for (unsigned t = 0; t < g.n; t++) {
        emu::Co *c = g.pool[t];
        c->lin = t;
        c->tid = {t % block[0], (t / block[0]) % block[1], t / (block[0] * block[1])};
    }
    for (unsigned z = 0; z < grid[2]; z++) {
        for (unsigned y = 0; y < grid[1]; y++) {
            for (unsigned x = 0; x < grid[0]; x++) {
                blockIdx = {x, y, z};
                if (dyn_shared_bytes) {
                    memset(emu::g_dyn_shared, 0xff, dyn_shared_bytes);
                }
                if (emu::run_block() != 0) {
                    return 2;
                }
            }
        }
    }
    return 0;
}
