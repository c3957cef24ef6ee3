"""The Layer base class: configuration, naming, and weights held by the engine."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ferrax._serial import describe, snake_case
from ferrax._typing import Config, Float32Array, Shape
from ferrax.symbolic import KerasTensor, Node, any_symbolic, flatten

if TYPE_CHECKING:
    from typing_extensions import Self

    from ferrax.models.model import Model

_NAME_COUNTERS: defaultdict[str, itertools.count[int]] = defaultdict(itertools.count)

# Lengths an axis of unknown length (None) is given to run the engine's shape rules (two,
# far apart: an output axis that follows the input's length differs between them), and
# the one a model is first built with.
PROBE_LENGTHS = (60, 96)


def at_probe_lengths(shapes: Sequence[Sequence[int | None]],
                     rule: Callable[[list[list[int]]], Any]) -> list[Any]:
    """`rule` run on concrete `shapes`: once, or, when an axis has unknown length
    (None), once at each probe length, so that what follows that length shows."""
    variable = any(d is None for s in shapes for d in s)
    return [rule([[length if d is None else int(d) for d in s] for s in shapes])
            for length in (PROBE_LENGTHS if variable else (0,))]


def unknown_where_they_differ(a: Sequence[int], b: Sequence[int]) -> list[int | None]:
    """The dims of two probe runs' shapes: None where they follow the probe length."""
    return [x if x == y else None for x, y in zip(a, b)]


class TracedTraining:
    """What a traced `call` gets as `training`: the engine switches Dropout and
    BatchNormalization between training and inference by itself, so the flag may be
    passed on to layers, but Python cannot branch on it (that would trace one branch
    and silently run it in both modes)."""

    def __bool__(self) -> bool:
        from ferrax.symbolic import _user_line

        raise TypeError(f"call() branches on its 'training' argument in Python{_user_line()}"
                        f"; a traced call runs the same graph in training and in inference. "
                        f"Pass training= on to the layers (Dropout, BatchNormalization "
                        f"switch by themselves), or train with a GradientTape loop")

    def __repr__(self) -> str:
        return "<training: decided by the engine at each step>"


TRACED_TRAINING = TracedTraining()


def fixing_training(caller: Any, training: bool | None, record: Callable[[], Any]) -> Any:
    """The result of `record` (which records one call of the layer or model `caller`),
    the call marked to run in training mode `training` (None: the model's mode)."""
    out = record()
    if training is not None:
        caller._inbound_nodes[-1].training = training
    return out


def fixed_training(owner: str, training: Any) -> bool | None:
    """The training mode a symbolic call's `training=` argument fixes: True or False, or
    None when it follows the model (not given, None, or a traced call's own flag)."""
    if training is None or isinstance(training, TracedTraining):
        return None
    if isinstance(training, (bool, np.bool_)):
        return bool(training)
    raise TypeError(f"{owner}: training must be True, False or None, got {describe(training)}")


def unique_name(prefix: str) -> str:
    """Keras-style auto names: 'dense', then 'dense_1', 'dense_2', ..."""
    n = next(_NAME_COUNTERS[prefix])
    return prefix if n == 0 else f"{prefix}_{n}"


class Variable:
    """A weight of a built model, read from and written to the engine."""

    def __init__(self, model: Model, index: int, name: str, shape: Iterable[int],
                 trainable: bool = True, key: Any = None) -> None:
        self._model, self._index = model, index
        # what a tape and an optimizer know it by: its layer and its place there, the
        # same in every model that runs the layer (see variables.variable_key)
        self._tape_key = ("weight", id(model), index) if key is None else key
        self.name, self.shape = name, tuple(shape)
        self.dtype = "float32"
        self.trainable = trainable

    @property
    def path(self) -> str:
        return self.name

    def numpy(self) -> Float32Array:
        return self._model._built_core().get_weights()[self._index]

    def assign(self, value: npt.ArrayLike) -> None:
        weights = self._model._built_core().get_weights()
        array = np.asarray(value, dtype=np.float32)
        if array.shape != self.shape:
            raise ValueError(f"Variable '{self.name}': expected shape {self.shape}, "
                             f"got {array.shape}")
        weights[self._index] = array
        self._model._built_core().set_weights([np.ascontiguousarray(w) for w in weights])

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None
                  ) -> npt.NDArray[Any]:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __repr__(self) -> str:
        return f"<Variable path={self.name}, shape={self.shape}, dtype=float32>"


class Layer:
    """Base layer. Subclasses define `_engine_config()`; the engine builds and runs them."""

    def __init__(self, name: str | None = None, trainable: bool = True, dtype: Any = None,
                 input_shape: Sequence[int] | None = None, input_dim: int | None = None,
                 batch_input_shape: Sequence[int | None] | None = None, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) "
                            f"{', '.join(sorted(kwargs))}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: 'name' must be a string, "
                            f"got {describe(name)}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.trainable = bool(trainable)
        self._input_shape: tuple[int, ...] | None = None
        if batch_input_shape is not None:
            # the batch axis dropped, the rest is checked by _check_shape
            input_shape = tuple(batch_input_shape)[1:]  # type: ignore[assignment]
        if input_shape is not None:
            self._input_shape = _check_shape(self.name, "input_shape", input_shape)
        elif input_dim is not None:
            self._input_shape = _check_shape(self.name, "input_dim", (input_dim,))
        # The built model whose engine holds this layer's current weights (several
        # models may share the layer: the one that ran last holds them).
        self._model: Model | None = None
        self._weight_slice = slice(0, 0)
        self._output_shape: tuple[int, ...] | None = None
        # Calls on symbolic tensors (ferrax.Input and what layers return from it).
        self._inbound_nodes: list[Node] = []
        self._call_weight_shapes: list[list[int]] = []  # the weights its calls need
        # A custom layer (its own call()): whether build() ran, and its add_weight weights.
        self._custom_built = False
        self._own_variables: list[Any] = []
        # Models that run the layer on arrays (an eager call), by input shape.
        self._eager_models: dict[tuple[Any, ...], Any] = {}

    # --- calls -------------------------------------------------------------
    # Merge layers are called on a list of tensors; every other layer on one.
    _takes_list = False

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the layer on symbolic tensors (`ferrax.Input(...)` and what layers
        return from it): records the call in the model graph and returns the output
        tensor, whose shape follows from the layer's shape rule. Called on arrays, it
        computes the result now (building the layer for their shape)."""
        if self._takes_list and isinstance(inputs, (list, tuple)) and not inputs:
            self._check_call_inputs(list(inputs))
        if not any_symbolic(inputs):
            return self._call_eager(inputs, args, kwargs)
        if args and self._traced_call():
            kwargs = _positional_as_keywords(self, inputs, args, kwargs)
            args = ()
        training = fixed_training(f"{type(self).__name__} '{self.name}'",
                                  kwargs.get("training"))
        if self._traced_call():
            self._build_custom(inputs)
            return fixing_training(self, training, lambda: _trace_call(self, inputs, kwargs))
        kwargs.pop("training", None)
        kwargs.pop("mask", None)  # masks flow through the engine, not through calls
        initial_state = kwargs.pop("initial_state", None)
        if args or kwargs:
            extra = [repr(a) for a in args] + sorted(kwargs)
            raise NotImplementedError(f"{type(self).__name__} '{self.name}': call arguments "
                                      f"{', '.join(extra)} are not supported yet")
        if initial_state is not None:
            return fixing_training(self, training,
                                   lambda: self._call_with_state(inputs, initial_state))
        return fixing_training(self, training, lambda: self._call_symbolic(inputs))

    # --- custom layers ---------------------------------------------------------
    def call(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """The layer's computation; a custom layer overrides it, using `ferrax.ops` and
        other layers. (Built-in layers run in the engine and do not.)"""
        raise NotImplementedError(f"{type(self).__name__} '{self.name}' has no call(): "
                                  f"built-in layers run in the engine")

    def _traced_call(self) -> bool:
        """Whether this is a custom layer whose `call` is traced into the graph."""
        return type(self).call is not Layer.call

    def build(self, input_shape: Any = None) -> None:
        """Create the layer's weights for inputs of `input_shape` (batch axis first);
        a custom layer overrides it and calls `add_weight`."""
        self._custom_built = True

    def _build_custom(self, inputs: Any) -> None:
        if self._custom_built:
            return
        shapes = [tuple(t.shape) for t in flatten(inputs)]
        arg: Any = shapes[0] if isinstance(inputs, KerasTensor) else shapes
        if isinstance(inputs, dict):
            arg = {k: tuple(v.shape) for k, v in inputs.items()}
        self.build(arg)
        self._custom_built = True

    def add_weight(self, shape: Sequence[int] | None = None, initializer: Any = None,
                   dtype: Any = None, trainable: bool = True, autocast: bool = True,
                   regularizer: Any = None, constraint: Any = None, aggregation: Any = None,
                   name: str | None = None) -> Any:
        """Add a weight to the layer (in `build` or `__init__`).

        Args:
            shape: Its shape (a scalar when None).
            initializer: An initializer name, config or object; "glorot_uniform" when
                None.
            dtype: Its type (float32 only).
            trainable: Whether fit trains it.
            regularizer: A regularizer, whose penalty joins the loss.
            constraint: Not supported (must be None).
            name: Its name, unique within the layer.

        Returns:
            The weight, usable in `call` with `ferrax.ops` and Python operators.

        Example:

        >>> class Scale(ferrax.layers.Layer):
        ...     def build(self, input_shape):
        ...         self.scale = self.add_weight(shape=(input_shape[-1],),
        ...                                      initializer="ones")
        ...     def call(self, x):
        ...         return x * self.scale
        """
        from ferrax.layers._weights import make_weight

        v = make_weight(self.name, len(self._own_variables), shape, initializer, dtype,
                        trainable, regularizer, constraint, name)
        if not self._trainable:
            v._holder.trainable = False
        self._own_variables.append(v)
        return v

    def add_loss(self, loss: Any) -> None:
        """Add `loss` to the training loss (in `call`): a tensor computed from the
        call's inputs or the layer's weights, summed to one number as Keras sums added
        losses (an activity penalty, a VAE's KL term).

        Args:
            loss: The tensor.

        Example:

        >>> class ActivityPenalty(ferrax.layers.Layer):
        ...     def call(self, x):
        ...         self.add_loss(0.01 * ferrax.ops.mean(ferrax.ops.square(x)))
        ...         return x
        """
        from ferrax.ops._dispatch import add_loss

        add_loss(f"Layer '{self.name}'", loss)

    def _tracked_layers(self) -> list[Any]:
        """Layers (and models) held as attributes, also in lists and dicts."""
        from ferrax.layers._weights import tracked

        return tracked(self, Layer)

    def _call_eager(self, inputs: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        """The layer run on arrays: a model of the layer alone, one per input shape
        (built once; it holds the weights until another model runs the layer)."""
        from ferrax.layers._eager import call_eager

        return call_eager(self, inputs, args, kwargs)

    def _call_with_state(self, inputs: Any, initial_state: Any) -> Any:
        raise TypeError(f"{type(self).__name__} '{self.name}' takes no initial_state "
                        f"(recurrent layers do)")

    def _check_call_inputs(self, inputs: Sequence[Any]) -> None:
        """Checks of a merge layer on its list of inputs (their number)."""

    def _call_symbolic(self, inputs: Any, states: Sequence[Any] = ()) -> Any:
        """Records a call on symbolic tensors: `inputs` (a list for a merge layer), and
        for a recurrent layer its `states` (initial_state), which travel as further inputs.
        Returns the output, or [output, states...] for a layer with return_state."""
        import json

        from ferrax import _core, _memory

        owner = f"{type(self).__name__} '{self.name}'"
        if self._takes_list:
            if not isinstance(inputs, (list, tuple)):
                raise TypeError(f"{owner}: a merge layer is called on a list of tensors, "
                                f"got {describe(inputs)}")
            tensors = list(inputs)
            self._check_call_inputs(tensors)
        else:
            if isinstance(inputs, (list, tuple)):
                raise TypeError(f"{owner}: expects one input tensor, got a list of "
                                f"{len(inputs)}; only merge layers (Add, Concatenate, ...) "
                                f"take several")
            tensors = [inputs]
        tensors += list(states)
        for t in tensors:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"{owner}: inputs must all be symbolic tensors "
                                f"(from ferrax.Input), got {describe(t)}")
        shapes = [t.shape[1:] for t in tensors]
        # Axes of unknown length (None): the shape rule runs at two lengths; output axes
        # that follow the length are unknown too, and the weights must not depend on it.
        spec = json.dumps(_shape_only(self._core_spec()))
        try:
            budget = _memory.weight_budget()
            runs = at_probe_lengths(shapes,
                                    lambda s: _core.layer_output_shape(spec, s, budget))
        except ValueError as e:
            text = str(e)
            where = "" if self.name in text else f"{owner}: "
            raise ValueError(f"{where}{text} (called on inputs of shape "
                             f"{', '.join(str(t.shape) for t in tensors)})") from None
        first_out, weight_shapes = runs[0]
        out: list[int | None] = list(first_out)
        if len(runs) > 1:
            other, other_weights = runs[1]
            if other_weights != weight_shapes or len(other) != len(out):
                raise ValueError(
                    f"{owner} needs inputs whose axes all have a known length, got "
                    f"{', '.join(str(t.shape) for t in tensors)}: its weights would depend on "
                    f"the length of the None axes (a Flatten or Dense after an input of "
                    f"unknown length?). Give those axes a length, or reduce them first "
                    f"(GlobalAveragePooling1D, an RNN without return_sequences)")
            out = unknown_where_they_differ(first_out, other)
        # The weights it already has (from an earlier call, or a model that built it)
        # decide which inputs it may take.
        if self._inbound_nodes:
            first = self._inbound_nodes[0].input_tensors
            known = self._call_weight_shapes
            source = f"first called on inputs of shape {', '.join(str(t.shape) for t in first)}"
        else:
            known = [list(v.shape) for v in self.weights] if self.built else weight_shapes
            source = "built"
        if weight_shapes != known:
            raise ValueError(
                f"{owner} was {source}, with weights of shapes {[tuple(w) for w in known]}; "
                f"it cannot be called on {', '.join(str(t.shape) for t in tensors)}, which "
                f"would need weights of shapes {[tuple(w) for w in weight_shapes]}")
        self._call_weight_shapes = weight_shapes
        # concrete (at the first probe length) until a model's engine sets the real one
        self._output_shape = tuple(first_out)
        batch = tensors[0].shape[0]
        parts = self._symbolic_parts(tensors[0])
        outputs = [KerasTensor((batch, *p), "float32") for p in parts or [tuple(out)]]
        Node(self, tensors, outputs, as_list=self._takes_list, states=len(states))
        return outputs if parts is not None else outputs[0]

    def _symbolic_parts(self, first_input: KerasTensor) -> list[tuple[int | None, ...]] | None:
        """The per-sample shapes of each output when the layer has several
        (return_state), for a call on `first_input`; None for one output."""
        return None

    def _single_node(self, what: str) -> Node:
        if not self._inbound_nodes:
            raise AttributeError(f"Layer '{self.name}' has never been called on symbolic "
                                 f"tensors and thus has no defined {what}")
        return self._inbound_nodes[0]

    @property
    def input(self) -> Any:
        """The symbolic input(s) of the layer's call in a functional model."""
        node = self._single_node("input")
        return list(node.input_tensors) if node.as_list else node.input_tensors[0]

    @property
    def output(self) -> Any:
        """The symbolic output of the layer's call in a functional model (a list for a
        layer with several outputs)."""
        outputs = self._single_node("output").output_tensors
        return list(outputs) if len(outputs) > 1 else outputs[0]

    # --- configuration -------------------------------------------------
    def get_config(self) -> Config:
        config = {"name": self.name, "trainable": self.trainable, "dtype": "float32"}
        config.update(self._public_config())
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        config = dict(config)
        config.pop("dtype", None)
        return cls(**config)

    def _public_config(self) -> Config:
        return {}

    def _engine_config(self) -> Config:
        return self._public_config()

    def _weight_path(self, index: int, name: str) -> str:
        """The unique name of this layer's weight number `index` (engine name `name`)."""
        return f"{self.name}/{name}"

    def _check_inputs(self, x: np.ndarray, arg: str) -> None:
        """Value checks on a model's input when this layer comes first (Embedding's ids)."""

    def _output_parts(self) -> list[tuple[int, ...]] | None:
        """Per-sample shapes of the outputs when the layer has several (return_state)."""
        return None

    def _core_spec(self) -> Config:
        return {"class_name": type(self).__name__,
                "config": {"name": self.name, "trainable": self.trainable,
                           **self._engine_config()}}

    @property
    def trainable(self) -> bool:
        """False freezes the layer: fit leaves its weights as they are (and a frozen
        BatchNormalization runs in inference mode), as in Keras."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        if self._traced_call():  # a custom layer: its weights and sublayers follow
            for v in getattr(self, "_own_variables", []):
                v._holder.trainable = value
            for layer in self._tracked_layers():
                layer.trainable = value
            return
        model = getattr(self, "_model", None)
        if model is not None and model._core is not None:
            model._core.set_layer_frozen(model._engine_layers().index(self), not value)
            model._variable_cache = None

    # --- weights ---------------------------------------------------------
    @property
    def built(self) -> bool:
        if self._traced_call():
            return self._custom_built
        return self._model is not None and self._model._core is not None

    @built.setter
    def built(self, value: bool) -> None:
        # (custom layers set `self.built = True` at the end of build, as in Keras)
        self._custom_built = bool(value)

    @property
    def weights(self) -> list[Any]:
        if self._traced_call():
            out = list(self._own_variables)
            for layer in self._tracked_layers():
                out += [w for w in layer.weights if all(w is not o for o in out)]
            return out
        if self._model is None or not self.built:
            return []
        return self._model._variables()[self._weight_slice]

    variables = weights

    @property
    def trainable_weights(self) -> list[Variable]:
        return [v for v in self.weights if v.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        """Weights the optimizer leaves alone (BatchNormalization's moving statistics)."""
        return [v for v in self.weights if not v.trainable]

    def get_weights(self) -> list[Float32Array]:
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights: Sequence[npt.ArrayLike]) -> None:
        own = self.weights
        if self._traced_call():
            if len(weights) != len(own):
                raise ValueError(f"Layer '{self.name}' expects {len(own)} weight arrays, "
                                 f"got {len(weights)}")
            for v, w in zip(own, weights):
                v.assign(w)
            return
        if len(weights) != len(own):
            raise ValueError(f"Layer '{self.name}' expects {len(own)} weight arrays, "
                             f"got {len(weights)}")
        model = self._model
        assert model is not None  # self.weights is empty unless the layer is built
        all_weights = model._built_core().get_weights()
        for i, (v, w) in enumerate(zip(own, weights)):
            a = np.asarray(w, dtype=np.float32)
            if a.shape != v.shape:
                raise ValueError(f"Layer '{self.name}' weight {i} ('{v.name}'): expected shape "
                                 f"{v.shape}, got {a.shape}")
            all_weights[self._weight_slice.start + i] = a
        model._built_core().set_weights([np.ascontiguousarray(w) for w in all_weights])

    def count_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.weights))

    def _inline_into(self, builder: Any, inputs: list[int]) -> list[int]:
        """A custom layer in a stack: its call, traced for the input shape the stack
        gives it (see Sequential), inlined into the graph."""
        trace = getattr(self, "_stack_trace", None)
        if trace is None:
            raise ValueError(f"Layer '{self.name}': its input shape is not known yet")
        return trace.inline(builder, inputs)

    @property
    def output_shape(self) -> Shape:
        if self._output_shape is None:
            raise AttributeError(f"Layer '{self.name}' has not been built yet: its output "
                                 f"shape is unknown")
        return (None,) + tuple(self._output_shape)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _shape_only(spec: Any) -> Any:
    """A layer spec whose weights start as zeros: the shape rule needs their shapes, not
    their values (an orthogonal LSTM kernel takes seconds to draw)."""
    if isinstance(spec, dict):
        return {k: "zeros" if k.endswith("_initializer") and v is not None else _shape_only(v)
                for k, v in spec.items()}
    if isinstance(spec, list):
        return [_shape_only(v) for v in spec]
    return spec


def _check_shape(owner: str, arg: str, shape: Any) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        dims = (shape,)
    if not dims or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                           and d > 0 for d in dims):
        raise ValueError(f"{owner}: '{arg}' must be a tuple of positive integers, "
                         f"got {describe(shape)}")
    return tuple(int(d) for d in dims)


def _positional_as_keywords(layer: Layer, inputs: Any, args: tuple[Any, ...],
                            kwargs: dict[str, Any]) -> dict[str, Any]:
    """A custom layer's call arguments after the inputs, given by position, named by
    its `call`'s signature (`layer(x, True)` for `call(self, x, training)`). Tensors
    among them are refused: a traced call reads tensors through its inputs."""
    import inspect

    owner = f"{type(layer).__name__} '{layer.name}'"
    signature = inspect.signature(layer.call)
    params = signature.parameters
    try:
        bound = signature.bind(inputs, *args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{owner}: call arguments do not fit call(): {e}") from None
    named = dict(bound.arguments)
    named.pop(next(iter(named)))  # the inputs
    for name, value in named.items():
        if any(isinstance(t, KerasTensor) for t in flatten(value)):
            raise NotImplementedError(f"{owner}: tensor argument '{name}' after the inputs is "
                                      f"not supported yet; pass all tensors as the first "
                                      f"argument (a list or a dict)")
    extra = [k for k in named if params[k].kind is inspect.Parameter.VAR_POSITIONAL]
    if extra:
        raise NotImplementedError(f"{owner}: call(*{extra[0]}) is not supported; "
                                  f"name the arguments")
    kw = next((k for k, p in params.items() if p.kind is inspect.Parameter.VAR_KEYWORD), None)
    if kw is not None and kw in named:
        named.update(named.pop(kw))
    return named


def _trace_call(layer: Layer, inputs: Any, kwargs: dict[str, Any]) -> Any:
    from ferrax.models._trace import trace_call

    return trace_call(layer, inputs, kwargs)
