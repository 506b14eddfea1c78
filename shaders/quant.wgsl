// Element access into `src0` for any supported weight type (ggml type ids: 0 f32, 1 f16, 2 q4_0, 6 q5_0,
// 8 q8_0, 12 q4_K, 14 q6_K). Addresses are byte offsets; rows start at block boundaries, so every f16
// field is 2-byte aligned and f32 rows are 4-byte aligned.

fn rd8(a: u32) -> u32 {
    return (src0[a >> 2u] >> ((a & 3u) * 8u)) & 0xffu;
}

fn rdh(a: u32) -> f32 {
    return unpack2x16float(src0[a >> 2u])[(a >> 1u) & 1u];
}

fn rdf(a: u32) -> f32 {
    return bitcast<f32>(src0[a >> 2u]);
}

// Bytes per block of the weight type.
fn block_bytes(typ: u32) -> u32 {
    switch typ {
        case 0u: { return 4u; }
        case 1u: { return 2u; }
        case 2u: { return 18u; }
        case 6u: { return 22u; }
        case 8u: { return 34u; }
        case 12u: { return 144u; }
        case 14u: { return 210u; }
        default: { return 0u; }
    }
}

fn block_elems(typ: u32) -> u32 {
    switch typ {
        case 0u, 1u: { return 1u; }
        case 12u, 14u: { return 256u; }
        default: { return 32u; }
    }
}

// q4_K 6-bit scale and min of sub-block j (ggml's get_scale_min_k4); `s` = address of scales[12].
fn q4k_scale_min(s: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(rd8(s + j) & 63u), f32(rd8(s + j + 4u) & 63u));
    }
    let d = (rd8(s + j + 4u) & 0xfu) | ((rd8(s + j - 4u) >> 6u) << 4u);
    let m = (rd8(s + j + 4u) >> 4u) | ((rd8(s + j) >> 6u) << 4u);
    return vec2<f32>(f32(d), f32(m));
}

// Element `i` of the row starting at byte `row`.
fn deq(typ: u32, row: u32, i: u32) -> f32 {
    switch typ {
        case 0u: { return rdf(row + 4u * i); }
        case 1u: { return rdh(row + 2u * i); }
        case 8u: {
            let b = row + (i / 32u) * 34u;
            return rdh(b) * f32(sext8(rd8(b + 2u + i % 32u)));
        }
        case 2u: {
            let b = row + (i / 32u) * 18u;
            let j = i % 32u;
            let q = rd8(b + 2u + (j % 16u));
            return rdh(b) * (f32(select(q >> 4u, q & 0xfu, j < 16u)) - 8.0);
        }
        case 6u: {
            let b = row + (i / 32u) * 22u;
            let j = i % 32u;
            let qh = rd8(b + 2u) | (rd8(b + 3u) << 8u) | (rd8(b + 4u) << 16u) | (rd8(b + 5u) << 24u);
            let q = rd8(b + 6u + (j % 16u));
            let lo = select(q >> 4u, q & 0xfu, j < 16u);
            let hi = ((qh >> j) & 1u) << 4u;
            return rdh(b) * (f32(lo | hi) - 16.0);
        }
        case 12u: {
            let b = row + (i / 256u) * 144u;
            let j = i % 256u;
            let c = j / 32u;
            let sm = q4k_scale_min(b + 4u, c);
            let q = rd8(b + 16u + (c / 2u) * 32u + j % 32u);
            let nib = select(q >> 4u, q & 0xfu, c % 2u == 0u);
            return rdh(b) * sm.x * f32(nib) - rdh(b + 2u) * sm.y;
        }
        case 14u: {
            let b = row + (i / 256u) * 210u;
            let j = i % 256u;
            let n = j / 128u;
            let qq = (j % 128u) / 32u;
            let l = j % 32u;
            let ql = rd8(b + 64u * n + l + (qq & 1u) * 32u);
            let lo = select(ql & 0xfu, ql >> 4u, qq >= 2u);
            let hi = (rd8(b + 128u + 32u * n + l) >> (2u * qq)) & 3u;
            let sc = f32(sext8(rd8(b + 192u + 8u * n + l / 16u + 2u * qq)));
            return rdh(b + 208u) * sc * (f32(lo | (hi << 4u)) - 32.0);
        }
        default: { return 0.0; }
    }
}

// The 4 bytes at any byte address (two loads when unaligned).
fn u32_at(a: u32) -> u32 {
    let s = (a & 3u) * 8u;
    let w0 = src0[a >> 2u];
    if (s == 0u) {
        return w0;
    }
    return (w0 >> s) | (src0[(a >> 2u) + 1u] << (32u - s));
}

// Elements [32c, 32c + 32) of the row at byte `row`, decoded with word loads and one scale read per
// chunk (the mat-vec hot path). Types with 1-element blocks need a row length that is a multiple of 32.
fn deq32(typ: u32, row: u32, c: u32, out: ptr<function, array<f32, 32>>) {
    switch typ {
        case 0u: {
            for (var j = 0u; j < 32u; j++) {
                (*out)[j] = rdf(row + 128u * c + 4u * j);
            }
        }
        case 1u: {
            for (var j = 0u; j < 16u; j++) {
                let h = unpack2x16float(u32_at(row + 64u * c + 4u * j));
                (*out)[2u * j] = h.x;
                (*out)[2u * j + 1u] = h.y;
            }
        }
        case 8u: {
            let b = row + c * 34u;
            let d = rdh(b);
            for (var w = 0u; w < 8u; w++) {
                let q = u32_at(b + 2u + 4u * w);
                for (var k = 0u; k < 4u; k++) {
                    (*out)[4u * w + k] = d * f32(sext8((q >> (8u * k)) & 0xffu));
                }
            }
        }
        case 2u: {
            let b = row + c * 18u;
            let d = rdh(b);
            for (var w = 0u; w < 4u; w++) {
                let q = u32_at(b + 2u + 4u * w);
                for (var k = 0u; k < 4u; k++) {
                    let byte = (q >> (8u * k)) & 0xffu;
                    (*out)[4u * w + k] = d * (f32(byte & 0xfu) - 8.0);
                    (*out)[4u * w + k + 16u] = d * (f32(byte >> 4u) - 8.0);
                }
            }
        }
        case 6u: {
            let b = row + c * 22u;
            let d = rdh(b);
            let qh = u32_at(b + 2u);
            for (var w = 0u; w < 4u; w++) {
                let q = u32_at(b + 6u + 4u * w);
                for (var k = 0u; k < 4u; k++) {
                    let j = 4u * w + k;
                    let byte = (q >> (8u * k)) & 0xffu;
                    (*out)[j] = d * (f32((byte & 0xfu) | (((qh >> j) & 1u) << 4u)) - 16.0);
                    (*out)[j + 16u] = d * (f32((byte >> 4u) | (((qh >> (j + 16u)) & 1u) << 4u)) - 16.0);
                }
            }
        }
        case 12u: {
            let b = row + (c / 8u) * 144u;
            let sub = c % 8u;
            let sm = q4k_scale_min(b + 4u, sub);
            let dl = rdh(b) * sm.x;
            let ml = rdh(b + 2u) * sm.y;
            let shift = (sub % 2u) * 4u;
            for (var w = 0u; w < 8u; w++) {
                let q = u32_at(b + 16u + (sub / 2u) * 32u + 4u * w);
                for (var k = 0u; k < 4u; k++) {
                    (*out)[4u * w + k] = dl * f32((q >> (8u * k + shift)) & 0xfu) - ml;
                }
            }
        }
        case 14u: {
            let b = row + (c / 8u) * 210u;
            let sub = c % 8u;
            let n = sub / 4u;
            let qq = sub % 4u;
            let d = rdh(b + 208u);
            let s0 = d * f32(sext8(rd8(b + 192u + 8u * n + 2u * qq)));
            let s1 = d * f32(sext8(rd8(b + 192u + 8u * n + 2u * qq + 1u)));
            let lshift = select(0u, 4u, qq >= 2u);
            for (var w = 0u; w < 8u; w++) {
                let ql = u32_at(b + 64u * n + (qq & 1u) * 32u + 4u * w);
                let qh = u32_at(b + 128u + 32u * n + 4u * w);
                for (var k = 0u; k < 4u; k++) {
                    let lo = (ql >> (8u * k + lshift)) & 0xfu;
                    let hi = (qh >> (8u * k + 2u * qq)) & 3u;
                    let sc = select(s1, s0, w < 4u);
                    (*out)[4u * w + k] = sc * (f32(lo | (hi << 4u)) - 32.0);
                }
            }
        }
        default: {
            for (var j = 0u; j < 32u; j++) {
                (*out)[j] = 0.0;
            }
        }
    }
}
