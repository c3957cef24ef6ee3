"""Utilities: to_categorical, seeding, and plotting helpers."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from ferrax._registry import (  # Keras also has them in keras.utils
    custom_object_scope as custom_object_scope,
)
from ferrax._registry import get_custom_objects as get_custom_objects
from ferrax._registry import get_registered_name as get_registered_name
from ferrax._registry import get_registered_object as get_registered_object
from ferrax._registry import register_keras_serializable as register_keras_serializable
from ferrax._serial import describe
from ferrax._typing import Float32Array, PathLike

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ferrax.callbacks import History
    from ferrax.models import Model

# The global seed every model derives its own from; random unless set.
_SEED_STATE = {"seed": int.from_bytes(os.urandom(4), "little"), "counter": 0}
if os.environ.get("FERRAX_SEED", "").strip().isdigit():
    _SEED_STATE["seed"] = int(os.environ["FERRAX_SEED"])


def set_random_seed(seed: int) -> None:
    """Seed ferrax, Python's `random` and NumPy, as keras.utils.set_random_seed does.

    After this, building and training the same model on the same data gives
    bitwise-identical weights, whatever the number of threads.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_random_seed: 'seed' must be a non-negative integer, "
                         f"got {describe(seed)}")
    _SEED_STATE["seed"] = int(seed)
    _SEED_STATE["counter"] = 0
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)


def _next_seed() -> int:
    """A fresh 64-bit seed for the next model or draw, derived from the global seed."""
    _SEED_STATE["counter"] += 1
    x = (_SEED_STATE["seed"] * 0x9E3779B97F4A7C15 + _SEED_STATE["counter"]) % 2**64
    x ^= x >> 31
    return (x * 0xBF58476D1CE4E5B9) % 2**64


def unpack_x_y_sample_weight(data: Any) -> tuple[Any, Any, Any]:
    """A step's `data` as (x, y, sample_weight): a tuple of one, two or three, or x
    alone, as Keras packs it.

    Args:
        data: What `train_step` / `test_step` / `predict_step` received.

    Example:

    >>> x, y, sample_weight = ferrax.utils.unpack_x_y_sample_weight((x, y))
    """
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data[0], data[1], data[2]
    raise ValueError(f"unpack_x_y_sample_weight: data is a tuple of (x,), (x, y) or (x, y, "
                     f"sample_weight), got one of {len(data)}")


def pack_x_y_sample_weight(x: Any, y: Any = None, sample_weight: Any = None) -> Any:
    """The inverse of `unpack_x_y_sample_weight`: x alone, (x, y) or (x, y, w).

    Args:
        x: The inputs.
        y: The targets (or None).
        sample_weight: The weights (or None).

    Example:

    >>> data = ferrax.utils.pack_x_y_sample_weight(x, y)   # (x, y)
    """
    if y is None:
        return x if not isinstance(x, (tuple, list)) else (x,)
    return (x, y) if sample_weight is None else (x, y, sample_weight)


def to_categorical(x: npt.ArrayLike, num_classes: int | None = None) -> Float32Array:
    """One-hot float32 encoding of integer class ids; num_classes defaults to max + 1."""
    y = np.asarray(x)
    if y.size and not np.issubdtype(y.dtype, np.integer) and (
            not np.issubdtype(y.dtype, np.number) or not np.all(np.equal(np.mod(y, 1), 0))):
        raise ValueError(f"to_categorical: class ids must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: class ids must be >= 0, got {int(y.min())}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif y.size and y.max() >= num_classes:
        raise ValueError(f"to_categorical: class id {int(y.max())} is out of range for "
                         f"num_classes={num_classes}")
    out = np.zeros(y.shape + (num_classes,), dtype=np.float32)
    np.put_along_axis(out, y[..., None], 1.0, axis=-1)
    return out


def normalize(x: npt.ArrayLike, axis: int = -1,
              order: float | Literal["fro", "nuc"] | None = 2) -> Float32Array:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    # float32 / float32: NumPy's stubs widen the result to float64.
    return x / np.where(norm == 0, 1, norm)  # type: ignore[return-value]


def plot_history(history: History | Mapping[str, Sequence[float]],
                 path: PathLike | None = None) -> Figure:
    """Draw training / validation curves (needs matplotlib); see ferrax._plotting."""
    from ferrax._plotting import plot_history as _plot

    return _plot(history, path)


def plot_model(model: Model, to_file: PathLike | None = "model.png",
               show_shapes: bool = True, show_layer_names: bool = True, **kwargs: Any) -> Figure:
    """Draw the model (a stack, or a functional model's graph) with shapes to a PNG (needs
    matplotlib; no Graphviz)."""
    from ferrax._plotting import plot_model as _plot

    return _plot(model, to_file, show_shapes=show_shapes, show_layer_names=show_layer_names,
                 **kwargs)
