"""A layer or model called on arrays (`layers.Dense(3)(np.ones((4, 5)))`): the
result computed now, by a model of the layer alone built for the input shape."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ferrax.symbolic import flatten
from ferrax.tensor import Tensor

# The training mode of the model calls running eagerly (innermost last): what a layer
# called without training= inside them runs in, as Keras passes the mode down.
_TRAINING: list[bool | None] = []


@contextmanager
def training_mode(training: bool | None) -> Iterator[None]:
    """Layers called eagerly within run in `training` mode unless told otherwise."""
    _TRAINING.append(training)
    try:
        yield
    finally:
        _TRAINING.pop()


def call_eager(layer: Any, inputs: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """`layer(inputs)` on arrays or eager tensors (one, or a list for a merge layer;
    a recurrent layer's `initial_state` too). Under a GradientTape the call is
    recorded, its gradient reaching the weights and every input tensor."""
    from ferrax.layers.core import Input
    from ferrax.models.functional import Functional
    from ferrax.ops import _dispatch

    owner = f"{type(layer).__name__} '{layer.name}'"
    training = kwargs.pop("training", None)
    if training is None and _TRAINING:
        training = _TRAINING[-1]
    initial_state = kwargs.pop("initial_state", None)
    if kwargs.pop("mask", None) is not None:
        raise NotImplementedError(f"{owner}: a mask= argument on arrays is not supported; "
                                  f"masks come from the layers that make them (Embedding "
                                  f"with mask_zero=True, Masking) inside a model")
    if args or kwargs:
        extra = [repr(a) for a in args] + sorted(kwargs)
        raise NotImplementedError(f"{owner}: call arguments {', '.join(extra)} are not "
                                  f"supported on arrays")
    states = [] if initial_state is None else (
        list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state])
    leaves = flatten(inputs)
    values = leaves + states
    try:
        arrays = [x._value if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
                  for x in values]
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: expects symbolic tensors or arrays of numbers, got "
                        f"{', '.join(type(x).__name__ for x in values)}") from None
    for a in arrays:
        if a.ndim < 1:
            raise ValueError(f"{owner}: called on an array of shape {a.shape}; the first "
                             f"axis is the batch axis")
    listed = isinstance(inputs, (list, tuple))
    key = tuple(a.shape[1:] for a in arrays) + (listed, len(states))
    model = layer._eager_models.get(key)
    if model is None:
        tensors = [Input(shape=a.shape[1:]) for a in arrays]
        main = tensors[:len(leaves)]
        symbolic = main if listed else main[0]
        out = (layer(symbolic, initial_state=tensors[len(leaves):]) if states
               else layer(symbolic))
        model = Functional(inputs=tensors if len(tensors) > 1 or listed else tensors[0],
                           outputs=out)
        layer._eager_models[key] = model
    data: Any = values if len(values) > 1 or listed else values[0]
    if _dispatch._TAPES or training:
        return model._call_under_tape(data, bool(training))
    out = model.predict([np.asarray(v) for v in data] if isinstance(data, list) else
                        np.asarray(data), batch_size=max(1, len(arrays[0])), verbose=0)
    if isinstance(out, list):
        return [Tensor(o) for o in out]
    return Tensor(out)
