"""Shared pieces of the training callbacks: argument checks and the direction of a
monitored quantity."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

from ferrax._serial import check_number, describe
from ferrax._typing import Logs

# A monitored name containing one of these is better when larger ("auto" mode).
_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "fmeasure", "f1", "iou")


def check_int(owner: str, arg: str, value: Any, low: int = 0) -> int:
    return check_number(owner, arg, value, low=low, integer=True)


def check_flag(owner: str, arg: str, value: Any) -> bool:
    if not isinstance(value, (bool, int)) or value not in (0, 1):
        raise TypeError(f"{owner}: '{arg}' must be True or False, got {describe(value)}")
    return bool(value)


def check_monitor(owner: str, monitor: Any) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"{owner}: 'monitor' must be a metric name such as 'val_loss', got "
                        f"{describe(monitor)}")
    return monitor


def check_save_freq(owner: str, save_freq: Any) -> str | int:
    ok = save_freq == "epoch" if isinstance(save_freq, str) else (
        isinstance(save_freq, numbers.Integral) and not isinstance(save_freq, bool)
        and save_freq >= 1)  # type: ignore[operator]  # typeshed's Integral lacks >=
    if not ok:
        raise ValueError(f"{owner}: 'save_freq' must be 'epoch' or a positive integer number "
                         f"of batches, got {describe(save_freq)}")
    return save_freq if isinstance(save_freq, str) else int(save_freq)


def resolve_mode(owner: str, monitor: str, mode: Any) -> str:
    """'min' or 'max'. "auto" infers it from the name as Keras does: accuracy-like
    quantities (acc, accuracy, auc, precision, recall) are maximised, the rest minimised."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: 'mode' must be 'auto', 'min' or 'max', got "
                         f"{describe(mode)}")
    if mode != "auto":
        return mode
    name = monitor.lower().removeprefix("val_")
    return "max" if any(w in name for w in _HIGHER_IS_BETTER) else "min"


def worst(mode: str) -> float:
    return math.inf if mode == "min" else -math.inf


def improves(mode: str, value: float, reference: float | None, min_delta: float = 0.0) -> bool:
    """Whether `value` beats `reference` by more than `min_delta` (>= 0) in direction `mode`."""
    if reference is None:
        return True
    if mode == "min":
        return value + min_delta < reference
    return value - min_delta > reference


def monitor_value(owner: str, monitor: str, logs: Logs | None, stacklevel: int = 3
                  ) -> float | None:
    """The monitored value from `logs` as a float, or None (with a warning) when absent."""
    logs = logs or {}
    value = logs.get(monitor)
    if value is None:
        warnings.warn(f"{owner} is conditioned on metric `{monitor}` which is not available. "
                      f"Available metrics are: {','.join(logs)}", stacklevel=stacklevel)
        return None
    return float(value)


class BatchCounter:
    """Counts trained batches for callbacks that act every `save_freq` batches.

    fit may report several batches in one `on_train_batch_end` call (the index of
    the last one run), so the count advances by the gap since the last call.
    """

    def __init__(self, save_freq: str | int) -> None:
        self.every = save_freq if isinstance(save_freq, int) else None
        self._since = 0
        self._last = -1

    def reset(self) -> None:
        self._since = 0
        self._last = -1

    def new_epoch(self) -> None:
        self._last = -1

    def due(self, batch: int) -> bool:
        """Whether to act after batch `batch` (never when counting epochs)."""
        if self.every is None:
            return False
        self._since += batch - self._last
        self._last = batch
        if self._since >= self.every:
            self._since = 0
            return True
        return False
