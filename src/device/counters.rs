//! Per-device counters for the metrics endpoint: relaxed atomics bumped where the work happens, and
//! the per-graph numbers of the graph the calling thread is computing.
//!
//! A graph runs on one thread from planning to the end (as wgpu error scopes already require), so
//! its own numbers are gathered in a thread-local: concurrent sessions never mix theirs. Scopes nest
//! (a rayon worker waiting inside a kernel may run another session's whole graph) and restore the
//! outer graph's numbers when they end.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Cumulative counters since the device opened (read by the metrics endpoint).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Bytes currently allocated in live buffers (a gauge; includes reservations being allocated).
    pub bytes_allocated: u64,
    /// Live buffers (a gauge).
    pub buffers: u64,
    /// Graphs computed to the end (`compute` and `compute_cached` calls that returned `Ok`).
    pub graphs: u64,
    /// Compute nodes run, natively or not; nodes without the COMPUTE flag and views are not.
    pub nodes_computed: u64,
    /// Nodes a GPU device ran through the CPU kernels inside the server.
    pub nodes_fallback: u64,
    /// GPU compute dispatches: graphs' kernels and non-zero buffer fills (0 on the CPU device).
    pub dispatches: u64,
    /// GPU queue submissions (kernel batches, readback copies, fills, device-side copies).
    pub submits: u64,
    /// Host waits on GPU-to-host data: one per staging buffer mapped (GET_TENSOR reads, fallback
    /// downloads, ROPE positions the host has no copy of). A graph's index-flag word is mapped with
    /// the graph's final fence, which the graph waits for anyway, and is not one.
    pub readbacks: u64,
    /// The same numbers for the most recent graph that ran to the end.
    pub last_graph: GraphCounts,
}

/// What one graph did (or, added to a `Tally`, one piece of work).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraphCounts {
    pub nodes: u64,
    pub fallback: u64,
    pub dispatches: u64,
    pub submits: u64,
    pub readbacks: u64,
}

impl GraphCounts {
    fn add(&mut self, d: &GraphCounts) {
        self.nodes += d.nodes;
        self.fallback += d.fallback;
        self.dispatches += d.dispatches;
        self.submits += d.submits;
        self.readbacks += d.readbacks;
    }
}

/// Bytes and buffers live on one device. Bytes are reserved by `reserve_and_alloc` (against the
/// `-m` cap); each buffer counts itself when created and gives both back when dropped.
#[derive(Debug, Default)]
pub struct Usage {
    pub(crate) bytes: AtomicU64,
    buffers: AtomicU64,
}

impl Usage {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn buffers(&self) -> u64 {
        self.buffers.load(Ordering::Relaxed)
    }

    /// A buffer of reserved bytes now exists.
    pub(crate) fn buffer_created(&self) {
        self.buffers.fetch_add(1, Ordering::Relaxed);
    }

    /// A buffer of `len` bytes is gone.
    pub(crate) fn buffer_dropped(&self, len: u64) {
        self.bytes.fetch_sub(len, Ordering::Relaxed);
        self.buffers.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// The numbers of the graph this thread is computing, if any.
    static CURRENT: Cell<Option<GraphCounts>> = const { Cell::new(None) };
}

/// A device's cumulative work counters and its last graph's numbers.
#[derive(Debug, Default)]
pub struct Tally {
    graphs: AtomicU64,
    nodes: AtomicU64,
    fallback: AtomicU64,
    dispatches: AtomicU64,
    submits: AtomicU64,
    readbacks: AtomicU64,
    /// Written once per graph; a lock so that the five numbers are always one graph's.
    last: Mutex<GraphCounts>,
}

impl Tally {
    /// Counts work done: in the device totals, and in the current graph's numbers when this thread
    /// is computing one.
    pub fn add(&self, d: GraphCounts) {
        for (c, v) in [
            (&self.nodes, d.nodes),
            (&self.fallback, d.fallback),
            (&self.dispatches, d.dispatches),
            (&self.submits, d.submits),
            (&self.readbacks, d.readbacks),
        ] {
            if v != 0 {
                c.fetch_add(v, Ordering::Relaxed);
            }
        }
        CURRENT.with(|c| {
            if let Some(mut g) = c.get() {
                g.add(&d);
                c.set(Some(g));
            }
        });
    }

    /// Runs one graph's computation `f`, gathering what it does as that graph's numbers; a graph
    /// that returns `Ok` counts as computed and becomes the last graph.
    pub fn graph<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.graph_counts(f).map(|(out, _)| out)
    }

    /// `graph`, also returning the graph's own numbers (for its log line).
    pub fn graph_counts<T, E>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<(T, GraphCounts), E> {
        let scope = Scope(CURRENT.replace(Some(GraphCounts::default())));
        let out = f();
        let mine = CURRENT.get().unwrap_or_default();
        drop(scope);
        let out = out?;
        self.graphs.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last.lock() {
            *last = mine;
        }
        Ok((out, mine))
    }

    /// Everything, with the buffer gauges from `usage`.
    pub fn snapshot(&self, usage: &Usage) -> DeviceCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DeviceCounters {
            bytes_allocated: usage.bytes(),
            buffers: usage.buffers(),
            graphs: get(&self.graphs),
            nodes_computed: get(&self.nodes),
            nodes_fallback: get(&self.fallback),
            dispatches: get(&self.dispatches),
            submits: get(&self.submits),
            readbacks: get(&self.readbacks),
            last_graph: self.last.lock().map(|g| *g).unwrap_or_default(),
        }
    }
}

/// Restores the enclosing graph's numbers when a graph scope ends, also by unwinding.
struct Scope(Option<GraphCounts>);

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.set(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(nodes: u64, readbacks: u64) -> GraphCounts {
        GraphCounts {
            nodes,
            readbacks,
            ..Default::default()
        }
    }

    #[test]
    fn graph_scopes_nest_and_work_outside_graphs_counts_in_totals_only() {
        let t = Tally::default();
        t.add(one(0, 1)); // a GET_TENSOR read, no graph
        t.graph(|| {
            t.add(one(2, 0));
            // Another session's graph run nested on this thread (rayon work stealing).
            t.graph(|| {
                t.add(one(5, 1));
                Ok::<_, ()>(())
            })?;
            assert_eq!(t.snapshot(&Usage::default()).last_graph, one(5, 1));
            t.add(one(1, 1));
            Ok::<_, ()>(())
        })
        .unwrap();
        // A failed graph's work counts in the totals; it is neither computed nor the last graph.
        let failed = t.graph(|| {
            t.add(one(7, 0));
            Err::<(), _>(())
        });
        assert_eq!(failed, Err(()));
        let c = t.snapshot(&Usage::default());
        assert_eq!(
            c.last_graph,
            one(3, 1),
            "the outer graph, without the nested one"
        );
        assert_eq!((c.graphs, c.nodes_computed, c.readbacks), (2, 15, 3));
        t.add(one(1, 0));
        assert_eq!(t.snapshot(&Usage::default()).last_graph, one(3, 1));
        let (v, mine) = t
            .graph_counts(|| {
                t.add(one(4, 2));
                Ok::<_, ()>(9)
            })
            .unwrap();
        assert_eq!((v, mine), (9, one(4, 2)));
        assert_eq!(t.snapshot(&Usage::default()).last_graph, one(4, 2));
    }
}
