// NORM (rms = 0: (x - mean) / sqrt(var + eps)) and RMS_NORM (rms = 1: x / sqrt(mean(x^2) + eps))
// over dim 0; F32 in and out, any strides, d may alias a.
//
// k_norm: one block per row (i1, i2, i3).
//   block 256 (any multiple of 32 up to 1024 works), grid = (ne1, ne2, ne3) of a;
//   no dynamic shared memory (32 floats of static shared memory).

struct NormP { Tensor a, d; float eps; int rms; };

extern "C" __global__ void k_norm(const NormP p) {
    __shared__ float sh[32];
    const i64 i1 = blockIdx.x, i2 = blockIdx.y, i3 = blockIdx.z;
    const i64 ne0 = p.a.ne[0];
    const char *x = p.a.data + t_off(p.a, 0, i1, i2, i3);
    char *y = p.d.data + t_off(p.d, 0, i1, i2, i3);
    const i64 nb0 = p.a.nb[0], db0 = p.d.nb[0];

    if (p.rms) {
        float s = 0.0f;
        for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
            const float v = *(const float *)(x + i * nb0);
            s += v * v;
        }
        s = block_sum(s, sh);
        const float scale = 1.0f / sqrtf(s / (float)ne0 + p.eps);
        for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
            *(float *)(y + i * db0) = *(const float *)(x + i * nb0) * scale;
        }
        return;
    }
    float s = 0.0f;
    for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
        s += *(const float *)(x + i * nb0);
    }
    const float mean = block_sum(s, sh) / (float)ne0;
    float v2 = 0.0f;
    for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
        const float v = *(const float *)(x + i * nb0) - mean;
        v2 += v * v;
    }
    const float var = block_sum(v2, sh) / (float)ne0;
    const float scale = 1.0f / sqrtf(var + p.eps);
    for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
        *(float *)(y + i * db0) = (*(const float *)(x + i * nb0) - mean) * scale;
    }
}
