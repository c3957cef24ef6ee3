"""Keras's activation layers with arguments: `LeakyReLU`, `ELU` (the engine's
Activation) and `PReLU` (a learned slope: its `call` is written with `ferrax.ops`
and traced into the graph like a custom layer's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ferrax import initializers, regularizers
from ferrax._serial import check_number
from ferrax._typing import Config
from ferrax.layers.base import Layer


class _EngineActivation(Layer):
    """Runs as the engine's Activation layer with one activation spec."""

    def _activation_spec(self) -> Any:
        raise NotImplementedError

    def _core_spec(self) -> Config:
        return {"class_name": "Activation",
                "config": {"name": self.name, "trainable": self.trainable,
                           "activation": self._activation_spec()}}


class LeakyReLU(_EngineActivation):
    """`x` where positive, else `negative_slope * x`.

    Args:
        negative_slope: The slope below zero (Keras's default 0.3).
        **kwargs: Standard layer arguments.

    Example:

    >>> x = ferrax.layers.LeakyReLU(negative_slope=0.1)(ferrax.layers.Dense(8)(inputs))
    """

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.negative_slope = check_number(f"LeakyReLU '{self.name}'", "negative_slope",
                                           negative_slope, low=0.0)

    def _public_config(self) -> Config:
        return {"negative_slope": self.negative_slope}

    def _activation_spec(self) -> Any:
        return {"name": "leaky_relu", "negative_slope": self.negative_slope}


class ELU(_EngineActivation):
    """`x` where positive, else `alpha * (exp(x) - 1)`.

    Args:
        alpha: The scale of the negative part (1.0).
        **kwargs: Standard layer arguments.
    """

    def __init__(self, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = check_number(f"ELU '{self.name}'", "alpha", alpha)

    def _public_config(self) -> Config:
        return {"alpha": self.alpha}

    def _activation_spec(self) -> Any:
        return {"name": "elu", "alpha": self.alpha}


class PReLU(Layer):
    """`x` where positive, else `alpha * x` with `alpha` learned, one per unit (or
    shared along `shared_axes`).

    Args:
        alpha_initializer: The slopes' initializer ("zeros").
        alpha_regularizer: A regularizer for them.
        alpha_constraint: Not supported (None).
        shared_axes: Axes (counting the batch axis as 0) along which one slope is
            shared, e.g. `[1, 2]` for one slope per channel of images.
        **kwargs: Standard layer arguments.

    Example:

    >>> x = ferrax.layers.PReLU(shared_axes=[1, 2])(ferrax.layers.Conv2D(8, 3)(images))
    """

    def __init__(self, alpha_initializer: Any = "zeros", alpha_regularizer: Any = None,
                 alpha_constraint: Any = None, shared_axes: Sequence[int] | int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if alpha_constraint is not None:
            raise NotImplementedError(f"PReLU '{self.name}': constraints are not supported")
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        axes = [shared_axes] if isinstance(shared_axes, int) else list(shared_axes or [])
        self.shared_axes = [int(a) for a in axes]

    def build(self, input_shape: Any = None) -> None:
        shape = list(input_shape[1:])
        for a in self.shared_axes:
            if not 1 <= a <= len(shape):
                raise ValueError(f"PReLU '{self.name}': shared axis {a} is out of range for "
                                 f"inputs of shape {tuple(input_shape)}")
            shape[a - 1] = 1
        if any(d is None for d in shape):
            raise ValueError(f"PReLU '{self.name}': inputs of shape {tuple(input_shape)} "
                             f"have axes of unknown length; share the slope along them "
                             f"(shared_axes)")
        self.alpha = self.add_weight(shape=tuple(shape), initializer=self.alpha_initializer,
                                     regularizer=self.alpha_regularizer, name="alpha")

    def call(self, inputs: Any) -> Any:
        from ferrax import ops

        return ops.relu(inputs) - self.alpha * ops.relu(-inputs)

    def get_config(self) -> Config:
        return {**super().get_config(),
                "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
                "shared_axes": self.shared_axes or None}
