"""Progress display for fit, evaluate and predict."""

import sys
import time

from ferrax.callbacks.base import Callback


class ProgbarLogger(Callback):
    """Keras-style progress: a redrawn bar on a terminal, one line per epoch otherwise."""

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        self.verbose = verbose
        self.stream = stream
        self._bar = None

    def _out(self):
        return self.stream or sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self.params.get("epochs", 1)
        if self.verbose:
            print(f"Epoch {epoch + 1}/{epochs}", file=self._out(), flush=True)
        self._bar = Progbar(self.params.get("steps"), verbose=self.verbose, stream=self._out())

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None:
            self._bar.update(batch + 1, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self._bar is not None:
            self._bar.finish(logs)


class Progbar:
    """Progress of one epoch. verbose=1: bar redrawn at most every 0.1 s on a terminal,
    a single summary line when not a terminal; verbose=2: the summary line only."""

    WIDTH = 20

    def __init__(self, target, verbose=1, stream=None, interval=0.1):
        self.target, self.verbose, self.interval = target, verbose, interval
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._current = 0
        isatty = getattr(self.stream, "isatty", None)
        self.interactive = bool(isatty and isatty()) and verbose == 1

    @staticmethod
    def _format_logs(logs):
        return "".join(f" - {k}: {v:.4f}" for k, v in (logs or {}).items()
                       if isinstance(v, (int, float)))

    def _line(self, current, logs, done):
        elapsed = time.perf_counter() - self.start
        target = self.target or current
        per_step = elapsed / max(current, 1)
        filled = int(self.WIDTH * current / max(target, 1))
        bar = "━" * filled + "─" * (self.WIDTH - filled)
        timing = (f"{elapsed:.0f}s {per_step * 1e3:.0f}ms/step" if done
                  else f"ETA: {per_step * (target - current):.0f}s")
        return f"{current}/{target} {bar} {timing}{self._format_logs(logs)}"

    def update(self, current, logs=None):
        self._current = current
        if not self.interactive:
            return
        now = time.perf_counter()
        if now - self._last_draw >= self.interval:
            self._last_draw = now
            self.stream.write("\r" + self._line(current, logs, False) + "\x1b[K")
            self.stream.flush()

    def finish(self, logs=None):
        if not self.verbose:
            return
        line = self._line(self._current or self.target or 0, logs, True)
        self.stream.write(("\r" + line + "\x1b[K\n") if self.interactive else line + "\n")
        self.stream.flush()
