"""Training callbacks against Keras 3's documented semantics: driven directly with scripted
logs, and through real fits of tiny models."""

import csv
import json
import math
import os
import warnings

import numpy as np
import pytest

import ferrax
from ferrax import callbacks as C
from ferrax import layers


# --- helpers -------------------------------------------------------------------------------
def _data(n=64, features=4, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, features)).astype(np.float32)
    y = (x @ r.normal(size=(features, 1)) + 0.1 * r.normal(size=(n, 1))).astype(np.float32)
    return x, y


def _model(seed=0, optimizer=None, metrics=None, dropout=False):
    ferrax.utils.set_random_seed(seed)
    stack = [ferrax.Input(shape=(4,)), layers.Dense(8, activation="relu")]
    if dropout:
        stack.append(layers.Dropout(0.25))
    stack.append(layers.Dense(1))
    m = ferrax.Sequential(stack)
    m.compile(optimizer=optimizer or ferrax.optimizers.SGD(learning_rate=0.05), loss="mse",
              metrics=metrics)
    return m


class FakeOptimizer:
    def __init__(self, lr):
        self.learning_rate = lr


class FakeModel:
    """Enough of a model for callbacks driven by hand: weights are a counter."""

    def __init__(self, lr=1.0):
        self.stop_training = False
        self.optimizer = FakeOptimizer(lr)
        self.weights_version = 0
        self.restored = None

    def get_weights(self):
        return [np.array([self.weights_version])]

    def set_weights(self, weights):
        self.restored = int(weights[0][0])


def _drive(callback, values, monitor="val_loss", model=None, between=None):
    """Run `callback` over epochs whose logs hold `values`; returns the epoch at which it
    asked training to stop (or None), like fit: stop checked after each epoch."""
    model = model or FakeModel()
    callback.set_model(model)
    callback.on_train_begin({})
    for epoch, v in enumerate(values):
        model.weights_version = epoch
        callback.on_epoch_begin(epoch, {})
        callback.on_epoch_end(epoch, {monitor: v, "loss": 0.0})
        if between:
            between(epoch, model)
        if model.stop_training:
            callback.on_train_end({})
            return epoch
    callback.on_train_end({})
    return None


class Inject(C.Callback):
    """Puts scripted values into the epoch logs (before the callbacks after it read them) and
    records the weights at each epoch's end."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values, self.weights = key, list(values), []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights.append([w.copy() for w in self.model.get_weights()])


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# --- EarlyStopping ---------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,values,stop", [
    ({}, [1.0, 0.9, 0.95, 0.8], 2),                              # patience 0
    ({"patience": 2}, [1.0, 0.9, 0.95, 0.92, 0.91, 0.5], 3),     # 2 epochs without a new best
    ({"patience": 2}, [1.0, 0.9, 0.95, 0.85, 0.9, 0.8], None),   # a new best resets the wait
    ({"patience": 1, "min_delta": 0.05}, [1.0, 0.97, 0.96], 1),  # 0.03 is not enough
    ({"patience": 1, "min_delta": -0.05}, [1.0, 0.97, 0.96], 1),  # sign ignored, as Keras
    ({"patience": 1, "min_delta": 0.05}, [1.0, 0.94, 0.88, 0.87], 3),
    ({"mode": "max"}, [1.0, 2.0, 1.5], 2),
    ({"mode": "min"}, [1.0, 2.0, 1.5], 1),
    ({"patience": 2, "baseline": 0.5}, [0.9, 0.8, 0.85], 2),     # never beat the baseline
    ({"patience": 2}, [0.9, 0.8, 0.85], None),
    ({"patience": 1, "baseline": 0.5}, [0.9, 0.4, 0.3, 0.2], None),  # beat it: counting
    ({"patience": 1, "baseline": 0.5}, [0.9, 0.4, 0.45, 0.3], 2),    # restarts from there
    ({"start_from_epoch": 2}, [1.0, 2.0, 3.0, 4.0, 5.0], 3),     # epochs 0, 1 not monitored
    ({}, [1.0, 2.0, 3.0, 4.0, 5.0], 1),
    ({"patience": 3}, [1.0, float("nan"), float("nan"), float("nan"), 0.5], 3),
])
def test_early_stopping_scripted(kwargs, values, stop):
    assert _drive(C.EarlyStopping(**kwargs), values) == stop


@pytest.mark.parametrize("monitor,values,stop", [
    ("val_accuracy", [0.5, 0.6, 0.55], 2),
    ("acc", [0.5, 0.6, 0.55], 2),
    ("val_sparse_categorical_accuracy", [0.5, 0.6, 0.55], 2),
    ("val_mae", [0.5, 0.6, 0.55], 1),
    ("loss", [0.5, 0.6, 0.55], 1),
])
def test_early_stopping_auto_mode_from_the_name(monitor, values, stop):
    assert _drive(C.EarlyStopping(monitor=monitor), values, monitor=monitor) == stop


def test_early_stopping_restores_the_best_epoch_weights_scripted():
    model = FakeModel()
    es = C.EarlyStopping(patience=2, restore_best_weights=True)
    assert _drive(es, [1.0, 0.5, 0.7, 0.6, 0.2], model=model) == 3
    assert model.restored == 1 and es.best_epoch == 1 and es.stopped_epoch == 3
    # Keras 3 restores at the end of training even when it did not stop early.
    model = FakeModel()
    assert _drive(C.EarlyStopping(patience=5, restore_best_weights=True), [3, 1, 2],
                  model=model) is None
    assert model.restored == 1


def test_early_stopping_is_reusable_and_warns_on_a_missing_monitor():
    es = C.EarlyStopping(patience=0)
    assert _drive(es, [1.0, 2.0]) == 1
    assert _drive(es, [5.0, 4.0, 6.0]) == 2  # state reset by on_train_begin
    with pytest.warns(UserWarning, match="val_loss.*not available"):
        assert _drive(C.EarlyStopping(), [1.0, 2.0], monitor="loss_other") is None


@pytest.mark.parametrize("kwargs,arg,exc", [
    ({"patience": -1}, "patience", ValueError),
    ({"patience": 1.5}, "patience", TypeError),
    ({"mode": "best"}, "mode", ValueError),
    ({"start_from_epoch": -2}, "start_from_epoch", ValueError),
    ({"min_delta": "x"}, "min_delta", TypeError),
    ({"baseline": "x"}, "baseline", TypeError),
    ({"monitor": None}, "monitor", TypeError),
])
def test_early_stopping_bad_arguments(kwargs, arg, exc):
    with pytest.raises(exc, match=arg):
        C.EarlyStopping(**kwargs)


def test_early_stopping_through_fit_stops_and_restores():
    x, y = _data()
    m = _model()
    scores = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 1.0, 1.0]
    inject = Inject("val_score", scores)
    es = C.EarlyStopping(monitor="val_score", patience=3, restore_best_weights=True)
    h = m.fit(x, y, epochs=8, batch_size=16, verbose=0, callbacks=[inject, es])
    assert h.epoch == [0, 1, 2, 3, 4, 5]  # no new best after epoch 2 for 3 epochs
    assert not _same(inject.weights[2], inject.weights[5])
    assert _same(m.get_weights(), inject.weights[2])


def test_early_stopping_real_loss_with_zero_learning_rate():
    x, y = _data()
    m = _model(optimizer=ferrax.optimizers.SGD(learning_rate=0.0))
    es = C.EarlyStopping(monitor="loss", patience=2, min_delta=1e-5)
    h = m.fit(x, y, epochs=10, batch_size=16, verbose=0, callbacks=[es])
    assert len(h.history["loss"]) == 3 and es.stopped_epoch == 2


# --- ModelCheckpoint -------------------------------------------------------------------------
def test_checkpoint_file_names_from_the_template(tmp_path):
    x, y = _data()
    m = _model()
    inject = Inject("unused", [0] * 3)
    ck = C.ModelCheckpoint(str(tmp_path / "ck-{epoch:02d}-{loss:.3f}-{val_loss:.2f}.ferrax"))
    h = m.fit(x, y, epochs=3, batch_size=16, verbose=0, validation_split=0.25,
              callbacks=[inject, ck])
    expected = sorted(f"ck-{e + 1:02d}-{h.history['loss'][e]:.3f}-"
                      f"{h.history['val_loss'][e]:.2f}.ferrax" for e in range(3))
    assert sorted(os.listdir(tmp_path)) == expected
    # Each file holds that epoch's model.
    loaded = ferrax.models.load_model(tmp_path / expected[1])
    assert _same(loaded.get_weights(), inject.weights[1])


def test_checkpoint_save_best_only(tmp_path):
    x, y = _data()
    m = _model()
    scores = [3.0, 1.0, 2.0, 0.5, 0.7]
    inject = Inject("val_score", scores)
    named = C.ModelCheckpoint(str(tmp_path / "named-{epoch}.weights.safetensors"),
                              monitor="val_score", save_best_only=True, save_weights_only=True)
    fixed = C.ModelCheckpoint(str(tmp_path / "best.ferrax"), monitor="val_score",
                              save_best_only=True)
    m.fit(x, y, epochs=5, batch_size=16, verbose=0, callbacks=[inject, named, fixed])
    assert sorted(os.listdir(tmp_path)) == ["best.ferrax", "named-1.weights.safetensors",
                                            "named-2.weights.safetensors",
                                            "named-4.weights.safetensors"]
    best = ferrax.models.load_model(tmp_path / "best.ferrax")
    assert _same(best.get_weights(), inject.weights[3])
    assert fixed.best == 0.5


def test_checkpoint_mode_max_and_initial_value_threshold(tmp_path):
    x, y = _data()
    m = _model()
    inject = Inject("val_accuracy", [0.5, 0.7, 0.6, 0.9])
    ck = C.ModelCheckpoint(str(tmp_path / "e{epoch}.weights.safetensors"),
                           monitor="val_accuracy", save_best_only=True, save_weights_only=True,
                           initial_value_threshold=0.65)
    m.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[inject, ck])
    assert sorted(os.listdir(tmp_path)) == ["e2.weights.safetensors", "e4.weights.safetensors"]


def test_checkpoint_weights_only_loads_back(tmp_path):
    x, y = _data()
    m = _model()
    path = tmp_path / "sub" / "w.weights.safetensors"  # the directory is created
    m.fit(x, y, epochs=2, batch_size=16, verbose=0,
          callbacks=[C.ModelCheckpoint(path, monitor="loss", save_weights_only=True)])
    fresh = _model(seed=7)
    assert not _same(fresh.get_weights(), m.get_weights())
    fresh.load_weights(path)
    assert _same(fresh.get_weights(), m.get_weights())
    assert [n for n in os.listdir(path.parent) if n.startswith(".")] == []  # no temp files


def test_checkpoint_integer_save_freq_counts_batches_across_epochs(tmp_path):
    x, y = _data(n=40)
    m = _model()
    ck = C.ModelCheckpoint(str(tmp_path / "ck-{epoch}-{batch}.weights.safetensors"),
                           save_weights_only=True, save_freq=3)
    m.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[ck])  # 10 batches an epoch
    names = sorted(os.listdir(tmp_path), key=lambda n: tuple(map(int, n.split(".")[0]
                                                                .split("-")[1:])))
    assert names == [f"ck-{e}-{b}.weights.safetensors"
                     for e, b in [(1, 3), (1, 6), (1, 9), (2, 2), (2, 5), (2, 8)]]


def test_checkpoint_batch_saves_hold_that_batch_weights(tmp_path):
    x, y = _data(n=40)
    m = _model()
    seen = {}
    rec = C.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.__setitem__(
        batch, [w.copy() for w in m.get_weights()]))
    ck = C.ModelCheckpoint(str(tmp_path / "b{batch}.weights.safetensors"),
                           save_weights_only=True, save_freq=4)
    m.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[rec, ck])
    assert sorted(os.listdir(tmp_path)) == ["b4.weights.safetensors", "b8.weights.safetensors"]
    probe = _model(seed=3)
    probe.load_weights(tmp_path / "b8.weights.safetensors")
    assert _same(probe.get_weights(), seen[7])


@pytest.mark.parametrize("kwargs,arg", [
    ({"filepath": "m.keras"}, "filepath"),
    ({"filepath": "m.h5"}, "filepath"),
    ({"filepath": "m.ferrax", "save_weights_only": True}, "filepath"),
    ({"filepath": "m.weights.safetensors"}, "filepath"),
    ({"filepath": "m.ferrax", "save_freq": 0}, "save_freq"),
    ({"filepath": "m.ferrax", "save_freq": "batch"}, "save_freq"),
    ({"filepath": "m.ferrax", "save_freq": True}, "save_freq"),
    ({"filepath": "m.ferrax", "mode": "maximum"}, "mode"),
])
def test_checkpoint_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        C.ModelCheckpoint(**kwargs)


def test_checkpoint_template_field_missing_and_monitor_missing(tmp_path):
    x, y = _data()
    m = _model()
    with pytest.raises(KeyError, match="val_loss"):
        m.fit(x, y, epochs=1, verbose=0,
              callbacks=[C.ModelCheckpoint(str(tmp_path / "{val_loss:.2f}.ferrax"))])
    with pytest.warns(UserWarning, match="val_loss"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[C.ModelCheckpoint(
            str(tmp_path / "a.ferrax"), save_best_only=True)])
    assert os.path.exists(tmp_path / "a.ferrax")  # saved anyway, as Keras does


# --- ReduceLROnPlateau -----------------------------------------------------------------------
def test_reduce_lr_scripted_patience_cooldown_min_lr():
    model = FakeModel(lr=1.0)
    rl = C.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_lr=0.1)
    lrs = []
    _drive(rl, [1.0] * 11, model=model,
           between=lambda e, m: lrs.append(m.optimizer.learning_rate))
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.1, 0.1, 0.1]


def test_reduce_lr_improvement_resets_and_min_delta():
    model = FakeModel(lr=1.0)
    lrs = []
    _drive(C.ReduceLROnPlateau(factor=0.1, patience=1, min_delta=0.01), [1.0, 0.5, 0.495, 0.4],
           model=model, between=lambda e, m: lrs.append(m.optimizer.learning_rate))
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1])  # 0.005 is below min_delta
    model = FakeModel(lr=1.0)
    lrs = []
    _drive(C.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1),
           [0.5, 0.6, 0.55, 0.7], monitor="val_accuracy", model=model,
           between=lambda e, m: lrs.append(m.optimizer.learning_rate))
    assert lrs == [1.0, 1.0, 0.5, 0.5]  # accuracy: higher is better


def test_reduce_lr_through_fit_changes_the_engine_rate():
    x, y = _data()
    m = _model(optimizer=ferrax.optimizers.SGD(learning_rate=0.04))
    inject = Inject("val_score", [1.0, 1.0, 1.0, 1.0, 1.0])
    rl = C.ReduceLROnPlateau(monitor="val_score", factor=0.5, patience=2)
    csv_rows = []
    after = C.LambdaCallback(on_epoch_end=lambda e, logs: csv_rows.append(
        (logs["learning_rate"], m.optimizer.learning_rate)))
    h = m.fit(x, y, epochs=5, batch_size=16, verbose=0, callbacks=[inject, rl, after])
    assert [a for a, _ in csv_rows] == pytest.approx([0.04, 0.04, 0.04, 0.02, 0.02])
    assert [b for _, b in csv_rows] == pytest.approx([0.04, 0.04, 0.02, 0.02, 0.01])
    assert m.optimizer.learning_rate == pytest.approx(0.01)
    assert m._core.learning_rate == pytest.approx(0.01)
    assert len(h.epoch) == 5


def test_logged_learning_rate_reaches_history():
    """Keras runs History after the user's callbacks, so what they add to the epoch logs
    (ReduceLROnPlateau's and LearningRateScheduler's `learning_rate`) is in the history."""
    x, y = _data()
    m = _model(optimizer=ferrax.optimizers.SGD(learning_rate=0.04))
    h = m.fit(x, y, epochs=3, batch_size=16, verbose=0,
              callbacks=[C.LearningRateScheduler(lambda e, lr: 0.04 / (e + 1))])
    assert h.history.get("learning_rate") == pytest.approx([0.04, 0.02, 0.04 / 3])


@pytest.mark.parametrize("kwargs,arg,exc", [
    ({"factor": 1.0}, "factor", ValueError),
    ({"factor": 2}, "factor", ValueError),
    ({"factor": -0.5}, "factor", ValueError),
    ({"patience": -1}, "patience", ValueError),
    ({"cooldown": -1}, "cooldown", ValueError),
    ({"min_lr": -1e-3}, "min_lr", ValueError),
    ({"mode": "up"}, "mode", ValueError),
    ({"epsilon": 1e-3}, "epsilon", TypeError),
])
def test_reduce_lr_bad_arguments(kwargs, arg, exc):
    with pytest.raises(exc, match=arg):
        C.ReduceLROnPlateau(**kwargs)


def test_reduce_lr_warns_on_missing_monitor():
    with pytest.warns(UserWarning, match="val_loss"):
        _drive(C.ReduceLROnPlateau(), [1.0], monitor="loss")


# --- LearningRateScheduler ---------------------------------------------------------------------
def test_learning_rate_scheduler_sets_the_rate_each_epoch_and_the_engine_uses_it():
    x, y = _data()
    m = _model(optimizer=ferrax.optimizers.SGD(learning_rate=0.05))
    calls, seen = [], []

    def schedule(epoch, lr):
        calls.append((epoch, lr))
        return lr * 0.5 if epoch < 2 else 0.0

    inject = Inject("unused", [0] * 5)
    probe = C.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(
        m.optimizer.learning_rate))
    h = m.fit(x, y, epochs=5, batch_size=16, verbose=0,
              callbacks=[C.LearningRateScheduler(schedule), probe, inject])
    assert [e for e, _ in calls] == [0, 1, 2, 3, 4]
    assert [lr for _, lr in calls] == pytest.approx([0.05, 0.025, 0.0125, 0.0, 0.0])
    assert seen == pytest.approx([0.025, 0.0125, 0.0, 0.0, 0.0])
    assert h.history["loss"][0] != h.history["loss"][1]
    assert not _same(inject.weights[0], inject.weights[1])
    # From epoch 2 on the rate is 0: the weights stay exactly as they were after epoch 1.
    for e in (2, 3, 4):
        assert _same(inject.weights[e], inject.weights[1])


def test_learning_rate_scheduler_one_argument_and_bad_outputs():
    model = FakeModel(lr=1.0)
    cb = C.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
    cb.set_model(model)
    cb.on_epoch_begin(3)
    assert model.optimizer.learning_rate == pytest.approx(0.025)
    logs = {}
    cb.on_epoch_end(3, logs)
    assert logs["learning_rate"] == pytest.approx(0.025)
    for bad in ("0.1", None, float("nan"), -0.1):
        cb = C.LearningRateScheduler(lambda epoch, lr, bad=bad: bad)
        cb.set_model(model)
        with pytest.raises(ValueError, match="schedule"):
            cb.on_epoch_begin(0)
    with pytest.raises(TypeError, match="schedule"):
        C.LearningRateScheduler(0.1)


# --- CSVLogger -------------------------------------------------------------------------------
def _read_csv(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def test_csv_logger_header_and_rows(tmp_path):
    x, y = _data()
    m = _model(metrics=["mae"])
    path = tmp_path / "log.csv"
    h = m.fit(x, y, epochs=3, batch_size=16, verbose=0, validation_split=0.25,
              callbacks=[C.CSVLogger(str(path))])
    rows = _read_csv(path)
    assert rows[0] == ["epoch", "loss", "mean_absolute_error", "val_loss",
                       "val_mean_absolute_error"] or rows[0] == ["epoch", "loss", "mae",
                                                                 "val_loss", "val_mae"]
    assert len(rows) == 4
    for e, row in enumerate(rows[1:]):
        assert int(row[0]) == e
        for key, cell in zip(rows[0][1:], row[1:]):
            assert float(cell) == h.history[key][e]  # written at full precision


def test_csv_logger_append_and_overwrite(tmp_path):
    x, y = _data()
    m = _model()
    path = tmp_path / "log.csv"
    m.fit(x, y, epochs=2, verbose=0, callbacks=[C.CSVLogger(path, separator=";")])
    m.fit(x, y, epochs=3, verbose=0, callbacks=[C.CSVLogger(path, separator=";", append=True)])
    rows = _read_csv(path, ";")
    assert rows[0] == ["epoch", "loss"] and len(rows) == 6
    assert [r[0] for r in rows[1:]] == ["0", "1", "0", "1", "2"]
    m.fit(x, y, epochs=1, verbose=0, callbacks=[C.CSVLogger(path, separator=";")])
    assert len(_read_csv(path, ";")) == 2
    # Appending to a file that does not exist yet writes the header.
    fresh = tmp_path / "new.csv"
    m.fit(x, y, epochs=1, verbose=0, callbacks=[C.CSVLogger(fresh, append=True)])
    assert _read_csv(fresh)[0] == ["epoch", "loss"]
    with pytest.raises(ValueError, match="separator"):
        C.CSVLogger(path, separator=", ")


# --- TerminateOnNaN --------------------------------------------------------------------------
def _exploding():
    r = np.random.default_rng(0)
    x = (50 * r.normal(size=(256, 4))).astype(np.float32)
    y = (1000 * r.normal(size=(256, 1))).astype(np.float32)
    return x, y


def test_terminate_on_nan_stops_training():
    x, y = _exploding()
    m = _model(optimizer=ferrax.optimizers.SGD(learning_rate=1e4))
    h = m.fit(x, y, epochs=20, batch_size=8, verbose=0, callbacks=[C.TerminateOnNaN()])
    assert len(h.history["loss"]) == 1
    last = h.history["loss"][-1]
    assert math.isnan(last) or math.isinf(last)
    # Without the callback the same run goes on for all its epochs.
    m = _model(optimizer=ferrax.optimizers.SGD(learning_rate=1e4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(m.fit(x, y, epochs=3, batch_size=8, verbose=0).history["loss"]) == 3


def test_terminate_on_nan_raise_error():
    x, y = _exploding()
    m = _model(optimizer=ferrax.optimizers.SGD(learning_rate=1e4))
    with pytest.raises(RuntimeError, match="NaN or Inf loss"):
        m.fit(x, y, epochs=5, batch_size=8, verbose=0,
              callbacks=[C.TerminateOnNaN(raise_error=True)])


def test_terminate_on_nan_scripted():
    model = FakeModel()
    cb = C.TerminateOnNaN()
    cb.set_model(model)
    cb.on_train_batch_end(0, {"loss": 1.0})
    assert not model.stop_training
    cb.on_train_batch_end(1, {"loss": float("inf")})
    assert model.stop_training


# --- BackupAndRestore ------------------------------------------------------------------------
class Interrupt(C.Callback):
    """Raises at the start of `epoch`, or after its batch `batch`."""

    def __init__(self, epoch, batch=None):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch
        if epoch == self.epoch and self.batch is None:
            raise RuntimeError("Interrupting!")

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise RuntimeError("Interrupting!")


def _adam():
    return ferrax.optimizers.Adam(learning_rate=0.01)


@pytest.mark.parametrize("same_model", [True, False], ids=["same_model", "new_model"])
@pytest.mark.parametrize("at_batch", [None, 1], ids=["epoch_start", "mid_epoch"])
def test_backup_and_restore_resumes_bitwise(tmp_path, same_model, at_batch):
    """Interrupted at epoch 3 (before it, or inside it after its second batch: then the live
    weights and optimizer state have moved past the backup), resumed at epoch 3; the result is
    bitwise the uninterrupted run's (Adam's state, dropout and shuffling all restored)."""
    x, y = _data(n=96)
    kw = dict(epochs=6, batch_size=16, verbose=0, validation_split=0.25)
    ref = _model(seed=11, optimizer=_adam(), dropout=True)
    h_ref = ref.fit(x, y, **kw)

    backup_dir = tmp_path / "backup"
    backup = C.BackupAndRestore(str(backup_dir))
    m = _model(seed=11, optimizer=_adam(), dropout=True)
    with pytest.raises(RuntimeError, match="Interrupting"):
        m.fit(x, y, callbacks=[backup, Interrupt(3, at_batch)], **kw)
    with open(backup_dir / "training_metadata.json") as f:
        assert json.load(f)["epoch"] == 3
    if not same_model:  # a new process: the same script builds the model again
        m = _model(seed=11, optimizer=_adam(), dropout=True)
    h = m.fit(x, y, callbacks=[backup], **kw)
    assert h.epoch == [3, 4, 5]
    assert _same(m.get_weights(), ref.get_weights())
    # The epoch means can differ in the last bit: fit sums per-chunk loss totals, and chunk
    # boundaries depend on timing (the weights above do not).
    assert h.history["loss"] == pytest.approx(h_ref.history["loss"][3:], rel=1e-12)
    assert h.history["val_loss"] == pytest.approx(h_ref.history["val_loss"][3:], rel=1e-12)
    assert m.optimizer.iterations == ref.optimizer.iterations
    assert not backup_dir.exists()  # deleted when training ended normally
    # A later fit with the same callback starts from scratch.
    assert m.fit(x, y, callbacks=[backup], **kw).epoch == [0, 1, 2, 3, 4, 5]


def test_backup_keeps_a_changed_learning_rate_and_can_be_kept(tmp_path):
    x, y = _data()
    backup_dir = tmp_path / "b"
    m = _model()
    halve = C.LearningRateScheduler(lambda e, lr: lr * 0.5)
    with pytest.raises(RuntimeError):
        m.fit(x, y, epochs=5, verbose=0, callbacks=[halve, C.BackupAndRestore(backup_dir),
                                                    Interrupt(2)])
    m2 = _model()
    assert m2.optimizer.learning_rate == pytest.approx(0.05)
    keep = C.BackupAndRestore(backup_dir, delete_checkpoint=False)
    seen = []
    m2.fit(x, y, epochs=3, verbose=0, callbacks=[keep, C.LambdaCallback(
        on_epoch_begin=lambda e, logs: seen.append((e, m2.optimizer.learning_rate)))])
    assert seen == [(2, pytest.approx(0.05 / 4))]
    files = sorted(os.listdir(backup_dir))
    assert files[-1] == "training_metadata.json" and len(files) == 2
    assert files[0].endswith(".ferrax")


def test_backup_integer_save_freq_restarts_the_interrupted_epoch(tmp_path):
    x, y = _data(n=64)
    backup_dir = tmp_path / "b"

    def boom(batch, logs):
        if batch == 2 and len(epochs) == 2:
            raise RuntimeError("Interrupting!")

    epochs = []
    m = _model()
    with pytest.raises(RuntimeError):
        m.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[
            C.LambdaCallback(on_epoch_begin=lambda e, logs: epochs.append(e)),
            C.BackupAndRestore(backup_dir, save_freq=2), C.LambdaCallback(
                on_train_batch_end=boom)])
    with open(backup_dir / "training_metadata.json") as f:
        meta = json.load(f)
    assert (meta["epoch"], meta["batch"]) == (1, 1)  # 4 batches an epoch: saves at 2, 4, 6
    h = m.fit(x, y, epochs=4, batch_size=16, verbose=0,
              callbacks=[C.BackupAndRestore(backup_dir, save_freq=2)])
    assert h.epoch == [1, 2, 3]


@pytest.mark.parametrize("kwargs,arg", [
    ({"backup_dir": ""}, "backup_dir"),
    ({"backup_dir": "b", "save_freq": "batch"}, "save_freq"),
    ({"backup_dir": "b", "save_freq": -3}, "save_freq"),
])
def test_backup_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        C.BackupAndRestore(**kwargs)


def test_backup_leaves_other_files_alone(tmp_path):
    x, y = _data()
    (tmp_path / "notes.txt").write_text("mine")
    m = _model()
    m.fit(x, y, epochs=2, verbose=0, callbacks=[C.BackupAndRestore(tmp_path)])
    assert os.listdir(tmp_path) == ["notes.txt"]


# --- LambdaCallback --------------------------------------------------------------------------
def test_lambda_callback_hooks_and_arguments():
    x, y = _data(n=48)
    m = _model()
    events = []
    cb = C.LambdaCallback(
        on_train_begin=lambda logs: events.append(("train_begin", dict(logs))),
        on_epoch_begin=lambda epoch, logs: events.append(("epoch_begin", epoch)),
        on_train_batch_begin=lambda batch, logs: events.append(("batch_begin", batch)),
        on_train_batch_end=lambda batch, logs: events.append(("batch_end", batch,
                                                              sorted(logs))),
        on_epoch_end=lambda epoch, logs: events.append(("epoch_end", epoch, sorted(logs))),
        on_train_end=lambda logs: events.append(("train_end", sorted(logs))),
    )
    m.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.25, callbacks=[cb])
    expected = [("train_begin", {})]
    for e in range(2):
        expected.append(("epoch_begin", e))
        for b in range(3):  # 36 training samples, batches of 16
            expected += [("batch_begin", b), ("batch_end", b, ["loss"])]
        expected.append(("epoch_end", e, ["loss", "val_loss"]))
    expected.append(("train_end", ["loss", "val_loss"]))
    assert events == expected


def test_lambda_callback_keyword_hooks_and_errors():
    x, y = _data()
    m = _model()
    events = []
    cb = C.LambdaCallback(on_batch_end=lambda batch, logs: events.append(batch),
                          on_test_end=lambda logs: events.append(("test_end", sorted(logs))))
    m.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[cb])
    assert events == [0, 1]
    m.evaluate(x, y, verbose=0, callbacks=[cb])
    assert events[-1] == ("test_end", ["loss"])
    with pytest.raises(TypeError, match="on_epoch_finish"):
        C.LambdaCallback(on_epoch_finish=print)
    with pytest.raises(TypeError, match="on_epoch_end"):
        C.LambdaCallback(on_epoch_end="print")


def test_callbacks_are_exported_with_keras_names():
    for name in ("EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler",
                 "CSVLogger", "TerminateOnNaN", "BackupAndRestore", "LambdaCallback"):
        assert issubclass(getattr(ferrax.callbacks, name), C.Callback)
    es = C.EarlyStopping()
    assert (es.monitor, es.min_delta, es.patience, es.verbose, es.mode, es.baseline,
            es.restore_best_weights, es.start_from_epoch) == ("val_loss", 0, 0, 0, "auto", None,
                                                              False, 0)
    rl = C.ReduceLROnPlateau()
    assert (rl.monitor, rl.factor, rl.patience, rl.min_delta, rl.cooldown, rl.min_lr) == (
        "val_loss", 0.1, 10, 1e-4, 0, 0.0)


# --- how fit steps ---------------------------------------------------------------------------
def test_only_callbacks_that_need_single_batches_make_fit_step_one_batch_at_a_time():
    """Per-batch stepping costs an engine call per batch (about 20% of an MNIST-sized epoch on
    2 cores), so callbacks declare which batch hooks need it (`_batch_hooks`): a checkpoint
    every N batches does, one per epoch does not; TerminateOnNaN is content with the loss fit
    reports every chunk; a LambdaCallback only for the batch hooks it was given."""
    wants = C.wants_batches
    assert wants(C.ModelCheckpoint("m.ferrax", save_freq=5))
    assert not wants(C.ModelCheckpoint("m.ferrax"))
    assert wants(C.BackupAndRestore("b", save_freq=5))
    assert not wants(C.BackupAndRestore("b"))
    assert not wants(C.TerminateOnNaN())
    assert wants(C.LambdaCallback(on_train_batch_end=print))
    assert wants(C.LambdaCallback(on_batch_begin=print))
    assert not wants(C.LambdaCallback(on_epoch_end=print))


def test_on_batch_end_is_kerass_alias_of_on_train_batch_end():
    # Keras calls on_batch_begin/on_batch_end from the default on_train_batch_* hooks
    class Counter(C.Callback):
        def __init__(self):
            super().__init__()
            self.begun, self.ended = [], []

        def on_batch_begin(self, batch, logs=None):
            self.begun.append(batch)

        def on_batch_end(self, batch, logs=None):
            self.ended.append((batch, sorted(logs)))

    x = np.random.default_rng(0).standard_normal((40, 3)).astype("float32")
    y = np.random.default_rng(1).standard_normal((40, 1)).astype("float32")
    model = ferrax.Sequential([ferrax.Input((3,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    counter = Counter()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[counter])
    assert counter.begun == [0, 1, 2, 3, 4] * 2
    assert [b for b, _ in counter.ended] == [0, 1, 2, 3, 4] * 2
    assert all("loss" in keys for _, keys in counter.ended)
