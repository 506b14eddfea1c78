//! The graphs a session keeps for GRAPH_RECOMPUTE. v7: the last graph of each device. v8: every graph
//! the client sent with a uid, per device, cleared in lockstep with the client at `GRAPH_CACHE_MAX`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::SessionError;
use crate::device::{BufferSet, GraphCache};
use crate::ggml::Graph;
use crate::proto::{GRAPH_CACHE_MAX, Major};

/// Stored graphs whose device state (a GPU device's plan and scratch) is kept; older ones drop it
/// and are planned again if recomputed. Bounds device memory while the client may hold 1024 uids.
const WARM_PLANS: usize = 8;

/// A graph kept for GRAPH_RECOMPUTE, with the buffers it needs kept alive.
#[derive(Clone)]
pub struct StoredGraph {
    pub graph: Arc<Graph>,
    pub buffers: Arc<BufferSet>,
    /// What the device derived from the graph (see `Device::compute_cached`).
    pub cache: Arc<GraphCache>,
    /// Wire size of the GRAPH_COMPUTE payload, what the store's byte bound counts.
    pub wire_bytes: usize,
}

#[derive(Default)]
struct DeviceGraphs {
    /// `None` marks a graph invalidated by FREE_BUFFER: the uid still counts towards
    /// `GRAPH_CACHE_MAX` (the client's record keeps it too), but recomputing it closes the session.
    by_key: HashMap<u64, Option<StoredGraph>>,
    /// Keys with a warm device cache, most recent last.
    warm: VecDeque<u64>,
}

pub struct GraphStore {
    major: Major,
    devices: Vec<DeviceGraphs>,
    /// Sum of `wire_bytes` over the live graphs, and its bound.
    bytes: usize,
    max_bytes: usize,
}

impl GraphStore {
    pub fn new(major: Major, n_devices: usize, max_bytes: u64) -> Self {
        GraphStore {
            major,
            devices: (0..n_devices).map(|_| DeviceGraphs::default()).collect(),
            bytes: 0,
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        }
    }

    /// Under which key a GRAPH_COMPUTE with `uid` is kept: v7 keeps the device's last graph (key 0);
    /// v8 keeps graphs with a uid and never uid 0. Called before the graph runs: at the cache's
    /// limit a new uid clears the device's graphs first, exactly where the reference client does.
    pub fn key_for_compute(&mut self, device: usize, uid: u64) -> Option<u64> {
        if self.major < Major::V8 {
            return Some(0);
        }
        if uid == 0 {
            return None;
        }
        let clear = self
            .devices
            .get(device)
            .is_some_and(|d| d.by_key.len() >= GRAPH_CACHE_MAX);
        if clear {
            self.clear_device(device);
        }
        Some(uid)
    }

    fn clear_device(&mut self, device: usize) {
        if let Some(d) = self.devices.get_mut(device) {
            let freed: usize = d.by_key.values().flatten().map(|g| g.wire_bytes).sum();
            self.bytes -= freed;
            d.by_key.clear();
            d.warm.clear();
        }
    }

    /// Keeps `g` under `key` (replacing what was there). Past the byte bound the session closes: the
    /// client may recompute any graph it sent, so none can be dropped silently.
    pub fn insert(&mut self, device: usize, key: u64, g: StoredGraph) -> Result<(), SessionError> {
        let Some(d) = self.devices.get_mut(device) else {
            return Err(SessionError::BadDevice(device as u32));
        };
        let old = d.by_key.remove(&key).flatten().map_or(0, |g| g.wire_bytes);
        self.bytes -= old;
        if self.bytes.saturating_add(g.wire_bytes) > self.max_bytes {
            return Err(SessionError::Protocol(format!(
                "stored graphs would exceed {} bytes (--max-graph-cache-bytes)",
                self.max_bytes
            )));
        }
        self.bytes += g.wire_bytes;
        d.by_key.insert(key, Some(g));
        Self::touch(d, key);
        Ok(())
    }

    /// Marks `key` most recently used; the device state of graphs past `WARM_PLANS` is dropped.
    fn touch(d: &mut DeviceGraphs, key: u64) {
        d.warm.retain(|k| *k != key);
        d.warm.push_back(key);
        while d.warm.len() > WARM_PLANS {
            let Some(cold) = d.warm.pop_front() else {
                break;
            };
            if let Some(Some(g)) = d.by_key.get(&cold)
                && let Ok(mut slot) = g.cache.0.lock()
            {
                *slot = None;
            }
        }
    }

    /// The graph GRAPH_RECOMPUTE names (v7: the device's last one).
    pub fn get(&mut self, device: usize, uid: u64) -> Result<StoredGraph, SessionError> {
        let key = if self.major < Major::V8 { 0 } else { uid };
        let d = self
            .devices
            .get_mut(device)
            .ok_or(SessionError::BadDevice(device as u32))?;
        let g = d
            .by_key
            .get(&key)
            .cloned()
            .flatten()
            .ok_or(SessionError::NoStoredGraph {
                device: device as u32,
                uid,
            })?;
        Self::touch(d, key);
        Ok(g)
    }

    /// FREE_BUFFER: every stored graph may point into the freed buffer. Entries stay (as tombstones)
    /// so the count the v8 client mirrors is unchanged.
    pub fn invalidate_all(&mut self) {
        for d in &mut self.devices {
            d.by_key.values_mut().for_each(|g| *g = None);
            d.warm.clear();
        }
        self.bytes = 0;
    }

    /// Graphs kept for `device` (tombstones included).
    #[cfg(test)]
    pub fn len(&self, device: usize) -> usize {
        self.devices.get(device).map_or(0, |d| d.by_key.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn graph(bytes: usize) -> StoredGraph {
        StoredGraph {
            graph: Arc::default(),
            buffers: Arc::default(),
            cache: Arc::default(),
            wire_bytes: bytes,
        }
    }

    #[test]
    fn v7_keeps_the_last_graph_per_device() {
        let mut s = GraphStore::new(Major::V7, 2, 1 << 20);
        assert_eq!(s.key_for_compute(0, 99), Some(0));
        s.insert(0, 0, graph(10)).unwrap();
        s.insert(0, 0, graph(20)).unwrap();
        assert_eq!(s.get(0, 0).unwrap().wire_bytes, 20);
        assert!(s.get(1, 0).is_err());
        s.invalidate_all();
        assert!(s.get(0, 0).is_err());
    }

    #[test]
    fn v8_clears_at_the_reference_limit() {
        let mut s = GraphStore::new(Major::V8, 1, 1 << 30);
        assert_eq!(s.key_for_compute(0, 0), None, "uid 0 is never cached");
        for uid in 1..=GRAPH_CACHE_MAX as u64 {
            let k = s.key_for_compute(0, uid).unwrap();
            s.insert(0, k, graph(1)).unwrap();
        }
        assert_eq!(s.len(0), GRAPH_CACHE_MAX);
        assert!(s.get(0, 1).is_ok());
        // The 1025th uid clears first, as the client does before recording it.
        let k = s.key_for_compute(0, 5000).unwrap();
        s.insert(0, k, graph(1)).unwrap();
        assert_eq!(s.len(0), 1);
        assert!(s.get(0, 1).is_err());
        assert!(s.get(0, 5000).is_ok());
        assert_eq!(s.bytes, 1);
    }

    #[test]
    fn free_buffer_leaves_tombstones_that_still_count() {
        let mut s = GraphStore::new(Major::V8, 1, 1 << 30);
        s.insert(0, 7, graph(5)).unwrap();
        s.invalidate_all();
        assert_eq!(s.len(0), 1);
        assert!(matches!(
            s.get(0, 7),
            Err(SessionError::NoStoredGraph { uid: 7, .. })
        ));
        s.insert(0, 7, graph(5)).unwrap();
        assert!(s.get(0, 7).is_ok());
    }

    #[test]
    fn bytes_are_bounded_and_old_plans_go_cold() {
        let mut s = GraphStore::new(Major::V8, 1, 100);
        s.insert(0, 1, graph(60)).unwrap();
        assert!(s.insert(0, 2, graph(60)).is_err());
        s.insert(0, 1, graph(90)).unwrap(); // replacing frees the old bytes
        let mut s = GraphStore::new(Major::V8, 1, 1 << 20);
        let first = graph(1);
        *first.cache.0.lock().unwrap() = Some(Box::new(1u8));
        s.insert(0, 1, first.clone()).unwrap();
        for uid in 2..=WARM_PLANS as u64 {
            s.insert(0, uid, graph(1)).unwrap();
        }
        assert!(first.cache.0.lock().unwrap().is_some());
        s.get(0, 1).unwrap(); // used again: stays warm
        s.insert(0, 100, graph(1)).unwrap();
        assert!(first.cache.0.lock().unwrap().is_some());
        s.insert(0, 101, graph(1)).unwrap();
        s.insert(0, 102, graph(1)).unwrap();
        for uid in 103..110 {
            s.insert(0, uid, graph(1)).unwrap();
        }
        assert!(first.cache.0.lock().unwrap().is_none(), "evicted plan");
        assert!(s.get(0, 1).is_ok(), "the graph itself stays");
    }
}
