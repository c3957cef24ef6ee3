"""Calls traced into the engine graph: the shared walk that adds a model's layer
calls to a `GraphBuilder` (functional models, traced layers and subclassed
models use it), and `Trace`, a `call` run once on fresh symbolic inputs."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import numpy as np

from ferrax._typing import Config
from ferrax.layers.base import Layer
from ferrax.symbolic import KerasTensor, Node, flatten, pack_like

if TYPE_CHECKING:
    from ferrax.models._graph import GraphBuilder


class InputSlice(Layer):
    """The engine's part of one input among several, or of one output among a layer's
    several (not a layer of the model)."""

    def __init__(self, offset: int, shape: tuple[int | None, ...], rest: int = 0,
                 keep_mask: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.offset, self.shape, self.rest, self.keep_mask = offset, shape, rest, keep_mask

    def _core_spec(self) -> Config:
        return {"class_name": "InputSlice",
                "config": {"name": self.name, "offset": self.offset, "shape": list(self.shape),
                           "rest": self.rest, "keep_mask": self.keep_mask}}


class _TraceInput(Layer):
    """Makes the fresh symbolic inputs a `call` is traced on."""

    _internal = True


def add_calls(builder: GraphBuilder, nodes: list[Node], value: dict[int, int],
              outputs: list[KerasTensor], parts: dict[int, list[InputSlice]]) -> None:
    """Adds every call in `nodes` (in order) to `builder`; `value` maps tensors (by id)
    to engine values and gains the values of what the calls make. `parts` caches the
    slices that take apart a layer's several outputs."""

    read = {id(t) for n in nodes for t in n.input_tensors}
    read |= {id(t) for t in outputs}
    for node in nodes:
        if node.is_source:
            value[id(node.output_tensors[0])] = builder.source(node.layer)
            continue
        ins = [value[id(t)] for t in node.input_tensors]
        with builder.fixed_training(node.training):
            _add_call(builder, node, ins, value, read, parts)


def _add_call(builder: GraphBuilder, node: Node, ins: list[int], value: dict[int, int],
              read: set[int], parts: dict[int, list[InputSlice]]) -> None:
    from ferrax.models.model import Model

    trace: Trace | None = getattr(node, "trace", None)
    if trace is not None:  # a traced layer or subclassed model: its graph, inlined
        for t, v in zip(node.output_tensors, trace.inline(builder, ins)):
            value[id(t)] = v
        return
    if isinstance(node.layer, Model):  # a nested model: its outputs, one value each
        for t, v in zip(node.output_tensors, node.layer._inline_into(builder, ins)):
            value[id(t)] = v
        return
    made = builder.add(node.layer, ins)
    if len(node.output_tensors) == 1:
        value[id(node.output_tensors[0])] = made
        return
    # A layer with several outputs writes them side by side; a slice each takes
    # out those the model reads.
    for t, piece in zip(node.output_tensors, output_parts(node, parts)):
        if id(t) in read:
            value[id(t)] = builder.add(piece, [made])


def output_parts(node: Node, cache: dict[int, list[InputSlice]]) -> list[InputSlice]:
    """The slices that take the outputs of a layer with several (return_state) apart."""
    if id(node) not in cache:
        shapes = [tuple(t.shape[1:]) for t in node.output_tensors]
        sizes = [int(np.prod([d for d in s if d is not None])) for s in shapes]
        pieces, offset = [], 0
        for k, shape in enumerate(shapes):
            name = f"{node.layer.name}_out{k}"
            # a recurrent layer's returned sequence keeps its mask
            sequence = k == 0 and getattr(node.layer, "return_sequences", False)
            if None in shape:
                # a sequence of any length first: the states after it count from the end
                rest = sum(sizes[k + 1:])
                pieces.append(InputSlice(offset, shape, name=name, rest=rest,
                                         keep_mask=sequence))
                offset = -rest
            else:
                pieces.append(InputSlice(offset, shape, name=name, keep_mask=sequence))
                offset += sizes[k]
        cache[id(node)] = pieces
    return cache[id(node)]


class Trace:
    """One run of a `call` on fresh symbolic inputs: the graph from them to its outputs,
    inlined wherever the call is used."""

    def __init__(self, owner: str, inputs: list[KerasTensor], outputs: list[KerasTensor],
                 losses: list[KerasTensor] | None = None) -> None:
        from ferrax.models.functional import _ordered_nodes

        self.inputs, self.outputs = inputs, outputs
        self.losses = list(losses or [])  # add_loss's scalars
        self.nodes = _ordered_nodes(owner, inputs, outputs + self.losses)
        self._parts: dict[int, list[InputSlice]] = {}

    def inline(self, builder: GraphBuilder, inputs: list[int]) -> list[int]:
        value = {id(t): v for t, v in zip(self.inputs, inputs)}
        add_calls(builder, self.nodes, value, self.outputs + self.losses, self._parts)
        builder.added_losses += [value[id(t)] for t in self.losses]
        return [value[id(t)] for t in self.outputs]


def fresh_inputs(structure: Any) -> Any:
    """Symbolic tensors of the same shapes as those in `structure` (same nesting), made
    by a node of their own: what a call is traced on."""
    def fresh(t: Any) -> Any:
        if isinstance(t, (list, tuple)):
            return type(t)(fresh(u) for u in t)
        if isinstance(t, dict):
            return {k: fresh(u) for k, u in t.items()}
        copy = KerasTensor(t.shape, t.dtype, batched=t.batched)
        Node(_TraceInput(), [], [copy], as_list=False)
        return copy
    return fresh(structure)


def accepts(fn: Any, name: str) -> bool:
    """Whether `fn` takes a keyword argument `name` (or **kwargs)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def trace_call(owner: Any, inputs: Any, kwargs: dict[str, Any]) -> Any:
    """Calls `owner.call` (a custom layer's or a subclassed model's) on fresh symbolic
    tensors shaped like `inputs`, records one node of `owner` on `inputs` that carries
    the trace, and returns its outputs (in the structure `call` returned)."""
    trace, result = trace_only(owner, fresh_inputs(inputs), kwargs)
    flat_out = trace.outputs
    outer = [KerasTensor(t.shape, t.dtype, batched=t.batched) for t in flat_out]
    node = Node(owner, flatten(inputs), outer, as_list=isinstance(inputs, (list, tuple)))
    node.trace = trace  # type: ignore[attr-defined]
    if isinstance(owner, Layer) and len(outer) == 1 and outer[0].batched:
        owner._output_shape = outer[0].shape[1:]  # type: ignore[assignment]
    return pack_like(result, outer)


def trace_only(owner: Any, inner: Any, kwargs: dict[str, Any]) -> tuple[Trace, Any]:
    """`owner.call` run on the symbolic tensors `inner`: its Trace, and what it returned."""
    from ferrax.ops import _dispatch

    what = f"{type(owner).__name__} '{owner.name}'"
    from ferrax.layers.base import TRACED_TRAINING

    call_kwargs = dict(kwargs)
    if call_kwargs.get("training") is None and accepts(owner.call, "training"):
        call_kwargs["training"] = TRACED_TRAINING
    for key in ("training", "mask"):
        if key in call_kwargs and not accepts(owner.call, key):
            call_kwargs.pop(key)
    _dispatch._TRACING[0] += 1
    _dispatch._ADDED_LOSSES.append([])
    try:
        result = owner.call(inner, **call_kwargs)
    finally:
        _dispatch._TRACING[0] -= 1
        losses = _dispatch._ADDED_LOSSES.pop()
    flat_out = flatten(result)
    for t in flat_out:
        if not isinstance(t, KerasTensor):
            raise TypeError(f"{what}: call() must return tensors (made from its inputs by "
                            f"layers and ferrax.ops), got {type(t).__name__}: {t!r}")
    if not flat_out:
        raise TypeError(f"{what}: call() returned no tensor")
    return Trace(owner.name, flatten(inner), flat_out, losses), result
