//! The local tensor cache (`-c`): files named by the FNV-1a-64 of their bytes, as the reference names them.
//! Unlike the reference, a file is used only if its contents still hash to its name.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::proto::hash::{FNV_OFFSET, fnv1a, fnv1a_update};

pub struct Cache {
    dir: PathBuf,
}

/// Distinguishes temp files of concurrent writers.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl Cache {
    /// Uses (and creates) `dir`.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        Ok(Cache { dir })
    }

    /// `$LLAMA_CACHE/rpc`, else `$XDG_CACHE_HOME/llama.cpp/rpc`, else `$HOME/.cache/llama.cpp/rpc`
    /// (macOS: `~/Library/Caches/llama.cpp/rpc`), as the reference resolves it.
    pub fn default_dir() -> PathBuf {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(base) = env("LLAMA_CACHE") {
            return base.join("rpc");
        }
        let base = if cfg!(target_os = "macos") {
            env("HOME").map(|h| h.join("Library/Caches"))
        } else if cfg!(windows) {
            env("LOCALAPPDATA")
        } else {
            env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))
        };
        base.unwrap_or_else(|| PathBuf::from("."))
            .join("llama.cpp")
            .join("rpc")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, hash: u64) -> PathBuf {
        self.dir.join(format!("{hash:016x}"))
    }

    /// The length of the cached file for `hash`, if there is one.
    pub fn len_of(&self, hash: u64) -> Option<u64> {
        fs::metadata(self.path(hash))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// The file's bytes if it is exactly `len` long and hashes to `hash`; anything else is a miss.
    pub fn load(&self, hash: u64, len: u64) -> Option<Vec<u8>> {
        let mut f = File::open(self.path(hash)).ok()?;
        let mut data = Vec::with_capacity(usize::try_from(len).ok()?);
        Read::by_ref(&mut f)
            .take(len.saturating_add(1))
            .read_to_end(&mut data)
            .ok()?;
        if data.len() as u64 != len || fnv1a(&data) != hash {
            tracing::warn!(
                hash = format!("{hash:016x}"),
                "cache file is corrupt or truncated: ignored"
            );
            return None;
        }
        Some(data)
    }

    /// Starts writing a new entry; bytes are hashed as they come and the file appears under its hash
    /// name only when `finish` renames it.
    pub fn writer(&self) -> io::Result<CacheWriter> {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".tmp-{}-{seq}", std::process::id()));
        Ok(CacheWriter {
            file: File::create(&tmp)?,
            tmp,
            hash: FNV_OFFSET,
            dir: self.dir.clone(),
        })
    }
}

pub struct CacheWriter {
    file: File,
    tmp: PathBuf,
    hash: u64,
    dir: PathBuf,
}

impl CacheWriter {
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hash = fnv1a_update(self.hash, chunk);
        self.file.write_all(chunk)
    }

    /// Publishes the file under its hash; returns the final path.
    pub fn finish(self) -> io::Result<PathBuf> {
        self.file.sync_all().ok();
        let path = self.dir.join(format!("{:016x}", self.hash));
        fs::rename(&self.tmp, &path)?;
        Ok(path)
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        // After `finish` the temp file is gone and this fails harmlessly; otherwise it cleans up.
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_load_and_reject_corruption() {
        let dir = std::env::temp_dir().join(format!("ggrpc-cache-test-{}", std::process::id()));
        let cache = Cache::open(dir.clone()).unwrap();
        let data: Vec<u8> = (0..16).collect();
        let mut w = cache.writer().unwrap();
        w.write(&data[..5]).unwrap();
        w.write(&data[5..]).unwrap();
        let path = w.finish().unwrap();
        assert_eq!(path.file_name().unwrap(), "7c84dc9477851775");
        let h = 0x7c84dc9477851775;
        assert_eq!(cache.len_of(h), Some(16));
        assert_eq!(cache.load(h, 16).unwrap(), data);
        // Truncated file: a miss, not garbage.
        fs::write(&path, &data[..8]).unwrap();
        assert_eq!(cache.load(h, 8), None);
        assert_eq!(cache.len_of(0x1234), None);
        fs::remove_dir_all(dir).unwrap();
    }
}
