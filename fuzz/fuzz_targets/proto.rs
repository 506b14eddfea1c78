//! Request framing and every command's payload decoder (`src/proto`): pure, no I/O.
//! Invariants: a payload of the right fixed length always parses; tensors and graphs re-encode to
//! the bytes they came from; a decoded tensor with memory lies inside its buffer.
#![no_main]

use ggrpc::proto::{
    AllocBuffer, BufferClear, Command, CopyTensor, GetAllocSize, GetTensor, MemsetTensor,
    SetTensorHash, SetTensorHeader, WireGraph, WireTensor, decode_tensor, expect_len,
};
use ggrpc_fuzz::{FakeBuffers, frames};
use libfuzzer_sys::fuzz_target;

fn tensor(t: &WireTensor) {
    assert_eq!(WireTensor::parse(&t.encode()).as_ref(), Ok(t));
    if let Ok(d) = decode_tensor(t, &FakeBuffers)
        && let Some(at) = d.data
    {
        let n = d.nbytes().expect("decoded tensor has a size");
        assert!(at.offset + n <= 1 << 20, "tensor escapes its buffer");
    }
}

fuzz_target!(|data: &[u8]| {
    for (byte, p) in frames(data) {
        let Some(cmd) = Command::from_u8(byte) else {
            continue;
        };
        let sized = expect_len(cmd, p.len() as u64).is_ok() && cmd.fixed_payload_len().is_some();
        let ok = match cmd {
            Command::AllocBuffer => AllocBuffer::parse(p).is_ok(),
            Command::BufferClear => BufferClear::parse(p).is_ok(),
            Command::SetTensor => SetTensorHeader::parse(p).map(|h| tensor(&h.tensor)).is_ok(),
            Command::SetTensorHash => SetTensorHash::parse(p).map(|r| tensor(&r.tensor)).is_ok(),
            Command::GetTensor => GetTensor::parse(p).map(|r| tensor(&r.tensor)).is_ok(),
            Command::CopyTensor => CopyTensor::parse(p)
                .map(|r| {
                    tensor(&r.src);
                    tensor(&r.dst)
                })
                .is_ok(),
            Command::MemsetTensor => MemsetTensor::parse(p).map(|r| tensor(&r.tensor)).is_ok(),
            Command::InitTensor => WireTensor::parse(p).map(|t| tensor(&t)).is_ok(),
            Command::GetAllocSize => GetAllocSize::parse(p)
                .map(|r| r.srcs.iter().chain([&r.tensor]).for_each(tensor))
                .is_ok(),
            Command::GraphCompute => {
                if let Ok(g) = WireGraph::parse(p) {
                    let b = g.encode();
                    assert_eq!(
                        Some(&b[..]),
                        p.get(..b.len()),
                        "graph re-encodes to its bytes"
                    );
                    g.tensors.iter().for_each(tensor);
                }
                true
            }
            // Payloads read as a bare u32 or u64, or not at all.
            _ => true,
        };
        assert!(
            ok || !sized,
            "{}: a correctly sized payload must parse",
            cmd.name()
        );
    }
});
