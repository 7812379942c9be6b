//! Resumable HTTP downloads. A download writes `<key>.partial` and continues an existing
//! one with `Range: bytes=N-` (guarded by `If-Range` when the server gave a strong ETag,
//! so a changed file is fetched afresh rather than spliced). A server that ignores Range
//! answers 200 and the download restarts from zero. The bytes already there are hashed
//! first so the digest of the whole file comes out of one pass, without re-reading it.
//!
//! TLS roots come from the system bundle (`SSL_CERT_FILE`, else the distribution's
//! `ca-certificates.crt`), because our machines reach registries through an intercepting
//! proxy whose CA only the system bundle has; Mozilla's roots are the fallback.

use crate::error::{Result, StoreError};
use crate::fsutil::CHUNK;
use crate::name::Digest;
use crate::Progress;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};

/// Redirects followed (Hugging Face sends one to its CDN).
const MAX_REDIRECTS: usize = 10;
/// JSON answers (package index pages) larger than this are refused.
const MAX_JSON: u64 = 16 << 20;

/// What a finished download produced.
#[derive(Debug)]
pub struct Downloaded {
    pub digest: Digest,
    pub size: u64,
    /// The sha256 the server vouched for (Hugging Face's `X-Linked-Etag` on LFS files).
    pub server_digest: Option<Digest>,
}

/// Stored next to a partial download: what it is a prefix of.
#[derive(Serialize, Deserialize, PartialEq)]
struct PartialMeta {
    url: String,
    etag: Option<String>,
}

pub struct Http {
    agent: ureq::Agent,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Http {
        let tls = TlsConfig::builder().root_certs(system_roots()).build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .user_agent(concat!("nao/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build();
        Http {
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// GETs `url` following redirects; returns the final URL, the final response, and
    /// Hugging Face's `X-Linked-Etag` from whichever hop carried it.
    fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<(String, ureq::http::Response<ureq::Body>, Option<String>)> {
        let mut url = url.to_string();
        let mut linked_etag = None;
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.agent.get(&url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let resp = req.call().map_err(|e| http_err(&url, e))?;
            if let Some(v) = header(&resp, "x-linked-etag") {
                linked_etag = Some(v);
            }
            if resp.status().is_redirection() {
                let loc = header(&resp, "location").ok_or_else(|| StoreError::Http {
                    url: url.clone(),
                    reason: format!("{} without Location", resp.status()),
                })?;
                url = join_url(&url, &loc);
                continue;
            }
            return Ok((url, resp, linked_etag));
        }
        Err(StoreError::Http {
            url,
            reason: "too many redirects".into(),
        })
    }

    /// GETs a JSON document (a package index page).
    pub fn get_json(&self, url: &str, accept: &str) -> Result<(String, serde_json::Value)> {
        self.get_json_with(url, accept, &[])
    }

    /// [`Http::get_json`] with extra request headers (e.g. `Authorization`).
    pub fn get_json_with(
        &self,
        url: &str,
        accept: &str,
        extra: &[(&str, &str)],
    ) -> Result<(String, serde_json::Value)> {
        let mut headers = vec![("Accept", accept)];
        headers.extend_from_slice(extra);
        let (final_url, mut resp, _) = self.get(url, &headers)?;
        if !resp.status().is_success() {
            return Err(StoreError::Http {
                url: url.to_string(),
                reason: format!("HTTP {}", resp.status()),
            });
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_JSON)
            .read_to_string()
            .map_err(|e| http_err(url, e))?;
        let v = serde_json::from_str(&text).map_err(|e| StoreError::Http {
            url: url.to_string(),
            reason: format!("not JSON: {e}"),
        })?;
        Ok((final_url, v))
    }

    /// Downloads `url` into `partial`, resuming what is there. On error the partial file
    /// stays for the next attempt. The caller verifies the digest and installs the file.
    pub fn download(&self, url: &str, partial: &Path, p: &mut dyn Progress) -> Result<Downloaded> {
        let meta_path = meta_path(partial);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(partial)
            .map_err(|e| StoreError::io(partial, e))?;
        let mut have = file
            .metadata()
            .map_err(|e| StoreError::io(partial, e))?
            .len();
        let old: Option<PartialMeta> = fs::read(&meta_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if old.as_ref().is_none_or(|m| m.url != url) && have > 0 {
            p.note("discarding a partial download of unknown origin");
            truncate(&mut file, partial)?;
            have = 0;
        }
        let etag = old.and_then(|m| m.etag);
        for attempt in 0..2 {
            let range = format!("bytes={have}-");
            let mut headers = vec![("Accept-Encoding", "identity")];
            if have > 0 {
                headers.push(("Range", range.as_str()));
                if let Some(e) = etag.as_deref().filter(|e| !e.starts_with("W/")) {
                    headers.push(("If-Range", e));
                }
            }
            let (final_url, mut resp, linked) = self.get(url, &headers)?;
            let status = resp.status().as_u16();
            let server_digest = linked
                .as_deref()
                .and_then(|e| Digest::from_hex(e.trim_start_matches("W/").trim_matches('"')));
            let start = match status {
                200 => {
                    if have > 0 {
                        p.note("the server restarted the download from the beginning");
                        truncate(&mut file, partial)?;
                    }
                    0
                }
                206 => {
                    let cr = header(&resp, "content-range").unwrap_or_default();
                    match parse_content_range(&cr) {
                        Some((s, _)) if s == have => s,
                        _ if attempt == 0 => {
                            p.note("unexpected Content-Range; restarting the download");
                            truncate(&mut file, partial)?;
                            have = 0;
                            continue;
                        }
                        _ => {
                            return Err(StoreError::Http {
                                url: final_url,
                                reason: format!("bad Content-Range {cr:?}"),
                            })
                        }
                    }
                }
                416 if attempt == 0 => {
                    // Either complete already or the file changed; a fresh start settles it.
                    truncate(&mut file, partial)?;
                    have = 0;
                    continue;
                }
                _ => {
                    return Err(StoreError::Http {
                        url: final_url,
                        reason: format!("HTTP {}", resp.status()),
                    })
                }
            };
            let meta = PartialMeta {
                url: url.to_string(),
                etag: header(&resp, "etag"),
            };
            if let Ok(b) = serde_json::to_vec(&meta) {
                crate::fsutil::atomic_write(&meta_path, &b)?;
            }
            let len = header(&resp, "content-length").and_then(|v| v.parse::<u64>().ok());
            let total = len.map(|l| start + l);
            let label = url_file_name(url);
            // Hash what is already there, then append and hash the rest.
            let mut h = Sha256::new();
            if start > 0 {
                p.note(&format!("resuming at {start} bytes"));
                file.seek(SeekFrom::Start(0))
                    .map_err(|e| StoreError::io(partial, e))?;
                let mut prefix = (&mut file).take(start);
                let mut w = HashWriter(&mut h);
                std::io::copy(&mut prefix, &mut w).map_err(|e| StoreError::io(partial, e))?;
            }
            file.seek(SeekFrom::Start(start))
                .map_err(|e| StoreError::io(partial, e))?;
            p.begin(&label, total, start);
            let mut body = resp.body_mut().as_reader();
            let mut buf = vec![0u8; CHUNK];
            let mut size = start;
            loop {
                let k = match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        p.end();
                        return Err(StoreError::Http {
                            url: url.to_string(),
                            reason: format!(
                                "{e} (after {size} bytes; run the pull again to resume)"
                            ),
                        });
                    }
                };
                file.write_all(&buf[..k])
                    .map_err(|e| StoreError::io(partial, e))?;
                h.update(&buf[..k]);
                size += k as u64;
                p.advance(k as u64);
            }
            p.end();
            if let Some(t) = total {
                if size != t {
                    return Err(StoreError::Http {
                        url: url.to_string(),
                        reason: format!("got {size} of {t} bytes; run the pull again to resume"),
                    });
                }
            }
            file.sync_all().map_err(|e| StoreError::io(partial, e))?;
            return Ok(Downloaded {
                digest: Digest::from_bytes(h.finalize().into()),
                size,
                server_digest,
            });
        }
        Err(StoreError::Http {
            url: url.to_string(),
            reason: "the server rejected the range request twice".into(),
        })
    }
}

/// Deletes a partial download and its sidecar.
pub fn discard_partial(partial: &Path) {
    let _ = fs::remove_file(partial);
    let _ = fs::remove_file(meta_path(partial));
}

fn meta_path(partial: &Path) -> PathBuf {
    let mut s = partial.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

fn truncate(f: &mut File, path: &Path) -> Result<()> {
    f.set_len(0).map_err(|e| StoreError::io(path, e))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| StoreError::io(path, e))?;
    Ok(())
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn http_err(url: &str, e: ureq::Error) -> StoreError {
    StoreError::Http {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

/// `bytes START-END/TOTAL` → (START, TOTAL if given).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// Resolves a `Location` (absolute URL, absolute path or relative path) against `base`.
pub fn join_url(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return loc.to_string();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let origin_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    if let Some(path) = loc.strip_prefix('/') {
        return format!("{}/{path}", &base[..origin_end]);
    }
    let base_path = base.split(['?', '#']).next().unwrap_or(base);
    let dir_end = base_path
        .rfind('/')
        .filter(|&i| i >= origin_end)
        .map_or(base_path.len(), |i| i + 1);
    if dir_end == base_path.len() && !base_path.ends_with('/') {
        return format!("{base_path}/{loc}");
    }
    format!("{}{loc}", &base_path[..dir_end])
}

/// The last path segment of a URL, for labels and default names.
pub fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// The system's CA bundle, or Mozilla's roots when none is found.
fn system_roots() -> RootCerts {
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        );
    for path in candidates {
        let Ok(pem) = fs::read(&path) else { continue };
        let certs: Vec<_> = parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if !certs.is_empty() {
            return RootCerts::new_with_certs(&certs);
        }
    }
    RootCerts::WebPki
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn urls() {
        let b = "https://pypi.org/simple/pkg/";
        assert_eq!(join_url(b, "https://x.org/a.whl"), "https://x.org/a.whl");
        assert_eq!(
            join_url(b, "/packages/a.whl"),
            "https://pypi.org/packages/a.whl"
        );
        assert_eq!(
            join_url(b, "../../packages/a.whl"),
            "https://pypi.org/simple/pkg/../../packages/a.whl"
        );
        assert_eq!(
            join_url("http://h:1/d/f.gguf", "g.gguf"),
            "http://h:1/d/g.gguf"
        );
        assert_eq!(
            url_file_name("http://h/x/model.gguf?download=true"),
            "model.gguf"
        );
    }
}
