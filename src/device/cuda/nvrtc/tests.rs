//! The kernels compile with NVRTC for sm_80 and sm_90 (no GPU needed), and the Rust mirrors of the
//! parameter structs have the sizes the C side asserts.

use super::*;
use crate::device::cuda::kernels::{CuTensor, Scratch, attention, elementwise, stride_grid};

/// NVRTC is present, or the test says why it skips; under `GGRPC_REQUIRE_NVRTC=1` (what
/// `scripts/cuda-kernels.sh` sets) a missing NVRTC fails instead.
fn nvrtc_or_skip(test: &str) -> bool {
    if crate::device::cuda::discovery::nvrtc_present() {
        return true;
    }
    assert!(
        std::env::var("GGRPC_REQUIRE_NVRTC").as_deref() != Ok("1"),
        "{test}: GGRPC_REQUIRE_NVRTC=1 but libnvrtc.so.12 cannot be loaded"
    );
    eprintln!("{test}: skipped: no libnvrtc (scripts/cuda-kernels.sh installs one)");
    false
}

#[test]
fn every_family_compiles_for_sm80_and_sm90() {
    if !nvrtc_or_skip("every_family_compiles_for_sm80_and_sm90") {
        return;
    }
    let out = std::env::var_os("GGRPC_PTX_OUT").map(std::path::PathBuf::from);
    if let Some(d) = &out {
        std::fs::create_dir_all(d).expect("PTX output directory");
    }
    let mut failed = Vec::new();
    for arch in [80, 90] {
        for fam in Family::ALL {
            match compile(fam, arch) {
                Ok(ptx) => {
                    assert!(ptx.contains(".entry"), "{}: no kernel", fam.file_name());
                    if let Some(d) = &out {
                        let p = d.join(format!("{}.sm{arch}.ptx", fam.file_name()));
                        std::fs::write(p, ptx).expect("write PTX");
                    }
                }
                Err(e) => failed.push(format!("sm_{arch} {e}")),
            }
        }
    }
    assert!(failed.is_empty(), "NVRTC failed:\n{}", failed.join("\n"));
}

/// A planner's parameter struct that disagrees with its C twin must fail the build of the kernels:
/// every family's program asserts every size, and the sizes are what the C layout rules give.
#[test]
fn every_parameter_struct_is_asserted() {
    assert_eq!(std::mem::size_of::<CuTensor>(), 80);
    assert_eq!(std::mem::size_of::<elementwise::BinaryP>(), 3 * 80 + 8);
    assert_eq!(std::mem::size_of::<attention::FlashP>(), 6 * 80 + 32);
    for fam in Family::ALL {
        let code = fam.code();
        assert!(code.contains("sizeof(Tensor) == 80"), "{fam:?}");
        for (name, size) in fam.abi() {
            assert!(
                code.contains(&format!("sizeof({name}) == {size}")),
                "{fam:?}: {name}"
            );
            assert!(
                code.contains(&format!("struct {name}")),
                "{fam:?}: the C side defines no {name}"
            );
        }
    }
}

/// The cache key changes with the source and survives builds (FNV-1a, not the std hasher).
#[test]
fn cache_keys_are_stable() {
    assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    assert_ne!(fnv1a(&Family::Binary.code()), fnv1a(&Family::Unary.code()));
}

#[test]
fn launches_outside_the_grid_limits_are_refused() {
    // No function is needed to check the shape: build one only where a device exists.
    assert_eq!(stride_grid(0), (1, 1, 1));
    assert_eq!(stride_grid(256 * 70000), (65535, 1, 1));
    assert_eq!(stride_grid(257), (2, 1, 1));
}

#[test]
fn scratch_regions_stay_inside() {
    let s = Scratch::new(0x1000, Scratch::bytes_for(1000, 2));
    let a = s.region(500).expect("first");
    let b = s.region(500).expect("second");
    assert!(a >= 0x1000 + 4 && b >= a + 500);
    assert_eq!(a % 256, 0);
    assert!(s.region(1 << 20).is_none());
}
