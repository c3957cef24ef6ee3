"""Rescaling(scale, offset): y = x * scale + offset, as Keras defines it, forward and backward,
in training and inference; uint8 images through it train like float images scaled beforehand."""

import numpy as np
import pytest
import reference as ref

import ferrax
import ferrax._testing as ft
from ferrax import layers


@pytest.mark.parametrize("scale, offset", [(1 / 255, 0.0), (1 / 127.5, -1.0), (-2.5, 3.0)])
def test_forward_and_backward_match_the_definition(scale, offset):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4, 3)).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    for training in (False, True):
        y, dx, grads = ft.layer_forward_backward(layers.Rescaling(scale, offset), x, dy,
                                                 training=training)
        x64 = x.astype(np.float64)
        ref.assert_close(y, x64 * scale + offset, rtol=1e-6, atol=1e-6, what="y")
        ref.assert_close(dx, dy.astype(np.float64) * scale, rtol=1e-6, atol=1e-7, what="dx")
        assert grads == []


def test_config_defaults_and_round_trip(tmp_path):
    layer = layers.Rescaling(1 / 255)
    assert layer.get_config()["scale"] == pytest.approx(1 / 255)
    assert layer.get_config()["offset"] == 0.0
    model = ferrax.Sequential([ferrax.Input((3,)), layers.Rescaling(0.5, offset=1.0),
                               layers.Dense(2)])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = tmp_path / "m.ferrax"
    model.save(path)
    again = ferrax.models.load_model(path)
    assert isinstance(again.layers[0], layers.Rescaling)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    assert model.count_params() == 2 * 3 + 2  # Rescaling has no weights


@pytest.mark.parametrize("bad", ["0.5", None, float("nan"), float("inf")])
def test_bad_arguments_name_the_layer_and_argument(bad):
    with pytest.raises((TypeError, ValueError), match=r"Rescaling 'r'.*'scale'"):
        layers.Rescaling(bad, name="r")
    with pytest.raises((TypeError, ValueError), match=r"Rescaling 'r'.*'offset'"):
        layers.Rescaling(1.0, offset=bad, name="r")


def test_uint8_images_through_rescaling_train_like_prescaled_floats():
    rng = np.random.default_rng(1)
    x8 = rng.integers(0, 256, size=(96, 6, 6), dtype=np.uint8)
    y = rng.integers(0, 3, size=96)

    def trained(first, x):
        ferrax.utils.set_random_seed(5)
        m = ferrax.Sequential([ferrax.Input((6, 6)), *first, layers.Flatten(),
                               layers.Dense(8, activation="relu"),
                               layers.Dense(3, activation="softmax")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        m.fit(x, y, batch_size=16, epochs=2, verbose=0)
        return m.get_weights()

    scaled = trained([layers.Rescaling(1 / 255)], x8)
    # an identity layer in its place keeps the layer indices, which seed the initial weights
    plain = trained([layers.Activation("linear")], x8.astype(np.float32) * np.float32(1 / 255))
    for a, b in zip(scaled, plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
