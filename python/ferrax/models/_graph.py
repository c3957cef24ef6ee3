"""The engine's view of a model: its layers in run order, the values each reads and
which later calls of a shared layer use an earlier call's weights. Nested models are
inlined: their layers join the outer graph, so one engine runs the whole model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ferrax.layers.base import Layer
    from ferrax.models.model import Model


class EngineGraph(NamedTuple):
    layers: list[Layer]
    # per layer: the values it reads (value 0 is the model's input, value i + 1 layer i's)
    inbound: list[list[int]]
    # per layer: the index of the first call of the same layer, None for a first call
    shares: list[int | None]
    # the model's outputs (values); None: the last layer's
    outputs: list[int] | None = None
    # scalar values added to the loss (add_loss in traced calls)
    added_losses: list[int] | None = None
    # scalar values reported as metrics (metric functions traced after the output)
    metric_values: list[int] | None = None
    # per layer: the training mode its call fixes (None: the model's)
    training: list[bool | None] | None = None
    # per output: the value of each sample's loss from a traced loss function, or None
    head_values: list[int | None] | None = None


class GraphBuilder:
    """Collects layer calls into an EngineGraph."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.inbound: list[list[int]] = []
        self.shares: list[int | None] = []
        self._first: dict[int, int] = {}
        self._sources: dict[int, int] = {}
        self.outputs: list[int] | None = None
        self.added_losses: list[int] = []
        self.metric_values: list[int] = []
        self.training: list[bool | None] = []
        self.head_values: list[int | None] | None = None
        # the modes fixed by the calls being added (innermost last)
        self._fixed: list[bool] = []

    @classmethod
    def from_graph(cls, graph: EngineGraph) -> GraphBuilder:
        """A builder holding `graph`, to add more to it."""
        builder = cls()
        builder.layers, builder.inbound = list(graph.layers), [list(i) for i in graph.inbound]
        builder.shares = list(graph.shares)
        for i, (layer, first) in enumerate(zip(graph.layers, graph.shares)):
            if getattr(layer, "_is_source", False):
                builder._sources[id(layer)] = i + 1
            elif first is None:
                builder._first[id(layer)] = i
        builder.outputs = None if graph.outputs is None else list(graph.outputs)
        builder.added_losses = list(graph.added_losses or [])
        builder.metric_values = list(graph.metric_values or [])
        builder.training = list(graph.training or [None] * len(graph.layers))
        builder.head_values = None if graph.head_values is None else list(graph.head_values)
        return builder

    def source(self, layer: Layer) -> int:
        """The value of a weight or a constant of traced code (added once, however many
        calls read it)."""
        if id(layer) not in self._sources:
            self.shares.append(None)
            self.training.append(None)
            self.layers.append(layer)
            self.inbound.append([])
            self._sources[id(layer)] = len(self.layers)
        return self._sources[id(layer)]

    def add(self, layer: Layer | Model, inputs: list[int]) -> int:
        """Appends a call of `layer` (a model is inlined) reading `inputs`; returns the
        value it makes."""
        from ferrax.models.model import Model

        if isinstance(layer, Model) or layer._traced_call():
            outputs = layer._inline_into(self, list(inputs))
            if len(outputs) != 1:
                raise ValueError(f"Model '{layer.name}' has {len(outputs)} outputs; only a "
                                 f"functional model can use them")
            return outputs[0]
        self.shares.append(self._first.get(id(layer)))
        self.training.append(self._fixed[-1] if self._fixed else None)
        self._first.setdefault(id(layer), len(self.layers))
        self.layers.append(layer)
        self.inbound.append(list(inputs))
        return len(self.layers)

    @contextmanager
    def fixed_training(self, mode: bool | None) -> Iterator[None]:
        """Within it, the calls added run in training mode `mode` (None: unchanged); a
        call inside that fixes its own mode keeps it, as in Keras."""
        if mode is None:
            yield
            return
        self._fixed.append(mode)
        try:
            yield
        finally:
            self._fixed.pop()

    def graph(self) -> EngineGraph:
        fixed = self.training if any(m is not None for m in self.training) else None
        return EngineGraph(self.layers, self.inbound, self.shares, self.outputs,
                           self.added_losses, self.metric_values, fixed, self.head_values)

