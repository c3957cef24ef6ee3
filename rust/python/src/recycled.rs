//! NumPy arrays handed back to Python once per step (a custom loop's weight
//! gradients), reused from step to step instead of allocated afresh.
//!
//! Why: a weight's gradient is hundreds of KB. Allocated anew every step, glibc
//! maps it from the OS and unmaps it when freed, so each step pays a page fault per
//! 4 KB page (W1's loop spent more time there than in its kernels). An array here
//! is reused only when nothing but this pool refers to it (reference count 1): no
//! tensor, view or buffer of the caller can see it change.

use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// How many arrays a slot keeps: the step's, and the one a loop variable
/// (`grads = tape.gradient(...)`) still holds from the step before.
const KEPT_PER_SLOT: usize = 2;

#[derive(Default)]
pub struct RecycledArrays {
    slots: Vec<Vec<Py<PyArrayDyn<f32>>>>,
}

impl RecycledArrays {
    /// An array of `shape` holding `data`, for slot `slot` (one per weight).
    pub fn fill<'py>(
        &mut self,
        py: Python<'py>,
        slot: usize,
        data: &[f32],
        shape: &[usize],
    ) -> Bound<'py, PyAny> {
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, Vec::new);
        }
        let kept = &mut self.slots[slot];
        let free = kept.iter().find(|a| {
            let a = a.bind(py);
            a.get_refcnt() == 1 && a.shape() == shape
        });
        if let Some(array) = free {
            let array = array.bind(py);
            // SAFETY: only this pool refers to the array (count 1, checked just
            // above with the GIL held), so no other reference can read or borrow it.
            unsafe { array.as_slice_mut() }
                .expect("made contiguous")
                .copy_from_slice(data);
            return array.clone().into_any();
        }
        let array = PyArrayDyn::<f32>::zeros(py, shape, false);
        // SAFETY: just made, and not yet shared.
        unsafe { array.as_slice_mut() }
            .expect("made contiguous")
            .copy_from_slice(data);
        if kept.len() < KEPT_PER_SLOT {
            kept.push(array.clone().unbind());
        } else if let Some(shared) = kept.iter_mut().find(|a| a.bind(py).shape() != shape) {
            *shared = array.clone().unbind(); // (the model's shapes changed: keep the new)
        }
        array.into_any()
    }
}
