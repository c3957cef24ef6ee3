"""A model's own `train_step` / `test_step` / `predict_step`: fit, evaluate and
predict run them batch by batch on eager tensors, with callbacks, the progress bar,
History and validation as the fused loop has them. A model that overrides none of
them never comes here: the engine's loop runs it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ferrax._serial import describe
from ferrax.callbacks import Callback, CallbackList, History
from ferrax.symbolic import flatten, pack_like
from ferrax.tensor import Tensor

if TYPE_CHECKING:
    from ferrax.models.model import Model


def overrides(model: Model, step: str) -> bool:
    """Whether `model`'s class defines its own `step` (train_step, ...)."""
    from ferrax.models.model import Model

    return getattr(type(model), step, None) is not getattr(Model, step)


def uses_steps(model: Model) -> bool:
    return any(overrides(model, s) for s in ("train_step", "test_step", "predict_step"))


# --- data ----------------------------------------------------------------------------
def _leaves_as_arrays(data: Any, arg: str) -> Any:
    """`data` (an array, or a list, tuple or dict of them) with every leaf an array:
    float64 becomes float32, as the engine computes."""
    if data is None:
        return None
    leaves = []
    for k, leaf in enumerate(flatten(data)):
        a = leaf._value if isinstance(leaf, Tensor) else np.asarray(leaf)
        if a.dtype == object or a.ndim == 0:
            where = arg if k == 0 and not isinstance(data, (list, tuple, dict)) else \
                f"{arg} (entry {k})"
            raise ValueError(f"'{where}' must be an array with a leading batch axis, got "
                             f"{describe(leaf)}")
        leaves.append(a.astype(np.float32) if a.dtype == np.float64 else a)
    return pack_like(data, leaves)


def _length(data: Any, arg: str) -> int:
    lengths = {len(a) for a in flatten(data)}
    if len(lengths) != 1:
        raise ValueError(f"the arrays of '{arg}' hold different numbers of samples: "
                         f"{sorted(lengths)}")
    return lengths.pop()


def _batch(data: Any, idx: np.ndarray | slice) -> Any:
    """The samples `idx` of every array (a slice: views, no copy)."""
    if data is None:
        return None
    return pack_like(data, [Tensor(a[idx]) for a in flatten(data)])


def _pack(x: Any, y: Any, w: Any) -> Any:
    """What a step receives, as Keras packs it: x alone, (x, y) or (x, y, w); several
    inputs without targets as (x,), so that unpacking them gives x whole."""
    if y is None and w is None:
        return (x,) if isinstance(x, (list, tuple)) else x
    return (x, y) if w is None else (x, y, w)


class _Data:
    """fit's / evaluate's arrays, checked once and sliced into batches of tensors."""

    def __init__(self, x: Any, y: Any, sample_weight: Any) -> None:
        if x is None:
            raise ValueError("'x' is required: the data to pass to the step")
        self.x = _leaves_as_arrays(x, "x")
        self.y = _leaves_as_arrays(y, "y")
        self.w = _leaves_as_arrays(sample_weight, "sample_weight")
        self.n = _length(self.x, "x")
        for arg, part in (("y", self.y), ("sample_weight", self.w)):
            if part is not None and _length(part, arg) != self.n:
                raise ValueError(f"'x' holds {self.n} samples but '{arg}' holds "
                                 f"{_length(part, arg)}")

    def split(self, fraction: float) -> tuple[_Data, _Data]:
        """The last `fraction` of the samples (before shuffling, as Keras) apart."""
        at = int(math.ceil(self.n * (1.0 - fraction)))
        if at == 0 or at == self.n:
            raise ValueError(f"validation_split={fraction} leaves no samples for "
                             f"{'training' if at == 0 else 'validation'} out of {self.n}")
        head, tail = (_Data.__new__(_Data) for _ in range(2))
        for part, rows in ((head, slice(0, at)), (tail, slice(at, self.n))):
            part.x, part.y, part.w = (None if d is None else pack_like(
                d, [a[rows] for a in flatten(d)]) for d in (self.x, self.y, self.w))
            part.n = len(range(self.n)[rows])
        return head, tail

    def batch(self, idx: np.ndarray | slice) -> Any:
        return _pack(_batch(self.x, idx), _batch(self.y, idx), _batch(self.w, idx))


# --- logs ----------------------------------------------------------------------------
def pythonify(logs: Any, model: Model, step: str) -> dict[str, Any]:
    """A step's result as fit's logs: a dict (nested dicts flattened, as Keras does)
    of floats where the values are scalars."""
    if not isinstance(logs, dict):
        raise TypeError(f"Model '{model.name}': {step}() must return a dict of metric "
                        f"values by name (such as {{'loss': loss}}), got {describe(logs)}")
    out: dict[str, Any] = {}
    for key, value in logs.items():
        if isinstance(value, dict):
            out.update(pythonify(value, model, step))
            continue
        a = value._value if isinstance(value, Tensor) else np.asarray(value)
        out[str(key)] = float(a) if a.ndim == 0 and a.dtype.kind in "fiub" else a
    return out


# --- the loops ------------------------------------------------------------------------
def fit(model: Model, x: Any, y: Any, sample_weight: Any, batch_size: int, epochs: int,
        verbosity: int, callbacks: Sequence[Callback] | None, validation_split: float,
        validation_data: Any, shuffle: bool, initial_epoch: int, validation_freq: int,
        validation_batch_size: int | None, class_weight: dict[int, float] | None = None
        ) -> History:
    from ferrax.models import _data
    from ferrax.models.model import begin_fit
    from ferrax.utils import _next_seed

    data = _Data(x, y, sample_weight)
    if class_weight is not None:  # folded into the samples' weights, as Keras does
        if data.y is None or isinstance(data.y, (list, tuple, dict)):
            raise ValueError(f"Model '{model.name}': class_weight needs the targets of one "
                             f"output (y as one array)")
        ids = _data.class_ids(data.y)
        shapes = model._engine_output_shapes() if model.built else [None]
        data.w = _data.sample_weights(data.w, class_weight, ids, data.n,
                                      _data.output_classes(shapes[0]))
    val: Any = None
    if validation_data is None and validation_split:
        data, val = data.split(validation_split)
    elif validation_data is not None:
        val = _Data(*_data.validation_parts(validation_data))
    steps = math.ceil(data.n / batch_size)
    seed = _next_seed()  # each epoch's order: from the global seed and the epoch
    cbs, history, initial_epoch = begin_fit(model, callbacks, verbosity, epochs, steps,
                                            initial_epoch)
    logs: dict[str, Any] = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        cbs.on_epoch_begin(epoch, {})
        order = np.random.default_rng([seed, epoch]).permutation(data.n) if shuffle else None
        for step in range(steps):
            cbs.on_train_batch_begin(step, {})
            rows = slice(step * batch_size, (step + 1) * batch_size)
            batch = data.batch(rows if order is None else order[rows])
            logs = pythonify(model.train_step(batch), model, "train_step")
            cbs.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        epoch_logs = dict(logs)
        if val is not None and (epoch + 1) % validation_freq == 0:
            vb = _data.check_batch_size(validation_batch_size or batch_size,
                                        "validation_batch_size")
            val_logs = evaluate(model, val, vb, CallbackList([], model, {}), 0)
            epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
        cbs.on_epoch_end(epoch, epoch_logs)
        logs = epoch_logs
        if model.stop_training:
            break
    cbs.on_train_end(logs)
    return history


def evaluate(model: Model, data: _Data, batch_size: int, cbs: CallbackList,
             verbosity: int) -> dict[str, Any]:
    """test_step over `data` in order; the last batch's logs."""
    from ferrax.callbacks import Progbar

    steps = math.ceil(data.n / batch_size)
    bar = Progbar(steps, verbose=verbosity) if verbosity else None
    model.reset_metrics()
    cbs.on_test_begin({})
    logs: dict[str, Any] = {}
    for step in range(steps):
        cbs.on_test_batch_begin(step, {})
        rows = slice(step * batch_size, (step + 1) * batch_size)
        logs = pythonify(model.test_step(data.batch(rows)), model, "test_step")
        cbs.on_test_batch_end(step, logs)
        if bar is not None:
            bar.update(step + 1, logs)
    if bar is not None:
        bar.finish(logs)
    cbs.on_test_end(logs)
    return logs


def predict(model: Model, x: Any, batch_size: int, cbs: CallbackList,
            verbosity: int) -> Any:
    """predict_step over `x` in order; its results joined along the batch axis."""
    from ferrax.callbacks import Progbar

    data = _Data(x, None, None)
    steps = math.ceil(data.n / batch_size)
    bar = Progbar(steps, verbose=verbosity) if verbosity else None
    cbs.on_predict_begin({})
    parts: list[Any] = []
    for step in range(steps):
        cbs.on_predict_batch_begin(step, {})
        out = model.predict_step(data.batch(slice(step * batch_size, (step + 1) * batch_size)))
        parts.append(out)
        cbs.on_predict_batch_end(step, {"outputs": out})
        if bar is not None:
            bar.update(step + 1)
    if bar is not None:
        bar.finish()
    cbs.on_predict_end({})
    if not parts:
        raise ValueError("predict: 'x' holds no samples")
    joined = [np.concatenate([np.asarray(flatten(p)[k]) for p in parts])
              for k in range(len(flatten(parts[0])))]
    return pack_like(parts[0], joined)
