"""What `compile` gave, as a custom `train_step` uses it: the compiled loss on
eager tensors (`compute_loss`), every compiled metric behind one Metric
(`compile_metrics`, as Keras groups them), and the weights' regularization
penalties (`model.losses`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ferrax import metrics as metrics_module
from ferrax.models import _heads

if TYPE_CHECKING:
    from ferrax.models.model import Model


class CompileMetrics(metrics_module.Metric):
    """The metrics `compile` was given, updated together: `result()` is a dict by
    name (each output's prefixed with its name when the model has several)."""

    def __init__(self, model: Model) -> None:
        super().__init__("compile_metrics", "compile_metrics")
        self._model = model

    def _entries(self) -> list[tuple[int | None, metrics_module.Metric, str]]:
        """(output index or None for the only one, metric, name in the logs)."""
        model = self._model
        if model._heads is not None:
            return [(k, m, f"{h.name}_{m.name}") for k, h in enumerate(model._heads)
                    for m in h.metrics]
        cfg = model._compile_config
        return [(None, m, m.name) for m in (cfg["metrics"] if cfg else [])]

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        entries = self._entries()
        if not entries:
            return
        model = self._model
        if model._heads is not None:
            ys = _heads.unpack(model.name, model._heads, y_true, "y")
            preds = _outputs_in_order(model, y_pred)
            weights = _weights_per_output(model, sample_weight)
            for k, metric, _ in entries:
                assert k is not None
                metric.update_state(ys[k], preds[k], weights[k])
            return
        for _, metric, _ in entries:
            metric.update_state(y_true, y_pred, sample_weight)

    def result(self) -> dict[str, Any]:
        return {name: metric.result() for _, metric, name in self._entries()}

    def reset_state(self) -> None:
        for _, metric, _ in self._entries():
            metric.reset_state()


def _outputs_in_order(model: Model, y_pred: Any) -> list[Any]:
    assert model._heads is not None
    names = [h.name for h in model._heads]
    if isinstance(y_pred, dict):
        return [y_pred[n] for n in names]
    if not isinstance(y_pred, (list, tuple)) or len(y_pred) != len(names):
        raise ValueError(f"Model '{model.name}' has {len(names)} outputs {names}: y_pred "
                         f"must be a list of {len(names)} or a dict by output name")
    return list(y_pred)


def _weights_per_output(model: Model, sample_weight: Any) -> list[Any]:
    assert model._heads is not None
    names = [h.name for h in model._heads]
    if isinstance(sample_weight, (dict, list, tuple)):
        return _heads.per_output(model.name, names, sample_weight, "sample_weight", None)
    return [sample_weight] * len(names)


def compiled_loss(model: Model, y: Any, y_pred: Any, sample_weight: Any) -> Any:
    """The compiled loss of (y, y_pred), each output's weighted by its loss weight;
    None when compile gave no loss."""
    from ferrax import ops

    cfg = model._compile_config
    if cfg is None:
        return None
    if model._heads is not None:
        ys = _heads.unpack(model.name, model._heads, y, "y")
        preds = _outputs_in_order(model, y_pred)
        weights = _weights_per_output(model, sample_weight)
        total = None
        for h, yk, pk, wk in zip(model._heads, ys, preds, weights):
            term = ops.multiply(h.loss(yk, pk, wk), h.weight)
            total = term if total is None else ops.add(total, term)
        return total
    loss = cfg["loss"]
    return None if loss is None else loss(y, y_pred, sample_weight)


def regularization_losses(model: Model) -> list[Any]:
    """Each regularized trainable weight's penalty, with the regularizer the engine
    has for it (a wrapped layer's weights too), as a scalar tensor made of ops on the
    weight (a GradientTape records it)."""
    from ferrax.regularizers import L1L2

    if not model.built:
        return []
    regularizers = model._built_core().weight_regularizers()
    if all(reg is None or not any(reg) for reg in regularizers):
        return []  # (most models: nothing to build, every step)
    return [L1L2(*reg)(v) for v in model.trainable_weights
            if (reg := regularizers[v._index]) is not None and any(reg)]
