//! `pull`: bring a model into the store from a URL (resumable download), a local file
//! (copied, or linked in place) or a known name (the PyPI source). Each path ends the same
//! way: a file whose sha256 is known and checked is renamed into `blobs/`, then the
//! manifest is written, so a name never points at a blob that is not complete.

use crate::error::{Result, StoreError};
use crate::fsutil::{copy_hashing, hash_file};
use crate::http::{discard_partial, url_file_name, Http};
use crate::name::{Digest, ModelName};
use crate::store::{Health, Manifest, Source, Store};
use crate::{pypi, Progress};
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What the user asked to pull.
#[derive(Clone, Debug, PartialEq)]
pub enum PullSpec {
    Url(String),
    Path(PathBuf),
    Name(ModelName),
}

impl PullSpec {
    /// `http(s)://…` is a URL; an existing file is a path; anything that looks like a
    /// path but does not exist is an error; the rest must be a valid model name.
    pub fn parse(s: &str) -> Result<PullSpec> {
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(PullSpec::Url(s.to_string()));
        }
        let p = Path::new(s);
        if p.is_file() {
            return Ok(PullSpec::Path(p.to_path_buf()));
        }
        let looks_like_path = s.starts_with('.') && s.contains('/')
            || s.ends_with(".gguf")
            || s.ends_with(".safetensors");
        if looks_like_path || p.exists() {
            return Err(StoreError::NoSuchFile(p.to_path_buf()));
        }
        Ok(PullSpec::Name(ModelName::parse(s)?))
    }
}

#[derive(Default)]
pub struct PullOptions {
    /// Store under this name instead of one derived from the file name.
    pub name: Option<ModelName>,
    /// The sha256 the file must have.
    pub digest: Option<Digest>,
    /// For a local file: import it in place instead of copying.
    pub link: bool,
}

#[derive(Debug)]
pub struct Pulled {
    pub name: ModelName,
    pub manifest: Manifest,
    /// The store already had it (nothing was transferred).
    pub already: bool,
}

pub fn pull(
    store: &Store,
    spec: &PullSpec,
    opts: &PullOptions,
    p: &mut dyn Progress,
) -> Result<Pulled> {
    if opts.link && !matches!(spec, PullSpec::Path(_)) {
        return Err(StoreError::InvalidName {
            name: format!("{spec:?}"),
            reason: "--link needs a local file",
        });
    }
    match spec {
        PullSpec::Name(name) => pull_name(store, name, p),
        PullSpec::Path(path) => pull_path(store, path, opts, p),
        PullSpec::Url(url) => pull_url(store, url, opts, p),
    }
}

fn pull_name(store: &Store, name: &ModelName, p: &mut dyn Progress) -> Result<Pulled> {
    if let Some(m) = store.read_manifest(name)? {
        if store.check(&m, false, p)? == Health::Ok {
            return Ok(Pulled {
                name: name.clone(),
                manifest: m,
                already: true,
            });
        }
        p.note(&format!("{name} is damaged; fetching it again"));
    }
    let catalog = pypi::catalog()?;
    let entry = catalog
        .iter()
        .find(|e| e.name == name.to_string())
        .ok_or_else(|| StoreError::UnknownModel {
            name: name.to_string(),
            known: catalog
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let http = Http::new();
    let manifest = pypi::pull(store, &http, entry, &pypi::index_url(), p)?;
    Ok(Pulled {
        name: name.clone(),
        manifest,
        already: false,
    })
}

fn pull_path(
    store: &Store,
    path: &Path,
    opts: &PullOptions,
    p: &mut dyn Progress,
) -> Result<Pulled> {
    let abs = path.canonicalize().map_err(|e| StoreError::io(path, e))?;
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => ModelName::from_file_name(&crate::fsutil::short(&abs))?,
    };
    let format = sniff_format(&abs);
    let (digest, size, source) = if opts.link {
        let (d, n) = hash_file(&abs, p)?;
        check_expected(opts.digest, d, &abs)?;
        store.mark_verified(&d, &abs)?;
        (d, n, Source::Link { path: abs })
    } else {
        let key = key_of(&abs.to_string_lossy());
        let _lock = store.lock(&key, &abs.display().to_string())?;
        let tmp = store.partial_dir().join(format!("{key}.partial"));
        let (d, n) = match copy_hashing(&abs, &tmp, p) {
            Ok(r) => r,
            Err(e) => {
                discard_partial(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = check_expected(opts.digest, d, &abs) {
            discard_partial(&tmp);
            return Err(e);
        }
        store.install_blob(&tmp, &d)?;
        (d, n, Source::File { path: abs })
    };
    let manifest = Manifest::new(&name, digest, size, &format, source);
    store.write_manifest(&name, &manifest)?;
    Ok(Pulled {
        name,
        manifest,
        already: false,
    })
}

fn pull_url(store: &Store, url: &str, opts: &PullOptions, p: &mut dyn Progress) -> Result<Pulled> {
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => ModelName::from_file_name(&url_file_name(url))?,
    };
    let key = key_of(url);
    let _lock = store.lock(&key, url)?;
    let partial = store.partial_dir().join(format!("{key}.partial"));
    let got = Http::new().download(url, &partial, p)?;
    let expected = opts.digest.or(got.server_digest);
    if let Some(want) = expected {
        if want != got.digest {
            discard_partial(&partial);
            return Err(StoreError::DigestMismatch {
                what: url.to_string(),
                expected: want,
                actual: got.digest,
            });
        }
    } else {
        p.note(&format!(
            "no digest to check against (pass --digest); recorded {}",
            got.digest
        ));
    }
    let format = sniff_format(&partial);
    store.install_blob(&partial, &got.digest)?;
    discard_partial(&partial);
    let manifest = Manifest::new(
        &name,
        got.digest,
        got.size,
        &format,
        Source::Url {
            url: url.to_string(),
        },
    );
    store.write_manifest(&name, &manifest)?;
    Ok(Pulled {
        name,
        manifest,
        already: false,
    })
}

fn check_expected(expected: Option<Digest>, actual: Digest, what: &Path) -> Result<()> {
    match expected {
        Some(e) if e != actual => Err(StoreError::DigestMismatch {
            what: what.display().to_string(),
            expected: e,
            actual,
        }),
        _ => Ok(()),
    }
}

/// A file-name-safe key for a source (its partial file and lock are named by it).
fn key_of(source: &str) -> String {
    let h = Sha256::digest(source.as_bytes());
    h.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// `gguf` when the file starts with the GGUF magic, else `unknown`.
pub fn sniff_format(path: &Path) -> String {
    let mut magic = [0u8; 4];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok();
    if ok && &magic == b"GGUF" {
        "gguf"
    } else {
        "unknown"
    }
    .to_string()
}
