//! Eager ops: `ferrax.ops` functions on arrays, and their gradients (what a
//! GradientTape plays back). Each call builds the same op object a traced
//! graph runs, so eager and traced results agree bit for bit.

use crate::arrays::{f32_slice, to_numpy};
use crate::guard;
use crate::{parse, run_core_on};
use ferrax_core::ops::{self, Operand};
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// Work below this many elements runs on the calling thread (entering the
/// pool costs more than a small op takes).
const POOL_ELEMENTS: usize = 1 << 15;

fn operands(arrays: &[PyReadonlyArrayDyn<'_, f32>]) -> Vec<Operand> {
    arrays.iter().map(|a| Operand::fixed(a.shape())).collect()
}

/// The result's shape of op `name` on inputs of `shapes`, each (shape, batched):
/// the shape rule of a symbolic call.
#[pyfunction]
fn op_shape(
    py: Python<'_>,
    name: &str,
    attrs_json: &str,
    shapes: Vec<(Vec<usize>, bool)>,
) -> PyResult<(Vec<usize>, bool)> {
    guard(|| {
        let attrs = parse(attrs_json)?;
        let inputs: Vec<Operand> = shapes
            .into_iter()
            .map(|(shape, batched)| Operand { shape, batched })
            .collect();
        run_core_on(py, false, || {
            let out = ops::build(name, &attrs, &inputs)?.output().clone();
            Ok((out.shape, out.batched))
        })
    })
}

/// op `name` on C-contiguous float32 arrays.
#[pyfunction]
fn op_eval<'py>(
    py: Python<'py>,
    name: &str,
    attrs_json: &str,
    arrays: Vec<PyReadonlyArrayDyn<'py, f32>>,
) -> PyResult<Bound<'py, PyAny>> {
    guard(|| {
        let attrs = parse(attrs_json)?;
        let inputs = operands(&arrays);
        let xs = arrays.iter().map(f32_slice).collect::<PyResult<Vec<_>>>()?;
        let big = inputs.iter().map(|o| o.size()).sum::<usize>() > POOL_ELEMENTS;
        let (y, shape) = run_core_on(py, big, || {
            let mut op = ops::build(name, &attrs, &inputs)?;
            let out = op.output().clone();
            let mut y = vec![0.0f32; out.size()];
            op.forward(&xs, &mut y, 1);
            Ok((y, out.shape))
        })?;
        Ok(to_numpy(py, &y, &shape))
    })
}

/// The gradients of op `name`'s inputs, given its inputs, its result `y` and the
/// result's gradient `dy` (zeros for an input the op is not differentiable in).
#[pyfunction]
fn op_vjp<'py>(
    py: Python<'py>,
    name: &str,
    attrs_json: &str,
    arrays: Vec<PyReadonlyArrayDyn<'py, f32>>,
    y: PyReadonlyArrayDyn<'py, f32>,
    dy: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    guard(|| {
        let attrs = parse(attrs_json)?;
        let inputs = operands(&arrays);
        let xs = arrays.iter().map(f32_slice).collect::<PyResult<Vec<_>>>()?;
        let (y_s, dy_s) = (f32_slice(&y)?, f32_slice(&dy)?);
        let big = inputs.iter().map(|o| o.size()).sum::<usize>() > POOL_ELEMENTS;
        let grads = run_core_on(py, big, || {
            let mut op = ops::build(name, &attrs, &inputs)?;
            let out = op.output().clone();
            if y_s.len() != out.size() || dy_s.len() != out.size() {
                ferrax_core::bail!(
                    "{name}: the result and its gradient need {} elements, got {} and {}",
                    out.size(),
                    y_s.len(),
                    dy_s.len()
                );
            }
            let mut grads: Vec<Vec<f32>> = inputs.iter().map(|o| vec![0.0; o.size()]).collect();
            let mut dxs: Vec<Option<&mut [f32]>> =
                grads.iter_mut().map(|g| Some(g.as_mut_slice())).collect();
            op.backward(&xs, y_s, dy_s, &mut dxs, 1);
            Ok(grads)
        })?;
        Ok(grads
            .iter()
            .zip(&inputs)
            .map(|(g, o)| to_numpy(py, g, &o.shape))
            .collect())
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(op_shape, m)?)?;
    m.add_function(wrap_pyfunction!(op_eval, m)?)?;
    m.add_function(wrap_pyfunction!(op_vjp, m)?)?;
    Ok(())
}
