//! GRAPH_COMPUTE payloads: layout (§5.1) and rebuilding the DAG from ids (§5.3) without recursion.

use std::collections::HashMap;

pub use super::tensor::BufferLookup;
use super::tensor::{RPC_TENSOR_SIZE, decode_tensor};
use super::{Major, ProtoError, WireTensor, u32_at, u64_at};
use crate::ggml::{Graph, MAX_SRC};

/// A GRAPH_COMPUTE payload, parsed but not yet linked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireGraph {
    pub device: u32,
    /// v8: the client's graph uid (0 = not cached); always 0 in v7, which has no uid on the wire.
    pub uid: u64,
    pub node_ids: Vec<u64>,
    pub tensors: Vec<WireTensor>,
}

impl WireGraph {
    /// Bytes before `n_nodes`: `device` (v7), `device | uid` (v8).
    fn head_len(major: Major) -> usize {
        if major >= Major::V8 { 12 } else { 4 }
    }

    /// Parses `device | [uid |] n_nodes | node_ids | n_tensors | tensors` (trailing bytes ignored, as
    /// the reference does). Counts are checked against the payload before anything is allocated.
    pub fn parse(b: &[u8], major: Major) -> Result<Self, ProtoError> {
        let device = u32_at(b, 0)?;
        let head = Self::head_len(major);
        let uid = if major >= Major::V8 { u64_at(b, 4)? } else { 0 };
        let n_nodes = u32_at(b, head)? as usize;
        let ids_at = head + 4;
        let ids_end = ids_at
            .checked_add(n_nodes.checked_mul(8).ok_or(ProtoError::Overflow)?)
            .ok_or(ProtoError::Overflow)?;
        let n_tensors = u32_at(b, ids_end)? as usize;
        let tensors_at = ids_end + 4;
        let need = n_tensors
            .checked_mul(RPC_TENSOR_SIZE)
            .and_then(|n| n.checked_add(tensors_at))
            .ok_or(ProtoError::Overflow)?;
        if b.len() < need {
            return Err(ProtoError::Short { need, got: b.len() });
        }
        let node_ids = (0..n_nodes)
            .map(|i| u64_at(b, ids_at + 8 * i))
            .collect::<Result<_, _>>()?;
        let tensors = (0..n_tensors)
            .map(|i| {
                WireTensor::parse(
                    b.get(tensors_at + i * RPC_TENSOR_SIZE..)
                        .unwrap_or_default(),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(WireGraph {
            device,
            uid,
            node_ids,
            tensors,
        })
    }

    /// Serializes for `major` (used by the client); v7 drops the uid.
    pub fn encode(&self, major: Major) -> Vec<u8> {
        let mut b = Vec::with_capacity(
            Self::head_len(major)
                + 8
                + 8 * self.node_ids.len()
                + RPC_TENSOR_SIZE * self.tensors.len(),
        );
        b.extend_from_slice(&self.device.to_le_bytes());
        if major >= Major::V8 {
            b.extend_from_slice(&self.uid.to_le_bytes());
        }
        b.extend_from_slice(&(self.node_ids.len() as u32).to_le_bytes());
        self.node_ids
            .iter()
            .for_each(|id| b.extend_from_slice(&id.to_le_bytes()));
        b.extend_from_slice(&(self.tensors.len() as u32).to_le_bytes());
        self.tensors
            .iter()
            .for_each(|t| b.extend_from_slice(&t.encode()));
        b
    }
}

/// Rebuilds the graph: every tensor reachable from the nodes, validated (`decode_tensor`, plus "data
/// needs a buffer"), each once, sources before users. Rejects unknown ids, node id 0 and dependency
/// cycles (a tensor naming *itself* as a source is allowed: `ggml_cast` does that).
pub fn build_graph(wg: &WireGraph, bufs: &impl BufferLookup) -> Result<Graph, ProtoError> {
    // First occurrence of an id wins, as in the reference.
    let mut by_id: HashMap<u64, usize> = HashMap::with_capacity(wg.tensors.len());
    for (i, t) in wg.tensors.iter().enumerate() {
        if t.id != 0 {
            by_id.entry(t.id).or_insert(i);
        }
    }
    let mut graph = Graph::default();
    // wire index -> position in graph.tensors once finished.
    let mut done: HashMap<usize, usize> = HashMap::new();
    let mut on_stack: HashMap<usize, ()> = HashMap::new();
    let lookup = |id: u64| {
        by_id
            .get(&id)
            .copied()
            .ok_or_else(|| ProtoError::Graph(format!("unknown tensor id {id:#x}")))
    };

    for &node_id in &wg.node_ids {
        if node_id == 0 {
            return Err(ProtoError::Graph("node id 0".into()));
        }
        let root = lookup(node_id)?;
        // Explicit DFS: (wire index, next dependency slot to visit; slot MAX_SRC is view_src).
        let mut stack: Vec<(usize, usize)> = Vec::new();
        if !done.contains_key(&root) {
            stack.push((root, 0));
            on_stack.insert(root, ());
        }
        while let Some(&mut (wi, ref mut slot)) = stack.last_mut() {
            let w = wg
                .tensors
                .get(wi)
                .ok_or_else(|| ProtoError::Graph("index".into()))?;
            if *slot <= MAX_SRC {
                let dep = if *slot < MAX_SRC {
                    w.src.get(*slot).copied().unwrap_or(0)
                } else {
                    w.view_src
                };
                *slot += 1;
                if dep == 0 {
                    continue;
                }
                let di = lookup(dep)?;
                if di == wi || done.contains_key(&di) {
                    continue;
                }
                if on_stack.contains_key(&di) {
                    return Err(ProtoError::Graph(format!(
                        "dependency cycle through tensor id {dep:#x}"
                    )));
                }
                on_stack.insert(di, ());
                stack.push((di, 0));
                continue;
            }
            // All dependencies finished: validate and emit.
            let mut t = decode_tensor(w, bufs)?;
            if t.data.is_none() && w.data != 0 {
                return Err(ProtoError::DataWithoutBuffer);
            }
            if t.data.is_some() && !elements_fit_bytes(&t) {
                return Err(ProtoError::Graph(format!(
                    "tensor '{}' holds {:?} elements in {} bytes (overlapping strides)",
                    t.name,
                    t.ne,
                    t.nbytes().unwrap_or(0)
                )));
            }
            if t.op.is_custom() {
                return Err(ProtoError::Graph(format!(
                    "op {} carries client function pointers",
                    t.op.name()
                )));
            }
            let me = graph.tensors.len();
            for (k, s) in t.src.iter_mut().enumerate() {
                let id = w.src.get(k).copied().unwrap_or(0);
                *s = match id {
                    0 => None,
                    _ => Some(resolve(id, wi, me, &by_id, &done)?),
                };
            }
            t.view_src = match w.view_src {
                0 => None,
                id => Some(resolve(id, wi, me, &by_id, &done)?),
            };
            graph.tensors.push(t);
            done.insert(wi, me);
            on_stack.remove(&wi);
            stack.pop();
        }
        let idx = done
            .get(&root)
            .copied()
            .ok_or_else(|| ProtoError::Graph("unresolved node".into()))?;
        graph.nodes.push(idx);
    }
    Ok(graph)
}

/// Whether the tensor's elements can all have their own bytes: `nelements * type_size / block_size <=
/// nbytes`. Zero or overlapping strides would let a few bytes stand for 2^60 elements, and a kernel
/// would loop over every one of them; with this, work is bounded by buffer sizes (and so by `-m`).
fn elements_fit_bytes(t: &crate::ggml::Tensor) -> bool {
    let count: u128 = t.ne.iter().map(|&n| n as u128).product();
    let need = count * t.typ.type_size() as u128 / t.typ.block_size().max(1) as u128;
    t.nbytes().is_some_and(|n| need <= n as u128)
}

/// Position of dependency `id` of wire tensor `wi` (which will sit at `me`).
fn resolve(
    id: u64,
    wi: usize,
    me: usize,
    by_id: &HashMap<u64, usize>,
    done: &HashMap<usize, usize>,
) -> Result<usize, ProtoError> {
    let di = by_id
        .get(&id)
        .copied()
        .ok_or_else(|| ProtoError::Graph(format!("unknown tensor id {id:#x}")))?;
    if di == wi {
        return Ok(me);
    }
    done.get(&di)
        .copied()
        .ok_or_else(|| ProtoError::Graph(format!("tensor id {id:#x} not built")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::ggml::{Op, TensorFlags};

    struct Buf;
    impl BufferLookup for Buf {
        fn buffer(&self, h: u64) -> Option<(u64, u64)> {
            (h == 1).then_some((0x1000, 4096))
        }
    }

    fn leaf(id: u64, off: u64) -> WireTensor {
        WireTensor {
            id,
            typ: 0,
            buffer: 1,
            ne: [4, 1, 1, 1],
            nb: [4, 16, 16, 16],
            data: 0x1000 + off,
            ..Default::default()
        }
    }

    fn add(id: u64, a: u64, b: u64, off: u64) -> WireTensor {
        let mut t = leaf(id, off);
        t.op = Op::Add as u32;
        t.src[0] = a;
        t.src[1] = b;
        t.flags = TensorFlags::COMPUTE;
        t
    }

    fn appendix_c() -> WireGraph {
        WireGraph {
            device: 0,
            uid: 0,
            node_ids: vec![3],
            tensors: vec![leaf(1, 0), leaf(2, 64), add(3, 1, 2, 128)],
        }
    }

    #[test]
    fn appendix_c_graph_round_trips_and_builds() {
        let mut wg = appendix_c();
        let bytes = wg.encode(Major::V7);
        assert_eq!(bytes.len(), 908);
        let parsed = WireGraph::parse(&bytes, Major::V7).unwrap();
        assert_eq!(parsed, wg);
        // v8 adds the u64 uid after the device.
        wg.uid = 0x1234_5678_9abc;
        let v8 = wg.encode(Major::V8);
        assert_eq!(v8.len(), 916);
        assert_eq!(&v8[4..12], &wg.uid.to_le_bytes());
        assert_eq!(WireGraph::parse(&v8, Major::V8).unwrap(), wg);
        let g = build_graph(&parsed, &Buf).unwrap();
        assert_eq!(g.tensors.len(), 3);
        let n = &g.tensors[g.nodes[0]];
        assert_eq!(n.op, Op::Add);
        assert_eq!(g.tensors[n.src[0].unwrap()].id, 1);
        assert_eq!(g.tensors[n.src[1].unwrap()].id, 2);
        assert_eq!(g.compute_nodes().count(), 1);
    }

    #[test]
    fn parse_rejects_lying_counts() {
        let v7 = Major::V7;
        let mut b = appendix_c().encode(v7);
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(WireGraph::parse(&b, v7).is_err());
        let mut b = appendix_c().encode(v7);
        b[16..20].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(
            WireGraph::parse(&b, v7),
            Err(ProtoError::Short { .. })
        ));
        assert!(WireGraph::parse(&[0; 7], v7).is_err());
        assert!(WireGraph::parse(&[0; 15], Major::V8).is_err());
    }

    #[test]
    fn build_rejects_bad_graphs() {
        let mut wg = appendix_c();
        wg.node_ids = vec![0];
        assert!(build_graph(&wg, &Buf).is_err(), "node id 0");
        let mut wg = appendix_c();
        wg.node_ids = vec![99];
        assert!(build_graph(&wg, &Buf).is_err(), "unknown node");
        let mut wg = appendix_c();
        wg.tensors[2].src[1] = 77;
        assert!(build_graph(&wg, &Buf).is_err(), "unknown source");
        let mut wg = appendix_c();
        wg.tensors[0].src[0] = 3;
        assert!(build_graph(&wg, &Buf).is_err(), "cycle");
        let mut wg = appendix_c();
        wg.tensors[0].buffer = 0;
        assert_eq!(
            build_graph(&wg, &Buf).unwrap_err(),
            ProtoError::DataWithoutBuffer
        );
        let mut wg = appendix_c();
        wg.tensors[2].op = Op::Custom as u32;
        assert!(build_graph(&wg, &Buf).is_err(), "custom op");
        let mut wg = appendix_c();
        wg.tensors[2].data = 0x1000 + 4090;
        assert!(build_graph(&wg, &Buf).is_err(), "out of buffer");
        let mut wg = appendix_c();
        wg.tensors[0].ne = [1 << 20, 1 << 20, 1, 1];
        wg.tensors[0].nb = [0; 4];
        assert!(build_graph(&wg, &Buf).is_err(), "zero strides");
        let mut wg = appendix_c();
        wg.tensors[0].ne = [2, 2, 1, 1];
        wg.tensors[0].nb = [4, 4, 8, 8];
        assert!(build_graph(&wg, &Buf).is_err(), "overlapping rows");
        let mut wg = appendix_c();
        wg.tensors[0].ne = [2, 2, 1, 1];
        wg.tensors[0].nb = [8, 4, 8, 8];
        assert!(
            build_graph(&wg, &Buf).is_ok(),
            "a transposed view (nb0 > nb1) is fine"
        );
    }

    #[test]
    fn self_reference_and_deep_chains() {
        let mut wg = appendix_c();
        wg.tensors[2].src[1] = 3;
        let g = build_graph(&wg, &Buf).unwrap();
        let node = g.nodes[0];
        assert_eq!(g.tensors[node].src[1], Some(node));
        // A 200 000-deep chain builds without recursion.
        let n = 200_000u64;
        let mut tensors = vec![leaf(1, 0)];
        for id in 2..=n {
            tensors.push(add(id, id - 1, 1, 0));
        }
        let g = build_graph(
            &WireGraph {
                device: 0,
                uid: 0,
                node_ids: vec![n],
                tensors,
            },
            &Buf,
        )
        .unwrap();
        assert_eq!(g.tensors.len(), n as usize);
    }
}
