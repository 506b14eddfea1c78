//! The CUDA kernels on the CPU, for tests on machines without a GPU (CI): the exact sources under
//! `shaders/cuda/`, built with g++ against an emulation of CUDA's execution model
//! (`shaders/cuda/emu/`: each block's threads as coroutines, barriers and warp primitives as
//! scheduling points), driven by the CUDA device's own planners and runner. It proves the planners,
//! the parameter ABI and the kernels' arithmetic against the CPU device; it says nothing about
//! speed, memory coalescing or what only real hardware does (memory model, tensor-core timing).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use super::exec::{Plan, Queue, Report};
use super::kernels::matmul::Mma;
use super::kernels::{Family, Launch, Target};
use crate::device::cpu::CpuBuffer;
use crate::device::host_kernels::{self, HostKernel};
use crate::device::{Buffer, BufferSet, Device, DeviceCounters, DeviceError, Memory, Tally, Usage};
use crate::ggml::Graph;

/// `ggrpc_emu_launch` of emu.cpp.
type LaunchFn = unsafe extern "C" fn(
    kernel: *const std::ffi::c_char,
    grid: *const u32,
    block: *const u32,
    shared: u32,
    params: *const std::ffi::c_void,
) -> i32;

struct Lib {
    _lib: libloading::Library,
    launch: LaunchFn,
}

/// Builds the emulator library once per process (into `target/cuda-emu`, named by the sources'
/// hash, so an edited kernel is rebuilt) and loads it; the error says why it cannot.
fn library() -> Result<&'static Lib, String> {
    static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();
    LIB.get_or_init(build_and_load)
        .as_ref()
        .map_err(Clone::clone)
}

fn sources() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders/cuda");
    let mut v: Vec<PathBuf> = ["common.cuh", "emu/prelude.h", "emu/emu.cpp"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    v.extend(
        Family::ALL
            .iter()
            .map(|f| root.join(format!("{}.cu", f.file_name()))),
    );
    v
}

fn build_and_load() -> Result<Lib, String> {
    let mut all = String::new();
    for p in sources() {
        all.push_str(&std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cuda-emu");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let so = dir.join(format!(
        "libggrpc_cuda_emu-{:016x}.so",
        super::nvrtc::fnv1a(&all)
    ));
    if !so.exists() {
        let tmp = so.with_extension(format!("tmp{}", std::process::id()));
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders/cuda/emu/emu.cpp");
        let out = std::process::Command::new("g++")
            .args(["-std=c++20", "-O2", "-shared", "-fPIC", "-pthread", "-o"])
            .arg(&tmp)
            .arg(&src)
            .output()
            .map_err(|e| format!("g++ not runnable: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "g++ failed on the emulator:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::rename(&tmp, &so).map_err(|e| e.to_string())?;
    }
    // SAFETY: the library is ours, built just now from the repository's sources; loading it runs
    // no initialisers beyond C++ statics.
    let lib = unsafe { libloading::Library::new(&so) }.map_err(|e| e.to_string())?;
    // SAFETY: the symbol has exactly the `LaunchFn` signature (emu.cpp).
    let launch = unsafe { lib.get::<LaunchFn>(b"ggrpc_emu_launch\0") }
        .map(|s| *s)
        .map_err(|e| e.to_string())?;
    Ok(Lib { _lib: lib, launch })
}

/// The emulated device, or why there is none (no g++, a build error).
pub fn open() -> Result<EmuDevice, String> {
    library().map(|lib| EmuDevice {
        lib,
        used: Arc::default(),
        tally: Tally::default(),
        mma: Mma::from_env(),
    })
}

/// The emulated device, or the reason there is none (no g++); under `CI` a missing emulator fails.
#[cfg(test)]
pub fn device_or_skip(test: &str) -> Option<EmuDevice> {
    match open() {
        Ok(d) => Some(d),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: the CUDA emulator is required under CI: {e}"
            );
            eprintln!("{test}: skipped: {e}");
            None
        }
    }
}

/// What the emulated device may hold: the host's allocation bound.
fn capacity() -> u64 {
    crate::device::host::allocation_limit(None)
}

/// A CUDA device whose memory is host memory and whose kernels run in the emulator.
pub struct EmuDevice {
    lib: &'static Lib,
    used: Arc<Usage>,
    tally: Tally,
    /// Which types take the tensor-core kernel (tests pick).
    pub mma: Mma,
}

impl Target for EmuDevice {
    fn addr(&self, buf: &dyn Buffer, offset: usize, len: usize) -> Result<u64, DeviceError> {
        let b = buf
            .as_any()
            .downcast_ref::<CpuBuffer>()
            .ok_or(DeviceError::ForeignBuffer)?;
        Ok(b.ptr_at(offset, len)? as u64)
    }

    fn has(&self, _: Family) -> bool {
        true
    }

    fn arch(&self) -> u32 {
        // sm_90's paths, tensor cores included.
        90
    }

    fn mma(&self) -> Mma {
        self.mma
    }
}

struct EmuQueue(&'static Lib);

impl Queue for EmuQueue {
    type Batch = Vec<Launch>;

    fn record(&self, launches: Vec<Launch>) -> Result<Vec<Launch>, DeviceError> {
        Ok(launches)
    }

    fn submit(&self, batch: &Vec<Launch>, _replay: bool) -> Result<(), DeviceError> {
        for l in batch {
            let name = std::ffi::CString::new(l.kernel.name)
                .map_err(|_| DeviceError::op("emu", "kernel name"))?;
            let grid = [l.grid.0, l.grid.1, l.grid.2];
            let block = [l.block.0, l.block.1, l.block.2];
            // SAFETY: the parameters are the planned struct's bytes; every pointer in them was
            // range-checked against a live host buffer of this graph (`Target::addr`).
            let rc = unsafe {
                (self.0.launch)(
                    name.as_ptr(),
                    grid.as_ptr(),
                    block.as_ptr(),
                    l.shared,
                    l.params().as_ptr().cast(),
                )
            };
            if rc != 0 {
                let why = match rc {
                    1 => "unknown kernel",
                    2 => "threads of a block deadlocked at different barriers",
                    3 => "too much dynamic shared memory",
                    _ => "emulator error",
                };
                return Err(DeviceError::op("emu", format!("{}: {why}", l.kernel.name)));
            }
        }
        Ok(())
    }

    fn synchronize(&self) -> Result<(), DeviceError> {
        Ok(())
    }

    fn launches(batch: &Vec<Launch>) -> usize {
        batch.len()
    }
}

impl EmuDevice {
    /// Runs `graph` with `host` for the nodes without a kernel.
    pub fn compute_with(
        &self,
        graph: &Graph,
        buffers: &BufferSet,
        host: HostKernel,
    ) -> Result<Report, DeviceError> {
        let alloc = |size| self.alloc(size);
        let (report, counts) = self.tally.graph_counts(|| {
            Plan::new(
                self,
                0,
                EmuQueue(self.lib),
                alloc,
                &self.tally,
                graph,
                buffers,
            )?
            .run(self, &self.tally, graph, buffers, host, false)
        })?;
        Ok(Report { counts, ..report })
    }
}

impl Device for EmuDevice {
    fn name(&self) -> &str {
        "CUDAEMU0"
    }

    fn description(&self) -> String {
        "the CUDA kernels in the CPU emulator".into()
    }

    fn memory(&self) -> Memory {
        Memory {
            free: capacity().saturating_sub(self.used.bytes()),
            total: capacity(),
        }
    }

    fn alignment(&self) -> u64 {
        128
    }

    fn max_size(&self) -> u64 {
        capacity()
    }

    fn alloc(&self, size: usize) -> Option<Arc<dyn Buffer>> {
        crate::device::reserve_and_alloc(&self.used, Some(capacity()), size, |used| {
            CpuBuffer::new(size, used)
        })
    }

    fn copy(
        &self,
        _: &dyn Buffer,
        _: usize,
        _: &dyn Buffer,
        _: usize,
        _: usize,
    ) -> Result<bool, DeviceError> {
        Ok(false)
    }

    fn check_graph(&self, graph: &Graph) -> Result<(), DeviceError> {
        crate::device::host_kernels::check_graph(graph)
    }

    fn compute(&self, graph: &Graph, buffers: &BufferSet) -> Result<(), DeviceError> {
        self.compute_with(graph, buffers, host_kernels::run)
            .map(|_| ())
    }

    fn counters(&self) -> DeviceCounters {
        self.tally.snapshot(&self.used)
    }
}
