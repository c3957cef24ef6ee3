"""A call's own training mode in a graph: `Dropout(0.5)(x, training=True)` (Monte Carlo
dropout), a base model called with `training=False` (Keras's transfer-learning guide),
a custom layer or a subclassed model's sublayer with a literal flag; saved with the
model, and the inner call's own mode kept inside an outer one's, as in Keras."""

from __future__ import annotations

import numpy as np
import pytest

import ferrax
from ferrax import layers

ONES = np.ones((64, 8), np.float32)


def _dropped(out: np.ndarray) -> None:
    """Dropout(0.5) of ones: each unit 0 or 2, both seen."""
    assert set(np.unique(out)) == {0.0, 2.0}


def test_dropout_fixed_to_training_drops_in_predict_and_draws_new_masks_each_time():
    inp = ferrax.Input((8,))
    model = ferrax.Model(inp, layers.Dropout(0.5)(inp, training=True))
    first, second = model.predict(ONES, verbose=0), model.predict(ONES, verbose=0)
    _dropped(first)
    _dropped(second)
    assert not np.array_equal(first, second)
    # batches within one prediction draw their own masks too
    both = model.predict(np.ones((8, 8), np.float32), batch_size=4, verbose=0)
    assert not np.array_equal(both[:4], both[4:])


def test_dropout_fixed_to_inference_does_not_drop_in_fit():
    def trained(rate: float, training: bool | None) -> list[np.ndarray]:
        ferrax.utils.set_random_seed(3)
        inp = ferrax.Input((8,))
        h = layers.Dense(6)(inp)
        h = layers.Dropout(rate)(h, training=training)
        model = ferrax.Model(inp, layers.Dense(1)(h))
        model.compile(optimizer="sgd", loss="mse")
        x = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)
        model.fit(x, x[:, :1], batch_size=8, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    no_dropout = trained(0.0, None)
    for a, b in zip(trained(0.5, False), no_dropout):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(trained(0.5, None), no_dropout))


def _bn_base() -> ferrax.Model:
    inp = ferrax.Input((8,))
    return ferrax.Model(inp, layers.BatchNormalization()(layers.Dense(4)(inp)), name="base")


def test_a_base_model_called_in_inference_mode_keeps_its_batch_norm_statistics():
    base = _bn_base()
    inp = ferrax.Input((8,))
    model = ferrax.Model(inp, layers.Dense(1)(base(inp, training=False)))
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(32, 8)).astype(np.float32)
    w, b = base.layers[1].get_weights()
    model.fit(x, x[:, :1], batch_size=8, epochs=1, verbose=0)
    gamma, beta, mean, var = base.layers[2].get_weights()
    np.testing.assert_array_equal(mean, np.zeros(4))
    np.testing.assert_array_equal(var, np.ones(4))
    assert not np.array_equal(base.layers[1].get_weights()[0], w)  # still trained
    # normalised with the moving statistics, as in inference
    w, b = (a.astype(np.float64) for a in base.layers[1].get_weights())
    want = (x @ w + b) / np.sqrt(1 + 1e-3) * gamma + beta
    inner = ferrax.Model(base.input, base.output)
    np.testing.assert_allclose(inner.predict(x, verbose=0), want, rtol=1e-4, atol=1e-5)


def test_a_base_model_called_as_the_model_goes_updates_its_statistics():
    base = _bn_base()
    inp = ferrax.Input((8,))
    model = ferrax.Model(inp, layers.Dense(1)(base(inp)))
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(32, 8)).astype(np.float32)
    model.fit(x, x[:, :1], batch_size=8, epochs=1, verbose=0)
    assert not np.array_equal(base.layers[2].get_weights()[2], np.zeros(4))


def test_an_inner_call_keeps_its_own_mode_inside_an_outer_calls():
    inner_in = ferrax.Input((8,))
    inner = ferrax.Model(inner_in, layers.Dropout(0.5)(inner_in, training=True))
    inp = ferrax.Input((8,))
    model = ferrax.Model(inp, inner(inp, training=False))
    _dropped(model.predict(ONES, verbose=0))


def test_an_outer_mode_reaches_the_calls_inside_that_fix_none():
    inner_in = ferrax.Input((8,))
    inner = ferrax.Model(inner_in, layers.Dropout(0.5)(inner_in))
    inp = ferrax.Input((8,))
    model = ferrax.Model(inp, inner(inp, training=True))
    _dropped(model.predict(ONES, verbose=0))


class _Passes(layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.drop = layers.Dropout(0.5)

    def call(self, x, training=None):
        self.seen = training
        return self.drop(x, training=training) * 1.0


class _Ignores(layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.drop = layers.Dropout(0.5)

    def call(self, x):
        return self.drop(x)


@pytest.mark.parametrize("cls", [_Passes, _Ignores])
def test_a_custom_layer_called_in_training_mode_drops_in_predict(cls):
    inp = ferrax.Input((8,))
    layer = cls()
    model = ferrax.Model(inp, layer(inp, training=True))
    _dropped(model.predict(ONES, verbose=0))
    if cls is _Passes:
        assert layer.seen is True


class _MonteCarlo(ferrax.Model):
    def __init__(self):
        super().__init__()
        self.dense = layers.Dense(8, kernel_initializer="ones", use_bias=False)
        self.drop = layers.Dropout(0.5)

    def call(self, x):
        return self.drop(self.dense(x), training=True)


def test_a_subclassed_models_sublayer_fixed_to_training_drops_in_predict():
    model = _MonteCarlo()
    _dropped(model.predict(ONES, verbose=0) / 8)


def test_the_fixed_mode_is_saved_with_the_model(tmp_path):
    base = _bn_base()
    inp = ferrax.Input((8,))
    h = base(inp, training=False)
    model = ferrax.Model(inp, layers.Dropout(0.5)(h, training=True))
    config = model.get_config()
    calls = {e["name"]: e["inbound_nodes"][0]["kwargs"] for e in config["layers"]
             if e["inbound_nodes"]}
    assert calls["base"] == {"training": False}
    assert calls[model.layers[-1].name] == {"training": True}
    model.save(tmp_path / "m.ferrax")
    loaded = ferrax.saving.load_model(tmp_path / "m.ferrax")
    out = loaded.predict(ONES, verbose=0)
    assert (out == 0).any() and not np.array_equal(out, loaded.predict(ONES, verbose=0))


@pytest.mark.parametrize("bad", ["yes", 1, [True]])
def test_a_training_flag_that_is_not_a_bool_is_refused_with_the_layer(bad):
    with pytest.raises(TypeError, match="Dropout 'drop_me': training must be True, False "
                                        "or None"):
        layers.Dropout(0.5, name="drop_me")(ferrax.Input((8,)), training=bad)


class _Scaled(layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.drop = layers.Dropout(0.5)

    def call(self, x, training=None, scale=1.0):
        return self.drop(x, training=training) * scale


def test_a_custom_layers_arguments_after_the_inputs_may_come_by_position():
    inp = ferrax.Input((8,))
    model = ferrax.Model(inp, _Scaled()(inp, True, 3.0))
    out = model.predict(ONES, verbose=0)
    assert set(np.unique(out)) == {0.0, 6.0}
    model = ferrax.Model(inp, _Scaled()(inp, None, 3.0))
    np.testing.assert_array_equal(model.predict(ONES, verbose=0), 3 * ONES)


def test_a_tensor_after_a_custom_layers_inputs_is_refused_with_its_name():
    inp = ferrax.Input((8,))
    with pytest.raises(NotImplementedError, match="_Scaled '.*': tensor argument 'scale' "
                                                  "after the inputs"):
        _Scaled()(inp, None, inp)
    with pytest.raises(TypeError, match="call arguments do not fit call()"):
        _Scaled()(inp, None, 1.0, 2.0)
