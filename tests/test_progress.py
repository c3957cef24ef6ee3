"""Progress output: a redrawn bar on terminals, one clean line per epoch elsewhere."""

import io
import sys
import threading
import time

import numpy as np
import pytest

import ferrax
from ferrax import layers


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


class SlowBatches(ferrax.callbacks.Callback):
    """Makes each batch take a little time, so the bar has something to redraw."""

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(0.004)


def _fit(stream, monkeypatch, verbose, epochs=3, callbacks=()):
    monkeypatch.setattr(sys, "stdout", stream)
    model = ferrax.Sequential([layers.Dense(8, input_shape=(4,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x = np.random.default_rng(0).normal(size=(640, 4))
    model.fit(x, x[:, :1], epochs=epochs, batch_size=8, verbose=verbose,
              callbacks=list(callbacks))
    model.evaluate(x, x[:, :1], verbose=verbose)
    model.predict(x, verbose=verbose)
    monkeypatch.undo()
    return stream.getvalue()


def test_not_a_terminal_gives_one_clean_line_per_epoch(monkeypatch):
    out = _fit(io.StringIO(), monkeypatch, verbose=1, callbacks=[SlowBatches()])
    lines = out.splitlines()
    assert "\r" not in out and "\x1b" not in out
    assert [l.split(" - ")[0] for l in lines[:3]] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all("80/80" in l and "loss:" in l and "mae:" in l for l in lines[:3])
    assert len(lines) == 5  # 3 epochs, evaluate, predict


def test_terminal_bar_is_redrawn_in_place_and_throttled(monkeypatch):
    start = time.perf_counter()
    out = _fit(FakeTerminal(), monkeypatch, verbose=1, callbacks=[SlowBatches()])
    seconds = time.perf_counter() - start
    assert out.startswith("Epoch 1/3\n")
    redraws = out.count("\r")
    assert redraws >= 3 * 2  # at least a redraw and the final line per epoch
    assert redraws <= seconds / 0.1 + 3 * 4 + 10  # at most one redraw per 0.1 s
    assert "━" in out and "ETA:" in out
    finals = [l for l in out.split("\n") if "80/80" in l]
    assert len(finals) == 3 and all("ms/step" in l or "us/step" in l for l in finals)


def test_verbose_2_is_one_line_per_epoch_even_on_a_terminal(monkeypatch):
    out = _fit(FakeTerminal(), monkeypatch, verbose=2)
    assert "\r" not in out
    assert len([l for l in out.splitlines() if l.startswith("Epoch")]) == 3


def test_verbose_0_is_silent(monkeypatch):
    assert _fit(io.StringIO(), monkeypatch, verbose=0) == ""


def test_ctrl_c_stops_fit_quickly_and_keeps_history():
    import _thread

    ferrax.utils.set_random_seed(0)
    model = ferrax.Sequential([layers.Dense(256, activation="relu", input_shape=(64,)),
                               layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(20000, 64)).astype(np.float32)
    y = x[:, :1]
    fired = {}

    def interrupt():
        fired["at"] = time.perf_counter()
        _thread.interrupt_main()

    timer = threading.Timer(1.0, interrupt)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=1000, batch_size=32, verbose=0)
    stopped = time.perf_counter() - fired["at"]
    timer.join()
    assert stopped < 0.5, stopped
    history = model.history.history
    assert len(history["loss"]) == len(model.history.epoch) >= 1
    assert all(np.isfinite(w).all() for w in model.get_weights())
    # The next fit continues normally.
    before = model.evaluate(x, y, verbose=0)
    after = model.fit(x, y, epochs=1, batch_size=256, verbose=0).history["loss"][0]
    assert np.isfinite(after) and model.evaluate(x, y, verbose=0) <= before * 1.5


class Recorder(ferrax.callbacks.Callback):
    """Records every hook with its arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            def record(*args):
                self.calls.append((name, args[0] if args and isinstance(args[0], int) else None))
            return record
        return super().__getattribute__(name)


def test_every_hook_is_called_in_keras_order_with_model_and_params():
    rec = Recorder()
    # Recorder overrides nothing on the class, so mark the batch hooks as wanted.
    rec._batch_hooks = ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
                        "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end")
    model = ferrax.Sequential([layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((10, 3))
    model.fit(x, np.ones((10, 2)), batch_size=4, epochs=1, verbose=0,
              validation_data=(x[:4], np.ones((4, 2))), callbacks=[rec])
    assert rec.model is model and rec.params["epochs"] == 1 and rec.params["steps"] == 3
    names = [c[0] for c in rec.calls]
    assert names == ["on_train_begin", "on_epoch_begin",
                     "on_train_batch_begin", "on_train_batch_end",
                     "on_train_batch_begin", "on_train_batch_end",
                     "on_train_batch_begin", "on_train_batch_end",
                     "on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_end",
                     "on_epoch_end", "on_train_end"]
    assert [c[1] for c in rec.calls if c[0] == "on_train_batch_end"] == [0, 1, 2]
    rec.calls.clear()
    model.evaluate(x, np.ones((10, 2)), batch_size=5, verbose=0, callbacks=[rec])
    model.predict(x, batch_size=5, verbose=0, callbacks=[rec])
    assert [c[0] for c in rec.calls] == [
        "on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_batch_begin",
        "on_test_batch_end", "on_test_end", "on_predict_begin", "on_predict_batch_begin",
        "on_predict_batch_end", "on_predict_batch_begin", "on_predict_batch_end",
        "on_predict_end"]
