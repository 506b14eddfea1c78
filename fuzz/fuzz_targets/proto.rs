//! Request framing and every command's payload decoder (`src/proto`), in both protocol majors: pure,
//! no I/O. Invariants: a payload of the right fixed length always decodes; a decoded request encodes
//! to a payload that decodes to the same request (to the very same bytes but for two normalised fields,
//! GRAPH_COMPUTE to a prefix of them); a decoded tensor with memory lies inside its buffer.
#![no_main]

use ggrpc::proto::{Major, Request, WireTensor, decode_tensor, frame_header};
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

fn tensors(r: &Request) -> Vec<WireTensor> {
    match r {
        Request::SetTensor { header, .. } => vec![header.tensor.clone()],
        Request::SetTensorHash(r) => vec![r.tensor.clone()],
        Request::GetTensor(r) => vec![r.tensor.clone()],
        Request::CopyTensor(r) => vec![r.src.clone(), r.dst.clone()],
        Request::MemsetTensor(r) => vec![r.tensor.clone()],
        Request::InitTensor(t) => vec![t.clone()],
        Request::GetAllocSize(r) => r.srcs.iter().chain([&r.tensor]).cloned().collect(),
        Request::GraphCompute(g) => g.tensors.clone(),
        Request::SetTensor2d { header, .. } | Request::GetTensor2d(header) => {
            vec![header.tensor.clone()]
        }
        Request::CommAllreduce(r) => vec![r.tensor.clone()],
        _ => Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    for (byte, p) in frames(data) {
        for major in Major::ALL {
            let Ok(cmd) = frame_header(byte, p.len() as u64, major) else {
                continue;
            };
            let decoded = Request::decode(cmd, p, major);
            if cmd.fixed_payload_len(major).is_some() {
                assert!(decoded.is_ok(), "{}: a sized payload must decode", cmd.name());
            }
            let Ok(req) = decoded else {
                continue;
            };
            tensors(&req).iter().for_each(tensor);
            let again = req.encode(major);
            assert_eq!(
                Request::decode(cmd, &again, major).as_ref(),
                Ok(&req),
                "{}: re-encodes to the same request",
                cmd.name()
            );
            // Not byte-exact by design: COMM_INIT drops what follows the host's NUL, and SET_TENSOR's
            // cache flag is any non-zero byte (re-encoded as 1).
            let exact = !matches!(req, Request::CommInit(_) | Request::SetTensor { .. });
            if exact {
                assert_eq!(Some(&again[..]), p.get(..again.len()), "{}: same bytes", cmd.name());
            }
        }
    }
});
