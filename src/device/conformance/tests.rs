use super::cases::{covered, exempt};
use super::*;
use crate::ggml::{GluOp, UnaryOp};

/// Every op of ggml's op table that computes anything, and every UNARY and GLU variant, has a case.
#[test]
fn the_table_covers_every_op() {
    let cases = cases();
    let (ops, names) = covered(&cases);
    let missing: Vec<&str> = (0..Op::COUNT)
        .filter_map(Op::from_u32)
        .filter(|op| !exempt(*op) && !ops.contains(op))
        .map(Op::name)
        .collect();
    assert!(
        missing.is_empty(),
        "ops without a conformance case: {missing:?}"
    );
    for u in (0..UnaryOp::COUNT).filter_map(UnaryOp::from_u32) {
        let prefix = format!("UNARY_{}_", u.name());
        assert!(names.iter().any(|n| n.starts_with(&prefix)), "{prefix}");
    }
    for g in (0..GluOp::COUNT).filter_map(GluOp::from_u32) {
        let name = format!("GLU_{}", g.name());
        assert!(names.contains(&name), "{name}");
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "case names are unique");
}

/// The CPU device computes every case (nothing refused) and gives the same bytes twice.
#[test]
fn cpu_device_computes_every_case() {
    let cpu = CpuDevice::new(2, None).expect("CPU device");
    let mut refused = Vec::new();
    for case in cases() {
        match (compute_on(&cpu, &case), compute_on(&cpu, &case)) {
            (Ok(a), Ok(b)) => assert!(a == b, "{}: two runs differ", case.name),
            (Err(e), _) | (_, Err(e)) => refused.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(
        refused.is_empty(),
        "{} cases fail:\n{}",
        refused.len(),
        refused.join("\n")
    );
}

#[test]
fn nmse_is_test_backend_ops_error() {
    assert_eq!(nmse(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
    assert!((nmse(&[1.0, 3.0], &[1.0, 2.0]) - 1.0 / 5.0).abs() < 1e-12);
    assert_eq!(nmse(&[f32::NAN], &[f32::NAN]), 0.0);
    assert_eq!(nmse(&[1.0], &[f32::NAN]), f64::INFINITY);
    assert_eq!(nmse(&[f32::NEG_INFINITY], &[f32::NEG_INFINITY]), 0.0);
}
