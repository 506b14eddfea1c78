//! Buffers, copies, memory accounting and discovery on a real adapter.

use std::sync::Arc;

use super::{device_or_skip, device_with};
use crate::device::{Buffer, Device, DeviceKind, DeviceOptions};

fn read(b: &Arc<dyn Buffer>, off: usize, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    b.read(off, &mut v).unwrap();
    v
}

#[test]
fn write_read_fill_at_unaligned_edges() {
    let Some(dev) = device_or_skip("write_read_fill_at_unaligned_edges") else {
        return;
    };
    let b = dev.alloc(37).unwrap();
    assert_eq!(b.size(), 37);
    assert_eq!(read(&b, 0, 37), vec![0; 37], "new buffers are zeroed");
    b.fill(0, 37, 0xab).unwrap();
    b.write(3, &[1, 2, 3, 4, 5, 6]).unwrap();
    b.write(36, &[9]).unwrap();
    let mut want = vec![0xab; 37];
    want[3..9].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
    want[36] = 9;
    assert_eq!(read(&b, 0, 37), want);
    assert_eq!(read(&b, 5, 3), want[5..8]);
    b.fill(1, 6, 0).unwrap();
    b.fill(8, 4, 0).unwrap();
    want[1..7].fill(0);
    want[8..12].fill(0);
    assert_eq!(read(&b, 0, 37), want);
    assert!(b.write(35, &[0; 3]).is_err());
    assert!(b.read(usize::MAX, &mut [0u8; 2]).is_err());
    assert!(b.fill(30, 8, 1).is_err());
    b.fill(37, 0, 1).unwrap();
}

/// Every unaligned write, at every head and tail offset: the bytes around it keep their value, and it
/// costs one submission (the edge words' kernel) and no readback.
#[test]
fn unaligned_writes_keep_their_neighbours_without_readbacks() {
    let Some(dev) = device_or_skip("unaligned_writes_keep_their_neighbours_without_readbacks")
    else {
        return;
    };
    let b = dev.alloc(300).unwrap();
    let mut want: Vec<u8> = (0..300).map(|i| (i * 7 + 1) as u8).collect();
    b.write(0, &want).unwrap();
    let mut n = 0u8;
    for off in [0, 1, 2, 3, 5, 254, 257] {
        for len in 1..=11 {
            n = n.wrapping_add(1);
            let data: Vec<u8> = (0..len)
                .map(|i| n.wrapping_mul(31).wrapping_add(i as u8))
                .collect();
            let before = dev.counters();
            b.write(off, &data).unwrap();
            let after = dev.counters();
            let aligned = off % 4 == 0 && len % 4 == 0;
            assert_eq!(
                (
                    after.submits - before.submits,
                    after.readbacks - before.readbacks
                ),
                (u64::from(!aligned), 0),
                "write of {len} at {off}"
            );
            want[off..off + len].copy_from_slice(&data);
        }
        assert_eq!(read(&b, 0, 300), want, "writes at {off}");
    }
}

#[test]
fn fill_spans_several_binding_windows() {
    let Some(dev) = device_with("fill_spans_several_binding_windows", Some(4096)) else {
        return;
    };
    let b = dev.alloc(20_003).unwrap();
    b.fill(5, 19_990, 0x7e).unwrap();
    let v = read(&b, 0, 20_003);
    assert!(v[..5].iter().all(|&x| x == 0));
    assert!(v[5..19_995].iter().all(|&x| x == 0x7e));
    assert!(v[19_995..].iter().all(|&x| x == 0));
}

#[test]
fn copy_between_buffers_and_memory_accounting() {
    let Some(dev) = device_or_skip("copy_between_buffers_and_memory_accounting") else {
        return;
    };
    let before = dev.memory();
    let (a, b) = (dev.alloc(64).unwrap(), dev.alloc(64).unwrap());
    assert_eq!(dev.memory().free, before.free - 128);
    a.write(0, &(0..64).collect::<Vec<u8>>()).unwrap();
    assert!(dev.copy(a.as_ref(), 8, b.as_ref(), 16, 32).unwrap());
    assert_eq!(read(&b, 16, 32), (8..40).collect::<Vec<u8>>());
    // Unaligned or same-buffer copies are left to the session (read + write through the host).
    assert!(!dev.copy(a.as_ref(), 1, b.as_ref(), 0, 4).unwrap());
    assert!(!dev.copy(a.as_ref(), 0, a.as_ref(), 32, 4).unwrap());
    assert!(dev.copy(a.as_ref(), 60, b.as_ref(), 0, 8).is_err());
    drop((a, b));
    assert_eq!(dev.memory(), before);
    assert!(dev.alloc(usize::MAX / 2).is_none());
    assert!(dev.max_size() >= 1 << 27);
    assert_eq!(dev.alignment() % 4, 0);
}

#[test]
fn memory_cap_refuses_allocations() {
    let Some(found) = super::super::discovery::first_adapter() else {
        let _ = device_or_skip("memory_cap_refuses_allocations");
        return;
    };
    let opts = DeviceOptions {
        threads: 1,
        mem_cap: Some(1000),
    };
    let dev = super::super::WgpuDevice::open(&found.name, &found.adapter, &opts).unwrap();
    assert_eq!(dev.memory().total, 1000);
    let a = dev.alloc(600).unwrap();
    assert!(dev.alloc(600).is_none());
    assert_eq!(dev.memory().free, 400);
    drop(a);
    assert!(dev.alloc(1000).is_some());
}

/// A software adapter allocates host RAM: without `-m` it still stops short of the host's memory.
#[test]
fn software_adapters_are_bounded_by_host_memory() {
    let Some(found) = super::super::discovery::first_adapter() else {
        let _ = device_or_skip("software_adapters_are_bounded_by_host_memory");
        return;
    };
    if found.adapter.get_info().device_type != wgpu::DeviceType::Cpu {
        println!("skipped: {} is a hardware adapter", found.name);
        return;
    }
    let opts = DeviceOptions {
        threads: 1,
        mem_cap: None,
    };
    let dev = super::super::WgpuDevice::open(&found.name, &found.adapter, &opts).unwrap();
    let total = dev.memory().total;
    assert_eq!(total, crate::device::host::allocation_limit(None));
    assert!(total < crate::device::host::physical_memory());
    assert!(dev.alloc(total as usize + 1).is_none());
    let a = dev.alloc(4096).unwrap();
    assert_eq!(dev.memory().free, total - 4096);
    drop(a);
}

#[test]
fn discovery_names_and_software_adapters_need_a_name() {
    let Some(dev) = device_or_skip("discovery_names_and_software_adapters_need_a_name") else {
        return;
    };
    let all = crate::device::discover();
    assert_eq!(all.last().map(|c| c.name.as_str()), Some("CPU"));
    let gpu_names: Vec<&str> = all
        .iter()
        .filter(|c| c.name != "CPU")
        .map(|c| c.name.as_str())
        .collect();
    assert!(gpu_names.contains(&dev.name()));
    for n in &gpu_names {
        let (prefix, index) = n.split_at(n.find(|c: char| c.is_ascii_digit()).unwrap());
        assert!(["Vulkan", "Metal", "DX12_", "GL"].contains(&prefix), "{n}");
        index.parse::<usize>().unwrap();
    }
    let opts = DeviceOptions {
        threads: 1,
        mem_cap: None,
    };
    let software: Vec<String> = all
        .iter()
        .filter(|c| c.kind == DeviceKind::Software)
        .map(|c| c.name.clone())
        .collect();
    if !all.iter().any(|c| c.kind == DeviceKind::Gpu) {
        let picked = crate::device::select(&[], &opts).unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(
            picked[0].name(),
            "CPU",
            "software adapters are not served by default"
        );
    }
    if let Some(name) = software.first() {
        let picked = crate::device::select(&[name.to_lowercase()], &opts).unwrap();
        assert_eq!(picked[0].name(), name);
    }
}

#[test]
fn validation_errors_become_device_errors() {
    let Some(dev) = device_or_skip("validation_errors_become_device_errors") else {
        return;
    };
    let gpu = &dev.gpu;
    let err = gpu
        .scoped("test", || {
            // Mapping a storage buffer for reading is invalid usage.
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        })
        .unwrap_err();
    assert!(err.to_string().starts_with("test: wgpu:"), "{err}");
    // The device still works afterwards.
    let b = dev.alloc(8).unwrap();
    b.write(0, &[1; 8]).unwrap();
}
