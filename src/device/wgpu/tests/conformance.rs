//! The shared conformance table on the wgpu adapter: every op computes (natively or through the host
//! fallback) within test-backend-ops' tolerance of the CPU device, and the device's fallback counter
//! (exported as `ggrpc_device_nodes_fallback_total`) counts exactly the nodes it has no kernel for.

use super::device_or_skip;
use crate::device::conformance::{assert_all_pass, cases, run_all};
use crate::device::wgpu::kernels;

#[test]
fn every_op_computes_on_the_adapter() {
    let Some(dev) = device_or_skip("every_op_computes_on_the_adapter") else {
        return;
    };
    let outcomes = run_all(&dev);
    let table = cases();
    let mut miscounted = Vec::new();
    for (o, c) in outcomes.iter().zip(&table) {
        let native = kernels::supports(&c.graph, c.out);
        if o.result.is_ok() && o.fallback == native {
            miscounted.push(format!("{} (native kernel: {native})", o.name));
        }
    }
    let fallback_ops: std::collections::BTreeSet<&str> = outcomes
        .iter()
        .filter(|o| o.fallback)
        .map(|o| o.op.name())
        .collect();
    eprintln!("ops through the host fallback: {fallback_ops:?}");
    assert_all_pass("wgpu", &outcomes);
    assert!(
        miscounted.is_empty(),
        "fallback counter disagrees: {miscounted:?}"
    );
}
