//! NVRTC: the kernels compiled for the device's architecture when it opens, cached on disk keyed by
//! source hash, architecture and NVRTC version (a second start loads them without compiling).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx};

use super::kernels::{Family, Kernel};
use crate::device::DeviceError;

/// NVRTC options for `arch` (`80` for sm_80): no include paths, no fast math (ggml's numerics).
pub fn compile_options(arch: u32) -> CompileOptions {
    CompileOptions {
        options: vec![
            format!("--gpu-architecture=compute_{arch}"),
            "-default-device".into(),
            "--std=c++17".into(),
        ],
        ..Default::default()
    }
}

/// NVRTC's version, `(major, minor)`; `None` without libnvrtc.
pub fn nvrtc_version() -> Option<(i32, i32)> {
    if !super::discovery::nvrtc_present() {
        return None;
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above; cudarc would panic otherwise); writes two ints.
    let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    (r == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS).then_some((major, minor))
}

/// Compiles `family` to PTX text for `arch`; the error carries NVRTC's log.
pub fn compile(family: Family, arch: u32) -> Result<String, String> {
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(family.code(), compile_options(arch))
        .map_err(|e| format!("{}.cu: {e:?}", family.file_name()))?;
    Ok(ptx.to_src())
}

/// FNV-1a: a hash that is the same in every build (the cache key must outlive the binary).
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where compiled PTX is kept: `$GGRPC_CUDA_CACHE`, else `$XDG_CACHE_HOME/ggrpc/cuda`, else
/// `~/.cache/ggrpc/cuda`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("GGRPC_CUDA_CACHE") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("ggrpc").join("cuda"))
}

/// The cache file name of `family` for `arch`, without the NVRTC version and extension.
fn cache_prefix(family: Family, arch: u32) -> String {
    format!(
        "{}-{:016x}-sm{arch}-nvrtc",
        family.file_name(),
        fnv1a(&family.code())
    )
}

/// A cached PTX of `family` for `arch` from any NVRTC version (what a machine without libnvrtc can
/// load: the driver compiles PTX itself).
fn any_cached(dir: &Path, family: Family, arch: u32) -> Option<String> {
    let prefix = cache_prefix(family, arch);
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".ptx"))
        })
        .collect();
    names.sort();
    names
        .iter()
        .rev()
        .find_map(|p| std::fs::read_to_string(p).ok())
}

/// Whether every family is cached for `arch` (the device then opens without libnvrtc).
pub fn cache_is_complete(arch: u32) -> bool {
    cache_dir().is_some_and(|d| {
        Family::ALL
            .iter()
            .all(|&f| any_cached(&d, f, arch).is_some())
    })
}

/// Compiles every family for each of `archs` into `dir` under the names the cache uses (to ship
/// kernels to machines that have the driver but no libnvrtc). Returns the files written.
pub fn fill_cache(dir: &Path, archs: &[u32]) -> Result<usize, String> {
    let (maj, min) = nvrtc_version().ok_or("libnvrtc cannot be loaded")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut n = 0;
    for &arch in archs {
        for family in Family::ALL {
            let ptx = compile(family, arch)?;
            let file = format!("{}{maj}.{min}.ptx", cache_prefix(family, arch));
            std::fs::write(dir.join(file), ptx).map_err(|e| e.to_string())?;
            n += 1;
        }
    }
    Ok(n)
}

/// The PTX of `family` for `arch`: from the cache when this NVRTC compiled it before, else compiled
/// and cached; without libnvrtc, whatever the cache holds.
fn cached_ptx(family: Family, arch: u32) -> Result<String, String> {
    let dir = cache_dir();
    let Some((maj, min)) = nvrtc_version() else {
        return dir
            .and_then(|d| any_cached(&d, family, arch))
            .ok_or_else(|| {
                format!(
                    "{}.cu: no libnvrtc to compile it and no cached PTX for sm_{arch}",
                    family.file_name()
                )
            });
    };
    let path = dir.map(|d| d.join(format!("{}{maj}.{min}.ptx", cache_prefix(family, arch))));
    if let Some(p) = &path
        && let Ok(ptx) = std::fs::read_to_string(p)
    {
        return Ok(ptx);
    }
    let t = std::time::Instant::now();
    let ptx = compile(family, arch)?;
    tracing::info!(
        family = family.file_name(),
        arch,
        ms = t.elapsed().as_millis() as u64,
        "CUDA: compiled kernels"
    );
    if let Some(p) = &path {
        // Best effort, written whole then renamed, so a reader never sees half a file.
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        let ok = p
            .parent()
            .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
            && std::fs::write(&tmp, &ptx).is_ok()
            && std::fs::rename(&tmp, p).is_ok();
        if !ok {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(ptx)
}

/// The device's kernels: every family compiled (or read from the cache) and loaded when the device
/// opens, so a family that fails is known before any graph is planned (its nodes run on the host).
pub struct Kernels {
    arch: u32,
    modules: HashMap<Family, Arc<CudaModule>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

impl Kernels {
    /// Loads every family for `arch` into `ctx`; a family that does not compile or load is logged
    /// and left out.
    pub fn load(ctx: &Arc<CudaContext>, arch: u32) -> Self {
        let mut modules = HashMap::new();
        for family in Family::ALL {
            let loaded = cached_ptx(family, arch).and_then(|ptx| {
                ctx.load_module(Ptx::from_src(ptx))
                    .map_err(|e| format!("{}.cu: load: {e}", family.file_name()))
            });
            match loaded {
                Ok(m) => {
                    modules.insert(family, m);
                }
                Err(e) => tracing::error!("CUDA: {e}; its ops run on the host"),
            }
        }
        Kernels {
            arch,
            modules,
            functions: Mutex::default(),
        }
    }

    pub fn arch(&self) -> u32 {
        self.arch
    }

    pub fn has(&self, family: Family) -> bool {
        self.modules.contains_key(&family)
    }

    /// The loaded function for `k`.
    pub fn function(&self, k: Kernel) -> Result<CudaFunction, DeviceError> {
        let missing = || DeviceError::op("cuda", format!("kernel {} is not loaded", k.name));
        let mut fns = self.functions.lock().map_err(|_| missing())?;
        if let Some(f) = fns.get(k.name) {
            return Ok(f.clone());
        }
        let f = self
            .modules
            .get(&k.family)
            .ok_or_else(missing)?
            .load_function(k.name)
            .map_err(|e| DeviceError::op("cuda", format!("kernel {}: {e}", k.name)))?;
        fns.insert(k.name, f.clone());
        Ok(f)
    }
}

#[cfg(test)]
mod tests;
