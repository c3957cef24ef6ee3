"""Metrics by Keras's names. During fit they are accumulated in the engine as
weighted means over the epoch; "accuracy" resolves from the shapes as in Keras."""

import numpy as np

from ferrax._serial import describe

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

    def __init__(self, kind, name=None, **args):
        self.kind, self.name, self.args = kind, name or kind, args

    def _core_spec(self, y_rank, y_last, out_last, loss):
        kind = self.kind
        if kind in ("accuracy", "acc"):
            kind = resolve_accuracy(y_rank, y_last, out_last)
        return {"name": _ENGINE_NAMES[kind], **self.args}

    def get_config(self):
        return {"name": self.name, **self.args}

    def __repr__(self):
        return f"Metric({self.name!r})"


def _cls(kind, **defaults):
    class _M(Metric):
        def __init__(self, name=kind, **args):
            super().__init__(kind, name, **{**defaults, **args})

    _M.__name__ = "".join(p.capitalize() for p in kind.split("_"))
    return _M


Accuracy = _cls("accuracy")
BinaryAccuracy = _cls("binary_accuracy", threshold=0.5)
CategoricalAccuracy = _cls("categorical_accuracy")
SparseCategoricalAccuracy = _cls("sparse_categorical_accuracy")
TopKCategoricalAccuracy = _cls("top_k_categorical_accuracy", k=5)
SparseTopKCategoricalAccuracy = _cls("sparse_top_k_categorical_accuracy", k=5)
MeanSquaredError = _cls("mean_squared_error")
MeanAbsoluteError = _cls("mean_absolute_error")


def resolve_accuracy(y_rank, y_last, out_last):
    """Keras's rule: binary if the output has one unit, sparse if targets are class
    ids (lower rank, or one column against many outputs), else categorical."""
    if out_last == 1:
        return "binary_accuracy"
    if y_rank < 2 or (y_last == 1 and out_last > 1):
        return "sparse_categorical_accuracy"
    return "categorical_accuracy"


def get(identifier):
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            return Metric("accuracy", identifier)
        if identifier in _ENGINE_NAMES:
            defaults = {"top_k_categorical_accuracy": {"k": 5},
                        "sparse_top_k_categorical_accuracy": {"k": 5},
                        "binary_accuracy": {"threshold": 0.5}}.get(identifier, {})
            return Metric(identifier, identifier, **defaults)
        raise ValueError(f"Unknown metric {identifier!r}. Expected 'accuracy' or one of: "
                         f"{', '.join(sorted(_ENGINE_NAMES))}")
    raise TypeError(f"metric must be a name like 'accuracy' or a ferrax.metrics object, "
                    f"got {describe(identifier)}")


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_pred = np.asarray(y_pred)
    return np.mean((y_pred > threshold) == np.asarray(y_true).reshape(y_pred.shape), axis=-1)


def categorical_accuracy(y_true, y_pred):
    return (np.argmax(y_true, -1) == np.argmax(y_pred, -1)).astype(np.float32)


def sparse_categorical_accuracy(y_true, y_pred):
    return (np.asarray(y_true).reshape(-1) == np.argmax(y_pred, -1)).astype(np.float32)
