//! safetensors bytes <-> (name, NumPy array) lists, for ferrax.saving.

use crate::arrays::to_numpy;
use crate::guard;
use crate::run_core;
use ferrax_core::io::{self, NamedTensor};
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::HashMap;

/// Serialise float32 tensors and string metadata to safetensors bytes.
#[pyfunction]
fn safetensors_dumps<'py>(
    py: Python<'py>,
    tensors: Vec<(String, PyReadonlyArrayDyn<'py, f32>)>,
    metadata: HashMap<String, String>,
) -> PyResult<Bound<'py, PyBytes>> {
    guard(|| {
        let owned: Vec<NamedTensor> = tensors
            .iter()
            .map(|(name, a)| NamedTensor {
                name: name.clone(),
                shape: a.shape().to_vec(),
                data: a.as_array().iter().copied().collect(),
            })
            .collect();
        let bytes = run_core(py, || io::to_bytes(&owned, metadata))?;
        Ok(PyBytes::new(py, &bytes))
    })
}

type Loaded<'py> = (Vec<(String, Bound<'py, PyAny>)>, HashMap<String, String>);

/// Parse safetensors bytes into (name, float32 array) pairs and the metadata.
#[pyfunction]
fn safetensors_loads<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Loaded<'py>> {
    guard(|| {
        let (tensors, metadata) = run_core(py, || io::from_bytes(data))?;
        let arrays = tensors
            .into_iter()
            .map(|t| (t.name, to_numpy(py, &t.data, &t.shape)))
            .collect();
        Ok((arrays, metadata))
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(safetensors_dumps, m)?)?;
    m.add_function(wrap_pyfunction!(safetensors_loads, m)?)?;
    Ok(())
}
