// ROPE, modes 0 (normal: pairs (i0, i0 + 1)) and 2 (NEOX: pairs (i, i + n_dims/2)); dims at or
// past n_dims are copied. a and d F32 or F16, any strides, d may alias a. pos I32, one position
// per i2 (pos.ne0 = a.ne2). ff (freq factors, F32, n_dims/2 entries) optional. YaRN as ggml's
// rope_yarn; corr0/corr1 are ggml_rope_yarn_corr_dims and theta_scale = freq_base^(-2/n_dims), both
// computed on the host. theta is the position multiplied by theta_scale once per pair, in order, as
// ggml-cpu's cos/sin cache builds it (not a power: the rounding of that product is the CPU's), and
// the rotation rounds as the CPU's fused multiply-adds do.
//
// k_rope: grid-stride over the pairs of d: n = ceil(ne0 / 2) * ne1 * ne2 * ne3.
//   block 256, grid.x = min(ceil(n / 256), 65535); no dynamic shared memory.

struct RopeP { Tensor a, pos, ff, d; int n_dims, mode; float freq_base, freq_scale, ext_factor, attn_factor, corr0, corr1, theta_scale; int pad; };

extern "C" __global__ void k_rope(const RopeP p) {
    const i64 ne0 = p.d.ne[0], ne1 = p.d.ne[1], ne2 = p.d.ne[2];
    const i64 half = (ne0 + 1) / 2;
    const i64 n = half * ne1 * ne2 * p.d.ne[3];
    const int n_dims = p.n_dims;
    const bool neox = (p.mode & 2) != 0;
    const float theta_scale = p.theta_scale;
    GRID_STRIDE(k, n) {
        const i64 ip = k % half;
        i64 r = k / half;
        const i64 i1 = r % ne1;
        r /= ne1;
        const i64 i2 = r % ne2;
        const i64 i3 = r / ne2;
        const char *x = p.a.data + t_off(p.a, 0, i1, i2, i3);
        char *y = p.d.data + t_off(p.d, 0, i1, i2, i3);
        const i64 ab0 = p.a.nb[0], db0 = p.d.nb[0];
        const i64 i0 = 2 * ip;
        if (i0 >= n_dims) {
            st_f(y + i0 * db0, p.d.type, ld_f(x + i0 * ab0, p.a.type));
            if (i0 + 1 < ne0) {
                st_f(y + (i0 + 1) * db0, p.d.type, ld_f(x + (i0 + 1) * ab0, p.a.type));
            }
            continue;
        }
        const i64 j0 = neox ? ip : i0;
        const i64 j1 = neox ? ip + n_dims / 2 : i0 + 1;

        const float pos = (float)*(const int *)(p.pos.data + i2 * p.pos.nb[0]);
        float theta_extrap = pos;
        for (i64 i = 0; i < ip; i++) {
            theta_extrap *= theta_scale;
        }
        if (p.ff.data) {
            theta_extrap /= *(const float *)(p.ff.data + ip * p.ff.nb[0]);
        }
        const float theta_interp = p.freq_scale * theta_extrap;
        float theta = theta_interp;
        float mscale = p.attn_factor;
        if (p.ext_factor != 0.0f) {
            const float yv = ((float)ip - p.corr0) / fmaxf(0.001f, p.corr1 - p.corr0);
            const float ramp = (1.0f - fminf(1.0f, fmaxf(0.0f, yv))) * p.ext_factor;
            theta = theta_interp * (1.0f - ramp) + theta_extrap * ramp;
            mscale *= 1.0f + 0.1f * logf(1.0f / p.freq_scale);
        }
        const float c = cosf(theta) * mscale;
        const float s = sinf(theta) * mscale;

        const float x0 = ld_f(x + j0 * ab0, p.a.type);
        const float x1 = ld_f(x + j1 * ab0, p.a.type);
        st_f(y + j0 * db0, p.d.type, fmaf(x0, c, -(x1 * s)));
        st_f(y + j1 * db0, p.d.type, fmaf(x0, s, x1 * c));
    }
}
