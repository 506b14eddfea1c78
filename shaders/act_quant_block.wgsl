// One unit of MUL_MAT's activation conversion (see act_quant.wgsl for the modes and layouts), shared
// by the act_quant pass and by kernels that convert their own output for the products reading it
// (norm.wgsl). The including module defines `aq_ld(col, i)` (element i of activation column col)
// and `aq_st(word, v)` (a word of the converted layout, from the region's start).

fn block_len(mode: u32) -> u32 {
    switch mode {
        case 3u, 5u: { return 32u; }
        case 4u: { return 256u; }
        default: { return 1u; }
    }
}

// Unit `u` (a block; an element for the float modes) of activations with `k` elements per column.
fn aq_unit(mode: u32, k: u32, u: u32) {
    let bs = block_len(mode);
    let nb = k / bs;
    let col = u / nb;
    let i0 = (u % nb) * bs;
    let o = col * k + i0;
    // Word address of this block in the packed layouts (9 or 10 words per 32, 81 per 256).
    var words = 9u;
    if (mode == 4u) {
        words = 81u;
    } else if (mode == 5u) {
        words = 10u;
    }
    let ob = u * words;
    switch mode {
        case 1u: {
            aq_st(o, bitcast<u32>(f16r(aq_ld(col, i0))));
        }
        case 2u: {
            aq_st(o, bitcast<u32>(bf16r(aq_ld(col, i0))));
        }
        case 3u, 5u: {
            var amax = 0.0;
            for (var j = 0u; j < 32u; j++) {
                amax = max(amax, abs(aq_ld(col, i0 + j)));
            }
            let id = select(0.0, 127.0 / amax, amax != 0.0);
            aq_st(ob, bitcast<u32>(f16r(amax / 127.0)));
            let qo = select(1u, 2u, mode == 5u);
            var sum = 0;
            for (var w = 0u; w < 8u; w++) {
                var packed = 0u;
                for (var t = 0u; t < 4u; t++) {
                    let q = i32(clamp(round(aq_ld(col, i0 + 4u * w + t) * id), -128.0, 127.0));
                    sum += q;
                    packed |= (bitcast<u32>(q) & 0xffu) << (8u * t);
                }
                aq_st(ob + qo + w, packed);
            }
            if (mode == 5u) {
                aq_st(ob + 1u, bitcast<u32>(f16r((amax / 127.0) * f32(sum))));
            }
        }
        default: {
            var amax = 0.0;
            var mx = 0.0;
            for (var j = 0u; j < 256u; j++) {
                let v = aq_ld(col, i0 + j);
                if (abs(v) > amax) {
                    amax = abs(v);
                    mx = v;
                }
            }
            if (amax == 0.0) {
                for (var w = 0u; w < 81u; w++) {
                    aq_st(ob + w, 0u);
                }
                return;
            }
            let iscale = -127.0 / mx;
            aq_st(ob, bitcast<u32>(1.0 / iscale));
            for (var g = 0u; g < 16u; g++) {
                var sum = 0;
                for (var w = 0u; w < 4u; w++) {
                    var packed = 0u;
                    for (var t = 0u; t < 4u; t++) {
                        let q = i32(min(127.0, round(iscale * aq_ld(col, i0 + 16u * g + 4u * w + t))));
                        sum += q;
                        packed |= (bitcast<u32>(q) & 0xffu) << (8u * t);
                    }
                    aq_st(ob + 1u + 4u * g + w, packed);
                }
                aq_st(ob + 65u + g, bitcast<u32>(sum));
            }
        }
    }
}
