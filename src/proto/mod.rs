//! The wire format of ggml RPC 7.0.0 and 8.0.0 (`../shared/PROTOCOL.md`). Pure: bytes in, typed values out;
//! no sockets, no devices. Every length, count, id and range is checked here or in `graph`.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cmd;
mod error;
mod graph;
pub mod hash;
mod message;
mod request;
mod tensor;

pub use cmd::{Command, Major};
pub use error::ProtoError;
pub use graph::{BufferLookup, WireGraph, build_graph};
pub use message::{Request, Response, expect_len, frame_header};
pub use request::{
    AllocBuffer, BufferClear, CommAllreduce, CommInit, CopyTensor, GetAllocSize, GetTensor,
    GraphRecompute, MemsetTensor, SetTensorHash, SetTensorHeader, Tensor2d,
};
pub use tensor::{RPC_TENSOR_SIZE, WireTensor, decode_tensor};

/// Size of `conn_caps` in HELLO (RDMA negotiation; we always answer zeros).
pub const CONN_CAPS_SIZE: usize = 24;
/// Request header: `u8 cmd | u64 payload_len`.
pub const REQUEST_HEADER_SIZE: usize = 9;
/// Graphs a v8 session keeps per device; at this count the next new uid clears the device's cache
/// first. The client clears its own record at the same point, so this must match the reference.
pub const GRAPH_CACHE_MAX: usize = 1024;

/// Reads a little-endian u32 at `off`, or `ProtoError::Short`.
pub(crate) fn u32_at(b: &[u8], off: usize) -> Result<u32, ProtoError> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(ProtoError::Short {
            need: off + 4,
            got: b.len(),
        })
}

/// Reads a little-endian u64 at `off`, or `ProtoError::Short`.
pub(crate) fn u64_at(b: &[u8], off: usize) -> Result<u64, ProtoError> {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(ProtoError::Short {
            need: off + 8,
            got: b.len(),
        })
}

/// Reads a u8 at `off`, or `ProtoError::Short`.
pub(crate) fn u8_at(b: &[u8], off: usize) -> Result<u8, ProtoError> {
    b.get(off).copied().ok_or(ProtoError::Short {
        need: off + 1,
        got: b.len(),
    })
}
