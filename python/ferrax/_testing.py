"""Run single engine components on NumPy data, for tests against references."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ferrax import _core, activations, initializers, losses, optimizers
from ferrax._typing import Float32Array
from ferrax.layers.recurrent import _RNN, split_outputs

if TYPE_CHECKING:
    from ferrax.layers import Layer


def _f32(a: npt.ArrayLike) -> Float32Array:
    return np.ascontiguousarray(a, dtype=np.float32)


def activation_forward_backward(activation: str | Callable[..., Any] | None, x: npt.ArrayLike,
                                dy: npt.ArrayLike) -> tuple[Float32Array, Float32Array]:
    name = activations.get(activation)
    return _core.activation_forward_backward(json.dumps(name), _f32(x), _f32(dy))


def loss_value_and_grad(loss: Any, y_true: npt.ArrayLike, y_pred: npt.ArrayLike,
                        sample_weight: npt.ArrayLike | None = None
                        ) -> tuple[float, Float32Array]:
    loss_obj = losses.get(loss)
    pred = _f32(y_pred)
    true = _f32(np.asarray(y_true).reshape(len(pred), -1))
    sw = None if sample_weight is None else _f32(sample_weight)
    return _core.loss_value_and_grad(json.dumps(loss_obj._core_spec()), true, pred, sw)


def optimizer_run(optimizer: Any, params: Iterable[npt.ArrayLike],
                  grads_per_step: Iterable[Iterable[npt.ArrayLike]]
                  ) -> list[list[Float32Array]]:
    opt = optimizers.get(optimizer)
    return _core.optimizer_run(json.dumps(opt._core_spec()), [_f32(p) for p in params],
                               [[_f32(g) for g in step] for step in grads_per_step])


def initializer_sample(initializer: Any, shape: Iterable[int], seed: int = 0) -> Float32Array:
    init = initializers.get(initializer)
    return _core.initializer_sample(json.dumps(init._core_spec()), list(shape), int(seed))


def layer_forward_backward(layer: Layer, x: npt.ArrayLike, dy: Any = None, *,
                           training: bool = False,
                           weights: Sequence[npt.ArrayLike] | None = None, seed: int = 0,
                           include_regularization: bool = False,
                           mask: npt.ArrayLike | None = None,
                           return_weights: bool = False) -> tuple[Any, ...]:
    """Runs one layer forward on x then backward from dy (ones if None).

    Returns (y, dx, grads), then the penalty if include_regularization, then the weights
    after the pass if return_weights (a training pass may update moving statistics).
    For a layer with return_state, y comes back as [output, states...] and dy may be a
    list of the same shapes. `mask` is a (batch, timesteps) boolean keep-mask.
    """
    xa = _f32(x)
    if isinstance(dy, (list, tuple)):
        dy = np.concatenate([_f32(d).reshape(len(xa), -1) for d in dy], axis=1)
    result = _core.layer_forward_backward(
        json.dumps(layer._core_spec()), xa, None if dy is None else _f32(dy),
        bool(training), None if weights is None else [_f32(w) for w in weights], int(seed),
        bool(include_regularization),
        None if mask is None else np.ascontiguousarray(mask, dtype=bool))
    y, dx, grads, reg, after = result
    outputs: Any = y
    if isinstance(layer, _RNN) and layer.return_state:
        outputs = split_outputs(layer._parts_for(xa.shape[1]), y)
    out: tuple[Any, ...] = (outputs, dx, grads)
    if include_regularization:
        out += (reg,)
    if return_weights:
        out += (after,)
    return out


def merge_forward_backward(layer: Layer, xs: Sequence[npt.ArrayLike], dy: npt.ArrayLike
                           ) -> tuple[Float32Array, list[Float32Array]]:
    """Runs one merge layer (Add, Concatenate, ...) forward on the list `xs`, then
    backward from `dy`. Returns (y, [dx per input])."""
    return _core.merge_forward_backward(json.dumps(layer._core_spec()),
                                        [_f32(x) for x in xs], _f32(dy))
