// Element access into `src0` for any supported weight type (ggml type ids: 0 f32, 1 f16, 2 q4_0, 3 q4_1,
// 6 q5_0, 7 q5_1, 8 q8_0, 10 q2_K, 11 q3_K, 12 q4_K, 13 q5_K, 14 q6_K, 30 bf16). Addresses are byte offsets; rows start at block boundaries, so every f16
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
        case 3u: { return 20u; }
        case 7u: { return 24u; }
        case 10u: { return 84u; }
        case 11u: { return 110u; }
        case 13u: { return 176u; }
        case 30u: { return 2u; }
        case 6u: { return 22u; }
        case 8u: { return 34u; }
        case 12u: { return 144u; }
        case 14u: { return 210u; }
        default: { return 0u; }
    }
}

fn block_elems(typ: u32) -> u32 {
    switch typ {
        case 0u, 1u, 30u: { return 1u; }
        case 10u, 11u, 12u, 13u, 14u: { return 256u; }
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
        case 30u: {
            let w = src0[(row + 2u * i) >> 2u];
            return bitcast<f32>(select(w << 16u, w & 0xffff0000u, ((row + 2u * i) & 2u) != 0u));
        }
        case 3u: {
            let b = row + (i / 32u) * 20u;
            let j = i % 32u;
            let q = rd8(b + 4u + (j % 16u));
            return rdh(b) * f32(select(q >> 4u, q & 0xfu, j < 16u)) + rdh(b + 2u);
        }
        case 7u: {
            let b = row + (i / 32u) * 24u;
            let j = i % 32u;
            let qh = u32_at(b + 4u);
            let q = rd8(b + 8u + (j % 16u));
            let lo = select(q >> 4u, q & 0xfu, j < 16u);
            return rdh(b) * f32(lo | (((qh >> j) & 1u) << 4u)) + rdh(b + 2u);
        }
        case 10u: {
            let b = row + (i / 256u) * 84u;
            let j = i % 256u;
            let n = j / 128u;
            let sh = 2u * ((j % 128u) / 32u);
            let l = j % 32u;
            let sc = rd8(b + 8u * n + sh + l / 16u);
            let q = (rd8(b + 16u + 32u * n + l) >> sh) & 3u;
            return rdh(b + 80u) * f32(sc & 0xfu) * f32(q) - rdh(b + 82u) * f32(sc >> 4u);
        }
        case 11u: {
            let b = row + (i / 256u) * 110u;
            let j = i % 256u;
            let n = j / 128u;
            let jj = (j % 128u) / 32u;
            let l = j % 32u;
            let k = 8u * n + 2u * jj + l / 16u;
            let t = k % 4u;
            let g = k / 4u;
            let lo = (rd8(b + 96u + t + 4u * (g % 2u)) >> (4u * (g / 2u))) & 0xfu;
            let hi = (rd8(b + 104u + t) >> (2u * g)) & 3u;
            let sc = i32(lo | (hi << 4u)) - 32;
            let q = i32((rd8(b + 32u + 32u * n + l) >> (2u * jj)) & 3u);
            let h = (rd8(b + l) >> (4u * n + jj)) & 1u;
            return rdh(b + 108u) * f32(sc) * f32(q - select(4, 0, h != 0u));
        }
        case 13u: {
            let b = row + (i / 256u) * 176u;
            let j = i % 256u;
            let c = j / 32u;
            let l = j % 32u;
            let sm = q4k_scale_min(b + 4u, c);
            let q = rd8(b + 48u + (c / 2u) * 32u + l);
            let nib = select(q >> 4u, q & 0xfu, c % 2u == 0u);
            let h = (rd8(b + 16u + l) >> c) & 1u;
            return rdh(b) * sm.x * f32(nib + 16u * h) - rdh(b + 2u) * sm.y;
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
            // Types without a word-wise decoder: element by element.
            for (var j = 0u; j < 32u; j++) {
                (*out)[j] = deq(typ, row, 32u * c + j);
            }
        }
    }
}
