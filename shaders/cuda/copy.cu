// CPY / CONT / DUP and SET_ROWS.
//
// k_copy (CopyP): a and d have the same number of elements; element k of a in row-major order
// (i0 fastest) goes to element k of d in row-major order (the shapes may differ). Float d: a and d
// each F32, F16 or BF16. Block d (Q8_0 or Q4_0, from a F32/F16/BF16): only when a.ne0 == d.ne0
// (a multiple of 32); row r of d (r = i1 + ne1*(i2 + ne2*i3)) comes from row r of a, quantized
// as ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref, one thread per block.
//   block 256, grid.x = min(ceil(n / 256), 65535), n = elements of d (block d: blocks of d =
//   d.ne0/32 * d.ne1 * d.ne2 * d.ne3); no dynamic shared memory.
//
// k_set_rows (SetRowsP), as ggml-cpu's set_rows: for each a element (i0, i01, i02, i03),
// r = idx(i01, i02 % idx.ne1, i03 % idx.ne2) (idx I64 or I32) and d(i0, r, i02, i03) = a(...).
// a F32; d F32, F16, BF16, Q8_0 or Q4_0 (block d: one thread per 32-value block of a's row).
// r < 0 or r >= d.ne1 raises FLAG_INDEX in *flag and the element (block) is skipped.
//   block 256, grid.x = min(ceil(n / 256), 65535), n = elements of a (block d: a.ne0/32 * a.ne1 *
//   a.ne2 * a.ne3 blocks); no dynamic shared memory.

struct CopyP { Tensor a, d; };
struct SetRowsP { Tensor a, idx, d; u32 *flag; };

__device__ __forceinline__ bool is_block_dst(int type) {
    return type == T_Q8_0 || type == T_Q4_0;
}

// Quantizes 32 values of a starting at src (stride sb0) into the block at dst.
__device__ __forceinline__ void quantize_block_to(int dtype, char *dst, const char *src, i64 sb0, int stype) {
    float v[32];
    UNROLL
    for (int j = 0; j < 32; j++) {
        v[j] = ld_f(src + j * sb0, stype);
    }
    if (dtype == T_Q8_0) {
        quantize_block_q8_0(v, (u8 *)dst);
    } else {
        quantize_block_q4_0(v, (u8 *)dst);
    }
}

extern "C" __global__ void k_copy(const CopyP p) {
    if (is_block_dst(p.d.type)) {
        const i64 nbr = p.d.ne[0] / 32;
        const i64 n = nbr * p.d.ne[1] * p.d.ne[2] * p.d.ne[3];
        GRID_STRIDE(k, n) {
            const i64 ib = k % nbr;
            const i64 r = k / nbr;
            const i64 d1 = r % p.d.ne[1], d2 = (r / p.d.ne[1]) % p.d.ne[2], d3 = r / (p.d.ne[1] * p.d.ne[2]);
            const i64 a1 = r % p.a.ne[1], a2 = (r / p.a.ne[1]) % p.a.ne[2], a3 = r / (p.a.ne[1] * p.a.ne[2]);
            quantize_block_to(p.d.type, p.d.data + t_off(p.d, ib, d1, d2, d3),
                              p.a.data + t_off(p.a, 32 * ib, a1, a2, a3), p.a.nb[0], p.a.type);
        }
        return;
    }
    const i64 n = t_nel(p.d);
    GRID_STRIDE(k, n) {
        i64 a0, a1, a2, a3, d0, d1, d2, d3;
        unravel(k, p.a.ne, a0, a1, a2, a3);
        unravel(k, p.d.ne, d0, d1, d2, d3);
        const char *s = p.a.data + t_off(p.a, a0, a1, a2, a3);
        char *t = p.d.data + t_off(p.d, d0, d1, d2, d3);
        if (p.a.type == p.d.type && p.a.type != T_F32) {
            *(u16 *)t = *(const u16 *)s;  // F16 -> F16, BF16 -> BF16: bit copy
        } else {
            st_f(t, p.d.type, ld_f(s, p.a.type));
        }
    }
}

__device__ __forceinline__ i64 set_rows_index(const SetRowsP &p, i64 i01, i64 i02, i64 i03) {
    const char *ip = p.idx.data + t_off(p.idx, i01, i02 % p.idx.ne[1], i03 % p.idx.ne[2], 0);
    return p.idx.type == T_I64 ? *(const i64 *)ip : (i64) * (const int *)ip;
}

extern "C" __global__ void k_set_rows(const SetRowsP p) {
    if (is_block_dst(p.d.type)) {
        const i64 nbr = p.a.ne[0] / 32;
        const i64 n = nbr * p.a.ne[1] * p.a.ne[2] * p.a.ne[3];
        GRID_STRIDE(k, n) {
            const i64 ib = k % nbr;
            i64 r = k / nbr;
            const i64 i01 = r % p.a.ne[1];
            r /= p.a.ne[1];
            const i64 i02 = r % p.a.ne[2], i03 = r / p.a.ne[2];
            const i64 dr = set_rows_index(p, i01, i02, i03);
            if (dr < 0 || dr >= p.d.ne[1]) {
                atomicOr(p.flag, FLAG_INDEX);
                continue;
            }
            quantize_block_to(p.d.type, p.d.data + t_off(p.d, ib, dr, i02, i03),
                              p.a.data + t_off(p.a, 32 * ib, i01, i02, i03), p.a.nb[0], p.a.type);
        }
        return;
    }
    const i64 n = t_nel(p.a);
    GRID_STRIDE(k, n) {
        i64 i0, i01, i02, i03;
        unravel(k, p.a.ne, i0, i01, i02, i03);
        const i64 dr = set_rows_index(p, i01, i02, i03);
        if (dr < 0 || dr >= p.d.ne[1]) {
            atomicOr(p.flag, FLAG_INDEX);
            continue;
        }
        st_f(p.d.data + t_off(p.d, i0, dr, i02, i03), p.d.type, ld_f(p.a.data + t_off(p.a, i0, i01, i02, i03), p.a.type));
    }
}
