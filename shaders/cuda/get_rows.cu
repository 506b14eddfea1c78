// GET_ROWS as ggml-cpu: a [ne00, ne01, ne02, ne03], idx I32 [n, ne11, ne12], d [ne00, n, ne11, ne12]:
// d(i0, i1, i2, i3) = a(i0, idx(i1, i2, i3), i2 % ne02, i3 % ne03) (ggml has ne02 = ne11 and
// ne03 = ne12; the modulo only makes broadcasting safe). a F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q2_K..Q6_K (dequantized as ggml's dequantize_row_*); d F32, F16 or BF16. An index < 0 or
// >= ne01 raises FLAG_INDEX in *flag and the element is left unwritten.
//
// k_get_rows: grid-stride over the elements of d.
//   block 256, grid.x = min(ceil(n / 256), 65535), n = elements of d; no dynamic shared memory.

struct GetRowsP { Tensor a, idx, d; u32 *flag; };

extern "C" __global__ void k_get_rows(const GetRowsP p) {
    const i64 n = t_nel(p.d);
    GRID_STRIDE(k, n) {
        i64 i0, i1, i2, i3;
        unravel(k, p.d.ne, i0, i1, i2, i3);
        const i64 r = *(const int *)(p.idx.data + t_off(p.idx, i1, i2, i3, 0));
        if (r < 0 || r >= p.a.ne[1]) {
            atomicOr(p.flag, FLAG_INDEX);
            continue;
        }
        const char *row = p.a.data + t_off(p.a, 0, r, i2 % p.a.ne[2], i3 % p.a.ne[3]);
        st_f(p.d.data + t_off(p.d, i0, i1, i2, i3), p.d.type, ld_row_elem(row, p.a.nb[0], p.a.type, i0));
    }
}
