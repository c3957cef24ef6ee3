"""The callback protocol: Callback, the list that calls them, and History."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ferrax._typing import Logs

if TYPE_CHECKING:
    from ferrax.models.model import Model


class Callback:
    """Base class. Override any on_* hook; `self.model` and `self.params` are set by fit."""

    # The model being trained: set by fit/evaluate/predict before any hook runs, so hooks
    # may use it without a None check.
    model: Model
    params: dict[str, Any]

    def __init__(self) -> None:
        self.model = None  # type: ignore[assignment]  # set_model runs before any hook
        self.params = {}

    def set_model(self, model: Model) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None: ...
    def on_train_end(self, logs: Logs | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Keras's older name of `on_train_batch_begin`, which calls it."""

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Keras's older name of `on_train_batch_end`, which calls it."""

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs: Logs | None = None) -> None: ...
    def on_test_end(self, logs: Logs | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_predict_begin(self, logs: Logs | None = None) -> None: ...
    def on_predict_end(self, logs: Logs | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...


def _overrides(callback: Callback, *hooks: str) -> bool:
    declared = getattr(callback, "_batch_hooks", None)
    if declared is not None:  # the callback says which batch hooks need single batches
        return any(h in declared for h in hooks)
    return any(getattr(type(callback), h) is not getattr(Callback, h) for h in hooks)


def wants_batches(callback: Callback) -> bool:
    """Whether a callback overrides a per-batch training hook (then fit steps one batch
    at a time; otherwise the engine runs many batches per call)."""
    return _overrides(callback, "on_train_batch_begin", "on_train_batch_end",
                      "on_batch_begin", "on_batch_end")


class History(Callback):
    """Records per-epoch logs: `history` maps each metric to a list, `epoch` lists epochs."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[Any]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class CallbackList:
    """Calls a hook on every callback in order."""

    def __init__(self, callbacks: Iterable[Callback], model: Model,
                 params: dict[str, Any]) -> None:
        self.callbacks = list(callbacks)
        for c in self.callbacks:
            c.set_model(model)
            c.set_params(params)

    def __getattr__(self, hook: str) -> Callable[..., None]:
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args: Any, **kwargs: Any) -> None:
            for c in self.callbacks:
                getattr(c, hook)(*args, **kwargs)

        return call

    @property
    def wants_batches(self) -> bool:
        return any(wants_batches(c) for c in self.callbacks)

    @property
    def wants_test_batches(self) -> bool:
        return any(_overrides(c, "on_test_batch_begin", "on_test_batch_end")
                   for c in self.callbacks)

    @property
    def wants_predict_batches(self) -> bool:
        return any(_overrides(c, "on_predict_batch_begin", "on_predict_batch_end")
                   for c in self.callbacks)
