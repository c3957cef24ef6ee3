"""The graph nodes of traced code: an op call (`_OpLayer`), a weight made by
`add_weight` (`_VariableLayer`, behind a `LayerVariable`) and a constant
(`_ConstantLayer`). None of them is a layer a user sees in `model.layers`."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from ferrax._operators import TensorOperators
from ferrax._typing import Config, Float32Array
from ferrax.layers.base import Layer, at_probe_lengths, unique_name, unknown_where_they_differ
from ferrax.symbolic import KerasTensor, Node


class _GraphNode(Layer):
    """Internal: a node of a traced graph, never listed among a model's layers."""

    _internal = True


class _OpLayer(_GraphNode):
    """One call of a `ferrax.ops` function on symbolic tensors."""

    def __init__(self, op: str, attrs: Config, name: str | None = None,
                 dtype: str | None = None) -> None:
        super().__init__(name=name or unique_name(op))
        self.op, self.attrs = op, attrs
        # the result's type where it is not float32 (bool comparisons, int32 ids)
        self.result_dtype = dtype

    def get_config(self) -> Config:
        config: Config = {"name": self.name, "op": self.op, "attrs": self.attrs}
        if self.result_dtype is not None:
            config["dtype"] = self.result_dtype
        return config

    def _core_spec(self) -> Config:
        return {"class_name": "Op", "config": {"name": self.name, "trainable": True,
                                               "op": self.op, "attrs": self.attrs}}

    def _record(self, tensors: list[KerasTensor]) -> KerasTensor:
        """The node on `tensors` and its output, shaped by the engine's shape rule
        (an axis of unknown length at two lengths, as for layers)."""
        from ferrax import _core

        attrs = json.dumps(self.attrs)
        runs = at_probe_lengths(
            [_sample_dims(t) for t in tensors],
            lambda shapes: _core.op_shape(self.op, attrs, [
                (s, t.batched) for s, t in zip(shapes, tensors)]))
        (shape, batched) = runs[0]
        dims: list[int | None] = list(shape)
        if len(runs) > 1:
            other = runs[1][0]
            if len(other) != len(dims):
                raise ValueError(f"{self.op}: the result's rank depends on the length of an "
                                 f"axis of unknown length")
            dims = unknown_where_they_differ(shape, other)
        batch = next((t.shape[0] for t in tensors if t.batched), None)
        full = (batch, *dims) if batched else tuple(dims)
        out = KerasTensor(full, self.result_dtype or "float32", batched=batched)
        Node(self, tensors, [out], as_list=True)
        return out


class _SourceNode(_GraphNode):
    """A node that reads nothing: its value is a weight or a constant."""

    _is_source = True
    _full_shape: tuple[int, ...] = ()

    def _symbolic(self) -> KerasTensor:
        """The one tensor every traced call reads this value through."""
        if not self._inbound_nodes:
            t = KerasTensor(self._full_shape, "float32", batched=False)
            Node(self, [], [t], as_list=False)
        return self._inbound_nodes[0].output_tensors[0]


class _ConstantLayer(_SourceNode):
    """An array or a number used in traced code."""

    def __init__(self, value: np.ndarray) -> None:
        super().__init__(name=unique_name("constant"))
        self.value = np.ascontiguousarray(value, dtype=np.float32)
        self._full_shape = tuple(self.value.shape)

    def _core_spec(self) -> Config:
        return {"class_name": "Constant",
                "config": {"name": self.name, "trainable": False,
                           "shape": list(self.value.shape),
                           "value": [float(v) for v in self.value.ravel()]}}


class _RandomLayer(_SourceNode):
    """Values drawn anew at every batch (`ferrax.random.normal` and friends in traced
    code, such as a VAE's sampling layer): one row of draws per sample when batched."""

    def __init__(self, config: Config, shape: tuple[int, ...], batched: bool,
                 seed: int) -> None:
        super().__init__(name=unique_name("random"))
        self.config = {**config, "shape": list(shape), "batched": batched, "seed": seed}
        self._batched = batched
        self._full_shape = tuple(shape)

    def _core_spec(self) -> Config:
        return {"class_name": "Random",
                "config": {"name": self.name, "trainable": False, **self.config}}

    def _symbolic(self) -> KerasTensor:
        if not self._inbound_nodes:
            full: tuple[int | None, ...] = ((None,) if self._batched else ()) + \
                self._full_shape
            t = KerasTensor(full, "float32", batched=self._batched)
            Node(self, [], [t], as_list=False)
        return self._inbound_nodes[0].output_tensors[0]


class _TargetsLayer(_SourceNode):
    """The targets of a model's output, as a graph value (y_true of a loss function)."""

    def __init__(self, shape: tuple[int, ...], head: int = 0) -> None:
        super().__init__(name=unique_name("targets"))
        self.shape, self.head = tuple(shape), head

    def _core_spec(self) -> Config:
        return {"class_name": "Targets",
                "config": {"name": self.name, "trainable": False, "head": self.head,
                           "shape": list(self.shape)}}


class _VariableLayer(_SourceNode):
    """Holds one `add_weight` weight in the engine of the model that last ran it."""

    def __init__(self, variable: LayerVariable, initializer: Any, regularizer: Any,
                 initial: Float32Array) -> None:
        super().__init__(name=unique_name("variable"))
        self.variable = variable
        self._full_shape = variable.shape
        self.initializer, self.regularizer = initializer, regularizer
        # the value drawn at add_weight, until a model's engine holds it
        self._pending_weights: list[Float32Array] | None = [initial]

    def _core_spec(self) -> Config:
        return {"class_name": "Variable",
                "config": {"name": self.name, "trainable": self.trainable,
                           "shape": list(self._full_shape), "initializer": "zeros",
                           "regularizer": self.regularizer,
                           "trainable_weight": self.variable._trainable}}

    def _weight_path(self, index: int, name: str) -> str:
        return self.variable.path


class LayerVariable(TensorOperators):
    """A weight made by `Layer.add_weight`: usable in `call` with `ferrax.ops` and
    Python operators, readable with `numpy()`, writable with `assign()`.

    Args:
        shape: The weight's shape.
        initializer: An initializer name, config or object.
        regularizer: A regularizer (or None).
        trainable: Whether the optimizer updates it.
        name: Its name (unique within the layer).
        owner: The name of the layer it belongs to (its path's prefix).
    """

    def __init__(self, shape: tuple[int, ...], initializer: Any, regularizer: Any,
                 trainable: bool, name: str, owner: str) -> None:
        from ferrax import _core
        from ferrax.utils import _next_seed

        self.shape, self.name, self._trainable = tuple(shape), name, bool(trainable)
        self.dtype = "float32"
        self.path = f"{owner}/{name}"
        initial = _core.initializer_sample(json.dumps(initializer), list(self.shape),
                                           _next_seed())
        self._holder = _VariableLayer(self, initializer, regularizer, initial)

    @property
    def _tape_key(self) -> tuple[str, int, int]:
        """What a tape and an optimizer know it by: its holder's only weight, the
        same in every model that runs the layer (see variables.variable_key)."""
        return ("weight", id(self._holder), 0)

    def numpy(self) -> Float32Array:
        holder = self._holder
        if holder.built:
            return holder.get_weights()[0]
        assert holder._pending_weights is not None
        return holder._pending_weights[0].copy()

    def assign(self, value: npt.ArrayLike) -> None:
        array = np.asarray(value, dtype=np.float32)
        if array.shape != self.shape:
            raise ValueError(f"Variable '{self.path}': expected shape {self.shape}, got "
                             f"{array.shape}")
        if self._holder.built:
            self._holder.set_weights([array])
        else:
            self._holder._pending_weights = [array.copy()]

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None
                  ) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    @property
    def trainable(self) -> bool:
        """Whether fit trains it: made trainable, and its layer not frozen."""
        return self._trainable and self._holder.trainable

    @property
    def value(self) -> Float32Array:
        return self.numpy()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<Variable path={self.path}, shape={self.shape}, dtype=float32>"


def _sample_dims(t: KerasTensor) -> tuple[int | None, ...]:
    """A tensor's shape as the engine sees it: without the batch axis when batched."""
    return tuple(t.shape[1:]) if t.batched else tuple(t.shape)
