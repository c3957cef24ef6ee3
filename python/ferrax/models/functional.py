"""Functional models: `Model(inputs, outputs)` over the graph of layer calls between
them. The graph goes to the engine as its layers in an order where every value is
made before it is read, with the values each layer reads (`inbound`)."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ferrax._registry import get_registered_name
from ferrax._serial import describe, snake_case
from ferrax._typing import Config, Float32Array
from ferrax.layers.base import unique_name
from ferrax.layers.core import InputLayer
from ferrax.models import _heads
from ferrax.models._graph import EngineGraph, GraphBuilder
from ferrax.models._op_config import OP_CLASS, is_constant, op_entry, replay_op
from ferrax.models._trace import InputSlice as _InputSlice
from ferrax.models._trace import add_calls
from ferrax.models.model import Model
from ferrax.symbolic import KerasTensor, Node, flatten

if TYPE_CHECKING:
    from typing_extensions import Self


class Functional(Model):
    """A model defined by its input and output tensors: `Model(inputs, outputs)`.

    Args:
        inputs: The input tensor from `ferrax.Input` (alone, in a list or in a dict).
        outputs: The output tensor (alone, in a list or in a dict).
        name: The model's name.

    Example:

    >>> inputs = ferrax.Input(shape=(28, 28))
    >>> x = ferrax.layers.Flatten()(inputs)
    >>> x = ferrax.layers.Dense(128, activation="relu")(x)
    >>> outputs = ferrax.layers.Dense(10, activation="softmax")(x)
    >>> model = ferrax.Model(inputs=inputs, outputs=outputs, name="mlp")
    """

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None,
                 trainable: bool = True, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"Model: unexpected keyword argument(s) {', '.join(sorted(kwargs))}")
        super().__init__(name=name, trainable=trainable)
        if inputs is None or outputs is None:
            raise ValueError(f"Model '{self.name}': a functional model needs both inputs= and "
                             f"outputs=")
        flat_in, flat_out = flatten(inputs), flatten(outputs)
        for what, tensors in (("inputs", flat_in), ("outputs", flat_out)):
            for t in tensors:
                if not isinstance(t, KerasTensor):
                    raise TypeError(f"Model '{self.name}': {what} must be symbolic tensors "
                                    f"(from ferrax.Input and layer calls), got {describe(t)}")
        if len({id(t) for t in flat_out}) != len(flat_out):
            raise ValueError(f"Model '{self.name}': an output is listed twice in outputs")
        for t in flat_in:
            if not t.node.is_input:
                raise ValueError(f"Model '{self.name}': inputs must come from ferrax.Input, "
                                 f"but '{t.name}' is the output of layer "
                                 f"'{t.node.layer.name}'")
        self._inputs_struct, self._outputs_struct = inputs, outputs
        self._input_tensors: list[KerasTensor] = flat_in
        self._output_tensors: list[KerasTensor] = flat_out
        self._nodes = _ordered_nodes(self.name, flat_in, flat_out)
        self._input_layers = [t.node.layer for t in flat_in]
        if len({id(t) for t in flat_in}) != len(flat_in):
            raise ValueError(f"Model '{self.name}': an input is listed twice in inputs")
        for t in flat_in:
            if list(t.shape[1:]).count(None) > 1:
                raise NotImplementedError(f"Model '{self.name}': input '{t.name}' of shape "
                                          f"{t.shape}: one axis of unknown length (None) is "
                                          f"supported, not several")
        # Several inputs reach the engine side by side in one row per sample; each has a
        # slice that takes its part out (kept: the engine graph is asked for often). With
        # axes of unknown length, the slices follow the lengths of the call's arrays.
        self._input_shapes = [_probe_shape(t) for t in flat_in]
        self._part_slices: dict[int, list[_InputSlice]] = {}
        self._input_slices = [] if len(flat_in) == 1 else _input_slices(flat_in,
                                                                         self._input_shapes)
        # per prepared array (by id, dropped when the array is): the input shapes it packs
        self._packed_shapes: dict[int, list[tuple[int, ...]]] = {}
        self._last_packed: list[tuple[int, ...]] = list(self._input_shapes)
        _check_unique_names(self.layers)
        if self._nodes:
            _check_unique_names(self._engine_layers(), " (nested models included)")
            self.build()

    # --- topology ----------------------------------------------------------
    @property
    def layers(self) -> list[Any]:
        """Every layer (and nested model) once, the input layers first, then in the
        order of their first call."""
        out: list[Any] = list(self._input_layers)
        for node in self._nodes:
            if getattr(node.layer, "_internal", False):
                continue  # an op or a weight of traced code
            if not any(node.layer is l for l in out):
                out.append(node.layer)
        return out

    def _make_engine_graph(self) -> EngineGraph:
        builder = GraphBuilder()
        value = {id(t): 0 for t in self._input_tensors}
        for t, piece in zip(self._input_tensors, self._input_slices):
            value[id(t)] = builder.add(piece, [0])
        self._add_calls(builder, value)
        builder.outputs = [value[id(t)] for t in self._output_tensors]
        return builder.graph()

    def _inline_into(self, builder: GraphBuilder, inputs: list[int]) -> list[int]:
        """This model's layers added to an outer model's graph, its inputs read from the
        outer values `inputs`; returns the values of its outputs."""
        value = {id(t): v for t, v in zip(self._input_tensors, inputs)}
        self._add_calls(builder, value)
        return [value[id(t)] for t in self._output_tensors]

    def _add_calls(self, builder: GraphBuilder, value: dict[int, int]) -> None:
        """Adds every layer call, in order; `value` maps tensors (by id) to values."""
        add_calls(builder, self._nodes, value, self._output_tensors, self._part_slices)

    def _engine_output_shapes(self) -> list[tuple[int, ...]]:
        graph = self._engine_graph()
        assert graph.outputs is not None
        return [self._value_shapes[v] for v in graph.outputs]

    def _model_nodes(self, layer: Any) -> list[Node]:
        """The calls of `layer` that belong to this model, in the layer's call order."""
        mine = {id(n) for n in self._nodes}
        return [n for n in layer._inbound_nodes if id(n) in mine or n.is_input]

    def _local_history(self, t: KerasTensor) -> list[Any]:
        """A tensor's [layer name, call index, output index], the call counted among the
        layer's calls in this model (as a saved config numbers them)."""
        assert t._keras_history is not None
        layer, node_index, tensor_index = t._keras_history
        node = layer._inbound_nodes[node_index]
        local = [id(n) for n in self._model_nodes(layer)].index(id(node))
        return [layer.name, local, tensor_index]

    def _declared_input_dims(self) -> tuple[int | None, ...] | None:
        if self._input_slices:
            variable = any(d is None for t in self._input_tensors for d in t.shape[1:])
            return (None,) if variable else (_width(self._input_shapes),)
        return tuple(self._input_tensors[0].shape[1:])

    def _declared_input_shape(self) -> tuple[int, ...] | None:
        if self._input_slices:
            return (_width(self._input_shapes),)
        return super()._declared_input_shape()

    def _ensure_built(self, x: np.ndarray) -> None:
        if self._input_slices and self._variable_axes():
            self._use_input_shapes(self._last_packed)
        else:
            super()._ensure_built(x)

    def _engine_for(self, x: np.ndarray) -> Any:
        if self._input_slices and self._variable_axes():
            self._use_input_shapes(self._packed_shapes[id(x)])
            return self._built_core()
        return super()._engine_for(x)

    def _prepared(self, xf: np.ndarray) -> np.ndarray:
        if self._input_slices and self._variable_axes():
            self._packed_shapes[id(xf)] = list(self._last_packed)
            weakref.finalize(xf, self._packed_shapes.pop, id(xf), None)
        return xf

    def _use_input_shapes(self, shapes: list[tuple[int, ...]]) -> None:
        """Run the engine with inputs of these per-sample shapes (their lengths)."""
        if shapes == self._input_shapes:
            return
        before = self._input_shapes, self._input_slices
        self._input_shapes = list(shapes)
        self._input_slices = _input_slices(self._input_tensors, self._input_shapes)
        self._forget_graph()
        try:
            self._use_shape((_width(shapes),), force=True)
        except Exception:
            self._input_shapes, self._input_slices = before
            self._forget_graph()
            raise

    def _first_layer_name(self) -> str | None:
        return self._input_layers[0].name if self._input_slices else super()._first_layer_name()

    @property
    def inputs(self) -> list[KerasTensor]:
        return list(self._input_tensors)

    @property
    def outputs(self) -> list[KerasTensor]:
        return list(self._output_tensors)

    @property
    def input(self) -> Any:
        """The input tensor(s), in the structure given to the constructor."""
        return self._inputs_struct

    @property
    def output(self) -> Any:
        """The output tensor(s), in the structure given to the constructor."""
        return self._outputs_struct

    @property
    def input_names(self) -> list[str]:
        return [layer.name for layer in self._input_layers]

    @property
    def output_names(self) -> list[str]:
        """The outputs' names: a dict's keys, else their layers' names (a layer's second
        output and later get _1, _2, ...)."""
        if isinstance(self._outputs_struct, dict):
            return [str(k) for k in self._outputs_struct]
        names: list[str] = []
        for t in self._output_tensors:
            name, k = t.node.layer.name, 1
            while name in names:
                name, k = f"{t.node.layer.name}_{k}", k + 1
            names.append(name)
        return names

    @property
    def output_shape(self) -> Any:
        return self._output_tensors[0].shape

    def _summary_shape(self, layer: Any) -> str:
        # the symbolic output (axes of unknown length stay None), of its first call here
        node = self._model_nodes(layer)[0]
        shapes = [t.shape for t in node.output_tensors]
        return str(shapes[0]) if len(shapes) == 1 else str(shapes)

    def _connections(self) -> dict[int, list[str]]:
        """Per layer (by id): the "Connected to" entries of the summary, every call's."""
        out: dict[int, list[str]] = {}
        for node in self._nodes:
            out.setdefault(id(node.layer), []).extend(
                "{}[{}][{}]".format(*self._local_history(t)) for t in node.input_tensors)
        return out

    # --- data structures -----------------------------------------------------
    def _unpack_x(self, x: Any, arg: str = "x") -> Any:
        if not self._input_slices:
            return _unpack(self.name, x, arg, self.input_names, "input")
        return self._pack_inputs(x, arg)

    def _pack_inputs(self, x: Any, arg: str) -> np.ndarray:
        """The arrays of a model with several inputs (a list in the inputs' order or a dict
        by their names), each checked against its input, side by side in one array."""
        from ferrax.models import _data

        names = self.input_names
        if isinstance(x, dict):
            parts = _data.by_name(self.name, x, arg, names, "input")
        elif isinstance(x, (list, tuple)):
            if len(x) != len(names):
                raise ValueError(f"Model '{self.name}' expects {len(names)} input array(s) for "
                                 f"'{arg}' (inputs {names}), got a list of {len(x)}")
            parts = list(x)
        else:
            raise ValueError(f"Model '{self.name}' has {len(names)} inputs {names}: pass '{arg}' "
                             f"as a list of {len(names)} arrays or a dict by input name, got "
                             f"{describe(x)}")
        arrays = []
        for name, t, part in zip(names, self._input_tensors, parts):
            where = f"{arg}[{name!r}]"
            a = _data.as_array(part, where)
            _data.features(a, t.shape[1:], self.name, where)
            self._check_input_at(self._input_tensors.index(t), a, where)
            arrays.append(a)
        counts = {len(a) for a in arrays}
        if len(counts) != 1:
            raise ValueError(f"Model '{self.name}': the input arrays of '{arg}' must hold the "
                             f"same number of samples, got "
                             f"{dict(zip(names, (len(a) for a in arrays)))}")
        dtype = np.uint8 if all(a.dtype == np.uint8 for a in arrays) else np.float32
        self._last_packed = [tuple(a.shape[1:]) for a in arrays]
        return np.concatenate([a.reshape(len(a), -1).astype(dtype, copy=False)
                               for a in arrays], axis=1)

    def _check_inputs(self, x: np.ndarray, arg: str) -> None:
        if not self._input_slices:
            self._check_input_at(0, x, arg)

    def _check_input_at(self, k: int, x: np.ndarray, arg: str) -> None:
        """The value checks (Embedding's ids) of every layer reading input `k`, nested
        models' included."""
        t = self._input_tensors[k]
        for reader in self._nodes:
            for j, r in enumerate(reader.input_tensors):
                if r is not t:
                    continue
                if isinstance(reader.layer, Functional):
                    reader.layer._check_input_at(j, x, arg)
                else:
                    reader.layer._check_inputs(x, arg)

    def _unpack_y(self, y: Any, arg: str = "y") -> Any:
        return _unpack(self.name, y, arg, self.output_names, "output")

    def _output_list(self) -> list[tuple[str, tuple[int | None, ...]]] | None:
        if len(self._output_tensors) == 1:
            return None
        return [(name, tuple(t.shape[1:]))
                for name, t in zip(self.output_names, self._output_tensors)]

    def _shape_outputs(self, out: Float32Array, n: int) -> Any:
        outputs = self._output_list()
        if outputs is None:
            return super()._shape_outputs(out, n)
        now = [(name, shape) for (name, _), shape in zip(outputs,
                                                         self._engine_output_shapes())]
        arrays = _heads.split(now, out, n)
        if isinstance(self._outputs_struct, dict):
            return dict(zip(self._outputs_struct, arrays))
        return arrays

    def _pack_outputs(self, out: Any) -> Any:
        if isinstance(self._outputs_struct, (list, tuple)):
            return [out]
        if isinstance(self._outputs_struct, dict):
            return {k: out for k in self._outputs_struct}
        return out

    # --- configuration ---------------------------------------------------------
    def get_config(self) -> Config:
        """Keras's functional config: every layer with the calls that feed it
        (`inbound_nodes`), and the model's input and output layers."""
        layers = []
        for layer in self.layers:
            entry: dict[str, Any] = {"class_name": type(layer).__name__,
                                     "config": layer.get_config(), "name": layer.name,
                                     "inbound_nodes": []}
            if get_registered_name(layer) != type(layer).__name__:
                entry["registered_name"] = get_registered_name(layer)
            for node in self._model_nodes(layer):
                if node.is_input:
                    continue
                args = [self._tensor_config(t) for t in node.input_tensors]
                main = args[:len(args) - node.states]
                kwargs: dict[str, Any] = {"initial_state": args[len(main):]} if node.states \
                    else {}
                if node.training is not None:
                    kwargs["training"] = node.training
                entry["inbound_nodes"].append({"args": [main if node.as_list else main[0]],
                                               "kwargs": kwargs})
            layers.append(entry)
        layers += [op_entry(node, self._tensor_config) for node in self._nodes
                   if getattr(node.layer, "_internal", False) and not node.is_source]
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": self._structure_refs(self._inputs_struct),
                "output_layers": self._structure_refs(self._outputs_struct)}

    def _tensor_config(self, t: KerasTensor) -> dict[str, Any]:
        return {"class_name": "__keras_tensor__",
                "config": {"shape": list(t.shape), "dtype": t.dtype,
                           "keras_history": self._local_history(t)}}

    def _structure_refs(self, structure: Any) -> Any:
        if isinstance(structure, dict):
            return {k: self._local_history(v) for k, v in structure.items()}
        if isinstance(structure, (list, tuple)):
            return [self._local_history(t) for t in structure]
        return self._local_history(structure)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        tensors: dict[tuple[str, int, int], KerasTensor] = {}
        # (layer, call index, call's args): run as soon as their inputs exist, since a
        # shared layer's later call may read layers listed after it
        pending: list[tuple[Any, int, Any, list[Any], dict[str, Any]]] = []
        for entry in config["layers"]:
            if entry.get("class_name") == OP_CLASS:
                pending.append((entry, 0, entry["inbound_nodes"][0]["args"], [], {}))
                continue
            layer = _layer_from_config(entry)
            if not entry.get("inbound_nodes"):
                if not isinstance(layer, InputLayer):
                    raise ValueError(f"Layer {entry.get('name')!r} in config has no inbound "
                                     f"nodes but is not an InputLayer")
                tensors[(layer.name, 0, 0)] = layer.output
                continue
            for node_index, node in enumerate(entry["inbound_nodes"]):
                kwargs = node.get("kwargs", {})
                call_kwargs = {} if kwargs.get("training") is None else \
                    {"training": kwargs["training"]}
                pending.append((layer, node_index, node["args"][0],
                                kwargs.get("initial_state", []), call_kwargs))
        while pending:
            ready = [p for p in pending
                     if all(is_constant(a) or _key(a) in tensors
                            for a in _call_args(p[2]) + list(p[3]))]
            if not ready:
                raise ValueError(f"Model config: the calls of {[_name(p[0]) for p in pending]}"
                                 f" read tensors that no layer makes")
            layer, node_index, args, states, call_kwargs = ready[0]
            if isinstance(layer, Mapping):  # an op's entry
                out = replay_op(layer["config"], args, lambda a: _resolve(tensors, a))
                tensors[(layer["name"], 0, 0)] = out
                pending.remove(ready[0])
                continue
            if isinstance(args, list):
                call_input: Any = [_resolve(tensors, a) for a in args]
            else:
                call_input = _resolve(tensors, args)
            if states:
                call_kwargs["initial_state"] = [_resolve(tensors, a) for a in states]
            out = layer(call_input, **call_kwargs)
            for k, t in enumerate(out if isinstance(out, list) else [out]):
                tensors[(layer.name, node_index, k)] = t
            pending.remove(ready[0])
        inputs = _from_refs(tensors, config["input_layers"])
        outputs = _from_refs(tensors, config["output_layers"])
        return cls(inputs=inputs, outputs=outputs, name=config.get("name"),
                   trainable=config.get("trainable", True))


def _probe_shape(t: KerasTensor) -> tuple[int, ...]:
    """An input's per-sample shape, an axis of unknown length at the first probe length."""
    from ferrax.layers.base import PROBE_LENGTHS

    return tuple(PROBE_LENGTHS[0] if d is None else d for d in t.shape[1:])


def _width(shapes: list[tuple[int, ...]]) -> int:
    return sum(int(np.prod(s)) for s in shapes)


def _input_slices(inputs: list[KerasTensor], shapes: list[tuple[int, ...]]
                  ) -> list[_InputSlice]:
    slices, offset = [], 0
    for t, shape in zip(inputs, shapes):
        slices.append(_InputSlice(offset, shape, name=f"{t.node.layer.name}_part"))
        offset += int(np.prod(shape))
    return slices


def _ordered_nodes(model: str, inputs: list[KerasTensor], outputs: list[KerasTensor]
                   ) -> list[Node]:
    """The layer calls between `inputs` and `outputs`, each after the calls it reads
    (depth-first from the outputs); a tensor not reachable from the inputs is a
    'graph disconnected' error naming it and its layer."""
    allowed = {id(t) for t in inputs}
    ordered: list[Node] = []
    done: set[int] = set()
    visiting: set[int] = set()

    def visit(tensor: KerasTensor) -> None:
        node = tensor.node
        if id(tensor) in allowed:
            return
        if node.is_input:
            seen = [n.layer.name for n in ordered]
            raise ValueError(
                f"Model '{model}': graph disconnected: cannot obtain value for tensor "
                f"'{tensor.name}' (shape {tensor.shape}) at layer '{node.layer.name}', which "
                f"is not one of the model's inputs "
                f"({', '.join(repr(t.name) for t in inputs)}). The following previous layers "
                f"were accessed without issue: {seen}")
        if id(node) in done:
            return
        if id(node) in visiting:  # pragma: no cover - calls cannot make cycles
            raise ValueError(f"Model '{model}': the graph has a cycle at '{node.layer.name}'")
        visiting.add(id(node))
        for t in node.input_tensors:
            visit(t)
        visiting.discard(id(node))
        done.add(id(node))
        ordered.append(node)

    for t in outputs:
        visit(t)
    return ordered


def _check_unique_names(layers: list[Any], where: str = "") -> None:
    seen: dict[str, int] = {}
    for layer in {id(l): l for l in layers}.values():
        seen[layer.name] = seen.get(layer.name, 0) + 1
    for name, count in seen.items():
        if count > 1:
            raise ValueError(f'The name "{name}" is used {count} times in the model{where}. '
                             f'All layer names should be unique.')


def _layer_from_config(entry: Mapping[str, Any]) -> Any:
    """A layer or nested model from its config entry, by class name among ferrax's own
    classes and the registered ones (nothing is imported by name)."""
    from ferrax._registry import layer_class

    class_name = entry.get("registered_name") or entry["class_name"]
    if class_name in ("Sequential", "Functional"):
        return Model.from_config(entry["config"])
    return layer_class(class_name).from_config(entry["config"])


def _name(layer_or_entry: Any) -> str:
    if isinstance(layer_or_entry, Mapping):
        return str(layer_or_entry.get("name"))
    return str(layer_or_entry.name)


def _call_args(args: Any) -> list[Any]:
    """The tensor configs a call reads: a list (merge layers) or one."""
    return args if isinstance(args, list) else [args]


def _key(arg: Any) -> tuple[str, int, int]:
    history = arg["config"]["keras_history"]
    return (history[0], int(history[1]), int(history[2]))


def _resolve(tensors: dict[tuple[str, int, int], KerasTensor], arg: Any) -> KerasTensor:
    key = _key(arg)
    if key not in tensors:
        raise ValueError(f"Model config: a layer reads tensor {list(key)}, which no earlier "
                         f"layer makes")
    return tensors[key]


def _from_refs(tensors: dict[tuple[str, int, int], KerasTensor], refs: Any) -> Any:
    def one(ref: Any) -> KerasTensor:
        return _resolve(tensors, {"config": {"keras_history": ref}})

    if isinstance(refs, dict):
        return {k: one(v) for k, v in refs.items()}
    if refs and isinstance(refs[0], list):
        return [one(r) for r in refs]
    return one(refs)


def _unpack(model: str, data: Any, arg: str, names: list[str], kind: str) -> Any:
    """The one array of a single-input (or single-output) model, given alone, in a list
    of one or in a dict keyed by the input's (output's) name."""
    if isinstance(data, dict):
        from ferrax.models import _data

        return _data.by_name(model, data, arg, names, kind)[0]
    if isinstance(data, (list, tuple)) and data and all(hasattr(d, "shape") for d in data):
        # A list of arrays, one per input (a list of numbers is itself the data).
        if len(data) != len(names):
            raise ValueError(f"Model '{model}' expects {len(names)} {kind} array(s) for "
                             f"'{arg}', got a list of {len(data)}")
        return data[0]
    return data


def _renamed_config(config: Config) -> Config:
    """A functional config whose layers all get fresh names (for clone_model)."""
    names = {e["name"]: unique_name(e["config"]["op"] if e["class_name"] == OP_CLASS
                                    else snake_case(e["class_name"]))
             for e in config["layers"]}

    def rename_refs(value: Any) -> Any:
        if isinstance(value, dict):
            if "keras_history" in value:
                h = value["keras_history"]
                return {**value, "keras_history": [names[h[0]], h[1], h[2]]}
            return {k: rename_refs(v) for k, v in value.items()}
        if isinstance(value, list):
            if len(value) == 3 and isinstance(value[0], str) and value[0] in names:
                return [names[value[0]], value[1], value[2]]
            return [rename_refs(v) for v in value]
        return value

    layers = []
    for e in config["layers"]:
        new = names[e["name"]]
        layers.append({**e, "name": new, "config": {**e["config"], "name": new},
                       "inbound_nodes": rename_refs(e["inbound_nodes"])})
    return {"name": None, "trainable": config.get("trainable", True), "layers": layers,
            "input_layers": rename_refs(config["input_layers"]),
            "output_layers": rename_refs(config["output_layers"])}
