"""A Sequential model's symbolic face, as in Keras: ``inputs``/``outputs``, ``input``/
``output``, each layer's ``output`` once the input shape is known (feature extraction);
``optimizer`` and ``loss`` are None before compile."""

from __future__ import annotations

import numpy as np
import pytest

import ferrax as keras
from ferrax import layers


def stack() -> tuple[keras.Sequential, keras.KerasTensor]:
    inp = keras.Input((4,), name="pixels")
    model = keras.Sequential([inp, layers.Dense(3, activation="relu", name="hidden"),
                              layers.Dense(2, name="logits")])
    return model, inp


def test_inputs_and_outputs_are_symbolic_tensors_with_the_stack_shapes():
    model, inp = stack()
    assert model.input is inp and model.inputs == [inp]
    assert len(model.outputs) == 1 and model.output is model.outputs[0]
    assert tuple(model.output.shape) == (None, 2)


def test_feature_extraction_from_a_sequential_model():
    model, _ = stack()
    features = keras.Model(model.input, model.get_layer("hidden").output)
    x = np.random.default_rng(0).standard_normal((6, 4)).astype("float32")
    kernel, bias = model.get_layer("hidden").get_weights()
    expected = np.maximum(x.astype(np.float64) @ kernel + bias, 0)
    np.testing.assert_allclose(features.predict(x, verbose=0), expected, atol=1e-5)
    # the extractor shares the weights: training the model moves its features
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.ones((6, 2)), epochs=3, verbose=0)
    kernel, bias = model.get_layer("hidden").get_weights()
    expected = np.maximum(x.astype(np.float64) @ kernel + bias, 0)
    np.testing.assert_allclose(features.predict(x, verbose=0), expected, atol=1e-5)


def test_model_built_from_a_shape_has_an_input_of_that_shape():
    model = keras.Sequential([layers.Dense(3)])
    with pytest.raises(AttributeError, match="no defined inputs yet"):
        _ = model.inputs
    model.build((None, 7))
    assert tuple(model.input.shape) == (None, 7)
    assert tuple(model.output.shape) == (None, 3)


def test_optimizer_and_loss_are_none_until_compile():
    model, _ = stack()
    assert model.optimizer is None and model.loss is None
    model.compile(optimizer="adam", loss="mse")
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert model.loss is not None


def test_symbolic_view_does_not_change_training_or_saving(tmp_path):
    x = np.random.default_rng(1).standard_normal((16, 4)).astype("float32")
    y = np.random.default_rng(2).standard_normal((16, 2)).astype("float32")
    results = []
    for look in (False, True):
        keras.utils.set_random_seed(3)
        model, _ = stack()
        if look:
            _ = model.output, model.get_layer("hidden").output
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, y, epochs=2, batch_size=4, verbose=0)
        model.save(tmp_path / f"m{look}.ferrax")
        loaded = keras.models.load_model(tmp_path / f"m{look}.ferrax")
        results.append(loaded.predict(x, verbose=0))
    np.testing.assert_array_equal(results[0], results[1])
