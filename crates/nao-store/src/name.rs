//! Model names and digests: the only user-supplied strings that become parts of paths, so
//! they are parsed into types that cannot hold a traversal (`..`), a separator or an
//! absolute path, and every path in the store is built from these types alone.

use crate::error::{Result, StoreError};
use std::fmt;

/// Longest name or tag accepted (keeps every path well under `NAME_MAX`).
const MAX_PART: usize = 80;

/// A model name `name:tag` (`tag` defaults to `latest`), e.g. `qwen2.5-coder:1.5b-q4_k_m`.
/// Both parts are 1 to 80 characters of `[a-z0-9._-]`, start with a letter or digit and
/// never contain `..`, so `manifests/<name>/<tag>` stays inside the store.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelName {
    name: String,
    tag: String,
}

impl ModelName {
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason| StoreError::InvalidName {
            name: s.to_string(),
            reason,
        };
        if s.contains('/') || s.contains('\\') {
            return Err(bad("path separators are not allowed (use name:tag)"));
        }
        let (name, tag) = match s.split_once(':') {
            Some((n, t)) => (n, t),
            None => (s, "latest"),
        };
        if tag.contains(':') {
            return Err(bad("only one ':' (between name and tag) is allowed"));
        }
        check_part(name).map_err(bad)?;
        check_part(tag).map_err(bad)?;
        Ok(ModelName {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }

    /// The part before `:` (a directory under `manifests/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The part after `:` (a file in that directory).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// A name derived from a file name (`Qwen2.5-Coder-1.5B.gguf` → `qwen2.5-coder-1.5b:latest`):
    /// lowercased, the extension dropped, anything outside `[a-z0-9._-]` turned into `-`.
    pub fn from_file_name(file_name: &str) -> Result<Self> {
        let stem = match file_name.rsplit_once('.') {
            Some((s, ext)) if !s.is_empty() && !ext.contains('-') => s,
            _ => file_name,
        };
        let mut out: String = stem
            .chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        while out.contains("..") {
            out = out.replace("..", ".");
        }
        let out: String = out
            .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
            .chars()
            .take(MAX_PART)
            .collect();
        ModelName::parse(&out)
    }
}

fn check_part(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("name and tag must not be empty");
    }
    if p.len() > MAX_PART {
        return Err("name and tag are at most 80 characters");
    }
    if p.contains("..") {
        return Err("'..' is not allowed");
    }
    if let Some(c) = p
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(if c.is_ascii_uppercase() {
            "use lowercase letters"
        } else {
            "only a-z, 0-9, '.', '_' and '-' are allowed"
        });
    }
    if !p.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("name and tag must start with a letter or digit");
    }
    Ok(())
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// A content digest, `sha256:<64 lowercase hex digits>`; the blob is `blobs/sha256-<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Parses exactly `sha256:` followed by 64 lowercase hex digits; nothing else.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || StoreError::InvalidDigest {
            digest: s.to_string(),
        };
        let hex = s.strip_prefix("sha256:").ok_or_else(bad)?;
        Self::from_hex(hex).ok_or_else(bad)
    }

    /// 64 lowercase hex digits (no prefix), or `None`.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let b = hex.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = nibble(b[2 * i])? << 4 | nibble(b[2 * i + 1])?;
        }
        Some(Digest(out))
    }

    pub fn from_bytes(b: [u8; 32]) -> Self {
        Digest(b)
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The blob's file name, `sha256-<hex>` (Ollama's spelling, no `:` in file names).
    pub fn file_name(&self) -> String {
        format!("sha256-{}", self.hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_default_tag() {
        let n = ModelName::parse("qwen2.5-coder:1.5b-q4_k_m").unwrap();
        assert_eq!((n.name(), n.tag()), ("qwen2.5-coder", "1.5b-q4_k_m"));
        let n = ModelName::parse("gemma3").unwrap();
        assert_eq!(n.to_string(), "gemma3:latest");
    }

    #[test]
    fn traversal_and_separators_are_rejected() {
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "..",
            ".",
            "x:..",
            "x:../y",
            "a..b",
            "a\\b",
            "",
            ":tag",
            "name:",
            "a:b:c",
            "Qwen",
            "-x",
            "x y",
            "x\0y",
        ] {
            assert!(ModelName::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(81);
        assert!(ModelName::parse(&long).is_err());
        assert!(ModelName::parse(&"a".repeat(80)).is_ok());
    }

    #[test]
    fn names_from_file_names() {
        let n = ModelName::from_file_name("Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf").unwrap();
        assert_eq!(n.to_string(), "qwen2.5-coder-1.5b-instruct-q4_k_m:latest");
        let n = ModelName::from_file_name("my model (v2).gguf").unwrap();
        assert_eq!(n.to_string(), "my-model--v2-:latest");
        assert!(ModelName::from_file_name("...").is_err());
    }

    #[test]
    fn digests() {
        // sha256("") from `printf '' | sha256sum`.
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d = Digest::parse(empty).unwrap();
        assert_eq!(d.to_string(), empty);
        assert_eq!(
            d.file_name(),
            "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for bad in [
            "sha256:../..",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c442",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
