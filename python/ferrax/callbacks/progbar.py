"""Progress display for fit, evaluate and predict.

On a terminal with verbose=1: "Epoch 1/5" then a bar redrawn in place at most
every 0.1 s, with step count, ETA and running metrics. Anywhere else (a log
file, CI, a captured stream), and with verbose=2: exactly one line per epoch,
written when the epoch ends, so logs hold no carriage-return spam.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ferrax._typing import Logs
from ferrax.callbacks.base import Callback


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class ProgbarLogger(Callback):
    """Prints fit's progress (added by fit when verbose is 1 or 2)."""

    def __init__(self, verbose: int = 1, stream: TextIO | None = None) -> None:
        super().__init__()
        self.verbose = verbose
        self.stream = stream
        self._bar: Progbar | None = None

    def _out(self) -> TextIO:
        return self.stream or sys.stdout

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        title = f"Epoch {epoch + 1}/{self.params.get('epochs', 1)}"
        self._bar = Progbar(self.params.get("steps"), verbose=self.verbose, stream=self._out(),
                            title=title)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self._bar is not None:
            self._bar.update(batch + 1, logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self._bar is not None:
            self._bar.finish(logs)
            self._bar = None


class Progbar:
    """Progress of one pass over `target` steps."""

    WIDTH = 20

    def __init__(self, target: int | None, verbose: int = 1, stream: TextIO | None = None,
                 interval: float = 0.1, title: str | None = None) -> None:
        self.target, self.verbose, self.interval, self.title = target, verbose, interval, title
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._current = 0
        self.interactive = verbose == 1 and _isatty(self.stream)
        if self.interactive and title:
            self.stream.write(title + "\n")
            self.stream.flush()

    @staticmethod
    def _format_logs(logs: Logs | None) -> str:
        return "".join(f" - {k}: {v:.4f}" for k, v in (logs or {}).items()
                       if isinstance(v, (int, float)))

    def _line(self, current: int, logs: Logs | None, done: bool) -> str:
        elapsed = time.perf_counter() - self.start
        target = self.target or current
        per_step = elapsed / max(current, 1)
        if done:
            timing = f"{elapsed:.0f}s {_fmt_step(per_step)}"
        else:
            timing = f"ETA: {per_step * (target - current):.0f}s"
        if not self.interactive:
            return f"{current}/{target} - {timing}{self._format_logs(logs)}"
        filled = int(self.WIDTH * current / max(target, 1))
        bar = "━" * filled + "─" * (self.WIDTH - filled)
        return f"{current}/{target} {bar} {timing}{self._format_logs(logs)}"

    def update(self, current: int, logs: Logs | None = None) -> None:
        self._current = current
        if not self.interactive:
            return
        now = time.perf_counter()
        if now - self._last_draw >= self.interval:
            self._last_draw = now
            self.stream.write("\r" + self._line(current, logs, False) + "\x1b[K")
            self.stream.flush()

    def finish(self, logs: Logs | None = None) -> None:
        if not self.verbose:
            return
        line = self._line(self._current or self.target or 0, logs, True)
        if self.interactive:
            self.stream.write("\r" + line + "\x1b[K\n")
        else:
            prefix = f"{self.title} - " if self.title else ""
            self.stream.write(prefix + line + "\n")
        self.stream.flush()


def _fmt_step(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"
