"""Python's main thread, which imports ferrax, is worker 0 of the engine's pool (its
calls run on it in place); calls from other threads are taken by the other workers.
Training gives the same weights whichever thread calls, alone or side by side."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np

import ferrax
from ferrax import layers

R = np.random.default_rng(0)
# big enough that the kernels split the work across the pool
X = R.normal(size=(512, 300)).astype(np.float32)
Y = R.integers(0, 10, size=512)


def _trained(seed: int = 3) -> list[np.ndarray]:
    ferrax.utils.set_random_seed(seed)
    model = ferrax.Sequential([ferrax.Input((300,)), layers.Dense(256, activation="relu"),
                               layers.Dense(10)])
    model.compile(optimizer="adam", loss=ferrax.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    model.fit(X, Y, batch_size=64, epochs=2, verbose=0)
    return model.get_weights()


def _in_thread(fn, results: list) -> threading.Thread:
    def run() -> None:
        try:
            results.append(fn())
        except BaseException as e:  # (reported by the test, not lost in the thread)
            results.append(e)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_importing_thread_is_worker_0_of_the_pool():
    assert threading.current_thread() is threading.main_thread()
    assert ferrax._core.num_threads() >= 1


def test_training_in_another_thread_gives_the_main_threads_weights():
    here = _trained()
    results: list = []
    thread = _in_thread(_trained, results)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the engine call from another thread never finished"
    assert not isinstance(results[0], BaseException), results[0]
    assert all(np.array_equal(a, b) for a, b in zip(here, results[0]))


def test_models_trained_side_by_side_in_two_threads_match_each_alone():
    alone = [_trained(1), _trained(2)]
    results: list = []
    thread = _in_thread(lambda: _trained(2), results)
    mine = _trained(1)  # meanwhile, on the main thread
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert not isinstance(results[0], BaseException), results[0]
    assert all(np.array_equal(a, b) for a, b in zip(alone[0], mine))
    assert all(np.array_equal(a, b) for a, b in zip(alone[1], results[0]))


def test_imported_first_from_another_thread_the_engine_still_trains(tmp_path):
    # (then no thread is adopted: every call is handed to the pool, as from any thread)
    script = f"""
import sys, threading
import numpy as np
sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
out = {{}}
def work():
    import test_engine_threads as t
    out["w"] = t._trained()
thread = threading.Thread(target=work)
thread.start()
thread.join()
import test_engine_threads as t
np.savez(sys.argv[1], *out["w"], *t._trained())
"""
    path = tmp_path / "w.npz"
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=300)
    with np.load(path) as f:
        arrays = [f[f"arr_{i}"] for i in range(len(f.files))]
    half = len(arrays) // 2
    here = _trained()
    for a, b, c in zip(arrays[:half], arrays[half:], here):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def _model(seed: int = 3) -> ferrax.Model:
    ferrax.utils.set_random_seed(seed)
    model = ferrax.Sequential([ferrax.Input((300,)), layers.Dense(256, activation="relu"),
                               layers.Dense(10)])
    model.compile(optimizer="adam", loss=ferrax.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    return model


def test_four_threads_predicting_on_one_model_all_get_its_outputs():
    # (each call waits its turn on the model; before, 3 of 4 raised "Already borrowed")
    model = _model()
    want = model.predict(X, batch_size=64, verbose=0)
    results: list = []
    threads = [_in_thread(lambda: [model.predict(X, batch_size=64, verbose=0)
                                   for _ in range(25)], results) for _ in range(4)]
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert len(results) == 4
    for r in results:
        assert not isinstance(r, BaseException), r
        assert all(np.array_equal(out, want) for out in r)


def test_predicting_from_another_thread_does_not_disturb_a_running_fit():
    alone = _model()
    alone.fit(X, Y, batch_size=16, epochs=3, verbose=0)
    model = _model()
    stop, predicted = threading.Event(), threading.Event()
    seen: list = []

    def keep_predicting() -> int:
        calls = 0
        while not stop.is_set():
            seen.append(model.predict(X[:64], verbose=0).shape)
            calls += 1
            predicted.set()
        return calls

    class MidFit(ferrax.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            if epoch == 1:  # (the fit goes on once a predict has run in the middle)
                predicted.wait(timeout=60)

    results: list = []
    thread = _in_thread(keep_predicting, results)
    model.fit(X, Y, batch_size=16, epochs=3, verbose=0, callbacks=[MidFit()])
    stop.set()
    thread.join(timeout=60)
    assert not isinstance(results[0], BaseException), results[0]
    assert results[0] > 0 and set(seen) == {(64, 10)}
    assert all(np.array_equal(a, b) for a, b in zip(alone.get_weights(), model.get_weights()))


def test_a_second_fit_from_another_thread_is_refused_and_the_first_completes():
    alone = _model()
    alone.fit(X, Y, batch_size=16, epochs=3, verbose=0)
    model = _model()
    started, attempted = threading.Event(), threading.Event()

    class MidFit(ferrax.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            if epoch == 1:  # (held here until the other thread has tried)
                started.set()
                attempted.wait(timeout=60)

    errors: list = []

    def second() -> None:
        started.wait(timeout=60)
        for attempt in (lambda: model.fit(X, Y, epochs=1, verbose=0),
                        lambda: model.train_on_batch(X[:16], Y[:16]),
                        lambda: model.optimizer.apply_gradients(
                            zip([np.zeros(w.shape, np.float32) for w in
                                 model.trainable_variables], model.trainable_variables))):
            try:
                attempt()
            except RuntimeError as e:
                errors.append(str(e))
        attempted.set()

    results: list = []
    thread = _in_thread(second, results)
    model.fit(X, Y, batch_size=16, epochs=3, verbose=0, callbacks=[MidFit()])
    thread.join(timeout=60)
    assert len(errors) == 3, errors
    assert all("being trained in another thread" in e and "fit()" in e for e in errors)
    assert all(np.array_equal(a, b) for a, b in zip(alone.get_weights(), model.get_weights()))
    model.fit(X[:32], Y[:32], epochs=1, verbose=0)  # (free again once it ended)
