"""Sequential: a plain stack of layers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ferrax._registry import get_registered_name, layer_class
from ferrax._serial import describe
from ferrax._typing import Config
from ferrax.layers.base import Layer
from ferrax.layers.core import InputLayer
from ferrax.models._graph import EngineGraph, GraphBuilder
from ferrax.models.model import Model
from ferrax.symbolic import KerasTensor

if TYPE_CHECKING:
    from typing_extensions import Self


class Sequential(Model):
    """``Sequential([Dense(128, activation="relu", input_shape=(784,)), Dense(10)])``."""

    def __init__(self, layers: Iterable[Layer] | None = None, name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        self._input_layer: InputLayer | None = None
        self._layers: list[Layer | Model] = []
        for layer in layers or []:
            self.add(layer)

    @classmethod
    def _name_prefix(cls) -> str:
        return "sequential"

    def add(self, layer: Layer | Model) -> None:
        """Append a layer (an InputLayer may only come first)."""
        if isinstance(layer, KerasTensor):  # Sequential([ferrax.Input(shape), ...])
            layer = layer.node.layer
        if not isinstance(layer, (Layer, Model)):
            raise TypeError(f"Sequential.add expects a ferrax layer or model, got "
                            f"{describe(layer)}")
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError(f"Sequential '{self.name}': an Input/InputLayer must be the "
                                 f"first layer")
            self._input_layer = layer
        else:
            if any(existing is layer for existing in self._layers):
                raise ValueError(f"Sequential '{self.name}': layer '{layer.name}' was added "
                                 f"twice")
            if any(existing.name == layer.name for existing in self._layers):
                raise ValueError(f"Sequential '{self.name}': all layer names must be unique, "
                                 f"'{layer.name}' is already used")
            self._layers.append(layer)
        self._invalidate()

    def pop(self) -> Layer | Model:
        """Remove and return the last layer."""
        if not self._layers:
            raise ValueError(f"Sequential '{self.name}' has no layers to pop")
        layer = self._layers.pop()
        if isinstance(layer, Layer) and layer._model is self:
            layer._model = None
        self._invalidate()
        return layer

    def _invalidate(self) -> None:
        # The stack changed: the engine is rebuilt (eagerly when the input shape is
        # known), and layers whose weights it held keep them (a trained model wrapped in
        # a Sequential, a layer added after training).
        kept: dict[int, list[Any]] = {}
        old = self._core
        old_weights = old.get_weights() if old is not None else []
        for layer in self._engine_layers():
            if layer._model is self:
                if old is not None:
                    kept[id(layer)] = old_weights[layer._weight_slice]
                layer._model = None
        self._forget_graph()  # (the loop above read the old stack's, as its slices are)
        self._core = None
        self._variable_cache = None
        if self._layers and self._declared_input_shape() is not None:
            self.build()
            self._restore(kept)

    def _restore(self, kept: dict[int, list[Any]]) -> None:
        core = self._core
        if not kept or core is None:
            return
        weights = core.get_weights()
        for layer, mine in zip(self._engine_layers(), self._layer_slices):
            saved = kept.get(id(layer))
            if saved is not None and [w.shape for w in saved] == [w.shape for w in
                                                                  weights[mine]]:
                weights[mine] = saved
        core.set_weights([np.ascontiguousarray(w) for w in weights])

    @property
    def layers(self) -> list[Any]:
        return list(self._layers)

    def _make_engine_graph(self) -> EngineGraph:
        builder = GraphBuilder()
        self._inline_into(builder, [0])
        return builder.graph()

    def _inline_into(self, builder: Any, inputs: list[int]) -> list[int]:
        (value,) = inputs  # a stack: each layer reads the one before
        if self._graph_needs_shape():
            return self._stack_trace().inline(builder, [value])
        for layer in self._layers:
            value = builder.add(layer, [value])
        return [value]

    def _graph_needs_shape(self) -> bool:
        """A stack with a custom layer (or a subclassed model) is traced, as a chain of
        symbolic calls, for its input shape."""
        return any(l._is_subclassed() if isinstance(l, Model) else l._traced_call()
                   for l in self._layers)

    def _stack_trace(self) -> Any:
        from ferrax.layers.core import Input
        from ferrax.models._trace import Trace

        shape = self._trace_shape or self._declared_input_shape()
        if shape is None:
            raise ValueError(f"Sequential '{self.name}' is not built yet: its input shape is "
                             f"unknown (start it with ferrax.Input(shape), or call fit or "
                             f"build first)")
        key = (tuple(shape), tuple(id(l) for l in self._layers))
        cached = self.__dict__.get("_chain_trace")
        if cached is None or cached[0] != key:
            x = Input(shape=tuple(shape))
            y: Any = x
            for layer in self._layers:
                y = layer(y)
            cached = (key, Trace(self.name, [x], [y]))
            self._chain_trace = cached
        return cached[1]

    def _symbolic_chain(self) -> tuple[KerasTensor, KerasTensor]:
        """The stack called on a symbolic Input of its input shape, as Keras's
        Sequential keeps a functional twin: its input, its output, and through the
        calls each layer's ``input``/``output`` (for feature extraction)."""
        from ferrax.layers.core import Input

        shape = self._input_shape if self.built else self._declared_input_shape()
        if shape is None or not self._layers:
            raise AttributeError(f"Sequential model '{self.name}' has no defined inputs yet "
                                 f"(start it with ferrax.Input(shape), or build it first)")
        key = (tuple(shape), tuple(id(l) for l in self._layers))
        cached = self.__dict__.get("_symbolic")
        if cached is None or cached[0] != key:
            # (the user's own Input where the stack starts with one)
            x = (self._input_layer.output if self._input_layer is not None
                 else Input(shape=self._declared_input_dims() or tuple(shape)))
            y: Any = x
            for layer in self._layers:
                y = layer(y)
            cached = (key, x, y)
            self._symbolic = cached
        return cached[1], cached[2]

    @property
    def inputs(self) -> list[KerasTensor]:
        """The symbolic input, in a list (once the input shape is known)."""
        return [self._symbolic_chain()[0]]

    @property
    def outputs(self) -> list[KerasTensor]:
        """The symbolic output, in a list (once the input shape is known)."""
        return [self._symbolic_chain()[1]]

    @property
    def input(self) -> Any:
        """The symbolic input: ``keras.Model(model.input, model.layers[1].output)``
        extracts the features a Sequential model computes."""
        return self._symbolic_chain()[0]

    @property
    def output(self) -> Any:
        """The symbolic output."""
        return self._symbolic_chain()[1]

    def _declared_input_dims(self) -> tuple[int | None, ...] | None:
        if self._input_layer is not None:
            return self._input_layer._input_dims
        first = self._layers[0] if self._layers else None
        if isinstance(first, Model):
            return first._input_shape if first.built else first._declared_input_shape()
        if first is not None and first._input_shape is not None:
            return first._input_shape
        return None

    def get_config(self) -> Config:
        layers = []
        if self._input_layer is not None:
            layers.append({"class_name": "InputLayer", "config": self._input_layer.get_config()})
        for l in self._layers:
            entry = {"class_name": type(l).__name__, "config": l.get_config()}
            if get_registered_name(l) != type(l).__name__:
                entry["registered_name"] = get_registered_name(l)
            layers.append(entry)
        return {"name": self.name, "trainable": self.trainable, "layers": layers}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        model = cls(name=config.get("name"))
        for entry in config["layers"]:
            if entry["class_name"] in ("Sequential", "Functional"):
                model.add(Model.from_config(entry["config"]))
                continue
            layer_cls = layer_class(entry.get("registered_name") or entry["class_name"])
            model.add(layer_cls.from_config(entry["config"]))
        return model
