// MUL_MAT's activations converted the way ggml-cpu converts them to the weight type's `vec_dot_type`,
// so the products can follow llama.cpp's arithmetic step by step.
// Modes 1 (f16 weights) and 2 (bf16): the rounded values as f32, contiguous [k, ne11, ne12, ne13].
// Mode 3, Q8_0 as the AVX2 `quantize_row_q8_0` does (x·127/amax rounded half to even, scale stored as
// f16): per block of 32, 9 words: the scale (f32 holding the f16 value), then the 32 quants as i8, four
// per word in element order. Mode 4, Q8_K (`quantize_row_q8_K_ref`: scale -127/max over the signed
// extreme, q = min(127, round(x·scale))): per block of 256, 81 words: the scale, 64 words of quants,
// then the 16 sums of 16 quants as i32. Mode 5, Q8_1 (`quantize_row_q8_1`: Q8_0's quants, plus
// s = d·Σq as f16, d unrounded): per block of 32, 10 words: d, s, then the quants as in mode 3.
// Blocks follow each other column by column.

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
        case 3u, 5u: { return 32u; }
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
    // Word address of this block in the packed layouts (9 or 10 words per 32, 81 per 256).
    var words = 9u;
    if (p.mode == 4u) {
        words = 81u;
    } else if (p.mode == 5u) {
        words = 10u;
    }
    let ob = (p.d_base >> 2u) + u * words;
    switch p.mode {
        case 1u: {
            d[o] = bitcast<u32>(f16r(ld(col, i0)));
        }
        case 2u: {
            d[o] = bitcast<u32>(bf16r(ld(col, i0)));
        }
        case 3u, 5u: {
            var amax = 0.0;
            for (var j = 0u; j < 32u; j++) {
                amax = max(amax, abs(ld(col, i0 + j)));
            }
            let id = select(0.0, 127.0 / amax, amax != 0.0);
            d[ob] = bitcast<u32>(f16r(amax / 127.0));
            let qo = select(1u, 2u, p.mode == 5u);
            var sum = 0;
            for (var w = 0u; w < 8u; w++) {
                var packed = 0u;
                for (var t = 0u; t < 4u; t++) {
                    let q = i32(clamp(round(ld(col, i0 + 4u * w + t) * id), -128.0, 127.0));
                    sum += q;
                    packed |= (bitcast<u32>(q) & 0xffu) << (8u * t);
                }
                d[ob + qo + w] = packed;
            }
            if (p.mode == 5u) {
                d[ob + 1u] = bitcast<u32>(f16r((amax / 127.0) * f32(sum)));
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
                for (var w = 0u; w < 81u; w++) {
                    d[ob + w] = 0u;
                }
                return;
            }
            let iscale = -127.0 / mx;
            d[ob] = bitcast<u32>(1.0 / iscale);
            for (var g = 0u; g < 16u; g++) {
                var sum = 0;
                for (var w = 0u; w < 4u; w++) {
                    var packed = 0u;
                    for (var t = 0u; t < 4u; t++) {
                        let q = i32(min(127.0, round(iscale * ld(col, i0 + 16u * g + 4u * w + t))));
                        sum += q;
                        packed |= (bitcast<u32>(q) & 0xffu) << (8u * t);
                    }
                    d[ob + 1u + 4u * g + w] = packed;
                }
                d[ob + 65u + g] = bitcast<u32>(sum);
            }
        }
    }
}
