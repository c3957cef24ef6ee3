"""Metrics by Keras's names. During fit they are accumulated in the engine as
weighted means over the epoch; "accuracy" resolves from the shapes as in Keras."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ferrax._serial import describe
from ferrax._typing import Config

_ENGINE_NAMES = {
    "binary_accuracy": "binary_accuracy",
    "categorical_accuracy": "categorical_accuracy",
    "sparse_categorical_accuracy": "sparse_categorical_accuracy",
    "top_k_categorical_accuracy": "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy": "sparse_top_k_categorical_accuracy",
    "mse": "mean_squared_error",
    "mean_squared_error": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mean_absolute_error": "mean_absolute_error",
}


class Metric:
    """A metric chosen by name; `k` / `threshold` where Keras has them."""

    def __init__(self, kind: str, name: str | None = None, **args: Any) -> None:
        self.kind, self.name, self.args = kind, name or kind, args

    def _core_spec(self, y_rank: int, y_last: int, out_last: int, loss: object) -> Config:
        kind = self.kind
        if kind in ("accuracy", "acc"):
            kind = resolve_accuracy(y_rank, y_last, out_last)
        return {"name": _ENGINE_NAMES[kind], **self.args}

    def get_config(self) -> Config:
        return {"name": self.name, **self.args}

    def __repr__(self) -> str:
        return f"Metric({self.name!r})"


# One class per metric name (Keras's classes); extra keyword arguments (k, threshold) are
# passed to the engine.
class Accuracy(Metric):
    def __init__(self, name: str = "accuracy", **args: Any) -> None:
        super().__init__("accuracy", name, **args)


class BinaryAccuracy(Metric):
    def __init__(self, name: str = "binary_accuracy", **args: Any) -> None:
        super().__init__("binary_accuracy", name, **{"threshold": 0.5, **args})


class CategoricalAccuracy(Metric):
    def __init__(self, name: str = "categorical_accuracy", **args: Any) -> None:
        super().__init__("categorical_accuracy", name, **args)


class SparseCategoricalAccuracy(Metric):
    def __init__(self, name: str = "sparse_categorical_accuracy", **args: Any) -> None:
        super().__init__("sparse_categorical_accuracy", name, **args)


class TopKCategoricalAccuracy(Metric):
    def __init__(self, name: str = "top_k_categorical_accuracy", **args: Any) -> None:
        super().__init__("top_k_categorical_accuracy", name, **{"k": 5, **args})


class SparseTopKCategoricalAccuracy(Metric):
    def __init__(self, name: str = "sparse_top_k_categorical_accuracy", **args: Any) -> None:
        super().__init__("sparse_top_k_categorical_accuracy", name, **{"k": 5, **args})


class MeanSquaredError(Metric):
    def __init__(self, name: str = "mean_squared_error", **args: Any) -> None:
        super().__init__("mean_squared_error", name, **args)


class MeanAbsoluteError(Metric):
    def __init__(self, name: str = "mean_absolute_error", **args: Any) -> None:
        super().__init__("mean_absolute_error", name, **args)


def resolve_accuracy(y_rank: int, y_last: int, out_last: int) -> str:
    """Keras's rule: binary if the output has one unit, sparse if targets are class
    ids (lower rank, or one column against many outputs), else categorical."""
    if out_last == 1:
        return "binary_accuracy"
    if y_rank < 2 or (y_last == 1 and out_last > 1):
        return "sparse_categorical_accuracy"
    return "categorical_accuracy"


class MetricFunctionWrapper(Metric):
    """A metric written as a Python function of `(y_true, y_pred)` with `ferrax.ops`,
    as `compile(metrics=[my_metric])` takes it: traced into the model's graph; its
    mean over each batch is averaged over the epoch's samples.

    Args:
        fn: The function; `y_true` comes as given in `fit`, a trailing axis of 1 added
            or dropped to match the output's rank, as Keras does.
        name: The metric's name in the logs (the function's by default).

    Example:

    >>> def mean_error(y_true, y_pred):
    ...     return ferrax.ops.mean(y_pred - y_true, axis=-1)
    >>> model.compile(optimizer="adam", loss="mse", metrics=[mean_error])
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"MetricFunctionWrapper: 'fn' must be callable, got "
                            f"{describe(fn)}")
        self.fn = fn
        super().__init__("traced", str(name or getattr(fn, "__name__", "metric")))

    def _core_spec(self, y_rank: int, y_last: int, out_last: int, loss: object) -> Config:
        raise AssertionError(f"metric '{self.name}': a metric function is traced into the "
                             f"graph, not run by the engine's heads")

    @classmethod
    def from_name(cls, name: str) -> MetricFunctionWrapper:
        from ferrax._registry import get_registered_object

        fn = get_registered_object(name)
        if not callable(fn):
            raise ValueError(f"the metric function '{name}' is not loaded from files (that "
                             f"would run code from the file); pass custom_objects="
                             f"{{'{name}': the_function}}")
        return cls(fn, name=name)


def get(identifier: str | Metric | Callable[..., Any]) -> Metric:
    if isinstance(identifier, Metric):
        return identifier
    if callable(identifier) and not isinstance(identifier, type):
        own = getattr(identifier, "__name__", "")
        if getattr(identifier, "__module__", "") == __name__ and own in _ENGINE_NAMES:
            return get(own)  # ferrax's own metric functions run in the engine
        return MetricFunctionWrapper(identifier)
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            return Metric("accuracy", identifier)
        if identifier in _ENGINE_NAMES:
            table: dict[str, dict[str, Any]] = {
                "top_k_categorical_accuracy": {"k": 5},
                "sparse_top_k_categorical_accuracy": {"k": 5},
                "binary_accuracy": {"threshold": 0.5}}
            defaults = table.get(identifier, {})
            return Metric(identifier, identifier, **defaults)
        raise ValueError(f"Unknown metric {identifier!r}. Expected 'accuracy' or one of: "
                         f"{', '.join(sorted(_ENGINE_NAMES))}")
    raise TypeError(f"metric must be a name like 'accuracy' or a ferrax.metrics object, "
                    f"got {describe(identifier)}")


def binary_accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, threshold: float = 0.5
                    ) -> npt.NDArray[Any]:
    y_pred = np.asarray(y_pred)
    return np.mean((y_pred > threshold) == np.asarray(y_true).reshape(y_pred.shape), axis=-1)


def categorical_accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike
                         ) -> npt.NDArray[np.float32]:
    return (np.argmax(y_true, -1) == np.argmax(y_pred, -1)).astype(np.float32)


def sparse_categorical_accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike
                                ) -> npt.NDArray[np.float32]:
    return (np.asarray(y_true).reshape(-1) == np.argmax(y_pred, -1)).astype(np.float32)
