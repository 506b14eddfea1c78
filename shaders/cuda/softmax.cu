// SOFT_MAX (ext): d = softmax(a * scale + slope * mask) over dim 0, as ggml-cpu's soft_max_f32.
// a F32, d F32 (any strides; d may alias a). mask optional, F16 or F32: mask row i1, broadcast
// i2 % mask.ne2, i3 % mask.ne3. ALiBi slope of head i2 from max_bias/m0/m1/n_head_log2 (1 when
// max_bias is 0). sinks optional (F32, one per i2): an extra logit counted in the max and the sum,
// absent from the output.
//
// k_soft_max: one block per row (i1, i2, i3).
//   block 256 (any multiple of 32 up to 1024 works), grid = (ne1, ne2, ne3) of a;
//   no dynamic shared memory (32 floats of static shared memory).
// d is used as the scratch row between passes (each thread re-reads only what it wrote).

struct SoftMaxP { Tensor a, mask, sinks, d; float scale, max_bias, m0, m1; int n_head_log2; };

extern "C" __global__ void k_soft_max(const SoftMaxP p) {
    __shared__ float sh[32];
    const i64 i1 = blockIdx.x, i2 = blockIdx.y, i3 = blockIdx.z;
    const i64 ne0 = p.a.ne[0];
    const char *x = p.a.data + t_off(p.a, 0, i1, i2, i3);
    char *y = p.d.data + t_off(p.d, 0, i1, i2, i3);
    const i64 nb0 = p.a.nb[0], db0 = p.d.nb[0];
    const char *m = 0;
    i64 mb0 = 0;
    if (p.mask.data) {
        m = p.mask.data + t_off(p.mask, 0, i1, i2 % p.mask.ne[2], i3 % p.mask.ne[3]);
        mb0 = p.mask.nb[0];
    }
    const float slope = alibi_slope(p.max_bias, p.m0, p.m1, p.n_head_log2, i2);

    float mx = NEG_INF;
    for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
        float v = *(const float *)(x + i * nb0) * p.scale;
        if (m) {
            v += slope * ld_f(m + i * mb0, p.mask.type);
        }
        *(float *)(y + i * db0) = v;
        mx = fmaxf(mx, v);
    }
    mx = block_max(mx, sh);
    float sink = 0.0f;
    if (p.sinks.data) {
        sink = *(const float *)(p.sinks.data + i2 * p.sinks.nb[0]);
        mx = fmaxf(mx, sink);
    }
    float s = 0.0f;
    for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
        const float e = expf(*(float *)(y + i * db0) - mx);
        *(float *)(y + i * db0) = e;
        s += e;
    }
    s = block_sum(s, sh);
    if (p.sinks.data) {
        s += expf(sink - mx);
    }
    const float inv = 1.0f / s;
    for (i64 i = threadIdx.x; i < ne0; i += blockDim.x) {
        *(float *)(y + i * db0) *= inv;
    }
}
