"""EarlyStopping: stop training when a monitored quantity stops improving."""

from __future__ import annotations

from ferrax._serial import check_number
from ferrax._typing import Float32Array, Logs
from ferrax.callbacks import _monitor as mon
from ferrax.callbacks.base import Callback


class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved for `patience` epochs (Keras 3).

    An epoch improves when the value beats the best so far by more than `min_delta`
    (direction from `mode`; "auto" maximises accuracy-like names and minimises the rest).
    With `baseline`, the waiting count only restarts once the value also beats the baseline.
    Epochs before `start_from_epoch` are not monitored. With `restore_best_weights`, the
    weights of the best monitored epoch are put back when training ends.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__()
        owner = type(self).__name__
        self.monitor = mon.check_monitor(owner, monitor)
        self.min_delta = abs(float(check_number(owner, "min_delta", min_delta)))
        self.patience = mon.check_int(owner, "patience", patience)
        self.verbose = verbose
        self.mode = mode
        self._mode = mon.resolve_mode(owner, monitor, mode)
        if baseline is not None:
            baseline = float(check_number(owner, "baseline", baseline))
        self.baseline = baseline
        self.restore_best_weights = mon.check_flag(owner, "restore_best_weights",
                                                   restore_best_weights)
        self.start_from_epoch = mon.check_int(owner, "start_from_epoch", start_from_epoch)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = mon.worst(self._mode)
        self.best_weights: list[Float32Array] | None = None
        self.best_epoch = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._reset()  # an instance can be reused across fits

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = mon.monitor_value("Early stopping", self.monitor, logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # Nothing better seen yet: the current weights are the best.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if mon.improves(self._mode, current, self.best, self.min_delta):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or mon.improves(self._mode, current, self.baseline,
                                                     self.min_delta):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs: Logs | None) -> float | None:
        return mon.monitor_value("Early stopping", self.monitor, logs)
