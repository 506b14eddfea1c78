//! CUDA C kernels: one source per op family (`shaders/cuda/*.cu`, `include_str!`-ed behind the ABI
//! header `common.cuh`; `nvrtc` compiles them), and each family's planner, which builds `Launch`es:
//! a kernel, its grid and one by-value parameter struct that mirrors the C one (the compiled source
//! carries `static_assert`s on the mirrored sizes, so a mismatch fails to compile). Planning knows no
//! driver: it sees the device as a `Target` (addresses, loaded families), so the same planners drive
//! a GPU and the test emulator.

pub mod attention;
pub mod elementwise;
pub mod matmul;
pub mod norm;
pub mod rows;

use std::sync::Mutex;

use bytemuck::{Pod, Zeroable};

use crate::device::{Buffer, BufferSet, DeviceError};
use crate::ggml::{Graph, Op, Tensor};

const COMMON: &str = include_str!("../../../../shaders/cuda/common.cuh");

/// One NVRTC program per op family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Binary,
    Unary,
    Norm,
    SoftMax,
    Rope,
    GetRows,
    Copy,
    MatMul,
    Attention,
}

impl Family {
    pub const ALL: [Family; 9] = [
        Family::Binary,
        Family::Unary,
        Family::Norm,
        Family::SoftMax,
        Family::Rope,
        Family::GetRows,
        Family::Copy,
        Family::MatMul,
        Family::Attention,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Family::Binary => "binary",
            Family::Unary => "unary",
            Family::Norm => "norm",
            Family::SoftMax => "softmax",
            Family::Rope => "rope",
            Family::GetRows => "get_rows",
            Family::Copy => "copy",
            Family::MatMul => "matmul",
            Family::Attention => "attention",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Family::Binary => include_str!("../../../../shaders/cuda/binary.cu"),
            Family::Unary => include_str!("../../../../shaders/cuda/unary.cu"),
            Family::Norm => include_str!("../../../../shaders/cuda/norm.cu"),
            Family::SoftMax => include_str!("../../../../shaders/cuda/softmax.cu"),
            Family::Rope => include_str!("../../../../shaders/cuda/rope.cu"),
            Family::GetRows => include_str!("../../../../shaders/cuda/get_rows.cu"),
            Family::Copy => include_str!("../../../../shaders/cuda/copy.cu"),
            Family::MatMul => include_str!("../../../../shaders/cuda/matmul.cu"),
            Family::Attention => include_str!("../../../../shaders/cuda/attention.cu"),
        }
    }

    /// The parameter structs the family's kernels take, with the size Rust gives them.
    pub fn abi(self) -> Vec<(&'static str, usize)> {
        use std::mem::size_of;
        match self {
            Family::Binary => vec![("BinaryP", size_of::<elementwise::BinaryP>())],
            Family::Unary => vec![
                ("UnaryP", size_of::<elementwise::UnaryP>()),
                ("GluP", size_of::<elementwise::GluP>()),
            ],
            Family::Norm => vec![("NormP", size_of::<norm::NormP>())],
            Family::SoftMax => vec![("SoftMaxP", size_of::<norm::SoftMaxP>())],
            Family::Rope => vec![("RopeP", size_of::<norm::RopeP>())],
            Family::GetRows => vec![("GetRowsP", size_of::<rows::GetRowsP>())],
            Family::Copy => vec![
                ("CopyP", size_of::<rows::CopyP>()),
                ("SetRowsP", size_of::<rows::SetRowsP>()),
            ],
            Family::MatMul => vec![
                ("QuantizeP", size_of::<matmul::QuantizeP>()),
                ("MatVecP", size_of::<matmul::MatVecP>()),
                ("MatMulFP", size_of::<matmul::MatMulFP>()),
            ],
            Family::Attention => vec![("FlashP", size_of::<attention::FlashP>())],
        }
    }

    /// The complete program: the ABI header, the family's file, and the size checks.
    pub fn code(self) -> String {
        let mut s = format!("{COMMON}\n{}\n", self.body());
        s.push_str(&format!(
            "static_assert(sizeof(Tensor) == {}, \"Tensor: Rust and CUDA disagree\");\n",
            std::mem::size_of::<CuTensor>()
        ));
        for (name, size) in self.abi() {
            s.push_str(&format!(
                "static_assert(sizeof({name}) == {size}, \"{name}: Rust and CUDA disagree\");\n"
            ));
        }
        s
    }
}

/// `struct Tensor` of common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct CuTensor {
    pub data: u64,
    pub typ: i32,
    pub pad: i32,
    pub ne: [i64; 4],
    pub nb: [i64; 4],
}

impl CuTensor {
    /// An absent optional source (a null pointer in the kernel).
    pub const NONE: CuTensor = CuTensor {
        data: 0,
        typ: 0,
        pad: 0,
        ne: [0; 4],
        nb: [0; 4],
    };
}

/// A kernel by family and entry point name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    pub family: Family,
    pub name: &'static str,
}

/// One kernel launch as planned: which kernel, its grid, and the bytes of its parameter struct.
pub struct Launch {
    pub kernel: Kernel,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared: u32,
    params: Vec<u64>,
}

/// Grid limits every CUDA device since sm_30 has.
const MAX_GRID: (u64, u64, u64) = ((1 << 31) - 1, 65535, 65535);

/// Dynamic shared memory every CUDA device gives a block without opting in.
pub const MAX_SHARED: u32 = 48 * 1024;

impl Launch {
    /// `None` when the grid exceeds the device's limits or is empty (the planner then leaves the
    /// node to the host).
    pub fn new<P: Pod>(
        kernel: Kernel,
        grid: (u64, u64, u64),
        block: (u32, u32, u32),
        shared: u32,
        p: &P,
    ) -> Option<Launch> {
        let ok = (1..=MAX_GRID.0).contains(&grid.0)
            && (1..=MAX_GRID.1).contains(&grid.1)
            && (1..=MAX_GRID.2).contains(&grid.2);
        if !ok || shared > MAX_SHARED {
            return None;
        }
        let bytes = bytemuck::bytes_of(p);
        let mut params = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut params)[..bytes.len()].copy_from_slice(bytes);
        Some(Launch {
            kernel,
            grid: (grid.0 as u32, grid.1 as u32, grid.2 as u32),
            block,
            shared,
            params,
        })
    }

    /// A node's work as one launch (`new`'s refusal, as `None`, sends it to the host).
    pub fn one<P: Pod>(
        kernel: Kernel,
        grid: (u64, u64, u64),
        block: (u32, u32, u32),
        shared: u32,
        p: &P,
    ) -> Option<Vec<Launch>> {
        Launch::new(kernel, grid, block, shared, p).map(|l| vec![l])
    }

    /// The parameter struct's bytes (8-byte aligned, padded to a multiple of 8).
    pub fn params(&self) -> &[u64] {
        &self.params
    }
}

/// What planning needs from the device it plans for.
pub trait Target: Sync {
    /// The device address of `len` bytes at `offset` of `buf`, range-checked; `ForeignBuffer` when
    /// `buf` is not this device's memory.
    fn addr(&self, buf: &dyn Buffer, offset: usize, len: usize) -> Result<u64, DeviceError>;
    /// Whether `family`'s kernels are loaded on the device.
    fn has(&self, family: Family) -> bool;
    /// The architecture kernels run as (`80` for sm_80).
    fn arch(&self) -> u32;
    /// Which weight types take the tensor-core prompt kernel.
    fn mma(&self) -> matmul::Mma {
        matmul::Mma::from_env()
    }
}

/// What a planner needs: the device, the graph's buffers, this plan's scratch memory.
pub struct Ctx<'a> {
    pub target: &'a dyn Target,
    pub buffers: &'a BufferSet,
    pub scratch: &'a Scratch,
}

impl Ctx<'_> {
    /// The device address of `t`, range-checked against its buffer.
    pub fn place(&self, t: &Tensor) -> Result<u64, DeviceError> {
        let (buf, offset, len) = crate::device::locate(t, self.buffers)?;
        self.target.addr(buf.as_ref(), offset, len)
    }

    /// `t` as a kernel sees it.
    pub fn tensor(&self, t: &Tensor) -> Result<CuTensor, DeviceError> {
        let addr = self.place(t)?;
        Ok(CuTensor {
            data: addr,
            typ: t.typ as i32,
            pad: 0,
            ne: t.ne.map(|v| v as i64),
            nb: t.nb.map(|v| v as i64),
        })
    }

    /// Source `k` of node `n`, or `NONE` when absent.
    pub fn src(&self, graph: &Graph, n: usize, k: usize) -> Result<CuTensor, DeviceError> {
        match graph.tensors[n].src[k] {
            Some(s) => self.tensor(&graph.tensors[s]),
            None => Ok(CuTensor::NONE),
        }
    }

    /// Kernel `name` of `family`, when the family is loaded on the device.
    pub fn function(&self, family: Family, name: &'static str) -> Option<Kernel> {
        self.target.has(family).then_some(Kernel { family, name })
    }

    /// The device's architecture (`80` for sm_80).
    pub fn arch(&self) -> u32 {
        self.target.arch()
    }
}

/// A plan's device scratch memory: the index-flag word first, then regions handed out in planning
/// order (quantized activations).
pub struct Scratch {
    pub base: u64,
    pub size: u64,
    next: Mutex<u64>,
}

/// Scratch regions are aligned for 16-byte vector loads.
const SCRATCH_ALIGN: u64 = 256;

impl Scratch {
    pub fn new(base: u64, size: u64) -> Self {
        Scratch {
            base,
            size,
            next: Mutex::new(SCRATCH_ALIGN),
        }
    }

    /// Bytes to allocate for `need` bytes of regions (plus the flag word and alignment).
    pub fn bytes_for(need: u64, regions: u64) -> u64 {
        SCRATCH_ALIGN + need + regions * SCRATCH_ALIGN
    }

    /// The index-flag word.
    pub fn flag(&self) -> u64 {
        self.base
    }

    /// A fresh region of `len` bytes; `None` when the plan's estimate was exceeded.
    pub fn region(&self, len: u64) -> Option<u64> {
        let mut next = self.next.lock().ok()?;
        let start = *next;
        let end = start.checked_add(len)?;
        if end > self.size {
            return None;
        }
        *next = end.div_ceil(SCRATCH_ALIGN) * SCRATCH_ALIGN;
        Some(self.base + start)
    }
}

/// The planner for one node, if this device has a kernel for it (fusions would come first here).
pub fn plan(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Launch>>, DeviceError> {
    let t = &graph.tensors[node];
    match t.op {
        Op::Add | Op::Sub | Op::Mul | Op::Div => elementwise::plan_binary(ctx, graph, node),
        Op::Scale | Op::Unary | Op::Sqr | Op::Sqrt | Op::Log | Op::Sin | Op::Cos => {
            elementwise::plan_unary(ctx, graph, node)
        }
        Op::Glu => elementwise::plan_glu(ctx, graph, node),
        Op::Norm | Op::RmsNorm => norm::plan_norm(ctx, graph, node),
        Op::SoftMax => norm::plan_softmax(ctx, graph, node),
        Op::Rope => norm::plan_rope(ctx, graph, node),
        Op::GetRows => rows::plan_get_rows(ctx, graph, node),
        Op::Cpy | Op::Cont | Op::Dup => rows::plan_copy(ctx, graph, node),
        Op::SetRows => rows::plan_set_rows(ctx, graph, node),
        // A hinted MUL_MAT (op_params[1]) is a different computation in ggml-cpu: the host runs it.
        Op::MulMat if t.param_i32(1) == 0 => matmul::plan(ctx, graph, node),
        Op::FlashAttnExt => attention::plan(ctx, graph, node),
        _ => Ok(None),
    }
}

/// Scratch bytes (and regions) the graph's kernels may ask for.
pub fn scratch_need(graph: &Graph) -> (u64, u64) {
    graph
        .compute_nodes()
        .filter(|&n| graph.tensors[n].op == Op::MulMat)
        .map(|n| (matmul::scratch_bytes(graph, n), 1))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Elementwise launch shape: 256 threads, a grid-stride loop over `n` items.
pub fn stride_grid(n: u64) -> (u64, u64, u64) {
    (n.div_ceil(256).clamp(1, 65535), 1, 1)
}
