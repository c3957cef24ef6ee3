"""CSVLogger: one CSV row per epoch."""

from __future__ import annotations

import contextlib
import csv
import os
from typing import IO, Any

import numpy as np

from ferrax._serial import describe
from ferrax._typing import Logs, PathLike
from ferrax.callbacks import _monitor as mon
from ferrax.callbacks.base import Callback


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return f'"[{", ".join(map(str, value))}]"'
    return value


class CSVLogger(Callback):
    """Write `epoch` (from 0) and every log value of each epoch to a CSV file, as Keras does:
    a header of the sorted log names, then one row per epoch, flushed as it is written.
    With `append=True` an existing file is continued (its header is not repeated)."""

    def __init__(self, filename: PathLike, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"CSVLogger: 'filename' must be a path, got {describe(filename)}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: 'separator' must be a single character, got "
                             f"{describe(separator)}")
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = mon.check_flag("CSVLogger", "append", append)
        self.keys: list[str] | None = None
        self.writer: csv.DictWriter[str] | None = None
        self.csv_file: IO[str] | None = None
        self.append_header = True

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._close()
        self.append_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8") as f:
                self.append_header = not f.readline()
        directory = os.path.dirname(os.path.abspath(self.filename))
        os.makedirs(directory, exist_ok=True)
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="",  # noqa: SIM115
                             encoding="utf-8")
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
        keys = self.keys
        csv_file = self.csv_file
        assert csv_file is not None  # opened by on_train_begin
        if self.writer is None:
            sep = self.sep

            class Dialect(csv.excel):
                delimiter = sep

            self.writer = csv.DictWriter(csv_file, fieldnames=["epoch"] + keys,
                                         dialect=Dialect, extrasaction="ignore")
            if self.append_header:
                self.writer.writeheader()
        row: dict[str, Any] = {"epoch": epoch}
        row.update((k, _cell(logs.get(k, "NA"))) for k in keys)
        self.writer.writerow(row)
        csv_file.flush()

    def on_train_end(self, logs: Logs | None = None) -> None:
        self._close()

    def _close(self) -> None:
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = None
        self.writer = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._close()
