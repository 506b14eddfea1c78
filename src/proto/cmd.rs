//! Command ids (`enum rpc_cmd`) of both protocol majors, in one table: each command's name, the first
//! major that has it, whether the server answers it, and its request length.

use super::tensor::RPC_TENSOR_SIZE;

/// A protocol major the server can speak. The HELLO request is the same in both, so the major is the
/// server's configuration (`--protocol`), not a negotiation: a client aborts unless majors are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Major {
    /// llama-cpp-python 0.3.36 and llama.cpp before the 8.0 change.
    V7 = 7,
    /// Current llama.cpp (b11739 on): 2D transfers, graph uids, server-to-server communicators.
    V8 = 8,
}

impl Major {
    pub const ALL: [Major; 2] = [Major::V7, Major::V8];

    /// The version the HELLO reply announces.
    pub fn version(self) -> (u8, u8, u8) {
        (self as u8, 0, 0)
    }

    pub fn from_number(n: u8) -> Option<Self> {
        Major::ALL.into_iter().find(|m| *m as u8 == n)
    }

    /// The other major (for the "client may speak the other major" hint).
    pub fn other(self) -> Self {
        match self {
            Major::V7 => Major::V8,
            Major::V8 => Major::V7,
        }
    }
}

impl std::fmt::Display for Major {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b, c) = self.version();
        write!(f, "{a}.{b}.{c}")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    SetTensor2d = 18,
    GetTensor2d = 19,
    CommInit = 20,
    CommAllreduce = 21,
    CommFree = 22,
}

/// One row of the command table.
struct Spec {
    cmd: Command,
    name: &'static str,
    /// The first major with this command (ids never move for the commands both majors have).
    since: Major,
    reply: bool,
}

const fn spec(cmd: Command, name: &'static str, since: Major, reply: bool) -> Spec {
    Spec {
        cmd,
        name,
        since,
        reply,
    }
}

/// Indexed by command id. v7's NONE (18) and v8's NONE (23) have no row: both majors close on them.
const TABLE: [Spec; 23] = {
    use Command::*;
    use Major::*;
    [
        spec(AllocBuffer, "ALLOC_BUFFER", V7, true),
        spec(GetAlignment, "GET_ALIGNMENT", V7, true),
        spec(GetMaxSize, "GET_MAX_SIZE", V7, true),
        spec(BufferGetBase, "BUFFER_GET_BASE", V7, true),
        spec(FreeBuffer, "FREE_BUFFER", V7, false),
        spec(BufferClear, "BUFFER_CLEAR", V7, false),
        spec(SetTensor, "SET_TENSOR", V7, false),
        spec(SetTensorHash, "SET_TENSOR_HASH", V7, true),
        spec(GetTensor, "GET_TENSOR", V7, true),
        spec(CopyTensor, "COPY_TENSOR", V7, true),
        spec(GraphCompute, "GRAPH_COMPUTE", V7, false),
        spec(GetDeviceMemory, "GET_DEVICE_MEMORY", V7, true),
        spec(InitTensor, "INIT_TENSOR", V7, false),
        spec(GetAllocSize, "GET_ALLOC_SIZE", V7, true),
        spec(Hello, "HELLO", V7, true),
        spec(DeviceCount, "DEVICE_COUNT", V7, true),
        spec(GraphRecompute, "GRAPH_RECOMPUTE", V7, false),
        spec(MemsetTensor, "MEMSET_TENSOR", V7, false),
        spec(SetTensor2d, "SET_TENSOR_2D", V8, false),
        spec(GetTensor2d, "GET_TENSOR_2D", V8, true),
        spec(CommInit, "COMM_INIT", V8, true),
        spec(CommAllreduce, "COMM_ALLREDUCE", V8, false),
        spec(CommFree, "COMM_FREE", V8, false),
    ]
};

/// Header of SET_TENSOR_2D / GET_TENSOR_2D: tensor, offset, size, n_copies, stride.
pub(crate) const TENSOR_2D_SIZE: usize = RPC_TENSOR_SIZE + 32;

impl Command {
    /// Every command of every major, in id order.
    pub fn all() -> impl Iterator<Item = Command> {
        TABLE.iter().map(|s| s.cmd)
    }

    #[allow(clippy::indexing_slicing)] // every command's id is its row (`table_is_indexed_by_id`)
    fn spec(self) -> &'static Spec {
        &TABLE[self as usize]
    }

    /// Decodes a command byte in `major`; unknown ids and commands of a later major are `None`.
    pub fn decode(byte: u8, major: Major) -> Option<Self> {
        TABLE
            .get(byte as usize)
            .filter(|s| s.since <= major)
            .map(|s| s.cmd)
    }

    /// Whether `major` has this command.
    pub fn exists_in(self, major: Major) -> bool {
        self.spec().since <= major
    }

    /// The exact payload length of a fixed-size request in `major`; `None` for the variable ones
    /// (SET_TENSOR, SET_TENSOR_2D and GRAPH_COMPUTE).
    pub fn fixed_payload_len(self, major: Major) -> Option<usize> {
        use Command::*;
        Some(match self {
            AllocBuffer => 12,
            GetAlignment | GetMaxSize | GetDeviceMemory | CommFree => 4,
            // v8 names the graph by uid: {u32 device, u64 uid}.
            GraphRecompute if major >= Major::V8 => 12,
            GraphRecompute => 4,
            BufferGetBase | FreeBuffer => 8,
            BufferClear => 9,
            SetTensor | SetTensor2d | GraphCompute => return None,
            SetTensorHash | GetTensor => RPC_TENSOR_SIZE + 16,
            CopyTensor => 2 * RPC_TENSOR_SIZE,
            InitTensor => RPC_TENSOR_SIZE,
            GetAllocSize => 4 + 11 * RPC_TENSOR_SIZE,
            Hello => 24,
            DeviceCount => 0,
            MemsetTensor => RPC_TENSOR_SIZE + 17,
            GetTensor2d => TENSOR_2D_SIZE,
            CommInit => 16 + 64,
            CommAllreduce => 4 + RPC_TENSOR_SIZE,
        })
    }

    /// Whether the server answers this command (the others are fire-and-forget, even on error).
    pub fn has_response(self) -> bool {
        self.spec().reply
    }

    /// The reference's name, for logs and metrics.
    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_id() {
        for (i, s) in TABLE.iter().enumerate() {
            assert_eq!(s.cmd as usize, i, "{}", s.name);
        }
    }

    #[test]
    fn sizes_match_the_reference() {
        use Major::*;
        assert_eq!(Command::GetAllocSize.fixed_payload_len(V7), Some(3260));
        assert_eq!(Command::MemsetTensor.fixed_payload_len(V8), Some(313));
        assert_eq!(Command::GetTensor.fixed_payload_len(V7), Some(312));
        assert_eq!(Command::CopyTensor.fixed_payload_len(V7), Some(592));
        assert_eq!(Command::GraphRecompute.fixed_payload_len(V7), Some(4));
        assert_eq!(Command::GraphRecompute.fixed_payload_len(V8), Some(12));
        assert_eq!(Command::GetTensor2d.fixed_payload_len(V8), Some(328));
        assert_eq!(Command::CommInit.fixed_payload_len(V8), Some(80));
        assert_eq!(Command::CommAllreduce.fixed_payload_len(V8), Some(300));
    }

    #[test]
    fn each_major_knows_its_commands() {
        use Major::*;
        // v7: 0..=17; NONE (18) and above close the connection.
        assert_eq!(
            (0..=255u8).filter_map(|b| Command::decode(b, V7)).count(),
            18
        );
        assert_eq!(Command::decode(18, V7), None);
        // v8: 0..=22; NONE (23) and above close.
        assert_eq!(
            (0..=255u8).filter_map(|b| Command::decode(b, V8)).count(),
            23
        );
        assert_eq!(Command::decode(18, V8), Some(Command::SetTensor2d));
        assert_eq!(Command::decode(22, V8), Some(Command::CommFree));
        assert_eq!(Command::decode(23, V8), None);
        let silent = |m| {
            (0..=255u8)
                .filter_map(|b| Command::decode(b, m))
                .filter(|c| !c.has_response())
                .count()
        };
        assert_eq!(silent(V7), 7);
        assert_eq!(silent(V8), 10);
    }

    #[test]
    fn versions() {
        assert_eq!(Major::V8.to_string(), "8.0.0");
        assert_eq!(Major::from_number(7), Some(Major::V7));
        assert_eq!(Major::from_number(9), None);
        assert_eq!(Major::V7.other(), Major::V8);
    }
}
