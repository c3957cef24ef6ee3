"""Losses with Keras's names and defaults, computed in the engine.

Reduction is Keras's default: the sum of per-sample losses (times sample
weights) divided by the batch size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ferrax._serial import check_number, describe
from ferrax._typing import Config
from ferrax.tensor import Tensor

if TYPE_CHECKING:
    from typing_extensions import Self


class Loss:
    """Base class. Calling a loss returns the reduced loss of a batch."""

    name = "loss"
    sparse = False
    _args: tuple[str, ...] = ()

    reduction = "sum_over_batch_size"
    # (the engine's spec of this loss, and its JSON)
    _spec_json: tuple[Config | None, str] = (None, "")

    def get_config(self) -> Config:
        return {"name": self.name, "reduction": self.reduction,
                **{a: getattr(self, a) for a in self._args}}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls(**config)

    def _core_spec(self) -> Config:
        return {"name": _CANONICAL[type(self)], **{a: getattr(self, a) for a in self._args}}

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """The batch's loss: Σᵢ wᵢ·lossᵢ over the batch size, as a scalar tensor.

        On arrays or eager tensors it runs the engine's own kernel for this loss (the
        one `fit` runs), recorded by an open GradientTape; on symbolic tensors (inside
        a traced `call`) it is made of `ferrax.ops`.

        Args:
            y_true: The targets (class ids for a sparse loss).
            y_pred: The predictions, samples first.
            sample_weight: One weight per sample (or None).
        """
        from ferrax.ops import _dispatch
        from ferrax.symbolic import any_symbolic

        if self.reduction not in _BATCH_MEAN or _dispatch.tracing() or \
                any_symbolic((y_true, y_pred, sample_weight)) or _tracked(y_true) or (
                np.ndim(y_pred) > 2 and isinstance(self, _ClassAxisLoss)):
            # (ops: also when a tape tracks the targets, whose gradient the engine's
            # kernel does not give)
            return _reduce(self.name, self._per_sample(y_true, y_pred), sample_weight,
                           self.reduction)
        pred = _eager_pred(y_pred)
        if pred.ndim == 0:
            raise ValueError(f"{self.name}: y_pred must have a batch axis, got a scalar")
        n = int(pred.shape[0])
        true = np.asarray(y_true._value if isinstance(y_true, Tensor) else y_true,
                          dtype=np.float32)
        if true.ndim == 0 or len(true) != n:
            raise ValueError(f"{self.name}: y_true has shape {true.shape} but y_pred has "
                             f"{n} samples (shape {tuple(pred.shape)})")
        if pred.ndim != 2:
            from ferrax import ops

            pred = ops.reshape(pred, (n, -1))
        operands: list[Any] = [true.reshape(n, -1), pred]
        if sample_weight is not None:
            operands.append(_weights_for(self.name, sample_weight, n))
        spec = self._core_spec()
        if self._spec_json[0] != spec:  # (serialized once, not every step)
            self._spec_json = (spec, json.dumps({"loss": spec}))
        return _dispatch._eager("loss", {"loss": spec}, operands, None, self._spec_json[1])

    def _per_sample(self, y_true: Any, y_pred: Any) -> Any:
        """Each sample's loss (each position's, for sequences), made of ops."""
        raise NotImplementedError(f"{type(self).__name__} has no per-sample form")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


class MeanSquaredError(Loss):
    def __init__(self, reduction: str = "sum_over_batch_size",
                 name: str = "mean_squared_error") -> None:
        self.name = name
        self.reduction = _reduction(self.name, reduction)

    def _per_sample(self, y_true: Any, y_pred: Any) -> Any:
        return mean_squared_error(y_true, y_pred)


class MeanAbsoluteError(Loss):
    def __init__(self, reduction: str = "sum_over_batch_size",
                 name: str = "mean_absolute_error") -> None:
        self.name = name
        self.reduction = _reduction(self.name, reduction)

    def _per_sample(self, y_true: Any, y_pred: Any) -> Any:
        return mean_absolute_error(y_true, y_pred)


class Huber(Loss):
    _args = ("delta",)

    def __init__(self, delta: float = 1.0, reduction: str = "sum_over_batch_size",
                 name: str = "huber_loss") -> None:
        self.delta = float(check_number("Huber", "delta", delta, low=0, low_open=True))
        self.name = name
        self.reduction = _reduction(self.name, reduction)

    def _per_sample(self, y_true: Any, y_pred: Any) -> Any:
        return huber(y_true, y_pred, delta=self.delta)


class BinaryCrossentropy(Loss):
    _args = ("from_logits", "label_smoothing")

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str = "sum_over_batch_size", name: str = "binary_crossentropy"
                 ) -> None:
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(check_number("BinaryCrossentropy", "label_smoothing",
                                                  label_smoothing, low=0, high=1))
        self.name = name
        self.reduction = _reduction(self.name, reduction)

    def _per_sample(self, y_true: Any, y_pred: Any) -> Any:
        return binary_crossentropy(y_true, y_pred, from_logits=self.from_logits,
                                   label_smoothing=self.label_smoothing)


class _ClassAxisLoss(Loss):
    """A loss over the last axis as one distribution: a sequence's positions are
    samples of their own (rank > 2 runs as ops, not the per-row kernel)."""


class CategoricalCrossentropy(_ClassAxisLoss):
    _args = ("from_logits", "label_smoothing")

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str = "sum_over_batch_size",
                 name: str = "categorical_crossentropy") -> None:
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(check_number("CategoricalCrossentropy", "label_smoothing",
                                                  label_smoothing, low=0, high=1))
        self.name = name
        self.reduction = _reduction(self.name, reduction)

    def _per_sample(self, y_true: Any, y_pred: Any) -> Any:
        return categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits,
                                        label_smoothing=self.label_smoothing)


class SparseCategoricalCrossentropy(_ClassAxisLoss):
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
        self.reduction = _reduction(self.name, reduction)

    def _per_sample(self, y_true: Any, y_pred: Any) -> Any:
        return sparse_categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits)


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


def _same_rank(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """y_true given a trailing axis of 1 (or without one) to match y_pred's rank, as
    Keras's losses do."""
    from ferrax import ops

    t, p = np.ndim(y_true), np.ndim(y_pred)
    if t == p - 1:
        y_true = ops.expand_dims(y_true, -1)
    elif t == p + 1 and np.shape(y_true)[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    return y_true, y_pred


def _marked(cls: type[Loss]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Marks one of this module's loss functions: `compile(loss=fn)` then runs the
    engine's kernel for `cls` rather than tracing the function."""
    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn._ferrax_loss = cls  # type: ignore[attr-defined]
        return fn
    return mark


@_marked(MeanSquaredError)
def mean_squared_error(y_true: Any, y_pred: Any) -> Any:
    """Per-sample mean of squared errors over the last axis.

    Args:
        y_true: The targets.
        y_pred: The predictions.

    Example:

    >>> ferrax.losses.mean_squared_error([[0.0, 1.0]], [[1.0, 1.0]])   # [0.5]
    """
    from ferrax import ops

    y_true, y_pred = _same_rank(y_true, y_pred)
    return ops.mean(ops.square(ops.subtract(y_pred, y_true)), axis=-1)


@_marked(MeanAbsoluteError)
def mean_absolute_error(y_true: Any, y_pred: Any) -> Any:
    """Per-sample mean of absolute errors over the last axis.

    Args:
        y_true: The targets.
        y_pred: The predictions.

    Example:

    >>> ferrax.losses.mean_absolute_error([[0.0, 1.0]], [[1.0, 3.0]])   # [1.5]
    """
    from ferrax import ops

    y_true, y_pred = _same_rank(y_true, y_pred)
    return ops.mean(ops.abs(ops.subtract(y_pred, y_true)), axis=-1)


@_marked(Huber)
def huber(y_true: Any, y_pred: Any, delta: float = 1.0) -> Any:
    """Per-sample Huber loss: squared below `delta`, linear above, averaged over the
    last axis.

    Args:
        y_true: The targets.
        y_pred: The predictions.
        delta: Where the loss turns from quadratic to linear.

    Example:

    >>> ferrax.losses.huber([[0.0]], [[3.0]])   # [2.5]
    """
    from ferrax import ops

    y_true, y_pred = _same_rank(y_true, y_pred)
    error = ops.abs(ops.subtract(y_pred, y_true))
    quadratic = ops.minimum(error, delta)
    linear = ops.subtract(error, quadratic)
    return ops.mean(ops.add(ops.multiply(0.5, ops.square(quadratic)),
                            ops.multiply(delta, linear)), axis=-1)


@_marked(BinaryCrossentropy)
def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: int = -1) -> Any:
    """Per-sample binary cross-entropy, averaged over `axis`.

    Args:
        y_true: Targets in [0, 1].
        y_pred: Probabilities (or logits with `from_logits=True`).
        from_logits: Whether `y_pred` is logits.
        label_smoothing: Targets are squeezed toward 0.5 by this much.
        axis: The axis averaged over.

    Example:

    >>> ferrax.losses.binary_crossentropy([[1.0]], [[0.9]])   # [0.105]
    """
    from ferrax import ops

    y_true, y_pred = _same_rank(y_true, y_pred)
    if label_smoothing:
        y_true = ops.add(ops.multiply(y_true, 1.0 - label_smoothing), 0.5 * label_smoothing)
    return ops.mean(ops.binary_crossentropy(y_true, y_pred, from_logits=from_logits),
                    axis=axis)


@_marked(CategoricalCrossentropy)
def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1) -> Any:
    """Cross-entropy of one-hot targets and predicted distributions along `axis`.

    Args:
        y_true: One-hot (or soft) targets.
        y_pred: Probabilities (or logits with `from_logits=True`).
        from_logits: Whether `y_pred` is logits.
        label_smoothing: Targets are mixed with the uniform distribution by this much.
        axis: The class axis.

    Example:

    >>> ferrax.losses.categorical_crossentropy([[0.0, 1.0]], [[0.5, 0.5]])   # [0.693]
    """
    from ferrax import ops

    if label_smoothing:
        classes = np.shape(y_pred)[axis]
        y_true = ops.add(ops.multiply(y_true, 1.0 - label_smoothing),
                         label_smoothing / classes)
    return ops.categorical_crossentropy(y_true, y_pred, from_logits=from_logits, axis=axis)


@_marked(SparseCategoricalCrossentropy)
def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                                    ignore_class: int | None = None, axis: int = -1) -> Any:
    """Cross-entropy of integer class ids and predicted distributions.

    Args:
        y_true: Class ids, one per sample (a trailing axis of 1 is dropped).
        y_pred: Probabilities (or logits with `from_logits=True`) over the last axis.
        from_logits: Whether `y_pred` is logits.
        ignore_class: Not supported yet.
        axis: The class axis (the last).

    Example:

    >>> ferrax.losses.sparse_categorical_crossentropy([1], [[0.5, 0.5]])   # [0.693]
    """
    from ferrax import ops

    if ignore_class is not None:
        raise NotImplementedError("sparse_categorical_crossentropy: ignore_class is not "
                                  "supported yet")
    if np.ndim(y_true) == np.ndim(y_pred) and np.shape(y_true)[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    return ops.sparse_categorical_crossentropy(y_true, y_pred, from_logits=from_logits,
                                               axis=axis)


mse = mean_squared_error
mae = mean_absolute_error


def _eager_pred(y_pred: Any) -> Any:
    """y_pred as an eager operand: a Tensor kept (the tape may track it), else float32."""
    if isinstance(y_pred, Tensor):
        return y_pred
    return np.asarray(y_pred, dtype=np.float32)


def _weights_for(name: str, sample_weight: Any, n: int) -> np.ndarray:
    """One float32 weight per sample (a scalar weighs them all)."""
    w = np.asarray(sample_weight._value if isinstance(sample_weight, Tensor) else sample_weight,
                   dtype=np.float32)
    if w.ndim == 0:
        return np.full((n,), w, np.float32)
    if w.size != n:
        raise ValueError(f"{name}: sample_weight holds {w.size} weights for {n} samples")
    return w.reshape(n)


_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none")
# the reductions that divide by the number of values: the engine's kernel's
_BATCH_MEAN = ("sum_over_batch_size", "mean")


def _reduction(name: str, reduction: Any) -> str:
    reduction = "none" if reduction is None else reduction
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {', '.join(_REDUCTIONS)} or None, "
                         f"got {reduction!r}")
    return str(reduction)


def check_fit_reduction(loss: Loss) -> None:
    """fit's loop reduces as Keras's default does; another reduction is for calls."""
    if loss.reduction not in _BATCH_MEAN:
        raise NotImplementedError(f"compile: the loss '{loss.name}' has reduction="
                                  f"{loss.reduction!r}; fit reduces as Keras's default "
                                  f"('sum_over_batch_size'), so give compile a loss with it")


def _tracked(y_true: Any) -> bool:
    """Whether an open tape would take the gradient of the targets: it tracks them,
    or they are a trainable Variable it watches when read."""
    from ferrax.ops import _dispatch
    from ferrax.variables import Variable

    if not isinstance(y_true, Tensor) or not _dispatch._TAPES:
        return False
    return any(t._tracks(y_true) or (isinstance(y_true, Variable) and y_true.trainable
                                     and t.watch_accessed_variables)
               for t in _dispatch._TAPES)


def _reduce(name: str, per_sample: Any, sample_weight: Any,
            reduction: str = "sum_over_batch_size") -> Any:
    """Keras's reductions of the (weighted) per-sample losses: over the number of
    values (sum_over_batch_size, mean), the sum, over the weights' sum, or none."""
    from ferrax import ops

    weighted = per_sample if sample_weight is None else _weighted(name, per_sample,
                                                                   sample_weight)
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return ops.sum(weighted)
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        w = ops.multiply(ops.ones_like(per_sample), _weights_like(per_sample, sample_weight))
        return ops.divide(ops.sum(weighted), ops.sum(w))
    return ops.mean(weighted)


def _weights_like(per_sample: Any, sample_weight: Any) -> Any:
    """The weights with trailing axes of 1 to broadcast against the losses."""
    from ferrax import ops

    rank = len(ops.shape(per_sample))
    if np.ndim(sample_weight) == 1 and rank > 1:
        return ops.reshape(sample_weight, (-1,) + (1,) * (rank - 1))
    return sample_weight


def _weighted(name: str, per_sample: Any, sample_weight: Any) -> Any:
    from ferrax import ops

    rank = len(ops.shape(per_sample))
    if rank == 0:
        raise ValueError(f"{name}: the loss is one number for the whole batch, so "
                         f"sample_weight cannot weigh its samples")
    w = sample_weight
    have, want = np.shape(w)[:1], ops.shape(per_sample)[:1]
    if have and None not in have + want and have != want:
        raise ValueError(f"{name}: sample_weight holds {have[0]} weights for {want[0]} "
                         f"samples")
    return ops.multiply(per_sample, _weights_like(per_sample, w))


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
        self.reduction = _reduction(self.name, reduction)

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

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        from ferrax import ops
        from ferrax.symbolic import any_symbolic

        if not any_symbolic([y_true, y_pred]):
            y_true, y_pred = (t if isinstance(t, Tensor) else ops.convert_to_tensor(t)
                              for t in (y_true, y_pred))
        return _reduce(self.name, self.fn(y_true, y_pred), sample_weight, self.reduction)


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
