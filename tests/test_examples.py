"""The main training script and the bundled sample, end to end."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ferrax
from ferrax import layers
from ferrax.datasets import mnist

ROOT = Path(__file__).resolve().parents[1]


def test_mlp_learns_the_bundled_sample():
    (x_train, y_train), (x_test, y_test) = mnist.load_sample()
    ferrax.utils.set_random_seed(7)
    model = ferrax.Sequential([
        layers.Flatten(input_shape=(28, 28)),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x_train, x_test = x_train / 255.0, x_test / 255.0  # float64: converted batch by batch
    model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.90, accuracy
    # evaluate agrees with an independent computation from predict's outputs
    probs = model.predict(x_test, verbose=0).astype(np.float64)
    assert np.isclose(accuracy, np.mean(probs.argmax(1) == y_test))
    p_true = np.clip(probs[np.arange(len(y_test)), y_test] / probs.sum(1), 1e-7, 1 - 1e-7)
    assert np.isclose(loss, -np.mean(np.log(p_true)), rtol=1e-4)


@pytest.mark.filterwarnings("ignore")
def test_main_script_runs_on_the_sample_and_writes_pictures(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mnist_mlp.py"), "--dataset", "sample",
         "--epochs", "2", "--out-dir", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test accuracy:" in result.stdout
    accuracy = float(result.stdout.split("test accuracy:")[1].split()[0])
    assert accuracy > 0.8
    for name in ("learning_curves.png", "test_digits.png", "mnist_mlp.ferrax"):
        path = out / name
        assert path.exists() and path.stat().st_size > 1000, name
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = ferrax.models.load_model(out / "mnist_mlp.ferrax")
    assert [w.shape for w in model.get_weights()] == [(784, 128), (128,), (128, 10), (10,)]
    # the model scales its uint8 input itself (Rescaling first)
    assert type(model.layers[0]).__name__ == "Rescaling"
    _, (x_test, y_test) = mnist.load_sample()
    reloaded = model.evaluate(x_test, y_test, verbose=0)[1]
    assert abs(reloaded - accuracy) < 1e-3


def test_main_script_falls_back_to_the_sample_when_mnist_is_missing(tmp_path):
    pytest.importorskip("matplotlib")
    env = {**os.environ, "HOME": str(tmp_path), "USERPROFILE": str(tmp_path),
           "FERRAX_HOME": str(tmp_path / "fx"), "KERAS_HOME": str(tmp_path / "k"),
           "FERRAX_SYSTEM_DATA_DIRS": ""}
    code = (
        "import sys, runpy\n"
        "import ferrax.datasets.mnist as m\n"
        "m.MIRRORS = ['http://127.0.0.1:9/']\n"
        f"sys.argv = ['mnist_mlp.py', '--epochs', '1', '--out-dir', {str(tmp_path / 'o')!r}]\n"
        f"runpy.run_path({str(ROOT / 'examples' / 'mnist_mlp.py')!r}, run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert "not available" in first and "sample" in first
    assert ".)" not in first and ". " in first, first  # one sentence each, no ".)" run-on


def test_cnn_script_learns_the_sample(tmp_path):
    """examples/mnist_cnn.py (the Keras simple convnet) on the bundled 4,000-digit sample:
    3 epochs reach about 92% test accuracy (0.919 measured with the default seed)."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mnist_cnn.py"), "--dataset", "sample",
         "--epochs", "3", "--out-dir", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(None, 13, 13, 32)" in result.stdout and "(None, 5, 5, 64)" in result.stdout
    assert "Total params: 34,826" in result.stdout  # as in the Keras example
    accuracy = float(result.stdout.split("test accuracy:")[1].split()[0])
    assert accuracy >= 0.88, result.stdout
    model = ferrax.models.load_model(out / "mnist_cnn.ferrax")
    _, (x_test, y_test) = mnist.load_sample()
    probs = model.predict(x_test[..., None] / 255.0, verbose=0)
    assert abs(np.mean(probs.argmax(1) == y_test) - accuracy) < 1e-3


def test_the_custom_loop_example_learns_both_ways():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_loop.py"), "--epochs", "2"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    loop = float(result.stdout.split("loop validation accuracy:")[1].split()[0])
    fitted = float(result.stdout.split("test accuracy:")[1].split()[0])
    assert loop > 0.8 and fitted > 0.8, result.stdout
    assert "val_accuracy" in result.stdout  # fit's progress line, with validation
