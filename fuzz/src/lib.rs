//! Helpers shared by the fuzz targets.

/// Splits `data` into request frames (`u8 cmd | u64 len | payload`), as a client sends them. A length
/// past the end takes what is left, so truncated inputs still reach the decoders.
pub fn frames(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&cmd, rest) = data.split_first()?;
        let len = rest.get(..8)?;
        let len = u64::from_le_bytes(len.try_into().ok()?);
        let rest = &rest[8..];
        let n = usize::try_from(len).unwrap_or(usize::MAX).min(rest.len());
        let (payload, tail) = rest.split_at(n);
        data = tail;
        Some((cmd, payload))
    })
}

/// Buffers as the server lays them out: handle `h` has its window at `((h & 0x3fffff) + 1) << 40`.
/// Every non-zero handle below 64 exists and is 1 MiB long, so recorded graphs resolve.
pub struct FakeBuffers;

impl ggrpc::proto::BufferLookup for FakeBuffers {
    fn buffer(&self, h: u64) -> Option<(u64, u64)> {
        (h != 0 && h < 64).then(|| (((h & 0x3f_ffff) + 1) << 40, 1 << 20))
    }
}
