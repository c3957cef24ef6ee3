"""LambdaCallback: a callback made of plain functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ferrax._serial import describe
from ferrax._typing import Logs
from ferrax.callbacks.base import Callback

_EPOCH_HOOKS = ("on_epoch_begin", "on_epoch_end")
_LOGS_HOOKS = ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
               "on_predict_begin", "on_predict_end")
_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
                "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end")
# Keras 2 names still found in scripts.
_ALIASES = {"on_batch_begin": "on_train_batch_begin", "on_batch_end": "on_train_batch_end"}


class LambdaCallback(Callback):
    """A callback whose hooks are the given functions, called as Keras calls them:
    `on_epoch_begin(epoch, logs)`, `on_epoch_end(epoch, logs)`, `on_train_begin(logs)`,
    `on_train_end(logs)`, `on_train_batch_begin(batch, logs=logs)`,
    `on_train_batch_end(batch, logs=logs)`; any other hook by keyword (e.g.
    `on_test_end=fn`). `logs` is always a dict."""

    def __init__(self, on_epoch_begin: Callable[[int, Logs], Any] | None = None,
                 on_epoch_end: Callable[[int, Logs], Any] | None = None,
                 on_train_begin: Callable[[Logs], Any] | None = None,
                 on_train_end: Callable[[Logs], Any] | None = None,
                 on_train_batch_begin: Callable[..., Any] | None = None,
                 on_train_batch_end: Callable[..., Any] | None = None,
                 **kwargs: Callable[..., Any] | None) -> None:
        super().__init__()
        given: dict[str, Callable[..., Any] | None] = dict(
            on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
            on_train_begin=on_train_begin, on_train_end=on_train_end,
            on_train_batch_begin=on_train_batch_begin, on_train_batch_end=on_train_batch_end)
        for name, fn in kwargs.items():
            hook = _ALIASES.get(name, name)
            if hook not in _EPOCH_HOOKS + _LOGS_HOOKS + _BATCH_HOOKS:
                raise TypeError(f"LambdaCallback: unexpected argument {name!r}; expected "
                                f"callback hooks such as on_epoch_end or on_test_end")
            if given.get(hook) is not None and fn is not None:
                raise TypeError(f"LambdaCallback: {name!r} and {hook!r} name the same hook")
            if fn is not None:
                given[hook] = fn
        for name, fn in given.items():
            if fn is not None and not callable(fn):
                raise TypeError(f"LambdaCallback: {name!r} must be a function, got "
                                f"{describe(fn)}")
        self._fns = {k: v for k, v in given.items() if v is not None}
        # fit/evaluate/predict step one batch at a time only for the batch hooks given.
        self._batch_hooks = frozenset(h for h in _BATCH_HOOKS if h in self._fns)

    def _call(self, hook: str, *args: Any, logs: Logs | None = None,
              logs_keyword: bool = False) -> None:
        fn = self._fns.get(hook)
        if fn is None:
            return
        logs = {} if logs is None else logs
        if logs_keyword:
            fn(*args, logs=logs)
        else:
            fn(*args, logs)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._call("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._call("on_epoch_end", epoch, logs=logs)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._call("on_train_begin", logs=logs)

    def on_train_end(self, logs: Logs | None = None) -> None:
        self._call("on_train_end", logs=logs)

    def on_test_begin(self, logs: Logs | None = None) -> None:
        self._call("on_test_begin", logs=logs)

    def on_test_end(self, logs: Logs | None = None) -> None:
        self._call("on_test_end", logs=logs)

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        self._call("on_predict_begin", logs=logs)

    def on_predict_end(self, logs: Logs | None = None) -> None:
        self._call("on_predict_end", logs=logs)

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self._call("on_train_batch_begin", batch, logs=logs, logs_keyword=True)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._call("on_train_batch_end", batch, logs=logs, logs_keyword=True)

    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self._call("on_test_batch_begin", batch, logs=logs, logs_keyword=True)

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._call("on_test_batch_end", batch, logs=logs, logs_keyword=True)

    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self._call("on_predict_batch_begin", batch, logs=logs, logs_keyword=True)

    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._call("on_predict_batch_end", batch, logs=logs, logs_keyword=True)
