//! Device conformance: one small graph per op (and per UNARY/GLU variant, per weight type), run on any
//! device and on the CPU device, compared by NMSE as ggml's test-backend-ops does. Every backend's tests
//! call `run_all` on their device; `coverage` proves the table covers the whole op table, so an op a
//! GPU device lacks a kernel for is still shown to compute (through the host fallback).

mod cases;
mod cases_conv;
mod cases_more;
mod cases_seq;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use cases::all as cases;

use crate::device::cpu::CpuDevice;
use crate::device::host_kernels::testkit::{HostTensor, Rng};
use crate::device::{Buffer, BufferSet, Device};
use crate::ggml::{DataRef, GgmlType, Graph, Op, Tensor, TensorFlags};

/// One conformance case: a graph with filled leaves, and the node whose result is compared.
pub struct Case {
    pub name: String,
    /// The op under test (the last node).
    pub op: Op,
    /// Largest NMSE accepted between the device and the CPU device.
    pub max_nmse: f64,
    pub graph: Graph,
    /// Bytes of each leaf, by tensor index.
    pub leaves: Vec<(usize, Vec<u8>)>,
    pub out: usize,
}

/// Builds a case: leaves first, then nodes.
pub struct CaseBuilder {
    pub rng: Rng,
    graph: Graph,
    leaves: Vec<(usize, Vec<u8>)>,
}

impl CaseBuilder {
    pub fn new(seed: u64) -> Self {
        CaseBuilder {
            rng: Rng::new(seed),
            graph: Graph::default(),
            leaves: Vec::new(),
        }
    }

    /// A leaf holding `h` (with `h`'s strides).
    pub fn leaf(&mut self, h: HostTensor) -> usize {
        self.graph.tensors.push(h.t);
        let i = self.graph.tensors.len() - 1;
        self.leaves.push((i, h.bytes));
        i
    }

    /// A contiguous leaf of `typ` with uniform values in [lo, hi).
    pub fn rand(&mut self, typ: GgmlType, ne: [usize; 4], lo: f32, hi: f32) -> usize {
        let n = ne.iter().product();
        let vals = self.rng.vec(n, lo, hi);
        self.leaf(HostTensor::from_f32(typ, ne, &vals))
    }

    /// A contiguous i32 leaf.
    pub fn ints(&mut self, ne: [usize; 4], vals: &[i32]) -> usize {
        self.leaf(HostTensor::from_i32(ne, vals))
    }

    /// A contiguous i64 leaf.
    pub fn longs(&mut self, ne: [usize; 4], vals: &[i64]) -> usize {
        self.leaf(HostTensor::from_i64(ne, vals))
    }

    /// A node of `typ`/`ne` computing `op` from `srcs`.
    pub fn node(
        &mut self,
        typ: GgmlType,
        ne: [usize; 4],
        op: Op,
        params: [i32; 16],
        srcs: &[usize],
    ) -> usize {
        let mut t = Tensor::new(typ, ne);
        t.op = op;
        t.op_params = params;
        t.flags = TensorFlags::COMPUTE;
        for (k, &s) in srcs.iter().enumerate() {
            t.src[k] = Some(s);
        }
        self.graph.tensors.push(t);
        let i = self.graph.tensors.len() - 1;
        self.graph.nodes.push(i);
        i
    }

    /// A node written into the bytes of `target` (SET_ROWS and CPY into an existing tensor): it shares
    /// the target's storage, as ggml's views do.
    pub fn node_into(&mut self, target: usize, op: Op, params: [i32; 16], srcs: &[usize]) -> usize {
        let mut t = self.graph.tensors[target].clone();
        t.op = op;
        t.op_params = params;
        t.flags = TensorFlags::COMPUTE;
        t.src = [None; crate::ggml::MAX_SRC];
        for (k, &s) in srcs.iter().enumerate() {
            t.src[k] = Some(s);
        }
        t.view_src = Some(target);
        self.graph.tensors.push(t);
        let i = self.graph.tensors.len() - 1;
        self.graph.nodes.push(i);
        i
    }

    pub fn finish(self, name: impl Into<String>, max_nmse: f64) -> Case {
        let out = *self.graph.nodes.last().expect("a case has a node");
        Case {
            name: name.into(),
            op: self.graph.tensors[out].op,
            max_nmse,
            graph: self.graph,
            leaves: self.leaves,
            out,
        }
    }
}

/// Bytes every tensor is placed after in its buffer (not a multiple of any GPU offset alignment), and
/// after its end, so a kernel that ignores its offset or writes past its end is caught.
const PAD: usize = 20;

/// Places the case's tensors in buffers of `dev` (one per tensor; views share their target's), fills the
/// leaves, computes, and returns the output's bytes.
pub fn compute_on(dev: &dyn Device, case: &Case) -> Result<Vec<u8>, String> {
    let mut graph = case.graph.clone();
    let mut buffers = BufferSet::new();
    for i in 0..graph.tensors.len() {
        if let Some(v) = graph.tensors[i].view_src {
            graph.tensors[i].data = graph.tensors[v].data;
            continue;
        }
        let len = graph.tensors[i].nbytes().ok_or("tensor size overflows")?;
        let handle = i as u64 + 1;
        let buf: Arc<dyn Buffer> = dev
            .alloc(PAD + len + PAD)
            .ok_or_else(|| format!("{}: cannot allocate {len} bytes", dev.name()))?;
        buf.fill(0, PAD + len + PAD, 0).map_err(|e| e.to_string())?;
        buffers.insert(handle, buf);
        graph.tensors[i].data = Some(DataRef {
            buffer: handle,
            offset: PAD,
        });
    }
    for (i, bytes) in &case.leaves {
        let d = graph.tensors[*i].data.ok_or("leaf without data")?;
        buffers[&d.buffer]
            .write(d.offset, bytes)
            .map_err(|e| e.to_string())?;
    }
    dev.check_graph(&graph)
        .map_err(|e| format!("refused: {e}"))?;
    dev.compute(&graph, &buffers).map_err(|e| e.to_string())?;
    let t = &graph.tensors[case.out];
    let d = t.data.ok_or("output without data")?;
    let mut out = vec![0u8; t.nbytes().ok_or("size")?];
    buffers[&d.buffer]
        .read(d.offset, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// ggml's test-backend-ops error: `sum((a-b)^2) / sum(b^2)`; infinities and NaNs must sit at the same
/// places with the same sign.
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (&a, &b) in got.iter().zip(want) {
        if !b.is_finite() || !a.is_finite() {
            let same = (a.is_nan() && b.is_nan()) || a == b;
            if !same {
                return f64::INFINITY;
            }
            continue;
        }
        num += (f64::from(a) - f64::from(b)).powi(2);
        den += f64::from(b).powi(2);
    }
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    if den == 0.0 {
        if num == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        num / den
    }
}

/// How one case went on a device.
pub struct Outcome {
    pub name: String,
    pub op: Op,
    pub result: Result<f64, String>,
    pub max_nmse: f64,
    /// Whether the device ran the op through its host fallback (from its counters).
    pub fallback: bool,
}

/// Runs every case on `dev` and on a fresh CPU device; the error is the NMSE of the output.
pub fn run_all(dev: &dyn Device) -> Vec<Outcome> {
    let cpu = CpuDevice::new(1, None).expect("CPU device");
    cases()
        .into_iter()
        .map(|case| {
            let before = dev.counters().nodes_fallback;
            let got = compute_on(dev, &case);
            let fallback = dev.counters().nodes_fallback > before;
            let want = compute_on(&cpu, &case);
            let typ = case.graph.tensors[case.out].typ;
            let t = case.graph.tensors[case.out].clone();
            let result = match (got, want) {
                (Ok(g), Ok(w)) => {
                    let as_f32 = |bytes: Vec<u8>| values(&t, typ, bytes);
                    Ok(nmse(&as_f32(g), &as_f32(w)))
                }
                (Err(e), _) => Err(e),
                (_, Err(e)) => Err(format!("on the CPU device: {e}")),
            };
            Outcome {
                name: case.name,
                op: case.op,
                result,
                max_nmse: case.max_nmse,
                fallback,
            }
        })
        .collect()
}

/// An output's values as f32 (integers by value; contiguous outputs, as every integer result is).
fn values(t: &Tensor, typ: GgmlType, bytes: Vec<u8>) -> Vec<f32> {
    match typ {
        GgmlType::I32 => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        GgmlType::I64 => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        GgmlType::I16 => bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32)
            .collect(),
        GgmlType::I8 => bytes.iter().map(|&c| c as i8 as f32).collect(),
        _ => HostTensor {
            t: t.clone(),
            bytes,
        }
        .to_f32(),
    }
}

/// Checks every outcome and panics with the list of failures.
pub fn assert_all_pass(device: &str, outcomes: &[Outcome]) {
    let bad: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            let max = o.max_nmse;
            match &o.result {
                Ok(e) if *e <= max => None,
                Ok(e) => Some(format!("{}: NMSE {e:.3e} > {max:.1e}", o.name)),
                Err(e) => Some(format!("{}: {e}", o.name)),
            }
        })
        .collect();
    let native = outcomes.iter().filter(|o| !o.fallback).count();
    eprintln!(
        "{device}: {} conformance cases, {native} native, {} through the host fallback",
        outcomes.len(),
        outcomes.len() - native
    );
    assert!(
        bad.is_empty(),
        "{device}: {} failures:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
