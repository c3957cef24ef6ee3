//! NumPy <-> slice conversions. Arrays arrive C-contiguous (the Python side
//! makes sure); we borrow them without copying.

use ferrax_core::data::Features;
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

pub fn f32_slice<'a>(a: &'a PyReadonlyArrayDyn<'_, f32>) -> PyResult<&'a [f32]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err("array must be C-contiguous"))
}

/// Borrow a 2-D (n, width) uint8 / float32 / float64 array as engine features.
pub fn features<'a>(x: &'a Bound<'_, PyAny>) -> PyResult<(Features<'a>, usize)> {
    fn width(shape: &[usize]) -> usize {
        shape[1..].iter().product()
    }
    fn slice<'a, T: numpy::Element>(a: &'a Bound<'_, PyArrayDyn<T>>) -> PyResult<&'a [T]> {
        if !a.is_c_contiguous() {
            return Err(PyValueError::new_err("x must be C-contiguous"));
        }
        // SAFETY: the array is contiguous and stays alive and unmodified while
        // the engine reads it: the Python caller holds a reference and the
        // engine only reads.
        unsafe {
            a.as_slice()
                .map_err(|_| PyValueError::new_err("x must be C-contiguous"))
        }
    }
    if let Ok(a) = x.downcast::<numpy::PyUntypedArray>() {
        if a.ndim() == 0 {
            return Err(PyValueError::new_err("x must have a batch axis"));
        }
    }
    if let Ok(a) = x.downcast::<PyArrayDyn<u8>>() {
        return Ok((Features::U8(slice(a)?), width(a.shape())));
    }
    if let Ok(a) = x.downcast::<PyArrayDyn<f32>>() {
        return Ok((Features::F32(slice(a)?), width(a.shape())));
    }
    if let Ok(a) = x.downcast::<PyArrayDyn<f64>>() {
        return Ok((Features::F64(slice(a)?), width(a.shape())));
    }
    Err(PyTypeError::new_err(
        "x must be a numpy array of uint8, float32 or float64",
    ))
}

pub fn to_numpy<'py>(py: Python<'py>, data: &[f32], shape: &[usize]) -> Bound<'py, PyAny> {
    PyArray1::from_slice(py, data)
        .reshape(shape.to_vec())
        .expect("size matches shape")
        .into_any()
}
