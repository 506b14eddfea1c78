// ADD / SUB / MUL / DIV: d = a op b, b broadcast by repetition over every dim (b index = i % b.ne).
// a, b, d each F32 or F16 (any strides, d may alias a); computed in f32.
//
// k_binary: grid-stride over the elements of d.
//   block 256, grid.x = min(ceil(n / 256), 65535), n = elements of d; no dynamic shared memory.

struct BinaryP { Tensor a, b, d; int op; };

extern "C" __global__ void k_binary(const BinaryP p) {
    const i64 n = t_nel(p.d);
    GRID_STRIDE(k, n) {
        i64 i0, i1, i2, i3;
        unravel(k, p.d.ne, i0, i1, i2, i3);
        const float x = ld_f(p.a.data + t_off(p.a, i0, i1, i2, i3), p.a.type);
        const float y = ld_f(p.b.data + t_off(p.b, i0 % p.b.ne[0], i1 % p.b.ne[1], i2 % p.b.ne[2], i3 % p.b.ne[3]),
                             p.b.type);
        float r;
        switch (p.op) {
        case 0: r = x + y; break;
        case 1: r = x - y; break;
        case 2: r = x * y; break;
        default: r = x / y; break;
        }
        st_f(p.d.data + t_off(p.d, i0, i1, i2, i3), p.d.type, r);
    }
}
