"""Subnormal floats are flushed to zero inside the engine, on the pool's threads and on the
caller's thread alike (as TensorFlow's CPU threads do), and only there: the caller's own NumPy
arithmetic keeps IEEE subnormals after an engine call. See rust/core/src/denormals.rs."""

import numpy as np
import pytest

import ferrax
from ferrax import layers

TINY_WEIGHT, TINY_INPUT = np.float32(1e-30), np.float32(1e-10)  # product 1e-40: subnormal


def _subnormal_in_numpy():
    return TINY_WEIGHT * TINY_INPUT


def test_the_inputs_make_a_subnormal_in_ieee_arithmetic():
    product = _subnormal_in_numpy()
    assert 0 < product < np.finfo(np.float32).tiny


@pytest.mark.parametrize("rows", [1, 40_000])  # the caller's thread, then the pool
def test_engine_flushes_subnormal_results_to_zero(rows):
    model = ferrax.Sequential([ferrax.Input((1,)), layers.Dense(1, use_bias=False)])
    model.set_weights([np.array([[TINY_WEIGHT]], np.float32)])
    x = np.full((rows, 1), TINY_INPUT, np.float32)
    out = model.predict(x, batch_size=rows, verbose=0)
    assert out.shape == (rows, 1)
    assert np.all(out == 0.0), f"got {out[:3].ravel()}"
    # a normal-range product still comes through
    out = model.predict(x * np.float32(1e30), batch_size=rows, verbose=0)
    np.testing.assert_allclose(out, 1e-10, rtol=1e-6)


def test_callers_thread_keeps_ieee_subnormals_after_an_engine_call():
    model = ferrax.Sequential([ferrax.Input((1,)), layers.Dense(1)])
    model.predict(np.ones((1, 1), np.float32), verbose=0)  # runs on this thread
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 1), np.float32), np.ones((4, 1), np.float32), verbose=0)
    assert _subnormal_in_numpy() > 0
