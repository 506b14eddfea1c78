//! The committed fuzz seeds are real client traffic (`examples/fuzz_seeds.rs`, recorded against the
//! server over TCP). Replaying them through `Session::handle` in process must accept every request, as
//! the socket path did, and give all memory back: the session fuzzer starts from exactly this state.

use std::path::Path;
use std::sync::Arc;

use ggrpc::device::{Device, cpu::CpuDevice};
use ggrpc::proto::Command;
use ggrpc::server::{Session, Shared};

fn frames(mut b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u64::from_le_bytes(b[1..9].try_into().unwrap()) as usize;
        out.push((b[0], &b[9..9 + len]));
        b = &b[9 + len..];
    }
    out
}

#[test]
fn session_seeds_replay_in_process() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/session");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "seeds in {}", dir.display());
    let cpu = Arc::new(CpuDevice::new(1, Some(256 << 10)).unwrap());
    for seed in seeds {
        let bytes = std::fs::read(&seed).unwrap();
        let devices: Vec<Arc<dyn Device>> = vec![cpu.clone()];
        let shared = Shared::new(devices, None).with_sequential_handles();
        let mut s = Session::new(Arc::new(shared));
        let frames = frames(&bytes);
        assert_eq!(frames[0].0, Command::Hello as u8);
        let mut replies = 0;
        for (cmd, p) in &frames[1..] {
            let r = s.handle_blocking(*cmd, p);
            let r = r.unwrap_or_else(|e| panic!("{}: command {cmd}: {e}", seed.display()));
            replies += r.is_some() as usize;
        }
        assert!(replies > 0, "{}", seed.display());
        assert!(cpu.used() > 0, "{} allocated", seed.display());
        drop(s);
        assert_eq!(cpu.used(), 0, "{} freed everything", seed.display());
    }
}
