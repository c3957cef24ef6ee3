"""Bad input raises ValueError/TypeError, before any training step, with a useful message.

The message checks are loose, case-insensitive regexes on the essential content: the name of the
argument or layer and the value that came (and, where it matters, what was expected).
"""

import re

import numpy as np
import pytest

import ferrax
from ferrax import layers


def all_of(*parts):
    """A regex (for pytest.raises(match=...)) that needs every part somewhere, in any order."""
    return "(?is)" + "".join(f"(?=.*{p})" for p in parts)


def any_of(*parts):
    return "(?:" + "|".join(parts) + ")"


NUM = r"(?<![\d.])"  # no digit or dot just before a number
END = r"(?![\d.])"  # no digit or dot just after it


def num(n):
    return NUM + re.escape(str(n)) + END


def _model(n_in=784, n_out=10, out_act="softmax", dropout=False):
    stack = [ferrax.Input(shape=(n_in,)), layers.Dense(16, activation="relu")]
    if dropout:
        stack.append(layers.Dropout(0.5))
    stack.append(layers.Dense(n_out, activation=out_act))
    return ferrax.Sequential(stack)


def _compiled(loss="sparse_categorical_crossentropy", **kw):
    m = _model(**kw)
    m.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    return m


def _data(n=100, n_in=784, n_out=10, seed=0):
    r = np.random.default_rng(seed)
    return r.random((n, n_in)).astype(np.float32), r.integers(0, n_out, size=n)


def _weights_equal(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


def _assert_untouched_then_works(model, w_before, n_in=784, n_out=10):
    """After an error: the weights are unchanged, and a correct fit then succeeds."""
    assert _weights_equal(model.get_weights(), w_before), "weights changed by a failed call"
    x, y = _data(64, n_in, n_out, seed=1)
    h = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(h.history["loss"][0])
    assert not _weights_equal(model.get_weights(), w_before)


# ---------------------------------------------------------------------------------------------
# input shapes and lengths


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict", "train_on_batch",
                                    "test_on_batch", "predict_on_batch"])
def test_wrong_feature_count_names_expected_and_received(method):
    m = _compiled()
    w0 = m.get_weights()
    x = np.zeros((32, 785), np.float32)
    y = np.zeros(32, np.int64)
    args = (x,) if "predict" in method else (x, y)
    kwargs = {"verbose": 0} if method in ("fit", "evaluate", "predict") else {}
    shape_word = any_of("input", "dense", "shape", "feature")
    with pytest.raises(ValueError, match=all_of(num(784), num(785), shape_word)):
        getattr(m, method)(*args, **kwargs)
    _assert_untouched_then_works(m, w0)


def test_wrong_rank_input_names_shapes():
    m = _compiled()
    w0 = m.get_weights()
    with pytest.raises(ValueError, match=all_of(num(784), num(28))):
        m.fit(np.zeros((32, 28, 28), np.float32), np.zeros(32, np.int64), verbose=0)
    _assert_untouched_then_works(m, w0)


def test_wrong_shape_for_first_layer_with_input_shape():
    m = ferrax.Sequential([layers.Dense(8, input_shape=(5,)), layers.Dense(2)])
    m.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=all_of(num(5), num(6))):
        m.fit(np.zeros((10, 6), np.float32), np.zeros((10, 2), np.float32), verbose=0)


def test_wrong_target_width_for_regression():
    m = ferrax.Sequential([ferrax.Input(shape=(5,)), layers.Dense(3)])
    m.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=all_of(num(3), num(4))):
        m.fit(np.zeros((10, 5), np.float32), np.zeros((10, 4), np.float32), verbose=0)


@pytest.mark.parametrize("method", ["fit", "evaluate", "train_on_batch", "test_on_batch"])
def test_x_y_length_mismatch_names_both(method):
    m = _compiled()
    w0 = m.get_weights()
    x, y = _data(100)
    kwargs = {"verbose": 0} if method in ("fit", "evaluate") else {}
    with pytest.raises(ValueError, match=all_of(num(100), num(90))):
        getattr(m, method)(x, y[:90], **kwargs)
    _assert_untouched_then_works(m, w0)


def test_sample_weight_length_mismatch():
    m = _compiled()
    x, y = _data(100)
    with pytest.raises(ValueError, match=all_of("sample_weight", num(100), num(70))):
        m.fit(x, y, sample_weight=np.ones(70), verbose=0)


def test_validation_data_wrong_shape_is_caught_before_training():
    m = _compiled()
    w0 = m.get_weights()
    x, y = _data(100)
    with pytest.raises(ValueError, match=all_of(num(784), num(783))):
        m.fit(x, y, epochs=1, verbose=0, validation_data=(x[:, :783], y))
    _assert_untouched_then_works(m, w0)


# ---------------------------------------------------------------------------------------------
# labels


LABEL_WORD = any_of("label", "class", "target", r"\by\b")


@pytest.mark.parametrize("bad", [10, 11, 1000])
def test_sparse_label_out_of_range(bad):
    m = _compiled()
    w0 = m.get_weights()
    x, y = _data(100)
    y[-1] = bad  # only the very last sample is bad: still caught before any step
    with pytest.raises(ValueError, match=all_of(num(bad), LABEL_WORD)):
        m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match=all_of(num(bad), LABEL_WORD)):
        m.evaluate(x, y, verbose=0)
    _assert_untouched_then_works(m, w0)


def test_sparse_label_negative():
    m = _compiled()
    w0 = m.get_weights()
    x, y = _data(100)
    y[-1] = -1
    with pytest.raises(ValueError, match=all_of(r"-1\b", LABEL_WORD)):
        m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match=all_of(r"-1\b", LABEL_WORD)):
        m.train_on_batch(x, y)
    _assert_untouched_then_works(m, w0)


def test_sparse_label_not_an_integer():
    m = _compiled()
    x, y = _data(100)
    yf = y.astype(np.float64)
    yf[3] = 2.5
    with pytest.raises(ValueError, match=all_of(r"2\.5", LABEL_WORD)):
        m.fit(x, yf, epochs=1, verbose=0)


def test_one_hot_labels_given_to_sparse_loss():
    m = _compiled(loss="sparse_categorical_crossentropy")
    w0 = m.get_weights()
    x, y = _data(100)
    y1 = ferrax.utils.to_categorical(y, 10)
    with pytest.raises(ValueError, match=any_of("sparse", "one.?hot", "categorical")):
        m.fit(x, y1, epochs=1, verbose=0)
    _assert_untouched_then_works(m, w0)


def test_sparse_labels_given_to_categorical_crossentropy():
    m = _compiled(loss="categorical_crossentropy")
    w0 = m.get_weights()
    x, y = _data(100)
    with pytest.raises(ValueError, match=any_of("sparse", "one.?hot", "to_categorical",
                                                r"\(100,?\)")):
        m.fit(x, y, epochs=1, verbose=0)
    assert _weights_equal(m.get_weights(), w0)
    m.fit(x, ferrax.utils.to_categorical(y, 10), epochs=1, verbose=0)


def test_one_hot_with_wrong_class_count():
    m = _compiled(loss="categorical_crossentropy")
    x, y = _data(100)
    with pytest.raises(ValueError, match=all_of(num(10), num(12))):
        m.fit(x, ferrax.utils.to_categorical(y, 12), epochs=1, verbose=0)


def test_binary_crossentropy_label_outside_0_1():
    m = _model(n_in=4, n_out=1, out_act="sigmoid")
    m.compile(optimizer="adam", loss="binary_crossentropy")
    w0 = m.get_weights()
    x = np.random.default_rng(0).random((50, 4)).astype(np.float32)
    y = np.zeros(50)
    y[7] = 2
    with pytest.raises(ValueError, match=all_of(num(2), LABEL_WORD)):
        m.fit(x, y, epochs=1, verbose=0)
    _assert_untouched_then_works(m, w0, n_in=4, n_out=2)


# ---------------------------------------------------------------------------------------------
# bad values and dtypes


@pytest.mark.parametrize("where, bad", [("x", np.nan), ("x", np.inf), ("x", -np.inf),
                                        ("y", np.nan), ("y", np.inf)])
def test_non_finite_values(where, bad):
    m = ferrax.Sequential([ferrax.Input(shape=(6,)), layers.Dense(8, activation="relu"),
                           layers.Dense(2)])
    m.compile(optimizer="adam", loss="mse")
    w0 = m.get_weights()
    r = np.random.default_rng(0)
    x = r.random((64, 6)).astype(np.float32)
    y = r.random((64, 2)).astype(np.float32)
    (x if where == "x" else y)[-1, 1] = bad
    msg = all_of(any_of("nan", "inf", "finite"), any_of(rf"\b{where}\b", "input", "target",
                                                        "label", "data"))
    with pytest.raises(ValueError, match=msg):
        m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match=msg):
        m.train_on_batch(x, y)
    assert _weights_equal(m.get_weights(), w0)
    with pytest.raises(ValueError, match=msg):
        m.evaluate(x, y, verbose=0)
    if where == "x":
        with pytest.raises(ValueError, match=msg):
            m.predict(x, verbose=0)
    x[-1, 1] = 0.5
    y[-1, 1] = 0.5
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert not _weights_equal(m.get_weights(), w0)


@pytest.mark.parametrize("layout", ["float32", "float64", "float16", "float32 strided"])
@pytest.mark.parametrize("n", [40, 200])
def test_non_finite_x_is_reported_at_its_index(layout, n):
    # big float32/float64 C-contiguous arrays (200 x 784) are scanned by the engine, the rest
    # by NumPy
    m = _compiled()
    x, y = _data(n)
    if layout == "float32 strided":
        x = np.repeat(x, 2, axis=1)[:, ::2]
        assert not x.flags.c_contiguous
    else:
        x = x.astype(layout)
    x[17, 3] = np.inf
    with pytest.raises(ValueError, match=r"'x' contains NaN or inf \(first at index \(17, 3\)"):
        m.fit(x, y, verbose=0)


@pytest.mark.parametrize("first", ["Dense", "Conv2D", "Dropout"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_reports_non_finite_x_at_its_sample_and_index(first, bad, dtype):
    # A first Dense flags NaN/inf among its pre-activations (then the batch is scanned to
    # say where); other first layers have their input scanned. Zero weights must not hide
    # an infinity (inf * 0 is NaN), nor ReLU a NaN.
    stack = {
        "Dense": [layers.Flatten(), layers.Dense(4, activation="relu",
                                                 kernel_initializer="zeros")],
        "Conv2D": [layers.Conv2D(2, 3, activation="relu"), layers.Flatten()],
        "Dropout": [layers.Dropout(0.5), layers.Flatten()],
    }[first]
    m = ferrax.Sequential([ferrax.Input(shape=(6, 6, 1)), *stack, layers.Dense(3)])
    x = np.random.default_rng(0).random((70, 6, 6, 1)).astype(dtype)
    assert np.all(np.isfinite(m.predict(x, batch_size=16, verbose=0)))
    x[37, 2, 5, 0] = bad
    flat = 2 * 6 + 5
    with pytest.raises(ValueError, match=rf"'x' contains NaN or inf \(first in sample 37, "
                                         rf"at flat index {flat}\)"):
        m.predict(x, batch_size=16, verbose=0)
    # The same model still predicts clean data afterwards, and a finite input whose
    # products overflow is not mistaken for a non-finite one.
    x[37, 2, 5, 0] = 0.5
    assert np.all(np.isfinite(m.predict(x, batch_size=16, verbose=0)))
    if first == "Dense":
        m.layers[1].set_weights([np.full((36, 4), 3e38, np.float32), np.zeros(4, np.float32)])
        out = m.predict(np.ones((5, 6, 6, 1), dtype), verbose=0)
        assert out.shape == (5, 3)


def test_nan_in_float64_x_and_sample_weight():
    m = _compiled()
    x, y = _data(40)
    x64 = x.astype(np.float64)
    x64[0, 0] = np.nan
    with pytest.raises(ValueError, match=any_of("nan", "finite")):
        m.fit(x64, y, verbose=0)
    sw = np.ones(40)
    sw[5] = np.nan
    with pytest.raises(ValueError, match=all_of("sample_weight", any_of("nan", "finite"))):
        m.fit(x, y, sample_weight=sw, verbose=0)


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_empty_array(method):
    m = _compiled()
    x = np.zeros((0, 784), np.float32)
    y = np.zeros((0,), np.int64)
    args = (x,) if method == "predict" else (x, y)
    with pytest.raises(ValueError, match=any_of("empty", r"\b0 samples", "no samples",
                                                r"zero", r"\(0,")):
        getattr(m, method)(*args, verbose=0)


@pytest.mark.parametrize("bad_x", [
    np.array([["a"] * 784] * 4),
    np.array([[object()] * 784] * 4, dtype=object),
    np.array([[1 + 2j] * 784] * 4),
])
def test_non_numeric_x(bad_x):
    m = _compiled()
    w0 = m.get_weights()
    y = np.zeros(4, np.int64)
    with pytest.raises((TypeError, ValueError), match=any_of("dtype", "numeric", "float",
                                                             "type", "complex", "object",
                                                             "<U")):
        m.fit(bad_x, y, verbose=0)
    with pytest.raises((TypeError, ValueError)):
        m.predict(bad_x, verbose=0)
    _assert_untouched_then_works(m, w0)


def test_string_labels():
    m = _compiled()
    x, _ = _data(4)
    with pytest.raises((TypeError, ValueError)):
        m.fit(x, np.array(["cat", "dog", "cat", "dog"]), verbose=0)


def test_ragged_python_list_x():
    m = ferrax.Sequential([ferrax.Input(shape=(2,)), layers.Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    with pytest.raises((TypeError, ValueError)):
        m.fit([[1.0, 2.0], [3.0]], [0.0, 1.0], verbose=0)


# ---------------------------------------------------------------------------------------------
# arguments


@pytest.mark.parametrize("bs", [0, -1, -32])
def test_batch_size_below_one(bs):
    m = _compiled()
    w0 = m.get_weights()
    x, y = _data(50)
    msg = all_of("batch_size", re.escape(str(bs)) + END)
    with pytest.raises(ValueError, match=msg):
        m.fit(x, y, batch_size=bs, verbose=0)
    with pytest.raises(ValueError, match=msg):
        m.evaluate(x, y, batch_size=bs, verbose=0)
    with pytest.raises(ValueError, match=msg):
        m.predict(x, batch_size=bs, verbose=0)
    _assert_untouched_then_works(m, w0)


def test_batch_size_not_an_integer():
    m = _compiled()
    x, y = _data(50)
    with pytest.raises((TypeError, ValueError), match="batch_size"):
        m.fit(x, y, batch_size=2.5, verbose=0)
    with pytest.raises((TypeError, ValueError), match="batch_size"):
        m.fit(x, y, batch_size="32", verbose=0)


@pytest.mark.parametrize("epochs", [-1, 1.5])
def test_bad_epochs(epochs):
    m = _compiled()
    x, y = _data(50)
    with pytest.raises((TypeError, ValueError), match="epochs"):
        m.fit(x, y, epochs=epochs, verbose=0)


@pytest.mark.parametrize("split", [-0.1, 1.0, 1.5])
def test_bad_validation_split(split):
    m = _compiled()
    x, y = _data(50)
    with pytest.raises(ValueError, match=all_of("validation_split", re.escape(str(split)))):
        m.fit(x, y, validation_split=split, verbose=0)


def test_unknown_activation_at_construction():
    with pytest.raises(ValueError, match=all_of("relux")):
        layers.Dense(3, activation="relux")
    with pytest.raises(ValueError, match=all_of("softmaxx")):
        layers.Activation("softmaxx")


def test_unknown_loss_at_compile():
    m = _model()
    with pytest.raises(ValueError, match=all_of("mean_squared_eror")):
        m.compile(optimizer="adam", loss="mean_squared_eror")


def test_unknown_optimizer_at_compile():
    m = _model()
    with pytest.raises(ValueError, match=all_of("adamx")):
        m.compile(optimizer="adamx", loss="mse")


def test_unknown_metric_at_compile():
    m = _model()
    with pytest.raises(ValueError, match=all_of("acuracy")):
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["acuracy"])


def test_failed_compile_leaves_model_usable():
    m = _model()
    with pytest.raises(ValueError):
        m.compile(optimizer="adam", loss="nope")
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = _data(32)
    m.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize("units", [0, -3])
def test_dense_units_not_positive(units):
    with pytest.raises(ValueError, match=all_of("units", re.escape(str(units)) + END)):
        layers.Dense(units)


def test_dense_units_wrong_type():
    with pytest.raises((TypeError, ValueError), match="units"):
        layers.Dense("ten")
    with pytest.raises((TypeError, ValueError), match="units"):
        layers.Dense(2.5)


@pytest.mark.parametrize("rate", [1.0, 1.5, -0.1])
def test_dropout_rate_outside_0_1(rate):
    with pytest.raises(ValueError, match=all_of("rate", re.escape(str(rate)))):
        layers.Dropout(rate)


def test_dropout_rate_zero_is_fine():
    m = ferrax.Sequential([ferrax.Input(shape=(3,)), layers.Dropout(0.0), layers.Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    m.fit(np.ones((4, 3), np.float32), np.ones(4, np.float32), verbose=0)


def test_reshape_incompatible_size():
    with pytest.raises(ValueError, match=all_of(num(12), any_of(num(10), r"2,\s*5"))):
        m = ferrax.Sequential([ferrax.Input(shape=(12,)), layers.Reshape((2, 5))])
        m.predict(np.zeros((2, 12), np.float32), verbose=0)


@pytest.mark.parametrize("method", ["fit", "evaluate", "train_on_batch", "test_on_batch"])
def test_calling_before_compile(method):
    m = _model()
    x, y = _data(20)
    kwargs = {"verbose": 0} if method in ("fit", "evaluate") else {}
    with pytest.raises((RuntimeError, ValueError), match="compile"):
        getattr(m, method)(x, y, **kwargs)


def test_predict_before_compile_is_fine():
    m = _model()
    assert m.predict(np.zeros((3, 784), np.float32), verbose=0).shape == (3, 10)


def test_set_weights_wrong_shape_or_count():
    m = ferrax.Sequential([ferrax.Input(shape=(3,)), layers.Dense(2)])
    w0 = m.get_weights()
    with pytest.raises(ValueError, match=all_of(r"\(3,\s*2\)", r"\(2,\s*3\)")):
        m.set_weights([np.zeros((2, 3)), np.zeros(2)])
    with pytest.raises(ValueError):
        m.set_weights([np.zeros((3, 2))])
    assert _weights_equal(m.get_weights(), w0)


# ---------------------------------------------------------------------------------------------
# worst cases that must simply work


def test_worst_cases_that_must_work():
    m = _compiled(dropout=True)
    x, y = _data(50)
    m.fit(x, y, batch_size=100_000, epochs=1, verbose=0)  # batch larger than the data
    m.fit(x.astype(np.float64), y.astype(np.int64), epochs=1, verbose=0)
    m.fit((x * 255).astype(np.uint8), y.astype(np.int32), epochs=1, verbose=0)
    m.fit(np.asfortranarray(x), y.astype(np.uint8), epochs=1, verbose=0)
    m.fit(x[::-1], y[::-1], epochs=1, verbose=0)
    m.fit(x[:1], y[:1], epochs=1, verbose=0)  # one sample
    r = m.evaluate(x, y, batch_size=100_000, verbose=0)
    assert all(np.isfinite(r))
    big = np.full((3, 784), 1e30, np.float32)  # huge but finite values: no crash
    p = m.predict(big, verbose=0)
    assert p.shape == (3, 10)


def test_extreme_logits_do_not_produce_nan_loss():
    # probabilities are clipped (Keras: to [1e-7, 1 - 1e-7]); a confident wrong answer
    # gives a large finite loss, not inf/nan
    m = ferrax.Sequential([ferrax.Input(shape=(2,)), layers.Dense(3, activation="softmax")])
    m.set_weights([np.array([[100.0, -100.0, 0.0], [0.0, 0.0, 0.0]]), np.zeros(3)])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    loss = float(m.evaluate(np.array([[10.0, 0.0]], np.float32), np.array([1]), verbose=0))
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, -np.log(1e-7), rtol=1e-3)
