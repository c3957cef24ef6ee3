"""ModelCheckpoint: save the model or its weights during training."""

from __future__ import annotations

import os

from ferrax._serial import check_number, describe
from ferrax._typing import Logs, PathLike
from ferrax.callbacks import _monitor as mon
from ferrax.callbacks.base import Callback

MODEL_SUFFIX = ".ferrax"
WEIGHTS_SUFFIX = ".weights.safetensors"


class ModelCheckpoint(Callback):
    """Save the model (`.ferrax`: architecture, weights, optimizer state) or, with
    `save_weights_only=True`, its weights (`.weights.safetensors`) during fit (Keras 3).

    `filepath` may hold format fields filled from the epoch (counted from 1) and the logs,
    e.g. `"ck-{epoch:02d}-{val_loss:.2f}.ferrax"`; with an integer `save_freq`, `{batch}`
    (from 1 within the epoch) is available too. `save_freq="epoch"` saves at the end of each
    epoch, an integer N every N training batches. With `save_best_only`, a file is written
    only when `monitor` beats the best value so far (or `initial_value_threshold`). Files
    are written to a temporary name and renamed, so a kill never leaves a torn checkpoint.
    """

    def __init__(self, filepath: PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: str | int = "epoch",
                 initial_value_threshold: float | None = None) -> None:
        super().__init__()
        owner = type(self).__name__
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"{owner}: 'filepath' must be a path, got {describe(filepath)}")
        self.filepath = os.fspath(filepath)
        self.monitor = mon.check_monitor(owner, monitor)
        self.verbose = verbose
        self.save_best_only = mon.check_flag(owner, "save_best_only", save_best_only)
        self.save_weights_only = mon.check_flag(owner, "save_weights_only", save_weights_only)
        self.mode = mode
        self._mode = mon.resolve_mode(owner, monitor, mode)
        self.save_freq = mon.check_save_freq(owner, save_freq)
        if initial_value_threshold is not None:
            initial_value_threshold = float(check_number(owner, "initial_value_threshold",
                                                         initial_value_threshold))
        self.initial_value_threshold = initial_value_threshold
        # Like Keras, the best value persists across fits: a reused checkpoint callback does
        # not overwrite a better file with a worse model.
        self.best: float = (initial_value_threshold if initial_value_threshold is not None
                     else mon.worst(self._mode))
        if self.save_weights_only and not self.filepath.endswith(WEIGHTS_SUFFIX):
            raise ValueError(f"{owner}: with save_weights_only=True, 'filepath' must end in "
                             f"'{WEIGHTS_SUFFIX}', got {self.filepath!r}")
        if not self.save_weights_only and not self.filepath.endswith(MODEL_SUFFIX):
            hint = (f" (or pass save_weights_only=True for a '{WEIGHTS_SUFFIX}' file)"
                    if self.filepath.endswith(WEIGHTS_SUFFIX) else "")
            raise ValueError(f"{owner}: 'filepath' must end in '{MODEL_SUFFIX}' (the ferrax "
                             f"model format), got {self.filepath!r}{hint}")
        # fit steps one batch at a time only when saving every N batches.
        self._batch_hooks = frozenset({"on_train_batch_end"} if isinstance(self.save_freq, int)
                                      else ())
        self._current_epoch = 0
        self._batches = mon.BatchCounter(self.save_freq)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._current_epoch = epoch
        self._batches.new_epoch()

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self._batches.due(batch):
            self._save(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _file_path(self, epoch: int, batch: int | None, logs: Logs | None) -> str:
        fields = dict(logs or {})
        fields["epoch"] = epoch + 1
        if batch is not None and "batch" not in fields:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as e:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". '
                           f"Reason: no value for {e} in the logs ({', '.join(fields)})") from None

    def _should_save(self, epoch: int, logs: Logs | None, path: str) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: saving model to {path}")
            return True
        current = (logs or {}).get(self.monitor)
        if current is None:
            mon.monitor_value("ModelCheckpoint (save_best_only)", self.monitor, logs, 4)
            return True  # as Keras: without the value, save rather than lose the model
        current = float(current)
        best = f"{self.best:.5f}"
        if mon.improves(self._mode, current, self.best):
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
            return True
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False

    def _save(self, epoch: int, batch: int | None, logs: Logs | None) -> None:
        path = self._file_path(epoch, batch, logs)
        if not self._should_save(epoch, logs, path):
            return
        if os.path.isdir(path):
            raise OSError(f"ModelCheckpoint: the file path {path!r} is an existing "
                          f"directory; give a file name")
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        # model.save / save_weights write a temporary file beside `path` and rename it.
        if self.save_weights_only:
            self.model.save_weights(path, overwrite=True)
        else:
            self.model.save(path, overwrite=True)
