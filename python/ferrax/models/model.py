"""Model: compile, fit, evaluate, predict. The batch loop runs in the engine;
Python runs a few times a second for progress and callbacks."""

from __future__ import annotations

import json
import math
import os
import sys
import time
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

import numpy as np
import numpy.typing as npt

from ferrax import _core, _memory
from ferrax import losses as losses_module
from ferrax import metrics as metrics_module
from ferrax import optimizers as optimizers_module
from ferrax._serial import describe
from ferrax._typing import Config, Float32Array, Logs, PathLike, Shape
from ferrax.callbacks import Callback, CallbackList, History, ProgbarLogger
from ferrax.layers.base import Variable, _shape_only, fixed_training, fixing_training, unique_name
from ferrax.models import _claims, _data, _heads
from ferrax.symbolic import any_symbolic, flatten
from ferrax.tensor import Tensor

if TYPE_CHECKING:
    from ferrax.layers.base import Layer
    from ferrax.models._graph import EngineGraph
    from ferrax.symbolic import Node

# (loss sum, samples, [(metric sum, metric weight)], batches), as the engine returns it.
_Totals = tuple[float, float, list[tuple[float, float]], int]
# (iterations, nadam u_product, slot names, [[slot array per slot] per weight])
_OptimizerState = tuple[int, float, list[str], list[list[Float32Array]]]
# What evaluate / train_on_batch / test_on_batch return: the loss alone, the loss and the
# metrics in metrics_names order, or (return_dict=True) a dict.
EvaluateResult = float | list[float] | dict[str, float]


class _CompileConfig(TypedDict):
    optimizer: optimizers_module.Optimizer
    loss: losses_module.Loss | None
    metrics: list[metrics_module.Metric]


# Each engine call runs batches for about this long before returning to Python.
_CHUNK_SECONDS = 0.1


class Model:
    """A model: layers with compile, fit, evaluate and predict.

    `Model(inputs, outputs)` builds a functional model from symbolic tensors (the graph
    of layer calls between `ferrax.Input(...)` and `outputs`); `Sequential` is a stack.

    Args:
        inputs: The model's input tensor(s), from `ferrax.Input`.
        outputs: The tensor(s) the layers made from them.
        name: The model's name.

    Example:

    >>> inputs = ferrax.Input(shape=(32,))
    >>> h = ferrax.layers.Dense(32, activation="relu")(inputs)
    >>> outputs = ferrax.layers.Dense(10, activation="softmax")(ferrax.layers.add([inputs, h]))
    >>> model = ferrax.Model(inputs=inputs, outputs=outputs)
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # Model(inputs, outputs) is a functional model, as in Keras.
        if cls is Model and _functional_arguments(args, kwargs):
            from ferrax.models.functional import Functional

            return super().__new__(Functional)
        return super().__new__(cls)

    # Set by compile.
    optimizer: optimizers_module.Optimizer | None
    loss: losses_module.Loss | None
    # Per-sample input shape; set by build.
    _input_shape: tuple[int, ...]

    def __init__(self, *args: Any, name: str | None = None, trainable: bool = True,
                 **kwargs: Any) -> None:
        from ferrax.models.functional import Functional

        if _functional_arguments(args, kwargs) and not isinstance(self, Functional) and \
                type(self).call is Model.call:
            # A subclass without call() whose __init__ passes (inputs, outputs) on, as in
            # Keras's guide: it becomes functional, keeping its own methods.
            self.__class__ = _functional_subclass(type(self))
            Functional.__init__(self, *args, name=name, trainable=trainable,  # type: ignore[arg-type, misc]
                                **kwargs)
            return
        if args or kwargs:
            raise TypeError(f"Model: unexpected arguments {args or ''} "
                            f"{', '.join(sorted(kwargs))}; a functional model is built as "
                            f"Model(inputs=..., outputs=...)")
        self.name = name or unique_name(self._name_prefix())
        self._core: _core.CoreModel | None = None
        self._trainable = bool(trainable)
        self._variable_cache: list[Variable] | None = None
        self._layer_slices: list[slice] = []  # each engine layer's weights, by index
        self._value_shapes: list[tuple[int, ...]] = []  # per engine value, set by build
        # The engine graph, made once per structure (every engine call asks for it), and
        # summary's shapes at the probe lengths (a model with an axis of unknown length).
        self._graph: EngineGraph | None = None
        self._probe_shapes: tuple[EngineGraph, list[list[list[int]]]] | None = None
        # A model with several outputs: each one's loss, weight and metrics (set by compile),
        # and the (rank, last size) of each one's targets (accuracy resolves from them).
        self._heads: list[_heads.Head] | None = None
        self._head_ranks: list[tuple[int, int]] = []
        self._inbound_nodes: list[Node] = []  # calls on symbolic tensors (nested models)
        # the input shape a traced graph (subclassed call, custom layers) was made for
        self._trace_shape: tuple[int, ...] | None = None
        # per output: the loss and metric functions traced after it, if any
        self._functions_in_graph: tuple[_HeadFunctions | None, ...] | None = None
        # per output: the per-sample shape those functions see its targets in
        self._target_views: list[tuple[int, ...]] = []
        self._compile_config: _CompileConfig | None = None
        self._engine_compile_spec: str | None = None
        self.history: History | None = None
        self.optimizer = None  # (Keras's: None until compile)
        self.loss: Any = None
        self.stop_training = False
        self._seed: int | None = None  # the engine's seed: drawn at build, kept by save/load
        self._epochs_run = 0  # epochs trained so far: keys each epoch's shuffle
        # loaded state, applied at engine compile
        self._pending_optimizer_state: _OptimizerState | None = None
        self._initial_epoch: int | None = None  # set by BackupAndRestore to resume an epoch
        # set by compile, for custom steps: the loss's running mean and the metrics
        self._loss_tracker: metrics_module.Mean | None = None
        self._compile_metrics: Any = None
        # a subclassed model whose call cannot be traced into one engine graph (several
        # outputs): called, it runs call() eagerly
        self._calls_eagerly = False
        self._has_added_losses = False  # whether a call in the graph uses add_loss
        self._call_losses: list[Any] | None = None  # their values from the last call

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """As in Keras, setting it sets every layer's `trainable`."""
        self._trainable = bool(value)
        if self._is_subclassed():
            for v in self.__dict__.get("_own_variables", []):
                v._holder.trainable = value
            for layer in self.layers:
                layer.trainable = value
            return
        for layer in self._engine_layers():
            layer.trainable = value

    @classmethod
    def _name_prefix(cls) -> str:
        return "model"

    # --- subclasses provide the layer stack ------------------------------
    def _engine_graph(self) -> EngineGraph:
        """The layers the engine runs, in order, with what each reads (nested models
        inlined, a shared layer once per call); made again after `_forget_graph`."""
        if self._graph is None:
            graph = self._make_engine_graph()
            self._has_added_losses = bool(graph.added_losses)  # (add_loss in a call)
            self._graph = self._with_traced_loss(graph)
        return self._graph

    def _with_traced_loss(self, graph: EngineGraph) -> EngineGraph:
        """`graph` with the loss and metric functions `compile` was given traced after
        its outputs, each output's targets a value they read: a loss function's value
        per sample is that output's loss (one for the whole batch: an added loss), a
        metric function's batch mean a metric value."""
        if self._functions_in_graph is None:
            return graph
        from ferrax.models._graph import GraphBuilder
        from ferrax.models._trace import fresh_inputs, trace_only
        from ferrax.ops._nodes import _TargetsLayer
        from ferrax.symbolic import KerasTensor

        builder = GraphBuilder.from_graph(graph)
        outs = list(graph.outputs) if graph.outputs else [len(graph.layers)]
        head_values: list[int | None] = [None] * len(outs)
        for k, entry in enumerate(self._functions_in_graph):
            if entry is None:
                continue
            target_shape, out_shape, loss, metrics = entry
            targets = builder.source(_TargetsLayer(target_shape, head=k))
            for fn in ([loss] if loss is not None else []) + list(metrics):
                pair = fresh_inputs([KerasTensor((None, *target_shape)),
                                     KerasTensor((None, *out_shape))])
                trace, _ = trace_only(_LossCall(fn, per_sample=fn is loss), pair, {})
                (value,) = trace.inline(builder, [targets, outs[k]])
                if fn is not loss:
                    builder.metric_values.append(value)
                elif trace.outputs[0].batched:
                    head_values[k] = value
                else:
                    builder.added_losses.append(value)
        builder.outputs = outs
        if any(v is not None for v in head_values):
            builder.head_values = head_values
        return builder.graph()

    def _forget_graph(self) -> None:
        """The structure changed (layers added, input parts moved)."""
        self._graph = None

    # --- subclassed models: call() traced into the graph -----------------------
    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        """The forward pass of a subclassed model (override it). `fit`, `predict` and
        `evaluate` trace it once with symbolic tensors into the engine's graph, so it
        is written with layers and `ferrax.ops`."""
        raise NotImplementedError(f"Model '{self.name}': a Model subclass must define "
                                  f"call(), or be built as Model(inputs, outputs)")

    def _holds_layers(self) -> bool:
        """A subclass whose layers are its attributes (not a Sequential's stack or a
        functional graph): its call runs them, or its train_step does."""
        from ferrax.models.functional import Functional
        from ferrax.models.sequential import Sequential

        return not isinstance(self, (Functional, Sequential))

    def _is_subclassed(self) -> bool:
        return type(self).call is not Model.call

    def _graph_needs_shape(self) -> bool:
        """Whether the engine graph is traced for an input shape (a subclassed model's
        call, a stack with custom layers), so it waits until the shape is known."""
        return self._is_subclassed()

    def _make_engine_graph(self) -> EngineGraph:
        from ferrax.layers.core import Input
        from ferrax.models._graph import GraphBuilder
        from ferrax.models._trace import trace_only

        if not self._is_subclassed():
            raise NotImplementedError(f"Model '{self.name}' has no layers: define call() in "
                                      f"a subclass, or build it as Sequential([...]) or "
                                      f"Model(inputs, outputs)")
        shape = self._trace_shape
        if shape is None:
            raise ValueError(f"Model '{self.name}' is not built yet: call it on data, fit "
                             f"it, or call build(input_shape) first")
        trace, result = trace_only(self, Input(shape=shape), {"training": None})
        if len(trace.outputs) != 1:
            raise _SeveralOutputs(f"Model '{self.name}': call() returned "
                                  f"{len(trace.outputs)} tensors; a subclassed model with "
                                  f"several outputs runs only when called (model(x), "
                                  f"eagerly or under a GradientTape), not in fit's loop")
        builder = GraphBuilder()
        builder.outputs = trace.inline(builder, [0])
        if builder.outputs == [0]:
            raise ValueError(f"Model '{self.name}': call() returns its input unchanged; "
                             f"there is nothing to train")
        return builder.graph()

    def _inline_into(self, builder: Any, inputs: list[int]) -> list[int]:
        """This model's layers added to an outer model's graph (`builder`), reading the
        outer values `inputs`; returns the values of its outputs."""
        raise NotImplementedError(f"Model '{self.name}' cannot be nested: it has no graph")

    def add_loss(self, loss: Any) -> None:
        """Add `loss` (a tensor computed in `call`, summed to one number) to the
        training loss, as `Layer.add_loss`."""
        from ferrax.ops._dispatch import add_loss

        add_loss(f"Model '{self.name}'", loss)

    def add_weight(self, *args: Any, **kwargs: Any) -> Any:
        """A weight of the model itself, as `Layer.add_weight`."""
        from ferrax.layers._weights import make_weight

        own = self.__dict__.setdefault("_own_variables", [])
        names = ("shape", "initializer", "dtype", "trainable", "autocast", "regularizer",
                 "constraint", "aggregation", "name")
        given = dict(zip(names, args)) | kwargs
        v = make_weight(self.name, len(own), given.get("shape"), given.get("initializer"),
                        given.get("dtype"), given.get("trainable", True),
                        given.get("regularizer"), given.get("constraint"), given.get("name"))
        own.append(v)
        return v

    @property
    def layers(self) -> list[Layer]:
        if self._is_subclassed():
            from ferrax.layers._weights import tracked
            from ferrax.layers.base import Layer as _Layer

            return tracked(self, (_Layer, Model))
        return list(self._engine_layers())

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by its name or by its index in `model.layers`.

        Args:
            name: The layer's name.
            index: Its position in `model.layers` (give one of the two).
        """
        layers = self.layers
        if (name is None) == (index is None):
            raise ValueError("get_layer: give either a name or an index")
        if index is not None:
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"get_layer: index {index} is out of range: model "
                                 f"'{self.name}' has {len(layers)} layers")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: "
                         f"{[l.name for l in layers]}.")

    def _summary_shape(self, layer: Any) -> str:
        """A layer's output shape as summary shows it (None along an axis of unknown
        length: the shapes at two lengths compared)."""
        from ferrax.layers.base import PROBE_LENGTHS
        from ferrax.models._summary import shape_text

        graph = self._engine_graph()
        if not self._variable_axes() or not any(layer is l for l in graph.layers):
            return shape_text(layer)
        if self._probe_shapes is None or self._probe_shapes[0] is not graph:
            dims = self._declared_input_dims()
            assert dims is not None
            runs = [_core.CoreModel(json.dumps(_shape_only(self._engine_spec(
                        tuple(length if d is None else d for d in dims), graph, 0))))
                    .output_shapes() for length in PROBE_LENGTHS]
            self._probe_shapes = (graph, runs)
        runs = self._probe_shapes[1]
        i = max(j for j, l in enumerate(graph.layers) if l is layer)
        return str((None, *(a if a == b else None for a, b in zip(runs[0][i], runs[1][i]))))

    def _connections(self) -> dict[int, list[str]] | None:
        """Per layer (by id): what feeds it, for summary's "Connected to" column; None
        for a stack, whose summary has no such column."""
        return None

    def _output_layer(self) -> Layer:
        """The layer that makes the (first) output: the last one, unless losses added
        in a traced call come after it."""
        graph = self._engine_graph()
        if graph.outputs and graph.outputs[0] > 0:
            return graph.layers[graph.outputs[0] - 1]
        return graph.layers[-1]

    def _engine_layers(self) -> list[Layer]:
        if (self._graph_needs_shape() and self._trace_shape is None
                and self._declared_input_dims() is None):
            return []  # not traced yet: the first data it sees decides the graph
        return self._engine_graph().layers

    def _declared_input_dims(self) -> tuple[int | None, ...] | None:
        """The per-sample input shape the model was declared with (None: an axis of
        unknown length), or None when it is not declared."""
        return None

    def _declared_input_shape(self) -> tuple[int, ...] | None:
        """The declared shape with a length for every axis: the one built first."""
        from ferrax.layers.base import PROBE_LENGTHS

        dims = self._declared_input_dims()
        if dims is not None and list(dims).count(None) > 1:
            raise NotImplementedError(f"Model '{self.name}': inputs of shape {(None, *dims)}: "
                                      f"one axis of unknown length (None) is supported, not "
                                      f"several")
        return None if dims is None else tuple(PROBE_LENGTHS[0] if d is None else d
                                               for d in dims)

    def _variable_axes(self) -> bool:
        dims = self._declared_input_dims()
        return dims is not None and None in dims

    def _use_shape(self, shape: tuple[int, ...], force: bool = False,
                   change: Callable[[], None] | None = None) -> None:
        """For a model with axes of unknown length: run the engine at this input shape
        (a new engine graph for a new length, with the weights, the optimizer state and
        the training counters carried over; `force`: even at the same shape, as when the
        parts of several inputs moved)."""
        old = self._core
        if old is None or (tuple(shape) == tuple(self._input_shape) and not force):
            return
        self._claim_weights()
        weights, step = old.get_weights(), old.step
        state = old.optimizer_state() if self._engine_compile_spec is not None else None
        compile_key = self._engine_compile_spec
        if change is not None:
            change()  # (the graph changes: after the old one's weights were read)
        self._build(tuple(shape))  # (the layer specs carry their freezing)
        core = self._built_core()
        core.set_weights(weights)
        core.step = step
        if compile_key is not None:
            self._send_compile(json.loads(compile_key))
            if state is not None:
                core.set_optimizer_state(state[0], state[1], state[3])

    def _prepared(self, xf: np.ndarray) -> np.ndarray:
        """Notes what `xf`, an array prepared for the engine, holds (several inputs with
        axes of unknown length: their shapes)."""
        return xf

    def _engine_for(self, x: np.ndarray) -> Any:
        """The engine, at the shape of the prepared (n, width) array `x`."""
        dims = self._declared_input_dims()
        if dims is not None and None in dims:
            known = int(np.prod([d for d in dims if d is not None]))
            self._use_shape(tuple(x.shape[1] // known if d is None else d for d in dims))
        return self._built_core()

    def _unpack_x(self, x: Any, arg: str = "x") -> Any:
        """The array for the model's one input, from what the user passed."""
        return x

    def _unpack_y(self, y: Any, arg: str = "y") -> Any:
        """The array for the model's one output, from what the user passed."""
        return y

    def _engine_output_shapes(self) -> list[tuple[int, ...]]:
        """Each output's per-sample shape in the engine as it is now (at the current
        lengths; a layer shared with another model may have been built elsewhere)."""
        outputs = self._engine_graph().outputs
        return [self._value_shapes[outputs[0] if outputs else -1]]

    def _output_list(self) -> list[tuple[str, tuple[int | None, ...]]] | None:
        """(name, per-sample shape) of each output of a model with several; None for a
        model with one."""
        return None

    def _pack_outputs(self, out: Any) -> Any:
        """predict's result in the structure the model's outputs were given in."""
        return out

    # --- building --------------------------------------------------------
    @property
    def built(self) -> bool:
        return self._core is not None

    def _built_core(self) -> _core.CoreModel:
        """The engine model; only called where the model is built. Layers that another
        model ran since are brought up to date first."""
        assert self._core is not None, "the model is not built"
        self._claim_weights()
        return self._core

    def _claim_weights(self) -> None:
        """Layers shared with another model (a feature extractor built from a trained
        model's layers, an encoder inside an autoencoder) hold their weights in the
        engine of the model that last used them: copy those into this model's engine,
        which holds them from now on."""
        core = self._core
        assert core is not None
        graph = self._engine_graph()
        moved = [(i, layer) for i, (layer, first) in enumerate(zip(graph.layers, graph.shares))
                 if first is None and layer._model is not self]
        if not moved:
            return
        weights = core.get_weights()
        homes: dict[int, list[Float32Array]] = {}  # each home's weights, read once
        # Checked first: a layer that cannot move stays where it is, its model intact.
        for i, layer in moved:
            home = layer._model
            if home is not None and home._core is not None:
                if id(home) not in homes:
                    homes[id(home)] = home._core.get_weights()
                theirs = homes[id(home)][layer._weight_slice]
                mine = weights[self._layer_slices[i]]
                if [w.shape for w in theirs] != [w.shape for w in mine]:
                    raise ValueError(
                        f"Layer '{layer.name}' holds weights of shapes "
                        f"{[w.shape for w in theirs]} in model '{home.name}', but model "
                        f"'{self.name}' calls it on inputs that need {[w.shape for w in mine]}")
                weights[self._layer_slices[i]] = theirs
        for i, layer in moved:
            if layer._model is not None:
                layer._model._variable_cache = None
            layer._model, layer._weight_slice = self, self._layer_slices[i]
            core.set_layer_frozen(i, not layer.trainable)
        core.set_weights([np.ascontiguousarray(w) for w in weights])
        self._variable_cache = None

    def build(self, input_shape: Sequence[int | None] | None = None) -> None:
        """Create the weights for samples of `input_shape` (batch axis first or not)."""
        shape: Sequence[Any] | None = self._declared_input_shape()
        if input_shape is not None:
            dims = tuple(input_shape)
            shape = dims[1:] if dims and dims[0] is None else dims
        if shape is None:
            raise ValueError(f"Model '{self.name}' cannot be built: its input shape is unknown. "
                             f"Pass input_shape= to the first layer, start with "
                             f"ferrax.Input(shape), or call fit/predict on data.")
        self._build(tuple(int(d) for d in shape))

    @staticmethod
    def _engine_spec(input_shape: tuple[int, ...], graph: EngineGraph, seed: int) -> Config:
        """What the engine builds a model from."""
        return {"input_shape": list(input_shape), "layers": [l._core_spec() for l in graph.layers],
                "seed": seed, "inbound": graph.inbound, "shares": graph.shares,
                "outputs": graph.outputs, "added_losses": graph.added_losses,
                "metric_values": graph.metric_values, "training": graph.training,
                "head_values": graph.head_values}

    def _build(self, input_shape: tuple[int, ...]) -> None:
        from ferrax.utils import _next_seed

        if self._graph_needs_shape() and self._trace_shape != tuple(input_shape):
            self._trace_shape = tuple(input_shape)  # call() is traced for this shape
            self._forget_graph()

        graph = self._engine_graph()
        layers = graph.layers
        if not layers:
            raise ValueError(f"Model '{self.name}' has no layers to build")
        if self._seed is None:
            self._seed = _next_seed()
        try:
            spec = self._engine_spec(input_shape, graph, self._seed)
            if _memory.weight_budget() is not None:
                spec["weight_budget"] = _memory.weight_budget()
            core = _core.CoreModel(json.dumps(spec))
        except ValueError as e:
            raise ValueError(f"Model '{self.name}' could not be built for input shape "
                             f"(None, {', '.join(map(str, input_shape))}): {e}") from None
        # (a stack's own layers: a model inside it handles its states with slices)
        stack = [l for l in getattr(self, "_layers", []) if not isinstance(l, Model)]
        for layer in stack[:-1] if self._connections() is None else []:
            if layer._output_parts() is not None or getattr(layer, "return_state", False):
                raise ValueError(f"Model '{self.name}': layer '{layer.name}' returns its "
                                 f"states (return_state=True), so it can only be the last "
                                 f"layer of a Sequential model")
        self._core = core
        self._input_shape = tuple(input_shape)
        self._variable_cache = None
        info = core.weight_info()
        shapes = core.output_shapes()
        # per engine value: the input's shape, then each layer's output's
        self._value_shapes = [tuple(input_shape)] + [tuple(s) for s in shapes]
        self._layer_slices = []
        for i, layer in enumerate(layers):
            idx = [j for j, (li, _, _) in enumerate(info) if li == i]
            self._layer_slices.append(slice(idx[0], idx[-1] + 1) if idx else slice(0, 0))
            layer._output_shape = tuple(shapes[i])
            home = layer._model
            first_call = graph.shares[i] is None
            if first_call and (home is None or home is self or home._core is None):
                layer._model, layer._weight_slice = self, self._layer_slices[i]
        # Layers already in another built model bring their weights along.
        self._claim_weights()
        self._take_pending_weights(layers)
        self._engine_compile_spec = None
        if self._compile_config is not None:
            self._compile_config["optimizer"]._core_model = core

    def _take_pending_weights(self, layers: list[Layer]) -> None:
        """Weights drawn before any model held them (a custom layer's add_weight) move
        into this model's engine."""
        pending = [(i, l) for i, l in enumerate(layers)
                   if getattr(l, "_pending_weights", None) is not None and l._model is self]
        if not pending:
            return
        core = self._built_core()
        weights = core.get_weights()
        for i, layer in pending:
            weights[self._layer_slices[i]] = layer._pending_weights  # type: ignore[attr-defined]
            layer._pending_weights = None  # type: ignore[attr-defined]
        core.set_weights([np.ascontiguousarray(w) for w in weights])
        self._variable_cache = None

    def _variables(self) -> list[Variable]:
        if self._variable_cache is None:
            layers = self._engine_layers()
            core = self._built_core()
            info = core.weight_info()
            first_of = {li: min(j for j, (l2, _, _) in enumerate(info) if l2 == li)
                        for li, _, _ in info}
            self._variable_cache = [
                Variable(self, j, layers[li]._weight_path(j - first_of[li], name), shape,
                         trainable, key=("weight", id(layers[li]), j - first_of[li]))
                for j, ((li, name, shape), trainable)
                in enumerate(zip(info, core.weight_trainable()))
            ]
        return self._variable_cache

    def _first_layer_name(self) -> str | None:
        layers = self._engine_layers()
        return layers[0].name if layers else None

    def _check_inputs(self, x: np.ndarray, arg: str) -> None:
        layers = self._engine_layers()
        if layers:
            layers[0]._check_inputs(x, arg)

    def _stateful(self) -> bool:
        return any(getattr(l, "stateful", False) or getattr(
            getattr(l, "forward_layer", None), "stateful", False)
            for l in self._engine_layers())

    def _check_stateful_batches(self, n: int, batch_size: int) -> None:
        """Stateful layers carry each sample's state to the same row of the next batch,
        so every batch must be full."""
        if n % batch_size and self._stateful():
            raise ValueError(f"Model '{self.name}' has stateful layers: the number of "
                             f"samples ({n}) must be a multiple of batch_size ({batch_size})")

    def reset_states(self) -> None:
        """Set every stateful layer's carried state back to zeros."""
        if self._core is not None:
            self._core.reset_states(None)

    def _ensure_built(self, x: np.ndarray) -> None:
        if self._core is None:
            self._build(tuple(x.shape[1:]))
        elif self._variable_axes():
            self._use_shape(tuple(x.shape[1:]))

    def _expected_input(self) -> tuple[int | None, ...] | None:
        """The per-sample shape data must have (None: any length)."""
        if self._variable_axes():
            return self._declared_input_dims()
        return self._input_shape if self.built else self._declared_input_shape()

    @property
    def weights(self) -> list[Variable]:
        if self.built:
            return list(self._variables())
        if self._holds_layers():  # its sublayers and submodels hold them (a GAN, a VAE)
            from ferrax.layers._weights import tracked
            from ferrax.layers.base import Layer as _Layer
            from ferrax.variables import variable_key

            out: list[Any] = list(self.__dict__.get("_own_variables", []))
            seen = {variable_key(v) for v in out}
            for layer in tracked(self, (_Layer, Model)):
                for v in layer.weights:
                    if variable_key(v) not in seen:
                        seen.add(variable_key(v))
                        out.append(v)
            return out
        return []

    variables = weights

    @property
    def trainable_weights(self) -> list[Variable]:
        return [v for v in self.weights if v.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        """Weights the optimizer leaves alone (BatchNormalization's moving statistics)."""
        return [v for v in self.weights if not v.trainable]

    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights

    def get_weights(self) -> list[Float32Array]:
        return self._built_core().get_weights() if self._core is not None else []

    def set_weights(self, weights: Sequence[npt.ArrayLike]) -> None:
        if not self.built:
            raise ValueError(f"Model '{self.name}' is not built yet: call build() or fit first")
        arrays = [np.ascontiguousarray(w, dtype=np.float32) for w in weights]
        variables = self._variables()
        if len(arrays) != len(variables):
            raise ValueError(f"Model '{self.name}' expects {len(variables)} weight arrays, "
                             f"got {len(arrays)}")
        for v, a in zip(variables, arrays):
            if a.shape != v.shape:
                raise ValueError(f"Model '{self.name}': weight '{v.name}' expects shape "
                                 f"{v.shape}, got {a.shape}")
        self._built_core().set_weights(arrays)

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(f"Model '{self.name}' is not built yet, so it has no parameters")
        return int(sum(int(np.prod(v.shape)) for v in self._variables()))

    @property
    def input_shape(self) -> Shape | None:
        shape: Any = (self._declared_input_dims() if self._variable_axes() else
                      self._input_shape if self.built else self._declared_input_shape())
        return None if shape is None else (None,) + tuple(shape)

    @property
    def output_shape(self) -> Shape:
        return self._output_layer().output_shape

    # --- compile ---------------------------------------------------------
    def compile(self, optimizer: str | dict[str, Any] | optimizers_module.Optimizer = "rmsprop",
                loss: Any = None, metrics: Any = None, loss_weights: Any = None,
                weighted_metrics: Any = None, run_eagerly: bool = False,
                steps_per_execution: int = 1, jit_compile: bool | str = "auto",
                auto_scale_loss: bool = True) -> None:
        """Choose optimizer, loss and metrics (strings or objects), as in Keras.

        Args:
            optimizer: A name ("adam"), a config dict or an optimizer object.
            loss: A name, a loss object or function; for a model with several outputs
                one for all, a list in the outputs' order or a dict by output name.
            metrics: A list of names or metric objects; with several outputs also a list
                of lists or a dict by output name (a flat list scores every output).
            loss_weights: With several outputs: each loss's weight in the total loss, as
                a list or a dict by output name.
        """
        opt = optimizers_module.get(optimizer)
        if weighted_metrics:
            raise NotImplementedError("compile: weighted_metrics is not supported yet")
        from ferrax.models._compiled import CompileMetrics

        self._loss_tracker = metrics_module.Mean(name="loss")
        self._compile_metrics = CompileMetrics(self) if metrics else None
        outputs = self._output_list()
        if outputs is not None:
            self._heads = _heads.resolve(self.name, outputs, loss, loss_weights, metrics)
            self._compile_config = {"optimizer": opt, "loss": self._heads[0].loss,
                                    "metrics": []}
            self._pending_optimizer_state = None
            self.optimizer, self.loss = opt, loss
            self._engine_compile_spec = None
            if self._core is not None:
                opt._core_model = self._core
            return
        self._heads = None
        loss_obj = None if loss is None else losses_module.get(loss)
        if loss_obj is not None:
            losses_module.check_fit_reduction(loss_obj)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, metrics_module.Metric)):
            metrics = [metrics]
        elif isinstance(metrics, dict):
            raise NotImplementedError("compile: per-output metric dicts are not supported")
        metric_objs = [metrics_module.get(m) for m in metrics]
        if loss_weights is not None:
            raise ValueError(f"Model '{self.name}' has one output: loss_weights applies to "
                             f"models with several")
        self._compile_config = {"optimizer": opt, "loss": loss_obj, "metrics": metric_objs}
        self._pending_optimizer_state = None
        self.optimizer, self.loss = opt, loss_obj
        self._engine_compile_spec = None
        if self._core is not None:
            opt._core_model = self._core

    @property
    def metrics_names(self) -> list[str]:
        if self._compile_config is None:
            return []
        if self._heads is not None:
            return _heads.metric_names(self._heads)
        return ["loss"] + [m.name for m in self._compile_config["metrics"]]

    def _metrics_outside_engine(self) -> bool:
        """Whether compile's metrics include one the fused loop does not compute (AUC,
        Precision, ...): fit and evaluate then run the default steps, which update it."""
        if self._compile_config is None:
            return False
        listed = (list(self._compile_config["metrics"]) if self._heads is None
                  else [m for h in self._heads for m in h.metrics])
        return any(not m._in_engine for m in listed)

    def _compiled_optimizer(self, what: str) -> optimizers_module.Optimizer:
        """The optimizer compile set; a RuntimeError naming `what` before compile."""
        if self.optimizer is None:
            raise RuntimeError(f"You must call compile() on model '{self.name}' before {what}")
        return self.optimizer

    def _require_compiled(self, what: str) -> None:
        last = self._output_layer() if self._engine_layers() else None
        if self._heads is None and last is not None and getattr(last, "return_state", False):
            raise ValueError(f"Model '{self.name}': its last layer '{last.name}' returns "
                             f"its states too (return_state=True); a Sequential model can only "
                             f"predict with it, not train or evaluate")
        if self._compile_config is None:
            raise RuntimeError(f"You must call compile() on model '{self.name}' before {what}")
        if self._compile_config["loss"] is None:
            raise ValueError(f"Model '{self.name}' was compiled without a loss: pass loss= to "
                             f"compile() before {what}")

    def _compile_engine(self, y_rank: int, y_last: int) -> None:
        """(Re)compile the engine side when the resolved spec changed (accuracy resolves
        from the target shapes, as in Keras)."""
        cfg = self._compile_config
        assert cfg is not None  # checked by _require_compiled
        last_layer = self._output_layer()
        loss = cfg["loss"]
        assert loss is not None  # checked by _require_compiled
        out_last = self._output_layer().output_shape[-1]
        assert out_last is not None  # only the batch axis is None
        _warn_probabilities_as_logits(loss, last_layer)
        self._trace_functions([(loss, cfg["metrics"])])
        spec = {
            "loss": loss._core_spec(),
            "optimizer": cfg["optimizer"]._core_spec(),
            # Accuracy resolves against the output's rank, as Keras compares y_true with
            # y_pred: ids of one rank less mean sparse labels.
            "metrics": [m._core_spec(y_rank - (len(last_layer.output_shape) - 2), y_last,
                                     out_last, cfg["loss"])
                        for m in cfg["metrics"] if not _traced(m)],
        }
        self._send_compile(spec)

    def _trace_functions(self, per_output: Sequence[tuple[Any, Sequence[Any]]]) -> None:
        """Loss and metric functions go into the graph (loss and metric objects do
        not), per output (`per_output`: each one's loss and metrics): the engine is
        rebuilt when they change, its weights and optimizer state kept."""
        entries: list[_HeadFunctions | None] = []
        shapes = self._engine_output_shapes()
        for k, (loss, metrics) in enumerate(per_output):
            fn_loss = loss if isinstance(loss, losses_module.LossFunctionWrapper) else None
            fn_metrics = tuple(m for m in metrics if _traced(m))
            if fn_loss is None and not fn_metrics:
                entries.append(None)
                continue
            entries.append(_HeadFunctions(self._target_views[k], tuple(shapes[k]), fn_loss,
                                          fn_metrics))
        want = tuple(entries) if any(e is not None for e in entries) else None
        # (the functions compare by identity: loss and metric objects define no __eq__)
        if want == self._functions_in_graph:
            return

        def change() -> None:
            self._functions_in_graph = want
            self._forget_graph()

        self._use_shape(tuple(self._input_shape), force=True, change=change)

    def _compile_heads(self) -> None:
        """`_compile_engine` for a model with several outputs."""
        cfg = self._compile_config
        assert cfg is not None and self._heads is not None
        self._trace_functions([(h.loss, h.metrics) for h in self._heads])
        self._send_compile({"optimizer": cfg["optimizer"]._core_spec(),
                            "outputs": _heads.engine_spec(self._heads, self._head_ranks)})

    def _send_compile(self, spec: Config) -> None:
        cfg = self._compile_config
        assert cfg is not None
        key = json.dumps(spec, sort_keys=True)
        if key != self._engine_compile_spec:
            core = self._built_core()
            core.compile(key)
            self._engine_compile_spec = key
            cfg["optimizer"]._core_model = core
            if self._pending_optimizer_state is not None:
                iterations, u_product, _, slots = self._pending_optimizer_state
                core.set_optimizer_state(iterations, u_product, slots)
                self._pending_optimizer_state = None

    # --- data ------------------------------------------------------------
    def _prepare(self, x: Any, y: Any, sample_weight: npt.ArrayLike | None = None,
                 class_weight: dict[int, float] | None = None, x_arg: str = "x",
                 y_arg: str = "y", unpacked: bool = False
                 ) -> tuple[np.ndarray, Float32Array, Float32Array | None]:
        """Validated engine arrays (x, y, w) for x/y (`unpacked`: already one array each,
        as fit makes them); builds the model if needed."""
        if not unpacked:
            x, y = self._unpack_x(x, x_arg), self._unpack_targets(y, y_arg)
        xa = _data.as_array(x, x_arg)
        ya = _data.as_array(y, y_arg)
        _data.check_lengths(xa, ya, x_arg, y_arg)
        expected = self._expected_input()
        xf = self._prepared(_data.features(xa, expected, self.name, x_arg,
                                           self._first_layer_name))
        self._check_inputs(xa, x_arg)
        self._ensure_built(xa)
        if self._heads is not None:  # y: the outputs' targets side by side already
            if class_weight is not None:
                raise ValueError(f"Model '{self.name}' has several outputs: class_weight is "
                                 f"for models with one")
            self._compile_heads()
            w = _heads.sample_weights(self.name, self._heads, sample_weight, len(xa))
            self._check_weighable(w is not None)
            return xf, ya, w
        last = self._output_layer()
        assert self._compile_config is not None and last._output_shape is not None
        loss = self._compile_config["loss"]
        assert loss is not None  # checked by _require_compiled
        # the engine's output shape now (a layer shared with another model may have been
        # built there for another length)
        out_shape = self._engine_output_shapes()[0]
        if isinstance(loss, losses_module.LossFunctionWrapper):
            yf = _data.function_targets(ya)
        else:
            yf = _data.targets(ya, loss, out_shape, last.name, y_arg)
        self._target_views = [_data.target_view(ya.shape[1:], out_shape, yf.shape[1])]
        self._compile_engine(ya.ndim, ya.shape[-1] if ya.ndim > 1 else 1)
        ids = _data.class_ids(ya) if class_weight is not None else None
        w = _data.sample_weights(sample_weight, class_weight, ids, len(xa),
                                 _data.output_classes(out_shape))
        self._check_weighable(w is not None)
        return xf, yf, w

    def _check_weighable(self, weighted: bool) -> None:
        """Sample weights need each sample's loss: a loss function that returns one
        number for the whole batch cannot be weighed."""
        if not weighted or self._functions_in_graph is None:
            return
        values = self._engine_graph().head_values or [None] * len(self._functions_in_graph)
        for entry, value in zip(self._functions_in_graph, values):
            if entry is not None and entry.loss is not None and value is None:
                raise ValueError(f"Model '{self.name}': the loss function '{entry.loss.name}' "
                                 f"returns one number for the whole batch, so sample_weight "
                                 f"and class_weight cannot weigh its samples; return one loss "
                                 f"per sample (reduce over the last axis only)")

    def _unpack_targets(self, y: Any, arg: str = "y") -> Any:
        """The targets as one array: the model's one output's, or (several outputs) all
        of them converted for their losses and side by side."""
        if self._heads is None:
            return self._unpack_y(y, arg)
        ys = _heads.unpack(self.name, self._heads, y, arg)
        packed, self._head_ranks, self._target_views = _heads.targets(self.name, self._heads,
                                                                      ys, arg)
        return packed

    def _logs(self, result: _Totals, prefix: str = "") -> dict[str, float]:
        if self._heads is not None:
            return _heads.logs(self._heads, result, prefix)
        loss_sum, samples, metric_sums, _ = result
        logs: dict[str, float] = {}
        assert self._compile_config is not None
        # the engine's metrics first, then those traced into the graph, as the engine
        # reports them
        metrics = self._compile_config["metrics"]
        ordered = [m for m in metrics if not _traced(m)] + [m for m in metrics if _traced(m)]
        for m, (s, wsum) in zip(ordered, metric_sums):
            logs[prefix + m.name] = float(s / wsum) if wsum else 0.0
        logs[prefix + "loss"] = float(loss_sum / samples) if samples else 0.0
        return logs

    # --- training ----------------------------------------------------------
    @_claims.trains
    def fit(self, x: npt.ArrayLike | None = None, y: npt.ArrayLike | None = None,
            batch_size: int | None = None, epochs: int = 1, verbose: int | str = "auto",
            callbacks: Sequence[Callback] | None = None, validation_split: float = 0.0,
            validation_data: tuple[Any, ...] | list[Any] | None = None, shuffle: bool = True,
            class_weight: dict[int, float] | None = None,
            sample_weight: npt.ArrayLike | None = None, initial_epoch: int = 0,
            steps_per_epoch: int | None = None, validation_steps: int | None = None,
            validation_batch_size: int | None = None, validation_freq: int = 1) -> History:
        """Train for `epochs` epochs; returns a History. Keras's arguments and defaults.

        A model whose class overrides `train_step` (or `test_step`) has them run batch
        by batch on eager tensors; otherwise the engine runs the whole loop.
        """
        from ferrax.models import _steps

        custom = (_steps.overrides(self, "train_step") or _steps.overrides(self, "test_step")
                  or self._metrics_outside_engine())
        if custom:
            if self._compile_config is None:
                raise RuntimeError(f"You must call compile() on model '{self.name}' before "
                                   f"training it (fit)")
        else:
            self._require_compiled("training it (fit)")
        batch_size = _data.check_batch_size(batch_size)
        _check_int("epochs", epochs, 0)
        _check_int("initial_epoch", initial_epoch, 0)
        if steps_per_epoch is not None:
            raise NotImplementedError("fit: steps_per_epoch is not supported for array inputs")
        if not (isinstance(validation_split, (int, float)) and 0 <= validation_split < 1):
            raise ValueError(f"'validation_split' must be a float in [0, 1), got "
                             f"{validation_split!r}")
        verbosity = _verbosity(verbose)
        if custom:
            _check_int("validation_freq", validation_freq, 1)
            return _steps.fit(self, x, y, sample_weight, batch_size, epochs, verbosity,
                              callbacks, validation_split, validation_data, shuffle,
                              initial_epoch, validation_freq, validation_batch_size,
                              class_weight)
        xa = _data.as_array(self._unpack_x(x), "x")
        ya = _data.as_array(self._unpack_targets(y), "y")
        _data.check_lengths(xa, ya)
        sw = sample_weight
        if self._heads is not None:  # per output: an (n, outputs) array, split below
            sw = _heads.sample_weights(self.name, self._heads, sw, len(xa))
        val = None
        if validation_data is None and validation_split:
            # Keras takes the *last* samples, before any shuffling.
            split_at = int(math.ceil(len(xa) * (1.0 - validation_split)))
            if split_at == 0 or split_at == len(xa):
                raise ValueError(f"validation_split={validation_split} leaves no samples for "
                                 f"{'training' if split_at == 0 else 'validation'} out of "
                                 f"{len(xa)}")
            val = self._prepare(xa[split_at:], ya[split_at:], None, None, "x_val", "y_val",
                                unpacked=True)
            xa, ya = xa[:split_at], ya[:split_at]
            if sw is not None:
                sw = np.asarray(sw)[:split_at]
        xf, yf, w = self._prepare(xa, ya, sw, class_weight, unpacked=True)
        self._check_stateful_batches(len(xf), batch_size)
        if validation_data is not None:
            val = self._prepare_validation(validation_data)
        n = len(xf)
        steps = math.ceil(n / batch_size)
        cbs, history, initial_epoch = begin_fit(self, callbacks, verbosity, epochs, steps,
                                                initial_epoch)
        per_batch = cbs.wants_batches
        chunk = 1
        logs: Logs = {}
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch, {})
            # Keyed by the epochs this model has trained: fit(1) twice == fit(2).
            order = (self._built_core().shuffled_order(n, self._epochs_run) if shuffle
                     else np.arange(n, dtype=np.uint32))
            totals: _Totals | None = None
            step = 0
            while step < steps:
                k = 1 if per_batch else min(chunk, steps - step)
                if per_batch:
                    cbs.on_train_batch_begin(step, {})
                t0 = time.perf_counter()
                totals = self._engine_for(xf).train(
                    xf, yf, w, order[step * batch_size:(step + k) * batch_size], batch_size,
                    totals)
                elapsed = time.perf_counter() - t0
                step += k
                if not per_batch:
                    chunk = max(1, min(4096, int(k * _CHUNK_SECONDS / max(elapsed, 1e-6))))
                logs = self._logs(totals)
                cbs.on_train_batch_end(step - 1, logs)
                if self.stop_training:
                    break
            self._epochs_run += 1
            if val is not None and (epoch + 1) % validation_freq == 0:
                vb = _data.check_batch_size(validation_batch_size or batch_size,
                                            "validation_batch_size")
                val_logs = self._run_evaluate(*val, vb, cbs, verbose=0)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        return history

    def _prepare_validation(self, validation_data: Any
                            ) -> tuple[np.ndarray, Float32Array, Float32Array | None]:
        vx, vy, vw = _data.validation_parts(validation_data)
        return self._prepare(vx, vy, vw, None, "x_val", "y_val")

    def evaluate(self, x: npt.ArrayLike | None = None, y: npt.ArrayLike | None = None,
                 batch_size: int | None = None, verbose: int | str = "auto",
                 sample_weight: npt.ArrayLike | None = None, steps: int | None = None,
                 callbacks: Sequence[Callback] | None = None,
                 return_dict: bool = False) -> EvaluateResult:
        """Loss (and metrics) on the given data, in order, without training (through
        the class's own `test_step` when it overrides it)."""
        from ferrax.models import _steps

        batch_size = _data.check_batch_size(batch_size)
        if (_steps.overrides(self, "test_step") or self._metrics_outside_engine()
                or self._calls_eagerly):
            if self._compile_config is None:
                raise RuntimeError(f"You must call compile() on model '{self.name}' before "
                                   f"evaluating it")
            cbs = CallbackList(callbacks or [], self, {"verbose": _verbosity(verbose)})
            logs = _steps.evaluate(self, _steps._Data(x, y, sample_weight), batch_size, cbs,
                                   _verbosity(verbose))
            if return_dict:
                return logs
            values = list(logs.values())
            return values[0] if len(values) == 1 else values
        self._require_compiled("evaluating it")
        xf, yf, w = self._prepare(x, y, sample_weight)
        self._check_stateful_batches(len(xf), batch_size)
        steps = math.ceil(len(xf) / batch_size)
        cbs = CallbackList(callbacks or [], self, {"verbose": _verbosity(verbose),
                                                   "steps": steps})
        logs = self._run_evaluate(xf, yf, w, batch_size, cbs, _verbosity(verbose))
        return self._format_result(logs, return_dict)

    def _run_evaluate(self, xf: np.ndarray, yf: Float32Array, w: Float32Array | None,
                      batch_size: int, cbs: CallbackList, verbose: int) -> dict[str, float]:
        """Score prepared arrays in engine chunks, calling the test hooks."""
        from ferrax.callbacks import Progbar

        n = len(xf)
        steps = math.ceil(n / batch_size)
        per_batch = cbs.wants_test_batches
        bar = Progbar(steps, verbose=verbose) if verbose else None
        cbs.on_test_begin({})
        totals: _Totals | None = None
        step, chunk = 0, 1
        logs: dict[str, float] = {}
        while step < steps:
            k = 1 if per_batch else min(chunk, steps - step)
            if per_batch:
                cbs.on_test_batch_begin(step, {})
            t0 = time.perf_counter()
            totals = self._engine_for(xf).evaluate(xf, yf, w, step * batch_size,
                                                 min(n, (step + k) * batch_size), batch_size,
                                                 totals)
            elapsed = time.perf_counter() - t0
            step += k
            chunk = max(1, min(4096, int(k * _CHUNK_SECONDS / max(elapsed, 1e-6))))
            logs = self._logs(totals)
            cbs.on_test_batch_end(step - 1, logs)
            if bar is not None:
                bar.update(step, logs)
        if bar is not None:
            bar.finish(logs)
        cbs.on_test_end(logs)
        return logs

    def _format_result(self, logs: dict[str, float], return_dict: bool) -> EvaluateResult:
        if return_dict:
            return dict(logs)
        names = self.metrics_names
        if len(names) == 1:
            return logs["loss"]
        return [logs[n] for n in names]

    def predict(self, x: npt.ArrayLike, batch_size: int | None = None,
                verbose: int | str = "auto", steps: int | None = None,
                callbacks: Sequence[Callback] | None = None) -> Float32Array:
        """Outputs for `x` as a float32 array (samples first), through the class's
        own `predict_step` when it overrides it."""
        from ferrax.models import _steps

        batch_size = _data.check_batch_size(batch_size)
        if _steps.overrides(self, "predict_step") or self._calls_eagerly:
            verbosity = _verbosity(verbose)
            return _steps.predict(self, x, batch_size,
                                  CallbackList(callbacks or [], self, {"verbose": verbosity}),
                                  verbosity)
        try:
            return self._predict(x, batch_size, verbose, callbacks)
        except _SeveralOutputs:  # its call returns several tensors: run it step by step
            self._calls_eagerly = True
            return self.predict(x, batch_size, verbose, steps, callbacks)

    def _predict(self, x: npt.ArrayLike, batch_size: int, verbose: int | str = 0,
                 callbacks: Sequence[Callback] | None = None) -> Float32Array:
        """predict in the engine (never through a predict_step override)."""
        from ferrax.callbacks import Progbar

        xf = self._input_features(x, check_finite=False)
        self._check_stateful_batches(len(xf), batch_size)
        n = len(xf)
        steps = math.ceil(n / batch_size)
        verbosity = _verbosity(verbose)
        if not callbacks and not verbosity and xf.size <= _ONE_CALL_VALUES:
            # Nothing to report between batches: one engine call does them all.
            out = self._engine_for(xf).predict(xf, 0, n, batch_size)
            return self._shape_outputs(out, n)
        cbs = CallbackList(callbacks or [], self, {"verbose": verbosity, "steps": steps})
        per_batch = cbs.wants_predict_batches
        bar = Progbar(steps, verbose=verbosity) if verbosity else None
        cbs.on_predict_begin({})
        parts = []
        step, chunk = 0, 1
        while step < steps:
            k = 1 if per_batch else min(chunk, steps - step)
            if per_batch:
                cbs.on_predict_batch_begin(step, {})
            t0 = time.perf_counter()
            part = self._engine_for(xf).predict(xf, step * batch_size,
                                              min(n, (step + k) * batch_size), batch_size)
            elapsed = time.perf_counter() - t0
            parts.append(part)
            step += k
            chunk = max(1, min(4096, int(k * _CHUNK_SECONDS / max(elapsed, 1e-6))))
            cbs.on_predict_batch_end(step - 1, {"outputs": part})
            if bar is not None:
                bar.update(step)
        if bar is not None:
            bar.finish()
        cbs.on_predict_end({})
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return self._shape_outputs(out, n)

    def _input_features(self, x: Any, check_finite: bool = True) -> np.ndarray:
        """`x` checked and laid out as the engine reads it, the model built for it."""
        xa = _data.as_array(self._unpack_x(x), "x", check_finite=check_finite)
        xf = self._prepared(_data.features(xa, self._expected_input(), self.name,
                                           first_layer=self._first_layer_name))
        self._check_inputs(xa, "x")
        self._ensure_built(xa)
        return xf

    def _shape_outputs(self, out: Float32Array, n: int) -> Float32Array:
        """The engine's (n, output size) result in the last layer's shape(s)."""
        last = self._output_layer()
        assert last._output_shape is not None  # set at build
        parts = last._output_parts()
        if parts is not None:
            from ferrax.layers.recurrent import split_outputs

            return split_outputs(parts, out)  # type: ignore[return-value]
        out_shape = self._engine_output_shapes()[0]
        return self._pack_outputs(out.reshape((n, *out_shape)))

    def _call_symbolic(self, x: Any, training: bool | None = None) -> Any:
        """This model used as a layer inside another: records the call; the outer
        model's engine runs this model's layers in its place (with the same weights)."""
        from ferrax.models._trace import trace_call
        from ferrax.symbolic import KerasTensor, Node

        if self._is_subclassed():
            return trace_call(self, x, {} if training is None else {"training": training})
        tensors = list(x) if isinstance(x, (list, tuple)) else [x]
        if not all(isinstance(t, KerasTensor) for t in tensors):
            raise TypeError(f"Model '{self.name}': a nested model is called on symbolic "
                            f"tensors, got {describe(x)}")
        own = list(getattr(self, "inputs", [])) or [None]
        if len(tensors) != len(own):
            raise ValueError(f"Model '{self.name}' has {len(own)} input(s), but is called on "
                             f"{len(tensors)}")
        for t, mine in zip(tensors, own):
            shape = tuple(t.shape[1:])
            if any(d is None for d in shape):
                raise ValueError(f"Model '{self.name}': input '{t.name}' has shape {t.shape}; "
                                 f"a nested model needs inputs of known length")
            want = tuple(mine.shape[1:]) if mine is not None else (
                tuple(self._input_shape) if self.built else None)
            if want is None:
                self.build((None, *shape))
                want = tuple(self._input_shape)
            if want != shape:
                raise ValueError(f"Model '{self.name}' expects inputs of shape "
                                 f"{(None, *want)}, but is called on '{t.name}' of shape "
                                 f"{t.shape}")
        if self._output_layer()._output_parts() is not None and \
                self._connections() is None:
            raise NotImplementedError(f"Model '{self.name}': a nested stack whose last layer "
                                      f"returns its states is not supported")
        batch = tensors[0].shape[0]
        own_outputs = getattr(self, "_output_tensors", None)
        shapes = ([tuple(t.shape[1:]) for t in own_outputs] if own_outputs is not None
                  else [tuple(self.output_shape[1:])])
        outs = [KerasTensor((batch, *s), "float32") for s in shapes]
        Node(self, tensors, outs, as_list=isinstance(x, (list, tuple)))  # type: ignore[arg-type]
        return outs[0] if len(outs) == 1 else outs

    def __call__(self, x: npt.ArrayLike, *args: Any, training: bool | None = None,
                 mask: Any = None, **kwargs: Any) -> Any:
        """On symbolic tensors: records the call (a nested model). On arrays or eager
        tensors: the outputs now. Under a GradientTape (or with `training=True`) the
        model runs forward in the engine as one recorded node. A subclassed model
        whose call takes more arguments (`model(x, hidden)`), or returns several
        tensors, runs its `call` eagerly instead, each built-in layer in the engine."""
        if any_symbolic(x):
            if args or kwargs:
                return self._run_call(x, args, kwargs, training)
            fixed = fixed_training(f"Model '{self.name}'", training)
            return fixing_training(self, fixed, lambda: self._call_symbolic(x, fixed))
        from ferrax.layers import _eager
        from ferrax.ops import _dispatch

        if training is None and _eager._TRAINING:  # inside a call run eagerly
            training = _eager._TRAINING[-1]
        if args or kwargs or (self._is_subclassed() and (
                self._calls_eagerly or isinstance(x, (list, tuple, dict)))):
            return self._run_call(x, args, kwargs, training)  # (refuses them unless subclassed)
        try:
            if _dispatch._TAPES or training:
                return self._call_under_tape(x, bool(training))
            leaves = flatten(x)
            rows = len(leaves[0]) if leaves and np.ndim(leaves[0]) else 1
            return self._predict(x, batch_size=max(1, rows))
        except _SeveralOutputs:
            self._calls_eagerly = True
            return self._run_call(x, args, kwargs, training)

    def _run_call(self, x: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                  training: bool | None) -> Any:
        """A subclassed model's `call` run as Python, on what it was given: its layers
        and ops compute (and a GradientTape records them) one by one."""
        import inspect

        from ferrax.layers import _eager

        if not self._is_subclassed():
            raise TypeError(f"Model '{self.name}': unexpected call arguments "
                            f"{[*map(repr, args), *sorted(kwargs)]}")
        params = inspect.signature(self.call).parameters
        if "training" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                       for p in params.values()):
            kwargs = {**kwargs, "training": training}
        with _eager.training_mode(training):
            return self.call(x, *args, **kwargs)

    def _call_under_tape(self, x: Any, training: bool) -> Any:
        """`model(x)` while a GradientTape records: the whole model runs forward in the
        engine as one recorded node, whose backward is the engine's, and passes the
        gradient on to any input tensor a tape tracks (a GAN's generator output, an
        LSTM's initial state). A model called several times under one tape runs an
        earlier call's forward again before its backward (with the same dropout
        masks), at the weights of then: update the weights after taking the gradients.
        Also how `model(x, training=True)` runs outside a tape (nothing recorded)."""
        from ferrax.ops import _dispatch

        xf = self._input_features(x)  # (builds the model: first, as the checks read it)
        # a stack whose last layer returns its states: [output, states...] side by side
        parts = self._output_layer()._output_parts() if self._output_list() is None else None
        core = self._engine_for(xf)
        x32 = np.ascontiguousarray(xf, dtype=np.float32)
        n = len(x32)
        keys = core.random_keys  # (a replay draws the same dropout masks)
        flat = core.tape_forward(x32, training)
        outs, at = [], 0
        for shape in parts or self._engine_output_shapes():
            size = math.prod(shape)
            outs.append(Tensor(flat[:, at:at + size].reshape((n, *shape))))
            at += size
        # the losses its layers' calls added (add_loss): model.losses until the next call
        call_losses = ([Tensor(np.float32(v)) for v in core.tape_call_losses()]
                       if self._has_added_losses else [])
        self._call_losses = call_losses
        run = core.forward_runs
        variables = self.trainable_weights
        sources, widths = self._input_parts(x, x32.shape[1])

        def backward(dys: list[np.ndarray | None], want: list[bool]
                     ) -> list[tuple[Any, np.ndarray]]:
            if core.forward_runs != run:
                # The model ran again since: the engine keeps one call's activations.
                core.tape_replay(x32, training, keys)
            loss_dys = [0.0 if d is None else float(np.asarray(d))
                        for d in dys[len(outs):]] if call_losses else None
            parts = [np.zeros((n, math.prod(o.shape[1:])), np.float32)
                     if d is None else np.asarray(d, np.float32).reshape(n, -1)
                     for o, d in zip(outs, dys)]
            dy = np.ascontiguousarray(parts[0] if len(parts) == 1 else
                                      np.concatenate(parts, axis=1))
            if not any(want):
                grads = core.tape_backward(n, dy, loss_dys)
                return [(v, grads[v._index]) for v in variables]
            *grads, dx = core.tape_backward_to_input(n, dy, loss_dys)
            pairs = [(v, grads[v._index]) for v in variables]
            at = 0
            for source, width, wanted in zip(sources, widths, want):
                if wanted:
                    pairs.append((source, dx[:, at:at + width].reshape(source.shape)))
                at += width
            return pairs

        for tape in _dispatch._TAPES:
            tape._record_call(f"Model '{self.name}'", sources, variables,
                              outs + call_losses, backward)
        return self._structure_outputs(outs)

    def _input_parts(self, x: Any, width: int) -> tuple[list[Any], list[int]]:
        """The tensors of a call's input, one per model input in the engine's order
        (None where an input is no tensor), and each one's values per sample."""
        if isinstance(x, dict):
            parts: list[Any] = [x.get(name) for name in getattr(self, "input_names", [])]
        elif not isinstance(x, (list, tuple)):  # one input, laid out as given
            return [x if isinstance(x, Tensor) else None], [width]
        else:
            parts = list(x)
        # (math.prod: a few µs a call less than NumPy's, on the tape's per-step path)
        widths = [math.prod(np.shape(p)[1:]) for p in parts]
        if sum(widths) != width:  # (an input laid out otherwise: no input gradients)
            return [None], [width]
        return [p if isinstance(p, Tensor) else None for p in parts], widths

    def _structure_outputs(self, outs: list[Any]) -> Any:
        """A call's output tensors in the structure the model's outputs were given in."""
        if len(outs) == 1:
            return self._pack_outputs(outs[0])
        struct = getattr(self, "_outputs_struct", None)
        if isinstance(struct, dict):
            return dict(zip(struct, outs))
        return outs

    # --- custom steps: what a train_step override calls ---------------------------
    def train_step(self, data: Any) -> dict[str, Any]:
        """One training step on a batch, as `fit` runs it for a class that overrides
        this (Keras's customizing-fit API). `data` is what fit was given, sliced to a
        batch of tensors: `x`, `(x, y)` or `(x, y, sample_weight)`. It returns the
        logs, a dict of metric values by name.

        This default runs the model under a GradientTape, takes `compute_loss`, lets
        the optimizer apply the gradients and returns `compute_metrics`; a model that
        does not override any step never calls it (the engine's fused loop runs).

        Example:

        >>> class CustomModel(ferrax.Model):
        ...     def train_step(self, data):
        ...         x, y = data
        ...         with ferrax.GradientTape() as tape:
        ...             y_pred = self(x, training=True)
        ...             loss = self.compute_loss(y=y, y_pred=y_pred)
        ...         grads = tape.gradient(loss, self.trainable_variables)
        ...         self.optimizer.apply(grads, self.trainable_variables)
        ...         for metric in self.metrics:
        ...             if metric.name == "loss":
        ...                 metric.update_state(loss)
        ...             else:
        ...                 metric.update_state(y, y_pred)
        ...         return {m.name: m.result() for m in self.metrics}
        """
        from ferrax.tape import GradientTape
        from ferrax.utils import unpack_x_y_sample_weight

        x, y, sample_weight = unpack_x_y_sample_weight(data)
        with GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=True)
        self._track_loss(loss, x)
        variables = self.trainable_variables
        self._compiled_optimizer("train_step").apply(tape.gradient(loss, variables),
                                                      variables)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def test_step(self, data: Any) -> dict[str, Any]:
        """One evaluation step on a batch (see `train_step`): the model's outputs in
        inference mode, the loss tracked and the compiled metrics updated.

        Args:
            data: The batch as evaluate packs it: `x`, `(x, y)` or `(x, y, sample_weight)`.

        Returns:
            The logs, a dict of metric values by name.

        Example:

        >>> class Scored(ferrax.Model):
        ...     def test_step(self, data):
        ...         x, y = data
        ...         return {"error": ferrax.ops.mean(ferrax.ops.abs(self(x) - y))}
        """
        from ferrax.utils import unpack_x_y_sample_weight

        x, y, sample_weight = unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        loss = self.compute_loss(x, y, y_pred, sample_weight, training=False)
        self._track_loss(loss, x)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def predict_step(self, data: Any) -> Any:
        """One prediction step on a batch (see `train_step`): the model's outputs.

        Args:
            data: The batch of `x` that predict was given.

        Example:

        >>> class Doubled(ferrax.Model):
        ...     def predict_step(self, data):
        ...         return 2.0 * self(data, training=False)
        """
        from ferrax.utils import unpack_x_y_sample_weight

        x, _, _ = unpack_x_y_sample_weight(data)
        return self(x, training=False)

    def _track_loss(self, loss: Any, x: Any) -> None:
        """The loss tracker's update, weighted by the batch's size as Keras weighs it."""
        if self._loss_tracker is not None:
            self._loss_tracker.update_state(loss, sample_weight=len(flatten(x)[0]))

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None,
                     sample_weight: Any = None, training: bool = True) -> Any:
        """The compiled loss of `y` and `y_pred` (each output's times its loss weight)
        plus `model.losses`, as a scalar tensor (zero when there is neither).

        Args:
            x: The inputs (unused, as in Keras's default).
            y: The targets.
            y_pred: The model's outputs for `x`.
            sample_weight: One weight per sample (or per output, a list or dict).
            training: Whether this is a training step.

        Example:

        >>> loss = model.compute_loss(y=y, y_pred=model(x, training=True))
        """
        return self.compiled_loss(y, y_pred, sample_weight, self.losses)

    def compiled_loss(self, y: Any, y_pred: Any, sample_weight: Any = None,
                      regularization_losses: Any = None) -> Any:
        """Keras 2's name: the compiled loss of `y` and `y_pred` plus the given
        regularization losses (prefer `compute_loss`).

        Args:
            y: The targets.
            y_pred: The model's outputs.
            sample_weight: One weight per sample (or per output, a list or dict).
            regularization_losses: Scalar tensors added to the loss.

        Example:

        >>> loss = model.compiled_loss(y, y_pred, regularization_losses=model.losses)
        """
        from ferrax import ops
        from ferrax.models._compiled import compiled_loss

        total = compiled_loss(self, y, y_pred, sample_weight)
        for extra in regularization_losses or []:
            total = extra if total is None else ops.add(total, extra)
        return ops.convert_to_tensor(0.0) if total is None else total

    @property
    def compiled_metrics(self) -> Any:
        """Keras 2's name: the compiled metrics, one object (`update_state(y, y_pred)`)."""
        from ferrax.models._compiled import CompileMetrics

        return self._compile_metrics or CompileMetrics(self)

    def compute_metrics(self, x: Any, y: Any, y_pred: Any,
                        sample_weight: Any = None) -> dict[str, Any]:
        """Update the compiled metrics with a batch and return every metric's result
        (`get_metrics_result`).

        Args:
            x: The inputs (unused, as in Keras's default).
            y: The targets.
            y_pred: The model's outputs.
            sample_weight: One weight per sample (or None).

        Example:

        >>> logs = model.compute_metrics(x, y, y_pred)   # {"loss": ..., "mae": ...}
        """
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(y, y_pred, sample_weight)
        return self.get_metrics_result()

    def get_metrics_result(self) -> dict[str, Any]:
        """Every metric's result by name (the compiled metrics' by their own names),
        as Python floats.

        Example:

        >>> model.get_metrics_result()   # {"loss": 0.25, "mae": 0.4}
        """
        from ferrax.models._steps import pythonify

        results: dict[str, Any] = {}
        for m in self.metrics:
            r = m.result()
            if isinstance(r, dict):
                results.update(r)
            else:
                results[m.name] = r
        return pythonify(results, self, "get_metrics_result")

    @property
    def metrics(self) -> list[metrics_module.Metric]:
        """The metrics a custom step updates, in Keras's order: the loss tracker and
        the compiled metrics (after compile), then the Metric objects set as this
        model's attributes. fit resets them at each epoch's start."""
        out: list[metrics_module.Metric] = []
        if self._loss_tracker is not None:
            out.append(self._loss_tracker)
        if self._compile_metrics is not None:
            out.append(self._compile_metrics)
        for key, value in self.__dict__.items():
            if not key.startswith("_") and isinstance(value, metrics_module.Metric) and \
                    all(value is not m for m in out):
                out.append(value)
        return out

    def reset_metrics(self) -> None:
        """Reset the state of every metric in `model.metrics` (fit does it at each
        epoch's start).

        Example:

        >>> model.reset_metrics()
        """
        for m in self.metrics:
            m.reset_state()

    @property
    def losses(self) -> list[Any]:
        """The regularization penalties of the trainable weights, as scalar tensors
        made of ops, then the losses the layers added (add_loss) in the model's last
        call under a GradientTape: a tape records them all, and `compute_loss` adds
        them, as in Keras."""
        from ferrax.models._compiled import regularization_losses

        if not self.built and self._holds_layers():  # a GAN's, a VAE's: its submodels'
            from ferrax.layers._weights import tracked

            return [t for m in tracked(self, Model) for t in m.losses]
        out = regularization_losses(self)
        if self._engine_layers() and self._has_added_losses:
            if self._call_losses is None:
                raise ValueError(
                    f"Model '{self.name}': its layers add losses (add_loss) when called; "
                    f"model.losses holds them after a call under a GradientTape (or with "
                    f"training=True), and this model has not been called so yet")
            out += self._call_losses
        return out

    @_claims.trains
    def train_on_batch(self, x: npt.ArrayLike, y: npt.ArrayLike | None = None,
                       sample_weight: npt.ArrayLike | None = None,
                       class_weight: dict[int, float] | None = None,
                       return_dict: bool = False) -> EvaluateResult:
        """One update on exactly this batch; returns its loss (and metrics)."""
        self._require_compiled("training it (train_on_batch)")
        xf, yf, w = self._prepare(x, y, sample_weight, class_weight)
        order = np.arange(len(xf), dtype=np.uint32)
        result = self._engine_for(xf).train(xf, yf, w, order, len(xf))
        return self._format_result(self._logs(result), return_dict)

    def test_on_batch(self, x: npt.ArrayLike, y: npt.ArrayLike | None = None,
                      sample_weight: npt.ArrayLike | None = None,
                      return_dict: bool = False) -> EvaluateResult:
        self._require_compiled("evaluating it (test_on_batch)")
        xf, yf, w = self._prepare(x, y, sample_weight)
        result = self._engine_for(xf).evaluate(xf, yf, w, 0, len(xf), len(xf))
        return self._format_result(self._logs(result), return_dict)

    def predict_on_batch(self, x: npt.ArrayLike) -> Float32Array:
        return self.predict(x, batch_size=max(1, len(np.asarray(x))), verbose=0)

    # --- description -------------------------------------------------------
    def summary(self, line_length: int | None = None, positions: Sequence[float] | None = None,
                print_fn: Callable[[str], object] | None = None, expand_nested: bool = False,
                show_trainable: bool = False, layer_range: Any = None) -> None:
        """Print layers, output shapes and parameter counts, as Keras does."""
        from ferrax.models._summary import summary_lines

        emit = print_fn or print
        for line in summary_lines(self):
            emit(line)

    def get_config(self) -> Config:
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Any:
        """A model from its `get_config()`: a functional config (with `input_layers`) gives
        a functional model, a layer list a Sequential one."""
        from ferrax.models.functional import Functional
        from ferrax.models.sequential import Sequential

        if cls.call is not Model.call:  # a subclassed model: its own constructor
            try:
                return cls(**config)
            except TypeError:
                if not set(config) <= {"name", "trainable"}:
                    raise
            model = cls()
            model.name = config.get("name", model.name)
            return model
        if "input_layers" in config:
            return Functional.from_config(config)
        return Sequential.from_config(config)

    # --- files -------------------------------------------------------------
    def save(self, filepath: PathLike, overwrite: bool = True) -> None:
        """Save the whole model (architecture, weights, optimizer state) to a .ferrax file."""
        from ferrax import saving

        saving.save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath: PathLike, overwrite: bool = True) -> None:
        """Save the weights to a .weights.safetensors file."""
        from ferrax import saving

        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath: PathLike) -> None:
        """Load weights saved by save_weights."""
        from ferrax import saving

        saving.load_weights(self, filepath)


# predict makes a single engine call (no progress, no chunks) up to this many input values:
# large enough for MNIST's test set, small enough that Ctrl-C still answers quickly.
_ONE_CALL_VALUES = 1 << 24


def begin_fit(model: Model, callbacks: Sequence[Callback] | None, verbosity: int, epochs: int,
              steps: int, initial_epoch: int) -> tuple[CallbackList, History, int]:
    """fit's callbacks, History and progress bar, started (`on_train_begin`), and the
    epoch to start at (a callback such as BackupAndRestore may resume a run)."""
    history = History()
    # As in Keras, History and the progress bar come last: they see what the user's
    # callbacks added to the logs (e.g. learning_rate).
    cb_list: list[Callback] = list(callbacks or []) + [history]
    if verbosity:
        cb_list.append(ProgbarLogger(verbosity))
    cbs = CallbackList(cb_list, model, {"verbose": verbosity, "epochs": epochs,
                                        "steps": steps})
    model.history = history
    model.stop_training = False
    cbs.on_train_begin({})
    if isinstance(model._initial_epoch, int):
        initial_epoch, model._initial_epoch = model._initial_epoch, None
    return cbs, history, initial_epoch


def _check_int(arg: str, value: Any, low: int) -> None:
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"'{arg}' must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"'{arg}' must be >= {low}, got {value}")


def _verbosity(verbose: int | str) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2, True, False):
        raise ValueError(f"'verbose' must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)



def _warn_probabilities_as_logits(loss: Any, last_layer: Any) -> None:
    """Keras's warning for a from_logits=True cross-entropy on an output that a
    softmax or sigmoid already turned into probabilities (it trains, badly)."""
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    if not config.get("from_logits"):
        return
    activation = ("softmax" if type(last_layer).__name__ == "Softmax"
                  else getattr(last_layer, "activation", None))
    if activation in ("softmax", "sigmoid"):
        warnings.warn(f"{type(loss).__name__} has from_logits=True, but the output of layer "
                      f"'{last_layer.name}' comes from a {activation} activation and so is "
                      f"not logits: drop the {activation} (activation=None) or use "
                      f"from_logits=False", UserWarning, stacklevel=_outside_ferrax())


def _outside_ferrax() -> int:
    """The stacklevel of the first caller outside the ferrax package (a warning
    then names the user's line)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level

def _traced(metric: Any) -> bool:
    return isinstance(metric, metrics_module.MetricFunctionWrapper)


class _HeadFunctions(NamedTuple):
    """The functions traced after one output, and the shapes they are traced for."""

    target_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    loss: Any  # a LossFunctionWrapper, or None (a built-in loss)
    metrics: tuple[Any, ...]


class _LossCall:
    """A loss or metric function as a traced call. A loss (`per_sample`) gives each
    sample's loss, its result averaged over the axes after the batch's, which the
    engine weighs and averages over the batch as Keras's sum_over_batch_size does
    (a result with no batch axis counts as it is); a metric gives its batch mean."""

    def __init__(self, loss: Any, per_sample: bool = False) -> None:
        self.loss, self.name, self.per_sample = loss, loss.name, per_sample

    def call(self, pair: Any) -> Any:
        from ferrax import ops
        from ferrax.symbolic import KerasTensor

        value = self.loss.fn(pair[0], pair[1])
        if self.per_sample and isinstance(value, KerasTensor) and value.batched:
            if value.ndim > 1:
                value = ops.mean(value, axis=tuple(range(1, value.ndim)))
            return value
        return ops.mean(value)



class _SeveralOutputs(NotImplementedError):
    """A subclassed model's call returned several tensors: the engine graph of a model
    has one output for it, so its call runs eagerly."""


_FUNCTIONAL_SUBCLASSES: dict[type, type] = {}


def _functional_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether Model's arguments are a functional model's (inputs, outputs)."""
    return (len(args) == 2 or (len(args) == 1 and "outputs" in kwargs)
            or ("inputs" in kwargs and "outputs" in kwargs))


def _functional_subclass(cls: type) -> type:
    """`cls` (a Model subclass without call()) combined with Functional, so that
    `cls(inputs, outputs)` is a functional model that keeps the subclass's methods
    (train_step, metrics), as Keras does for `CustomModel(inputs, outputs)`."""
    from ferrax.models.functional import Functional

    combined = _FUNCTIONAL_SUBCLASSES.get(cls)
    if combined is None:
        combined = type(cls.__name__, (cls, Functional), {"__module__": cls.__module__,
                                                           "__qualname__": cls.__qualname__})
        _FUNCTIONAL_SUBCLASSES[cls] = combined
    return combined
