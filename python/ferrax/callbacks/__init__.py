"""Callbacks: hooks into fit / evaluate / predict, with Keras's names."""

from ferrax.callbacks.backup import BackupAndRestore
from ferrax.callbacks.base import Callback, CallbackList, History, wants_batches
from ferrax.callbacks.checkpoint import ModelCheckpoint
from ferrax.callbacks.csv_logger import CSVLogger
from ferrax.callbacks.early_stopping import EarlyStopping
from ferrax.callbacks.lambda_callback import LambdaCallback
from ferrax.callbacks.lr import LearningRateScheduler, ReduceLROnPlateau
from ferrax.callbacks.progbar import Progbar, ProgbarLogger
from ferrax.callbacks.terminate_on_nan import TerminateOnNaN

__all__ = ["BackupAndRestore", "CSVLogger", "Callback", "CallbackList", "EarlyStopping",
           "History", "LambdaCallback", "LearningRateScheduler", "ModelCheckpoint", "Progbar",
           "ProgbarLogger", "ReduceLROnPlateau", "TerminateOnNaN", "wants_batches"]
