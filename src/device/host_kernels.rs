//! The host-kernel floor every device shares: the CPU device's kernels on plain byte slices. A GPU
//! device runs a node it has no kernel for through these (see `runner`), and borrows the few host-side
//! tables its own kernels need (GELU, ROPE's cos/sin cache), so every device computes what the CPU
//! device computes. Devices use this module, never `cpu::ops` itself.

pub use super::cpu::ops::{Dst, Src, check, gelu_tables_f16, reads_src, run, writes_src};

use crate::device::DeviceError;
use crate::ggml::{GgmlType, MAX_SRC, Tensor};

/// Checks every compute node of `graph` with the host kernels' checks: the complete set of what a
/// device can run (a device's native planners accept a subset; the rest runs here).
pub fn check_graph(graph: &crate::ggml::Graph) -> Result<(), DeviceError> {
    for node in graph.compute_nodes() {
        check(graph, node)
            .map_err(|reason| DeviceError::op(graph.tensors[node].op.name(), reason))?;
    }
    Ok(())
}

/// A host kernel: what `run` is (tests substitute others).
pub type HostKernel = fn(&[Option<Src<'_>>; MAX_SRC], Dst<'_>) -> Result<(), DeviceError>;

/// ROPE's cos/sin pairs for node `t` (positions and freq factors given as host bytes), exactly as the
/// CPU kernel computes them: `[cos, sin]` per (position, pair).
pub fn rope_cos_sin(
    t: &Tensor,
    pos: &[u8],
    pos_nb0: usize,
    freq_factors: Option<(&Tensor, &[u8])>,
) -> Result<Vec<f32>, DeviceError> {
    use super::cpu::ops::{access, rope};
    let ff: Vec<f32> = freq_factors.map_or_else(Vec::new, |(ft, fb)| {
        (0..ft.ne[0])
            .map(|i| access::load(GgmlType::F32, fb, i * ft.nb[0]))
            .collect()
    });
    rope::cos_sin_cache(t, |k| access::load_i32(pos, k * pos_nb0), &ff)
}

#[cfg(test)]
pub mod testkit {
    //! Host tensors that own their bytes and a one-node runner through `check` + `run`.
    pub use crate::device::cpu::ops::testutil::{HostTensor, run_op, run_op_inout};
    /// Exact references for kernels that chunk differently from the CPU device's default.
    pub use crate::device::cpu::ops::{flash_attn_chunked, vexp};
    pub use crate::testkit::*;
}
