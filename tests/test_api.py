"""The public, Keras-compatible API for dense networks, as a Keras user sees it.

Expectations here were checked against Keras 3 (JAX backend) where Keras defines them; see the
comments marked "Keras:".
"""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ferrax
from ferrax import layers

# ---------------------------------------------------------------------------------------------
# helpers


def _dense_model(n_in=8, hidden=16, n_out=3, out_act="softmax", dropout=None):
    stack = [ferrax.Input(shape=(n_in,)), layers.Dense(hidden, activation="relu")]
    if dropout is not None:
        stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(n_out, activation=out_act))
    return ferrax.Sequential(stack)


def _np_act(name, z):
    if name in (None, "linear"):
        return z
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise AssertionError(name)


def _as_float(v):
    assert isinstance(v, (float, np.floating)), f"expected a scalar, got {type(v)}: {v!r}"
    return float(v)


# ---------------------------------------------------------------------------------------------
# modules and names


def test_public_modules_and_names_exist():
    for mod in ("layers", "models", "optimizers", "losses", "metrics", "activations",
                "initializers", "regularizers", "utils", "callbacks"):
        assert hasattr(ferrax, mod), f"ferrax.{mod} missing"
    assert ferrax.Sequential is ferrax.models.Sequential
    assert callable(ferrax.Input) and callable(ferrax.layers.Input)
    for name in ("Dense", "Flatten", "Reshape", "Activation", "Dropout", "InputLayer", "Input"):
        assert hasattr(ferrax.layers, name), f"ferrax.layers.{name} missing"
    for name in ("SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "Nadam"):
        assert hasattr(ferrax.optimizers, name), f"ferrax.optimizers.{name} missing"
    for name in ("MeanSquaredError", "MeanAbsoluteError", "Huber", "BinaryCrossentropy",
                 "CategoricalCrossentropy", "SparseCategoricalCrossentropy"):
        assert hasattr(ferrax.losses, name), f"ferrax.losses.{name} missing"
    assert hasattr(ferrax.callbacks, "Callback")
    assert hasattr(ferrax.callbacks, "History")
    assert callable(ferrax.utils.to_categorical)
    assert callable(ferrax.utils.set_random_seed)


def test_keras_style_imports_work():
    from ferrax.layers import Dense, Dropout  # noqa: F401
    from ferrax.models import Sequential  # noqa: F401
    from ferrax.optimizers import Adam  # noqa: F401


# ---------------------------------------------------------------------------------------------
# building models


def test_sequential_list_add_and_pop():
    m = ferrax.Sequential()
    m.add(ferrax.Input(shape=(4,)))
    d1 = layers.Dense(3)
    d2 = layers.Dense(2)
    m.add(d1)
    m.add(d2)
    # Keras: the Input is not one of model.layers.
    assert m.layers == [d1, d2]
    m.pop()
    assert m.layers == [d1]
    assert m.predict(np.zeros((5, 4), np.float32), verbose=0).shape == (5, 3)

    m2 = ferrax.models.Sequential([layers.Dense(3, input_shape=(4,)), layers.Dense(2)])
    assert len(m2.layers) == 2
    assert m2.predict(np.zeros((5, 4), np.float32), verbose=0).shape == (5, 2)


def test_input_shape_input_dim_and_input_are_equivalent():
    x = np.random.default_rng(0).random((6, 5)).astype(np.float32)
    models = [
        ferrax.Sequential([ferrax.Input(shape=(5,)), layers.Dense(7), layers.Dense(2)]),
        ferrax.Sequential([ferrax.layers.Input(shape=(5,)), layers.Dense(7), layers.Dense(2)]),
        ferrax.Sequential([layers.Dense(7, input_shape=(5,)), layers.Dense(2)]),
        ferrax.Sequential([layers.Dense(7, input_dim=5), layers.Dense(2)]),
        ferrax.Sequential([layers.InputLayer(shape=(5,)), layers.Dense(7), layers.Dense(2)]),
        # tf.keras 2 spelling, still accepted by Keras 3
        ferrax.Sequential([layers.InputLayer(input_shape=(5,)), layers.Dense(7),
                           layers.Dense(2)]),
    ]
    for m in models:
        assert len(m.layers) == 2  # Keras: the input layer is not listed
        assert m.count_params() == 5 * 7 + 7 + 7 * 2 + 2
        assert m.predict(x, verbose=0).shape == (6, 2)


def test_deferred_build_from_data():
    # Keras: a Sequential without an input shape is built on the first fit / predict.
    m = ferrax.Sequential([layers.Dense(5, activation="relu"), layers.Dense(2)])
    m.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).random((20, 3)).astype(np.float32)
    m.fit(x, np.zeros((20, 2), np.float32), epochs=1, verbose=0)
    assert m.count_params() == 3 * 5 + 5 + 5 * 2 + 2
    assert m.predict(x, verbose=0).shape == (20, 2)


def test_layer_auto_names_in_fresh_process():
    # Keras: in a fresh session the names are "dense", "dense_1", ... per layer type.
    code = textwrap.dedent(
        """
        import ferrax
        from ferrax import layers
        m = ferrax.Sequential([ferrax.Input(shape=(4,)), layers.Dense(3), layers.Dropout(0.1),
                               layers.Dense(2), layers.Flatten(), layers.Activation("relu")])
        print(",".join(layer.name for layer in m.layers))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "dense,dropout,dense_1,flatten,activation"


def test_layer_names_unique_and_user_names_kept():
    m = ferrax.Sequential([ferrax.Input(shape=(4,)), layers.Dense(3), layers.Dense(3),
                           layers.Dense(2, name="head")])
    names = [layer.name for layer in m.layers]
    assert len(set(names)) == 3
    assert all(re.fullmatch(r"dense(_\d+)?", n) for n in names[:2]), names
    assert names[2] == "head"


def test_flatten_reshape_activation_shapes_and_values():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 2, 6)).astype(np.float32)
    m = ferrax.Sequential([
        ferrax.Input(shape=(2, 6)),
        layers.Flatten(),
        layers.Reshape((3, 4)),
        layers.Flatten(),
        layers.Activation("relu"),
    ])
    out = m.predict(x, verbose=0)
    assert out.shape == (4, 12)
    np.testing.assert_allclose(out, np.maximum(x.reshape(4, 12), 0), rtol=0, atol=0)

    m2 = ferrax.Sequential([ferrax.Input(shape=(12,)), layers.Reshape((3, 4))])
    assert m2.predict(x.reshape(4, 12), verbose=0).shape == (4, 3, 4)

    m3 = ferrax.Sequential([ferrax.Input(shape=(5,)), layers.Activation("softmax")])
    p = m3.predict(x.reshape(4, 12)[:, :5], verbose=0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh", "softmax", "linear", None])
def test_predict_matches_numpy_forward(act):
    rng = np.random.default_rng(2)
    m = ferrax.Sequential([ferrax.Input(shape=(6,)), layers.Dense(9, activation="relu"),
                           layers.Dense(4, activation=act)])
    x = rng.normal(size=(37, 6)).astype(np.float32)
    w1, b1, w2, b2 = [w.astype(np.float64) for w in m.get_weights()]
    ref = _np_act(act, _np_act("relu", x @ w1 + b1) @ w2 + b2)
    out = m.predict(x, verbose=0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_dropout_is_inactive_in_predict_and_evaluate():
    rng = np.random.default_rng(3)
    m = _dense_model(n_in=6, hidden=32, n_out=3, dropout=0.5)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    w1, b1, w2, b2 = [w.astype(np.float64) for w in m.get_weights()]
    ref = _np_act("softmax", _np_act("relu", x @ w1 + b1) @ w2 + b2)
    p1 = m.predict(x, verbose=0)
    p2 = m.predict(x, verbose=0)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_allclose(p1, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.predict_on_batch(x), p1, rtol=1e-5, atol=1e-7)


def test_default_initializers_glorot_uniform_and_zeros():
    m = ferrax.Sequential([ferrax.Input(shape=(300,)), layers.Dense(100)])
    kernel, bias = m.get_weights()
    limit = np.sqrt(6.0 / (300 + 100))
    assert kernel.shape == (300, 100) and bias.shape == (100,)
    assert np.all(np.abs(kernel) <= limit)
    # uniform on [-limit, limit]: the std is limit / sqrt(3)
    assert abs(kernel.std() - limit / np.sqrt(3)) < 0.05 * limit
    assert abs(kernel.mean()) < 0.05 * limit
    np.testing.assert_array_equal(bias, 0)


def test_named_initializers_and_use_bias():
    m = ferrax.Sequential([
        ferrax.Input(shape=(3,)),
        layers.Dense(4, kernel_initializer="ones", bias_initializer="zeros"),
        layers.Dense(2, kernel_initializer="zeros", use_bias=False),
    ])
    w = m.get_weights()
    assert len(w) == 3, "a Dense with use_bias=False has no bias weight"
    np.testing.assert_array_equal(w[0], np.ones((3, 4)))
    np.testing.assert_array_equal(w[2], np.zeros((4, 2)))
    assert m.count_params() == 3 * 4 + 4 + 4 * 2
    m2 = ferrax.Sequential([ferrax.Input(shape=(3,)),
                            layers.Dense(2, kernel_initializer=ferrax.initializers.Constant(0.5))])
    np.testing.assert_array_equal(m2.get_weights()[0], np.full((3, 2), 0.5))


# ---------------------------------------------------------------------------------------------
# weights, config, summary


def test_count_params_and_weights():
    m = ferrax.Sequential([ferrax.Input(shape=(784,)), layers.Dense(128, activation="relu"),
                           layers.Dropout(0.2), layers.Dense(10, activation="softmax")])
    assert m.count_params() == 784 * 128 + 128 + 128 * 10 + 10
    dense = m.layers[0]
    assert [tuple(w.shape) for w in m.get_weights()] == [(784, 128), (128,), (128, 10), (10,)]
    assert len(dense.weights) == 2
    kernel, bias = dense.weights
    assert tuple(kernel.shape) == (784, 128) and tuple(bias.shape) == (128,)
    assert "kernel" in kernel.name and "bias" in bias.name
    assert isinstance(kernel.numpy(), np.ndarray)
    np.testing.assert_array_equal(kernel.numpy(), dense.get_weights()[0])
    np.testing.assert_array_equal(bias.numpy(), m.get_weights()[1])
    assert m.layers[1].get_weights() == []
    assert m.layers[1].weights == []


def test_set_weights_round_trip_and_get_weights_is_a_snapshot(blobs):
    x, y = blobs
    m = _dense_model()
    init = m.get_weights()
    init_copy = [w.copy() for w in init]
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    m.fit(x, y, epochs=2, verbose=0)
    trained = m.get_weights()
    # Keras: get_weights returns copies; training afterwards does not change them.
    for a, b in zip(init, init_copy):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(trained, init))
    p_trained = m.predict(x, verbose=0)
    m.set_weights(init)
    for a, b in zip(m.get_weights(), init_copy):
        np.testing.assert_array_equal(a, b)
    m.set_weights(trained)
    np.testing.assert_array_equal(m.predict(x, verbose=0), p_trained)
    # mutating a returned array must not change the model
    w = m.get_weights()
    w[0][...] = 0
    np.testing.assert_array_equal(m.predict(x, verbose=0), p_trained)


def test_set_weights_accepts_float64_and_fortran_arrays():
    m = ferrax.Sequential([ferrax.Input(shape=(3,)), layers.Dense(2)])
    k = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(3, 2))
    b = np.array([1.0, -1.0])
    m.set_weights([k, b])
    x = np.array([[1, 0, 0], [0, 1, 1]], np.float32)
    np.testing.assert_allclose(m.predict(x, verbose=0), x @ k + b, rtol=1e-6)


def test_get_config_returns_constructor_arguments():
    d = layers.Dense(7, activation="relu", use_bias=False, name="my_dense")
    cfg = d.get_config()
    assert cfg["units"] == 7
    assert cfg["activation"] == "relu"
    assert cfg["use_bias"] is False
    assert cfg["name"] == "my_dense"
    for key in ("kernel_initializer", "bias_initializer", "kernel_regularizer"):
        assert key in cfg, key
    assert layers.Dense(3).get_config()["activation"] == "linear"
    assert layers.Dropout(0.25).get_config()["rate"] == 0.25
    assert layers.Activation("tanh").get_config()["activation"] == "tanh"
    assert tuple(layers.Reshape((2, 3)).get_config()["target_shape"]) == (2, 3)


def _summary_text(model):
    lines = []

    def grab(line, *args, **kwargs):
        lines.append(str(line))

    model.summary(print_fn=grab)
    return "\n".join(lines)


def test_summary_print_fn_and_stdout(capsys):
    m = ferrax.Sequential([ferrax.Input(shape=(784,)), layers.Dense(128, activation="relu"),
                           layers.Dropout(0.2), layers.Dense(10, activation="softmax")])
    text = _summary_text(m)
    names = [layer.name for layer in m.layers]
    for name in names:
        assert name in text
    assert "(None, 128)" in text and "(None, 10)" in text
    # Keras 3 writes 100,480; tf.keras 2 wrote 100480
    assert re.search(r"100,?480", text)
    assert re.search(r"1,?290", text)
    assert re.search(r"Total params:\s*101,?770", text)
    assert "Dense" in text and "Dropout" in text
    # the order of rows follows the layers
    assert text.index(names[0]) < text.index(names[1]) < text.index(names[2])

    capsys.readouterr()
    ret = m.summary()
    out = capsys.readouterr().out
    assert ret is None
    assert "(None, 128)" in out and re.search(r"Total params:\s*101,?770", out)


def test_summary_shows_multi_dim_shapes():
    m = ferrax.Sequential([ferrax.Input(shape=(8, 8)), layers.Flatten(), layers.Reshape((4, 16)),
                           layers.Flatten(), layers.Dense(3)])
    text = _summary_text(m)
    assert "(None, 64)" in text and "(None, 4, 16)" in text and "(None, 3)" in text
    assert re.search(r"Total params:\s*195\b", text)


# ---------------------------------------------------------------------------------------------
# compile / fit / evaluate / predict


def test_fit_returns_history(blobs):
    x, y = blobs
    m = _dense_model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert isinstance(h, ferrax.callbacks.History)
    assert h.epoch == [0, 1, 2]
    # Keras: the key stays "accuracy" even though it resolves to sparse_categorical_accuracy
    assert set(h.history) == {"loss", "accuracy"}
    for key, vals in h.history.items():
        assert len(vals) == 3, key
        assert all(np.isfinite(_as_float(v)) for v in vals)
    assert all(0.0 <= a <= 1.0 for a in h.history["accuracy"])


def test_fit_validation_keys(blobs):
    x, y = blobs
    m = _dense_model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, epochs=2, verbose=0, validation_split=0.2)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 2 for v in h.history.values())
    h = m.fit(x, y, epochs=1, verbose=0, validation_data=(x[:50], y[:50]))
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    np.testing.assert_allclose(h.history["val_loss"][0],
                               m.evaluate(x[:50], y[:50], verbose=0)[0], rtol=1e-5)


def test_metric_names_in_history(blobs):
    x, y = blobs
    y1 = ferrax.utils.to_categorical(y, 6)
    m = _dense_model(n_out=6)
    metrics = ["accuracy", "categorical_accuracy", "top_k_categorical_accuracy", "mse", "mae"]
    m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=metrics)
    h = m.fit(x, y1, epochs=1, verbose=0, validation_split=0.2)
    assert set(h.history) == set(metrics) | {"loss"} | {"val_" + k for k in metrics + ["loss"]}
    d = m.evaluate(x, y1, verbose=0, return_dict=True)
    assert set(d) == set(metrics) | {"loss"}


def test_initial_epoch(blobs):
    x, y = blobs
    m = _dense_model()
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    h = m.fit(x, y, epochs=3, initial_epoch=1, verbose=0)
    # Keras: epochs is the index to stop at, so this runs epochs 1 and 2
    assert h.epoch == [1, 2]
    assert len(h.history["loss"]) == 2


def test_evaluate_return_types(blobs):
    x, y = blobs
    m = _dense_model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    # Keras: no metrics -> a scalar loss
    r = m.evaluate(x, y, verbose=0)
    assert not isinstance(r, (list, tuple, dict))
    loss = _as_float(r)
    d = m.evaluate(x, y, verbose=0, return_dict=True)
    assert set(d) == {"loss"}
    np.testing.assert_allclose(d["loss"], loss, rtol=1e-6)

    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    r = m.evaluate(x, y, verbose=0)
    assert isinstance(r, list) and len(r) == 2
    _as_float(r[0])
    _as_float(r[1])
    d = m.evaluate(x, y, verbose=0, return_dict=True)
    assert set(d) == {"loss", "accuracy"}
    np.testing.assert_allclose([d["loss"], d["accuracy"]], r, rtol=1e-6)
    # the batch size does not change the (mean) result
    r7 = m.evaluate(x, y, batch_size=7, verbose=0)
    np.testing.assert_allclose(r7, r, rtol=1e-5)


def test_predict_dtype_shape_and_batch_size(blobs):
    x, _ = blobs
    m = _dense_model()
    p = m.predict(x, verbose=0)
    assert isinstance(p, np.ndarray) and p.dtype == np.float32 and p.shape == (300, 3)
    for bs in (1, 7, 64, 1000):
        np.testing.assert_allclose(m.predict(x, batch_size=bs, verbose=0), p, rtol=1e-5,
                                   atol=1e-7)
    pb = m.predict_on_batch(x)
    assert isinstance(pb, np.ndarray) and pb.dtype == np.float32
    np.testing.assert_allclose(pb, p, rtol=1e-5, atol=1e-7)


def test_train_test_predict_on_batch(blobs):
    x, y = blobs
    xb, yb = x[:40], y[:40]
    m = _dense_model()
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = m.evaluate(xb, yb, verbose=0)
    t = m.test_on_batch(xb, yb)
    np.testing.assert_allclose(_as_float(t), before, rtol=1e-5)
    w0 = m.get_weights()
    r = m.train_on_batch(xb, yb)
    # Keras: train_on_batch returns the loss of the forward pass before the update
    np.testing.assert_allclose(_as_float(r), before, rtol=1e-5)
    assert any(not np.array_equal(a, b) for a, b in zip(w0, m.get_weights()))

    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    r = m.train_on_batch(xb, yb)
    assert isinstance(r, list) and len(r) == 2
    d = m.test_on_batch(xb, yb, return_dict=True)
    assert set(d) == {"loss", "accuracy"}
    d = m.train_on_batch(xb, yb, return_dict=True)
    assert set(d) == {"loss", "accuracy"}
    assert m.predict_on_batch(xb).shape == (40, 3)


def test_compile_default_optimizer_is_rmsprop(blobs):
    x, y = blobs
    results = []
    for kwargs in ({}, {"optimizer": "rmsprop"}, {"optimizer": ferrax.optimizers.RMSprop()}):
        ferrax.utils.set_random_seed(7)
        m = _dense_model()
        m.compile(loss="sparse_categorical_crossentropy", **kwargs)
        m.fit(x, y, epochs=1, batch_size=50, verbose=0)
        results.append(m.get_weights())
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name, cls", [("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"),
                                       ("adagrad", "Adagrad"), ("nadam", "Nadam")])
def test_optimizer_string_equals_default_object(blobs, name, cls):
    x, y = blobs
    results = []
    for opt in (name, getattr(ferrax.optimizers, cls)()):
        ferrax.utils.set_random_seed(11)
        m = _dense_model()
        m.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
        m.fit(x, y, epochs=1, batch_size=50, verbose=0)
        results.append(m.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_loss_strings_aliases_and_objects_agree(rng):
    x = rng.normal(size=(64, 5)).astype(np.float32)
    yr = rng.normal(size=(64, 2)).astype(np.float32)
    ys = rng.integers(0, 2, size=64)
    groups = [
        (yr, "linear", ["mse", "mean_squared_error", ferrax.losses.MeanSquaredError()]),
        (yr, "linear", ["mae", "mean_absolute_error", ferrax.losses.MeanAbsoluteError()]),
        (yr, "linear", ["huber", ferrax.losses.Huber()]),
        (ys, "softmax", ["sparse_categorical_crossentropy",
                         ferrax.losses.SparseCategoricalCrossentropy()]),
        (ferrax.utils.to_categorical(ys, 2), "softmax",
         ["categorical_crossentropy", ferrax.losses.CategoricalCrossentropy()]),
        (ys[:, None].astype(np.float32), "sigmoid",
         ["binary_crossentropy", ferrax.losses.BinaryCrossentropy()]),
    ]
    for y, act, losses in groups:
        n_out = 1 if act == "sigmoid" else 2
        m = ferrax.Sequential([ferrax.Input(shape=(5,)), layers.Dense(n_out, activation=act)])
        vals = []
        for loss in losses:
            m.compile(optimizer="sgd", loss=loss)
            vals.append(_as_float(m.evaluate(x, y, verbose=0)))
        np.testing.assert_allclose(vals, vals[0], rtol=1e-6, err_msg=str(losses))


def test_huge_batch_size_just_works(blobs):
    x, y = blobs
    m = _dense_model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, batch_size=10_000, epochs=2, verbose=0)
    assert len(h.history["loss"]) == 2
    assert len(m.evaluate(x, y, batch_size=10_000, verbose=0)) == 2
    assert m.predict(x, batch_size=10_000, verbose=0).shape == (300, 3)


def test_batch_size_one_and_single_sample(blobs):
    x, y = blobs
    m = _dense_model()
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    m.fit(x[:10], y[:10], batch_size=1, epochs=1, verbose=0)
    m.fit(x[:1], y[:1], epochs=1, verbose=0)
    assert m.predict(x[:1], verbose=0).shape == (1, 3)
    _as_float(m.evaluate(x[:1], y[:1], verbose=0))


# ---------------------------------------------------------------------------------------------
# input kinds


def test_input_dtypes_and_layouts_give_same_predictions():
    rng = np.random.default_rng(4)
    x8 = rng.integers(0, 256, size=(30, 12), dtype=np.uint8)
    m = ferrax.Sequential([ferrax.Input(shape=(12,)), layers.Dense(5, activation="tanh")])
    ref = m.predict(x8.astype(np.float32), verbose=0)
    variants = {
        "uint8": x8,
        "int32": x8.astype(np.int32),
        "int64": x8.astype(np.int64),
        "float64": x8.astype(np.float64),
        "fortran": np.asfortranarray(x8.astype(np.float32)),
        "fortran_uint8": np.asfortranarray(x8),
        "strided": np.repeat(x8.astype(np.float32), 2, axis=1)[:, ::2],
    }
    for name, xv in variants.items():
        np.testing.assert_allclose(m.predict(xv, verbose=0), ref, rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    # negative strides
    np.testing.assert_allclose(m.predict(x8.astype(np.float32)[::-1], verbose=0), ref[::-1],
                               rtol=1e-6, atol=1e-7)


def test_fit_accepts_label_dtypes_and_shapes(blobs):
    x, y = blobs
    m = _dense_model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ref = m.evaluate(x, y, verbose=0)
    for yv in (y.astype(np.int32), y.astype(np.uint8), y.astype(np.float32),
               y.astype(np.float64), y.reshape(-1, 1), list(y.tolist())):
        np.testing.assert_allclose(m.evaluate(x, np.asarray(yv), verbose=0), ref, rtol=1e-6)
    m.fit(x.astype(np.float64), y.astype(np.int32), epochs=1, verbose=0)
    m.fit(np.asfortranarray(x), y.reshape(-1, 1), epochs=1, verbose=0)


def test_mse_with_1d_targets_is_not_broadcast(rng):
    # Keras: y of shape (n,) for a (n, 1) output is treated as (n, 1), not broadcast to (n, n)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    y = rng.normal(size=50).astype(np.float32)
    m = ferrax.Sequential([ferrax.Input(shape=(3,)), layers.Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    a = _as_float(m.evaluate(x, y, verbose=0))
    b = _as_float(m.evaluate(x, y[:, None], verbose=0))
    p = m.predict(x, verbose=0)[:, 0].astype(np.float64)
    np.testing.assert_allclose([a, b], np.mean((p - y) ** 2), rtol=1e-5)


def test_to_categorical():
    out = ferrax.utils.to_categorical(np.array([0, 2, 1, 2]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.eye(3)[[0, 2, 1, 2]])
    out = ferrax.utils.to_categorical([1, 0], num_classes=4)
    assert out.shape == (2, 4)
    np.testing.assert_array_equal(out, [[0, 1, 0, 0], [1, 0, 0, 0]])
    # a column of labels gives one row per label
    assert ferrax.utils.to_categorical(np.array([[1], [0]]), 3).shape == (2, 3)


# ---------------------------------------------------------------------------------------------
# callbacks and output


def test_custom_callback_and_stop_training(blobs):
    x, y = blobs
    calls = []

    class Recorder(ferrax.callbacks.Callback):
        def on_train_begin(self, logs=None):
            calls.append(("begin",))

        def on_epoch_end(self, epoch, logs=None):
            calls.append(("epoch", epoch, sorted(logs or {})))
            assert self.model is m
            if epoch == 1:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            calls.append(("end",))

    m = _dense_model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, epochs=5, verbose=0, callbacks=[Recorder()], validation_data=(x, y))
    keys = ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert calls == [("begin",), ("epoch", 0, keys), ("epoch", 1, keys), ("end",)]
    assert h.epoch == [0, 1]


def test_verbose_zero_prints_nothing(blobs, capsys):
    x, y = blobs
    m = _dense_model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    capsys.readouterr()
    m.fit(x, y, epochs=2, verbose=0, validation_split=0.1)
    m.evaluate(x, y, verbose=0)
    m.predict(x, verbose=0)
    out = capsys.readouterr()
    assert out.out == ""


def test_verbose_two_prints_one_line_per_epoch(blobs, capsys):
    x, y = blobs
    m = _dense_model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    capsys.readouterr()
    m.fit(x, y, epochs=2, verbose=2, batch_size=10)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "loss" in out and "accuracy" in out
    assert out.count("\n") <= 6, out


def test_verbose_one_does_not_print_a_line_per_batch_when_not_a_terminal(blobs, capsys):
    # DESIGN: Keras users complain about a new line per progress update in logs.
    x, y = blobs
    m = _dense_model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    capsys.readouterr()
    m.fit(x, y, epochs=2, verbose=1, batch_size=4)  # 75 batches an epoch
    out = capsys.readouterr().out
    assert "loss" in out
    assert out.count("\n") <= 12, out[:2000]


# ---------------------------------------------------------------------------------------------
# a Keras script, with only its imports changed

KERAS_SCRIPT = '''
import numpy as np
import keras
from keras import layers

rng = np.random.default_rng(0)
num_classes = 10
input_shape = (28, 28)
x_train = rng.integers(0, 256, size=(600, 28, 28), dtype=np.uint8)
y_train = rng.integers(0, 10, size=600).astype(np.uint8)
x_test = rng.integers(0, 256, size=(100, 28, 28), dtype=np.uint8)
y_test = rng.integers(0, 10, size=100).astype(np.uint8)

x_train = x_train.astype("float32") / 255
x_test = x_test.astype("float32") / 255
print("x_train shape:", x_train.shape)

y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

model = keras.Sequential(
    [
        keras.Input(shape=input_shape),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(num_classes, activation="softmax"),
    ]
)
model.summary()
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=128, epochs=2, validation_split=0.1)
score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
RESULT["score"] = score
RESULT["history"] = history.history

model2 = keras.models.Sequential()
model2.add(layers.Dense(32, activation="relu", input_shape=(784,)))
model2.add(layers.Dense(10))
model2.compile(
    optimizer=keras.optimizers.Adam(learning_rate=1e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=[keras.metrics.SparseCategoricalAccuracy()],
)
h2 = model2.fit(x_train.reshape(-1, 784), y_train.argmax(axis=1), epochs=1, batch_size=64,
                verbose=0, validation_data=(x_test.reshape(-1, 784), y_test.argmax(axis=1)))
preds = model2.predict(x_test.reshape(-1, 784), verbose=0)
RESULT["history2"] = h2.history
RESULT["preds"] = preds
'''


def test_keras_script_runs_with_only_imports_changed(capsys):
    src = KERAS_SCRIPT.replace("import keras\n", "import ferrax as keras\n")
    src = src.replace("from keras import layers", "from ferrax import layers")
    assert "keras import" not in src.replace("ferrax as keras", "")
    result = {}
    exec(compile(src, "<keras_script>", "exec"), {"RESULT": result, "__name__": "script"})  # noqa: S102
    out = capsys.readouterr().out
    assert "Test loss:" in out and "Total params" in out
    assert len(result["score"]) == 2
    assert set(result["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    # Keras: a metric object is named after its snake_case name
    assert set(result["history2"]) == {"loss", "sparse_categorical_accuracy", "val_loss",
                                       "val_sparse_categorical_accuracy"}
    assert result["preds"].shape == (100, 10) and result["preds"].dtype == np.float32
