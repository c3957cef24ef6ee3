"""Embedding: integer ids to dense vectors."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferrax import initializers, regularizers
from ferrax._typing import Config
from ferrax.layers.base import Layer
from ferrax.layers.core import InitializerLike, RegularizerLike, _positive_int


class Embedding(Layer):
    """Looks up row `id` of an (input_dim, output_dim) table for each integer id.

    With ``mask_zero=True`` id 0 is padding: recurrent layers downstream skip those steps.
    """

    def __init__(self, input_dim: int, output_dim: int,
                 embeddings_initializer: InitializerLike = "uniform",
                 embeddings_regularizer: RegularizerLike = None,
                 embeddings_constraint: Any = None, mask_zero: bool = False,
                 weights: Any = None, lora_rank: int | None = None,
                 input_length: int | None = None, **kwargs: Any) -> None:
        if input_length is not None and "input_shape" not in kwargs:
            # Keras 2's way of declaring the sequence length.
            kwargs["input_shape"] = (input_length,)
        super().__init__(**kwargs)
        owner = f"Embedding '{self.name}'"
        for arg, v in {"embeddings_constraint": embeddings_constraint, "weights": weights,
                       "lora_rank": lora_rank}.items():
            if v is not None:
                raise NotImplementedError(f"{owner}: '{arg}' is not supported yet")
        self.input_dim = _positive_int(owner, "input_dim", input_dim)
        self.output_dim = _positive_int(owner, "output_dim", output_dim)
        if self.input_dim >= 1 << 24:
            raise ValueError(f"{owner}: 'input_dim' must be below 2**24 (ids travel as "
                             f"float32), got {self.input_dim}")
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.mask_zero = bool(mask_zero)

    def _public_config(self) -> Config:
        return {"input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
                "mask_zero": self.mask_zero}

    def _engine_config(self) -> Config:
        reg = self.embeddings_regularizer
        return {"input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": self.embeddings_initializer._core_spec(),
                "embeddings_regularizer": None if reg is None else reg._core_spec(),
                "mask_zero": self.mask_zero}

    def _check_inputs(self, x: np.ndarray, arg: str) -> None:
        """Ids must be whole numbers in [0, input_dim): say which and where otherwise."""
        if x.size == 0:
            return
        owner = f"Embedding '{self.name}'"
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.mod(x, 1) == 0):
            raise ValueError(f"{owner}: '{arg}' must hold integer ids, got non-integer values")
        low, high = x.min(), x.max()
        if low < 0 or high >= self.input_dim:
            bad = low if low < 0 else high
            where = tuple(int(i) for i in np.argwhere(x == bad)[0])
            raise ValueError(f"{owner}: ids must be in [0, {self.input_dim}) (input_dim="
                             f"{self.input_dim}), got {bad} at index {where} of '{arg}'")
