"""Neural-network ops (Keras's `keras.ops.nn`): activations, softmax, one-hot,
cross-entropies and moments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ferrax.ops import numpy as np_ops
from ferrax.ops._dispatch import apply, full_shape

_EPSILON = 1e-7  # Keras's backend epsilon: probabilities are clipped to [eps, 1 - eps]


def relu(x: Any) -> Any:
    """`max(x, 0)`."""
    return apply("relu", {}, [x])


def relu6(x: Any) -> Any:
    """`min(max(x, 0), 6)`."""
    return apply("relu6", {}, [x])


def sigmoid(x: Any) -> Any:
    """`1 / (1 + exp(-x))`."""
    return apply("sigmoid", {}, [x])


def tanh(x: Any) -> Any:
    """The hyperbolic tangent."""
    return apply("tanh", {}, [x])


def softplus(x: Any) -> Any:
    """`log(1 + exp(x))`."""
    return apply("softplus", {}, [x])


def silu(x: Any) -> Any:
    """`x * sigmoid(x)` (also called swish)."""
    return apply("silu", {}, [x])


swish = silu


def gelu(x: Any, approximate: bool = True) -> Any:
    """The Gaussian error linear unit (the tanh approximation unless
    `approximate=False`)."""
    return apply("gelu", {"approximate": bool(approximate)}, [x])


def elu(x: Any, alpha: float = 1.0) -> Any:
    """`x` where positive, else `alpha * (exp(x) - 1)`."""
    return apply("elu", {"alpha": float(alpha)}, [x])


def selu(x: Any) -> Any:
    """The scaled exponential linear unit."""
    return apply("selu", {}, [x])


def leaky_relu(x: Any, negative_slope: float = 0.2) -> Any:
    """`x` where positive, else `negative_slope * x`."""
    return apply("leaky_relu", {"negative_slope": float(negative_slope)}, [x])


def softmax(x: Any, axis: int = -1) -> Any:
    """Exponentials normalised to sum to one along `axis`.

    Args:
        x: The logits.
        axis: The axis to normalise (counting the batch axis).

    Example:

    >>> ferrax.ops.softmax(np.array([[1.0, 2.0, 3.0]]))
    """
    return apply("softmax", {"axis": int(axis)}, [x])


def log_softmax(x: Any, axis: int = -1) -> Any:
    """`log(softmax(x))`, computed stably."""
    return apply("log_softmax", {"axis": int(axis)}, [x])


def one_hot(x: Any, num_classes: int, axis: int = -1, dtype: Any = None,
            sparse: bool = False) -> Any:
    """Integer ids as one-hot rows of `num_classes` (ids out of range give zeros).

    Args:
        x: The ids.
        num_classes: The number of classes.
        axis: Where the new class axis goes (the last by default).
        dtype: Not used: the result is float32.
        sparse: Not supported (must be False).
    """
    if sparse:
        raise NotImplementedError("one_hot: sparse=True is not supported")
    out = apply("one_hot", {"num_classes": int(num_classes)}, [x])
    rank = np_ops.ndim(out)
    if not -rank <= axis < rank:
        raise ValueError(f"one_hot: axis {axis} is out of range for a result of rank {rank}")
    at = axis % rank
    if at == rank - 1:
        return out
    # the class axis made last, then moved where asked
    order = list(range(rank - 1))
    order.insert(at, rank - 1)
    return np_ops.transpose(out, order)


def binary_crossentropy(target: Any, output: Any, from_logits: bool = False) -> Any:
    """Elementwise binary cross-entropy (no reduction), as Keras's
    `ops.binary_crossentropy`."""
    if from_logits:
        # max(x, 0) - x t + log(1 + exp(-|x|)): no overflow for any x
        return np_ops.add(np_ops.subtract(relu(output), np_ops.multiply(output, target)),
                          np_ops.log1p(np_ops.exp(np_ops.negative(np_ops.abs(output)))))
    p = np_ops.clip(output, _EPSILON, 1.0 - _EPSILON)
    return np_ops.negative(np_ops.add(
        np_ops.multiply(target, np_ops.log(p)),
        np_ops.multiply(np_ops.subtract(1.0, target), np_ops.log(np_ops.subtract(1.0, p)))))


def categorical_crossentropy(target: Any, output: Any, from_logits: bool = False,
                             axis: int = -1) -> Any:
    """Cross-entropy of one-hot `target` and `output` along `axis`, per sample."""
    if from_logits:
        logp = log_softmax(output, axis=axis)
    else:
        p = np_ops.divide(output, np_ops.sum(output, axis=axis, keepdims=True))
        logp = np_ops.log(np_ops.clip(p, _EPSILON, 1.0 - _EPSILON))
    return np_ops.negative(np_ops.sum(np_ops.multiply(target, logp), axis=axis))


def sparse_categorical_crossentropy(target: Any, output: Any, from_logits: bool = False,
                                    axis: int = -1) -> Any:
    """Cross-entropy of integer class ids `target` and `output`, per sample."""
    classes = full_shape(output)[axis]
    if classes is None:
        raise ValueError("sparse_categorical_crossentropy: the class axis of output has "
                         "no known length")
    if axis not in (-1, len(full_shape(output)) - 1):
        raise NotImplementedError("sparse_categorical_crossentropy: only the last axis")
    onehot = one_hot(target, int(classes))
    return categorical_crossentropy(onehot, output, from_logits=from_logits, axis=-1)


def moments(x: Any, axes: Sequence[int] | int, keepdims: bool = False,
            synchronized: bool = False) -> tuple[Any, Any]:
    """The mean and the (population) variance over `axes`."""
    return (np_ops.mean(x, axis=axes, keepdims=keepdims),
            np_ops.var(x, axis=axes, keepdims=keepdims))
