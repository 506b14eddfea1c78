//! Command ids (`enum rpc_cmd`) and their fixed request sizes.

use super::tensor::RPC_TENSOR_SIZE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    AllocBuffer = 0,
    GetAlignment = 1,
    GetMaxSize = 2,
    BufferGetBase = 3,
    FreeBuffer = 4,
    BufferClear = 5,
    SetTensor = 6,
    SetTensorHash = 7,
    GetTensor = 8,
    CopyTensor = 9,
    GraphCompute = 10,
    GetDeviceMemory = 11,
    InitTensor = 12,
    GetAllocSize = 13,
    Hello = 14,
    DeviceCount = 15,
    GraphRecompute = 16,
    MemsetTensor = 17,
}

impl Command {
    /// Decodes a command byte; NONE (18) and anything above are unknown.
    pub fn from_u8(b: u8) -> Option<Self> {
        use Command::*;
        Some(match b {
            0 => AllocBuffer,
            1 => GetAlignment,
            2 => GetMaxSize,
            3 => BufferGetBase,
            4 => FreeBuffer,
            5 => BufferClear,
            6 => SetTensor,
            7 => SetTensorHash,
            8 => GetTensor,
            9 => CopyTensor,
            10 => GraphCompute,
            11 => GetDeviceMemory,
            12 => InitTensor,
            13 => GetAllocSize,
            14 => Hello,
            15 => DeviceCount,
            16 => GraphRecompute,
            17 => MemsetTensor,
            _ => return None,
        })
    }

    /// The exact payload length of fixed-size requests; `None` for SET_TENSOR and GRAPH_COMPUTE.
    pub fn fixed_payload_len(self) -> Option<usize> {
        use Command::*;
        Some(match self {
            AllocBuffer => 12,
            GetAlignment | GetMaxSize | GetDeviceMemory | GraphRecompute => 4,
            BufferGetBase | FreeBuffer => 8,
            BufferClear => 9,
            SetTensor | GraphCompute => return None,
            SetTensorHash | GetTensor => RPC_TENSOR_SIZE + 16,
            CopyTensor => 2 * RPC_TENSOR_SIZE,
            InitTensor => RPC_TENSOR_SIZE,
            GetAllocSize => 4 + 11 * RPC_TENSOR_SIZE,
            Hello => 24,
            DeviceCount => 0,
            MemsetTensor => RPC_TENSOR_SIZE + 17,
        })
    }

    /// Whether the server answers this command (seven are fire-and-forget).
    pub fn has_response(self) -> bool {
        use Command::*;
        !matches!(
            self,
            FreeBuffer
                | BufferClear
                | SetTensor
                | GraphCompute
                | InitTensor
                | GraphRecompute
                | MemsetTensor
        )
    }

    /// The reference's name, for logs.
    pub fn name(self) -> &'static str {
        use Command::*;
        match self {
            AllocBuffer => "ALLOC_BUFFER",
            GetAlignment => "GET_ALIGNMENT",
            GetMaxSize => "GET_MAX_SIZE",
            BufferGetBase => "BUFFER_GET_BASE",
            FreeBuffer => "FREE_BUFFER",
            BufferClear => "BUFFER_CLEAR",
            SetTensor => "SET_TENSOR",
            SetTensorHash => "SET_TENSOR_HASH",
            GetTensor => "GET_TENSOR",
            CopyTensor => "COPY_TENSOR",
            GraphCompute => "GRAPH_COMPUTE",
            GetDeviceMemory => "GET_DEVICE_MEMORY",
            InitTensor => "INIT_TENSOR",
            GetAllocSize => "GET_ALLOC_SIZE",
            Hello => "HELLO",
            DeviceCount => "DEVICE_COUNT",
            GraphRecompute => "GRAPH_RECOMPUTE",
            MemsetTensor => "MEMSET_TENSOR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_table() {
        assert_eq!(Command::GetAllocSize.fixed_payload_len(), Some(3260));
        assert_eq!(Command::MemsetTensor.fixed_payload_len(), Some(313));
        assert_eq!(Command::GetTensor.fixed_payload_len(), Some(312));
        assert_eq!(Command::CopyTensor.fixed_payload_len(), Some(592));
        assert_eq!(Command::from_u8(18), None);
        assert_eq!(Command::from_u8(255), None);
        assert_eq!(
            (0..=255u8)
                .filter_map(Command::from_u8)
                .filter(|c| !c.has_response())
                .count(),
            7
        );
    }
}
