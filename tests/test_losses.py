"""Losses: value and gradient w.r.t. y_pred of every Keras loss, against float64 references.

Keras semantics checked here (see tests/reference.py): per-sample loss is the mean over the last
axis for mse / mae / huber / binary_crossentropy and the sum over classes for the categorical
ones; reduction "sum_over_batch_size" = sum_i w_i * loss_i / batch; probabilities are clipped to
[1e-7, 1 - 1e-7] (in float32) unless from_logits; categorical_crossentropy on probabilities first
renormalises each row, p / sum(p), then clips; label smoothing: binary t(1-s) + s/2,
categorical t(1-s) + s/k; the sparse loss has no label smoothing.
"""

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def _ft():
    import ferrax._testing as ft

    return ft


# (id, how ferrax gets the loss: a name, or (class name, kwargs); reference kind; reference kwargs)
CASES = [
    ("mse", "mse", "mse", {}),
    ("mean_squared_error", "mean_squared_error", "mse", {}),
    ("MeanSquaredError", ("MeanSquaredError", {}), "mse", {}),
    ("mae", "mae", "mae", {}),
    ("mean_absolute_error", "mean_absolute_error", "mae", {}),
    ("MeanAbsoluteError", ("MeanAbsoluteError", {}), "mae", {}),
    ("huber", "huber", "huber", {}),
    ("Huber", ("Huber", {}), "huber", {}),
    ("Huber-0.5", ("Huber", {"delta": 0.5}), "huber", {"delta": 0.5}),
    ("Huber-2.5", ("Huber", {"delta": 2.5}), "huber", {"delta": 2.5}),
    ("binary_crossentropy", "binary_crossentropy", "binary_crossentropy", {}),
    ("BCE", ("BinaryCrossentropy", {}), "binary_crossentropy", {}),
    (
        "BCE-logits",
        ("BinaryCrossentropy", {"from_logits": True}),
        "binary_crossentropy",
        {"from_logits": True},
    ),
    (
        "BCE-smooth",
        ("BinaryCrossentropy", {"label_smoothing": 0.1}),
        "binary_crossentropy",
        {"label_smoothing": 0.1},
    ),
    (
        "BCE-logits-smooth",
        ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.2}),
        "binary_crossentropy",
        {"from_logits": True, "label_smoothing": 0.2},
    ),
    ("categorical_crossentropy", "categorical_crossentropy", "categorical_crossentropy", {}),
    ("CCE", ("CategoricalCrossentropy", {}), "categorical_crossentropy", {}),
    (
        "CCE-logits",
        ("CategoricalCrossentropy", {"from_logits": True}),
        "categorical_crossentropy",
        {"from_logits": True},
    ),
    (
        "CCE-smooth",
        ("CategoricalCrossentropy", {"label_smoothing": 0.1}),
        "categorical_crossentropy",
        {"label_smoothing": 0.1},
    ),
    (
        "CCE-logits-smooth",
        ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.25}),
        "categorical_crossentropy",
        {"from_logits": True, "label_smoothing": 0.25},
    ),
    (
        "sparse_categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "sparse_categorical_crossentropy",
        {},
    ),
    ("SCCE", ("SparseCategoricalCrossentropy", {}), "sparse_categorical_crossentropy", {}),
    (
        "SCCE-logits",
        ("SparseCategoricalCrossentropy", {"from_logits": True}),
        "sparse_categorical_crossentropy",
        {"from_logits": True},
    ),
]


def _make_loss(spec):
    if isinstance(spec, str):
        return spec
    import ferrax.losses

    cls, kw = spec
    return getattr(ferrax.losses, cls)(**kw)


def _f32(a):
    return np.asarray(a, dtype=np.float32)


@st.composite
def loss_inputs(draw, kind, kw):
    """(y_true, y_pred, sample_weight) as ferrax receives them (float32 / int ids)."""
    b = draw(st.integers(1, 8))
    categorical = kind in ("categorical_crossentropy", "sparse_categorical_crossentropy")
    k = draw(st.integers(2 if categorical else 1, 12))
    el = st.floats(-5, 5, width=32, allow_subnormal=False)
    raw_pred = draw(hnp.arrays(np.float64, (b, k), elements=el))
    if draw(st.booleans()):
        w = draw(hnp.arrays(np.float64, (b,), elements=st.floats(0, 3, width=32)))
    else:
        w = None
    from_logits = kw.get("from_logits", False)

    if kind in ("mse", "mae", "huber"):
        y_true = draw(hnp.arrays(np.float64, (b, k), elements=el))
        y_pred = raw_pred
        if kind == "mae":  # |e| has no derivative at e = 0
            e = y_pred - y_true
            y_pred = np.where(np.abs(e) < 1e-3, y_true + 1e-2, y_pred)
    elif kind == "binary_crossentropy":
        if draw(st.booleans()):
            y_true = draw(hnp.arrays(np.float64, (b, k), elements=st.sampled_from([0.0, 1.0])))
        else:
            y_true = draw(hnp.arrays(np.float64, (b, k), elements=st.floats(0, 1, width=32)))
        y_pred = raw_pred * 2 if from_logits else ref.sigmoid(raw_pred)  # in (0.0067, 0.9933)
    else:
        ids = np.array(draw(st.lists(st.integers(0, k - 1), min_size=b, max_size=b)))
        if kind == "sparse_categorical_crossentropy":
            y_true = ids.astype(draw(st.sampled_from([np.int64, np.int32])))
        elif draw(st.booleans()):
            y_true = ref.one_hot(ids, k)
        else:  # soft targets: a distribution per row
            y_true = ref.softmax(draw(hnp.arrays(np.float64, (b, k), elements=el)))
        if from_logits:
            y_pred = raw_pred * 2
        elif draw(st.booleans()):
            y_pred = ref.softmax(raw_pred)  # rows sum to 1, entries >= ~4e-6
        else:  # unnormalised positive scores: Keras divides by the row sum
            y_pred = 0.05 + ref.sigmoid(raw_pred)
    if kind != "sparse_categorical_crossentropy":
        y_true = _f32(y_true)
    return y_true, _f32(y_pred), None if w is None else _f32(w)


def _check(spec, kind, kw, y_true, y_pred, w, rtol_v=2e-5, rtol_g=1e-4):
    value, grad = _ft().loss_value_and_grad(_make_loss(spec), y_true, y_pred, w)
    assert isinstance(value, float), type(value)
    assert isinstance(grad, np.ndarray) and grad.dtype == np.float32, type(grad)
    yt = y_true if kind == "sparse_categorical_crossentropy" else y_true.astype(np.float64)
    want_v, want_g = ref.loss_value_and_grad(
        kind, yt, y_pred.astype(np.float64), None if w is None else w.astype(np.float64), **kw
    )
    inputs = f"y_true={np.asarray(y_true).tolist()}, y_pred={y_pred.tolist()}, " + (
        f"sample_weight={w.tolist()}" if w is not None else "no sample_weight"
    )
    ref.assert_close(value, want_v, rtol=rtol_v, atol=1e-6, what=f"{spec} value; {inputs}")
    gscale = max(1.0, float(np.max(np.abs(want_g))))
    ref.assert_close(
        grad, want_g, rtol=rtol_g, atol=1e-6 * gscale, what=f"{spec} gradient; {inputs}"
    )


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_loss_value_and_grad(case, data):
    _, spec, kind, kw = case
    y_true, y_pred, w = data.draw(loss_inputs(kind, kw))
    _check(spec, kind, kw, y_true, y_pred, w)


def test_reduction_divides_by_batch_not_weight_sum():
    y_true = np.zeros((4, 2), np.float32)
    y_pred = np.ones((4, 2), np.float32)
    w = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    value, grad = _ft().loss_value_and_grad("mse", y_true, y_pred, w)
    assert value == pytest.approx(0.25, rel=1e-6)  # 1 * 1 / 4, not 1 / sum(w)
    np.testing.assert_allclose(grad, [[0.25, 0.25], [0, 0], [0, 0], [0, 0]], rtol=1e-6)


def test_categorical_crossentropy_renormalises_probabilities():
    # Keras computes -sum t log(p / sum(p)): scaling a row of y_pred changes nothing,
    # and the gradient of a row that sums to 1 is -t/p + 1.
    y_true = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
    p = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]], np.float32)
    ft = _ft()
    v1, g1 = ft.loss_value_and_grad("categorical_crossentropy", y_true, p)
    v2, _ = ft.loss_value_and_grad("categorical_crossentropy", y_true, 3 * p)
    assert v1 == pytest.approx(v2, rel=1e-5)
    want = (-y_true / p.astype(np.float64) + 1.0) / 2
    ref.assert_close(g1, want, rtol=1e-5, atol=1e-6, what="CCE gradient on normalised rows")


@pytest.mark.parametrize(
    "kind", ["binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"]
)
def test_probability_clipping(kind):
    """Probabilities of exactly 0 or 1 give finite losses and zero gradient where clipped."""
    rng = np.random.default_rng(3)
    b, k = 6, 4
    if kind == "binary_crossentropy":
        y_true = rng.integers(0, 2, (b, k)).astype(np.float32)
        y_pred = rng.uniform(0.05, 0.95, (b, k)).astype(np.float32)
        y_pred[rng.random((b, k)) < 0.3] = 0.0
        y_pred[rng.random((b, k)) < 0.3] = 1.0
        clipped = (y_pred == 0.0) | (y_pred == 1.0)
    else:
        ids = rng.integers(0, k, b)
        y_pred = ref.softmax(rng.normal(size=(b, k))).astype(np.float32)
        y_pred[np.arange(b), ids] = 0.0  # true class has probability 0: clipped to 1e-7
        y_pred[0] = 0.0
        y_pred[0, (ids[0] + 1) % k] = 1.0
        y_true = ids if kind.startswith("sparse") else ref.one_hot(ids, k).astype(np.float32)
        clipped = np.ones((b, k), bool)  # the only non-zero target entry is clipped
    value, grad = _ft().loss_value_and_grad(kind, y_true, y_pred)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    yt = y_true if kind.startswith("sparse") else y_true.astype(np.float64)
    want_v, want_g = ref.loss_value_and_grad(kind, yt, y_pred.astype(np.float64))
    # -log(1e-7) = 16.1 per clipped entry: the clip bound sets the value. Keras's float32 bound
    # 1 - 1e-7 is 1 - 2**-23, so -log(1 - p) at p = 1 is 15.94; allow either float32 or float64
    # rounding of the bound (1%), but the gradient must vanish where the clip is active.
    ref.assert_close(value, want_v, rtol=2e-2, atol=1e-6, what=f"{kind} clipped value")
    ref.assert_close(grad, want_g, rtol=1e-4, atol=1e-6, what=f"{kind} clipped gradient")
    assert np.all(grad[clipped] == 0.0), grad


def test_sparse_matches_categorical_with_one_hot():
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 5, 7)
    logits = rng.normal(size=(7, 5)).astype(np.float32)
    import ferrax.losses as fl

    ft = _ft()
    a = ft.loss_value_and_grad(fl.SparseCategoricalCrossentropy(from_logits=True), ids, logits)
    b = ft.loss_value_and_grad(
        fl.CategoricalCrossentropy(from_logits=True), ref.one_hot(ids, 5).astype(np.float32), logits
    )
    assert a[0] == pytest.approx(b[0], rel=1e-6)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6, atol=1e-7)


# ---- the references themselves, against central finite differences (float64) ----

REF_CASES = sorted({(c[2], tuple(sorted(c[3].items()))) for c in CASES})


@pytest.mark.parametrize("kind,kwitems", REF_CASES)
def test_reference_loss_gradient_matches_finite_differences(kind, kwitems):
    kw = dict(kwitems)
    rng = np.random.default_rng(7)
    for trial in range(5):
        b, k = int(rng.integers(1, 6)), int(rng.integers(2, 7))
        w = rng.uniform(0, 2, b) if trial % 2 else None
        if kind in ("mse", "mae", "huber"):
            y_true = rng.uniform(-3, 3, (b, k))
            y_pred = rng.uniform(-3, 3, (b, k))
        elif kind == "binary_crossentropy":
            y_true = rng.uniform(0, 1, (b, k))
            y_pred = rng.uniform(-4, 4, (b, k))
            if not kw.get("from_logits"):
                y_pred = ref.sigmoid(y_pred)
        else:
            ids = rng.integers(0, k, b)
            y_true = ids if kind.startswith("sparse") else ref.softmax(rng.normal(size=(b, k)))
            y_pred = rng.uniform(-3, 3, (b, k))
            if not kw.get("from_logits"):
                y_pred = 0.05 + ref.sigmoid(y_pred)  # not normalised: tests the p / sum(p)
        _reference_loss_fd_check(kind, kw, y_true, y_pred, w)


def _reference_loss_fd_check(kind, kw, y_true, y_pred, w):
    _, g = ref.loss_value_and_grad(kind, y_true, y_pred, w, **kw)
    num = ref.numerical_grad(lambda p: ref.loss_value(kind, y_true, p, w, **kw), y_pred)
    ref.assert_close(
        g, num, rtol=1e-6, atol=1e-8, what=f"reference {kind} {kw} gradient vs finite differences"
    )


@pytest.mark.parametrize("loss, activation, classes", [
    ("SparseCategoricalCrossentropy", "softmax", 3),
    ("CategoricalCrossentropy", "softmax", 3),
    ("BinaryCrossentropy", "sigmoid", 1),
])
def test_from_logits_on_probabilities_warns_as_keras_does(loss, activation, classes):
    import warnings

    import ferrax

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 4)).astype("float32")
    ids = rng.integers(0, max(classes, 2), 16)
    if loss == "SparseCategoricalCrossentropy":
        y = ids
    elif loss == "CategoricalCrossentropy":
        y = np.eye(classes)[ids]
    else:
        y = ids[:, None].astype("float32")
    for act, should_warn in ((activation, True), (None, False)):
        model = ferrax.Sequential([ferrax.Input((4,)),
                                   ferrax.layers.Dense(classes, activation=act, name="head")])
        model.compile(optimizer="sgd", loss=getattr(ferrax.losses, loss)(from_logits=True))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(x, y, epochs=1, verbose=0)
        about = [w for w in caught if "from_logits=True" in str(w.message)]
        assert bool(about) == should_warn, (act, [str(w.message) for w in caught])
        if should_warn:
            assert "'head'" in str(about[0].message) and about[0].filename == __file__
