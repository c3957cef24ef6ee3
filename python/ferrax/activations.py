"""Activation functions, by Keras's names. Each computes in the Rust engine.

Use them by name (``Dense(10, activation="softmax")``) or as functions
(``activation=ferrax.activations.relu``, or call them on a NumPy array).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ferrax import _core
from ferrax._serial import describe
from ferrax._typing import Float32Array

# An activation function of this module: float32 array in, float32 array out.
ActivationFunction = Callable[..., Float32Array]

_NAMES = (
    "linear", "relu", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "sigmoid",
    "hard_sigmoid", "tanh", "softplus", "softsign", "softmax", "log_softmax",
)


def _apply(spec: dict[str, Any], x: npt.ArrayLike) -> Float32Array:
    x = np.asarray(x, dtype=np.float32)
    squeeze = x.ndim == 1
    if x.ndim == 0:
        x = x.reshape(1, 1)
    elif squeeze:
        x = x.reshape(1, -1)
    y, _ = _core.activation_forward_backward(json.dumps(spec), np.ascontiguousarray(x),
                                             np.zeros_like(x))
    return y.reshape(-1) if squeeze else y


def _make(name: str, doc: str, **defaults: Any) -> ActivationFunction:
    def fn(x: npt.ArrayLike, **kwargs: Any) -> Float32Array:
        spec = {"name": name, **defaults, **kwargs}
        return _apply(spec, x)

    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = doc
    fn._ferrax_activation = name  # type: ignore[attr-defined]  # marks ferrax's functions
    return fn


linear = _make("linear", "Identity: x.")
relu = _make("relu", "max(x, 0).")
leaky_relu = _make("leaky_relu", "x if x > 0 else negative_slope * x (default 0.2).")
elu = _make("elu", "x if x > 0 else alpha * (exp(x) - 1) (alpha 1.0).")
selu = _make("selu", "Scaled ELU with Keras's constants.")
gelu = _make("gelu", "x * Phi(x); approximate=True uses the tanh form.")
silu = _make("silu", "x * sigmoid(x).")
swish = _make("swish", "x * sigmoid(x) (same as silu).")
sigmoid = _make("sigmoid", "1 / (1 + exp(-x)).")
hard_sigmoid = _make("hard_sigmoid", "relu6(x + 3) / 6, Keras 3's definition.")
tanh = _make("tanh", "Hyperbolic tangent.")
softplus = _make("softplus", "log(1 + exp(x)).")
softsign = _make("softsign", "x / (1 + |x|).")
softmax = _make("softmax", "Softmax over the last axis.")
log_softmax = _make("log_softmax", "Log of the softmax over the last axis.")


def get(identifier: str | Callable[..., Any] | None) -> str:
    """Resolve a name, an activation function of this module, or None to a name."""
    if identifier is None:
        return "linear"
    if isinstance(identifier, str):
        if identifier not in _NAMES:
            raise ValueError(
                f"Unknown activation {identifier!r}. Expected one of: {', '.join(_NAMES)}"
            )
        return identifier
    name = getattr(identifier, "_ferrax_activation", None)
    if name is not None:
        return name
    raise TypeError(
        f"activation must be a name like 'relu' or a function from ferrax.activations, "
        f"got {describe(identifier)}"
    )


def serialize(identifier: str | Callable[..., Any] | None) -> str:
    return get(identifier)
