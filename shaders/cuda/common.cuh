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
