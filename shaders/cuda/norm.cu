// NORM (rms = 0: (x - mean) / sqrt(var + eps)) and RMS_NORM (rms = 1: x / sqrt(mean(x^2) + eps))
// over dim 0; F32 in and out, any strides, d may alias a.
//
// k_norm: one block per row (i1, i2, i3).
//   block 256 (any multiple of 32 up to 1024 works), grid = (ne1, ne2, ne3) of a;
//   no dynamic shared memory (32 doubles of static shared memory).

struct NormP { Tensor a, d; float eps; int rms; };

// Sums in f64 as ggml-cpu's ggml_float does (each term rounded in f32 first), so the row's statistic
// is the CPU's (f64 sums of a few thousand terms round to the same f32 in any order).
__device__ __forceinline__ double block_sum_d(double v, double *sh) {
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    __syncthreads();  // sh may still be read from a previous call
    if (lane == 0) {
        sh[w] = v;
    }
    __syncthreads();
    double t = 0.0;
    for (int i = 0; i < nw; i++) {
        t += sh[i];
    }
    return t;
}

extern "C" __global__ void k_norm(const NormP p) {
    __shared__ double sh[32];
    const i64 i1 = blockIdx.x, i2 = blockIdx.y, i3 = blockIdx.z;
    const i64 ne0 = p.a.ne[0];
    const char *x = p.a.data + t_off(p.a, 0, i1, i2, i3);
    char *y = p.d.data + t_off(p.d, 0, i1, i2, i3);
    const i64 nb0 = p.a.nb[0], db0 = p.d.nb[0];

    if (p.rms) {
        double s = 0.0;
        for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
            const float v = *(const float *)(x + i * nb0);
            s += (double)(v * v);
        }
        const float mean = (float)(block_sum_d(s, sh) / (double)ne0);
        const float scale = 1.0f / sqrtf(mean + p.eps);
        for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
            *(float *)(y + i * db0) = *(const float *)(x + i * nb0) * scale;
        }
        return;
    }
    double s = 0.0;
    for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
        s += (double)*(const float *)(x + i * nb0);
    }
    const float mean = (float)block_sum_d(s, sh) / (float)ne0;
    double v2 = 0.0;
    for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
        const float v = *(const float *)(x + i * nb0) - mean;
        v2 += (double)(v * v);
    }
    const float var = (float)(block_sum_d(v2, sh) / (double)ne0);
    const float scale = 1.0f / sqrtf(var + p.eps);
    for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
        *(float *)(y + i * db0) = (*(const float *)(x + i * nb0) - mean) * scale;
    }
}
