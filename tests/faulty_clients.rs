//! Clients that misbehave at scale: abort uploads by the thousand, send garbage, stay silent, or vanish in
//! the middle of a computation. Others keep being served and every resource comes back.
//! The tests in this file run one at a time: the resident-memory check must not see the others.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ggrpc::client::{Client, GraphBuilder};
use ggrpc::ggml::{GgmlType, Op};
use ggrpc::proto::Command;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's resident set (the server runs in-process), in bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Connects, allocates 1 MiB, declares a 1 MiB SET_TENSOR and disconnects after half of it.
fn abort_upload(s: &common::TestServer) {
    let mut c = s.client();
    let b = c.alloc(0, 1 << 20).unwrap();
    let t = common::f32_at(b, 0, 1 << 18);
    let mut frame = vec![Command::SetTensor as u8];
    frame.extend_from_slice(&((305 + (1u64 << 20)).to_le_bytes()));
    frame.extend_from_slice(&common::set_tensor_payload(&t, 0, &vec![0x5a; 1 << 19]));
    c.send_bytes(&frame).unwrap();
}

#[test]
#[cfg(target_os = "linux")]
fn a_thousand_aborted_uploads_leave_memory_at_baseline() {
    let _g = serial();
    let s = common::start();
    for _ in 0..100 {
        abort_upload(&s);
    }
    assert!(s.wait_used(0));
    let baseline = rss();
    for _ in 0..1000 {
        abort_upload(&s);
    }
    assert!(s.wait_used(0), "every aborted session freed its buffer");
    let after = rss();
    assert!(
        after <= baseline + (16 << 20),
        "resident memory grew from {} to {} MiB",
        baseline >> 20,
        after >> 20
    );
    assert_eq!(s.client().device_count().unwrap(), 1);
}

/// `c = a x b` with per-client values; returns whether the result matched a host computation.
fn compute_and_verify(c: &mut Client, seed: u32, rounds: usize) -> bool {
    let (k, m, n) = (32usize, 16usize, 4usize);
    let buf = c.alloc(0, 1 << 16).unwrap();
    let mut g = GraphBuilder::new(buf, 64);
    let a = g.input(GgmlType::F32, [k, m, 1, 1]);
    let b = g.input(GgmlType::F32, [k, n, 1, 1]);
    let out = g.op(Op::MulMat, GgmlType::F32, [m, n, 1, 1], &[a, b], [0; 16]);
    let wg = g.graph(&[out]);
    for r in 0..rounds {
        let s = (seed as usize * 7 + r) as f32;
        let av: Vec<f32> = (0..k * m).map(|i| ((i % 5) as f32) - 2.0 + s).collect();
        let bv: Vec<f32> = (0..k * n).map(|i| ((i % 3) as f32) * 0.5).collect();
        c.set_f32(&g.tensor(a), &av).unwrap();
        c.set_f32(&g.tensor(b), &bv).unwrap();
        c.graph_compute(0, &wg).unwrap();
        let got = c.get_f32(&g.tensor(out)).unwrap();
        for col in 0..n {
            for row in 0..m {
                let want: f32 = (0..k).map(|i| av[row * k + i] * bv[col * k + i]).sum();
                if (got[col * m + row] - want).abs() > 1e-3 * want.abs().max(1.0) {
                    return false;
                }
            }
        }
    }
    true
}

#[test]
fn eight_clients_compute_while_one_sends_garbage_and_one_stays_silent() {
    let _g = serial();
    let s = common::start();
    let addr = s.addr;
    // Connected and silent: before HELLO, and after it.
    let silent_raw = Client::connect_raw(addr).unwrap();
    let mut silent = s.client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let garbage = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut c) = Client::connect(addr) else {
                    continue;
                };
                let junk: Vec<u8> = (0..4096)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let _ = c.send_bytes(&junk);
                sent += 1;
            }
            sent
        })
    };
    let workers: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr).unwrap();
                compute_and_verify(&mut c, i, 25)
            })
        })
        .collect();
    let ok: Vec<bool> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = garbage.join().unwrap();
    assert_eq!(
        ok,
        vec![true; 8],
        "every worker saw its own correct results"
    );
    assert!(sent > 0, "the garbage client ran");
    // The silent clients were never closed (no idle timeout by default) and still work.
    assert_eq!(silent.device_count().unwrap(), 1);
    drop(silent_raw);
}

#[test]
fn client_killed_mid_compute_does_not_affect_others_and_its_memory_returns() {
    let _g = serial();
    let cap = 64u64 << 20;
    // A gated device: the victim's compute is provably still running (held) while the bystander is
    // served, whatever the machine's speed or load.
    let (s, gate) = common::start_gated(common::Options {
        mem_cap: Some(cap),
        ..Default::default()
    });
    let mut other = s.client();
    assert_eq!(other.memory(0).unwrap(), (cap, cap));

    let mut victim = s.client();
    let wg = common::slow_graph(&mut victim, 20);
    victim.graph_compute(0, &wg).unwrap();
    gate.wait("started");
    drop(victim);

    // While it computes, others are served.
    assert_eq!(other.device_count().unwrap(), 1);
    let b = other.alloc(0, 4096).unwrap();
    let x = common::f32_at(b, 0, 4);
    other.set_f32(&x, &[3.0; 4]).unwrap();
    assert_eq!(other.get_f32(&x).unwrap(), vec![3.0; 4]);
    other.free(b).unwrap();
    // The graph's buffer is still in use: the vanished client's memory is not freed under its compute.
    assert!(other.memory(0).unwrap().0 < cap, "buffer freed mid-compute");

    // The victim's buffer is freed when its computation ends, and the whole cap can be allocated again.
    gate.release();
    gate.wait("finished");
    let deadline = Instant::now() + Duration::from_secs(30);
    while other.memory(0).unwrap().0 != cap {
        assert!(Instant::now() < deadline, "victim's memory never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(other.alloc(0, cap).is_ok());
}
