"""ferrax.random (keras.random): distributions checked by their moments and bounds,
seeds (int, SeedGenerator, the global stream under set_random_seed), dropout's
mask and gradient, shuffle's permutation, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import ferrax
from ferrax import ops
from ferrax import random as fr

N = 20000


def test_normal_and_uniform_have_the_asked_moments():
    t = fr.normal((N,), mean=2.0, stddev=3.0, seed=1)
    assert t.dtype == "float32" and t.shape == (N,)
    x = t.numpy().astype(np.float64)
    assert abs(x.mean() - 2.0) < 0.1 and abs(x.std() - 3.0) < 0.1
    u = fr.uniform((N,), minval=-1.0, maxval=3.0, seed=2).numpy()
    assert u.min() >= -1.0 and u.max() < 3.0
    assert abs(u.mean() - 1.0) < 0.05 and abs(u.var() - 16 / 12) < 0.05


def test_truncated_normal_stays_within_two_standard_deviations():
    t = fr.truncated_normal((N,), mean=1.0, stddev=0.5, seed=3).numpy()
    assert t.min() >= 0.0 and t.max() <= 2.0
    assert abs(t.mean() - 1.0) < 0.02
    assert t.std() < 0.5  # narrower than the untruncated spread


def test_randint_covers_its_range_evenly():
    r = fr.randint((N,), 3, 7, seed=4).numpy()
    assert r.dtype == np.int32
    counts = np.bincount(r - 3, minlength=4)
    assert set(np.unique(r)) == {3, 4, 5, 6}
    assert counts.min() > 0.23 * N
    with pytest.raises(ValueError, match=r"maxval \(2\) must be above minval \(2\)"):
        fr.randint((2,), 2, 2)


def test_an_int_seed_repeats_and_a_seed_generator_advances_reproducibly():
    np.testing.assert_array_equal(fr.normal((5,), seed=7).numpy(),
                                  fr.normal((5,), seed=7).numpy())
    assert not np.array_equal(fr.normal((5,), seed=7).numpy(), fr.normal((5,), seed=8).numpy())
    gen_a, gen_b = fr.SeedGenerator(42), fr.SeedGenerator(42)
    a1, a2 = fr.uniform((5,), seed=gen_a).numpy(), fr.uniform((5,), seed=gen_a).numpy()
    assert not np.array_equal(a1, a2)
    np.testing.assert_array_equal(a1, fr.uniform((5,), seed=gen_b).numpy())
    np.testing.assert_array_equal(a2, fr.uniform((5,), seed=gen_b).numpy())


def test_the_global_stream_restarts_with_set_random_seed():
    ferrax.utils.set_random_seed(5)
    first = [fr.normal((3,)).numpy(), fr.uniform((3,)).numpy()]
    ferrax.utils.set_random_seed(5)
    again = [fr.normal((3,)).numpy(), fr.uniform((3,)).numpy()]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], fr.normal((3,)).numpy())


def test_dropout_drops_at_its_rate_and_its_gradient_is_the_mask():
    x = ferrax.Variable(np.ones((200, 100)))
    with ferrax.GradientTape() as tape:
        y = fr.dropout(x, 0.3, seed=9)
        loss = ops.sum(y)
    out = np.asarray(y)
    kept = out != 0
    assert abs(1 - kept.mean() - 0.3) < 0.02
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(tape.gradient(loss, x)), out)
    per_row = np.asarray(fr.dropout(np.ones((50, 8)), 0.5, noise_shape=(50, 1), seed=1))
    assert all(len(set(row)) == 1 for row in per_row)  # one draw per row
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        fr.dropout(np.ones(3), 1.0)


def test_shuffle_permutes_along_the_axis():
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    rows = np.asarray(fr.shuffle(x, seed=3))
    assert sorted(map(tuple, rows)) == sorted(map(tuple, x))
    assert not np.array_equal(rows, x)
    cols = np.asarray(fr.shuffle(x, axis=1, seed=3))
    np.testing.assert_array_equal(np.sort(cols, axis=1), x)


def test_bad_seeds_and_shapes_are_refused():
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        fr.normal((2,), seed=-1)
    with pytest.raises(ValueError, match="random.normal: shape must be non-negative"):
        fr.normal((2, -1))
    with pytest.raises(ValueError, match="dtype must be a float type"):
        fr.uniform((2,), dtype="int32")


class _Sampling(ferrax.layers.Layer):
    """The Keras VAE example's sampling layer: z = mean + exp(log_var / 2) * eps."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = ferrax.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch, dim = ferrax.ops.shape(z_mean)[0], ferrax.ops.shape(z_mean)[1]
        epsilon = ferrax.random.normal(shape=(batch, dim), seed=self.seed_generator)
        return z_mean + ferrax.ops.exp(0.5 * z_log_var) * epsilon


def _sampling_model(seed=0):
    ferrax.utils.set_random_seed(seed)
    inp = ferrax.Input((3,))
    mean = ferrax.layers.Dense(4, name="mean")(inp)
    log_var = ferrax.layers.Dense(4, name="log_var")(inp)
    return ferrax.Model(inp, _Sampling()([mean, log_var]))


def test_random_draws_in_a_traced_call_are_new_each_batch_and_reproducible():
    model = _sampling_model()
    x = np.zeros((2000, 3), np.float32)
    a, b = model.predict(x, verbose=0), model.predict(x, verbose=0)
    assert not np.array_equal(a, b)
    again = _sampling_model()
    np.testing.assert_array_equal(again.predict(x, verbose=0), a)
    # zero inputs: mean = bias = 0 and log_var = 0, so z is the unit normal itself
    assert abs(a.mean()) < 0.05 and abs(a.std() - 1.0) < 0.05
    assert len({tuple(row) for row in a[:100]}) == 100  # every sample its own draw


def test_the_gradient_flows_through_a_traced_sampling_layer():
    model = _sampling_model(1)
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    with ferrax.GradientTape() as tape:
        z = model(x, training=True)
        loss = ferrax.ops.sum(z)
    grads = tape.gradient(loss, model.trainable_variables)
    wm, bm = (w.astype(np.float64) for w in model.get_weights()[:2])
    mean = x @ wm + bm
    # d sum(z) / d log_var = exp(log_var / 2) eps / 2 = (z - mean) / 2
    d_log_var = (np.asarray(z, np.float64) - mean) / 2
    np.testing.assert_allclose(np.asarray(grads[0]), x.T @ np.ones((6, 4)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grads[2]), x.T @ d_log_var, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grads[3]), d_log_var.sum(0), rtol=1e-4, atol=1e-6)


def test_dropout_and_uniform_inside_a_traced_call():
    class Noisy(ferrax.layers.Layer):
        def call(self, x):
            shift = ferrax.random.uniform((None, 1), minval=2.0, maxval=3.0, seed=4)
            return ferrax.random.dropout(x, rate=0.25, seed=5) + 0 * shift, shift

    inp = ferrax.Input((400,))
    dropped, shift = Noisy()(inp)
    model = ferrax.Model(inp, [dropped, shift])
    out, s = model.predict(np.ones((50, 400), np.float32), verbose=0)
    assert set(np.unique(out).tolist()) <= {0.0, float(np.float32(1.0 / 0.75))}
    assert abs(np.mean(out == 0) - 0.25) < 0.02
    assert s.shape == (50, 1) and np.all((s >= 2.0) & (s < 3.0))


def test_a_random_shape_may_leave_only_the_batch_axis_unknown():
    with pytest.raises(ValueError, match="only the first \\(batch\\) axis"):
        ferrax.random.normal((None, None))
