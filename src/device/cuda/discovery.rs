//! CUDA discovery: `CUDA0…` in driver order. cudarc loads libcuda and libnvrtc on first use and panics
//! when they are missing, so both are probed first: a machine without the driver simply has no CUDA
//! devices, and `--list-devices` and the default selection work everywhere.

use std::sync::{Arc, OnceLock};

use cudarc::driver::CudaContext;
use cudarc::driver::sys::CUdevice_attribute as Attr;

use crate::device::{Candidate, Device, DeviceKind, DeviceOptions};

/// What the driver says about one device, read once at discovery.
#[derive(Clone, Debug)]
pub struct Found {
    pub ordinal: usize,
    pub name: String,
    pub model: String,
    pub capability: (i32, i32),
    /// `dddd:bb:dd.f`, lowercase, as wgpu reports it for the same GPU.
    pub pci: String,
}

/// Whether libcuda can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names; calls nothing in it.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether libnvrtc (needed to compile the kernels) can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: as above, a dlopen probe only.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The driver's version as `major.minor`, e.g. `12.8`.
pub fn driver_version() -> Option<String> {
    if !driver_present() {
        return None;
    }
    let mut v = 0i32;
    // SAFETY: the library is present (probed above); the call writes one int.
    let r = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    (r == cudarc::driver::sys::CUresult::CUDA_SUCCESS)
        .then(|| format!("{}.{}", v / 1000, (v % 1000) / 10))
}

/// Every CUDA device, enumerated once per process. A driver that loads but fails (no device, a
/// symbol missing in an old driver) gives an empty list with a logged reason, never a panic.
pub fn found() -> &'static [Found] {
    static FOUND: OnceLock<Vec<Found>> = OnceLock::new();
    FOUND.get_or_init(|| {
        if !driver_present() {
            return Vec::new();
        }
        let probe = std::panic::catch_unwind(enumerate);
        match probe {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::debug!("CUDA: no devices ({e})");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!("CUDA: the driver library failed to load; CUDA devices disabled");
                Vec::new()
            }
        }
    })
}

fn enumerate() -> Result<Vec<Found>, cudarc::driver::DriverError> {
    cudarc::driver::result::init()?;
    let n = cudarc::driver::result::device::get_count()?;
    let mut out = Vec::new();
    for ordinal in 0..n.max(0) as usize {
        let dev = cudarc::driver::result::device::get(ordinal as i32)?;
        let attr = |a| {
            // SAFETY: `dev` is a valid device handle from the driver.
            unsafe { cudarc::driver::result::device::get_attribute(dev, a) }.unwrap_or(0)
        };
        let pci = format!(
            "{:04x}:{:02x}:{:02x}.0",
            attr(Attr::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID),
            attr(Attr::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID),
            attr(Attr::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)
        );
        out.push(Found {
            ordinal,
            name: format!("CUDA{ordinal}"),
            model: cudarc::driver::result::device::get_name(dev)?,
            capability: (
                attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
            ),
            pci,
        });
    }
    Ok(out)
}

/// The architecture kernels are compiled for (`90` for compute capability 9.0).
pub fn arch(f: &Found) -> u32 {
    (f.capability.0.max(0) * 10 + f.capability.1.max(0)) as u32
}

/// Every CUDA device as a `Candidate`. Kernels need libnvrtc, or PTX cached for the device's
/// architecture (`nvrtc::fill_cache`); without either the device is still listed (opening it says
/// why it cannot serve) but not picked by default.
pub fn candidates() -> Vec<Candidate> {
    let nvrtc = nvrtc_present();
    found()
        .iter()
        .map(|f| {
            let f = f.clone();
            let nvrtc = nvrtc || super::nvrtc::cache_is_complete(arch(&f));
            Candidate {
                name: f.name.clone(),
                kind: if nvrtc {
                    DeviceKind::Gpu
                } else {
                    DeviceKind::Software
                },
                pci: Some(f.pci.clone()),
                vendor: Some(crate::device::NVIDIA),
                cuda: true,
                open: Box::new(move |o: &DeviceOptions| {
                    if !nvrtc {
                        return Err(crate::device::DeviceError::op(
                            "open",
                            format!(
                                "{}: libnvrtc.so.12 not found and no cached PTX for sm_{} (install \
                                 the CUDA toolkit or PyPI nvidia-cuda-nvrtc-cu12 and put its lib \
                                 on LD_LIBRARY_PATH)",
                                f.name,
                                arch(&f)
                            ),
                        ));
                    }
                    Ok(Arc::new(super::CudaDevice::open(&f, o)?) as Arc<dyn Device>)
                }),
            }
        })
        .collect()
}

/// `CUDAEMU0`: the CUDA kernels in the CPU emulator, offered when `GGRPC_CUDA_EMU` is set (tests drive
/// the CUDA planners and kernels with a real client on machines without a GPU; served only when named).
pub fn emulator_candidate() -> Option<Candidate> {
    std::env::var_os("GGRPC_CUDA_EMU")?;
    Some(Candidate {
        name: "CUDAEMU0".into(),
        kind: DeviceKind::Software,
        pci: None,
        vendor: None,
        cuda: false,
        open: Box::new(|_: &DeviceOptions| {
            super::emu::open()
                .map(|d| Arc::new(d) as Arc<dyn Device>)
                .map_err(|e| crate::device::DeviceError::op("open", e))
        }),
    })
}

/// The primary context of `ordinal`.
pub fn context(ordinal: usize) -> Result<Arc<CudaContext>, cudarc::driver::DriverError> {
    CudaContext::new(ordinal)
}
