"""Sizes too large for the machine, or whose products overflow, are ValueErrors that
name the layer, the shape and the bytes, before anything is allocated.

Each case that used to abort the interpreter (an allocation failure is not a panic) runs
in a subprocess under FERRAX_MEMORY_LIMIT=1G, so the figures do not depend on this
machine's memory, and must exit with code 0 after catching the expected ValueError.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ferrax as keras
from ferrax import _core, _memory, initializers, layers


def run_isolated(code: str, limit: str = "1G") -> str:
    """Runs `code` in a fresh interpreter; returns what it printed (it must exit 0)."""
    env = dict(os.environ, FERRAX_MEMORY_LIMIT=limit)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def expect_value_error(statement: str) -> str:
    """The ValueError's message that `statement` raises in a fresh interpreter."""
    out = run_isolated(f"""
        import ferrax as keras
        from ferrax import layers, initializers
        try:
            {statement}
        except ValueError as e:
            print("VALUE_ERROR", e)
        else:
            print("NO ERROR")
    """)
    assert out.startswith("VALUE_ERROR"), out
    return out


def test_dense_too_large_for_memory_names_layer_shape_and_bytes():
    msg = expect_value_error(
        "keras.Sequential([keras.Input((10**4,)), layers.Dense(10**6, name='wide')])")
    assert "Dense 'wide'" in msg and "kernel" in msg
    assert "[10000, 1000000]" in msg
    assert "80.0 GB" in msg  # kernel and its gradient, float32
    assert "1.1 GB" in msg  # the limit: 1 GiB


def test_functional_dense_too_large():
    msg = expect_value_error("layers.Dense(10**6, name='wide')(keras.Input((10**4,)))")
    assert "Dense 'wide'" in msg and "[10000, 1000000]" in msg


def test_lstm_units_beyond_any_size_are_refused():
    msg = expect_value_error("keras.Sequential([keras.Input((3, 4)), layers.LSTM(2**40)])")
    assert "'units'" in msg and str(2**40) in msg


def test_orthogonal_initializer_too_large():
    msg = expect_value_error("initializers.Orthogonal()((2**31, 4))")
    assert "[2147483648, 4]" in msg and "GB" in msg


def test_glorot_shape_whose_size_overflows_is_a_value_error():
    # used to be pyo3's PanicException, which `except Exception` does not catch
    with pytest.raises(ValueError, match=r"\[4611686018427387904, 4\]"):
        initializers.GlorotUniform()((2**62, 4))


def test_reshape_whose_size_product_wraps_is_refused():
    # (2**62 + 1) * 4 wraps to 4 in 64-bit arithmetic: it must not pass for 4 values
    with pytest.raises(ValueError, match="cannot reshape"):
        keras.Sequential([keras.Input((4,)), layers.Reshape((2**62 + 1, 4))])


def test_input_whose_size_overflows_is_refused():
    with pytest.raises(ValueError, match=r"input of shape \[4294967296, 4294967296\]"):
        keras.Sequential([keras.Input((2**32, 2**32)), layers.Flatten(), layers.Dense(1)])


def test_tile_whose_size_overflows_is_refused():
    x = keras.Input((2**31,))
    with pytest.raises(ValueError, match="more elements than can be counted|needs"):
        keras.ops.tile(x, [1, 2**40])


def test_batch_too_large_for_memory_is_refused_before_running():
    out = run_isolated("""
        import numpy as np
        import ferrax as keras
        from ferrax import layers
        m = keras.Sequential([keras.Input((1,)), layers.Dense(10**7), layers.Dense(1)])
        m.compile("sgd", "mse")
        x = np.zeros((1000, 1), np.float32)
        for call in (lambda: m.predict(x, batch_size=1000, verbose=0),
                     lambda: m.fit(x, x, batch_size=1000, verbose=0)):
            try:
                call()
                print("NO ERROR")
            except ValueError as e:
                print("VALUE_ERROR", e)
        # a batch that fits still runs
        print(m.predict(x[:4], batch_size=4, verbose=0).shape)
    """)
    lines = out.splitlines()
    assert lines[0].startswith("VALUE_ERROR a batch of 1000 samples"), out
    assert "use a smaller batch_size" in lines[0]
    assert lines[1].startswith("VALUE_ERROR a batch of 1000 samples"), out
    assert "gradients" in lines[1]
    assert lines[2] == "(4, 1)"


def test_weights_add_up_across_layers():
    # each kernel alone fits the limit, together they do not
    msg = expect_value_error(
        "keras.Sequential([keras.Input((8192,))] + "
        "[layers.Dense(8192, name=f'd{i}') for i in range(6)])")
    assert "already held" in msg and "Dense 'd" in msg


def test_memory_limit_defaults_to_physical_memory():
    physical = _memory.physical_memory()
    if "FERRAX_MEMORY_LIMIT" in os.environ or physical is None:
        pytest.skip("limit set by the environment, or memory unknown here")
    assert _core.memory_limit() == physical


@pytest.mark.parametrize("text, expected", [
    ("1073741824", 1 << 30), ("512M", 512 << 20), ("8G", 8 << 30), ("2gb", 2 << 30),
    ("0", 0), ("1.5K", 1536),
])
def test_memory_limit_parsing(text, expected):
    assert _memory.parse_limit(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1", "1Q", "nan", "1e30T"])
def test_memory_limit_parsing_refuses_garbage(text):
    with pytest.raises(ValueError, match="FERRAX_MEMORY_LIMIT"):
        _memory.parse_limit(text)


def test_models_within_the_limit_still_train():
    m = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.Dense(1)])
    m.compile("sgd", "mse")
    x = np.ones((8, 4), np.float32)
    m.fit(x, np.ones((8, 1), np.float32), verbose=0)
    assert m.predict(x, verbose=0).shape == (8, 1)
