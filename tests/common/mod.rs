//! Starts a real server on 127.0.0.1 with an OS-chosen port, in-process, for one test.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use ggrpc::client::Client;
use ggrpc::client::RemoteBuffer;
use ggrpc::device::{
    Buffer, BufferSet, Device, DeviceCounters, DeviceError, GraphCache, Memory, cpu::CpuDevice,
};
use ggrpc::ggml::Graph;
use ggrpc::proto::Major;
use ggrpc::server::cache::Cache;
use ggrpc::server::{Limits, Server, ServerConfig, Shared};

pub struct TestServer {
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub cpu: Arc<CpuDevice>,
    shared: Arc<Shared>,
}

#[derive(Default)]
pub struct Options {
    pub mem_cap: Option<u64>,
    pub cache_dir: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub max_pending: Option<usize>,
    pub limits: Option<Limits>,
    /// The protocol major (default: 8, as the binary's default).
    pub major: Option<Major>,
    /// Refuse COMM_INIT (`--no-comm`).
    pub no_comm: bool,
    /// Serves this device instead of the CPU device itself (a test wrapper around it); `TestServer::cpu`
    /// is still the CPU device underneath.
    pub wrap_cpu: Option<WrapCpu>,
}

/// Builds the served device around the CPU device (`Options::wrap_cpu`).
pub type WrapCpu = Box<dyn FnOnce(Arc<CpuDevice>) -> Arc<dyn Device>>;

pub fn start() -> TestServer {
    start_with(Options::default())
}

pub fn start_with(o: Options) -> TestServer {
    let cpu = Arc::new(CpuDevice::new(2, o.mem_cap).expect("cpu device"));
    let device: Arc<dyn Device> = match o.wrap_cpu {
        Some(wrap) => wrap(cpu.clone()),
        None => cpu.clone(),
    };
    let devices = vec![device];
    let cache = o
        .cache_dir
        .map(|d| Arc::new(Cache::open(d).expect("cache dir")));
    let mut shared = Shared::new(devices, cache).with_major(o.major.unwrap_or(Major::V8));
    shared.comm.enabled = !o.no_comm;
    if let Some(l) = o.limits {
        shared.limits = l;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let config = ServerConfig {
        max_connections: o.max_connections.unwrap_or(64),
        max_pending: o.max_pending.unwrap_or(64),
    };
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let server = Server::bind("127.0.0.1:0", shared, config)
                .await
                .expect("bind");
            tx.send((server.local_addr().expect("addr"), server.shared().clone()))
                .expect("send addr");
            server.run(stop_rx).await;
        });
    });
    let (addr, shared) = rx.recv().expect("server address");
    TestServer {
        addr,
        stop,
        thread: Some(thread),
        cpu,
        shared,
    }
}

/// The test's side of `start_gated`: what the device reports, and the switch that lets a compute go.
pub struct Gate {
    events: mpsc::Receiver<&'static str>,
    release: mpsc::Sender<()>,
}

impl Gate {
    /// Waits (up to two minutes) for the device's next event, which must be `what`: `started` once
    /// the server hands it a graph, `finished` when that compute has returned.
    pub fn wait(&self, what: &str) {
        let got = self.events.recv_timeout(Duration::from_secs(120));
        assert_eq!(got, Ok(what), "device event");
    }

    /// Lets the waiting (or the next) compute run.
    pub fn release(&self) {
        self.release.send(()).expect("gated device is gone");
    }
}

/// A CPU device whose graph computations, once started, wait until the test releases them, and that
/// reports when each one starts and ends: a compute lasts as long as the test decides, whatever the
/// machine's speed or load.
struct GatedCpu {
    inner: Arc<CpuDevice>,
    events: mpsc::Sender<&'static str>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl GatedCpu {
    fn gated<T>(&self, run: impl FnOnce() -> T) -> T {
        let _ = self.events.send("started");
        // A dropped `Gate` (a test that failed early) lets the compute go, so the server can shut down.
        let _ = self
            .release
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recv_timeout(Duration::from_secs(300));
        let out = run();
        let _ = self.events.send("finished");
        out
    }
}

impl Device for GatedCpu {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn description(&self) -> String {
        self.inner.description()
    }
    fn memory(&self) -> Memory {
        self.inner.memory()
    }
    fn alignment(&self) -> u64 {
        self.inner.alignment()
    }
    fn max_size(&self) -> u64 {
        self.inner.max_size()
    }
    fn alloc(&self, size: usize) -> Option<Arc<dyn Buffer>> {
        self.inner.alloc(size)
    }
    fn copy(
        &self,
        src: &dyn Buffer,
        src_offset: usize,
        dst: &dyn Buffer,
        dst_offset: usize,
        len: usize,
    ) -> Result<bool, DeviceError> {
        self.inner.copy(src, src_offset, dst, dst_offset, len)
    }
    fn check_graph(&self, graph: &Graph) -> Result<(), DeviceError> {
        self.inner.check_graph(graph)
    }
    fn compute(&self, graph: &Graph, buffers: &BufferSet) -> Result<(), DeviceError> {
        self.gated(|| self.inner.compute(graph, buffers))
    }
    fn compute_cached(
        &self,
        graph: &Graph,
        buffers: &BufferSet,
        cache: &GraphCache,
    ) -> Result<(), DeviceError> {
        self.gated(|| self.inner.compute_cached(graph, buffers, cache))
    }
    fn counters(&self) -> DeviceCounters {
        self.inner.counters()
    }
}

/// A server whose CPU device computes only when the test releases it (see `Gate`). Bind it as
/// `let (s, gate) = ...`: `gate` is then dropped first, which lets a held compute finish before the
/// server shuts down.
pub fn start_gated(mut o: Options) -> (TestServer, Gate) {
    let (events_tx, events) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    o.wrap_cpu = Some(Box::new(move |cpu| {
        Arc::new(GatedCpu {
            inner: cpu,
            events: events_tx,
            release: Mutex::new(release_rx),
        })
    }));
    (start_with(o), Gate { events, release })
}

impl TestServer {
    /// The server's shared state (its metrics, for tests that read them).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr).expect("connect")
    }

    /// Waits (up to 30 s: a loaded machine may be slow to run the session's teardown) until the CPU
    /// device's allocations drop to `bytes` (sessions free asynchronously).
    pub fn wait_used(&self, bytes: u64) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.cpu.used() == bytes {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asserts the server closes `c`'s connection (a read sees EOF or a reset) within 30 s: generous for a
/// loaded machine, and free when the close comes at once. `Client::is_closed` also answers `true` when
/// the read times out, so the time the read took tells a close from a connection left open.
pub fn assert_closed(c: &mut Client) {
    const WAIT: Duration = Duration::from_secs(30);
    c.set_read_timeout(Some(WAIT));
    let started = std::time::Instant::now();
    let closed = c.is_closed();
    let took = started.elapsed();
    assert!(
        closed && took < WAIT - Duration::from_secs(1),
        "server should have closed this connection (read returned after {took:?})"
    );
}

/// A contiguous f32 vector of `n` elements at byte `offset` of `buf`.
pub fn f32_at(buf: ggrpc::client::RemoteBuffer, offset: u64, n: u32) -> ggrpc::proto::WireTensor {
    ggrpc::proto::WireTensor {
        id: 1,
        typ: 0,
        buffer: buf.handle,
        ne: [n, 1, 1, 1],
        nb: [4, 4 * n, 4 * n, 4 * n],
        data: buf.base + offset,
        ..Default::default()
    }
}

/// GET_TENSOR / MEMSET-style payload: `tensor | offset | size`.
pub fn tensor_offset_size(t: &ggrpc::proto::WireTensor, offset: u64, size: u64) -> Vec<u8> {
    let mut p = t.encode().to_vec();
    p.extend_from_slice(&offset.to_le_bytes());
    p.extend_from_slice(&size.to_le_bytes());
    p
}

/// SET_TENSOR payload: `tensor | cache flag 0 | offset | data`.
pub fn set_tensor_payload(t: &ggrpc::proto::WireTensor, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut p = t.encode().to_vec();
    p.push(0);
    p.extend_from_slice(&offset.to_le_bytes());
    p.extend_from_slice(data);
    p
}

/// Runs `attack` on a fresh connection (after HELLO, with one 4 KiB buffer), checks that connection is
/// closed, and that a bystander session's data and a brand-new client are fine.
pub fn closes_only_itself(name: &str, attack: impl FnOnce(&mut Client, RemoteBuffer)) {
    let s = start();
    let mut bystander = s.client();
    let bb = bystander.alloc(0, 4096).unwrap();
    let bt = f32_at(bb, 0, 4);
    bystander.set_f32(&bt, &[1.0, 2.0, 3.0, 4.0]).unwrap();

    let mut evil = s.client();
    let buf = evil.alloc(0, 4096).unwrap();
    attack(&mut evil, buf);
    assert_closed(&mut evil);

    assert_eq!(
        bystander.get_f32(&bt).unwrap(),
        vec![1.0, 2.0, 3.0, 4.0],
        "{name}: bystander data"
    );
    let mut fresh = s.client();
    assert_eq!(fresh.device_count().unwrap(), 1, "{name}: fresh client");
    drop(evil);
    assert!(s.wait_used(4096), "{name}: attacker's buffers freed");
}

/// `a + b` on 4 floats in `buf`: tensors 1, 2 are inputs, 3 the sum (the one node).
pub fn add_graph(buf: RemoteBuffer) -> (ggrpc::client::GraphBuilder, ggrpc::proto::WireGraph) {
    use ggrpc::ggml::{GgmlType, Op};
    let mut g = ggrpc::client::GraphBuilder::new(buf, 64);
    let a = g.input(GgmlType::F32, [4, 1, 1, 1]);
    let b = g.input(GgmlType::F32, [4, 1, 1, 1]);
    let sum = g.op(Op::Add, GgmlType::F32, [4, 1, 1, 1], &[a, b], [0; 16]);
    let wg = g.graph(&[sum]);
    (g, wg)
}

/// `layers` chained 512x512 f32 MUL_MATs (134 M multiply-adds each) ping-ponging between two tensors of
/// a new 3 MiB buffer of `c`: a graph slow enough to still be running while a test does something else.
pub fn slow_graph(c: &mut Client, layers: u64) -> ggrpc::proto::WireGraph {
    use ggrpc::ggml::{Op, TensorFlags};
    use ggrpc::proto::WireTensor;
    let d = 512u32;
    let bytes = u64::from(d * d * 4);
    let buf = c.alloc(0, 3 * bytes).unwrap();
    let at = |slot: u64, id: u64| WireTensor {
        id,
        buffer: buf.handle,
        ne: [d, d, 1, 1],
        nb: [4, 4 * d, 4 * d * d, 4 * d * d],
        data: buf.base + slot * bytes,
        ..Default::default()
    };
    let mut tensors = vec![at(0, 1), at(1, 2)];
    for id in 3..layers + 3 {
        tensors.push(WireTensor {
            op: Op::MulMat as u32,
            flags: TensorFlags::COMPUTE,
            src: [1, id - 1, 0, 0, 0, 0, 0, 0, 0, 0],
            ..at(1 + id % 2, id)
        });
    }
    ggrpc::proto::WireGraph {
        device: 0,
        uid: 0,
        node_ids: (3..layers + 3).collect(),
        tensors,
    }
}

/// Runs `wg` once and returns how long it took (GRAPH_COMPUTE has no reply: a DEVICE_COUNT behind it
/// answers when it is done).
pub fn time_graph(c: &mut Client, wg: &ggrpc::proto::WireGraph) -> Duration {
    let started = std::time::Instant::now();
    c.graph_compute(0, wg).unwrap();
    c.device_count().unwrap();
    started.elapsed()
}
