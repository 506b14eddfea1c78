//! Starts a real server on 127.0.0.1 with an OS-chosen port, in-process, for one test.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ggrpc::client::Client;
use ggrpc::device::{Device, cpu::CpuDevice};
use ggrpc::server::cache::Cache;
use ggrpc::server::{Server, ServerConfig, Shared};

pub struct TestServer {
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub cpu: Arc<CpuDevice>,
}

#[derive(Default)]
pub struct Options {
    pub mem_cap: Option<u64>,
    pub cache_dir: Option<PathBuf>,
    pub max_connections: Option<usize>,
}

pub fn start() -> TestServer {
    start_with(Options::default())
}

pub fn start_with(o: Options) -> TestServer {
    let cpu = Arc::new(CpuDevice::new(2, o.mem_cap).expect("cpu device"));
    let devices: Vec<Arc<dyn Device>> = vec![cpu.clone()];
    let cache = o
        .cache_dir
        .map(|d| Arc::new(Cache::open(d).expect("cache dir")));
    let shared = Shared::new(devices, cache);
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let config = ServerConfig {
        max_connections: o.max_connections.unwrap_or(64),
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
            tx.send(server.local_addr().expect("addr"))
                .expect("send addr");
            server.run(stop_rx).await;
        });
    });
    let addr = rx.recv().expect("server address");
    TestServer {
        addr,
        stop,
        thread: Some(thread),
        cpu,
    }
}

impl TestServer {
    pub fn client(&self) -> Client {
        Client::connect(self.addr).expect("connect")
    }

    /// Waits until the CPU device's allocations drop to `bytes` (sessions free asynchronously).
    pub fn wait_used(&self, bytes: u64) -> bool {
        for _ in 0..200 {
            if self.cpu.used() == bytes {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
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

/// Asserts the server closed `c`'s connection (reads see EOF) within a second.
pub fn assert_closed(c: &mut Client) {
    c.set_read_timeout(Some(Duration::from_secs(5)));
    assert!(c.is_closed(), "server should have closed this connection");
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
