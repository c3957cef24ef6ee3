"""Layer stacks whose buffers are shared (Flatten / Reshape) or which have no weights."""

import numpy as np

import ferrax
from ferrax import layers


def test_model_of_only_a_flatten_predicts_and_trains():
    m = ferrax.Sequential([layers.Flatten(input_shape=(2, 3))])
    m.compile(loss="mse", optimizer="sgd")
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    np.testing.assert_array_equal(m.predict(x, verbose=0), x.reshape(2, 6))
    history = m.fit(x, np.zeros((2, 6)), verbose=0)
    assert np.isclose(history.history["loss"][0], np.mean(x.astype(np.float64) ** 2))


def test_reshape_dense_reshape_matches_numpy_for_every_input_dtype():
    m = ferrax.Sequential([layers.Reshape((6,), input_shape=(2, 3)), layers.Dense(2),
                           layers.Reshape((2, 1))])
    kernel, bias = m.get_weights()
    x = np.random.default_rng(0).integers(0, 9, size=(5, 2, 3))
    want = (x.reshape(5, 6).astype(np.float64) @ kernel + bias).reshape(5, 2, 1)
    for dtype in (np.uint8, np.float32, np.float64, np.int32):
        got = m.predict(x.astype(dtype), batch_size=2, verbose=0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_gradient_flows_through_a_reshape_between_dense_layers():
    ferrax.utils.set_random_seed(3)
    m = ferrax.Sequential([layers.Dense(6, input_shape=(4,)), layers.Reshape((2, 3)),
                           layers.Flatten(), layers.Dense(1)])
    m.compile(loss="mse", optimizer=ferrax.optimizers.SGD(0.1))
    before = m.get_weights()[0].copy()
    x = np.random.default_rng(1).normal(size=(8, 4))
    m.train_on_batch(x, np.ones((8, 1)))
    # The first Dense only learns if the gradient crossed both reshapes.
    assert not np.array_equal(before, m.get_weights()[0])
