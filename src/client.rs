//! A Rust client for ggml RPC v7: the test driver and a library API.
