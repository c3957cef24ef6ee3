"""Callbacks that change the optimizer's learning rate between epochs."""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from ferrax._serial import check_number, describe
from ferrax._typing import Logs
from ferrax.callbacks import _monitor as mon
from ferrax.callbacks.base import Callback


def _current_lr(model: Any, owner: str) -> float:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "learning_rate"):
        raise ValueError(f"{owner}: the model's optimizer must have a 'learning_rate' "
                         f"attribute (compile the model first)")
    return float(optimizer.learning_rate)


def _set_lr(model: Any, rate: float) -> None:
    # (a model whose optimizer _current_lr has already checked)
    model.optimizer.learning_rate = rate


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved (by more than
    `min_delta`) for `patience` epochs, then wait `cooldown` epochs before counting again;
    never go below `min_lr`. Adds `learning_rate` to each epoch's logs, as Keras does."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, **kwargs: Any) -> None:
        super().__init__()
        owner = type(self).__name__
        if kwargs:
            raise TypeError(f"{owner}: unexpected argument(s) {sorted(kwargs)}")
        self.monitor = mon.check_monitor(owner, monitor)
        check_number(owner, "factor", factor, low=0)
        if factor >= 1.0:
            raise ValueError(f"{owner}: 'factor' must be < 1.0 (new_lr = lr * factor), got "
                             f"{factor}")
        self.factor = float(factor)
        self.patience = mon.check_int(owner, "patience", patience)
        self.verbose = verbose
        self.mode = mode
        self._mode = mon.resolve_mode(owner, monitor, mode)
        self.min_delta = abs(float(check_number(owner, "min_delta", min_delta)))
        self.cooldown = mon.check_int(owner, "cooldown", cooldown)
        self.min_lr = float(check_number(owner, "min_lr", min_lr, low=0))
        self._reset()

    def _reset(self) -> None:
        self.best = mon.worst(self._mode)
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._reset()

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if logs is None:
            logs = {}
        logs["learning_rate"] = _current_lr(self.model, type(self).__name__)
        current = mon.monitor_value("Learning rate reduction", self.monitor, logs)
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if mon.improves(self._mode, current, self.best, self.min_delta):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = _current_lr(self.model, type(self).__name__)
                # The engine keeps the rate in float32: compare at that precision, or a rate
                # already at min_lr would keep being "reduced".
                if old_lr > float(np.float32(self.min_lr)):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    _set_lr(self.model, new_lr)
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning "
                              f"rate to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


def _positional_arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments `fn` takes (2 when it cannot be told)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


class LearningRateScheduler(Callback):
    """At the start of each epoch, set the learning rate to `schedule(epoch, lr)` (epoch
    counted from 0, lr the current rate; a one-argument `schedule(epoch)` also works).
    Adds `learning_rate` to each epoch's logs, as Keras does."""

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: 'schedule' must be a function "
                            f"(epoch, lr) -> lr, got {describe(schedule)}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        lr = _current_lr(self.model, type(self).__name__)
        if _positional_arity(self.schedule) >= 2:
            new_lr = self.schedule(epoch, lr)
        else:
            new_lr = self.schedule(epoch)
        if hasattr(new_lr, "item") and getattr(new_lr, "ndim", 0) == 0:
            new_lr = new_lr.item()
        if (isinstance(new_lr, bool) or not isinstance(new_lr, numbers.Real)
                or not math.isfinite(new_lr) or new_lr < 0):
            raise ValueError(f"LearningRateScheduler: the output of the `schedule` function "
                             f"should be a finite float >= 0, got {describe(new_lr)} for "
                             f"epoch {epoch}")
        self.model.optimizer.learning_rate = float(new_lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{float(new_lr)}.")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = _current_lr(self.model, type(self).__name__)
