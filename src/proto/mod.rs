//! The wire format of ggml RPC v7.0.0 (`../shared/PROTOCOL.md`). Pure: bytes in, typed values out;
//! no sockets, no devices. Every length, count, id and range is checked here or in `graph`.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cmd;
mod error;
mod graph;
pub mod hash;
mod request;
mod tensor;

pub use cmd::Command;
pub use error::ProtoError;
pub use graph::{BufferLookup, WireGraph, build_graph};
pub use request::{
    AllocBuffer, BufferClear, CopyTensor, GetAllocSize, GetTensor, MemsetTensor, SetTensorHash,
    SetTensorHeader,
};
pub use tensor::{WireTensor, decode_tensor};

/// Protocol version this server speaks (the client accepts 7.0.x only).
pub const PROTO_VERSION: (u8, u8, u8) = (7, 0, 0);
/// Size of `conn_caps` in HELLO (RDMA negotiation; we always answer zeros).
pub const CONN_CAPS_SIZE: usize = 24;
/// Request header: `u8 cmd | u64 payload_len`.
pub const REQUEST_HEADER_SIZE: usize = 9;

/// The HELLO reply payload: version 7.0.0 and 24 zero caps bytes (declines RDMA).
pub fn hello_reply() -> [u8; 4 + CONN_CAPS_SIZE] {
    let mut r = [0u8; 4 + CONN_CAPS_SIZE];
    r[..3].copy_from_slice(&[PROTO_VERSION.0, PROTO_VERSION.1, PROTO_VERSION.2]);
    r
}

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

/// Checks that a fixed-size payload has exactly the expected length.
pub fn expect_len(cmd: Command, payload_len: u64) -> Result<(), ProtoError> {
    match cmd.fixed_payload_len() {
        Some(n) if n as u64 != payload_len => Err(ProtoError::Length {
            cmd: cmd.name(),
            expected: n as u64,
            got: payload_len,
        }),
        _ => Ok(()),
    }
}
