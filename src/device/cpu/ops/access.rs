//! Typed element access shared by the kernels: strided reads and writes of f32/f16/bf16/i32 elements,
//! and whole-row conversion to and from f32 (through `quant` for block types).

use half::{bf16, f16};

use crate::device::DeviceError;
use crate::ggml::{GgmlType, Tensor};
use crate::quant;

/// Byte offset of element `(i0, i1, i2, i3)`.
#[inline]
pub fn offset(t: &Tensor, i: [usize; 4]) -> usize {
    i[0] * t.nb[0] + i[1] * t.nb[1] + i[2] * t.nb[2] + i[3] * t.nb[3]
}

/// Byte offset of the start of row `(i1, i2, i3)`.
#[inline]
pub fn row_offset(t: &Tensor, i1: usize, i2: usize, i3: usize) -> usize {
    i1 * t.nb[1] + i2 * t.nb[2] + i3 * t.nb[3]
}

/// Reads one scalar element of a non-block type as f32 (i32/i16/i8 converted by value).
#[inline]
pub fn load(typ: GgmlType, b: &[u8], off: usize) -> f32 {
    match typ {
        GgmlType::F32 => f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]),
        GgmlType::F16 => f16::from_le_bytes([b[off], b[off + 1]]).to_f32(),
        GgmlType::Bf16 => bf16::from_le_bytes([b[off], b[off + 1]]).to_f32(),
        GgmlType::I32 => i32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as f32,
        GgmlType::I16 => i16::from_le_bytes([b[off], b[off + 1]]) as f32,
        GgmlType::I8 => b[off] as i8 as f32,
        GgmlType::F64 => f64::from_le_bytes(b[off..off + 8].try_into().unwrap_or([0; 8])) as f32,
        _ => f32::NAN,
    }
}

/// Writes one scalar element of a non-block type from f32 (ggml's conversions: RNE for f16/bf16).
#[inline]
pub fn store(typ: GgmlType, b: &mut [u8], off: usize, v: f32) {
    match typ {
        GgmlType::F32 => b[off..off + 4].copy_from_slice(&v.to_le_bytes()),
        GgmlType::F16 => b[off..off + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes()),
        GgmlType::Bf16 => b[off..off + 2].copy_from_slice(&bf16::from_f32(v).to_le_bytes()),
        GgmlType::I32 => b[off..off + 4].copy_from_slice(&(v as i32).to_le_bytes()),
        GgmlType::I16 => b[off..off + 2].copy_from_slice(&(v as i16).to_le_bytes()),
        GgmlType::I8 => b[off] = v as i8 as u8,
        GgmlType::F64 => b[off..off + 8].copy_from_slice(&(v as f64).to_le_bytes()),
        _ => {}
    }
}

/// Reads an i32 element (index tensors).
#[inline]
pub fn load_i32(b: &[u8], off: usize) -> i32 {
    i32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads an i64 element (SET_ROWS indices).
#[inline]
pub fn load_i64(b: &[u8], off: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    i64::from_le_bytes(a)
}

/// Reads row `(i1, i2, i3)` of `t` into `out` (`out.len() == ne[0]`), dequantizing block types.
pub fn read_row(
    t: &Tensor,
    b: &[u8],
    i1: usize,
    i2: usize,
    i3: usize,
    out: &mut [f32],
) -> Result<(), DeviceError> {
    let base = row_offset(t, i1, i2, i3);
    if t.typ.is_quantized() {
        let len = t
            .typ
            .row_size(out.len())
            .ok_or_else(|| DeviceError::op("read_row", "partial block"))?;
        let bytes = b
            .get(base..base + len)
            .ok_or_else(|| DeviceError::op("read_row", "row outside tensor"))?;
        return quant::dequantize_row(t.typ, bytes, out)
            .map_err(|e| DeviceError::op("read_row", e.to_string()));
    }
    if t.typ == GgmlType::F32 && t.nb[0] == 4 {
        let bytes = b
            .get(base..base + 4 * out.len())
            .ok_or_else(|| DeviceError::op("read_row", "row outside tensor"))?;
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        return Ok(());
    }
    for (i0, o) in out.iter_mut().enumerate() {
        *o = load(t.typ, b, base + i0 * t.nb[0]);
    }
    Ok(())
}

/// Writes `vals` (`ne[0]` values) into row `(i1, i2, i3)` of `t`, quantizing block types.
pub fn write_row(
    t: &Tensor,
    b: &mut [u8],
    i1: usize,
    i2: usize,
    i3: usize,
    vals: &[f32],
) -> Result<(), DeviceError> {
    let base = row_offset(t, i1, i2, i3);
    if t.typ.is_quantized() {
        let len = t
            .typ
            .row_size(vals.len())
            .ok_or_else(|| DeviceError::op("write_row", "partial block"))?;
        let bytes = b
            .get_mut(base..base + len)
            .ok_or_else(|| DeviceError::op("write_row", "row outside tensor"))?;
        // ggml-cpu stores through the type's `from_float` (x86 rounding for Q8_0/Q8_1).
        return quant::quantize_row_for_dot(t.typ, vals, bytes)
            .map_err(|e| DeviceError::op("write_row", e.to_string()));
    }
    if t.typ == GgmlType::F32 && t.nb[0] == 4 {
        let bytes = b
            .get_mut(base..base + 4 * vals.len())
            .ok_or_else(|| DeviceError::op("write_row", "row outside tensor"))?;
        for (c, v) in bytes.chunks_exact_mut(4).zip(vals) {
            c.copy_from_slice(&v.to_le_bytes());
        }
        return Ok(());
    }
    for (i0, &v) in vals.iter().enumerate() {
        store(t.typ, b, base + i0 * t.nb[0], v);
    }
    Ok(())
}

/// Reads a whole tensor in logical order (i0 fastest) as f32.
pub fn read_all(t: &Tensor, b: &[u8]) -> Result<Vec<f32>, DeviceError> {
    let mut out = vec![0f32; t.nelements()];
    if t.ne[0] == 0 {
        return Ok(out);
    }
    for (r, row) in out.chunks_exact_mut(t.ne[0]).enumerate() {
        let (i1, i2, i3) = unravel_row(t, r);
        read_row(t, b, i1, i2, i3, row)?;
    }
    Ok(out)
}

/// Writes a whole tensor from values in logical order.
pub fn write_all(t: &Tensor, b: &mut [u8], vals: &[f32]) -> Result<(), DeviceError> {
    if t.ne[0] == 0 {
        return Ok(());
    }
    for (r, row) in vals.chunks_exact(t.ne[0]).enumerate() {
        let (i1, i2, i3) = unravel_row(t, r);
        write_row(t, b, i1, i2, i3, row)?;
    }
    Ok(())
}

/// Row number -> (i1, i2, i3).
#[inline]
pub fn unravel_row(t: &Tensor, r: usize) -> (usize, usize, usize) {
    let i1 = r % t.ne[1];
    let i2 = (r / t.ne[1]) % t.ne[2];
    let i3 = r / (t.ne[1] * t.ne[2]);
    (i1, i2, i3)
}

/// Checks a scalar type the row helpers can read or write.
pub fn is_scalar_float(typ: GgmlType) -> bool {
    matches!(typ, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16)
}
