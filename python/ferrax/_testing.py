"""Run single engine components on NumPy data, for tests against references."""

import json

import numpy as np

from ferrax import _core, activations, initializers, losses, optimizers


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def activation_forward_backward(activation, x, dy):
    name = activations.get(activation)
    return _core.activation_forward_backward(json.dumps(name), _f32(x), _f32(dy))


def loss_value_and_grad(loss, y_true, y_pred, sample_weight=None):
    loss = losses.get(loss)
    y_pred = _f32(y_pred)
    y_true = _f32(np.asarray(y_true).reshape(len(y_pred), -1))
    sw = None if sample_weight is None else _f32(sample_weight)
    return _core.loss_value_and_grad(json.dumps(loss._core_spec()), y_true, y_pred, sw)


def optimizer_run(optimizer, params, grads_per_step):
    opt = optimizers.get(optimizer)
    return _core.optimizer_run(json.dumps(opt._core_spec()), [_f32(p) for p in params],
                               [[_f32(g) for g in step] for step in grads_per_step])


def initializer_sample(initializer, shape, seed=0):
    init = initializers.get(initializer)
    return _core.initializer_sample(json.dumps(init._core_spec()), list(shape), int(seed))


def layer_forward_backward(layer, x, dy=None, *, training=False, weights=None, seed=0,
                           include_regularization=False):
    result = _core.layer_forward_backward(
        json.dumps(layer._core_spec()), _f32(x), None if dy is None else _f32(dy),
        bool(training), None if weights is None else [_f32(w) for w in weights], int(seed),
        bool(include_regularization))
    y, dx, grads, reg = result
    if include_regularization:
        return y, dx, grads, reg
    return y, dx, grads
