//! The CUDA device: discovery never panics without a driver, and on a machine with a CUDA GPU the
//! shared conformance table passes on it. Tests that need a GPU skip with a printed reason where
//! there is none (CI has none).

use super::*;
use crate::device::conformance::{assert_all_pass, run_all};

/// CUDA0, or `None` with the reason printed.
fn device_or_skip(test: &str) -> Option<CudaDevice> {
    let Some(found) = discovery::found().first() else {
        eprintln!(
            "{test}: skipped: no CUDA device (driver present: {})",
            discovery::driver_present()
        );
        return None;
    };
    if !discovery::nvrtc_present() && !nvrtc::cache_is_complete(discovery::arch(found)) {
        eprintln!(
            "{test}: skipped: {} has no libnvrtc to compile kernels",
            found.name
        );
        return None;
    }
    let opts = DeviceOptions {
        threads: 2,
        mem_cap: None,
    };
    Some(CudaDevice::open(found, &opts).expect("open CUDA0"))
}

#[test]
fn discovery_without_a_driver_is_empty_not_a_panic() {
    let found = discovery::found();
    if !discovery::driver_present() {
        assert!(found.is_empty());
        assert!(discovery::driver_version().is_none());
    }
    for (i, f) in found.iter().enumerate() {
        assert_eq!(f.name, format!("CUDA{i}"));
        assert_eq!(f.pci.len(), "0000:00:00.0".len(), "{}", f.pci);
    }
    assert_eq!(discovery::candidates().len(), found.len());
}

#[test]
fn every_op_computes_on_cuda0() {
    let Some(dev) = device_or_skip("every_op_computes_on_cuda0") else {
        return;
    };
    let outcomes = run_all(&dev);
    let fallback: std::collections::BTreeSet<&str> = outcomes
        .iter()
        .filter(|o| o.fallback)
        .map(|o| o.op.name())
        .collect();
    eprintln!("ops through the host kernels on CUDA0: {fallback:?}");
    assert_all_pass("cuda", &outcomes);
}

#[test]
fn fresh_buffers_are_zero_and_ranges_are_checked() {
    let Some(dev) = device_or_skip("fresh_buffers_are_zero_and_ranges_are_checked") else {
        return;
    };
    let b = dev.alloc(4096).expect("alloc");
    let mut out = vec![1u8; 4096];
    b.read(0, &mut out).expect("read");
    assert!(out.iter().all(|&v| v == 0));
    b.write(100, &[7; 8]).expect("write");
    b.read(100, &mut out[..8]).expect("read");
    assert_eq!(&out[..8], &[7; 8]);
    assert!(b.write(4090, &[0; 8]).is_err());
    assert!(b.read(usize::MAX, &mut out[..1]).is_err());
}

/// The ops a Gemma/llama graph sends: each must run through a CUDA kernel in at least one
/// conformance case (not only through the host kernels).
const MODEL_OPS: [&str; 13] = [
    "ADD",
    "MUL",
    "SCALE",
    "RMS_NORM",
    "MUL_MAT",
    "ROPE",
    "SOFT_MAX",
    "GET_ROWS",
    "SET_ROWS",
    "CPY",
    "GLU",
    "UNARY",
    "FLASH_ATTN_EXT",
];

/// The whole conformance table through the CUDA planners and kernels, in the emulator, against the
/// CPU device; and the model's ops really run as kernels there.
#[test]
fn every_op_computes_in_the_kernel_emulator() {
    let Some(mut dev) = emu::device_or_skip("every_op_computes_in_the_kernel_emulator") else {
        return;
    };
    // Every type's tensor-core path, not only the default ones.
    dev.mma = kernels::matmul::Mma::All;
    let outcomes = run_all(&dev);
    let native: std::collections::BTreeSet<&str> = outcomes
        .iter()
        .filter(|o| !o.fallback && o.result.is_ok())
        .map(|o| o.op.name())
        .collect();
    eprintln!("ops with a CUDA kernel in some case: {native:?}");
    if std::env::var_os("GGRPC_PRINT_NMSE").is_some() {
        for o in outcomes.iter().filter(|o| !o.fallback) {
            eprintln!("nmse {:<40} {:?}", o.name, o.result);
        }
    }
    assert_all_pass("cuda-emu", &outcomes);
    let missing: Vec<&str> = MODEL_OPS
        .iter()
        .copied()
        .filter(|op| !native.contains(op))
        .collect();
    assert!(
        missing.is_empty(),
        "model ops never run as kernels: {missing:?}"
    );
}

/// A GET_ROWS or SET_ROWS index outside the source (data, so no check before the launch sees it) is
/// caught by the kernel's flag: the computation fails with the index error, as on the CPU device.
#[test]
fn out_of_range_row_indices_fail_in_the_kernels() {
    use crate::device::conformance::{CaseBuilder, compute_on};
    use crate::ggml::{GgmlType, Op};
    let Some(dev) = emu::device_or_skip("out_of_range_row_indices_fail_in_the_kernels") else {
        return;
    };
    for bad in [-1, 7] {
        let mut b = CaseBuilder::new(3);
        let a = b.rand(GgmlType::F32, [8, 7, 1, 1], -1.0, 1.0);
        let i = b.ints([3, 1, 1, 1], &[0, bad, 2]);
        b.node(GgmlType::F32, [8, 3, 1, 1], Op::GetRows, [0; 16], &[a, i]);
        let case = b.finish("GET_ROWS_bad_index", 0.0);
        let e = compute_on(&dev, &case).expect_err("an index outside 0..7 must fail");
        assert!(e.contains("out of range"), "{e}");
        assert_eq!(
            dev.counters().nodes_fallback,
            0,
            "the kernel, not the host, ran it"
        );

        let mut b = CaseBuilder::new(4);
        let cache = b.rand(GgmlType::F16, [8, 7, 1, 1], -1.0, 1.0);
        let src = b.rand(GgmlType::F32, [8, 2, 1, 1], -1.0, 1.0);
        let i = b.longs([2, 1, 1, 1], &[1, i64::from(bad)]);
        b.node_into(cache, Op::SetRows, [0; 16], &[src, i]);
        let case = b.finish("SET_ROWS_bad_index", 0.0);
        let e = compute_on(&dev, &case).expect_err("an index outside 0..7 must fail");
        assert!(e.contains("out of range"), "{e}");
    }
}

/// The prompt kernel on int8 tensor cores (`k_mul_mat_q_mma`, 40 columns) against the mat-vec
/// kernel (`k_mul_mat_vec_q`, the same 40 columns as 40 one-column matrices) in the emulator: both
/// take the same q8_1 activations and the same exact integer sums per 32 (or 16) values, so they
/// differ only in the order of f32 additions — far tighter than the CPU comparison's tolerance,
/// which a wrong scale or min in one chunk could pass. M = 70 and N = 40 leave partial tiles in both
/// dimensions; K = 512 is 16 blocks or two K-quant superblocks.
#[test]
fn prompt_matmul_on_tensor_cores_matches_the_mat_vec_kernel() {
    use crate::device::conformance::{CaseBuilder, compute_on, nmse};
    use crate::ggml::{GgmlType, Op};
    let Some(mut dev) =
        emu::device_or_skip("prompt_matmul_on_tensor_cores_matches_the_mat_vec_kernel")
    else {
        return;
    };
    dev.mma = kernels::matmul::Mma::All;
    let (k, m, n) = (512, 70, 40);
    let f32s = |b: Vec<u8>| -> Vec<f32> { bytemuck::pod_collect_to_vec(&b) };
    for typ in kernels::matmul::MMA_TYPES {
        // x as [K, N, 1, 1] (tensor cores) or [K, 1, N, 1] (mat-vec): the same values and output
        // layout.
        let run = |cols: usize, mats: usize| {
            let mut b = CaseBuilder::new(41);
            let w = b.rand(typ, [k, m, 1, 1], -1.0, 1.0);
            let x = b.rand(GgmlType::F32, [k, cols, mats, 1], -1.0, 1.0);
            b.node(
                GgmlType::F32,
                [m, cols, mats, 1],
                Op::MulMat,
                [0; 16],
                &[w, x],
            );
            let before = dev.counters().nodes_fallback;
            let out = compute_on(&dev, &b.finish("MUL_MAT", 0.0)).expect("MUL_MAT");
            assert_eq!(
                dev.counters().nodes_fallback,
                before,
                "{}: a kernel",
                typ.name()
            );
            f32s(out)
        };
        let (mma, vec) = (run(n, 1), run(1, n));
        let e = nmse(&mma, &vec);
        eprintln!("{}: tensor cores vs mat-vec NMSE {e:.2e}", typ.name());
        assert!(e <= 1e-10, "{}: NMSE {e:.3e}", typ.name());
    }
}
