"""Losses with Keras's names and defaults, computed in the engine.

Reduction is Keras's default: the sum of per-sample losses (times sample
weights) divided by the batch size.
"""

import json

import numpy as np

from ferrax._serial import check_number, describe


class Loss:
    """Base class. Calling a loss returns the reduced loss of a batch."""

    name = "loss"
    sparse = False
    _args = ()

    def get_config(self):
        return {"name": self.name, **{a: getattr(self, a) for a in self._args}}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("reduction", None)
        return cls(**config)

    def _core_spec(self):
        return {"name": _CANONICAL[type(self)], **{a: getattr(self, a) for a in self._args}}

    def __call__(self, y_true, y_pred, sample_weight=None):
        from ferrax import _core

        y_pred = np.ascontiguousarray(y_pred, dtype=np.float32)
        if y_pred.ndim == 1:
            y_pred = y_pred.reshape(-1, 1)
        y_true = np.asarray(y_true, dtype=np.float32).reshape(len(y_pred), -1)
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, np.float32)
        value, _ = _core.loss_value_and_grad(json.dumps(self._core_spec()),
                                             np.ascontiguousarray(y_true), y_pred, sw)
        return value

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class MeanSquaredError(Loss):
    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        self.name = name


class MeanAbsoluteError(Loss):
    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error"):
        self.name = name


class Huber(Loss):
    _args = ("delta",)

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss"):
        self.delta = float(check_number("Huber", "delta", delta, low=0, low_open=True))
        self.name = name


class BinaryCrossentropy(Loss):
    _args = ("from_logits", "label_smoothing")

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy"):
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(check_number("BinaryCrossentropy", "label_smoothing",
                                                  label_smoothing, low=0, high=1))
        self.name = name


class CategoricalCrossentropy(Loss):
    _args = ("from_logits", "label_smoothing")

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy"):
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(check_number("CategoricalCrossentropy", "label_smoothing",
                                                  label_smoothing, low=0, high=1))
        self.name = name


class SparseCategoricalCrossentropy(Loss):
    _args = ("from_logits",)
    sparse = True

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy"):
        if ignore_class is not None:
            raise NotImplementedError("SparseCategoricalCrossentropy: ignore_class is not "
                                      "supported yet")
        self.from_logits = bool(from_logits)
        self.name = name


_CANONICAL = {
    MeanSquaredError: "mean_squared_error",
    MeanAbsoluteError: "mean_absolute_error",
    Huber: "huber",
    BinaryCrossentropy: "binary_crossentropy",
    CategoricalCrossentropy: "categorical_crossentropy",
    SparseCategoricalCrossentropy: "sparse_categorical_crossentropy",
}
_ALIASES = {
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


def _per_sample(cls):
    def fn(y_true, y_pred):
        y_pred = np.asarray(y_pred, dtype=np.float32)
        y_pred2 = y_pred.reshape(len(y_pred), -1) if y_pred.ndim > 1 else y_pred.reshape(-1, 1)
        y_true2 = np.asarray(y_true, dtype=np.float32).reshape(len(y_pred2), -1)
        loss = cls()
        return np.array([loss(y_true2[i:i + 1], y_pred2[i:i + 1]) for i in range(len(y_pred2))],
                        dtype=np.float32)

    fn.__name__ = _CANONICAL[cls]
    fn._ferrax_loss = cls
    return fn


mean_squared_error = mse = _per_sample(MeanSquaredError)
mean_absolute_error = mae = _per_sample(MeanAbsoluteError)
huber = _per_sample(Huber)
binary_crossentropy = _per_sample(BinaryCrossentropy)
categorical_crossentropy = _per_sample(CategoricalCrossentropy)
sparse_categorical_crossentropy = _per_sample(SparseCategoricalCrossentropy)


def get(identifier):
    """A Loss from a name, a loss function of this module, a config dict or an instance."""
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
    if isinstance(identifier, dict) and "class_name" in identifier:
        return get(identifier["class_name"]).from_config(identifier.get("config", {}))
    raise TypeError(f"loss must be a name like 'mse' or a ferrax.losses object, "
                    f"got {describe(identifier)}")


def serialize(loss):
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
