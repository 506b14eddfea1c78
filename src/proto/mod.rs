//! The wire format of ggml RPC v7.0.0. Pure: bytes in, typed requests out; no sockets, no devices.
