//! ggrpc: a wire-compatible server for ggml's RPC protocol v7.0.0.
//!
//! Layers: `proto` parses bytes, `server` owns sockets and sessions, `device` runs validated graphs,
//! `ggml` and `quant` are the backend-independent data model and block codecs.

pub mod client;
pub mod device;
pub mod ggml;
pub mod proto;
pub mod quant;
pub mod server;
#[cfg(test)]
pub mod testkit;
