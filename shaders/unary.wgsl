// Element-wise f32 ops of one source: UNARY (op ids of ggml_unary_op + 100 for the plain ops below),
// SCALE (x*s + b), and GLU (act(x) * g, gate from the second half of src0 or from src1).
// `glu_act` also converts the GLU's (contiguous) output for the MUL_MAT reading it, as the act_quant
// pass would (act_quant_block.wgsl, mode `aq_mode`, `aq_k` elements per column), into `q`.

struct P {
    op: u32,
    n: u32,
    f0: f32,
    f1: f32,
    ne0: u32, ne1: u32, ne2: u32, ne3: u32,
    a_base: u32, a_nb0: u32, a_nb1: u32, a_nb2: u32, a_nb3: u32,
    g_base: u32, g_nb0: u32, g_nb1: u32, g_nb2: u32, g_nb3: u32,
    d_base: u32, d_nb0: u32, d_nb1: u32, d_nb2: u32, d_nb3: u32,
    aq_mode: u32, aq_k: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> g: array<u32>;
@group(0) @binding(3) var<storage, read_write> d: array<u32>;
// ggml's f16 tables: GELU at words [0, 32768), GELU_QUICK at [32768, 65536), two entries per word.
@group(0) @binding(4) var<storage, read_write> gelu_t: array<u32>;
// The converted activations (glu_act; other entries bind dst again and leave it alone).
@group(0) @binding(5) var<storage, read_write> q: array<u32>;

// Element i of column `col` of the contiguous GLU output, as written.
fn aq_ld(col: u32, i: u32) -> f32 {
    return bitcast<f32>(d[(p.d_base >> 2u) + col * p.aq_k + i]);
}

fn aq_st(w: u32, v: u32) {
    q[w] = v;
}

// Entry `h` (f16 bits of the input) of table `t` (0 GELU, 1 GELU_QUICK), as f32.
fn table(t: u32, x: f32) -> f32 {
    let h = pack2x16float(vec2<f32>(x, 0.0)) & 0xffffu;
    return unpack2x16float(gelu_t[t * 32768u + (h >> 1u)])[h & 1u];
}

// GELU as ggml-cpu computes it on f32: its f16 table, inputs outside (-10, 10) passed through or zeroed.
fn gelu_tab(x: f32) -> f32 {
    if (x <= -10.0) {
        return 0.0;
    }
    if (x >= 10.0) {
        return x;
    }
    return table(0u, x);
}

// GELU_QUICK through ggml's f16 table (no clamping; beyond f16's range the table's end values).
fn gelu_quick_tab(x: f32) -> f32 {
    return table(1u, clamp(x, -65504.0, 65504.0));
}

fn act(op: u32, x: f32) -> f32 {
    switch op {
        case 0u: { return abs(x); }
        case 1u: { return sign(x); }
        case 2u: { return -x; }
        case 3u: { return select(0.0, 1.0, x > 0.0); }
        case 4u: { return tanh_safe(x); }
        case 5u: { return select(exp(x) - 1.0, x, x > 0.0); }
        case 6u: { return max(x, 0.0); }
        case 7u: { return sigmoid(x); }
        case 8u: { return gelu_tab(x); }
        case 9u: { return gelu_quick_tab(x); }
        case 10u: { return silu(x); }
        case 11u: { return x * min(1.0, max(0.0, (x + 3.0) / 6.0)); }
        case 12u: { return min(1.0, max(0.0, (x + 3.0) / 6.0)); }
        case 13u: { return exp(x); }
        case 16u: { return gelu_erf(x); }
        case 18u: { return floor(x); }
        case 19u: { return ceil(x); }
        case 21u: { return trunc(x); }
        case 100u: { return x * p.f0 + p.f1; }
        case 101u: { return x * x; }
        case 102u: { return sqrt(x); }
        case 103u: { return log(x); }
        case 104u: { return sin(x); }
        case 105u: { return cos(x); }
        default: { return x; }
    }
}

fn index4(i: u32) -> vec4<u32> {
    return vec4<u32>(i % p.ne0, (i / p.ne0) % p.ne1, (i / (p.ne0 * p.ne1)) % p.ne2, i / (p.ne0 * p.ne1 * p.ne2));
}

@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * 256u + li;
    if (i >= p.n) {
        return;
    }
    let k = index4(i);
    let x = bitcast<f32>(a[(p.a_base + k.x * p.a_nb0 + k.y * p.a_nb1 + k.z * p.a_nb2 + k.w * p.a_nb3) >> 2u]);
    d[(p.d_base + k.x * p.d_nb0 + k.y * p.d_nb1 + k.z * p.d_nb2 + k.w * p.d_nb3) >> 2u] = bitcast<u32>(act(p.op, x));
}

// GLU op ids: 0 REGLU, 1 GEGLU, 2 SWIGLU, 4 GEGLU_ERF, 5 GEGLU_QUICK.
fn glu_one(i: u32) {
    let k = index4(i);
    let x = bitcast<f32>(a[(p.a_base + k.x * p.a_nb0 + k.y * p.a_nb1 + k.z * p.a_nb2 + k.w * p.a_nb3) >> 2u]);
    let y = bitcast<f32>(g[(p.g_base + k.x * p.g_nb0 + k.y * p.g_nb1 + k.z * p.g_nb2 + k.w * p.g_nb3) >> 2u]);
    var r: f32;
    switch p.op {
        case 0u: { r = max(x, 0.0); }
        case 1u: { r = gelu_tab(x); }
        case 2u: { r = silu(x); }
        case 4u: { r = gelu_erf(x); }
        default: { r = gelu_quick_tab(x); }
    }
    d[(p.d_base + k.x * p.d_nb0 + k.y * p.d_nb1 + k.z * p.d_nb2 + k.w * p.d_nb3) >> 2u] = bitcast<u32>(r * y);
}

@compute @workgroup_size(256)
fn glu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * 256u + li;
    if (i < p.n) {
        glu_one(i);
    }
}

// A workgroup's 256 outputs are whole units of every mode (1, 32 or 256 elements): once written,
// its first invocations convert them, one unit each.
@compute @workgroup_size(256)
fn glu_act(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let wid = wg_linear(wg, nwg);
    let i = wid * 256u + li;
    if (i < p.n) {
        glu_one(i);
    }
    storageBarrier();
    let per = 256u / block_len(p.aq_mode);
    let u = wid * per + li;
    if (li < per && u < p.n / block_len(p.aq_mode)) {
        aq_unit(p.aq_mode, p.aq_k, u);
    }
}
