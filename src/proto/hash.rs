//! FNV-1a 64, the hash the client uses to name cached tensor data.

pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues an FNV-1a-64 hash over `data` (start with `FNV_OFFSET`).
pub fn fnv1a_update(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// FNV-1a-64 of `data`.
pub fn fnv1a(data: &[u8]) -> u64 {
    fnv1a_update(FNV_OFFSET, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_from_protocol_md() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        let seq: Vec<u8> = (0..16).collect();
        assert_eq!(fnv1a(&seq), 0x7c84dc9477851775);
        assert_eq!(fnv1a_update(fnv1a(&seq[..5]), &seq[5..]), fnv1a(&seq));
    }
}
