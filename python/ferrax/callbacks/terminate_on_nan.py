"""TerminateOnNaN: stop training when the loss becomes NaN or infinite."""

from __future__ import annotations

import math

from ferrax._typing import Logs
from ferrax.callbacks import _monitor as mon
from ferrax.callbacks.base import Callback


class TerminateOnNaN(Callback):
    """Stop training as soon as the training loss is NaN or infinite.

    By default it sets `model.stop_training` (training ends normally, `on_train_end` runs);
    with `raise_error=True` it raises RuntimeError instead, so other callbacks' end-of-training
    clean-up (such as BackupAndRestore deleting its backup) does not run.
    """

    # Batch hooks that need fit to step one batch at a time: none. It checks the loss
    # whenever fit reports progress; that loss is the epoch's mean so far, NaN or infinite
    # from the first bad batch on.
    _batch_hooks: frozenset[str] = frozenset()

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = mon.check_flag("TerminateOnNaN", "raise_error", raise_error)

    def _check(self, where: str, logs: Logs | None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if math.isnan(loss) or math.isinf(loss):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at {where}. Loss value: "
                                   f"{loss}. Terminating training immediately.")
            print(f"{where.capitalize()}: Invalid loss, terminating training")
            self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._check(f"batch {batch}", logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if not self.model.stop_training:
            self._check(f"epoch {epoch}", logs)
