//! Adapter discovery and naming: `Vulkan0…`, `Metal0…`, `DX12_0…` by backend and index.
//!
//! GL is not compiled in (no `gles` feature): llvmpipe through EGL lacks f16 and compiles big shaders
//! slowly, and every machine that has GL here also has Vulkan.

use std::sync::{Arc, OnceLock};

use crate::device::{Candidate, Device, DeviceKind, DeviceOptions};

/// One adapter as discovered, with its server name.
#[derive(Clone)]
pub struct Found {
    pub name: String,
    pub adapter: wgpu::Adapter,
}

/// The instance and adapters, enumerated once per process (discovery runs several times at startup).
fn found() -> &'static [Found] {
    static FOUND: OnceLock<Vec<Found>> = OnceLock::new();
    FOUND.get_or_init(|| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        name_adapters(adapters)
    })
}

fn name_adapters(adapters: Vec<wgpu::Adapter>) -> Vec<Found> {
    let mut counts = [0usize; 4];
    let mut out = Vec::new();
    for adapter in adapters {
        let (slot, prefix) = match adapter.get_info().backend {
            wgpu::Backend::Vulkan => (0, "Vulkan"),
            wgpu::Backend::Metal => (1, "Metal"),
            wgpu::Backend::Dx12 => (2, "DX12_"),
            wgpu::Backend::Gl => (3, "GL"),
            _ => continue,
        };
        out.push(Found {
            name: format!("{prefix}{}", counts[slot]),
            adapter,
        });
        counts[slot] += 1;
    }
    out
}

/// Software rasterizers (lavapipe's `llvmpipe`, WARP) are served only when named with `--device`.
pub fn kind_of(info: &wgpu::AdapterInfo) -> DeviceKind {
    match info.device_type {
        wgpu::DeviceType::Cpu => DeviceKind::Software,
        _ => DeviceKind::Gpu,
    }
}

/// Every adapter as a `Candidate` for `device::select`.
pub fn candidates() -> Vec<Candidate> {
    found()
        .iter()
        .map(|f| {
            let f = f.clone();
            let info = f.adapter.get_info();
            Candidate {
                name: f.name.clone(),
                kind: kind_of(&info),
                pci: Some(info.device_pci_bus_id.to_lowercase()).filter(|p| !p.is_empty()),
                vendor: Some(info.vendor),
                cuda: false,
                open: Box::new(move |o: &DeviceOptions| {
                    Ok(Arc::new(super::WgpuDevice::open(&f.name, &f.adapter, o)?)
                        as Arc<dyn Device>)
                }),
            }
        })
        .collect()
}

/// The first adapter found (tests run on it).
pub fn first_adapter() -> Option<Found> {
    found().first().cloned()
}

/// The memory we report, before our own allocations are subtracted.
///
/// wgpu exposes no heap sizes or budgets. The honest numbers we have: a software adapter allocates host
/// memory, so its total is physical RAM; for a hardware adapter the only guaranteed figure is
/// `max_buffer_size` (one buffer of that size can be created), so that is the total we claim. `-m`
/// caps either. "Free" is total minus what this process allocated on the device. A software adapter
/// enforces its total on allocation (`host::allocation_limit`): it shares the host's RAM.
pub fn total_memory(info: &wgpu::AdapterInfo, limits: &wgpu::Limits, cap: Option<u64>) -> u64 {
    let raw = match info.device_type {
        wgpu::DeviceType::Cpu => return crate::device::host::allocation_limit(cap),
        _ => limits.max_buffer_size,
    };
    cap.map_or(raw, |c| c.min(raw))
}
