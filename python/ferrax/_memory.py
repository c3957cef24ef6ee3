"""The engine's memory limit: the machine's physical memory, set at import.

Every weight, batch buffer and file tensor is sized against it before it is
allocated, so that a model too large for the machine is a ValueError naming the
layer, the shape and the bytes instead of an aborted process. The environment
variable ``FERRAX_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix: ``"8G"``) sets
another limit; ``0`` leaves only what the address space allows.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import os
import sys
from collections.abc import Iterator

from ferrax import _core

_SUFFIXES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def physical_memory() -> int | None:
    """The machine's physical memory in bytes, or None when it cannot be read."""
    try:
        if sys.platform == "win32":
            return _windows_physical_memory()
        pages = os.sysconf("SC_PHYS_PAGES")
        page = os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and page > 0:
            return int(pages) * int(page)
    except (ValueError, OSError, AttributeError):
        pass
    return None


def _windows_physical_memory() -> int | None:
    class MemoryStatus(ctypes.Structure):
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return int(status.ullTotalPhys)
    return None


def parse_limit(text: str) -> int:
    """Bytes from ``"1073741824"``, ``"512M"`` or ``"8G"``; ValueError otherwise."""
    value = text.strip().upper().removesuffix("B")
    scale = 1
    if value and value[-1] in _SUFFIXES:
        scale = _SUFFIXES[value[-1]]
        value = value[:-1]
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0 or number * scale >= 2**63:
        raise ValueError(
            f"FERRAX_MEMORY_LIMIT must be a number of bytes, optionally with a K, M, G or "
            f"T suffix (such as 8G), got {text!r}"
        )
    return int(number * scale)


def configure() -> None:
    """Sets the engine's limit from FERRAX_MEMORY_LIMIT, else the physical memory."""
    given = os.environ.get("FERRAX_MEMORY_LIMIT")
    if given is not None:
        _core.set_memory_limit(parse_limit(given))
        return
    memory = physical_memory()
    if memory:
        _core.set_memory_limit(memory)


# Bytes of weight values the model being built may have: while a file is loaded,
# what its tensors hold (a hostile header cannot make a small file allocate more).
_weight_budget: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "ferrax_weight_budget", default=None)


def weight_budget() -> int | None:
    """The bytes of weights models built now may hold, or None for no budget."""
    return _weight_budget.get()


@contextlib.contextmanager
def weights_from_file(nbytes: int) -> Iterator[None]:
    """Builds inside allow at most `nbytes` of weight values (a file's tensors)."""
    token = _weight_budget.set(nbytes)
    try:
        yield
    finally:
        _weight_budget.reset(token)
