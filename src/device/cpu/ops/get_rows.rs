//! GET_ROWS: `dst[:, i, j, k] = a[:, idx[i, j, k], j, k]`, dequantizing block types (ggml's
//! `ggml_compute_forward_get_rows`). The index tensor's dims 1 and 2 select src0's dims 2 and 3.
//! Results are converted to the node's type (f32 normally; f16/bf16 allowed); i32 rows are copied
//! bit for bit into an i32 result. Every index is checked before it is used.

use super::access::{self, load_i32, offset, read_row, write_row};
use super::{Dst, Src};
use crate::device::DeviceError;
use crate::ggml::{GgmlType, Graph, MAX_SRC, Tensor};
use crate::quant;

pub fn check(graph: &Graph, node: usize) -> Result<(), String> {
    let t = &graph.tensors[node];
    let (a, idx) = match (graph.src(node, 0), graph.src(node, 1)) {
        (Some(a), Some(i)) => (a, i),
        _ => return Err("GET_ROWS: needs src0 and src1".into()),
    };
    if idx.typ != GgmlType::I32 || idx.ne[3] != 1 {
        return Err("GET_ROWS: indices must be a 3-d i32 tensor".into());
    }
    let readable = access::is_scalar_float(a.typ)
        || (quant::can_dequantize(a.typ) && a.nb[0] == a.typ.type_size());
    let ok_types = if a.typ == GgmlType::I32 {
        t.typ == GgmlType::I32
    } else {
        readable && access::is_scalar_float(t.typ)
    };
    if !ok_types || a.typ.row_size(a.ne[0]).is_none() {
        return Err(format!(
            "GET_ROWS: {} rows into {} is not supported",
            a.typ.name(),
            t.typ.name()
        ));
    }
    if a.ne[2] != idx.ne[1]
        || a.ne[3] != idx.ne[2]
        || t.ne != [a.ne[0], idx.ne[0], idx.ne[1], idx.ne[2]]
    {
        return Err(format!(
            "GET_ROWS: shapes {:?}, {:?} -> {:?} do not fit",
            a.ne, idx.ne, t.ne
        ));
    }
    Ok(())
}

pub fn run(src: &[Option<Src<'_>>; MAX_SRC], dst: Dst<'_>) -> Result<(), DeviceError> {
    let op = dst.t.op.name();
    let (Some(a), Some(idx)) = (&src[0], &src[1]) else {
        return Err(DeviceError::op(op, "missing source"));
    };
    let (at, it, dt) = (a.t, idx.t, dst.t);
    let mut row = vec![0f32; at.ne[0]];
    for i12 in 0..it.ne[2] {
        for i11 in 0..it.ne[1] {
            for i10 in 0..it.ne[0] {
                let o = offset(it, [i10, i11, i12, 0]);
                if idx.data.get(o..o + 4).is_none() {
                    return Err(DeviceError::op(op, "index outside src1"));
                }
                let raw = load_i32(idx.data, o);
                let i01 = usize::try_from(raw)
                    .ok()
                    .filter(|&r| r < at.ne[1])
                    .ok_or_else(|| {
                        DeviceError::op(op, format!("row {raw} out of range 0..{}", at.ne[1]))
                    })?;
                if at.typ == GgmlType::I32 {
                    copy_i32_row(at, a.data, [i01, i11, i12], dt, dst.data, [i10, i11, i12])?;
                } else {
                    read_row(at, a.data, i01, i11, i12, &mut row)?;
                    write_row(dt, dst.data, i10, i11, i12, &row)?;
                }
            }
        }
    }
    Ok(())
}

/// Copies one row of i32 elements between strided tensors.
fn copy_i32_row(
    at: &Tensor,
    a: &[u8],
    [i1, i2, i3]: [usize; 3],
    dt: &Tensor,
    d: &mut [u8],
    [j1, j2, j3]: [usize; 3],
) -> Result<(), DeviceError> {
    for i0 in 0..at.ne[0] {
        let s = offset(at, [i0, i1, i2, i3]);
        let o = offset(dt, [i0, j1, j2, j3]);
        let v = a
            .get(s..s + 4)
            .ok_or_else(|| DeviceError::op("GET_ROWS", "element outside src0"))?;
        d.get_mut(o..o + 4)
            .ok_or_else(|| DeviceError::op("GET_ROWS", "element outside dst"))?
            .copy_from_slice(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu::ops::testutil::{HostTensor, Rng, assert_close, run_op};
    use crate::ggml::Op;
    use crate::quant::testdata::{DEQUANT_TYPES, random_row};

    fn source(typ: GgmlType, ne: [usize; 4], rng: &mut Rng) -> HostTensor {
        let rows = ne[1] * ne[2] * ne[3];
        HostTensor {
            t: Tensor::new(typ, ne),
            bytes: (0..rows)
                .flat_map(|_| random_row(typ, ne[0], rng))
                .collect(),
        }
    }

    /// Rows are decoded by the codecs themselves, so results must be exact.
    #[test]
    fn get_rows_every_type_with_broadcast_dims() {
        let mut rng = Rng::new(21);
        for typ in DEQUANT_TYPES {
            let ne0 = typ.block_size() * 2;
            let a = source(typ, [ne0, 5, 2, 3], &mut rng);
            let ids: Vec<i32> = (0..4 * 2 * 3)
                .map(|_| (rng.next_u64() % 5) as i32)
                .collect();
            let idx = HostTensor::from_i32([4, 2, 3, 1], &ids);
            let mut dst = HostTensor::zeros(GgmlType::F32, [ne0, 4, 2, 3]);
            run_op(Op::GetRows, [0; 16], &[Some(&a), Some(&idx)], &mut dst).unwrap();
            let av = a.to_f32();
            let mut want = Vec::new();
            for k in 0..3 {
                for j in 0..2 {
                    for i in 0..4 {
                        let r = ids[(k * 2 + j) * 4 + i] as usize;
                        let base = ((k * 2 + j) * 5 + r) * ne0;
                        want.extend(av[base..base + ne0].iter().map(|&v| v as f64));
                    }
                }
            }
            assert_close(&dst.to_f32(), &want, 0.0, typ.name());
        }
    }

    #[test]
    fn get_rows_converts_and_copies() {
        let mut rng = Rng::new(22);
        let vals = rng.vec(3 * 4, -2.0, 2.0);
        let a = HostTensor::from_f32(GgmlType::F32, [3, 4, 1, 1], &vals);
        let idx = HostTensor::from_i32([2, 1, 1, 1], &[3, 0]);
        let mut dst = HostTensor::zeros(GgmlType::F16, [3, 2, 1, 1]).permuted([1, 0, 2, 3]);
        run_op(Op::GetRows, [0; 16], &[Some(&a), Some(&idx)], &mut dst).unwrap();
        let want: Vec<f64> = [&vals[9..12], &vals[0..3]]
            .concat()
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f64())
            .collect();
        assert_close(&dst.to_f32(), &want, 0.0, "f32 -> f16, strided dst");

        let ints = HostTensor::from_i32([2, 3, 1, 1], &[1, -2, 3, i32::MAX, 5, i32::MIN]);
        let idx = HostTensor::from_i32([2, 1, 1, 1], &[2, 1]);
        let mut dst = HostTensor::zeros(GgmlType::I32, [2, 2, 1, 1]);
        run_op(Op::GetRows, [0; 16], &[Some(&ints), Some(&idx)], &mut dst).unwrap();
        assert_eq!(dst.to_i32(), vec![5, i32::MIN, 3, i32::MAX]);
    }

    #[test]
    fn get_rows_rejects_bad_indices_and_shapes() {
        let mut rng = Rng::new(23);
        let a = source(GgmlType::Q4_0, [32, 3, 1, 1], &mut rng);
        for bad in [3, -1, i32::MAX, i32::MIN] {
            let idx = HostTensor::from_i32([2, 1, 1, 1], &[0, bad]);
            let mut dst = HostTensor::zeros(GgmlType::F32, [32, 2, 1, 1]);
            let err = run_op(Op::GetRows, [0; 16], &[Some(&a), Some(&idx)], &mut dst);
            assert!(err.unwrap_err().contains("out of range"), "index {bad}");
        }
        let idx = HostTensor::from_i32([2, 1, 1, 1], &[0, 1]);
        let mut wrong = HostTensor::zeros(GgmlType::F32, [32, 3, 1, 1]);
        assert!(run_op(Op::GetRows, [0; 16], &[Some(&a), Some(&idx)], &mut wrong).is_err());
        let mut i32_dst = HostTensor::zeros(GgmlType::I32, [32, 2, 1, 1]);
        assert!(run_op(Op::GetRows, [0; 16], &[Some(&a), Some(&idx)], &mut i32_dst).is_err());
        let i16_rows = HostTensor::zeros(GgmlType::I16, [256, 2, 1, 1]); // ggml has no i16 to f32
        let mut dst = HostTensor::zeros(GgmlType::F32, [256, 2, 1, 1]);
        assert!(
            run_op(
                Op::GetRows,
                [0; 16],
                &[Some(&i16_rows), Some(&idx)],
                &mut dst
            )
            .is_err()
        );
    }
}
