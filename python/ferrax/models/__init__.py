"""Models: Sequential, and the Model base class with training and inference."""

from ferrax.models.model import Model
from ferrax.models.sequential import Sequential

__all__ = ["Model", "Sequential"]
