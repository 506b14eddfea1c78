//! ggml's vectorized `expf` (`ggml_v_expf`, AVX2 variant) and `ggml_vec_soft_max_f32`, reproduced lane by
//! lane so SOFT_MAX and tiled FLASH_ATTN_EXT round exactly as llama.cpp's x86 CPU backend does (the
//! llama-cpp-python build is AVX2). Gemma amplifies last-bit differences here into visible logit
//! differences, so "close" is not enough.

/// `ggml_v_expf` (AVX2) for one lane: a polynomial on the reduced argument times 2^n built from bits.
#[inline]
pub fn v_expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),
        (-n).mul_add(f32::from_bits(0x3f31_7200), x),
    );
    let e = z.to_bits().wrapping_shl(23);
    let k = f32::from_bits(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let j = f32::from_bits(0x3c07_2010)
        .mul_add(b, f32::from_bits(0x3d2b_9f17))
        .mul_add(
            u,
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)),
        )
        .mul_add(u, f32::from_bits(0x3f7f_fff6) * b);
    if n.abs() <= 126.0 || n.is_nan() {
        return k.mul_add(j, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// The AVX2 horizontal sum of `ggml_vec_soft_max_f32`: halves, then pairs, then the last two.
#[inline]
fn reduce8(v: &[f32; 8]) -> f32 {
    let t: [f32; 4] = std::array::from_fn(|i| v[4 + i] + v[i]);
    (t[0] + t[2]) + (t[1] + t[3])
}

/// `ggml_vec_soft_max_f32`: `y = exp(x - max)` (vector exp on 8-lane chunks, libm on the tail) and the
/// f64 sum, accumulated chunk by chunk.
pub fn soft_max(y: &mut [f32], max: f32) -> f64 {
    let mut sum = 0f64;
    let mut chunks = y.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut v = [0f32; 8];
        for (o, x) in v.iter_mut().zip(c.iter()) {
            *o = v_expf(*x - max);
        }
        c.copy_from_slice(&v);
        sum += reduce8(&v) as f64;
    }
    for x in chunks.into_remainder() {
        *x = (*x - max).exp();
        sum += *x as f64;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_expf_is_close_to_exp_and_handles_the_edges() {
        for i in -2000..2000 {
            let x = i as f32 * 0.05;
            let (got, want) = (v_expf(x), (x as f64).exp());
            if want < 1e-37 {
                assert!(got < 1e-37, "x = {x}");
                continue;
            }
            if want > 3e38 {
                continue;
            }
            assert!(
                ((got as f64 - want) / want).abs() < 4e-7,
                "x = {x}: {got} vs {want}"
            );
        }
        assert_eq!(v_expf(0.0), 1.0);
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(-200.0), 0.0);
        assert_eq!(v_expf(200.0), f32::INFINITY);
        assert!(v_expf(f32::NAN).is_nan());
    }

    #[test]
    fn soft_max_sums_what_it_writes() {
        let mut y: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let max = y.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let sum = soft_max(&mut y, max);
        let direct: f64 = y.iter().map(|&v| v as f64).sum();
        assert!((sum - direct).abs() < 1e-6);
        assert!(y.iter().all(|&v| v > 0.0 && v <= 1.0));
    }
}
