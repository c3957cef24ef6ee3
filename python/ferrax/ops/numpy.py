"""`ferrax.ops` functions in NumPy's style (Keras's `keras.ops.numpy`): arithmetic,
reductions, linear algebra, shapes, comparisons, creation. Each runs eagerly on
arrays or records a graph node on symbolic tensors (see `_dispatch`)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from ferrax.ops._dispatch import apply, full_shape, is_batched
from ferrax.symbolic import KerasTensor
from ferrax.tensor import Tensor

Axis = int | Sequence[int] | None


def _unary(name: str, **attrs: Any) -> Any:
    def op(x: Any) -> Any:
        return apply(name, attrs, [x])
    return op


def _binary(name: str, dtype: str | None = None) -> Any:
    def op(x1: Any, x2: Any) -> Any:
        return apply(name, {}, [x1, x2], dtype)
    return op


# --- arithmetic ------------------------------------------------------------
def add(x1: Any, x2: Any) -> Any:
    """Elementwise `x1 + x2`, with NumPy broadcasting.

    Args:
        x1: A tensor, array or number.
        x2: A tensor, array or number.

    Example:

    >>> ferrax.ops.add(np.ones((2, 3)), np.arange(3.0))
    """
    return apply("add", {}, [x1, x2])


def subtract(x1: Any, x2: Any) -> Any:
    """Elementwise `x1 - x2`, with broadcasting."""
    return apply("subtract", {}, [x1, x2])


def multiply(x1: Any, x2: Any) -> Any:
    """Elementwise `x1 * x2`, with broadcasting."""
    return apply("multiply", {}, [x1, x2])


def divide(x1: Any, x2: Any) -> Any:
    """Elementwise `x1 / x2`, with broadcasting."""
    return apply("divide", {}, [x1, x2])


true_divide = divide


def power(x1: Any, x2: Any) -> Any:
    """Elementwise `x1 ** x2`, with broadcasting."""
    return apply("power", {}, [x1, x2])


def maximum(x1: Any, x2: Any) -> Any:
    """Elementwise maximum, with broadcasting (the gradient goes to `x1` on ties)."""
    return apply("maximum", {}, [x1, x2])


def minimum(x1: Any, x2: Any) -> Any:
    """Elementwise minimum, with broadcasting (the gradient goes to `x1` on ties)."""
    return apply("minimum", {}, [x1, x2])


def negative(x: Any) -> Any:
    """Elementwise `-x`."""
    return apply("negative", {}, [x])


def square(x: Any) -> Any:
    """Elementwise `x * x`."""
    return apply("square", {}, [x])


def sqrt(x: Any) -> Any:
    """Elementwise square root."""
    return apply("sqrt", {}, [x])


def exp(x: Any) -> Any:
    """Elementwise `e ** x`."""
    return apply("exp", {}, [x])


def log(x: Any) -> Any:
    """Elementwise natural logarithm."""
    return apply("log", {}, [x])


def log1p(x: Any) -> Any:
    """Elementwise `log(1 + x)`, accurate for small `x`."""
    return apply("log1p", {}, [x])


def abs(x: Any) -> Any:  # noqa: A001 - Keras's name
    """Elementwise absolute value."""
    return apply("abs", {}, [x])


absolute = abs


def floor(x: Any) -> Any:
    """Elementwise floor (no gradient flows through it)."""
    return apply("floor", {}, [x])


def ceil(x: Any) -> Any:
    """Elementwise ceiling (no gradient flows through it)."""
    return apply("ceil", {}, [x])


def round(x: Any, decimals: int = 0) -> Any:  # noqa: A001 - Keras's name
    """Elementwise rounding to `decimals` places, halves to even (no gradient)."""
    if decimals == 0:
        return apply("round", {}, [x])
    scale = 10.0 ** decimals
    return divide(apply("round", {}, [multiply(x, scale)]), scale)


def trunc(x: Any) -> Any:
    """Elementwise rounding towards zero (no gradient flows through it)."""
    return apply("trunc", {}, [x])


def sign(x: Any) -> Any:
    """Elementwise sign: -1, 0 or 1."""
    return apply("sign", {}, [x])


def clip(x: Any, x_min: float, x_max: float) -> Any:
    """`x` limited to `[x_min, x_max]` (numbers).

    Args:
        x: The tensor.
        x_min: The lower bound.
        x_max: The upper bound.
    """
    return apply("clip", {"min": float(x_min), "max": float(x_max)}, [x])


def where(condition: Any, x1: Any = None, x2: Any = None) -> Any:
    """`x1` where `condition` is true, else `x2`, with broadcasting; given the
    condition alone, the indices where it is true (as `nonzero`).

    Args:
        condition: Booleans (or numbers: nonzero is true).
        x1: Values where true.
        x2: Values where false.

    Example:

    >>> ferrax.ops.where(np.array([1.0, -1.0]) > 0, 1.0, 0.0)   # [1., 0.]
    >>> ferrax.ops.where(np.array([0, 3, 0, 5]))                 # (indices [1, 3],)
    """
    if x1 is None and x2 is None:
        return nonzero(condition)
    if x1 is None or x2 is None:
        raise ValueError("where: give both x1 and x2, or neither (the indices where "
                         "condition is true)")
    return apply("where", {}, [condition, x1, x2])


def nonzero(x: Any) -> tuple[Tensor, ...]:
    """The indices of the nonzero entries of `x`, one int32 tensor per axis (eager
    only: how many there are depends on the values).

    Args:
        x: A tensor or an array.

    Example:

    >>> rows, cols = ferrax.ops.nonzero(np.array([[0, 2], [3, 0]]))   # [0, 1], [1, 0]
    """
    if isinstance(x, KerasTensor):
        raise ValueError(f"nonzero: the number of indices depends on the values, so it has "
                         f"no symbolic result for a tensor of shape {x.shape}; use "
                         f"where(condition, x1, x2) in a traced call, or call it eagerly")
    array = x._value if isinstance(x, Tensor) else np.asarray(x)
    return tuple(Tensor(np.ascontiguousarray(i, dtype=np.int32)) for i in np.nonzero(array))


# --- reductions --------------------------------------------------------------
def _axis(axis: Axis) -> Any:
    if axis is None:
        return None
    if isinstance(axis, (int, np.integer)):
        return int(axis)
    return [int(a) for a in axis]


def _reduce(name: str, x: Any, axis: Axis, keepdims: bool, dtype: str | None = None) -> Any:
    return apply(name, {"axis": _axis(axis), "keepdims": bool(keepdims)}, [x], dtype)


def sum(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:  # noqa: A001
    """The sum over `axis` (an int, a tuple, or None for all axes).

    Args:
        x: The tensor.
        axis: The axes to reduce; they count the batch axis, as in Keras.
        keepdims: Keep the reduced axes with length 1.

    Example:

    >>> ferrax.ops.sum(np.ones((2, 3)), axis=-1)
    """
    return _reduce("sum", x, axis, keepdims)


def mean(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
    """The mean over `axis`."""
    return _reduce("mean", x, axis, keepdims)


def max(x: Any, axis: Axis = None, keepdims: bool = False, initial: Any = None) -> Any:  # noqa: A001
    """The maximum over `axis` (the gradient is shared among ties)."""
    if initial is not None:
        raise NotImplementedError("max: 'initial' is not supported")
    return _reduce("max", x, axis, keepdims)


amax = max


def min(x: Any, axis: Axis = None, keepdims: bool = False, initial: Any = None) -> Any:  # noqa: A001
    """The minimum over `axis` (the gradient is shared among ties)."""
    if initial is not None:
        raise NotImplementedError("min: 'initial' is not supported")
    return _reduce("min", x, axis, keepdims)


amin = min


def prod(x: Any, axis: Axis = None, keepdims: bool = False, dtype: Any = None) -> Any:
    """The product over `axis`."""
    return _reduce("prod", x, axis, keepdims)


def var(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
    """The population variance over `axis`."""
    return _reduce("var", x, axis, keepdims)


def std(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
    """The population standard deviation over `axis`."""
    return _reduce("std", x, axis, keepdims)


def argmax(x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
    """The index of the largest value along `axis` (of the flattened input when None)."""
    return _reduce("argmax", x, axis, keepdims, "int32")


def argmin(x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
    """The index of the smallest value along `axis` (of the flattened input when None)."""
    return _reduce("argmin", x, axis, keepdims, "int32")


# --- linear algebra ------------------------------------------------------------
def matmul(x1: Any, x2: Any) -> Any:
    """The matrix product, as `numpy.matmul` (leading axes broadcast).

    Args:
        x1: A tensor of rank >= 1.
        x2: A tensor of rank >= 1.

    Example:

    >>> x = ferrax.Input(shape=(4,))
    >>> y = ferrax.ops.matmul(x, np.ones((4, 2)))   # shape (None, 2)
    """
    return apply("matmul", {}, [x1, x2])


def dot(x1: Any, x2: Any) -> Any:
    """`numpy.dot`: a product with a scalar, or a contraction of the last axis of `x1`
    with the second-to-last of `x2` (rank of `x2` at most 2)."""
    r1, r2 = len(full_shape(x1)), len(full_shape(x2))
    if r1 == 0 or r2 == 0:
        return multiply(x1, x2)
    if r2 > 2:
        raise NotImplementedError(f"dot: x2 of rank {r2} is not supported (use matmul or "
                                  f"einsum)")
    return matmul(x1, x2)


def einsum(subscripts: str, *operands: Any) -> Any:
    """Einstein summation over explicit subscripts such as "ij,jk->ik" or
    "bij,bjk->bik" (no ellipsis; every output letter appears in an input).

    Args:
        subscripts: The contraction, with "->" and the output's letters.
        *operands: The tensors, one per input term.
    """
    spec = subscripts.replace(" ", "")
    if "->" not in spec or "." in spec:
        raise NotImplementedError(f"einsum: '{subscripts}': give the output explicitly "
                                  f"('ij,jk->ik'); ellipses are not supported")
    lhs, out = spec.split("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: '{subscripts}' has {len(terms)} inputs, got "
                         f"{len(operands)} operands")
    for term, x in zip(terms, operands):
        if len(term) != len(full_shape(x)) or len(set(term)) != len(term):
            raise ValueError(f"einsum: term '{term}' does not match an operand of shape "
                             f"{full_shape(x)} (one distinct letter per axis)")
    # the two-operand products matmul does directly: (..., m, k) x (..., k, n)
    if len(terms) == 2:
        a, b = terms
        if (len(a) >= 2 and len(b) == len(a) and a[:-2] == b[:-2] == out[:-2]
                and a[-1] == b[-2] and out[-2:] == a[-2] + b[-1]
                and len(set(a) | set(b)) == len(a) + 1):
            return matmul(operands[0], operands[1])
        if a and b == a[-1] + out[-1] and out == a[:-1] + b[-1] and len(set(a + b)) == len(a) + 1:
            return matmul(operands[0], operands[1])
    letters = list(out) + [c for c in dict.fromkeys("".join(terms)) if c not in out]
    if any(c not in "".join(terms) for c in out):
        raise ValueError(f"einsum: '{subscripts}': an output letter appears in no input")
    product: Any = None
    for term, x in zip(terms, operands):
        order = sorted(range(len(term)), key=lambda i: letters.index(term[i]))
        if order != list(range(len(term))):
            x = transpose(x, order)
        sizes = {term[i]: full_shape(x)[order.index(i)] for i in range(len(term))}
        target = [sizes.get(c, 1) for c in letters]
        x = _reshape_full(x, target)
        product = x if product is None else multiply(product, x)
    contracted = list(range(len(out), len(letters)))
    return sum(product, axis=contracted) if contracted else product


# --- shapes --------------------------------------------------------------
def shape(x: Any) -> tuple[int | None, ...]:
    """The shape, as a tuple (None for the batch axis of a symbolic tensor)."""
    return full_shape(x)


def size(x: Any) -> int:
    """The number of elements (of a tensor of known shape)."""
    dims = full_shape(x)
    known = [d for d in dims if d is not None]
    if len(known) != len(dims):
        raise ValueError(f"size: the shape {dims} has axes of unknown length")
    return int(np.prod(known))


def ndim(x: Any) -> int:
    """The rank."""
    return len(full_shape(x))


def _reshape_full(x: Any, new_shape: Sequence[int | None]) -> Any:
    """`reshape` to a full shape whose first entry is None or -1 for a batched tensor."""
    target = [-1 if d is None else int(d) for d in new_shape]
    if is_batched(x):
        dims = full_shape(x)
        per_sample = [d for d in dims[1:] if d is not None]
        rest = target[1:]
        if len(per_sample) != len(dims) - 1:
            raise ValueError(f"reshape: the input's shape {dims} has axes of unknown "
                             f"length; only the batch axis may be unknown")
        if rest.count(-1) == 1:
            known = int(np.prod([d for d in rest if d != -1]))
            total = int(np.prod(per_sample))
            if known == 0 or total % known:
                raise ValueError(f"reshape: cannot reshape {dims} to {tuple(target)}")
            rest = [total // known if d == -1 else d for d in rest]
        target = [-1, *rest]
    return apply("reshape", {"shape": target}, [x])


def reshape(x: Any, newshape: Sequence[int | None] | int) -> Any:
    """The same values in a new shape (one axis may be -1; for a symbolic tensor the
    first axis is the batch axis: -1 or None).

    Args:
        x: The tensor.
        newshape: The new shape.
    """
    target = [newshape] if isinstance(newshape, (int, np.integer)) else list(newshape)
    if is_batched(x) and target and target[0] not in (-1, None):
        dims = full_shape(x)
        raise ValueError(f"reshape: {dims} to {tuple(target)}: the first axis of a "
                         f"symbolic tensor is the batch axis; give it as -1 or None")
    return _reshape_full(x, target)


def transpose(x: Any, axes: Sequence[int] | None = None) -> Any:
    """The axes permuted (reversed when `axes` is None)."""
    return apply("transpose", {"axes": None if axes is None else [int(a) for a in axes]}, [x])


def _norm_axis(op: str, axis: int, rank: int) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise ValueError(f"{op}: axis {axis} is out of range for rank {rank}")
    return a


def expand_dims(x: Any, axis: int) -> Any:
    """A new axis of length 1 at `axis`."""
    dims = list(full_shape(x))
    a = _norm_axis("expand_dims", axis, len(dims) + 1)
    if is_batched(x) and a == 0:
        raise ValueError("expand_dims: axis 0 is the batch axis of a symbolic tensor")
    return _reshape_full(x, dims[:a] + [1] + dims[a:])


def squeeze(x: Any, axis: Axis = None) -> Any:
    """Axes of length 1 removed (all of them, or those in `axis`)."""
    dims = list(full_shape(x))
    start = 1 if is_batched(x) else 0
    if axis is None:
        drop = {i for i in range(start, len(dims)) if dims[i] == 1}
    else:
        axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
        drop = {_norm_axis("squeeze", int(a), len(dims)) for a in axes}
        for a in drop:
            if dims[a] != 1 or a < start:
                raise ValueError(f"squeeze: axis {a} of shape {tuple(dims)} does not have "
                                 f"length 1")
    return _reshape_full(x, [d for i, d in enumerate(dims) if i not in drop])


def concatenate(xs: Sequence[Any], axis: int = 0) -> Any:
    """The tensors joined along `axis`."""
    return apply("concatenate", {"axis": int(axis)}, list(xs))


def stack(x: Sequence[Any], axis: int = 0) -> Any:
    """The tensors (of one shape) stacked along a new axis."""
    return concatenate([expand_dims(t, axis) for t in x], axis=axis)


def split(x: Any, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[Any]:
    """`x` cut along `axis` into equal sections, or at the given indices."""
    dims = full_shape(x)
    a = _norm_axis("split", axis, len(dims))
    n = dims[a]
    if n is None:
        raise ValueError(f"split: axis {axis} of shape {dims} has no known length")
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ValueError(f"split: axis {axis} of length {n} does not split into {k} "
                             f"equal sections")
        cuts = [i * (n // k) for i in range(1, k)]
    else:
        cuts = [int(i) for i in indices_or_sections]
    bounds = [0, *cuts, n]
    index: list[Any] = [slice(None)] * len(dims)
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        index[a] = slice(lo, hi)
        parts.append(_getitem(x, tuple(index)))
    return parts


def tile(x: Any, repeats: Sequence[int] | int) -> Any:
    """`x` repeated `repeats[i]` times along each axis."""
    reps = [repeats] if isinstance(repeats, (int, np.integer)) else list(repeats)
    rank = len(full_shape(x))
    if len(reps) < rank:
        reps = [1] * (rank - len(reps)) + reps
    elif len(reps) > rank:  # as NumPy: x gains leading axes of length 1
        if is_batched(x):
            raise ValueError(f"tile: {len(reps)} repeats for a symbolic tensor of rank "
                             f"{rank} would move its batch axis")
        x = _reshape_full(x, [1] * (len(reps) - rank) + list(full_shape(x)))
    return apply("tile", {"repeats": [int(r) for r in reps]}, [x])


def repeat(x: Any, repeats: int, axis: int | None = None) -> Any:
    """Each element repeated `repeats` times along `axis` (of the flattened input when
    None)."""
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    return apply("repeat", {"repeats": int(repeats), "axis": int(axis)}, [x])


def pad(x: Any, pad_width: Any, mode: str = "constant", constant_values: Any = None) -> Any:
    """`x` padded with a constant (`mode="constant"` only).

    Args:
        x: The tensor.
        pad_width: `((before, after), ...)` per axis, or one pair for all.
        mode: "constant".
        constant_values: The fill value (0 by default).
    """
    if mode != "constant":
        raise NotImplementedError(f"pad: mode '{mode}' is not supported, only 'constant'")
    rank = len(full_shape(x))
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (rank, 2))
    return apply("pad", {"pad_width": widths.tolist(),
                         "constant_values": float(constant_values or 0.0)}, [x])


def take(x: Any, indices: Any, axis: int | None = None) -> Any:
    """Elements at integer `indices` along `axis` (of the flattened input when None)."""
    ids = np.asarray(indices)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    return apply("take", {"indices": [int(i) for i in ids.ravel()],
                          "indices_shape": list(ids.shape), "axis": int(axis)}, [x])


def _getitem(x: Any, key: Any) -> Any:
    """`x[key]` with ints, slices (positive steps), `...` and None."""
    dims = list(full_shape(x))
    keys = list(key) if isinstance(key, tuple) else [key]
    if builtins.sum(k is Ellipsis for k in keys) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = builtins.sum(1 for k in keys if k is not None and k is not Ellipsis)
    if used > len(dims):
        raise IndexError(f"too many indices for a tensor of shape {tuple(dims)}")
    at = next((i for i, k in enumerate(keys) if k is Ellipsis), None)
    if at is not None:
        keys[at:at + 1] = [slice(None)] * (len(dims) - used)
    else:
        keys += [slice(None)] * (len(dims) - used)
    # Slices with negative steps are gathers (take) first; then they read all.
    for axis_keys, k in enumerate([k for k in keys if k is not None]):
        if isinstance(k, slice) and k.step is not None and k.step < 0:
            n = dims[axis_keys]
            if n is None or (is_batched(x) and axis_keys == 0):
                raise IndexError(f"a negative step on axis {axis_keys} of shape "
                                 f"{tuple(dims)} (unknown length or the batch axis)")
            x = take(x, list(range(*k.indices(n))), axis=axis_keys)
            dims = list(full_shape(x))
    keys = [slice(None) if isinstance(k, slice) and k.step is not None and k.step < 0
            else k for k in keys]
    begin: list[int] = []
    end: list[int] = []
    step: list[int] = []
    after: list[int | None] = []

    def read(lo: int, hi: int, st: int) -> None:
        begin.append(lo)
        end.append(hi)
        step.append(st)

    axis = 0
    batched = is_batched(x)
    for k in keys:
        if k is None:
            after.append(1)
            continue
        n = dims[axis]
        if batched and axis == 0:
            if k != slice(None):
                raise IndexError(f"index {k!r} on the batch axis of a symbolic tensor of "
                                 f"shape {tuple(dims)}: only ':' is allowed there")
            read(0, -1, 1)  # (-1: to the end)
            after.append(None)
        elif isinstance(k, slice):
            if n is None:
                if k != slice(None):
                    raise IndexError(f"slicing axis {axis} of unknown length (shape "
                                     f"{tuple(dims)})")
                read(0, -1, 1)
                after.append(None)
            else:
                lo, hi, st = k.indices(n)
                read(lo, builtins.max(hi, lo), st)
                after.append(len(range(lo, builtins.max(hi, lo), st)))
        elif isinstance(k, (int, np.integer)):
            if n is None:
                raise IndexError(f"indexing axis {axis} of unknown length")
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {k} is out of range for axis {axis} of length {n}")
            read(i, i + 1, 1)
        else:
            raise TypeError(f"unsupported index {k!r} (ints, slices, ... and None work)")
        axis += 1
    out = apply("slice", {"begin": begin, "end": end, "step": step}, [x])
    sliced = list(full_shape(out))
    if after != sliced:
        out = _reshape_full(out, after)
    return out


# --- comparison and logic ------------------------------------------------------
equal = _binary("equal", "bool")
not_equal = _binary("not_equal", "bool")
greater = _binary("greater", "bool")
greater_equal = _binary("greater_equal", "bool")
less = _binary("less", "bool")
less_equal = _binary("less_equal", "bool")
logical_and = _binary("logical_and", "bool")
logical_or = _binary("logical_or", "bool")


def logical_not(x: Any) -> Any:
    """Elementwise not (nonzero is true)."""
    return apply("logical_not", {}, [x], "bool")


# --- creation and casting ------------------------------------------------------
def _dtype(dtype: Any) -> np.dtype:
    return np.dtype("float32" if dtype is None else dtype)


def zeros(shape: Sequence[int] | int, dtype: Any = None) -> Tensor:
    """A tensor of zeros."""
    return Tensor(np.zeros(shape, _dtype(dtype)))


def ones(shape: Sequence[int] | int, dtype: Any = None) -> Tensor:
    """A tensor of ones."""
    return Tensor(np.ones(shape, _dtype(dtype)))


def full(shape: Sequence[int] | int, fill_value: Any, dtype: Any = None) -> Tensor:
    """A tensor filled with `fill_value`."""
    return Tensor(np.full(shape, fill_value, _dtype(dtype)))


def full_like(x: Any, fill_value: Any, dtype: Any = None) -> Any:
    """A tensor of `x`'s shape filled with `fill_value`."""
    if isinstance(x, KerasTensor):
        return apply("where", {}, [0.0, x, float(fill_value)])
    return Tensor(np.full(np.shape(x), fill_value, _dtype(dtype)))


def zeros_like(x: Any, dtype: Any = None) -> Any:
    """Zeros of `x`'s shape."""
    return full_like(x, 0.0, dtype)


def ones_like(x: Any, dtype: Any = None) -> Any:
    """Ones of `x`'s shape."""
    return full_like(x, 1.0, dtype)


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None) -> Tensor:
    """Evenly spaced values in `[start, stop)`."""
    values = np.arange(start, stop, step) if stop is not None else np.arange(start)
    return Tensor(values.astype(dtype) if dtype is not None else values)


def eye(N: int, M: int | None = None, k: int = 0, dtype: Any = None) -> Tensor:  # noqa: N803
    """An identity-like matrix: ones on diagonal `k`."""
    return Tensor(np.eye(N, M, k, dtype=_dtype(dtype)))


def identity(n: int, dtype: Any = None) -> Tensor:
    """The n×n identity matrix."""
    return eye(n, dtype=dtype)
