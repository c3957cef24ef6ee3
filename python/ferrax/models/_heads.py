"""Models with several outputs: each output's loss, loss weight and metrics ("heads"),
their targets side by side in one array for the engine, and their names in the logs
(``loss``, ``cls_loss``, ``cls_accuracy``, as Keras names them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ferrax import losses as losses_module
from ferrax import metrics as metrics_module
from ferrax._serial import describe
from ferrax._typing import Config, Float32Array
from ferrax.models import _data


class Head(NamedTuple):
    name: str
    shape: tuple[int | None, ...]  # per sample; None: a length that follows the input
    loss: losses_module.Loss
    weight: float
    metrics: list[metrics_module.Metric]


def per_output(model: str, names: list[str], value: Any, what: str, default: Any) -> list[Any]:
    """One entry per output from a single value (the same for all), a list in the
    outputs' order or a dict by output name (outputs it leaves out get `default`)."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"Model '{model}': {what} has key(s) {unknown} that "
                             f"match no output; the outputs are {names}")
        return [value.get(n, default) for n in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"Model '{model}' has {len(names)} outputs {names}, but {what} "
                             f"lists {len(value)}")
        return list(value)
    return [value] * len(names)


def resolve(model: str, outputs: list[tuple[str, tuple[int | None, ...]]], loss: Any,
            loss_weights: Any, metrics: Any) -> list[Head]:
    names = [n for n, _ in outputs]
    losses = per_output(model, names, loss, "compile's loss", None)
    for name, l in zip(names, losses):
        if l is None:
            raise ValueError(f"Model '{model}': compile gives no loss for output '{name}'")
    weights = per_output(model, names, 1.0 if loss_weights is None else loss_weights,
                         "compile's loss_weights", 1.0)
    if metrics is None:
        per: list[Any] = [[] for _ in names]
    elif isinstance(metrics, dict):
        per = per_output(model, names, metrics, "compile's metrics", [])
    elif isinstance(metrics, (list, tuple)) and metrics and all(
            isinstance(m, (list, tuple)) for m in metrics):
        per = per_output(model, names, list(metrics), "compile's metrics", [])
    else:  # one metric or a flat list: every output is scored with it
        per = [metrics for _ in names]
    heads = []
    for (name, shape), l, w, ms in zip(outputs, losses, weights, per):
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise TypeError(f"Model '{model}': the loss weight of output '{name}' must be a "
                            f"number, got {describe(w)}")
        ms = [ms] if isinstance(ms, (str, metrics_module.Metric)) else list(ms)
        loss_obj = losses_module.get(l)
        losses_module.check_fit_reduction(loss_obj)
        heads.append(Head(name, shape, loss_obj, float(w),
                          [metrics_module.get(m) for m in ms]))
    return heads


def metric_names(heads: list[Head]) -> list[str]:
    return (["loss"] + [f"{h.name}_loss" for h in heads]
            + [f"{h.name}_{m.name}" for h in heads for m in h.metrics])


def logs(heads: list[Head], totals: Any, prefix: str = "") -> dict[str, float]:
    """Named values from the engine's totals: the total loss, each output's loss, then
    each output's metrics in turn."""
    loss_sum, samples, sums, _ = totals
    # the engine reports the heads' own metrics first, then the traced functions'
    reported = ([f"{h.name}_loss" for h in heads]
                + [f"{h.name}_{m.name}" for h in heads for m in h.metrics if not traced(m)]
                + [f"{h.name}_{m.name}" for h in heads for m in h.metrics if traced(m)])
    values = {name: float(s / w) if w else 0.0 for name, (s, w) in zip(reported, sums)}
    out = {prefix + "loss": float(loss_sum / samples) if samples else 0.0}
    for name in metric_names(heads)[1:]:
        out[prefix + name] = values.get(name, 0.0)
    return out


def unpack(model: str, heads: list[Head], y: Any, arg: str) -> list[Any]:
    """One target array per output: `y` as a list in the outputs' order or a dict."""
    names = [h.name for h in heads]
    if isinstance(y, dict):
        return _data.by_name(model, y, arg, names, "output")
    if isinstance(y, (list, tuple)) and len(y) == len(names):
        return list(y)
    raise ValueError(f"Model '{model}' has {len(names)} outputs {names}: pass '{arg}' as a list "
                     f"of {len(names)} arrays or a dict by output name, got {describe(y)}")


def targets(model: str, heads: list[Head], ys: Sequence[Any], arg: str
            ) -> tuple[Float32Array, list[tuple[int, int]], list[tuple[int, ...]]]:
    """The outputs' targets side by side (float32, one row per sample), each one's
    (rank, last size), which resolves "accuracy", and the per-sample shape a loss or
    metric function sees each one's in."""
    parts, ranks, views = [], [], []
    n = None
    for h, y in zip(heads, ys):
        where = f"{arg}[{h.name!r}]"
        ya = _data.as_array(y, where)
        if n is not None and len(ya) != n:
            raise ValueError(f"Model '{model}': the targets of '{arg}' must hold the same "
                             f"number of samples, but {where} has {len(ya)}, not {n}")
        n = len(ya)
        # an output's axis of unknown length takes the length of its targets
        shape = tuple(ya.shape[1 + i] if d is None and ya.ndim > 1 + i else (d or 1)
                      for i, d in enumerate(h.shape))
        if isinstance(h.loss, losses_module.LossFunctionWrapper):
            part = _data.function_targets(ya)
        else:
            part = _data.targets(ya, h.loss, shape, h.name, where).reshape(len(ya), -1)
        parts.append(part)
        ranks.append((ya.ndim, ya.shape[-1] if ya.ndim > 1 else 1))
        views.append(_data.target_view(ya.shape[1:], shape, part.shape[1]))
    packed = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
    return packed, ranks, views


def engine_spec(heads: list[Head], ranks: list[tuple[int, int]]) -> list[Config]:
    specs = []
    for h, (y_rank, y_last) in zip(heads, ranks):
        out_rank = len(h.shape) + 1
        classes = h.shape[-1] if h.shape and h.shape[-1] is not None else 1
        specs.append({"loss": h.loss._core_spec(), "weight": h.weight,
                      "metrics": [m._core_spec(y_rank - (out_rank - 2), y_last, classes,
                                               h.loss) for m in h.metrics if not traced(m)]})
    return specs


def traced(metric: Any) -> bool:
    """Whether a metric is a Python function traced into the graph (not run by a head)."""
    return isinstance(metric, metrics_module.MetricFunctionWrapper)


def split(outputs: list[tuple[str, tuple[int, ...]]], out: Float32Array, n: int
          ) -> list[Float32Array]:
    """The engine's (n, Σ sizes) predictions as one array per output (`outputs`: the
    shapes the engine has now)."""
    arrays, at = [], 0
    for _, shape in outputs:
        size = int(np.prod(shape))
        arrays.append(out[:, at:at + size].reshape((n, *shape)))
        at += size
    return arrays


def sample_weights(model: str, heads: list[Head], sample_weight: Any, n: int
                   ) -> Float32Array | None:
    """Weights for the engine: one per sample for every output (an array), or one per
    sample and output (a list of arrays in the outputs' order or a dict by output name;
    outputs it leaves out weigh 1), as an (n, outputs) array."""
    names = [h.name for h in heads]
    if sample_weight is None:
        return None
    if isinstance(sample_weight, dict):
        per = per_output(model, names, sample_weight, "'sample_weight'", None)
    elif isinstance(sample_weight, (list, tuple)) and all(
            w is None or hasattr(w, "shape") for w in sample_weight):
        per = per_output(model, names, list(sample_weight), "'sample_weight'", None)
    elif isinstance(sample_weight, np.ndarray) and sample_weight.ndim == 2 \
            and sample_weight.shape == (n, len(names)):
        return np.ascontiguousarray(sample_weight, dtype=np.float32)
    else:
        return _data.sample_weights(sample_weight, None, None, n)
    columns = []
    for w in per:
        column = None if w is None else _data.sample_weights(w, None, None, n)
        columns.append(np.ones(n, np.float32) if column is None else column)
    return np.ascontiguousarray(np.stack(columns, axis=1), dtype=np.float32)
