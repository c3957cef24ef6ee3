"""Regularization layers: SpatialDropout1D / SpatialDropout2D (dropout of whole
channels) and GaussianNoise."""

from __future__ import annotations

from typing import Any

from ferrax._serial import check_number
from ferrax._typing import Config
from ferrax.layers.base import Layer
from ferrax.layers.convolutional import _data_format


class _SpatialDropout(Layer):
    def __init__(self, rate: float, data_format: str | None = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        check_number(owner, "rate", rate, low=0.0, high=1.0, high_open=True)
        self.rate, self.seed = float(rate), seed
        self.data_format = _data_format(owner, data_format)

    def _public_config(self) -> Config:
        return {"rate": self.rate, "data_format": self.data_format, "seed": self.seed}

    def _engine_config(self) -> Config:
        return {"rate": self.rate, "data_format": self.data_format}


class SpatialDropout2D(_SpatialDropout):
    """In training, zeroes whole channels of each sample with probability `rate` and
    scales the rest by 1/(1-rate); identity at inference."""


class SpatialDropout1D(_SpatialDropout):
    """SpatialDropout2D for (batch, steps, channels) inputs (channels last only)."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(rate, None, seed, **kwargs)

    def _public_config(self) -> Config:
        return {"rate": self.rate, "seed": self.seed}


class GaussianNoise(Layer):
    """Adds zero-mean normal noise of `stddev` to its inputs in training (a
    regularizer); passes them unchanged at inference.

    Args:
        stddev: The noise's standard deviation.
        seed: Recorded; the noise comes from the model's seed, the step and the layer.
        **kwargs: Standard layer arguments.

    Example:

    >>> x = ferrax.layers.GaussianNoise(0.1)(inputs)
    """

    def __init__(self, stddev: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stddev = float(check_number(f"GaussianNoise '{self.name}'", "stddev", stddev,
                                         low=0.0))
        self.seed = seed

    def _public_config(self) -> Config:
        return {"stddev": self.stddev, "seed": self.seed}

    def _engine_config(self) -> Config:
        return {"stddev": self.stddev}
