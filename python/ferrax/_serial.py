"""Shared helpers for Keras-style objects resolved from strings, dicts or instances."""

from __future__ import annotations

import re
from typing import Any


def snake_case(name: str) -> str:
    """Keras's rule: 'GlorotUniform' -> 'glorot_uniform', 'MaxPooling2D' -> 'max_pooling2d',
    'Conv2D' -> 'conv2d', 'L1L2' -> 'l1l2'."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def describe(value: object) -> str:
    """A short description of a bad value for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_number(owner: str, arg: str, value: Any, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False, high_open: bool = False,
                 integer: bool = False) -> Any:
    """Raise a clear error unless `value` is a number within the given bounds."""
    import numbers

    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(
        value, bool
    )
    if not ok_type:
        raise TypeError(f"{owner}: '{arg}' must be {kind}, got {describe(value)}")
    if value != value:  # NaN
        raise ValueError(f"{owner}: '{arg}' must be {kind}, got nan")
    if value in (float("inf"), float("-inf")):  # (a spec cannot carry it, nor a step use it)
        raise ValueError(f"{owner}: '{arg}' must be a finite number, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{owner}: '{arg}' must be {bound}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        bound = f"< {high}" if high_open else f"<= {high}"
        raise ValueError(f"{owner}: '{arg}' must be {bound}, got {value}")
    return value
