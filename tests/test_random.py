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
