"""Checks and conversions of user data before the engine sees it.

Every problem is reported here, before any training step, with a message
that names the argument and says what was expected and what came.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ferrax import _core
from ferrax._typing import Float32Array

if TYPE_CHECKING:
    from ferrax.losses import Loss

# dtypes the engine reads directly (no copy of the data set is made)
_ENGINE_DTYPES = (np.uint8, np.float32, np.float64)


def as_array(value: Any, arg: str, check_finite: bool = True) -> np.ndarray:
    """A NumPy array from array-likes, with a TypeError for non-numeric data.

    `check_finite=False` skips the NaN/inf scan: predict leaves it to the engine, whose
    vectorised scan costs a fraction of NumPy's sum over the whole array."""
    if value is None:
        raise ValueError(f"'{arg}' is required, got None")
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"'{arg}' could not be converted to an array: {e}") from None
    kind = a.dtype.kind  # cheaper than np.issubdtype on the per-call path of predict
    if kind == "b":
        a, kind = a.astype(np.float32), "f"
    if kind not in "iuf":
        raise TypeError(f"'{arg}' must be a numeric array (ints or floats), got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError(f"'{arg}' must have a batch axis, got a scalar")
    if len(a) == 0:
        raise ValueError(f"'{arg}' is empty: got shape {a.shape}, need at least one sample")
    if check_finite and kind == "f":
        first = _first_non_finite(a)
        if first is not None:
            where = np.unravel_index(first, a.shape)
            raise ValueError(f"'{arg}' contains NaN or inf (first at index "
                             f"{tuple(int(i) for i in where)}, value {a[where]})")
    return a


def _first_non_finite(a: np.ndarray) -> int | None:
    """Flat index of the first NaN/inf of a float array, or None."""
    if a.dtype in (np.float32, np.float64) and a.flags.c_contiguous:
        return _core.first_non_finite(a)  # one vectorised pass (big arrays on the pool)
    # Other arrays: a finite sum proves every value finite without a temporary.
    if np.isfinite(np.sum(a)):
        return None
    bad = ~np.isfinite(a).ravel()
    return int(np.argmax(bad)) if bad.any() else None


def features(x: np.ndarray, expected_shape: Sequence[int | None] | None, model_name: str,
             arg: str = "x", first_layer: Callable[[], str | None] | None = None
             ) -> np.ndarray:
    """(n, width) C-contiguous uint8/float32/float64 view (or copy) of `x`; None in
    `expected_shape` accepts any length there. `first_layer` gives the name of the
    model's first layer, for the error (asked for only then)."""
    if expected_shape is not None and tuple(x.shape[1:]) != tuple(expected_shape) \
            and not _fits(tuple(x.shape[1:]), tuple(expected_shape)):
        layer = first_layer() if first_layer is not None else None
        where = f" (first layer '{layer}')" if layer else ""
        raise ValueError(
            f"Input of model '{model_name}'{where} is incompatible: expected '{arg}' of shape "
            f"(None, {', '.join(map(str, expected_shape))}) "
            f"(samples of shape {tuple(expected_shape)}), got shape {x.shape}")
    if x.dtype not in _ENGINE_DTYPES:
        x = x.astype(np.float32)
    return np.ascontiguousarray(x.reshape(len(x), -1))


def _fits(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(
        e is None or s == e for s, e in zip(shape, expected))


def by_name(model: str, data: dict[str, Any], arg: str, names: list[str], kind: str
            ) -> list[Any]:
    """The values of a dict given for a model's named inputs or outputs, in the model's
    order; keys that match none and names left out are errors that list the names."""
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ValueError(f"Model '{model}': '{arg}' has key(s) {unknown} that match no {kind} "
                         f"of the model; its {kind} names are {names}")
    missing = [n for n in names if n not in data]
    if missing:
        raise ValueError(f"Model '{model}': '{arg}' is missing the {kind}(s) {missing}")
    return [data[n] for n in names]


def validation_parts(validation_data: Any) -> tuple[Any, Any, Any]:
    """fit's `validation_data` as (x_val, y_val, val_sample_weight or None)."""
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("'validation_data' must be a tuple (x_val, y_val) or "
                         "(x_val, y_val, val_sample_weight)")
    return (validation_data[0], validation_data[1],
            validation_data[2] if len(validation_data) == 3 else None)


def check_lengths(x: np.ndarray, y: np.ndarray, x_arg: str = "x", y_arg: str = "y") -> None:
    if len(x) != len(y):
        raise ValueError(f"'{x_arg}' and '{y_arg}' must hold the same number of samples: "
                         f"{x_arg} has {len(x)}, {y_arg} has {len(y)}")


def targets(y: np.ndarray, loss: Loss, output_shape: Sequence[int], output_layer: str,
            arg: str = "y") -> Float32Array:
    """Targets as float32 (n, k): class ids (n, 1) for sparse losses, else the output's size."""
    n = len(y)
    out_size = int(np.prod(output_shape))
    loss_name = type(loss).__name__
    if loss.sparse:
        # One class id per output position before the last axis (time steps of a
        # sequence output, or just one), as Keras scores them.
        steps = out_size // output_shape[-1] if output_shape else 1
        classes = out_size // steps
        ids = y.reshape(n) if (y.ndim == 2 and y.shape[1] == 1) else y
        if steps > 1 and ids.ndim >= 2 and int(np.prod(ids.shape[1:])) == steps \
                and (ids.ndim == 2 or ids.shape[-1] == 1 or ids.ndim == len(output_shape)):
            ids = ids.reshape(n, steps)
        expected = f"({n},)" if steps == 1 else \
            f"({n}, {', '.join(map(str, output_shape[:-1]))})"
        if ids.shape != ((n,) if steps == 1 else (n, steps)):
            raise ValueError(
                f"{loss_name} expects integer class ids of shape {expected}, but '{arg}' has "
                f"shape {y.shape} (one-hot labels?). Use categorical_crossentropy for one-hot "
                f"labels, or pass y.argmax(axis=-1).")
        if np.issubdtype(ids.dtype, np.floating) and not np.all(np.mod(ids, 1) == 0):
            raise ValueError(f"{loss_name} expects integer class ids in '{arg}', got "
                             f"non-integer values such as {ids[np.mod(ids, 1) != 0][0]}")
        lo, hi = ids.min(), ids.max()
        if lo < 0 or hi >= classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"{loss_name}: label {bad} in '{arg}' is out of range: the output layer "
                f"'{output_layer}' has {classes} units, so labels must be in [0, {classes - 1}]")
        return np.ascontiguousarray(ids.astype(np.float32).reshape(n, steps))
    if loss_name == "CategoricalCrossentropy" and y.ndim == 1 and out_size > 1:
        raise ValueError(
            f"CategoricalCrossentropy expects one-hot targets of shape ({n}, {out_size}), but "
            f"'{arg}' has shape {y.shape} (class ids?). Use sparse_categorical_crossentropy, "
            f"or ferrax.utils.to_categorical(y).")
    if loss_name == "BinaryCrossentropy" and (y.min() < 0 or y.max() > 1):
        bad = y.min() if y.min() < 0 else y.max()
        raise ValueError(f"BinaryCrossentropy expects targets in [0, 1] (labels 0/1 or "
                         f"probabilities), but '{arg}' holds the label {bad:g}")
    if y.size != n * out_size:
        raise ValueError(
            f"Targets '{arg}' of shape {y.shape} do not match the output of layer "
            f"'{output_layer}', shape (None, {', '.join(map(str, output_shape))})")
    return np.ascontiguousarray(y.reshape(n, out_size).astype(np.float32))


def function_targets(y: np.ndarray) -> Float32Array:
    """The targets a loss function reads: `y` as given (float32, one row per sample)."""
    return np.ascontiguousarray(y.reshape(len(y), -1), dtype=np.float32)


def target_view(y_shape: Sequence[int], output_shape: Sequence[int], width: int
                ) -> tuple[int, ...]:
    """The per-sample shape loss and metric functions see `y_true` in: the targets'
    own, a trailing axis of 1 added or dropped to match the output's rank as Keras's
    loss functions do; (width,) when the engine's targets differ from the data
    (class ids of a sequence)."""
    shape, out = tuple(int(d) for d in y_shape), tuple(output_shape)
    if len(shape) == len(out) + 1 and shape and shape[-1] == 1:
        shape = shape[:-1]
    elif len(out) == len(shape) + 1 and out and out[-1] == 1:
        shape = (*shape, 1)
    return shape if int(np.prod(shape)) == width else (width,)


def sample_weights(sample_weight: npt.ArrayLike | None, class_weight: dict[int, float] | None,
                   y_ids: np.ndarray | None, n: int, classes: int | None = None
                   ) -> Float32Array | None:
    """Per-sample float32 weights from sample_weight and/or class_weight, or None.
    `classes`: how many classes the output has (class_weight's keys are checked
    against it)."""
    w = None
    if sample_weight is not None:
        w = as_array(sample_weight, "sample_weight").astype(np.float32).reshape(-1)
        if len(w) != n:
            raise ValueError(f"'sample_weight' must hold one weight per sample: got {len(w)} "
                             f"weights for {n} samples")
        if (w < 0).any():
            raise ValueError("'sample_weight' must be non-negative")
    if class_weight is not None:
        assert y_ids is not None  # computed whenever class_weight is given
        table = class_weight_table(class_weight, classes, int(y_ids.max()) + 1)
        cw = table[y_ids.astype(np.int64)]
        w = cw if w is None else w * cw
    return None if w is None else np.ascontiguousarray(w, dtype=np.float32)


def output_classes(out_shape: Sequence[int] | None) -> int | None:
    """How many classes an output of this per-sample shape tells apart (2 for one
    sigmoid unit), or None when unknown."""
    if not out_shape:
        return None
    last = int(out_shape[-1])
    return 2 if last == 1 else last


def class_weight_table(class_weight: Any, classes: int | None, seen: int) -> Float32Array:
    """Each class's weight (1 where class_weight names none), from a dict of class
    index -> finite weight >= 0; an index the output does not have is an error."""
    import numbers

    if not isinstance(class_weight, dict):
        raise TypeError(f"'class_weight' must be a dict mapping class ids to weights, "
                        f"got {type(class_weight).__name__}")
    have = f"the output's classes are 0..{classes - 1}" if classes else "class ids are >= 0"
    for k, v in class_weight.items():
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"'class_weight' keys must be integer class indices, got {k!r}")
        if int(k) < 0 or (classes is not None and int(k) >= classes):
            raise ValueError(f"'class_weight' has key {k}, which is no class of the output "
                             f"({have})")
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                or v < 0:
            raise ValueError(f"'class_weight' for class {k} must be a finite number >= 0, "
                             f"got {v!r}")
    size = max(classes or 0, seen, max(class_weight, default=-1) + 1)
    table = np.ones(size, np.float32)
    for k, v in class_weight.items():
        table[int(k)] = float(v)
    return table


def class_ids(y: np.ndarray) -> npt.NDArray[np.integer[Any]]:
    """Class id per sample: the value for ids, argmax for one-hot, threshold for binary."""
    if y.ndim >= 2 and y.shape[-1] > 1:
        return y.reshape(len(y), -1).argmax(axis=1)
    flat = y.reshape(len(y))
    return (flat > 0.5).astype(np.int64) if np.issubdtype(flat.dtype, np.floating) and \
        flat.max() <= 1 and not np.all(np.mod(flat, 1) == 0) else flat.astype(np.int64)


def check_batch_size(batch_size: int | None, arg: str = "batch_size") -> int:
    import numbers

    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"'{arg}' must be a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"'{arg}' must be a positive integer (>= 1), got {batch_size}")
    return int(batch_size)
