//! Block formats: one codec per quantized type, the CPU reference every GPU kernel is tested against.
//!
//! Rows are whole numbers of blocks. `dequantize_row` turns a row of any supported type into f32;
//! `quantize_row` does the reverse for the types a KV cache or an activation can be stored in;
//! `vec_dot` is ggml's dot product of a weight row with an activation row already converted to
//! `vec_dot_type(weight type)`, so MUL_MAT matches ggml's numerics.
//!
//! Numerics follow ggml exactly: `dequantize_row_*`, `quantize_row_*_ref` and the generic
//! `ggml_vec_dot_*_q8_*` (integer sums per block, then one float scale per block or sub-block).
//! `quantize_row_for_dot` is ggml-cpu's `from_float` on x86 (AVX2 path for Q8_0/Q8_1), the
//! conversion MUL_MAT applies to activations.
//!
//! Files: `float` (F32/F16/BF16), `legacy` (Q4_0/Q4_1/Q5_0/Q5_1), `q8` (Q8_0/Q8_1/Q8_K),
//! `k_quants` (Q2_K..Q6_K decoding), `k_dot` (their dot products), `iq4` (IQ4_NL/IQ4_XS),
//! `iq2`/`iq3`/`iq1` (the grid formats IQ2_XXS..IQ1_M, tables in `iq_grids`),
//! `mxfp4`, `tiled` (the float epilogue of ggml-cpu's tiled K-quant matmul, used for batches of
//! ≥ 8 columns).

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
))]
mod avx2;
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512dq",
    target_feature = "avx512vl",
    target_feature = "avx512vnni"
))]
mod avx512_kpanel;
mod f16_table;
mod float;
mod iq1;
mod iq2;
mod iq3;
mod iq4;
mod iq_grids;
mod k_dot;
mod k_quantize;
mod k_quants;
pub mod kpanel;
mod legacy;
mod mxfp4;
mod nvfp4;
mod q1_q2;
mod q8;
mod ternary;
#[cfg(test)]
pub(crate) mod testdata;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dot;
#[cfg(test)]
mod tests_iq;
#[cfg(test)]
mod tests_small;
pub mod tiled;
pub mod tiny_tile;

use crate::ggml::GgmlType;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    #[error("type {0} is not supported here")]
    Unsupported(&'static str),
    #[error("row of {n} elements does not fit {bytes} bytes of {typ}")]
    BadLength {
        typ: &'static str,
        n: usize,
        bytes: usize,
    },
}

/// A dot-product kernel: `x` a row of the weight type, `y` the same number of elements of its
/// `vec_dot_type`. Lengths must already match (`vec_dot` checks them); a mismatch never panics,
/// the extra blocks of the longer side are ignored.
pub type DotFn = fn(&[u8], &[u8]) -> f32;

/// Checks that `bytes` is exactly one row of `n` elements of `typ`.
fn check_len(typ: GgmlType, n: usize, bytes: usize) -> Result<(), QuantError> {
    if typ.row_size(n) == Some(bytes) {
        Ok(())
    } else {
        Err(QuantError::BadLength {
            typ: typ.name(),
            n,
            bytes,
        })
    }
}

/// Reads a little-endian binary16 at `b[0..2]`.
#[inline(always)]
fn f16_at(b0: u8, b1: u8) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b0, b1])).to_f32()
}

/// Rounds to binary16 (round to nearest even, like F16C) and returns the two bytes.
#[inline(always)]
fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

/// Converts one row (`src` = exactly `typ.row_size(dst.len())` bytes) to f32.
pub fn dequantize_row(typ: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    use GgmlType::*;
    check_len(typ, dst.len(), src.len())?;
    match typ {
        F32 | F16 | Bf16 => float::to_f32(typ, src, dst),
        Q4_0 => legacy::dequant_q4_0(src, dst),
        Q4_1 => legacy::dequant_q4_1(src, dst),
        Q5_0 => legacy::dequant_q5_0(src, dst),
        Q5_1 => legacy::dequant_q5_1(src, dst),
        Q8_0 => q8::dequant_q8_0(src, dst),
        Q8_1 => q8::dequant_q8_1(src, dst),
        Q8K => q8::dequant_q8_k(src, dst),
        Q2K => k_quants::dequant_q2_k(src, dst),
        Q3K => k_quants::dequant_q3_k(src, dst),
        Q4K => k_quants::dequant_q4_k(src, dst),
        Q5K => k_quants::dequant_q5_k(src, dst),
        Q6K => k_quants::dequant_q6_k(src, dst),
        Iq4Nl => iq4::dequant_iq4_nl(src, dst),
        Iq4Xs => iq4::dequant_iq4_xs(src, dst),
        Iq2Xxs => iq2::dequant_iq2_xxs(src, dst),
        Iq2Xs => iq2::dequant_iq2_xs(src, dst),
        Iq2S => iq2::dequant_iq2_s(src, dst),
        Iq3Xxs => iq3::dequant_iq3_xxs(src, dst),
        Iq3S => iq3::dequant_iq3_s(src, dst),
        Iq1S => iq1::dequant_iq1_s(src, dst),
        Iq1M => iq1::dequant_iq1_m(src, dst),
        Mxfp4 => mxfp4::dequant(src, dst),
        Nvfp4 => nvfp4::dequant(src, dst),
        Q1_0 => q1_q2::dequant_q1_0(src, dst),
        Q2_0 => q1_q2::dequant_q2_0(src, dst),
        Tq1_0 => ternary::dequant_tq1_0(src, dst),
        Tq2_0 => ternary::dequant_tq2_0(src, dst),
        _ => return Err(QuantError::Unsupported(typ.name())),
    }
    Ok(())
}

/// Whether `dequantize_row` supports `typ`.
pub fn can_dequantize(typ: GgmlType) -> bool {
    dequantize_row(typ, &[], &mut []).is_ok()
}

/// Converts one row of f32 to `typ` (`dst` = exactly `typ.row_size(src.len())` bytes), with ggml's
/// reference quantizers (`quantize_row_*_ref`).
pub fn quantize_row(typ: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    use GgmlType::*;
    check_len(typ, src.len(), dst.len())?;
    match typ {
        F32 | F16 | Bf16 => float::from_f32(typ, src, dst),
        Q4_0 => legacy::quant_q4_0(src, dst),
        Q4_1 => legacy::quant_q4_1(src, dst),
        Q5_0 => legacy::quant_q5_0(src, dst),
        Q5_1 => legacy::quant_q5_1(src, dst),
        Q8_0 => q8::quant_q8_0_ref(src, dst),
        Q8_1 => q8::quant_q8_1_ref(src, dst),
        Q8K => q8::quant_q8_k(src, dst),
        Q2K => k_quantize::quant_q2_k(src, dst),
        Q3K => k_quantize::quant_q3_k(src, dst),
        Q4K => k_quantize::quant_q4_k(src, dst),
        Q5K => k_quantize::quant_q5_k(src, dst),
        Q6K => k_quantize::quant_q6_k(src, dst),
        Iq4Nl => iq4::quant_iq4_nl(src, dst),
        Iq4Xs => k_quantize::quant_iq4_xs(src, dst),
        Mxfp4 => mxfp4::quant(src, dst),
        Nvfp4 => nvfp4::quant(src, dst),
        Q1_0 => q1_q2::quant_q1_0(src, dst),
        Q2_0 => q1_q2::quant_q2_0(src, dst),
        Tq1_0 => ternary::quant_tq1_0(src, dst),
        Tq2_0 => ternary::quant_tq2_0(src, dst),
        _ => return Err(QuantError::Unsupported(typ.name())),
    }
    Ok(())
}

/// Converts activations to a `vec_dot_type` the way ggml-cpu's `from_float` does on x86 with AVX2:
/// identical to `quantize_row` except Q8_0/Q8_1, which scale by `127/amax` and round half to even.
pub fn quantize_row_for_dot(typ: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_len(typ, src.len(), dst.len())?;
    match typ {
        GgmlType::Q8_0 => q8::quant_q8_0_cpu(src, dst),
        GgmlType::Q8_1 => q8::quant_q8_1_cpu(src, dst),
        _ => return quantize_row(typ, src, dst),
    }
    Ok(())
}

/// The type ggml converts activations to before a dot product with a weight row of type `typ`.
pub fn vec_dot_type(typ: GgmlType) -> GgmlType {
    use GgmlType::*;
    match typ {
        Q4_0 | Q5_0 | Q8_0 | Iq4Nl | Mxfp4 | Nvfp4 | Q1_0 | Q2_0 => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q2K | Q3K | Q4K | Q5K | Q6K | Iq4Xs | Tq1_0 | Tq2_0 => Q8K,
        Iq2Xxs | Iq2Xs | Iq2S | Iq3Xxs | Iq3S | Iq1S | Iq1M => Q8K,
        _ => typ,
    }
}

/// The dot-product kernel for weight rows of `typ`, if this crate has one: the AVX2 version where the
/// build has one, else the portable one.
pub fn dot_fn(typ: GgmlType) -> Option<DotFn> {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    {
        use GgmlType::*;
        let f: Option<DotFn> = match typ {
            F32 => Some(avx2::dot_f32),
            F16 => Some(avx2::dot_f16),
            Q4_0 => Some(avx2::dot_q4_0),
            Q4_1 => Some(avx2::dot_q4_1),
            Q5_0 => Some(avx2::dot_q5_0),
            Q5_1 => Some(avx2::dot_q5_1),
            Q8_0 => Some(avx2::dot_q8_0),
            Q4K => Some(avx2::dot_q4_k),
            Q5K => Some(avx2::dot_q5_k),
            Q6K => Some(avx2::dot_q6_k),
            Iq4Nl => Some(avx2::dot_iq4_nl),
            Mxfp4 => Some(avx2::dot_mxfp4),
            _ => None,
        };
        if f.is_some() {
            return f;
        }
    }
    scalar_dot_fn(typ)
}

/// `out[j * xs.len() + i] = dot(xs[i], ys[j])` for 1..=4 weight rows `xs` and 1..=4 activation
/// rows `ys` (in the weight type's `vec_dot_type`), bit-identical to [`dot_fn`]'s kernel.
pub type TileFn = fn(xs: &[&[u8]], ys: &[&[u8]], out: &mut [f32]);

/// A register-tiled GEMM kernel for `typ`, where one is faster than `dot_fn` column by column.
pub fn tile_fn(typ: GgmlType) -> Option<TileFn> {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    {
        use avx2::q0_tiles as gemm;
        let f: Option<TileFn> = match typ {
            GgmlType::Q8_0 => Some(gemm::gemm_q8_0),
            GgmlType::Q5_0 => Some(gemm::gemm_q5_0),
            GgmlType::Q4_0 => Some(gemm::gemm_q4_0),
            _ => None,
        };
        f
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    )))]
    {
        let _ = typ;
        None
    }
}

/// Every tile kernel this build has for `typ`: `tile_fn`'s and the AVX2 one (the same where the
/// build has no AVX-512).
#[cfg(test)]
fn tile_fns(typ: GgmlType) -> Vec<TileFn> {
    let mut v: Vec<TileFn> = tile_fn(typ).into_iter().collect();
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    {
        let f: Option<TileFn> = match typ {
            GgmlType::Q8_0 => Some(avx2::gemm::gemm_q8_0),
            GgmlType::Q5_0 => Some(avx2::gemm::gemm_q5_0),
            GgmlType::Q4_0 => Some(avx2::gemm::gemm_q4_0),
            _ => None,
        };
        v.extend(f);
    }
    v
}

/// llamafile's tinyBLAS arithmetic for F32, F16, BF16 (and on AVX2 IQ4_NL) weights (see `float::tiny_f32`); `None` otherwise.
pub fn tiny_blas_fn(typ: GgmlType) -> Option<DotFn> {
    match typ {
        GgmlType::F32 => Some(float::tiny_f32),
        GgmlType::F16 => Some(float::tiny_f16),
        GgmlType::Bf16 => Some(float::tiny_bf16),
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ))]
        GgmlType::Iq4Nl => Some(avx2::tiny_iq4_nl),
        _ => None,
    }
}

/// The portable dot-product kernels (integer loops LLVM vectorizes), for every weight type.
pub fn scalar_dot_fn(typ: GgmlType) -> Option<DotFn> {
    use GgmlType::*;
    Some(match typ {
        F32 => float::dot_f32,
        F16 => float::dot_f16,
        Bf16 => float::dot_bf16,
        Q4_0 => legacy::dot_q4_0,
        Q4_1 => legacy::dot_q4_1,
        Q5_0 => legacy::dot_q5_0,
        Q5_1 => legacy::dot_q5_1,
        Q8_0 => q8::dot_q8_0,
        Q2K => k_dot::dot_q2_k,
        Q3K => k_dot::dot_q3_k,
        Q4K => k_dot::dot_q4_k,
        Q5K => k_dot::dot_q5_k,
        Q6K => k_dot::dot_q6_k,
        Iq4Nl => iq4::dot_iq4_nl,
        Iq4Xs => iq4::dot_iq4_xs,
        Iq2Xxs => iq2::dot_iq2_xxs,
        Iq2Xs => iq2::dot_iq2_xs,
        Iq2S => iq2::dot_iq2_s,
        Iq3Xxs => iq3::dot_iq3_xxs,
        Iq3S => iq3::dot_iq3_s,
        Iq1S => iq1::dot_iq1_s,
        Iq1M => iq1::dot_iq1_m,
        Mxfp4 => mxfp4::dot,
        Nvfp4 => nvfp4::dot,
        Q1_0 => q1_q2::dot_q1_0,
        Q2_0 => q1_q2::dot_q2_0,
        Tq1_0 => ternary::dot_tq1_0,
        Tq2_0 => ternary::dot_tq2_0,
        _ => return None,
    })
}

/// Dot product of `n` elements: `x` a row of `typ`, `y` a row of `vec_dot_type(typ)`.
pub fn vec_dot(typ: GgmlType, n: usize, x: &[u8], y: &[u8]) -> Result<f32, QuantError> {
    let dot = dot_fn(typ).ok_or(QuantError::Unsupported(typ.name()))?;
    check_len(typ, n, x.len())?;
    check_len(vec_dot_type(typ), n, y.len())?;
    Ok(dot(x, y))
}
