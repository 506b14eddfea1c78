//! The CPU device: host memory and the reference kernels, run on a `-t`-sized thread pool.

mod buffer;
mod exec;
pub mod ops;

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use buffer::{CPU_BUFFER_ALIGN, CpuBuffer};

use super::{Buffer, BufferSet, Device, DeviceCounters, DeviceError, Memory, Tally, Usage};
use crate::ggml::Graph;

pub struct CpuDevice {
    description: String,
    /// What all sessions together may allocate: host RAM less a margin, lowered by `-m`.
    limit: u64,
    /// Bytes and buffers allocated by all sessions.
    used: Arc<Usage>,
    tally: Tally,
    pool: rayon::ThreadPool,
}

impl CpuDevice {
    /// A CPU device with `threads` workers and an optional memory cap in bytes (`-m`; without it the
    /// device still refuses allocations past the host's RAM less a margin, `host::allocation_limit`).
    pub fn new(threads: usize, cap: Option<u64>) -> Result<Self, DeviceError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("ggrpc-cpu-{i}"))
            .build()
            .map_err(|e| DeviceError::op("init", e.to_string()))?;
        Ok(CpuDevice {
            description: cpu_model(),
            limit: super::host::allocation_limit(cap),
            used: Default::default(),
            tally: Tally::default(),
            pool,
        })
    }

    /// Bytes currently allocated on this device.
    pub fn used(&self) -> u64 {
        self.used.bytes()
    }
}

impl Device for CpuDevice {
    fn name(&self) -> &str {
        "CPU"
    }

    fn description(&self) -> String {
        self.description.clone()
    }

    /// Total: what the device may hand out; free: that less what all sessions hold.
    fn memory(&self) -> Memory {
        Memory {
            free: self.limit.saturating_sub(self.used()),
            total: self.limit,
        }
    }

    fn alignment(&self) -> u64 {
        CPU_BUFFER_ALIGN as u64
    }

    fn max_size(&self) -> u64 {
        u64::MAX
    }

    fn alloc(&self, size: usize) -> Option<Arc<dyn Buffer>> {
        super::reserve_and_alloc(&self.used, Some(self.limit), size, |used| {
            CpuBuffer::new(size, used)
        })
    }

    fn copy(
        &self,
        src: &dyn Buffer,
        src_offset: usize,
        dst: &dyn Buffer,
        dst_offset: usize,
        len: usize,
    ) -> Result<bool, DeviceError> {
        let (Some(s), Some(d)) = (
            src.as_any().downcast_ref::<CpuBuffer>(),
            dst.as_any().downcast_ref::<CpuBuffer>(),
        ) else {
            return Ok(false);
        };
        let from = s.ptr_at(src_offset, len)?;
        let to = d.ptr_at(dst_offset, len)?;
        // SAFETY: both ranges were checked against their buffers; `copy` allows overlap.
        unsafe { std::ptr::copy(from, to, len) };
        Ok(true)
    }

    fn check_graph(&self, graph: &Graph) -> Result<(), DeviceError> {
        crate::device::host_kernels::check_graph(graph)
    }

    fn compute(&self, graph: &Graph, buffers: &BufferSet) -> Result<(), DeviceError> {
        self.pool.install(|| {
            with_spinning_workers(|| {
                self.tally
                    .graph(|| exec::run_graph(graph, buffers, &self.tally))
            })
        })
    }

    fn counters(&self) -> DeviceCounters {
        self.tally.snapshot(&self.used)
    }
}

thread_local! {
    /// Whether this thread is running a graph or a spinner (its own, or one it took up while waiting).
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// How long a spinner waits for work before it lets its worker sleep: longer than the serial ops
/// between two matmuls of a decode step, short enough that a spinner stacked where it blocks the
/// graph it waits for (see below) costs little.
const SPIN_IDLE: Duration = Duration::from_micros(200);

/// Runs `f` on this pool worker while the pool's other workers spin, taking each piece of work as it
/// appears, instead of falling asleep between ops and waiting for a futex wake: a decode step runs
/// about 130 matmuls, and ggml's OpenMP threads spin between them the same way.
///
/// A spinner can be taken up by a worker in the middle of other work (rayon runs pending jobs while a
/// join waits). On a thread already running a graph or a spinner it returns at once. It can still
/// land on top of a stolen piece of its own graph, which that graph then waits for while the spinner
/// waits for the graph: so a spinner also gives up after `SPIN_IDLE` without work.
fn with_spinning_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    let outer = BUSY.replace(true);
    let r = rayon::scope(|s| {
        s.spawn_broadcast(|_, _| {
            if BUSY.replace(true) {
                return;
            }
            let mut idle_since = None;
            while !done.load(Ordering::Acquire) {
                if rayon::yield_now() == Some(rayon::Yield::Executed) {
                    idle_since = None;
                } else if idle_since.get_or_insert_with(Instant::now).elapsed() > SPIN_IDLE {
                    break;
                } else {
                    std::hint::spin_loop();
                }
            }
            BUSY.set(false);
        });
        let r = f();
        done.store(true, Ordering::Release);
        r
    });
    BUSY.set(outer);
    r
}

/// The CPU model name from /proc/cpuinfo, as the reference banner shows it.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::GraphCounts;
    use crate::ggml::{DataRef, GgmlType, Op, Tensor, TensorFlags};

    #[test]
    fn without_a_cap_allocations_stop_short_of_the_hosts_memory() {
        let dev = CpuDevice::new(1, None).unwrap();
        let physical = crate::device::host::physical_memory();
        let m = dev.memory();
        assert!(m.total < physical && m.total > physical / 2, "{m:?}");
        assert_eq!(m.free, m.total);
        // Refused before anything is allocated (nothing is committed).
        assert!(dev.alloc(m.total as usize + 1).is_none());
        assert_eq!(dev.used(), 0);
        let b = dev.alloc(1 << 20).unwrap();
        assert_eq!(dev.memory().free, m.total - (1 << 20));
        // Whatever is held counts: the next allocation may take only the rest.
        assert!(dev.alloc((m.total - (1 << 20)) as usize + 1).is_none());
        drop(b);
        assert_eq!(dev.memory().free, m.total);
        let capped = CpuDevice::new(1, Some(1 << 20)).unwrap();
        assert_eq!(capped.memory().total, 1 << 20);
    }

    /// `a + a`, then `2 * (a + a)` through a view, plus a node without COMPUTE: two nodes computed.
    fn graph(dev: &CpuDevice) -> (Graph, BufferSet) {
        let buf = dev.alloc(64).unwrap();
        buf.write(0, bytemuck::cast_slice(&[1f32, 2.0, 3.0, 4.0][..]))
            .unwrap();
        let buffers = BufferSet::from([(1, buf)]);
        let at = |offset| Some(DataRef { buffer: 1, offset });
        let tensor = |op, src: &[usize], offset, compute: bool| {
            let mut t = Tensor::new(GgmlType::F32, [4, 1, 1, 1]);
            t.op = op;
            t.data = at(offset);
            t.flags = if compute { TensorFlags::COMPUTE } else { 0 };
            for (k, &s) in src.iter().enumerate() {
                t.src[k] = Some(s);
            }
            t
        };
        let mut scale = tensor(Op::Scale, &[2], 32, true);
        scale.op_params[0] = 2f32.to_bits() as i32;
        let graph = Graph {
            tensors: vec![
                tensor(Op::None, &[], 0, false),
                tensor(Op::Add, &[0, 0], 16, true),
                tensor(Op::View, &[1], 16, true),
                scale,
                tensor(Op::Add, &[3, 3], 48, false),
            ],
            nodes: vec![1, 2, 3, 4],
        };
        (graph, buffers)
    }

    #[test]
    fn counts_graphs_nodes_and_live_buffers() {
        let dev = CpuDevice::new(1, None).unwrap();
        let (graph, buffers) = graph(&dev);
        let extra = dev.alloc(1000).unwrap();
        let c = dev.counters();
        assert_eq!((c.bytes_allocated, c.buffers), (1064, 2));
        assert_eq!(c.last_graph, GraphCounts::default());

        dev.compute(&graph, &buffers).unwrap();
        dev.compute(&graph, &buffers).unwrap();
        let mut out = [0f32; 4];
        buffers[&1]
            .read(32, bytemuck::cast_slice_mut(&mut out[..]))
            .unwrap();
        assert_eq!(out, [4.0, 8.0, 12.0, 16.0], "the counted nodes ran");
        // A graph that fails (its buffer missing) is not counted.
        let err = dev.compute(&graph, &BufferSet::new());
        assert!(err.is_err());
        drop(extra);
        let c = dev.counters();
        let last = GraphCounts {
            nodes: 2,
            ..Default::default()
        };
        let want = DeviceCounters {
            bytes_allocated: 64,
            buffers: 1,
            graphs: 2,
            nodes_computed: 4,
            last_graph: last,
            ..Default::default()
        };
        assert_eq!(c, want);
        drop(buffers);
        assert_eq!(
            (dev.counters().bytes_allocated, dev.counters().buffers),
            (0, 0)
        );
    }

    /// Sessions share one pool: graphs computed from several threads at once, each op split across
    /// the workers, all finish with the right results (a spinner that ran another session's graph
    /// or landed on its own graph's thread must not stall anyone).
    #[test]
    fn concurrent_graphs_on_spinning_workers_all_finish() {
        let dev = Arc::new(CpuDevice::new(2, None).unwrap());
        let n = 64usize;
        let sessions: Vec<_> = (0..4)
            .map(|s| {
                let dev = dev.clone();
                std::thread::spawn(move || {
                    let bytes = 4 * n * n;
                    let buf = dev.alloc(3 * bytes).unwrap();
                    let a = vec![1f32; n * n];
                    let b = vec![(s + 1) as f32; n * n];
                    buf.write(0, bytemuck::cast_slice(&a[..])).unwrap();
                    buf.write(bytes, bytemuck::cast_slice(&b[..])).unwrap();
                    let buffers = BufferSet::from([(1, buf)]);
                    let tensor = |op, offset| {
                        let mut t = Tensor::new(GgmlType::F32, [n, n, 1, 1]);
                        t.op = op;
                        t.data = Some(DataRef { buffer: 1, offset });
                        t
                    };
                    let mut mm = tensor(Op::MulMat, 2 * bytes);
                    mm.src[0] = Some(0);
                    mm.src[1] = Some(1);
                    mm.flags = TensorFlags::COMPUTE;
                    let graph = Graph {
                        tensors: vec![tensor(Op::None, 0), tensor(Op::None, bytes), mm],
                        nodes: vec![2],
                    };
                    for _ in 0..50 {
                        dev.compute(&graph, &buffers).unwrap();
                    }
                    let mut out = vec![0f32; n * n];
                    buffers[&1]
                        .read(2 * bytes, bytemuck::cast_slice_mut(&mut out[..]))
                        .unwrap();
                    let want = (n * (s + 1)) as f32;
                    assert!(out.iter().all(|&v| v == want), "session {s}");
                })
            })
            .collect();
        for s in sessions {
            s.join().unwrap();
        }
        assert_eq!(dev.counters().graphs, 200);
    }
}
