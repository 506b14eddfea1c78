//! Block formats: one codec per quantized type, the CPU reference every GPU kernel is tested against.
//!
//! Rows are whole numbers of blocks. `dequantize_row` turns a row of any supported type into f32;
//! `quantize_row` does the reverse for the types a KV cache or an activation can be stored in;
//! `vec_dot` is ggml's dot product of a weight row with an activation row already converted to
//! `vec_dot_type(weight type)`, so MUL_MAT matches ggml's numerics.

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

/// Converts one row (`src` = exactly `typ.row_size(dst.len())` bytes) to f32.
pub fn dequantize_row(typ: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let _ = (src, dst);
    Err(QuantError::Unsupported(typ.name()))
}

/// Converts one row of f32 to `typ` (`dst` = exactly `typ.row_size(src.len())` bytes).
pub fn quantize_row(typ: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    let _ = (src, dst);
    Err(QuantError::Unsupported(typ.name()))
}

/// The type ggml converts activations to before a dot product with a weight row of type `typ`.
pub fn vec_dot_type(typ: GgmlType) -> GgmlType {
    typ
}

/// Dot product of `n` elements: `x` a row of `typ`, `y` a row of `vec_dot_type(typ)`.
pub fn vec_dot(typ: GgmlType, n: usize, x: &[u8], y: &[u8]) -> Result<f32, QuantError> {
    let _ = (n, x, y);
    Err(QuantError::Unsupported(typ.name()))
}
