"""Metrics by Keras's names. During fit they are accumulated in the engine as
weighted means over the epoch; "accuracy" resolves from the shapes as in Keras.
In a custom loop the same objects keep their own state (`update_state`, `result`,
`reset_state`), as Keras's Metric API does."""

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

# The kinds a saved model's metrics may name (anything else in a file is refused).
SAVED_KINDS = frozenset(_ENGINE_NAMES) | {"accuracy", "acc", "mean"}


class Metric:
    """A metric chosen by name; `k` / `threshold` where Keras has them.

    In a custom loop it is a running, weighted mean of its per-sample values:

    >>> acc = ferrax.metrics.SparseCategoricalAccuracy()
    >>> acc.update_state([1, 2], [[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    >>> float(acc.result())   # 0.5
    """

    # whether the engine's fused loop computes it (else fit runs step by step)
    _in_engine = True

    def __init__(self, kind: str, name: str | None = None, **args: Any) -> None:
        self.kind, self.name, self.args = kind, name or kind, args
        self._total, self._count = 0.0, 0.0

    # --- Keras's Metric API, for custom loops --------------------------------------
    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add a batch: each sample's value, weighted by `sample_weight` (one weight
        per sample, or none)."""
        values = _per_sample(self, _array(y_true), _array(y_pred))
        self._add(values, sample_weight)

    def _add(self, values: np.ndarray, sample_weight: Any) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 0:
            if sample_weight is None:  # (a custom loop's loss, every step)
                self._total += float(values)
                self._count += 1.0
                return
            values = values.reshape(1)
        if sample_weight is None:
            self._total += float(values.sum())
            self._count += float(values.size)
            return
        w = np.broadcast_to(np.asarray(_array(sample_weight), np.float64).reshape(
            (-1,) + (1,) * max(values.ndim - 1, 0)), values.shape)
        self._total += float((values * w).sum())
        self._count += float(w.sum())

    def result(self) -> Any:
        """The weighted mean so far (0 before any update), a float32 scalar tensor."""
        from ferrax.tensor import Tensor

        mean = self._total / self._count if self._count else 0.0
        return Tensor(np.float32(mean))

    def reset_state(self) -> None:
        """Forget every update (as at the start of an epoch)."""
        self._total, self._count = 0.0, 0.0

    @property
    def variables(self) -> list[Any]:
        """The state: the weighted total and the total weight (as variables)."""
        from ferrax.variables import Variable

        return [Variable(np.float32(self._total), name=f"{self.name}/total"),
                Variable(np.float32(self._count), name=f"{self.name}/count")]

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


class Mean(Metric):
    """The running (weighted) mean of the values given to `update_state`, such as
    each step's loss in a custom loop.

    Args:
        name: Its name in the logs.

    Example:

    >>> loss_tracker = ferrax.metrics.Mean(name="loss")
    >>> loss_tracker.update_state(0.5); loss_tracker.update_state(1.5)
    >>> float(loss_tracker.result())   # 1.0
    """

    def __init__(self, name: str = "mean", dtype: Any = None) -> None:
        super().__init__("mean", name)

    def update_state(self, values: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        self._add(np.asarray(_array(values), np.float64), sample_weight)

    def _core_spec(self, y_rank: int, y_last: int, out_last: int, loss: object) -> Config:
        raise ValueError(f"metric '{self.name}': {type(self).__name__} tracks values in a "
                         f"custom loop; compile takes metrics of (y_true, y_pred)")


class Sum(Mean):
    """The running (weighted) sum of the values given to `update_state`.

    Args:
        name: Its name in the logs.

    Example:

    >>> seen = ferrax.metrics.Sum(name="samples")
    >>> seen.update_state(32); seen.update_state(16)
    >>> float(seen.result())   # 48.0
    """

    def __init__(self, name: str = "sum", dtype: Any = None) -> None:
        super().__init__(name)

    def result(self) -> Any:
        from ferrax.tensor import Tensor

        return Tensor(np.float32(self._total))


def _array(x: Any) -> np.ndarray:
    from ferrax.tensor import Tensor

    return x._value if isinstance(x, Tensor) else np.asarray(x)


def _per_sample(metric: Metric, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """A metric's value for each sample of a batch (float64), as Keras computes it."""
    kind = metric.kind
    y_pred = y_pred.astype(np.float64)
    if kind in ("accuracy", "acc"):
        if isinstance(metric, Accuracy):  # Keras's Accuracy: equal values
            return (y_true.reshape(y_pred.shape) == y_pred).astype(np.float64).reshape(
                len(y_pred), -1).mean(axis=1)
        kind = resolve_accuracy(y_true.ndim, y_true.shape[-1] if y_true.ndim > 1 else 1,
                                y_pred.shape[-1] if y_pred.ndim > 1 else 1)
    if kind == "binary_accuracy":
        return np.asarray(binary_accuracy(y_true, y_pred, metric.args.get("threshold", 0.5)),
                          np.float64)
    if kind == "categorical_accuracy":
        return np.asarray(categorical_accuracy(y_true, y_pred), np.float64)
    if kind == "sparse_categorical_accuracy":
        return np.asarray(sparse_categorical_accuracy(y_true, y_pred), np.float64)
    if kind in ("top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy"):
        k = int(metric.args.get("k", 5))
        ids = y_true.reshape(-1).astype(np.int64) if kind.startswith("sparse") else \
            y_true.argmax(-1)
        # ids among the k highest scores (ties counted for the label, as Keras's in_top_k)
        label_score = np.take_along_axis(y_pred, ids[:, None], axis=-1)
        return ((y_pred > label_score).sum(-1) < k).astype(np.float64)
    if kind in ("mean_squared_error", "mse", "mean_absolute_error", "mae"):
        diff = y_pred - y_true.reshape(y_pred.shape).astype(np.float64)
        err = diff ** 2 if kind in ("mean_squared_error", "mse") else np.abs(diff)
        return err.mean(axis=-1) if err.ndim > 1 else err
    raise ValueError(f"metric '{metric.name}' ({kind}) has no update_state")


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

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add a batch: the function's result on it, averaged to one value per sample."""
        from ferrax import ops

        value = np.asarray(_array(self.fn(ops.convert_to_tensor(_array(y_true)),
                                          ops.convert_to_tensor(_array(y_pred)))), np.float64)
        per_sample = value.reshape(len(value), -1).mean(axis=1) if value.ndim > 1 else value
        self._add(per_sample, sample_weight)

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
        confusion = {"auc": AUC, "precision": Precision, "recall": Recall}
        if identifier.lower() in confusion:
            return confusion[identifier.lower()]()
        if identifier in _ENGINE_NAMES:
            table: dict[str, dict[str, Any]] = {
                "top_k_categorical_accuracy": {"k": 5},
                "sparse_top_k_categorical_accuracy": {"k": 5},
                "binary_accuracy": {"threshold": 0.5}}
            defaults = table.get(identifier, {})
            return Metric(identifier, identifier, **defaults)
        raise ValueError(f"Unknown metric {identifier!r}. Expected 'accuracy', 'auc', "
                         f"'precision', 'recall' or one of: "
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


# Keras's confusion metrics (counts of positives and negatives), for custom loops.
from ferrax._confusion import AUC, F1Score, Precision, Recall  # noqa: E402

__all__ = [
    "AUC", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "F1Score", "Mean",
    "MeanAbsoluteError", "MeanSquaredError", "Metric", "MetricFunctionWrapper", "Precision",
    "Recall", "SparseCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "Sum",
    "TopKCategoricalAccuracy", "binary_accuracy", "categorical_accuracy", "get",
    "resolve_accuracy", "sparse_categorical_accuracy",
]
