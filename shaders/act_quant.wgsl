// MUL_MAT's activations converted the way ggml-cpu converts them to the weight type's `vec_dot_type`,
// so the products can follow llama.cpp's arithmetic step by step.
// Modes 1 (f16 weights) and 2 (bf16): the rounded values as f32, contiguous [k, ne11, ne12, ne13].
// Mode 3, Q8_0 as the AVX2 `quantize_row_q8_0` does (x·127/amax rounded half to even, scale stored as
// f16): per block of 32, 9 words: the scale (f32 holding the f16 value), then the 32 quants as i8, four
// per word in element order. Mode 4, Q8_K (`quantize_row_q8_K_ref`: scale -127/max over the signed
// extreme, q = min(127, round(x·scale))): per block of 256, 81 words: the scale, 64 words of quants,
// then the 16 sums of 16 quants as i32. Mode 5, Q8_1 (`quantize_row_q8_1`: Q8_0's quants, plus
// s = d·Σq as f16, d unrounded): per block of 32, 10 words: d, s, then the quants as in mode 3.
// Blocks follow each other column by column. The conversion itself is act_quant_block.wgsl.

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

fn aq_ld(col: u32, i: u32) -> f32 {
    let i1 = col % p.ne11;
    let i2 = (col / p.ne11) % p.ne12;
    let i3 = col / (p.ne11 * p.ne12);
    return bitcast<f32>(s[(p.s_base + i * p.s_nb0 + i1 * p.s_nb1 + i2 * p.s_nb2 + i3 * p.s_nb3) >> 2u]);
}

fn aq_st(w: u32, v: u32) {
    d[(p.d_base >> 2u) + w] = v;
}

// One invocation per block (per element for the float modes).
@compute @workgroup_size(64)
fn act_quant(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let u = wg_linear(wg, nwg) * 64u + li;
    if (u >= p.n) {
        return;
    }
    aq_unit(p.mode, p.k, u);
}
