// Evaluates one float primitive over triples (a, b, c): how tests (and the device at start-up) learn
// what this adapter's arithmetic does. Op codes: see `probe::Op`.

struct P {
    op: u32,
    n: u32,
    zero: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn probe(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    OPAQUE = p.zero;
    let i = wg_linear(wg, nwg) * 64u + li;
    if (i >= p.n) {
        return;
    }
    let a = x[3u * i];
    let b = x[3u * i + 1u];
    let c = x[3u * i + 2u];
    var r = 0.0;
    switch p.op {
        case 0u: { r = a * b + c; }
        case 1u: { r = fma(a, b, c); }
        case 2u: { r = fmaf(a, b, c); }
        case 3u: { r = a / b; }
        case 4u: { r = sqrt(abs(a)); }
        case 5u: { r = two_sum(a, b).y; }
        case 6u: { r = two_prod(a, b).y; }
        case 7u: { r = exp(a); }
        case 8u: { r = expf_libm(a); }
        case 9u: { r = v_expf(a); }
        default: { r = 0.0; }
    }
    y[i] = r;
}
