"""Losses with Keras's names and defaults, computed in the engine.

Reduction is Keras's default: the sum of per-sample losses (times sample
weights) divided by the batch size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ferrax._serial import check_number, describe
from ferrax._typing import Config, Float32Array

if TYPE_CHECKING:
    from typing_extensions import Self


class Loss:
    """Base class. Calling a loss returns the reduced loss of a batch."""

    name = "loss"
    sparse = False
    _args: tuple[str, ...] = ()

    def get_config(self) -> Config:
        return {"name": self.name, **{a: getattr(self, a) for a in self._args}}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        config = dict(config)
        config.pop("reduction", None)
        return cls(**config)

    def _core_spec(self) -> Config:
        return {"name": _CANONICAL[type(self)], **{a: getattr(self, a) for a in self._args}}

    def __call__(self, y_true: npt.ArrayLike, y_pred: npt.ArrayLike,
                 sample_weight: npt.ArrayLike | None = None) -> float:
        from ferrax import _core

        y_pred = np.ascontiguousarray(y_pred, dtype=np.float32)
        if y_pred.ndim == 1:
            y_pred = y_pred.reshape(-1, 1)
        y_true = np.asarray(y_true, dtype=np.float32).reshape(len(y_pred), -1)
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, np.float32)
        value, _ = _core.loss_value_and_grad(json.dumps(self._core_spec()),
                                             np.ascontiguousarray(y_true), y_pred, sw)
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


class MeanSquaredError(Loss):
    def __init__(self, reduction: str = "sum_over_batch_size",
                 name: str = "mean_squared_error") -> None:
        self.name = name


class MeanAbsoluteError(Loss):
    def __init__(self, reduction: str = "sum_over_batch_size",
                 name: str = "mean_absolute_error") -> None:
        self.name = name


class Huber(Loss):
    _args = ("delta",)

    def __init__(self, delta: float = 1.0, reduction: str = "sum_over_batch_size",
                 name: str = "huber_loss") -> None:
        self.delta = float(check_number("Huber", "delta", delta, low=0, low_open=True))
        self.name = name


class BinaryCrossentropy(Loss):
    _args = ("from_logits", "label_smoothing")

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str = "sum_over_batch_size", name: str = "binary_crossentropy"
                 ) -> None:
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(check_number("BinaryCrossentropy", "label_smoothing",
                                                  label_smoothing, low=0, high=1))
        self.name = name


class CategoricalCrossentropy(Loss):
    _args = ("from_logits", "label_smoothing")

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str = "sum_over_batch_size",
                 name: str = "categorical_crossentropy") -> None:
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(check_number("CategoricalCrossentropy", "label_smoothing",
                                                  label_smoothing, low=0, high=1))
        self.name = name


class SparseCategoricalCrossentropy(Loss):
    _args = ("from_logits",)
    sparse = True

    def __init__(self, from_logits: bool = False, ignore_class: int | None = None,
                 reduction: str = "sum_over_batch_size",
                 name: str = "sparse_categorical_crossentropy") -> None:
        if ignore_class is not None:
            raise NotImplementedError("SparseCategoricalCrossentropy: ignore_class is not "
                                      "supported yet")
        self.from_logits = bool(from_logits)
        self.name = name


_CANONICAL: dict[type[Loss], str] = {
    MeanSquaredError: "mean_squared_error",
    MeanAbsoluteError: "mean_absolute_error",
    Huber: "huber",
    BinaryCrossentropy: "binary_crossentropy",
    CategoricalCrossentropy: "categorical_crossentropy",
    SparseCategoricalCrossentropy: "sparse_categorical_crossentropy",
}
_ALIASES: dict[str, type[Loss]] = {
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "MeanSquaredError": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "MeanAbsoluteError": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber, "Huber": Huber,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "BinaryCrossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "CategoricalCrossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "SparseCategoricalCrossentropy": SparseCategoricalCrossentropy,
}


def _per_sample(cls: type[Loss]) -> Callable[[npt.ArrayLike, npt.ArrayLike], Float32Array]:
    def fn(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> Float32Array:
        y_pred = np.asarray(y_pred, dtype=np.float32)
        y_pred2 = y_pred.reshape(len(y_pred), -1) if y_pred.ndim > 1 else y_pred.reshape(-1, 1)
        y_true2 = np.asarray(y_true, dtype=np.float32).reshape(len(y_pred2), -1)
        loss = cls()
        return np.array([loss(y_true2[i:i + 1], y_pred2[i:i + 1]) for i in range(len(y_pred2))],
                        dtype=np.float32)

    fn.__name__ = _CANONICAL[cls]
    fn._ferrax_loss = cls  # type: ignore[attr-defined]  # marks ferrax's functions
    return fn


mean_squared_error = mse = _per_sample(MeanSquaredError)
mean_absolute_error = mae = _per_sample(MeanAbsoluteError)
huber = _per_sample(Huber)
binary_crossentropy = _per_sample(BinaryCrossentropy)
categorical_crossentropy = _per_sample(CategoricalCrossentropy)
sparse_categorical_crossentropy = _per_sample(SparseCategoricalCrossentropy)


class LossFunctionWrapper(Loss):
    """A loss written as a Python function of `(y_true, y_pred)` with `ferrax.ops`,
    as `compile(loss=my_loss)` takes it. The function is traced into the model's
    graph, so it trains in the engine's loop. Its result is averaged over the axes after
    the batch axis to one loss per sample, which `sample_weight` and `class_weight`
    weigh; the batch's loss is their weighted sum over the batch size, as Keras's
    default reduction (sum_over_batch_size) makes it.

    Args:
        fn: The function; `y_true` comes as given in `fit` (class ids stay ids), a
            trailing axis of 1 added or dropped to match the output's rank, as Keras
            does.
        name: The loss's name (the function's by default).

    Example:

    >>> def contrastive(y_true, y_pred):
    ...     margin = ferrax.ops.maximum(1.0 - y_pred, 0.0)
    ...     return ferrax.ops.mean(y_true * y_pred ** 2 + (1 - y_true) * margin ** 2, axis=-1)
    >>> model.compile(optimizer="adam", loss=contrastive)
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None,
                 reduction: str = "sum_over_batch_size") -> None:
        if not callable(fn):
            raise TypeError(f"LossFunctionWrapper: 'fn' must be callable, got {describe(fn)}")
        self.fn = fn
        self.name = str(name or getattr(fn, "__name__", "loss"))

    def get_config(self) -> Config:
        return {"name": self.name, "fn": getattr(self.fn, "__name__", "")}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        from ferrax._registry import get_registered_object

        name = config.get("fn") or config.get("name", "")
        fn = get_registered_object(name)
        if not callable(fn):
            raise ValueError(f"the loss function '{name}' is not loaded from files (that "
                             f"would run code from the file); pass custom_objects="
                             f"{{'{name}': the_function}}")
        return cls(fn, name=config.get("name"))

    def _core_spec(self) -> Config:
        return {"name": "traced"}

    def __call__(self, y_true: npt.ArrayLike, y_pred: npt.ArrayLike,
                 sample_weight: npt.ArrayLike | None = None) -> float:
        from ferrax import ops

        value = np.asarray(self.fn(ops.convert_to_tensor(y_true),
                                   ops.convert_to_tensor(y_pred)), dtype=np.float64)
        if sample_weight is None or value.ndim == 0:
            if sample_weight is not None:
                raise ValueError(f"{self.name}: the function returns one number, so "
                                 f"sample_weight cannot weigh its samples")
            return float(value.mean())
        per_sample = value.reshape(len(value), -1).mean(axis=1)
        w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if len(w) != len(per_sample):
            raise ValueError(f"{self.name}: sample_weight holds {len(w)} weights for "
                             f"{len(per_sample)} samples")
        return float((per_sample * w).sum() / len(per_sample))


def get(identifier: str | dict[str, Any] | Loss | Callable[..., Any]) -> Loss:
    """A Loss from a name, a loss function of this module, a config dict, an instance,
    or a Python function of (y_true, y_pred) written with ferrax.ops."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier)
        if cls is None:
            names = sorted(k for k in _ALIASES if k.islower())
            raise ValueError(f"Unknown loss {identifier!r}. Expected one of: {', '.join(names)}")
        return cls()
    cls = getattr(identifier, "_ferrax_loss", None)
    if cls is not None:
        return cls()
    if isinstance(identifier, dict) and identifier.get("class_name") == "LossFunctionWrapper":
        return LossFunctionWrapper.from_config(identifier.get("config", {}))
    if isinstance(identifier, dict) and "class_name" in identifier:
        return get(identifier["class_name"]).from_config(identifier.get("config", {}))
    if callable(identifier) and not isinstance(identifier, type):
        return LossFunctionWrapper(identifier)
    raise TypeError(f"loss must be a name like 'mse', a ferrax.losses object or a "
                    f"function of (y_true, y_pred), got {describe(identifier)}")


def serialize(loss: Loss) -> Config:
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
