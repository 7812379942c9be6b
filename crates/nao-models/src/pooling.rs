//! From per-token hidden states to one vector per sequence: pooling, then optional L2
//! normalisation, as the model's own files say.
//!
//! sentence-transformers describes the pipeline in `modules.json` (Transformer → Pooling →
//! Normalize) with the pooling mode in `1_Pooling/config.json`; llama.cpp's GGUF files say
//! `<arch>.pooling_type` (0 none, 1 mean, 2 cls, 3 last, 4 rank). Both map to [`Pooling`].

use crate::ModelError;
use serde_json::Value;
use std::ops::Range;
use std::path::Path;

/// How token vectors become one sequence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Average over the sequence's tokens (special tokens included, padding never).
    Mean,
    /// The first token's vector (`[CLS]`).
    Cls,
    /// The last token's vector (decoder-based embedders).
    LastToken,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::LastToken => "last",
        }
    }

    /// From a sentence-transformers `1_Pooling/config.json` object.
    pub fn from_st_config(v: &Value) -> Result<Pooling, ModelError> {
        let on = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        let modes = [
            ("pooling_mode_mean_tokens", Some(Pooling::Mean)),
            ("pooling_mode_cls_token", Some(Pooling::Cls)),
            ("pooling_mode_lasttoken", Some(Pooling::LastToken)),
            ("pooling_mode_max_tokens", None),
            ("pooling_mode_mean_sqrt_len_tokens", None),
            ("pooling_mode_weightedmean_tokens", None),
        ];
        let set: Vec<_> = modes.iter().filter(|(k, _)| on(k)).collect();
        match set.as_slice() {
            [(_, Some(p))] => Ok(*p),
            [(k, None)] => Err(ModelError::BadConfig(format!(
                "pooling mode {k} is not supported (mean, cls and last token are)"
            ))),
            [] => Err(ModelError::BadConfig("no pooling mode is set".into())),
            _ => Err(ModelError::BadConfig(
                "several pooling modes at once are not supported".into(),
            )),
        }
    }

    /// From GGUF `<arch>.pooling_type` (llama.cpp's `enum llama_pooling_type`).
    pub fn from_gguf(t: u32) -> Result<Pooling, ModelError> {
        match t {
            1 => Ok(Pooling::Mean),
            2 => Ok(Pooling::Cls),
            3 => Ok(Pooling::LastToken),
            _ => Err(ModelError::BadConfig(format!(
                "pooling_type {t} is not supported (1 mean, 2 cls, 3 last)"
            ))),
        }
    }

    /// Pools `h` (`[n_tokens, d]`, sequences packed at `seqs`) into `[seqs.len(), d]`.
    /// An empty sequence pools to zeros.
    pub fn pool(self, h: &[f32], d: usize, seqs: &[Range<usize>]) -> Vec<f32> {
        let mut out = vec![0.0f32; seqs.len() * d]; // [n_seqs, d]
        for (o, r) in out.chunks_exact_mut(d).zip(seqs) {
            let row = |i: usize| &h[i * d..(i + 1) * d];
            match self {
                Pooling::Mean if !r.is_empty() => {
                    // f64 sums: the mean does not depend on how many tokens there are.
                    let mut acc = vec![0.0f64; d];
                    for i in r.clone() {
                        acc.iter_mut()
                            .zip(row(i))
                            .for_each(|(a, &x)| *a += x as f64);
                    }
                    let n = r.len() as f64;
                    o.iter_mut()
                        .zip(&acc)
                        .for_each(|(o, a)| *o = (a / n) as f32);
                }
                Pooling::Cls if !r.is_empty() => o.copy_from_slice(row(r.start)),
                Pooling::LastToken if !r.is_empty() => o.copy_from_slice(row(r.end - 1)),
                _ => {}
            }
        }
        out
    }
}

/// Scales `v` to unit L2 norm (a zero vector stays zero), as sentence-transformers'
/// `Normalize` (`F.normalize`, eps 1e-12) does.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let inv = 1.0 / norm.max(1e-12);
    v.iter_mut().for_each(|x| *x = (*x as f64 * inv) as f32);
}

/// Pooling and normalisation of a sentence-transformers directory: `modules.json` lists the
/// modules; a `Pooling` module's folder holds its config; a `Normalize` module means unit
/// vectors. Without `modules.json` (a bare Hugging Face model) the defaults are mean
/// pooling without normalisation, as sentence-transformers itself assumes.
pub fn read_st_modules(dir: &Path) -> Result<(Pooling, bool), ModelError> {
    let modules_path = dir.join("modules.json");
    if !modules_path.exists() {
        return Ok((Pooling::Mean, false));
    }
    let modules = read_json(&modules_path)?;
    let list = modules.as_array().ok_or_else(|| ModelError::Config {
        path: modules_path.display().to_string(),
        reason: "not a JSON array".into(),
    })?;
    let mut pooling = Pooling::Mean;
    let mut normalize = false;
    for m in list {
        let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
        let sub = m.get("path").and_then(Value::as_str).unwrap_or("");
        if ty.ends_with(".Pooling") {
            // A module folder is a plain name inside the model directory.
            if sub.contains("..") || Path::new(sub).is_absolute() {
                return Err(ModelError::Config {
                    path: modules_path.display().to_string(),
                    reason: format!("module path {sub:?} leaves the model directory"),
                });
            }
            pooling = Pooling::from_st_config(&read_json(&dir.join(sub).join("config.json"))?)?;
        } else if ty.ends_with(".Normalize") {
            normalize = true;
        }
    }
    Ok((pooling, normalize))
}

/// Reads and parses a JSON file, naming it in errors.
pub(crate) fn read_json(path: &Path) -> Result<Value, ModelError> {
    let err = |reason: String| ModelError::Config {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pools_by_hand() {
        // Two sequences of 2-dim tokens: [1,2],[3,4] and [10,20].
        let h = [1.0, 2.0, 3.0, 4.0, 10.0, 20.0];
        let seqs = [0..2, 2..3];
        assert_eq!(Pooling::Mean.pool(&h, 2, &seqs), [2.0, 3.0, 10.0, 20.0]);
        assert_eq!(Pooling::Cls.pool(&h, 2, &seqs), [1.0, 2.0, 10.0, 20.0]);
        assert_eq!(
            Pooling::LastToken.pool(&h, 2, &seqs),
            [3.0, 4.0, 10.0, 20.0]
        );
        // An empty sequence pools to zeros, next to a one-token one.
        assert_eq!(
            Pooling::Mean.pool(&h, 2, &[0..0, 0..1]),
            [0.0, 0.0, 1.0, 2.0]
        );
    }

    #[test]
    fn normalises() {
        let mut v = [3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut z = [0.0, 0.0];
        l2_normalize(&mut z);
        assert_eq!(z, [0.0, 0.0]);
    }

    #[test]
    fn reads_pooling_configs() {
        let mean = json!({"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true,
                          "pooling_mode_cls_token": false});
        assert_eq!(Pooling::from_st_config(&mean).ok(), Some(Pooling::Mean));
        let cls = json!({"pooling_mode_cls_token": true});
        assert_eq!(Pooling::from_st_config(&cls).ok(), Some(Pooling::Cls));
        let max = json!({"pooling_mode_max_tokens": true});
        assert!(Pooling::from_st_config(&max).is_err());
        assert!(Pooling::from_st_config(&json!({})).is_err());
        assert_eq!(Pooling::from_gguf(2).ok(), Some(Pooling::Cls));
        assert!(Pooling::from_gguf(4).is_err());
    }
}
