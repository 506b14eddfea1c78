// Byte fill of [lo, hi) (offsets from the window start) with a replicated byte; bytes of the edge words
// outside the range keep their value.

struct P {
    lo: u32,
    hi: u32,
    value: u32,
    nwords: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> d: array<u32>;

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let w = wg_linear(wg, nwg) * 256u + li;
    if (w >= p.nwords) {
        return;
    }
    let b0 = w * 4u;
    if (b0 >= p.lo && b0 + 4u <= p.hi) {
        d[w] = p.value;
        return;
    }
    var x = d[w];
    for (var k = 0u; k < 4u; k++) {
        let b = b0 + k;
        if (b >= p.lo && b < p.hi) {
            let m = 0xffu << (8u * k);
            x = (x & ~m) | (p.value & m);
        }
    }
    d[w] = x;
}
