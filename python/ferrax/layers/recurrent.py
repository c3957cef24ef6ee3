"""Recurrent layers (SimpleRNN, LSTM, GRU) and the wrappers Bidirectional and TimeDistributed.

The engine runs the recurrence; these classes hold Keras's arguments and defaults, check
them, and describe the layer to the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ferrax import initializers, regularizers
from ferrax._serial import check_number, describe
from ferrax._typing import Config, Float32Array, Shape
from ferrax.layers.base import Layer
from ferrax.layers.core import (
    ActivationLike,
    InitializerLike,
    RegularizerLike,
    _activation,
    _positive_int,
)

if TYPE_CHECKING:
    from typing_extensions import Self


def _rate(owner: str, arg: str, value: Any) -> float:
    check_number(owner, arg, value)
    if not 0 <= value < 1:
        raise ValueError(f"{owner}: '{arg}' must be in [0, 1), got {value}")
    return float(value)


def _layer_from_config(entry: Mapping[str, Any]) -> Layer:
    from ferrax import layers as layers_module

    cls = getattr(layers_module, entry.get("class_name", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ValueError(f"Unknown layer class {entry.get('class_name')!r} in config")
    return cls.from_config(entry["config"])


class _RNN(Layer):
    """What SimpleRNN, LSTM and GRU share: the sequence options and the three weights
    kernel (features, gates·units), recurrent_kernel (units, gates·units) and bias."""

    _gates = 1

    def __init__(self, units: int, activation: ActivationLike = "tanh",
                 recurrent_activation: ActivationLike = "sigmoid", use_bias: bool = True,
                 kernel_initializer: InitializerLike = "glorot_uniform",
                 recurrent_initializer: InitializerLike = "orthogonal",
                 bias_initializer: InitializerLike = "zeros",
                 kernel_regularizer: RegularizerLike = None,
                 recurrent_regularizer: RegularizerLike = None,
                 bias_regularizer: RegularizerLike = None, activity_regularizer: Any = None,
                 kernel_constraint: Any = None, recurrent_constraint: Any = None,
                 bias_constraint: Any = None, dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, seed: int | None = None,
                 return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
                 zero_output_for_mask: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = self._owner()
        for arg, v in {"activity_regularizer": activity_regularizer,
                       "kernel_constraint": kernel_constraint,
                       "recurrent_constraint": recurrent_constraint,
                       "bias_constraint": bias_constraint}.items():
            if v is not None:
                raise NotImplementedError(f"{owner}: '{arg}' is not supported yet")
        self.units: int = _positive_int(owner, "units", units)
        self.activation = _activation(self.name, activation)
        self.recurrent_activation = _activation(self.name, recurrent_activation)
        for arg, act in (("activation", self.activation),
                         ("recurrent_activation", self.recurrent_activation)):
            if act in ("softmax", "log_softmax"):
                raise ValueError(f"{owner}: '{arg}' must be an elementwise activation, "
                                 f"got {act!r}")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.dropout = _rate(owner, "dropout", dropout)
        self.recurrent_dropout = _rate(owner, "recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)  # accepted for compatibility; the engine never unrolls
        self.zero_output_for_mask = bool(zero_output_for_mask)

    def _owner(self) -> str:
        return f"{type(self).__name__} '{self.name}'"

    def _cell_config(self) -> Config:
        """Arguments of the cell itself (differ between SimpleRNN, LSTM and GRU)."""
        return {"recurrent_activation": self.recurrent_activation}

    def _public_config(self) -> Config:
        return {
            "units": self.units, "activation": self.activation, **self._cell_config(),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed, "return_sequences": self.return_sequences,
            "return_state": self.return_state, "go_backwards": self.go_backwards,
            "stateful": self.stateful, "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
        }

    def _engine_config(self) -> Config:
        def reg(r: regularizers.Regularizer | None) -> dict[str, float] | None:
            return None if r is None else r._core_spec()

        config = self._public_config()
        config.update({
            "kernel_initializer": self.kernel_initializer._core_spec(),
            "recurrent_initializer": self.recurrent_initializer._core_spec(),
            "bias_initializer": self.bias_initializer._core_spec(),
            "kernel_regularizer": reg(self.kernel_regularizer),
            "recurrent_regularizer": reg(self.recurrent_regularizer),
            "bias_regularizer": reg(self.bias_regularizer),
        })
        return config

    # --- return_state: the engine returns [output, states...] as one flat vector per sample
    def _state_count(self) -> int:
        return 1

    def _call_with_state(self, inputs: Any, initial_state: Any) -> Any:
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else \
            [initial_state]
        if len(states) != self._state_count():
            raise ValueError(f"{type(self).__name__} '{self.name}': initial_state must be "
                             f"{self._state_count()} tensor(s) of shape (None, {self.units}), "
                             f"got {len(states)}")
        return self._call_symbolic(inputs, states)

    def _symbolic_parts(self, first_input: Any) -> list[tuple[int | None, ...]] | None:
        if not self.return_state:
            return None
        steps = first_input.shape[1] if len(first_input.shape) > 2 else 0
        main: tuple[int | None, ...] = ((steps, self.units) if self.return_sequences
                                        else (self.units,))
        return [main] + [(self.units,)] * self._state_count()

    def _output_parts(self) -> list[tuple[int, ...]] | None:
        """Per-sample shapes of the outputs when there are several (return_state)."""
        if not self.return_state or self._output_shape is None:
            return None
        return self._parts_for(self._steps() if self.return_sequences else 0)

    def _parts_for(self, steps: int) -> list[tuple[int, ...]]:
        """[output, state, ...] shapes of a return_state layer over `steps` time steps."""
        main: tuple[int, ...] = (steps, self.units) if self.return_sequences else (self.units,)
        return [main] + [(self.units,)] * self._state_count()

    def _steps(self) -> int:
        model = self._model
        assert model is not None and model._input_shape is not None
        layers = model._engine_layers()
        i = layers.index(self)
        shape = model._input_shape if i == 0 else layers[i - 1]._output_shape
        assert shape is not None
        return int(shape[0])

    @property
    def output_shape(self) -> Shape:
        parts = self._output_parts()
        if parts is None:
            return super().output_shape
        return [(None,) + p for p in parts]  # type: ignore[return-value]

    def reset_states(self) -> None:
        """Set the state carried between batches (stateful=True) back to zeros."""
        if self._model is not None and self._model._core is not None:
            self._model._core.reset_states(self._model._engine_layers().index(self))


class SimpleRNN(_RNN):
    """A fully connected RNN: h_t = activation(x_t·W + h_{t-1}·U + b)."""

    def __init__(self, units: int, activation: ActivationLike = "tanh", **kwargs: Any) -> None:
        if "recurrent_activation" in kwargs:
            raise TypeError("SimpleRNN: unexpected keyword argument recurrent_activation")
        super().__init__(units, activation=activation, **kwargs)

    def _cell_config(self) -> Config:
        return {}


class LSTM(_RNN):
    """Long short-term memory (gates i, f, c, o, as Keras lays out its weights)."""

    _gates = 4

    def __init__(self, units: int, activation: ActivationLike = "tanh",
                 recurrent_activation: ActivationLike = "sigmoid",
                 unit_forget_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(units, activation=activation,
                         recurrent_activation=recurrent_activation, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _cell_config(self) -> Config:
        return {"recurrent_activation": self.recurrent_activation,
                "unit_forget_bias": self.unit_forget_bias}

    def _state_count(self) -> int:
        return 2


class GRU(_RNN):
    """Gated recurrent unit (gates z, r, h; reset_after=True as in Keras 3: the bias has
    an input row and a recurrent row)."""

    _gates = 3

    def __init__(self, units: int, activation: ActivationLike = "tanh",
                 recurrent_activation: ActivationLike = "sigmoid", reset_after: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(units, activation=activation,
                         recurrent_activation=recurrent_activation, **kwargs)
        if not reset_after:
            raise NotImplementedError(f"{self._owner()}: reset_after=False is not supported "
                                      f"yet; use reset_after=True (Keras 3's default)")
        self.reset_after = True

    def _cell_config(self) -> Config:
        return {"recurrent_activation": self.recurrent_activation,
                "reset_after": self.reset_after}


_MERGE_MODES = ("concat", "sum", "mul", "ave")


class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy of it backwards, merging their outputs."""

    def __init__(self, layer: Layer, merge_mode: str | None = "concat",
                 weights: Any = None, backward_layer: Layer | None = None,
                 **kwargs: Any) -> None:
        if not isinstance(layer, _RNN):
            raise ValueError(f"Bidirectional: 'layer' must be a SimpleRNN, LSTM or GRU layer, "
                             f"got {describe(layer)}")
        super().__init__(**kwargs)
        owner = f"Bidirectional '{self.name}'"
        if merge_mode not in _MERGE_MODES:
            if merge_mode is None:
                raise NotImplementedError(f"{owner}: merge_mode=None (two outputs) is not "
                                          f"supported; use one of {', '.join(_MERGE_MODES)}")
            raise ValueError(f"{owner}: 'merge_mode' must be one of "
                             f"{', '.join(repr(m) for m in _MERGE_MODES)}, got {merge_mode!r}")
        if weights is not None:
            raise NotImplementedError(f"{owner}: 'weights' is not supported; call "
                                      f"set_weights() after building")
        if layer.return_state:
            raise NotImplementedError(f"{owner}: return_state inside Bidirectional is not "
                                      f"supported yet")
        if not layer.name.startswith("forward_"):
            # As Keras does, the forward direction is a copy named forward_<name>.
            config = layer.get_config()
            config["name"] = f"forward_{layer.name}"
            layer = type(layer).from_config(config)
        if backward_layer is None:
            config = layer.get_config()
            config["name"] = f"backward_{layer.name.removeprefix('forward_')}"
            config["go_backwards"] = not layer.go_backwards
            backward_layer = type(layer).from_config(config)
        elif not isinstance(backward_layer, _RNN):
            raise ValueError(f"{owner}: 'backward_layer' must be a SimpleRNN, LSTM or GRU "
                             f"layer, got {describe(backward_layer)}")
        elif backward_layer.return_sequences != layer.return_sequences:
            raise ValueError(f"{owner}: the forward and backward layers must agree on "
                             f"return_sequences")
        self.forward_layer = layer
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        if layer._input_shape is not None and self._input_shape is None:
            self._input_shape = layer._input_shape

    @property
    def return_sequences(self) -> bool:
        return self.forward_layer.return_sequences

    def _weight_path(self, index: int, name: str) -> str:
        # The engine lists the forward layer's weights, then the backward layer's.
        per_direction = 3 if self.forward_layer.use_bias else 2
        inner = self.forward_layer if index < per_direction else self.backward_layer
        return f"{self.name}/{inner.name}/{name}"

    def _sub_spec(self, layer: _RNN) -> Config:
        spec = layer._core_spec()
        # Keras zeroes masked steps' outputs in both directions inside Bidirectional.
        spec["config"]["zero_output_for_mask"] = layer.return_sequences
        return spec

    def _public_config(self) -> Config:
        return {"merge_mode": self.merge_mode,
                "layer": {"class_name": type(self.forward_layer).__name__,
                          "config": self.forward_layer.get_config()},
                "backward_layer": {"class_name": type(self.backward_layer).__name__,
                                   "config": self.backward_layer.get_config()}}

    def _engine_config(self) -> Config:
        assert isinstance(self.forward_layer, _RNN) and isinstance(self.backward_layer, _RNN)
        return {"merge_mode": self.merge_mode,
                "forward_layer": self._sub_spec(self.forward_layer),
                "backward_layer": self._sub_spec(self.backward_layer)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        config = dict(config)
        config.pop("dtype", None)
        layer = _layer_from_config(config.pop("layer"))
        backward = config.pop("backward_layer", None)
        return cls(layer, backward_layer=None if backward is None
                   else _layer_from_config(backward), **config)

    def reset_states(self) -> None:
        if self._model is not None and self._model._core is not None:
            self._model._core.reset_states(self._model._engine_layers().index(self))


class TimeDistributed(Layer):
    """Applies `layer` to every time step of (batch, timesteps, ...) inputs."""

    def __init__(self, layer: Layer, **kwargs: Any) -> None:
        if not isinstance(layer, Layer) or isinstance(layer, (_RNN, Bidirectional)):
            raise ValueError(f"TimeDistributed: 'layer' must be a non-recurrent ferrax layer, "
                             f"got {describe(layer)}")
        super().__init__(**kwargs)
        self.layer = layer

    def _public_config(self) -> Config:
        return {"layer": {"class_name": type(self.layer).__name__,
                          "config": self.layer.get_config()}}

    def _engine_config(self) -> Config:
        return {"layer": self.layer._core_spec()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        config = dict(config)
        config.pop("dtype", None)
        return cls(_layer_from_config(config.pop("layer")), **config)


def split_outputs(parts: list[tuple[int, ...]], out: Float32Array) -> list[Float32Array]:
    """A return_state layer's flat per-sample output as arrays of the per-sample `parts`."""
    n = len(out)
    flat = out.reshape(n, -1)
    result, at = [], 0
    for shape in parts:
        size = int(np.prod(shape))
        result.append(np.ascontiguousarray(flat[:, at:at + size]).reshape((n,) + shape))
        at += size
    return result
