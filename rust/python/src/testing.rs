//! Hooks that run one engine component on NumPy inputs, so tests can check
//! each against an independent float64 reference. Used by `ferrax._testing`.

use crate::arrays::to_numpy;
use crate::guard;
use crate::{parse, run_core};
use ferrax_core::activation::Activation;
use ferrax_core::init::InitSpec;
use ferrax_core::layers::{self, Ctx, Param, Tensor};
use ferrax_core::loss::Loss;
use ferrax_core::optimizer::Optimizer;
use ferrax_core::rng::Key;
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

fn owned(a: &PyReadonlyArrayDyn<'_, f32>) -> (Vec<f32>, Vec<usize>) {
    (a.as_array().iter().copied().collect(), a.shape().to_vec())
}

type LayerResult<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Vec<Bound<'py, PyAny>>,
    f64,
    Vec<Bound<'py, PyAny>>,
);

/// Build a layer for x's per-sample shape, run forward then backward with `dy`.
/// Returns y, dx, the param gradients, the penalty and the param values after
/// the pass (a training forward may update state such as moving statistics).
#[pyfunction]
#[pyo3(signature = (spec_json, x, dy, training, weights, seed, include_regularization, mask=None))]
#[allow(clippy::too_many_arguments)]
fn layer_forward_backward<'py>(
    py: Python<'py>,
    spec_json: &str,
    x: PyReadonlyArrayDyn<'py, f32>,
    dy: Option<PyReadonlyArrayDyn<'py, f32>>,
    training: bool,
    weights: Option<Vec<PyReadonlyArrayDyn<'py, f32>>>,
    seed: u64,
    include_regularization: bool,
    mask: Option<PyReadonlyArrayDyn<'py, bool>>,
) -> PyResult<LayerResult<'py>> {
    guard(|| {
        let mask: Option<Vec<bool>> = mask.map(|m| m.as_array().iter().copied().collect());
        let spec = parse(spec_json)?;
        let (xv, xs) = owned(&x);
        if xs.is_empty() {
            return Err(PyValueError::new_err("x needs a batch axis"));
        }
        let weights: Option<Vec<(Vec<f32>, Vec<usize>)>> =
            weights.map(|ws| ws.iter().map(owned).collect());
        let dyv = dy.as_ref().map(owned);
        let (y, out_shape, dx, grads, reg, values) = run_core(py, || {
            let rows = xs[0];
            let mut layer = layers::build(&spec, &xs[1..], Key::new(seed))?;
            if let Some(ws) = &weights {
                let params = layer.params_mut();
                if ws.len() != params.len() {
                    ferrax_core::bail!("expected {} weights, got {}", params.len(), ws.len());
                }
                for (p, (v, s)) in params.iter_mut().zip(ws) {
                    if p.value.shape() != s.as_slice() {
                        ferrax_core::bail!(
                            "weight {}: expected shape {:?}, got {:?}",
                            p.name,
                            p.value.shape(),
                            s
                        );
                    }
                    p.value = Tensor::from_shape_vec(s.clone(), v.clone()).expect("shape checked");
                }
            }
            let out_shape: Vec<usize> = std::iter::once(rows)
                .chain(layer.output_shape().iter().copied())
                .collect();
            let n_out: usize = out_shape.iter().product();
            let mut y = vec![0.0f32; n_out];
            if let Some(m) = &mask {
                if m.len() != rows * xs.get(1).copied().unwrap_or(0) {
                    ferrax_core::bail!(
                        "mask: expected (batch, timesteps) = ({rows}, {:?}) values, got {}",
                        xs.get(1),
                        m.len()
                    );
                }
            }
            let ctx = Ctx {
                training,
                key: Key::new(seed).fold(0xd0),
                mask: mask.as_deref(),
            };
            layer.check_input(&xv)?;
            layer.forward(&xv, &mut y, rows, &ctx);
            let mut d = match &dyv {
                Some((v, s)) if *s == out_shape => v.clone(),
                Some((_, s)) => ferrax_core::bail!("dy: expected shape {out_shape:?}, got {s:?}"),
                None => vec![1.0; n_out],
            };
            let mut dx = vec![0.0f32; xv.len()];
            layer.backward(&xv, &y, &mut d, Some(&mut dx), rows);
            let mut reg = 0.0;
            let mut grads = Vec::new();
            let mut values = Vec::new();
            for p in layer.params_mut() {
                let Param {
                    value,
                    grad,
                    regularizer,
                    ..
                } = p;
                if let (true, Some(r)) = (include_regularization, regularizer) {
                    reg += r.penalty(value.as_slice().expect("contiguous"));
                    r.add_gradient(
                        value.as_slice().expect("contiguous"),
                        grad.as_slice_mut().expect("contiguous"),
                    );
                }
                grads.push((
                    grad.as_slice().expect("contiguous").to_vec(),
                    grad.shape().to_vec(),
                ));
                values.push(value.as_slice().expect("contiguous").to_vec());
            }
            Ok((y, out_shape, dx, grads, reg, values))
        })?;
        let values = values
            .iter()
            .zip(&grads)
            .map(|(v, (_, s))| to_numpy(py, v, s))
            .collect();
        let grads = grads.iter().map(|(g, s)| to_numpy(py, g, s)).collect();
        Ok((
            to_numpy(py, &y, &out_shape),
            to_numpy(py, &dx, &xs),
            grads,
            reg,
            values,
        ))
    })
}

/// Build a merge layer for the inputs' per-sample shapes, run it forward, then
/// backward with `dy`. Returns y and one input gradient per input.
#[pyfunction]
fn merge_forward_backward<'py>(
    py: Python<'py>,
    spec_json: &str,
    xs: Vec<PyReadonlyArrayDyn<'py, f32>>,
    dy: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<(Bound<'py, PyAny>, Vec<Bound<'py, PyAny>>)> {
    guard(|| {
        let spec = parse(spec_json)?;
        let inputs: Vec<(Vec<f32>, Vec<usize>)> = xs.iter().map(owned).collect();
        let (dyv, dys) = owned(&dy);
        let rows = match inputs.first() {
            Some((_, s)) if !s.is_empty() => s[0],
            _ => return Err(PyValueError::new_err("xs: needs inputs with a batch axis")),
        };
        if inputs.iter().any(|(_, s)| s.first() != Some(&rows)) {
            return Err(PyValueError::new_err(
                "xs: every input needs the same batch size",
            ));
        }
        let (y, out_shape, dxs) = run_core(py, || {
            let shapes: Vec<&[usize]> = inputs.iter().map(|(_, s)| &s[1..]).collect();
            let mut layer = layers::build_node(&spec, &shapes, Key::new(0))?;
            let out_shape: Vec<usize> = std::iter::once(rows)
                .chain(layer.output_shape().iter().copied())
                .collect();
            if dys != out_shape {
                ferrax_core::bail!("dy: expected shape {out_shape:?}, got {dys:?}");
            }
            let mut y = vec![0.0f32; out_shape.iter().product()];
            let refs: Vec<&[f32]> = inputs.iter().map(|(v, _)| v.as_slice()).collect();
            let ctx = Ctx {
                training: true,
                key: Key::new(0),
                mask: None,
            };
            layer.forward_many(&refs, &mut y, rows, &ctx);
            let mut d = dyv.clone();
            let mut dxs: Vec<Vec<f32>> = inputs.iter().map(|(v, _)| vec![0.0; v.len()]).collect();
            let mut slots: Vec<Option<&mut [f32]>> =
                dxs.iter_mut().map(|v| Some(v.as_mut_slice())).collect();
            layer.backward_many(&refs, &y, &mut d, &mut slots, rows);
            Ok((y, out_shape, dxs))
        })?;
        let dxs = dxs
            .iter()
            .zip(&inputs)
            .map(|(d, (_, s))| to_numpy(py, d, s))
            .collect();
        Ok((to_numpy(py, &y, &out_shape), dxs))
    })
}

/// y = f(x) and dx = dy·f'(x) over the last axis.
#[pyfunction]
fn activation_forward_backward<'py>(
    py: Python<'py>,
    spec_json: &str,
    x: PyReadonlyArrayDyn<'py, f32>,
    dy: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    guard(|| {
        let act =
            Activation::from_spec(&parse(spec_json)?).map_err(|e| PyValueError::new_err(e.0))?;
        let ((xv, xs), (mut d, ds)) = (owned(&x), owned(&dy));
        if xs != ds {
            return Err(PyValueError::new_err(format!(
                "x and dy shapes differ: {xs:?} vs {ds:?}"
            )));
        }
        let width = xs.last().copied().unwrap_or(1);
        let y = run_core(py, || {
            let mut y = vec![0.0f32; xv.len()];
            act.forward(&xv, &mut y, width);
            act.backward(&xv, &y, &mut d, width);
            Ok(y)
        })?;
        Ok((to_numpy(py, &y, &xs), to_numpy(py, &d, &xs)))
    })
}

/// The batch loss (sum over batch size) and its gradient w.r.t. y_pred.
#[pyfunction]
#[pyo3(signature = (spec_json, y_true, y_pred, sample_weight=None))]
fn loss_value_and_grad<'py>(
    py: Python<'py>,
    spec_json: &str,
    y_true: PyReadonlyArrayDyn<'py, f32>,
    y_pred: PyReadonlyArrayDyn<'py, f32>,
    sample_weight: Option<PyReadonlyArrayDyn<'py, f32>>,
) -> PyResult<(f64, Bound<'py, PyAny>)> {
    guard(|| {
        let loss = Loss::from_spec(&parse(spec_json)?).map_err(|e| PyValueError::new_err(e.0))?;
        let ((t, ts), (p, ps)) = (owned(&y_true), owned(&y_pred));
        if ps.len() != 2 || ts.is_empty() || ts[0] != ps[0] {
            return Err(PyValueError::new_err(format!(
                "y_pred must be (batch, k) and y_true match it: {ts:?} vs {ps:?}"
            )));
        }
        let rows = ps[0];
        let true_width = t.len().checked_div(rows).unwrap_or(0);
        let w = sample_weight.as_ref().map(|w| owned(w).0);
        let (value, grad) = run_core(py, || {
            let mut g = vec![0.0f32; p.len()];
            let v = loss.evaluate(
                &t,
                true_width,
                &p,
                ps[1],
                w.as_deref(),
                rows as f32,
                Some(&mut g),
                false,
            );
            Ok((v / rows as f64, g))
        })?;
        Ok((value, to_numpy(py, &grad, &ps)))
    })
}

/// Run an optimizer from `params` through one step per entry of `grads_per_step`.
#[pyfunction]
fn optimizer_run<'py>(
    py: Python<'py>,
    spec_json: &str,
    params: Vec<PyReadonlyArrayDyn<'py, f32>>,
    grads_per_step: Vec<Vec<PyReadonlyArrayDyn<'py, f32>>>,
) -> PyResult<Vec<Vec<Bound<'py, PyAny>>>> {
    guard(|| {
        let mut opt =
            Optimizer::from_spec(&parse(spec_json)?).map_err(|e| PyValueError::new_err(e.0))?;
        let params: Vec<(Vec<f32>, Vec<usize>)> = params.iter().map(owned).collect();
        let steps: Vec<Vec<(Vec<f32>, Vec<usize>)>> = grads_per_step
            .iter()
            .map(|s| s.iter().map(owned).collect())
            .collect();
        let history = run_core(py, || {
            let mut ps: Vec<Param> = params
                .iter()
                .map(|(v, s)| {
                    let value = Tensor::from_shape_vec(s.clone(), v.clone()).expect("numpy shape");
                    Param::from_value("param", value)
                })
                .collect();
            let mut history = Vec::new();
            for step in &steps {
                if step.len() != ps.len() {
                    ferrax_core::bail!(
                        "each step needs {} gradients, got {}",
                        ps.len(),
                        step.len()
                    );
                }
                for (p, (g, s)) in ps.iter_mut().zip(step) {
                    if p.value.shape() != s.as_slice() {
                        ferrax_core::bail!(
                            "gradient shape {s:?} does not match parameter shape {:?}",
                            p.value.shape()
                        );
                    }
                    p.grad
                        .as_slice_mut()
                        .expect("contiguous")
                        .copy_from_slice(g);
                }
                let mut refs: Vec<&mut Param> = ps.iter_mut().collect();
                opt.apply(&mut refs);
                history.push(
                    ps.iter()
                        .map(|p| (p.value_slice().to_vec(), p.value.shape().to_vec()))
                        .collect::<Vec<_>>(),
                );
            }
            Ok(history)
        })?;
        Ok(history
            .iter()
            .map(|step| step.iter().map(|(v, s)| to_numpy(py, v, s)).collect())
            .collect())
    })
}

/// Draw an initializer's values for `shape` with the model seed `seed`.
#[pyfunction]
fn initializer_sample<'py>(
    py: Python<'py>,
    spec_json: &str,
    shape: Vec<usize>,
    seed: u64,
) -> PyResult<Bound<'py, PyAny>> {
    guard(|| {
        let init =
            InitSpec::from_spec(&parse(spec_json)?).map_err(|e| PyValueError::new_err(e.0))?;
        let values = run_core(py, || init.sample(&shape, Key::new(seed)))?;
        Ok(to_numpy(py, &values, &shape))
    })
}

/// Panics on purpose, in the binding (`"binding"`) or inside the engine call
/// (`"engine"`): tests check that a panic reaches Python as a RuntimeError.
#[pyfunction]
fn panic_for_test(py: Python<'_>, place: &str) -> PyResult<()> {
    guard(|| match place {
        "binding" => panic!("deliberate panic in the binding"),
        "engine" => run_core(py, || -> ferrax_core::Result<()> {
            panic!("deliberate panic in the engine")
        }),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "place must be 'binding' or 'engine', got {other:?}"
        ))),
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(panic_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(layer_forward_backward, m)?)?;
    m.add_function(wrap_pyfunction!(merge_forward_backward, m)?)?;
    m.add_function(wrap_pyfunction!(activation_forward_backward, m)?)?;
    m.add_function(wrap_pyfunction!(loss_value_and_grad, m)?)?;
    m.add_function(wrap_pyfunction!(optimizer_run, m)?)?;
    m.add_function(wrap_pyfunction!(initializer_sample, m)?)?;
    Ok(())
}
