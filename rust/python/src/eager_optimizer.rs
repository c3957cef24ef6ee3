//! `EagerOptimizer`: the engine's optimizer for a custom training loop, which
//! keeps its variables in Python (`ferrax.Variable`) and hands them over with
//! their gradients at each `apply_gradients`. The update rule, clipping, weight
//! decay and schedule are the fused loop's own (`ferrax_core::optimizer`).

use crate::arrays::{f32_slice, to_numpy};
use crate::guard;
use crate::{parse, run_core_on, CoreModel};
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
    /// The variables' shapes, in order (see `check_shapes`).
    shapes: Vec<Vec<usize>>,
}

#[pymethods]
impl EagerOptimizer {
    #[new]
    fn new(spec_json: &str) -> PyResult<Self> {
        guard(|| {
            let optimizer =
                Optimizer::from_spec(&parse(spec_json)?).map_err(|e| PyValueError::new_err(e.0))?;
            Ok(EagerOptimizer {
                optimizer,
                params: Vec::new(),
                shapes: Vec::new(),
            })
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
        guard(|| {
            if values.len() != grads.len() {
                return Err(PyValueError::new_err(format!(
                    "{} variables but {} gradients",
                    values.len(),
                    grads.len()
                )));
            }
            let shapes: Vec<&[usize]> = values.iter().map(|v| v.shape()).collect();
            self.check_shapes(&shapes)?;
            if self.params.is_empty() {
                self.params = values
                    .iter()
                    .map(|v| Param::from_value("variable", Tensor::zeros(v.shape().to_vec())))
                    .collect();
            }
            for (k, ((p, v), g)) in self.params.iter_mut().zip(&values).zip(&grads).enumerate() {
                let g_shape = g.as_ref().map(|g| g.shape().to_vec());
                if p.value.shape() != v.shape() || g_shape.as_ref().is_some_and(|s| s != v.shape())
                {
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
        })
    }

    /// One step on weights of one model, updated in place in its engine (no copy
    /// out and back): `indices` are the weights' positions in `get_weights`, each
    /// with its gradient (None leaves it, and its slots, as they are). Another
    /// step on other variables is an error, as for `apply`.
    fn apply_to_model<'py>(
        &mut self,
        py: Python<'py>,
        model: &Bound<'py, CoreModel>,
        indices: Vec<usize>,
        grads: Vec<Option<PyReadonlyArrayDyn<'py, f32>>>,
    ) -> PyResult<()> {
        guard(|| {
            if indices.len() != grads.len() {
                return Err(PyValueError::new_err(format!(
                    "{} weights but {} gradients",
                    indices.len(),
                    grads.len()
                )));
            }
            let mut engine = model.get().lock(py);
            let mut slots: Vec<Option<&mut Param>> =
                engine.model.params_mut().into_iter().map(Some).collect();
            let mut chosen: Vec<&mut Param> = Vec::with_capacity(indices.len());
            for &i in &indices {
                match slots.get_mut(i).and_then(Option::take) {
                    Some(p) => chosen.push(p),
                    None => {
                        return Err(PyValueError::new_err(format!(
                            "weight {i} is not in the model, or given twice"
                        )))
                    }
                }
            }
            let shapes: Vec<&[usize]> = chosen.iter().map(|p| p.value.shape()).collect();
            self.check_shapes(&shapes)?;
            // The gradients are read where they are (no copy into the weights' `grad`),
            // all checked before any weight is touched.
            let mut given: Vec<&[f32]> = Vec::with_capacity(chosen.len());
            for (k, (p, g)) in chosen.iter().zip(&grads).enumerate() {
                match g {
                    Some(g) if g.shape() != p.value.shape() => {
                        return Err(PyValueError::new_err(format!(
                            "weight {k}: a gradient of shape {:?} for a weight of shape {:?}",
                            g.shape(),
                            p.value.shape()
                        )));
                    }
                    Some(g) => given.push(f32_slice(g)?),
                    None => given.push(&[]), // (left as it is: frozen for this step, not read)
                }
            }
            let mut frozen = Vec::with_capacity(chosen.len());
            for (p, g) in chosen.iter_mut().zip(&grads) {
                frozen.push(p.frozen);
                p.frozen = g.is_none();
            }
            let big = chosen.iter().map(|p| p.value.len()).sum::<usize>() > POOL_ELEMENTS;
            let optimizer = &mut self.optimizer;
            let outcome = run_core_on(py, big, || {
                optimizer.apply_from(&mut chosen, Some(&given));
                Ok(())
            });
            for (p, f) in chosen.iter_mut().zip(frozen) {
                p.frozen = f;
            }
            outcome
        })
    }

    #[getter]
    fn iterations(&self) -> PyResult<u64> {
        guard(|| Ok(self.optimizer.iterations))
    }

    #[getter]
    fn learning_rate(&self) -> PyResult<f32> {
        guard(|| Ok(self.optimizer.learning_rate))
    }

    #[setter]
    fn set_learning_rate(&mut self, value: f32) -> PyResult<()> {
        guard(|| {
            self.optimizer.learning_rate = value;
            Ok(())
        })
    }
}

impl EagerOptimizer {
    /// The variables' shapes fixed at the first step (by either method); later
    /// steps must bring the same ones, in the same order (the slots follow them).
    fn check_shapes(&mut self, shapes: &[&[usize]]) -> PyResult<()> {
        if self.shapes.is_empty() {
            self.shapes = shapes.iter().map(|s| s.to_vec()).collect();
        }
        if self.shapes.len() != shapes.len()
            || self
                .shapes
                .iter()
                .zip(shapes)
                .any(|(a, b)| a.as_slice() != *b)
        {
            return Err(PyValueError::new_err(format!(
                "the optimizer was built for {} variables of shapes {:?}, got {} of shapes \
                 {:?}",
                self.shapes.len(),
                self.shapes,
                shapes.len(),
                shapes
            )));
        }
        Ok(())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EagerOptimizer>()
}
