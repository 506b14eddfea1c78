// MUL_MAT's activations, rounded the way ggml-cpu converts them to the weight type's `vec_dot_type`
// before the dot products, then written back as f32: the product over these values then carries the
// same quantization error as llama.cpp's CPU result, leaving only f32 summation order as a difference.
// Modes: 1 f16 (f16 weights), 2 bf16, 3 Q8_0/Q8_1 blocks of 32 as the AVX2 `quantize_row_q8_0` does
// (x·127/amax rounded half to even, scale stored as f16), 4 Q8_K blocks of 256
// (`quantize_row_q8_K_ref`: scale -127/max over the signed extreme, q = min(127, round(x·scale))).
// Output: contiguous f32 [k, ne11, ne12, ne13] at `d_base`.

struct P {
    mode: u32,
    k: u32,
    n: u32,
    ne11: u32, ne12: u32,
    s_base: u32, s_nb0: u32, s_nb1: u32, s_nb2: u32, s_nb3: u32,
    d_base: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> s: array<u32>;
@group(0) @binding(2) var<storage, read_write> d: array<u32>;

fn ld(col: u32, i: u32) -> f32 {
    let i1 = col % p.ne11;
    let i2 = (col / p.ne11) % p.ne12;
    let i3 = col / (p.ne11 * p.ne12);
    return bitcast<f32>(s[(p.s_base + i * p.s_nb0 + i1 * p.s_nb1 + i2 * p.s_nb2 + i3 * p.s_nb3) >> 2u]);
}

fn block_len(mode: u32) -> u32 {
    switch mode {
        case 3u: { return 32u; }
        case 4u: { return 256u; }
        default: { return 1u; }
    }
}

// One invocation per block (per element for the float modes).
@compute @workgroup_size(64)
fn act_quant(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let u = wg_linear(wg, nwg) * 64u + li;
    if (u >= p.n) {
        return;
    }
    let bs = block_len(p.mode);
    let nb = p.k / bs;
    let col = u / nb;
    let i0 = (u % nb) * bs;
    let o = (p.d_base >> 2u) + col * p.k + i0;
    switch p.mode {
        case 1u: {
            d[o] = bitcast<u32>(f16r(ld(col, i0)));
        }
        case 2u: {
            d[o] = bitcast<u32>(bf16r(ld(col, i0)));
        }
        case 3u: {
            var amax = 0.0;
            for (var j = 0u; j < 32u; j++) {
                amax = max(amax, abs(ld(col, i0 + j)));
            }
            let id = select(0.0, 127.0 / amax, amax != 0.0);
            let dd = f16r(amax / 127.0);
            for (var j = 0u; j < 32u; j++) {
                let q = clamp(round(ld(col, i0 + j) * id), -128.0, 127.0);
                d[o + j] = bitcast<u32>(q * dd);
            }
        }
        default: {
            var amax = 0.0;
            var mx = 0.0;
            for (var j = 0u; j < 256u; j++) {
                let v = ld(col, i0 + j);
                if (abs(v) > amax) {
                    amax = abs(v);
                    mx = v;
                }
            }
            if (amax == 0.0) {
                for (var j = 0u; j < 256u; j++) {
                    d[o + j] = 0u;
                }
                return;
            }
            let iscale = -127.0 / mx;
            let dd = 1.0 / iscale;
            for (var j = 0u; j < 256u; j++) {
                let q = min(127.0, round(iscale * ld(col, i0 + j)));
                d[o + j] = bitcast<u32>(dd * q);
            }
        }
    }
}
