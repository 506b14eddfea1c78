//! What every device shares on the host: its memory, bounded for the devices that allocate from it
//! (the CPU device, software GPU adapters: without `-m` such a device still refuses allocations past
//! what the host can hold, so no sequence of valid requests gets the server killed for memory), and
//! the guard around host kernels.

use crate::device::DeviceError;

/// Runs host kernel `f` for an `op` node; a panic in it (a kernel bug, never the client's input,
/// which is validated before) becomes a `DeviceError` that closes only the client's connection.
pub fn guarded(op: &str, f: impl FnOnce() -> Result<(), DeviceError>) -> Result<(), DeviceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(DeviceError::Panic(format!("{op}: {msg}")))
    })
}

/// Kept free for the server itself (decoded graphs, payloads, stacks) and the rest of the system.
const MIN_MARGIN: u64 = 512 << 20;

/// Physical RAM in bytes (`MemTotal`; 8 GiB when it cannot be read).
pub fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(8 << 30)
}

/// What a host-memory device may hand out in all: physical RAM less an eighth (at least 512 MiB).
pub fn allocatable(physical: u64) -> u64 {
    physical.saturating_sub((physical / 8).max(MIN_MARGIN))
}

/// The bound a host-memory device enforces: `allocatable`, lowered by `-m`.
pub fn allocation_limit(cap: Option<u64>) -> u64 {
    let host = allocatable(physical_memory());
    cap.map_or(host, |c| c.min(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_kernel_becomes_an_error() {
        let e = guarded("SCALE", || panic!("boom")).unwrap_err();
        assert!(
            matches!(&e, DeviceError::Panic(m) if m == "SCALE: boom"),
            "{e:?}"
        );
        assert!(guarded("ADD", || Ok(())).is_ok());
    }

    #[test]
    fn the_margin_is_an_eighth_or_512_mib() {
        assert_eq!(allocatable(24 << 30), 21 << 30);
        assert_eq!(allocatable(2 << 30), (2 << 30) - (512 << 20));
        assert_eq!(allocatable(100 << 20), 0);
        assert!(allocation_limit(None) < physical_memory());
        assert_eq!(allocation_limit(Some(1 << 20)), 1 << 20);
    }
}
