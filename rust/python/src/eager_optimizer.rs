//! `EagerOptimizer`: the engine's optimizer for a custom training loop, which
//! keeps its variables in Python (`ferrax.Variable`) and hands them over with
//! their gradients at each `apply_gradients`. The update rule, clipping, weight
//! decay and schedule are the fused loop's own (`ferrax_core::optimizer`).

use crate::arrays::{f32_slice, to_numpy};
use crate::{parse, run_core_on};
use ferrax_core::layers::{Param, Tensor};
use ferrax_core::optimizer::Optimizer;
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Variables at least this large are updated on the thread pool.
const POOL_ELEMENTS: usize = 1 << 16;

#[pyclass(module = "ferrax._core")]
pub struct EagerOptimizer {
    optimizer: Optimizer,
    /// One per variable, in the order of the first call: values and gradients
    /// are copied in, updated values copied out (slots stay here).
    params: Vec<Param>,
}

#[pymethods]
impl EagerOptimizer {
    #[new]
    fn new(spec_json: &str) -> PyResult<Self> {
        let optimizer =
            Optimizer::from_spec(&parse(spec_json)?).map_err(|e| PyValueError::new_err(e.0))?;
        Ok(EagerOptimizer {
            optimizer,
            params: Vec::new(),
        })
    }

    /// One step: the variables' new values from `values` and their `grads`
    /// (the same variables, in the same order, at every call); a variable whose
    /// gradient is None is left as it is, its slots too.
    fn apply<'py>(
        &mut self,
        py: Python<'py>,
        values: Vec<PyReadonlyArrayDyn<'py, f32>>,
        grads: Vec<Option<PyReadonlyArrayDyn<'py, f32>>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        if values.len() != grads.len() {
            return Err(PyValueError::new_err(format!(
                "{} variables but {} gradients",
                values.len(),
                grads.len()
            )));
        }
        if self.params.is_empty() {
            self.params = values
                .iter()
                .map(|v| Param::from_value("variable", Tensor::zeros(v.shape().to_vec())))
                .collect();
        }
        if self.params.len() != values.len() {
            return Err(PyValueError::new_err(format!(
                "the optimizer was built for {} variables, got {}",
                self.params.len(),
                values.len()
            )));
        }
        for (k, ((p, v), g)) in self.params.iter_mut().zip(&values).zip(&grads).enumerate() {
            let g_shape = g.as_ref().map(|g| g.shape().to_vec());
            if p.value.shape() != v.shape() || g_shape.as_ref().is_some_and(|s| s != v.shape()) {
                return Err(PyValueError::new_err(format!(
                    "variable {k}: built for shape {:?}, got a value of shape {:?} and a \
                     gradient of shape {:?}",
                    p.value.shape(),
                    v.shape(),
                    g_shape.unwrap_or_default()
                )));
            }
            let value = p.value.as_slice_mut().expect("contiguous");
            value.copy_from_slice(f32_slice(v)?);
            // (a frozen parameter is skipped by the update)
            p.frozen = g.is_none();
            let grad = p.grad.as_slice_mut().expect("contiguous");
            match g {
                Some(g) => grad.copy_from_slice(f32_slice(g)?),
                None => grad.fill(0.0), // (out of a global norm)
            }
        }
        let big = self.params.iter().map(|p| p.value.len()).sum::<usize>() > POOL_ELEMENTS;
        let (optimizer, params) = (&mut self.optimizer, &mut self.params);
        run_core_on(py, big, || {
            let mut refs: Vec<&mut Param> = params.iter_mut().collect();
            optimizer.apply(&mut refs);
            Ok(())
        })?;
        Ok(self
            .params
            .iter()
            .map(|p| to_numpy(py, p.value.as_slice().expect("contiguous"), p.value.shape()))
            .collect())
    }

    #[getter]
    fn iterations(&self) -> u64 {
        self.optimizer.iterations
    }

    #[getter]
    fn learning_rate(&self) -> f32 {
        self.optimizer.learning_rate
    }

    #[setter]
    fn set_learning_rate(&mut self, value: f32) {
        self.optimizer.learning_rate = value;
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EagerOptimizer>()
}
