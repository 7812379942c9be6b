//! The JSON side of safetensors: the header's entries and the shard index's `weight_map`.
//!
//! Both are read as ordered lists of `(key, value)` pairs through a small serde visitor
//! rather than into a map, because a map keeps only the last of two equal keys: a header
//! naming one tensor twice (two views of possibly different bytes) must be an error, not a
//! silent choice.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::safetensors::SafetensorsError;

/// A JSON object's members in document order, duplicates kept.
struct Entries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The header's top-level members, in order (duplicates kept for the caller to reject).
pub(crate) fn entries(header: &str) -> Result<Vec<(String, Value)>, SafetensorsError> {
    serde_json::from_str::<Entries>(header)
        .map(|e| e.0)
        .map_err(|e| SafetensorsError::HeaderNotJson(e.to_string()))
}

/// One tensor entry's fields, types checked.
pub(crate) struct Entry {
    pub dtype: String,
    pub shape: Vec<u64>,
    pub offsets: [u64; 2],
}

pub(crate) fn entry(name: &str, v: Value) -> Result<Entry, SafetensorsError> {
    let bad = |reason: &str| SafetensorsError::BadEntry {
        tensor: name.to_owned(),
        reason: reason.to_owned(),
    };
    let Value::Object(o) = v else {
        return Err(bad("entry is not an object"));
    };
    let dtype = o
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`dtype` is missing or not a string"))?
        .to_owned();
    let uints = |key: &str| -> Result<Vec<u64>, SafetensorsError> {
        let arr = o
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| bad(&format!("`{key}` is missing or not an array")))?;
        arr.iter()
            .map(|x| {
                x.as_u64()
                    .ok_or_else(|| bad(&format!("`{key}` holds {x}, not a non-negative integer")))
            })
            .collect()
    };
    let shape = uints("shape")?;
    let offsets = match uints("data_offsets")?.as_slice() {
        &[b, e] => [b, e],
        _ => return Err(bad("`data_offsets` must hold exactly two integers")),
    };
    Ok(Entry {
        dtype,
        shape,
        offsets,
    })
}

/// `__metadata__`: a map of strings to strings.
pub(crate) fn metadata(v: Value) -> Result<Vec<(String, String)>, SafetensorsError> {
    let bad = |reason: String| SafetensorsError::BadEntry {
        tensor: "__metadata__".to_owned(),
        reason,
    };
    let Value::Object(o) = v else {
        return Err(bad("not an object".into()));
    };
    o.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            other => Err(bad(format!("value of {k:?} is {other}, not a string"))),
        })
        .collect()
}

/// The `weight_map` of a `model.safetensors.index.json`: tensor name → shard file name.
pub(crate) fn weight_map(text: &str) -> Result<Vec<(String, String)>, String> {
    let top = serde_json::from_str::<Entries>(text).map_err(|e| e.to_string())?;
    let Some((_, map)) = top.0.into_iter().find(|(k, _)| k == "weight_map") else {
        return Err("no `weight_map` object".into());
    };
    // (Inside `weight_map` a repeated name keeps its last shard; every mapping is checked
    // against the shard's own header afterwards, so that cannot mislead the loader.)
    let Value::Object(members) = map else {
        return Err("`weight_map` is not an object".into());
    };
    members
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            other => Err(format!(
                "`weight_map` maps {k:?} to {other}, not a file name"
            )),
        })
        .collect()
}
