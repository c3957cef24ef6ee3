"""Preprocessing layers that run inside the model."""

from __future__ import annotations

import math
from typing import Any

from ferrax._serial import check_number
from ferrax._typing import Config
from ferrax.layers.base import Layer


class Rescaling(Layer):
    """Multiplies its inputs by `scale` and adds `offset`, in training and inference.

    `Rescaling(1 / 255)` first in a model lets images stay uint8 in memory: the engine
    converts and scales each batch as it reads it, so no float copy of the data set is made.
    """

    def __init__(self, scale: float, offset: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"Rescaling '{self.name}'"
        for arg, value in (("scale", scale), ("offset", offset)):
            if not math.isfinite(check_number(owner, arg, value)):
                raise ValueError(f"{owner}: '{arg}' must be finite, got {value}")
        self.scale, self.offset = float(scale), float(offset)

    def _public_config(self) -> Config:
        return {"scale": self.scale, "offset": self.offset}
