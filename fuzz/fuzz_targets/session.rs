//! A whole session in process: a stream of request frames (as a client sends them, HELLO first)
//! against a CPU device capped at 256 KiB (small, so the heaviest graph stays cheap), graphs included.
//! An error ends the stream, as it would close the connection. Invariant: once the session is
//! dropped, every byte it allocated is back.
#![no_main]

use std::sync::{Arc, LazyLock};

use ggrpc::device::Device;
use ggrpc::device::cpu::CpuDevice;
use ggrpc::proto::Command;
use ggrpc::server::{Session, Shared};
use ggrpc_fuzz::frames;
use libfuzzer_sys::fuzz_target;

static CPU: LazyLock<Arc<CpuDevice>> =
    LazyLock::new(|| Arc::new(CpuDevice::new(1, Some(256 << 10)).expect("cpu device")));

fuzz_target!(|data: &[u8]| {
    let cpu = CPU.clone();
    let devices: Vec<Arc<dyn Device>> = vec![cpu.clone()];
    let shared = Shared::new(devices, None).with_sequential_handles();
    let mut session = Session::new(Arc::new(shared));
    for (i, (cmd, payload)) in frames(data).enumerate() {
        if i == 0 && cmd == Command::Hello as u8 {
            continue;
        }
        if session.handle_blocking(cmd, payload).is_err() {
            break;
        }
    }
    drop(session);
    assert_eq!(
        cpu.used(),
        0,
        "a dropped session left device memory allocated"
    );
});
