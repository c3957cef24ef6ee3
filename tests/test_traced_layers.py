"""Keras layers ferrax writes with ferrax.ops (PReLU, ReLU's arguments, the 1-D
padding/cropping/upsampling layers, Lambda) and the engine-run LeakyReLU and ELU:
values against NumPy, gradients against float64 references, configs round trip."""

from __future__ import annotations

import numpy as np
import pytest

import ferrax
from ferrax import layers, ops

R = np.random.default_rng(0)
X = R.normal(size=(5, 4)).astype(np.float32)
SEQ = R.normal(size=(3, 6, 2)).astype(np.float32)


@pytest.mark.parametrize("layer, reference", [
    (lambda: layers.LeakyReLU(), lambda x: np.where(x > 0, x, 0.3 * x)),
    (lambda: layers.LeakyReLU(negative_slope=0.05), lambda x: np.where(x > 0, x, 0.05 * x)),
    (lambda: layers.ELU(alpha=0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    (lambda: layers.PReLU(), lambda x: np.maximum(x, 0)),
    (lambda: layers.ReLU(max_value=6.0), lambda x: np.clip(x, 0, 6)),
    (lambda: layers.ReLU(max_value=0.7, negative_slope=0.1, threshold=0.2),
     lambda x: np.minimum(np.where(x >= 0.2, x, 0.1 * (x - 0.2)), 0.7)),
])
def test_activation_layers_compute_keras_formulas(layer, reference):
    inp = ferrax.Input(shape=(4,))
    model = ferrax.Model(inp, layer()(inp))
    np.testing.assert_allclose(model.predict(X, verbose=0), reference(X.astype(np.float64)),
                               rtol=1e-5, atol=1e-6)


def test_prelu_learns_one_slope_per_channel_with_the_gradient_of_its_formula():
    inp = ferrax.Input(shape=(6, 2))
    prelu = layers.PReLU(alpha_initializer=ferrax.initializers.Constant(0.25),
                         shared_axes=[1])
    model = ferrax.Model(inp, prelu(inp))
    assert prelu.alpha.shape == (1, 2)
    model.compile(optimizer=ferrax.optimizers.SGD(0.1), loss="mse")
    target = np.zeros_like(SEQ)
    model.train_on_batch(SEQ, target)
    x = SEQ.astype(np.float64)
    pred = np.maximum(x, 0) + 0.25 * np.minimum(x, 0)
    # d mse / d alpha = sum over the shared axis and the batch of 2 (pred - y) / n * min(x, 0)
    grad = (2 * pred / x.size * np.minimum(x, 0)).sum(axis=(0, 1))
    np.testing.assert_allclose(prelu.alpha.numpy()[0], 0.25 - 0.1 * grad, rtol=1e-5)


@pytest.mark.parametrize("layer, reference", [
    (lambda: layers.ZeroPadding1D(2), lambda s: np.pad(s, ((0, 0), (2, 2), (0, 0)))),
    (lambda: layers.ZeroPadding1D((0, 3)), lambda s: np.pad(s, ((0, 0), (0, 3), (0, 0)))),
    (lambda: layers.Cropping1D((1, 2)), lambda s: s[:, 1:4]),
    (lambda: layers.UpSampling1D(3), lambda s: np.repeat(s, 3, axis=1)),
    (lambda: layers.Lambda(lambda t, k: ops.square(t) * k, arguments={"k": 0.5}),
     lambda s: 0.5 * s ** 2),
])
def test_sequence_layers_match_numpy(layer, reference):
    model = ferrax.Sequential([ferrax.Input((6, 2)), layer()])
    np.testing.assert_allclose(model.predict(SEQ, verbose=0), reference(SEQ), rtol=1e-6)


def test_gradients_pass_back_through_padding_cropping_and_upsampling():
    # d/dx of sum(w * layer(x)) for a fixed weighting w, against NumPy's adjoint
    x = SEQ
    for layer, adjoint in (
        (layers.ZeroPadding1D((1, 2)), lambda g: g[:, 1:7]),
        (layers.Cropping1D((2, 1)), lambda g: np.pad(g, ((0, 0), (2, 1), (0, 0)))),
        (layers.UpSampling1D(2), lambda g: g.reshape(3, 6, 2, 2).sum(axis=2)),
    ):
        inp = ferrax.Input(shape=(6, 2))
        out = layer(inp)
        w = R.normal(size=(3, *out.shape[1:]))
        # a Dense-free graph: train a Scale weight in front to read the input gradient
        scale = _Scale()
        model = ferrax.Model(inp, layer(scale(inp)))
        model.compile(optimizer=ferrax.optimizers.SGD(1.0), loss="mse")
        target = model.predict(x, verbose=0) - w * out.shape[1]
        before = scale.s.numpy().copy()
        model.train_on_batch(x, target.astype(np.float32))
        n = w.size
        g_out = 2 * (w * out.shape[1]) / n  # d mse / d out
        expected = (adjoint(g_out) * x).sum(axis=(0, 1))
        np.testing.assert_allclose(before - scale.s.numpy(), expected, rtol=1e-4, atol=1e-6)


class _Scale(layers.Layer):
    def build(self, input_shape):
        self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.s


def test_configs_round_trip():
    for layer in (layers.LeakyReLU(0.2), layers.ELU(0.7), layers.PReLU(shared_axes=[1]),
                  layers.ReLU(max_value=6.0), layers.ZeroPadding1D((1, 2)),
                  layers.Cropping1D(3), layers.UpSampling1D(4)):
        again = type(layer).from_config(layer.get_config())
        assert again.get_config() == {**layer.get_config(), "name": again.name}


def test_a_lambda_function_is_found_in_custom_objects_when_loaded(tmp_path):
    def double(t):
        return t * 2.0

    model = ferrax.Sequential([ferrax.Input((4,)), layers.Lambda(double), layers.Dense(2)])
    path = tmp_path / "lambda.ferrax"
    model.save(path)
    with pytest.raises(ValueError, match="'double' is not loaded from files"):
        ferrax.models.load_model(path)
    loaded = ferrax.models.load_model(path, custom_objects={"double": double})
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))


def test_bad_arguments_say_which_layer_and_argument():
    with pytest.raises(ValueError, match=r"ZeroPadding1D '.*': 'padding'"):
        layers.ZeroPadding1D(-1)
    with pytest.raises(ValueError, match=r"Cropping1D '.*': cannot crop \(3, 3\)"):
        layers.Cropping1D(3)(ferrax.Input(shape=(6, 2)))
    with pytest.raises(ValueError, match=r"PReLU '.*': shared axis 3"):
        layers.PReLU(shared_axes=[3])(ferrax.Input(shape=(4,)))


def test_gaussian_noise_perturbs_training_only():
    x = np.ones((256, 50), np.float32)
    model = ferrax.Sequential([ferrax.Input((50,)), layers.GaussianNoise(0.3),
                               _Scale()])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)  # inference: unchanged
    # in training the noise is added: the mse against x is its mean square, stddev ** 2
    model.compile(optimizer=ferrax.optimizers.SGD(1.0), loss="mse")
    loss = model.train_on_batch(x, x)
    assert loss == pytest.approx(0.09, rel=0.05)
    assert layers.GaussianNoise(0.2).get_config()["stddev"] == 0.2
    with pytest.raises(ValueError, match=r"GaussianNoise '.*': 'stddev'"):
        layers.GaussianNoise(-1.0)


def _conv1d_transpose_reference(x, kernel, bias, stride):
    """NumPy: every input step scatters kernel-weighted copies (valid padding)."""
    n, steps, _ = x.shape
    k, filters, _ = kernel.shape
    out = np.zeros((n, steps * stride + max(k - stride, 0), filters))
    for t in range(steps):
        for j in range(k):
            out[:, t * stride + j] += x[:, t] @ kernel[j].T
    return out + bias


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_conv1d_transpose_matches_its_numpy_reference(stride):
    x = R.normal(size=(2, 5, 3)).astype(np.float32)
    layer = layers.Conv1DTranspose(4, 3, strides=stride)
    model = ferrax.Sequential([ferrax.Input((5, 3)), layer])
    kernel, bias = layer.get_weights()
    assert kernel.shape == (3, 4, 3) and bias.shape == (4,)
    bias = R.normal(size=4).astype(np.float32)
    layer.set_weights([kernel, bias])
    want = _conv1d_transpose_reference(x.astype(np.float64), kernel.astype(np.float64),
                                       bias, stride)
    got = model.predict(x, verbose=0)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    same = layers.Conv1DTranspose(4, 3, strides=2, padding="same")
    assert ferrax.Sequential([ferrax.Input((5, 3)), same]).output_shape == (None, 10, 4)
