"""Random tensors (`keras.random`), drawn by the engine's counter-based generator
(the one initializers and dropout use), so a seed gives the same numbers on every
machine and thread count. `seed` is an int (the same draw every call), None (the
next draw of the global stream, which `utils.set_random_seed` restarts) or a
`SeedGenerator` (its next draw)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ferrax._serial import describe
from ferrax.tensor import Tensor

_MIX = 0x9E3779B97F4A7C15


class SeedGenerator:
    """A stream of seeds for the random functions: each draw gets the next one.

    Args:
        seed: Where the stream starts (drawn from the global stream when None).

    Example:

    >>> gen = ferrax.random.SeedGenerator(42)
    >>> a = ferrax.random.normal((2,), seed=gen)
    >>> b = ferrax.random.normal((2,), seed=gen)   # different from a, same every run
    """

    def __init__(self, seed: int | None = None, name: str | None = None, **kwargs: Any) -> None:
        from ferrax.utils import _next_seed

        self.name = name or "seed_generator"
        self._start = _next_seed() if seed is None else _check_seed(seed)
        self._count = 0

    def next(self, ordered: bool = True) -> int:
        """The next seed of the stream."""
        self._count += 1
        return _mix(self._start, self._count)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self._start, "name": self.name}


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, a SeedGenerator or None, got "
                         f"{describe(seed)}")
    return int(seed)


def _mix(seed: int, count: int) -> int:
    x = (seed * _MIX + count) % 2**64
    x ^= x >> 31
    return (x * 0xBF58476D1CE4E5B9) % 2**64


def _seed_of(seed: Any) -> int:
    from ferrax.utils import _next_seed

    if seed is None:
        return _next_seed()
    if isinstance(seed, SeedGenerator):
        return seed.next()
    return _mix(_check_seed(seed), 0)


def _shape(fn: str, shape: Any) -> list[int]:
    try:
        dims = [int(d) for d in (shape if isinstance(shape, Sequence) else (shape,))]
    except (TypeError, ValueError):
        dims = [-1]
    if any(d < 0 for d in dims):
        raise ValueError(f"random.{fn}: shape must be non-negative integers, got "
                         f"{describe(shape)}")
    return dims


def _draw(spec: dict[str, Any], fn: str, shape: Any, seed: Any) -> np.ndarray:
    from ferrax import _core

    dims = _shape(fn, shape)
    return np.asarray(_core.initializer_sample(json.dumps(spec), dims, _seed_of(seed)))


def _in_graph(shape: Any) -> bool:
    """Whether a draw is a graph node: in a traced call, or for a shape whose batch
    axis is unknown (`ops.shape(x)[0]` of a symbolic tensor)."""
    from ferrax.ops import _dispatch

    dims = shape if isinstance(shape, Sequence) else (shape,)
    return _dispatch.tracing() or any(d is None for d in dims)


def _symbolic_draw(fn: str, config: dict[str, Any], shape: Any, seed: Any) -> Any:
    """A graph node that draws anew at every batch (both in training and inference, as
    Keras's random ops in a call do)."""
    from ferrax.ops._nodes import _RandomLayer

    dims = list(shape if isinstance(shape, Sequence) else (shape,))
    batched = bool(dims) and dims[0] is None
    rest = dims[1:] if batched else dims
    if any(d is None for d in rest):
        raise ValueError(f"random.{fn}: only the first (batch) axis of the shape may be "
                         f"unknown, got {describe(shape)}")
    fixed = _shape(fn, rest)
    return _RandomLayer(config, tuple(fixed), batched, _seed_of(seed) % 2**63)._symbolic()


def _random(fn: str, initializer: str, params: dict[str, float], shape: Any, seed: Any,
            dtype: Any) -> Any:
    """Draw `fn` (its distribution's name) with `params`: a graph node in traced code,
    else now, by the initializer of that distribution."""
    if _in_graph(shape):
        return _symbolic_draw(fn, {"distribution": fn, **params}, shape, seed)
    return _typed(fn, _draw({"name": initializer, **params}, fn, shape, seed), dtype)


def _typed(fn: str, value: np.ndarray, dtype: Any) -> Tensor:
    if dtype is not None and np.dtype(dtype) != np.float32:
        if np.dtype(dtype).kind != "f":
            raise ValueError(f"random.{fn}: dtype must be a float type, got {dtype}")
        value = value.astype(dtype)
    return Tensor(value)


def normal(shape: Any, mean: float = 0.0, stddev: float = 1.0, dtype: Any = None,
           seed: Any = None) -> Tensor:
    """Normally distributed values.

    Args:
        shape: The result's shape.
        mean: Their mean.
        stddev: Their standard deviation.
        dtype: A float type (float32 by default).
        seed: An int, a SeedGenerator or None.

    Example:

    >>> noise = ferrax.random.normal((32, 10), stddev=0.1, seed=1)
    """
    return _random("normal", "random_normal", {"mean": float(mean), "stddev": float(stddev)},
                   shape, seed, dtype)


def uniform(shape: Any, minval: float = 0.0, maxval: float = 1.0, dtype: Any = None,
            seed: Any = None) -> Tensor:
    """Values drawn uniformly from [minval, maxval).

    Args:
        shape: The result's shape.
        minval: The lower bound (included).
        maxval: The upper bound (excluded).
        dtype: A float type (float32 by default).
        seed: An int, a SeedGenerator or None.

    Example:

    >>> u = ferrax.random.uniform((4,), minval=-1.0, maxval=1.0, seed=2)
    """
    return _random("uniform", "random_uniform",
                   {"minval": float(minval), "maxval": float(maxval)}, shape, seed, dtype)


def truncated_normal(shape: Any, mean: float = 0.0, stddev: float = 1.0, dtype: Any = None,
                     seed: Any = None) -> Tensor:
    """Normal values redrawn until within two standard deviations of the mean.

    Args:
        shape: The result's shape.
        mean: The mean.
        stddev: The standard deviation before truncation.
        dtype: A float type (float32 by default).
        seed: An int, a SeedGenerator or None.

    Example:

    >>> w = ferrax.random.truncated_normal((784, 128), stddev=0.05, seed=3)
    """
    return _random("truncated_normal", "truncated_normal",
                   {"mean": float(mean), "stddev": float(stddev)}, shape, seed, dtype)


def randint(shape: Any, minval: int, maxval: int, dtype: Any = "int32",
            seed: Any = None) -> Tensor:
    """Integers drawn uniformly from [minval, maxval).

    Args:
        shape: The result's shape.
        minval: The lowest value.
        maxval: One past the highest value.
        dtype: An integer type.
        seed: An int, a SeedGenerator or None.

    Example:

    >>> labels = ferrax.random.randint((8,), 0, 10, seed=4)   # ids in 0..9
    """
    lo, hi = int(minval), int(maxval)
    if hi <= lo:
        raise ValueError(f"random.randint: maxval ({hi}) must be above minval ({lo})")
    u = _draw({"name": "random_uniform", "minval": 0.0, "maxval": 1.0}, "randint", shape,
              seed).astype(np.float64)
    values = np.minimum(lo + np.floor(u * (hi - lo)), hi - 1)
    return Tensor(values.astype(dtype))


def dropout(inputs: Any, rate: float, noise_shape: Any = None, seed: Any = None) -> Any:
    """`inputs` with each entry zeroed with probability `rate`, the rest scaled by
    1 / (1 - rate); differentiable (a GradientTape records it).

    Args:
        inputs: A tensor or an array.
        rate: The probability of dropping an entry, in [0, 1).
        noise_shape: The shape of the mask (broadcast against inputs), e.g. one per
            channel; the inputs' shape by default.
        seed: An int, a SeedGenerator or None.

    Example:

    >>> h = ferrax.random.dropout(np.ones((2, 4)), rate=0.5, seed=5)   # 0s and 2s
    """
    from ferrax import ops

    if not 0 <= rate < 1:
        raise ValueError(f"random.dropout: rate must be in [0, 1), got {rate}")
    shape = noise_shape if noise_shape is not None else ops.shape(inputs)
    draw = uniform(shape, seed=seed)
    if not isinstance(draw, Tensor):  # a graph node: the mask made of ops
        keep = ops.cast(ops.greater_equal(draw, float(rate)), "float32")
        return ops.multiply(inputs, ops.multiply(keep, 1.0 / (1.0 - rate)))
    keep = draw.numpy() >= rate
    return ops.multiply(inputs, (keep / (1.0 - rate)).astype(np.float32))


def shuffle(x: Any, axis: int = 0, seed: Any = None) -> Any:
    """`x` with its entries along `axis` in a random order.

    Args:
        x: A tensor or an array.
        axis: The axis shuffled.
        seed: An int, a SeedGenerator or None.

    Example:

    >>> ferrax.random.shuffle(np.arange(5.0), seed=6)   # the 5 values, reordered
    """
    from ferrax import ops

    n = ops.shape(x)[axis]
    order = np.argsort(uniform((n,), seed=seed).numpy(), kind="stable").astype(np.int32)
    return ops.take(x, order, axis=axis)
