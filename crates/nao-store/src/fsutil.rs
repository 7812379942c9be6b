//! File-system primitives the store's crash safety rests on: a file becomes visible under
//! its final name only by `rename` after its data is fsynced, and the directory is fsynced
//! after the rename, so a crash or `kill -9` leaves either the old state or the new one.

use crate::error::{Result, StoreError};
use crate::name::Digest;
use crate::Progress;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Buffer size for hashing and copying (large enough that syscalls do not dominate).
pub const CHUNK: usize = 1 << 20;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory (hidden,
/// so listings skip it), fsync, rename over `path`, fsync the directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent(path)?;
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let tmp = temp_name(path);
    let res = (|| {
        let mut f = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| StoreError::io(&tmp, e))?;
        f.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Moves a complete, fsynced file into place (same file system) and makes it durable.
pub fn install(from: &Path, to: &Path) -> Result<()> {
    let dir = parent(to)?;
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    File::open(from)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(from, e))?;
    fs::rename(from, to).map_err(|e| StoreError::io(to, e))?;
    sync_dir(dir)
}

/// fsyncs a directory so that renames and unlinks in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

fn parent(path: &Path) -> Result<&Path> {
    path.parent().ok_or_else(|| {
        StoreError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no parent"),
        )
    })
}

/// `.<name>.tmp-<pid>-<nanos>` next to `path`: unique per writer, hidden from listings.
fn temp_name(path: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{nanos}", std::process::id()))
}

/// The sha256 and length of everything `r` yields, reporting progress.
pub fn hash_reader(r: &mut impl Read, what: &Path, p: &mut dyn Progress) -> Result<(Digest, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::io(what, e)),
        };
        h.update(&buf[..k]);
        n += k as u64;
        p.advance(k as u64);
    }
    Ok((Digest::from_bytes(h.finalize().into()), n))
}

/// The sha256 and length of a file.
pub fn hash_file(path: &Path, p: &mut dyn Progress) -> Result<(Digest, u64)> {
    let mut f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let len = f.metadata().map_err(|e| StoreError::io(path, e))?.len();
    p.begin(&format!("verifying {}", short(path)), Some(len), 0);
    let r = hash_reader(&mut f, path, p);
    p.end();
    r
}

/// Copies `src` to a new file `dst` (which must not exist), hashing on the way, and fsyncs it.
pub fn copy_hashing(src: &Path, dst: &Path, p: &mut dyn Progress) -> Result<(Digest, u64)> {
    let mut from = File::open(src).map_err(|e| StoreError::io(src, e))?;
    let len = from.metadata().map_err(|e| StoreError::io(src, e))?.len();
    let mut to = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dst)
        .map_err(|e| StoreError::io(dst, e))?;
    p.begin(&format!("copying {}", short(src)), Some(len), 0);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let k = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::io(src, e)),
        };
        h.update(&buf[..k]);
        to.write_all(&buf[..k])
            .map_err(|e| StoreError::io(dst, e))?;
        n += k as u64;
        p.advance(k as u64);
    }
    to.sync_all().map_err(|e| StoreError::io(dst, e))?;
    p.end();
    Ok((Digest::from_bytes(h.finalize().into()), n))
}

/// The last path component, for progress labels.
pub fn short(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;

    #[test]
    fn hashes_known_bytes() {
        // `printf abc | sha256sum`
        let (d, n) = hash_reader(&mut &b"abc"[..], Path::new("x"), &mut NoProgress).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            d.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("nao-store-fsutil-{}", std::process::id()));
        let p = dir.join("f.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.json")]);
        let _ = fs::remove_dir_all(&dir);
    }
}
