"""Callbacks: hooks into fit / evaluate / predict, with Keras's names."""

from ferrax.callbacks.base import Callback, CallbackList, History, wants_batches
from ferrax.callbacks.progbar import Progbar, ProgbarLogger

__all__ = ["Callback", "CallbackList", "History", "Progbar", "ProgbarLogger", "wants_batches"]
