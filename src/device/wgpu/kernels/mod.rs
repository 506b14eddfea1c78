//! WGSL kernels: the sources (`include_str!`, one file per op family), a registry that compiles each
//! pipeline once and caches it by (source, entry point), and the batch encoder every op goes through.
//!
//! Conventions shared by every shader: binding 0 is a uniform `P` with the op's parameters (u32/i32/f32
//! scalars only, in the order the Rust side pushes them); bindings 1.. are `array<u32>` storage buffers
//! declared `read_write` (wgpu forbids mixing read-only and read-write bindings of one buffer in a
//! dispatch, and ggml tensors often share a buffer). Tensor addresses are byte offsets from the start
//! of the bound window; f32 is read with `bitcast`, f16 with `unpack2x16float`, block types byte by byte.

pub mod attention;
mod batch;
pub mod copy;
pub mod elementwise;
pub mod fill;
pub mod get_rows;
pub mod host;
pub mod matmul;
pub mod matmul_jobs;
pub mod norm;
pub mod rope;
pub mod scratch;
pub mod softmax;
pub mod span;

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub use batch::{Dispatch, Encoded, encode, groups, submit};

use super::buffer::WgpuBuffer;
use super::gpu::{Gpu, WORD, align_down, align_up};
use crate::device::DeviceError;
use crate::ggml::{Graph, Op, Tensor};

/// Shared WGSL helpers (byte and f16 access, dequantization), prepended to the sources that use them.
const COMMON: &str = include_str!("../../../../shaders/common.wgsl");
/// Weight-element access into `src0` (needs a `src0` binding), for the sources that dequantize.
const EXACT: &str = include_str!("../../../../shaders/exact.wgsl");
const QUANT: &str = include_str!("../../../../shaders/quant.wgsl");
/// MUL_MAT's activation conversion, for the act_quant pass and the kernels that fuse it (norm chains,
/// GLU, FLASH_ATTN_EXT).
const ACT_QUANT_BLOCK: &str = include_str!("../../../../shaders/act_quant_block.wgsl");

/// One WGSL program per op family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Fill,
    Binary,
    Unary,
    Norm,
    NormPair,
    MatMul,
    GetRows,
    SoftMax,
    Rope,
    Copy,
    Attention,
    ActQuant,
    Probe,
}

impl Source {
    pub const ALL: [Source; 13] = [
        Source::Fill,
        Source::Binary,
        Source::Unary,
        Source::Norm,
        Source::NormPair,
        Source::MatMul,
        Source::GetRows,
        Source::SoftMax,
        Source::Rope,
        Source::Copy,
        Source::Attention,
        Source::ActQuant,
        Source::Probe,
    ];

    /// The op family's own file.
    fn body(self) -> String {
        const NORM: &str = include_str!("../../../../shaders/norm.wgsl");
        let file = match self {
            Source::Norm => {
                return format!(
                    "{NORM}\n{}",
                    include_str!("../../../../shaders/norm_single.wgsl")
                );
            }
            Source::MatMul => {
                return format!(
                    "{}\n{}\n{}",
                    include_str!("../../../../shaders/matmul.wgsl"),
                    include_str!("../../../../shaders/matmul_exact.wgsl"),
                    include_str!("../../../../shaders/matmul_gpu.wgsl")
                );
            }
            Source::Attention => {
                return format!(
                    "{}\n{}",
                    include_str!("../../../../shaders/attention.wgsl"),
                    include_str!("../../../../shaders/attention_rows.wgsl")
                );
            }
            Source::NormPair => {
                return format!(
                    "{NORM}\n{}",
                    include_str!("../../../../shaders/norm_pair.wgsl")
                );
            }
            Source::Fill => include_str!("../../../../shaders/fill.wgsl"),
            Source::Binary => include_str!("../../../../shaders/binary.wgsl"),
            Source::Unary => include_str!("../../../../shaders/unary.wgsl"),
            Source::GetRows => include_str!("../../../../shaders/get_rows.wgsl"),
            Source::SoftMax => include_str!("../../../../shaders/softmax.wgsl"),
            Source::Rope => include_str!("../../../../shaders/rope.wgsl"),
            Source::Copy => include_str!("../../../../shaders/copy.wgsl"),
            Source::ActQuant => include_str!("../../../../shaders/act_quant.wgsl"),
            Source::Probe => include_str!("../../../../shaders/probe.wgsl"),
        };
        file.to_string()
    }

    /// Storage bindings (1..=n) of every entry point in the source; the layout is explicit, so an
    /// entry point may leave some unused.
    pub fn storage_bindings(self) -> u32 {
        match self {
            Source::NormPair => 10,
            Source::Fill => 1,
            Source::ActQuant | Source::Probe => 2,
            Source::Norm => 7,
            Source::GetRows | Source::Copy | Source::Rope => 4,
            Source::Unary => 5,
            Source::Attention => 7,
            _ => 3,
        }
    }

    /// The complete module text (common helpers + the family's file).
    pub fn code(self) -> String {
        let quant = match self {
            Source::MatMul | Source::GetRows => QUANT,
            Source::ActQuant
            | Source::Norm
            | Source::NormPair
            | Source::Unary
            | Source::Attention => ACT_QUANT_BLOCK,
            _ => "",
        };
        format!("{COMMON}\n{EXACT}\n{}\n{quant}", self.body())
    }
}

/// Compiled pipelines, created lazily and kept for the device's lifetime.
#[derive(Default)]
pub struct Kernels {
    /// The value of exact.wgsl's `FUSED_FMA` for pipelines created from now on.
    fused_fma: AtomicBool,
    modules: RwLock<HashMap<Source, wgpu::ShaderModule>>,
    pipelines: RwLock<HashMap<(Source, &'static str), wgpu::ComputePipeline>>,
    layouts: RwLock<HashMap<u32, wgpu::PipelineLayout>>,
}

impl Kernels {
    /// Lets exact.wgsl's `fmaf` use the device's own `fma()` (call before any pipeline is created).
    pub fn set_fused_fma(&self, fused: bool) {
        self.fused_fma.store(fused, Ordering::Relaxed);
    }

    /// The pipeline for `entry` in `source`, compiling it on first use (errors are captured by the
    /// caller's error scope).
    pub fn pipeline(
        &self,
        device: &wgpu::Device,
        source: Source,
        entry: &'static str,
    ) -> wgpu::ComputePipeline {
        if let Some(p) = self
            .pipelines
            .read()
            .ok()
            .and_then(|m| m.get(&(source, entry)).cloned())
        {
            return p;
        }
        let module = self.module(device, source);
        let layout = self.layout(device, source.storage_bindings());
        let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[(
                    "FUSED_FMA",
                    f64::from(u8::from(self.fused_fma.load(Ordering::Relaxed))),
                )],
                ..Default::default()
            },
            cache: None,
        });
        if let Ok(mut m) = self.pipelines.write() {
            m.insert((source, entry), p.clone());
        }
        p
    }

    /// Binding 0: the uniform parameters; 1..=n: read-write storage buffers.
    fn layout(&self, device: &wgpu::Device, n: u32) -> wgpu::PipelineLayout {
        if let Some(l) = self.layouts.read().ok().and_then(|m| m.get(&n).cloned()) {
            return l;
        }
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let mut entries = vec![entry(0, wgpu::BufferBindingType::Uniform)];
        entries.extend(
            (1..=n).map(|b| entry(b, wgpu::BufferBindingType::Storage { read_only: false })),
        );
        let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("ggrpc"),
            entries: &entries,
        });
        let l = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("ggrpc"),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        if let Ok(mut m) = self.layouts.write() {
            m.insert(n, l.clone());
        }
        l
    }

    fn module(&self, device: &wgpu::Device, source: Source) -> wgpu::ShaderModule {
        if let Some(m) = self
            .modules
            .read()
            .ok()
            .and_then(|m| m.get(&source).cloned())
        {
            return m;
        }
        let m = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("ggrpc"),
            source: wgpu::ShaderSource::Wgsl(source.code().into()),
        });
        if let Ok(mut map) = self.modules.write() {
            map.insert(source, m.clone());
        }
        m
    }
}

/// A bound byte window of a buffer.
#[derive(Clone)]
pub struct Window {
    pub buffer: wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

/// A tensor's memory as a kernel sees it: the window bound and the tensor's first byte inside it.
#[derive(Clone)]
pub struct View {
    pub window: Window,
    /// Byte offset of the tensor's first byte from the window start.
    pub base: u32,
}

impl View {
    /// Binds `len` bytes at byte `offset` of `buffer`; `None` when the window would exceed the
    /// device's largest storage binding (the caller splits the work or falls back to the CPU).
    pub fn new(gpu: &Gpu, buffer: &wgpu::Buffer, offset: u64, len: u64) -> Option<View> {
        let align = u64::from(gpu.limits.min_storage_buffer_offset_alignment).max(WORD);
        let start = align_down(offset, align);
        let end = align_up(offset + len.max(1), WORD).min(buffer.size());
        let size = end.checked_sub(start)?.max(WORD);
        // Shaders address windows with u32 byte offsets: keep every window below 2 GiB.
        let max = gpu.limits.max_storage_buffer_binding_size.min(1 << 31);
        if size > max || start + size > buffer.size() {
            return None;
        }
        Some(View {
            window: Window {
                buffer: buffer.clone(),
                offset: start,
                size,
            },
            base: u32::try_from(offset - start).ok()?,
        })
    }
}

/// f32 parameter as a uniform word.
pub fn f(v: f32) -> u32 {
    v.to_bits()
}

/// usize parameter as a uniform word; `None` when it does not fit (the op then runs on the CPU).
pub fn u(v: usize) -> Option<u32> {
    u32::try_from(v).ok()
}

/// What an op's planner needs: the device and the graph's buffers.
pub struct Ctx<'a> {
    pub gpu: &'a Gpu,
    pub buffers: &'a crate::device::BufferSet,
    /// This run's scratch regions.
    pub scratch: &'a scratch::Scratch,
    /// This run's host copies of leaf tensors.
    pub host: host::HostCopies,
}

impl Ctx<'_> {
    /// The GELU tables as a binding window.
    pub fn gelu_tables(&self) -> Window {
        Window {
            buffer: self.gpu.gelu_tables.clone(),
            offset: 0,
            size: self.gpu.gelu_tables.size(),
        }
    }

    /// The wgpu buffer holding `t`, the tensor's byte offset in it and its byte length.
    pub fn place(&self, t: &Tensor) -> Result<(&WgpuBuffer, u64, u64), DeviceError> {
        let (buf, offset, len) = crate::device::locate(t, self.buffers)?;
        let wb = buf
            .as_any()
            .downcast_ref::<WgpuBuffer>()
            .ok_or(DeviceError::ForeignBuffer)?;
        wb.check(offset, len)?;
        Ok((wb, offset as u64, len as u64))
    }

    /// `t` bound whole; `None` when it does not fit one binding.
    pub fn view(&self, t: &Tensor) -> Result<Option<View>, DeviceError> {
        let (wb, off, len) = self.place(t)?;
        Ok(View::new(self.gpu, &wb.buf, off, len))
    }

    /// The pipeline for `entry` of `source`.
    pub fn pipeline(&self, source: Source, entry: &'static str) -> wgpu::ComputePipeline {
        self.gpu.kernels.pipeline(&self.gpu.device, source, entry)
    }
}

/// `[base, nb0, nb1, nb2, nb3]` of a bound tensor, `None` when a stride does not fit in u32.
pub fn addr(v: &View, t: &Tensor) -> Option<[u32; 5]> {
    Some([v.base, u(t.nb[0])?, u(t.nb[1])?, u(t.nb[2])?, u(t.nb[3])?])
}

/// `ne` as u32s.
pub fn ne(t: &Tensor) -> Option<[u32; 4]> {
    Some([u(t.ne[0])?, u(t.ne[1])?, u(t.ne[2])?, u(t.ne[3])?])
}

/// Every byte address a kernel computes for `t` stays below 2^32 (shader arithmetic is u32).
pub fn small(t: &Tensor) -> bool {
    t.nbytes().is_some_and(|n| n < (1usize << 31))
}

/// The native planner for `graph.tensors[node]`, if this device has one for the node's op.
pub fn supports(graph: &Graph, node: usize) -> bool {
    let t = &graph.tensors[node];
    match t.op {
        Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Scale
        | Op::Unary
        | Op::Glu
        | Op::Sqr
        | Op::Sqrt
        | Op::Log
        | Op::Sin
        | Op::Cos => elementwise::supports(graph, node),
        Op::Cpy | Op::Cont | Op::Dup | Op::SetRows => copy::supports(graph, node),
        Op::Norm | Op::RmsNorm => norm::supports(graph, node),
        // A hinted MUL_MAT (op_params[1], e.g. the Hadamard rotation before a quantized KV cache) is
        // a different computation in ggml-cpu: the host kernel reproduces it bit for bit.
        Op::MulMat => t.param_i32(1) == 0 && matmul::supports(graph, node),
        Op::GetRows => get_rows::supports(graph, node),
        Op::SoftMax => softmax::supports(graph, node),
        Op::Rope => rope::supports(graph, node),
        Op::FlashAttnExt => attention::supports(graph, node),
        _ => false,
    }
}

/// The dispatches computing `nodes[0]` together with the nodes right after it, when a fused kernel
/// covers them (a norm with its weight MUL and residual ADD; products of one activation), and how
/// many nodes they take.
pub fn plan_fused(
    ctx: &Ctx,
    graph: &Graph,
    nodes: &[usize],
) -> Result<Option<(Vec<Dispatch>, usize)>, DeviceError> {
    let Some(&first) = nodes.first() else {
        return Ok(None);
    };
    if copy::pair_at(graph, nodes)
        && let Some(d) = copy::plan_pair(ctx, graph, [first, nodes[1]])?
    {
        return Ok(Some((d, 2)));
    }
    let jobs = matmul_jobs::run_len(graph, nodes);
    if jobs >= 2 {
        return Ok(matmul_jobs::plan(ctx, graph, &nodes[..jobs])?.map(|d| (d, jobs)));
    }
    if !matches!(graph.tensors[first].op, Op::Norm | Op::RmsNorm) || !supports(graph, first) {
        return Ok(None);
    }
    let pairs = ctx.gpu.limits.max_storage_buffers_per_shader_stage >= 10;
    let Some(mut chain) = norm::chain_at(graph, nodes, pairs) else {
        return Ok(None);
    };
    if let Some(d) = norm::plan_chain(ctx, graph, &chain)? {
        return Ok(Some((d, chain.nodes())));
    }
    if chain.then.is_some() {
        // Windows norm_pair could not bind: the chain alone (its consumers convert for themselves).
        (chain.then, chain.act) = (None, None);
        return Ok(norm::plan_chain(ctx, graph, &chain)?.map(|d| (d, chain.nodes())));
    }
    if chain.rope.is_none() {
        return Ok(None);
    }
    // Positions the host does not know: the ROPE (and SCALE) run on their own.
    (chain.rope, chain.scale) = (None, None);
    Ok(norm::plan_chain(ctx, graph, &chain)?.map(|d| (d, chain.nodes())))
}

/// The dispatches that compute the node, or `None` when it must run on the CPU after all (a tensor
/// too large to bind, an offset past u32).
pub fn plan(ctx: &Ctx, graph: &Graph, node: usize) -> Result<Option<Vec<Dispatch>>, DeviceError> {
    if !supports(graph, node) {
        return Ok(None);
    }
    match graph.tensors[node].op {
        Op::Cpy | Op::Cont | Op::Dup | Op::SetRows => copy::plan(ctx, graph, node),
        Op::Norm | Op::RmsNorm => norm::plan(ctx, graph, node),
        Op::MulMat => matmul::plan(ctx, graph, node),
        Op::GetRows => get_rows::plan(ctx, graph, node),
        Op::SoftMax => softmax::plan(ctx, graph, node),
        Op::Rope => rope::plan(ctx, graph, node),
        Op::FlashAttnExt => attention::plan(ctx, graph, node),
        _ => elementwise::plan(ctx, graph, node),
    }
}
