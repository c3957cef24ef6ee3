"""RepeatVector(n) and Permute(dims), as Keras defines them: forward and backward against
float64 NumPy references (np.repeat / np.transpose, and the gradient of sum(y * dy) by hand),
config round trips, and the errors that name the layer and the argument."""

import itertools
import re

import numpy as np
import pytest
import reference as ref

import ferrax
from ferrax._testing import layer_forward_backward
from ferrax.layers.reshaping import Permute, RepeatVector


def _exactly(text):
    return "^" + re.escape(text) + "$"


def _data(rng, x_shape, y_shape):
    x = rng.normal(size=x_shape).astype(np.float32)
    dy = rng.normal(size=y_shape).astype(np.float32)
    return x, dy


# --- RepeatVector ------------------------------------------------------------------------

@pytest.mark.parametrize("batch, features, n", [(1, 1, 1), (4, 3, 2), (5, 7, 6),
                                                (64, 80, 8)])  # the last above 32768 values
def test_repeat_vector_forward_and_backward_match_numpy(rng, batch, features, n):
    x, dy = _data(rng, (batch, features), (batch, n, features))
    y, dx, grads = layer_forward_backward(RepeatVector(n), x, dy)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    # y[b, k, f] = x[b, f] for every copy k.
    ref.assert_close(y, np.repeat(x64[:, None, :], n, axis=1), rtol=0, atol=0, what="y")
    # d/dx sum(y * dy) = sum over the copies of dy.
    ref.assert_close(dx, dy64.sum(axis=1), rtol=1e-6, atol=1e-6, what="dx")
    assert grads == []


def test_repeat_vector_config_round_trip():
    layer = RepeatVector(3, name="rv")
    config = layer.get_config()
    assert config["n"] == 3 and config["name"] == "rv"
    again = RepeatVector.from_config(config)
    assert isinstance(again, RepeatVector) and again.n == 3
    assert again.get_config() == config


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (2.0, TypeError),
                                        ("3", TypeError), (True, TypeError),
                                        (None, TypeError)])
def test_repeat_vector_bad_n_names_the_layer_and_argument(bad, error):
    with pytest.raises(error, match=r"RepeatVector 'rv': 'n' must be a positive integer, "
                                    r"got "):
        RepeatVector(bad, name="rv")


def test_repeat_vector_default_name_in_the_message():
    with pytest.raises(ValueError, match=r"^RepeatVector 'repeat_vector(_\d+)?': 'n' must be "
                                         r"a positive integer, got 0$"):
        RepeatVector(0)


def test_repeat_vector_refuses_inputs_that_are_not_vectors():
    x = np.zeros((2, 3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=_exactly(
            "RepeatVector 'rv': expects inputs of shape (None, features), got (None, 3, 4)")):
        layer_forward_backward(RepeatVector(2, name="rv"), x)


# --- Permute -----------------------------------------------------------------------------

def _inverse(dims):
    inv = [0] * len(dims)
    for k, d in enumerate(dims):
        inv[d - 1] = k + 1
    return tuple(inv)


_CASES = ([((4, 3), (2, 1)), ((2, 5), (1, 2)), ((6,), (1,)), ((1, 5), (2, 1))]
          + [((2, 3, 4), p) for p in itertools.permutations((1, 2, 3))]
          + [((2, 3, 4, 5), p) for p in [(4, 3, 2, 1), (2, 4, 1, 3), (1, 3, 4, 2)]])


@pytest.mark.parametrize("shape, dims", _CASES)
def test_permute_forward_and_backward_match_numpy(rng, shape, dims):
    batch = 3
    out_shape = tuple(shape[d - 1] for d in dims)
    x, dy = _data(rng, (batch, *shape), (batch, *out_shape))
    y, dx, grads = layer_forward_backward(Permute(dims), x, dy)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    ref.assert_close(y, np.transpose(x64, (0, *dims)), rtol=0, atol=0, what="y")
    # y is a permutation of x's entries, so d/dx sum(y * dy) is dy moved back by the
    # inverse permutation: dx[b, i...] = dy[b, (i permuted)...].
    inv = _inverse(dims)
    ref.assert_close(dx, np.transpose(dy64, (0, *inv)), rtol=0, atol=0, what="dx")
    # The same gradient by hand, element by element, for the small cases.
    if x.size <= 200:
        want = np.zeros(x.shape)
        for b, *o in itertools.product(range(batch), *map(range, out_shape)):
            i = [0] * len(shape)
            for k, d in enumerate(dims):
                i[d - 1] = o[k]
            want[(b, *i)] += dy64[(b, *o)]
        ref.assert_close(dx, want, rtol=0, atol=0, what="dx by hand")
    assert grads == []


def test_permute_large_batch_matches_numpy(rng):
    # 40 samples of (16, 8, 8): above the 32768 values where the engine goes parallel.
    x, dy = _data(rng, (40, 16, 8, 8), (40, 8, 16, 8))
    y, dx, _ = layer_forward_backward(Permute((3, 1, 2)), x, dy)
    np.testing.assert_array_equal(y, np.transpose(x, (0, 3, 1, 2)))
    np.testing.assert_array_equal(dx, np.transpose(dy, (0, 2, 3, 1)))


def test_permute_config_round_trip():
    layer = Permute((3, 1, 2), name="perm")
    config = layer.get_config()
    assert list(config["dims"]) == [3, 1, 2] and config["name"] == "perm"
    again = Permute.from_config(config)
    assert isinstance(again, Permute) and again.dims == (3, 1, 2)
    assert again.get_config() == config


@pytest.mark.parametrize("bad", [(1, 1), (0, 1), (1, 3), (2, 3), (2,)])
def test_permute_bad_dims_name_the_layer_and_argument(bad):
    with pytest.raises(ValueError, match=r"Permute 'perm': 'dims' must be a permutation of "
                                         r"the axes 1 to \d+"):
        Permute(bad, name="perm")


@pytest.mark.parametrize("bad", [2, "21", (1.0, 2.0), (True, False), None])
def test_permute_dims_of_the_wrong_type(bad):
    with pytest.raises(TypeError, match=r"Permute 'perm': 'dims' must be a tuple of integers"):
        Permute(bad, name="perm")


def test_permute_dims_must_cover_every_axis_of_the_input():
    x = np.zeros((2, 3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=_exactly(
            "Permute 'perm': 'dims' must be a permutation of the non-batch axes [1, 2] of "
            "inputs of shape (None, 3, 4), got [2, 3, 1]")):
        layer_forward_backward(Permute((2, 3, 1), name="perm"), x)


# --- in a model ----------------------------------------------------------------------------

def test_in_a_sequential_model():
    model = ferrax.Sequential([ferrax.Input((4,)), RepeatVector(3), Permute((2, 1))])
    assert model.output_shape == (None, 4, 3)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    want = np.transpose(np.repeat(x[:, None, :], 3, axis=1), (0, 2, 1))
    np.testing.assert_array_equal(model.predict(x, verbose=0), want)
