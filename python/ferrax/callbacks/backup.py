"""BackupAndRestore: resume a fit that was interrupted."""

from __future__ import annotations

import contextlib
import json
import os
import uuid

from ferrax._serial import describe
from ferrax._typing import Logs, PathLike
from ferrax.callbacks import _monitor as mon
from ferrax.callbacks.base import Callback

_METADATA = "training_metadata.json"
_PREFIX = "backup-"
_SUFFIX = ".ferrax"


class BackupAndRestore(Callback):
    """Back up the training state to `backup_dir` during fit; when a fit is interrupted (an
    exception, a killed process), the next fit with this callback restores it and goes on
    from the epoch after the last one completed (Keras 3).

    The state is the whole model file (weights, optimizer state, the step and epoch counters
    that key dropout and shuffling), so the resumed run matches an uninterrupted one. It is
    saved at each epoch's end (`save_freq="epoch"`) or every `save_freq` batches; a resumed
    run restarts the interrupted epoch from its start, with the weights of the last backup,
    as Keras does. When training ends normally, the backup is deleted unless
    `delete_checkpoint=False`. Each backup is written in full under a new name before a
    small metadata file is switched to it, so a kill at any moment leaves a usable backup.
    Only this callback's own files in `backup_dir` are deleted; the directory itself is
    removed when that leaves it empty.
    """

    def __init__(self, backup_dir: PathLike, save_freq: str | int = "epoch",
                 delete_checkpoint: bool = True) -> None:
        super().__init__()
        owner = type(self).__name__
        if not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir):
            raise ValueError(f"{owner}: 'backup_dir' must be a non-empty directory path, got "
                             f"{describe(backup_dir)}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = mon.check_save_freq(owner, save_freq)
        self.delete_checkpoint = mon.check_flag(owner, "delete_checkpoint", delete_checkpoint)
        self._batch_hooks = frozenset({"on_train_batch_end"} if isinstance(self.save_freq, int)
                                      else ())
        self._metadata_path = os.path.join(self.backup_dir, _METADATA)
        self._current_epoch = 0
        self._batches = mon.BatchCounter(self.save_freq)

    # --- restoring ---------------------------------------------------------------
    def _read_metadata(self) -> tuple[int, str] | None:
        if not os.path.isfile(self._metadata_path):
            return None
        try:
            with open(self._metadata_path, encoding="utf-8") as f:
                meta = json.load(f)
            epoch, model_file = int(meta["epoch"]), meta["model_file"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"BackupAndRestore: the backup metadata {self._metadata_path!r} "
                             f"is unreadable ({e}); delete {self.backup_dir!r} to start "
                             f"afresh") from None
        if (not isinstance(model_file, str) or os.path.basename(model_file) != model_file
                or not model_file.startswith(_PREFIX) or not model_file.endswith(_SUFFIX)):
            raise ValueError(f"BackupAndRestore: the backup metadata {self._metadata_path!r} "
                             f"names an invalid model file {describe(model_file)}")
        return epoch, os.path.join(self.backup_dir, model_file)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._batches.reset()
        self._current_epoch = 0
        found = self._read_metadata()
        if found is None:
            return
        epoch, path = found
        self._restore(path)
        self._current_epoch = epoch
        self.model._initial_epoch = epoch

    def _restore(self, path: str) -> None:
        from ferrax.models import load_model

        model = self.model
        if not model.built:
            raise ValueError(f"BackupAndRestore: model '{model.name}' must be built before it "
                             f"can be restored from {path!r}")
        if not os.path.isfile(path):
            raise ValueError(f"BackupAndRestore: the backup metadata in {self.backup_dir!r} "
                             f"names {os.path.basename(path)!r}, which is missing; delete the "
                             f"directory to start afresh")
        saved = load_model(path)
        try:
            model.set_weights(saved.get_weights())
        except ValueError as e:
            raise ValueError(f"BackupAndRestore: the backup {path!r} does not fit model "
                             f"'{model.name}': {e}") from None
        model._built_core().step = saved._built_core().step
        model._epochs_run = saved._epochs_run
        state = saved._pending_optimizer_state
        if state is not None and model._compile_config is not None:
            iterations, u_product, _, slots = state
            if model._engine_compile_spec is not None:
                model._built_core().set_optimizer_state(iterations, u_product, slots)
            else:
                model._pending_optimizer_state = state
            if getattr(model.optimizer, "_schedule", None) is None and getattr(
                    saved.optimizer, "_schedule", None) is None:
                # A rate changed during the run (ReduceLROnPlateau, LearningRateScheduler).
                rate = saved._compiled_optimizer("BackupAndRestore").learning_rate
                model._compiled_optimizer("BackupAndRestore").learning_rate = rate

    # --- saving --------------------------------------------------------------------
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._batches.new_epoch()

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self._batches.due(batch):
            self._save(batch)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._current_epoch = epoch + 1
        if self.save_freq == "epoch":
            self._save(None)

    def _own_files(self) -> list[str]:
        try:
            names = os.listdir(self.backup_dir)
        except FileNotFoundError:
            return []
        return [n for n in names if n.startswith(_PREFIX) and n.endswith(_SUFFIX)
                or n.startswith(f".{_PREFIX}") or n.startswith(f".{_METADATA}")]

    def _save(self, batch: int | None) -> None:
        from ferrax.saving import atomic_write

        os.makedirs(self.backup_dir, exist_ok=True)
        old = [n for n in self._own_files() if not n.startswith(".")]
        name = f"{_PREFIX}{uuid.uuid4().hex[:12]}{_SUFFIX}"
        self.model.save(os.path.join(self.backup_dir, name))
        # The epoch to resume from: after an epoch's end, the next one; after a batch inside
        # an epoch, that epoch again (from its start, with these weights), as Keras does.
        meta = {"epoch": self._current_epoch, "batch": -1 if batch is None else batch,
                "model_file": name}
        atomic_write(self._metadata_path, json.dumps(meta).encode())
        for n in old:
            _remove(os.path.join(self.backup_dir, n))

    # --- clean-up --------------------------------------------------------------------
    def on_train_end(self, logs: Logs | None = None) -> None:
        if not self.delete_checkpoint:
            return
        for n in self._own_files():
            _remove(os.path.join(self.backup_dir, n))
        _remove(self._metadata_path)
        with contextlib.suppress(OSError):  # missing, or holds files that are not ours
            os.rmdir(self.backup_dir)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
