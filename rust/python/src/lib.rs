//! `ferrax._core`: the Python face of the engine. Thin on purpose: convert
//! arguments, release the GIL, enter the thread pool, call the core, and turn
//! every failure (including a panic) into a Python exception.

mod arrays;
mod eager_optimizer;
mod files;
mod memory;
mod ops;
mod recycled;
mod testing;

use arrays::{f32_slice, features, to_numpy};
use ferrax_core::data::Dataset;
use ferrax_core::model::{Model, Totals};
use ferrax_core::parallel;
use numpy::{PyArray1, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use recycled::RecycledArrays;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// Runs a binding's body, a panic becoming ferrax's RuntimeError: left alone, pyo3
/// would raise PanicException, a BaseException that `except Exception` misses.
/// Every entry point runs under it (argument and array conversions included).
pub(crate) fn guard<R>(f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| Err(internal_error(panic)))
}

/// The RuntimeError a panic becomes.
fn internal_error(panic: Box<dyn std::any::Any + Send>) -> PyErr {
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    PyRuntimeError::new_err(format!("internal error in the ferrax engine: {msg}"))
}

/// The exception a signal handler raised while the engine polled (KeyboardInterrupt
/// for Ctrl-C): the interrupted call raises it.
static SIGNAL_ERROR: Mutex<Option<PyErr>> = Mutex::new(None);

thread_local! {
    /// Python's main thread, the only one that runs signal handlers.
    static ON_PYTHON_MAIN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The engine's interrupt checker (see `ferrax_core::interrupt`): on Python's main
/// thread, takes the GIL for a moment and runs pending signal handlers.
fn signal_pending() -> bool {
    if !ON_PYTHON_MAIN.with(std::cell::Cell::get) {
        return false;
    }
    Python::with_gil(|py| match py.check_signals() {
        Ok(()) => false,
        Err(e) => {
            *SIGNAL_ERROR.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            true
        }
    })
}

/// Run `f` with the GIL released, inside the pool; map errors and panics.
pub(crate) fn run_core<R: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> ferrax_core::Result<R> + Send,
) -> PyResult<R> {
    run_core_on(py, true, f)
}

/// `run_core`, optionally on the calling thread: handing work to the pool costs
/// tens of microseconds, more than a single small prediction takes.
pub(crate) fn run_core_on<R: Send>(
    py: Python<'_>,
    in_pool: bool,
    f: impl FnOnce() -> ferrax_core::Result<R> + Send,
) -> PyResult<R> {
    let interrupts_before = ferrax_core::interrupt::count();
    let outcome = py.allow_threads(|| {
        catch_unwind(AssertUnwindSafe(|| {
            if in_pool {
                parallel::install(f)
            } else {
                // As on the pool's threads (see ferrax_core::denormals).
                ferrax_core::denormals::on_this_thread(f)
            }
        }))
    });
    // A signal handler that raised during the call: its exception is the call's
    // outcome (the engine stopped at its next check, the weights whole).
    if ON_PYTHON_MAIN.with(std::cell::Cell::get) {
        if ferrax_core::interrupt::take() {
            if let Some(e) = SIGNAL_ERROR
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                return Err(e);
            }
        }
    } else if ferrax_core::interrupt::count() != interrupts_before
        || ferrax_core::interrupt::pending()
    {
        // (the pool's threads, shared with the main thread's call, may have cut
        // this call's work short too: not a result to return)
        return Err(PyRuntimeError::new_err(
            "this engine call overlapped one that Ctrl-C interrupted in the main \
             thread, and may not have finished: run it again",
        ));
    }
    match outcome {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(PyValueError::new_err(e.0)),
        Err(panic) => Err(internal_error(panic)),
    }
}

/// Zeros for `rows` samples of the model's outputs; a ValueError, not an abort,
/// when they would not fit in memory.
fn output_buffer(rows: usize, out_size: usize) -> PyResult<Vec<f32>> {
    let n = ferrax_core::sizing::tensor("the predictions", &[rows, out_size], 1, 0)
        .map_err(|e| PyValueError::new_err(e.0))?;
    Ok(vec![0.0f32; n])
}

pub(crate) fn parse(json: &str) -> PyResult<serde_json::Value> {
    serde_json::from_str(json).map_err(|e| PyValueError::new_err(format!("invalid spec JSON: {e}")))
}

/// (loss sum, samples, [(metric sum, metric weight)], batches), as Python receives it.
type PyTotals = (f64, f64, Vec<(f64, f64)>, usize);

/// Running totals from Python: the engine keeps adding batch by batch, so the sums
/// are the same however the batches were split into calls.
fn totals_from_py(t: Option<PyTotals>) -> Totals {
    t.map_or_else(Totals::default, |(loss_sum, samples, metrics, batches)| {
        Totals {
            loss_sum,
            samples,
            metrics,
            batches,
        }
    })
}

fn totals_to_py(t: &Totals) -> PyTotals {
    (t.loss_sum, t.samples, t.metrics.clone(), t.batches)
}

/// Borrows x, y and the optional sample weights as one engine data set.
fn dataset<'a>(
    x: &'a Bound<'_, PyAny>,
    y: &'a PyReadonlyArrayDyn<'_, f32>,
    sample_weight: Option<&'a PyReadonlyArrayDyn<'_, f32>>,
) -> PyResult<Dataset<'a>> {
    let (xf, x_width) = features(x)?;
    let (ys, y_width) = (f32_slice(y)?, y.shape().get(1).copied().unwrap_or(1));
    let ws = sample_weight.map(f32_slice).transpose()?;
    Dataset::new(xf, x_width, ys, y_width, ws).map_err(|e| PyValueError::new_err(e.0))
}

/// A built model owned by the engine: layers, weights, optimizer state.
///
/// One model may be used from several Python threads: its calls take turns (each
/// waits, the GIL released, for the one running to end), so none sees another's
/// half-made state.
#[pyclass(module = "ferrax._core", frozen)]
pub(crate) struct CoreModel {
    engine: Mutex<Engine>,
    /// (after `engine`: runs once the model's memory is freed)
    trim: memory::TrimAfterDrop,
}

impl Drop for CoreModel {
    fn drop(&mut self) {
        let engine = self.engine.get_mut().unwrap_or_else(|p| p.into_inner());
        self.trim.bytes = engine.model.held_bytes();
    }
}

/// What a CoreModel holds, behind its lock.
pub(crate) struct Engine {
    pub(crate) model: Model,
    /// The arrays `tape_backward` gives the weights' gradients in, reused.
    grad_arrays: RecycledArrays,
}

impl CoreModel {
    /// The model, once no other thread's call holds it. The wait releases the GIL
    /// (the running call needs it to return).
    pub(crate) fn lock(&self, py: Python<'_>) -> MutexGuard<'_, Engine> {
        loop {
            match self.engine.try_lock() {
                Ok(engine) => return engine,
                Err(TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    // (waits for the holder to finish, then takes it with the GIL held)
                    py.allow_threads(|| drop(self.engine.lock()));
                }
            }
        }
    }
}

impl Engine {
    /// The tape's backward pass (to the input too when `dx` is given): the weights'
    /// gradients, as `get_weights` lists them.
    fn backward_for_tape<'py>(
        &mut self,
        py: Python<'py>,
        rows: usize,
        dy: &PyReadonlyArrayDyn<'py, f32>,
        loss_dys: Option<Vec<f32>>,
        dx: Option<&mut [f32]>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let dys = f32_slice(dy)?;
        let model = &mut self.model;
        run_core(py, || {
            if let Some(seeds) = &loss_dys {
                model.seed_call_losses(seeds)?;
            }
            model.tape_backward_to(rows, dys, dx)
        })?;
        let arrays = &mut self.grad_arrays;
        Ok(self
            .model
            .params()
            .enumerate()
            .map(|(i, p)| {
                arrays.fill(
                    py,
                    i,
                    p.grad.as_slice().expect("contiguous"),
                    p.value.shape(),
                )
            })
            .collect())
    }
}

#[pymethods]
impl CoreModel {
    #[new]
    fn new(py: Python<'_>, spec_json: &str) -> PyResult<Self> {
        guard(|| {
            let spec = parse(spec_json)?;
            let model = run_core(py, || Model::from_spec(&spec))?;
            Ok(CoreModel {
                engine: Mutex::new(Engine {
                    model,
                    grad_arrays: RecycledArrays::default(),
                }),
                trim: memory::TrimAfterDrop::default(),
            })
        })
    }

    fn compile(&self, py: Python<'_>, spec_json: &str) -> PyResult<()> {
        guard(|| {
            let mut this = self.lock(py);
            let spec = parse(spec_json)?;
            let model = &mut this.model;
            run_core(py, || model.compile(&spec))
        })
    }

    /// Freeze or unfreeze one layer's weights (`layer.trainable = False`).
    fn set_layer_frozen(&self, py: Python<'_>, layer: usize, frozen: bool) -> PyResult<()> {
        guard(|| {
            let mut this = self.lock(py);
            this.model
                .set_layer_frozen(layer, frozen)
                .map_err(|e| PyValueError::new_err(e.0))
        })
    }

    /// Zero the state carried between batches by one layer (or all, given None).
    #[pyo3(signature = (layer=None))]
    fn reset_states(&self, py: Python<'_>, layer: Option<usize>) -> PyResult<()> {
        guard(|| {
            let mut this = self.lock(py);
            match layer {
                None => this.model.reset_states(),
                Some(i) => this
                    .model
                    .reset_layer_states(i)
                    .map_err(|e| PyValueError::new_err(e.0))?,
            }
            Ok(())
        })
    }

    /// Per-sample output shape of every layer.
    fn output_shapes(&self, py: Python<'_>) -> PyResult<Vec<Vec<usize>>> {
        guard(|| {
            Ok({
                let this = self.lock(py);
                this.model.shapes()[1..].to_vec()
            })
        })
    }

    /// (layer index, weight name, shape) for every weight, in order.
    fn weight_info(&self, py: Python<'_>) -> PyResult<Vec<(usize, String, Vec<usize>)>> {
        guard(|| {
            Ok({
                let this = self.lock(py);
                let mut out = Vec::new();
                for (i, l) in this.model.weight_layers() {
                    for p in l.params() {
                        out.push((i, p.name.to_string(), p.value.shape().to_vec()));
                    }
                }
                out
            })
        })
    }

    /// Whether each weight is trained by the optimizer (moving statistics are not).
    /// Each weight's regularizer as (l1, l2), None for a weight without one (in
    /// `get_weights` order: a wrapped layer's weights included).
    fn weight_regularizers(&self, py: Python<'_>) -> PyResult<Vec<Option<(f32, f32)>>> {
        guard(|| {
            Ok({
                let this = self.lock(py);
                this.model
                    .params()
                    .map(|p| p.regularizer.map(|r| (r.l1, r.l2)))
                    .collect()
            })
        })
    }

    fn weight_trainable(&self, py: Python<'_>) -> PyResult<Vec<bool>> {
        guard(|| {
            Ok({
                let this = self.lock(py);
                this.model.params().map(|p| p.is_trained()).collect()
            })
        })
    }

    fn get_weights<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        guard(|| {
            Ok({
                let this = self.lock(py);
                this.model
                    .params()
                    .map(|p| to_numpy(py, p.value_slice(), p.value.shape()))
                    .collect()
            })
        })
    }

    /// Replace all weights; shapes are checked before anything changes.
    fn set_weights(
        &self,
        py: Python<'_>,
        weights: Vec<PyReadonlyArrayDyn<'_, f32>>,
    ) -> PyResult<()> {
        guard(|| {
            let mut this = self.lock(py);
            let mut params = this.model.params_mut();
            if weights.len() != params.len() {
                return Err(PyValueError::new_err(format!(
                    "expected {} weight arrays, got {}",
                    params.len(),
                    weights.len()
                )));
            }
            for (i, (p, w)) in params.iter().zip(&weights).enumerate() {
                if p.value.shape() != w.shape() {
                    return Err(PyValueError::new_err(format!(
                        "weight {i} ({}): expected shape {:?}, got {:?}",
                        p.name,
                        p.value.shape(),
                        w.shape()
                    )));
                }
            }
            for (p, w) in params.iter_mut().zip(&weights) {
                p.value.assign(&w.as_array());
            }
            Ok(())
        })
    }

    #[getter]
    fn learning_rate(&self, py: Python<'_>) -> PyResult<Option<f32>> {
        guard(|| {
            Ok({
                let this = self.lock(py);
                this.model
                    .compiled
                    .as_ref()
                    .map(|c| c.optimizer.learning_rate)
            })
        })
    }

    #[setter]
    fn set_learning_rate(&self, py: Python<'_>, lr: f32) -> PyResult<()> {
        guard(|| {
            let mut this = self.lock(py);
            match this.model.compiled.as_mut() {
                Some(c) => {
                    c.optimizer.learning_rate = lr;
                    Ok(())
                }
                None => Err(PyRuntimeError::new_err("the model is not compiled")),
            }
        })
    }

    #[getter]
    fn iterations(&self, py: Python<'_>) -> PyResult<u64> {
        guard(|| {
            Ok({
                let this = self.lock(py);
                this.model
                    .compiled
                    .as_ref()
                    .map_or(0, |c| c.optimizer.iterations)
            })
        })
    }

    /// Training steps run so far (keys dropout masks); saved with the model.
    #[getter]
    fn step(&self, py: Python<'_>) -> PyResult<u64> {
        guard(|| {
            Ok({
                let this = self.lock(py);
                this.model.step
            })
        })
    }

    #[setter]
    fn set_step(&self, py: Python<'_>, step: u64) -> PyResult<()> {
        guard(|| {
            self.lock(py).model.step = step;
            Ok(())
        })
    }

    /// (iterations, nadam u_product, slot names, [[slot array per slot] per weight]),
    /// or None when not compiled. Slot lists are empty before the first step.
    #[allow(clippy::type_complexity)]
    fn optimizer_state<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(u64, f64, Vec<String>, Vec<Vec<Bound<'py, PyAny>>>)>> {
        guard(|| {
            Ok((|| {
                let this = self.lock(py);
                let opt = &this.model.compiled.as_ref()?.optimizer;
                let names: Vec<String> = opt
                    .kind
                    .slot_names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let slots = this
                    .model
                    .params()
                    .enumerate()
                    .map(|(i, p)| {
                        (0..names.len())
                            .filter_map(|s| {
                                opt.slot_values(i, s)
                                    .map(|v| to_numpy(py, &v, p.value.shape()))
                            })
                            .collect()
                    })
                    .collect();
                Some((opt.iterations, opt.u_product, names, slots))
            })())
        })
    }

    /// Restore what `optimizer_state` returned (slots may be empty: not started yet).
    fn set_optimizer_state(
        &self,
        py: Python<'_>,
        iterations: u64,
        u_product: f64,
        slots: Vec<Vec<PyReadonlyArrayDyn<'_, f32>>>,
    ) -> PyResult<()> {
        guard(|| {
            let mut this = self.lock(py);
            let sizes: Vec<usize> = this.model.params().map(|p| p.value.len()).collect();
            let values: Vec<Vec<Vec<f32>>> = slots
                .iter()
                .map(|per| {
                    per.iter()
                        .map(|a| a.as_array().iter().copied().collect())
                        .collect()
                })
                .collect();
            let Some(compiled) = this.model.compiled.as_mut() else {
                return Err(PyRuntimeError::new_err("the model is not compiled"));
            };
            let opt = &mut compiled.optimizer;
            if values.iter().all(|v| v.is_empty()) {
                opt.slots.clear();
            } else {
                opt.set_slot_values(&sizes, &values)
                    .map_err(|e| PyValueError::new_err(e.0))?;
            }
            opt.iterations = iterations;
            opt.u_product = u_product;
            Ok(())
        })
    }

    /// The shuffled sample order of `epoch` (depends only on the seed).
    fn shuffled_order<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        epoch: u64,
    ) -> PyResult<Bound<'py, PyArray1<u32>>> {
        guard(|| {
            Ok({
                let this = self.lock(py);
                PyArray1::from_vec(py, this.model.shuffled_order(n, epoch))
            })
        })
    }

    /// Train on the samples `order` (a slice of an epoch's order), batch by batch,
    /// adding to `totals`. Returns (loss_sum, samples, [(metric_sum, metric_weight)], batches).
    #[pyo3(signature = (x, y, sample_weight, order, batch_size, totals=None))]
    #[allow(clippy::too_many_arguments)]
    fn train(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: PyReadonlyArrayDyn<'_, f32>,
        sample_weight: Option<PyReadonlyArrayDyn<'_, f32>>,
        order: PyReadonlyArrayDyn<'_, u32>,
        batch_size: usize,
        totals: Option<PyTotals>,
    ) -> PyResult<PyTotals> {
        guard(|| {
            let mut this = self.lock(py);
            let data = dataset(x, &y, sample_weight.as_ref())?;
            let order = order
                .as_slice()
                .map_err(|_| PyValueError::new_err("order must be contiguous"))?;
            if let Some(&bad) = order.iter().find(|&&i| i as usize >= data.n) {
                return Err(PyValueError::new_err(format!(
                    "sample index {bad} out of range for {} samples",
                    data.n
                )));
            }
            let model = &mut this.model;
            let mut totals = totals_from_py(totals);
            run_core(py, || model.train(&data, order, batch_size, &mut totals))?;
            Ok(totals_to_py(&totals))
        })
    }

    /// Score samples start..end in order, adding to `totals`. Same return as `train`.
    #[pyo3(signature = (x, y, sample_weight, start, end, batch_size, totals=None))]
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: PyReadonlyArrayDyn<'_, f32>,
        sample_weight: Option<PyReadonlyArrayDyn<'_, f32>>,
        start: usize,
        end: usize,
        batch_size: usize,
        totals: Option<PyTotals>,
    ) -> PyResult<PyTotals> {
        guard(|| {
            let mut this = self.lock(py);
            let data = dataset(x, &y, sample_weight.as_ref())?;
            let model = &mut this.model;
            let mut totals = totals_from_py(totals);
            run_core(py, || {
                model.evaluate(&data, start, end, batch_size, &mut totals)
            })?;
            Ok(totals_to_py(&totals))
        })
    }

    /// A custom loop's forward pass on every sample of `x` (float32, C order):
    /// the outputs as a (rows, output size) array; activations kept for
    /// `tape_backward`.
    fn tape_forward<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
        training: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        guard(|| {
            let mut this = self.lock(py);
            let xs = f32_slice(&x)?;
            let out_size = this.model.output_size();
            let rows = x.shape().first().copied().unwrap_or(0);
            let mut out = output_buffer(rows, out_size)?;
            let model = &mut this.model;
            run_core(py, || model.tape_forward(xs, training, &mut out))?;
            Ok(to_numpy(py, &out, &[rows, out_size]))
        })
    }

    /// `tape_forward` again for an earlier call (see `Model::tape_replay`): `keys`
    /// are `random_keys` as they were just before it.
    fn tape_replay(
        &self,
        py: Python<'_>,
        x: PyReadonlyArrayDyn<'_, f32>,
        training: bool,
        keys: (u64, u64),
    ) -> PyResult<()> {
        guard(|| {
            let mut this = self.lock(py);
            let xs = f32_slice(&x)?;
            let model = &mut this.model;
            run_core(py, || model.tape_replay(xs, training, keys.0, keys.1))
        })
    }

    /// The counters that key the random draws of the next forward pass (training
    /// steps, inference batches).
    #[getter]
    fn random_keys(&self, py: Python<'_>) -> PyResult<(u64, u64)> {
        guard(|| {
            Ok({
                let this = self.lock(py);
                (this.model.step, this.model.inference_batches)
            })
        })
    }

    /// The losses the layers' calls added (add_loss) in the last `tape_forward`.
    fn tape_call_losses(&self, py: Python<'_>) -> PyResult<Vec<f32>> {
        guard(|| {
            Ok({
                let this = self.lock(py);
                this.model.tape_call_losses()
            })
        })
    }

    /// Forward passes run so far (any of them replaces the kept activations).
    #[getter]
    fn forward_runs(&self, py: Python<'_>) -> PyResult<u64> {
        guard(|| {
            Ok({
                let this = self.lock(py);
                this.model.forward_runs
            })
        })
    }

    /// The weights' gradients (as `get_weights` lists them) for output gradients
    /// `dy` of the last `tape_forward`.
    /// `loss_dys`: the gradients of the losses the calls added (`tape_call_losses`).
    #[pyo3(signature = (rows, dy, loss_dys=None))]
    fn tape_backward<'py>(
        &self,
        py: Python<'py>,
        rows: usize,
        dy: PyReadonlyArrayDyn<'py, f32>,
        loss_dys: Option<Vec<f32>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        guard(|| {
            let mut this = self.lock(py);
            this.backward_for_tape(py, rows, &dy, loss_dys, None)
        })
    }

    /// `tape_backward`, also returning the gradient with respect to the inputs, as
    /// a (rows, input size) array, after the weights' gradients.
    #[pyo3(signature = (rows, dy, loss_dys=None))]
    fn tape_backward_to_input<'py>(
        &self,
        py: Python<'py>,
        rows: usize,
        dy: PyReadonlyArrayDyn<'py, f32>,
        loss_dys: Option<Vec<f32>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        guard(|| {
            let mut this = self.lock(py);
            let width = this.model.input_size();
            let mut dx = vec![0.0f32; rows * width];
            let mut out = this.backward_for_tape(py, rows, &dy, loss_dys, Some(&mut dx))?;
            out.push(to_numpy(py, &dx, &[rows, width]));
            Ok(out)
        })
    }

    /// Outputs for samples start..end, as a (rows, output size) float32 array.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        start: usize,
        end: usize,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        guard(|| {
            let mut this = self.lock(py);
            let (xf, _) = features(x)?;
            let out_size = this.model.output_size();
            let rows = end.saturating_sub(start);
            let mut out = output_buffer(rows, out_size)?;
            let in_pool = !this.model.is_serial_work(rows.min(batch_size));
            let model = &mut this.model;
            run_core_on(py, in_pool, || {
                model.predict(xf, start, end, batch_size, &mut out)
            })?;
            Ok(to_numpy(py, &out, &[rows, out_size]))
        })
    }
}

/// The per-sample output shape of a layer (`{"class_name", "config"}`) called on
/// inputs of per-sample `input_shapes`, and the shapes of the weights it builds for
/// them: the engine's shape rule, for symbolic calls. The message of a ValueError
/// says why the layer cannot take those inputs.
#[pyfunction]
#[pyo3(signature = (spec_json, input_shapes, weight_budget=None))]
fn layer_output_shape(
    py: Python<'_>,
    spec_json: &str,
    input_shapes: Vec<Vec<usize>>,
    weight_budget: Option<u64>,
) -> PyResult<(Vec<usize>, Vec<Vec<usize>>)> {
    guard(|| {
        let spec = parse(spec_json)?;
        run_core(py, || {
            let name = ferrax_core::model::layer_name(&spec);
            for shape in &input_shapes {
                ferrax_core::sizing::shape(&format!("{name}: an input"), shape)?;
            }
            let shapes: Vec<&[usize]> = input_shapes.iter().map(Vec::as_slice).collect();
            let (layer, _) = ferrax_core::sizing::building(name.clone(), 0, weight_budget, || {
                ferrax_core::layers::build_node(&spec, &shapes, ferrax_core::rng::Key::new(0))
            });
            let layer = layer?;
            ferrax_core::sizing::shape(&format!("{name}: the output"), layer.output_shape())?;
            let weights = layer
                .params()
                .iter()
                .map(|p| p.value.shape().to_vec())
                .collect();
            Ok((layer.output_shape().to_vec(), weights))
        })
    })
}

/// Flat index of the first NaN or infinity in a C-contiguous uint8 / float32 /
/// float64 array, or None: the engine's scan, on the whole pool for big arrays.
#[pyfunction]
fn first_non_finite(py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    guard(|| {
        let (features, _) = arrays::features(x)?;
        // A small array is scanned on the calling thread (a custom loop checks each batch).
        let in_pool = features.len() >= 8 * parallel::PARALLEL_THRESHOLD;
        run_core_on(py, in_pool, || {
            Ok(features.first_non_finite(0, features.len()))
        })
    })
}

#[pyfunction]
fn num_threads() -> PyResult<usize> {
    guard(|| Ok(parallel::pool().current_num_threads()))
}

/// SIMD features of this CPU that the engine's kernels can use (chosen at run time).
#[pyfunction]
fn cpu_features() -> PyResult<Vec<&'static str>> {
    guard(|| {
        Ok({
            let mut found = Vec::new();
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("sse4.2") {
                    found.push("sse4.2");
                }
                if std::arch::is_x86_feature_detected!("avx") {
                    found.push("avx");
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    found.push("avx2");
                }
                if std::arch::is_x86_feature_detected!("fma") {
                    found.push("fma");
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    found.push("avx512f");
                }
            }
            #[cfg(target_arch = "aarch64")]
            {
                found.push("neon");
            }
            found
        })
    })
}

/// Sets the bytes one allocation, one model's weights or one batch's buffers may
/// take (the machine's memory; 0: no limit but what can be addressed).
#[pyfunction]
fn set_memory_limit(bytes: u64) -> PyResult<()> {
    guard(|| {
        ferrax_core::sizing::set_limit(bytes);
        Ok(())
    })
}

/// The limit `set_memory_limit` set, in bytes.
#[pyfunction]
fn memory_limit() -> PyResult<u64> {
    guard(|| Ok(ferrax_core::sizing::limit()))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Imported on Python's main thread (as nearly always), it becomes the pool's
    // worker 0, so that its calls skip the hand-over (see `parallel::adopt_this_thread`).
    let threading = m.py().import("threading")?;
    if threading
        .call_method0("current_thread")?
        .is(&threading.call_method0("main_thread")?)
    {
        parallel::adopt_this_thread();
        ON_PYTHON_MAIN.with(|on| on.set(true));
        ferrax_core::interrupt::set_checker(signal_pending);
    }
    m.add_class::<CoreModel>()?;
    m.add_function(wrap_pyfunction!(first_non_finite, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(layer_output_shape, m)?)?;
    m.add_function(wrap_pyfunction!(cpu_features, m)?)?;
    m.add_function(wrap_pyfunction!(set_memory_limit, m)?)?;
    m.add_function(wrap_pyfunction!(memory_limit, m)?)?;
    testing::register(m)?;
    files::register(m)?;
    ops::register(m)?;
    eager_optimizer::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
