//! Weight files in the safetensors format: float32 tensors plus string metadata.
//!
//! Files are untrusted input: every length and offset is checked by the
//! safetensors parser against the buffer before any tensor is read, and
//! tensors are only ever copied out of the buffer (no allocation larger than
//! the file itself).

use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;

/// A named float32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Serialises `tensors` and `metadata` into safetensors bytes (little-endian f32).
pub fn to_bytes(tensors: &[NamedTensor], metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let mut names = std::collections::HashSet::new();
    let raw: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, bytes) in tensors.iter().zip(&raw) {
        if !names.insert(t.name.as_str()) {
            crate::bail!("duplicate tensor name '{}'", t.name);
        }
        let view = TensorView::new(Dtype::F32, t.shape.clone(), bytes)
            .map_err(|e| Error(format!("tensor '{}': {e}", t.name)))?;
        views.push((t.name.clone(), view));
    }
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error(format!("could not serialise tensors: {e}")))
}

/// Parses safetensors bytes. Every tensor must be float32.
pub fn from_bytes(bytes: &[u8]) -> Result<(Vec<NamedTensor>, HashMap<String, String>)> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error(format!("not a valid safetensors file: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| Error(format!("not a valid safetensors file: {e}")))?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            crate::bail!(
                "tensor '{name}' has dtype {:?}; ferrax files hold float32 tensors",
                view.dtype()
            );
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((tensors, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<NamedTensor>, HashMap<String, String>) {
        let t = vec![
            NamedTensor {
                name: "a/kernel".into(),
                shape: vec![2, 3],
                data: (0..6).map(|v| v as f32 * 0.5).collect(),
            },
            NamedTensor {
                name: "a/bias".into(),
                shape: vec![3],
                data: vec![-1.0, f32::MIN_POSITIVE, 7.25],
            },
        ];
        let m = HashMap::from([("format".to_string(), "ferrax".to_string())]);
        (t, m)
    }

    #[test]
    fn round_trip() {
        let (t, m) = sample();
        let bytes = to_bytes(&t, m.clone()).unwrap();
        let (back, meta) = from_bytes(&bytes).unwrap();
        let mut want = t.clone();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(back, want);
        assert_eq!(meta, m);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let (t, m) = sample();
        let bytes = to_bytes(&t, m).unwrap();
        for cut in 0..bytes.len() {
            assert!(from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn huge_header_length_is_rejected() {
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        assert!(from_bytes(&bytes).is_err());
    }
}
