"""Symbolic tensors: what `ferrax.Input` returns and what a layer called on them
returns. Each records the layer call (a `Node`) that made it, so that
`Model(inputs, outputs)` can walk the graph back from its outputs."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ferrax._operators import TensorOperators

if TYPE_CHECKING:
    from ferrax.layers.base import Layer

_TENSOR_IDS = itertools.count()


class KerasTensor(TensorOperators):
    """A symbolic tensor: the shape and dtype of a value in a model being built.

    Args:
        shape: The shape, batch axis first (`None` where unknown).
        dtype: The element type, e.g. "float32" or "int32".
        name: A name; by default "keras_tensor", "keras_tensor_1", ...
        batched: Whether the first axis is the batch axis (False for a weight or a
            constant inside traced code, and for a reduction over the batch axis).

    Example:

    >>> x = ferrax.Input(shape=(16,))
    >>> x.shape
    (None, 16)
    >>> ferrax.layers.Dense(4)(x).shape
    (None, 4)
    """

    def __init__(self, shape: tuple[int | None, ...], dtype: str = "float32",
                 name: str | None = None, batched: bool = True) -> None:
        self.shape = tuple(shape)
        self.batched = batched
        self.dtype = dtype
        self.sparse = False
        n = next(_TENSOR_IDS)
        self.name = name or ("keras_tensor" if n == 0 else f"keras_tensor_{n}")
        # (layer, index of the call among the layer's calls, index among its outputs)
        self._keras_history: tuple[Layer, int, int] | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def node(self) -> Node:
        """The layer call that made this tensor."""
        assert self._keras_history is not None, "every KerasTensor is made by a layer call"
        layer, node_index, _ = self._keras_history
        return layer._inbound_nodes[node_index]

    def __repr__(self) -> str:
        return (f"<KerasTensor shape={self.shape}, dtype={self.dtype}, sparse={self.sparse}, "
                f"name={self.name}>")

    def __bool__(self) -> bool:
        raise TypeError(f"A symbolic KerasTensor has no truth value: it stands for data that "
                        f"only exists when the model runs{_user_line()}. Python control flow "
                        f"on tensor values (if/while on a tensor) cannot be traced into the "
                        f"model's graph: express it with ops (ferrax.ops.where, "
                        f"ferrax.ops.maximum, ...), or train with a GradientTape loop")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"KerasTensor '{self.name}' is symbolic (a placeholder in a model "
                        f"graph) and cannot be converted to a NumPy array; build a "
                        f"ferrax.Model from it and call predict")


class Node:
    """One call of a layer on symbolic tensors: what went in, what came out, and
    whether the inputs came as a list (merge layers) or as one tensor."""

    def __init__(self, layer: Layer, inputs: list[KerasTensor], outputs: list[KerasTensor],
                 as_list: bool, states: int = 0) -> None:
        self.layer = layer
        self.input_tensors = inputs
        self.output_tensors = outputs
        self.as_list = as_list
        # the last `states` inputs are a recurrent layer's initial_state
        self.states = states
        # the training mode the call fixed (`training=True/False`), None to follow the model
        self.training: bool | None = None
        layer._inbound_nodes.append(self)
        index = len(layer._inbound_nodes) - 1
        for i, t in enumerate(outputs):
            t._keras_history = (layer, index, i)

    @property
    def is_input(self) -> bool:
        """Whether this is an InputLayer's node (no inputs: a model's entry)."""
        return not self.input_tensors and not self.is_source

    @property
    def is_source(self) -> bool:
        """Whether this node makes a weight or a constant of traced code (it reads
        nothing, and is no model input)."""
        return bool(getattr(self.layer, "_is_source", False))


def flatten(structure: Any) -> list[Any]:
    """The leaves of nested lists, tuples and dicts (dict values in key order as given)."""
    if not isinstance(structure, (list, tuple, dict)):
        return [structure]  # (the common case on a custom loop's per-step path)
    leaves: list[Any] = []
    _collect(structure, leaves)
    return leaves


def _collect(structure: Any, leaves: list[Any]) -> None:
    if isinstance(structure, (list, tuple)):
        for item in structure:
            _collect(item, leaves)
    elif isinstance(structure, dict):
        for item in structure.values():
            _collect(item, leaves)
    else:
        leaves.append(structure)


def pack_like(structure: Any, leaves: Iterable[Any]) -> Any:
    """`leaves` (in `flatten`'s order) put back into the nesting of `structure`."""
    return _pack(structure, iter(leaves))


def _pack(s: Any, it: Iterator[Any]) -> Any:
    # (a function of the module, not a closure: a recursive closure is a reference
    # cycle, which kept every step's gradients alive until the garbage collector ran)
    if isinstance(s, (list, tuple)):
        return type(s)(_pack(u, it) for u in s)
    if isinstance(s, dict):
        return {k: _pack(u, it) for k, u in s.items()}
    return next(it)


def any_symbolic(structure: Any) -> bool:
    """Whether a KerasTensor is among the leaves of `structure`."""
    if isinstance(structure, KerasTensor):
        return True
    if isinstance(structure, dict):
        structure = list(structure.values())
    elif not isinstance(structure, (list, tuple)):
        return False
    for item in structure:  # noqa: SIM110 (a loop, not any(): it runs on every op and call)
        if any_symbolic(item):
            return True
    return False


def _user_line() -> str:
    """' (at file:line: code)' for the innermost frame outside ferrax, if any."""
    import os
    import traceback

    here = os.path.dirname(os.path.abspath(__file__))
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not os.path.abspath(frame.filename).startswith(here):
            code = f": {frame.line.strip()}" if frame.line else ""
            return f" (at {frame.filename}:{frame.lineno}{code})"
    return ""
