"""One thread at a time trains a model: `fit`, `train_on_batch` and `apply_gradients` on
its weights claim it, and a second thread's attempt is refused with a RuntimeError
instead of changing the weights under the running fit. (Each engine call also takes
its turn on the model's lock in the engine, so `predict` or `evaluate` from another
thread waits for the call running now and then sees the weights as they are.)"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

_LOCK = threading.Lock()  # (guards every model's claim: a check and a set, rarely)

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def training(model: Any, what: str) -> Iterator[None]:
    """Claims `model` for training by this thread while the block runs; refuses if
    another thread holds it (the same thread may claim it again, as a callback's
    train_on_batch inside fit does)."""
    me = threading.get_ident()
    with _LOCK:
        held = getattr(model, "_training_claim", None)
        check_free(model, what, held)
        model._training_claim = (me, what)
    try:
        yield
    finally:
        with _LOCK:
            model._training_claim = held


def check_free(model: Any, what: str, held: Any = None) -> None:
    """Raises if a thread other than this one is training `model`."""
    if held is None:
        held = getattr(model, "_training_claim", None)
    if held is not None and held[0] != threading.get_ident():
        raise RuntimeError(
            f"Model '{model.name}' is being trained in another thread (its {held[1]} is "
            f"running); {what} here would change its weights under it. Wait for that "
            f"thread (join it), or train a copy (ferrax.models.clone_model)")


def trains(method: F) -> F:
    """Runs a Model method (fit, train_on_batch) with the model claimed for training."""
    @functools.wraps(method)
    def claimed(self: Any, *args: Any, **kwargs: Any) -> Any:
        with training(self, f"{method.__name__}()"):
            return method(self, *args, **kwargs)
    return claimed  # type: ignore[return-value]
