//! Why a request was rejected. Every variant ends the connection (the protocol has no error reply).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("payload too short: need {need} bytes, got {got}")]
    Short { need: usize, got: usize },
    #[error("{cmd}: payload length {got}, expected {expected}")]
    Length {
        cmd: &'static str,
        expected: u64,
        got: u64,
    },
    #[error("unknown command {0}")]
    UnknownCommand(u8),
    #[error("invalid tensor type {0}")]
    BadType(u32),
    #[error("invalid op {0}")]
    BadOp(u32),
    #[error("ne[0] = {ne0} is not a multiple of the block size {block} of {typ}")]
    PartialBlock {
        typ: &'static str,
        ne0: usize,
        block: usize,
    },
    #[error("tensor size overflows")]
    Overflow,
    #[error("unknown buffer {0:#x}")]
    UnknownBuffer(u64),
    #[error("tensor data {data:#x}+{len} outside its buffer [{base:#x}, +{size})")]
    OutOfBuffer {
        data: u64,
        len: u64,
        base: u64,
        size: u64,
    },
    #[error("region {offset}+{len} outside the tensor's {nbytes} bytes")]
    OutOfTensor { offset: u64, len: u64, nbytes: u64 },
    #[error("tensor has data but no buffer")]
    DataWithoutBuffer,
    #[error("graph: {0}")]
    Graph(String),
    #[error("{0}")]
    Invalid(String),
}
