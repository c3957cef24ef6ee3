"""Loss objects and loss functions called on tensors, as custom loops call them: the
value and the gradient under a GradientTape against float64 NumPy, the Keras guide's
loop (`loss_fn(y, logits)`) against fit bitwise, the functions' per-sample results,
and the same losses inside a traced call."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

import ferrax
from ferrax import layers, losses, ops

R = np.random.default_rng(3)
P = R.uniform(0.05, 0.95, size=(6, 4)).astype(np.float32)
LOGITS = R.normal(size=(6, 4)).astype(np.float32)
DENSE = R.uniform(size=(6, 4)).astype(np.float32)
IDS = R.integers(0, 4, size=6)
W = R.uniform(0.5, 2.0, size=6).astype(np.float32)

CASES = [
    (losses.MeanSquaredError(), "mse", DENSE, LOGITS, {}),
    (losses.MeanAbsoluteError(), "mae", DENSE, LOGITS, {}),
    (losses.Huber(delta=0.7), "huber", DENSE, LOGITS, {"delta": 0.7}),
    (losses.BinaryCrossentropy(), "binary_crossentropy", DENSE, P, {}),
    (losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2), "binary_crossentropy",
     DENSE, LOGITS, {"from_logits": True, "label_smoothing": 0.2}),
    (losses.CategoricalCrossentropy(from_logits=True), "categorical_crossentropy",
     ref.one_hot(IDS, 4), LOGITS, {"from_logits": True}),
    (losses.SparseCategoricalCrossentropy(), "sparse_categorical_crossentropy", IDS, P, {}),
    (losses.SparseCategoricalCrossentropy(from_logits=True),
     "sparse_categorical_crossentropy", IDS, LOGITS, {"from_logits": True}),
]


@pytest.mark.parametrize("loss, name, y, p, kw", CASES, ids=lambda c: getattr(c, "name", ""))
@pytest.mark.parametrize("weighted", [False, True])
def test_a_loss_object_under_the_tape_gives_the_reference_value_and_gradient(
        loss, name, y, p, kw, weighted):
    pred = ferrax.Variable(p)
    sw = W if weighted else None
    with ferrax.GradientTape() as tape:
        value = loss(y, pred, sample_weight=sw)
    grad = tape.gradient(value, pred)
    want, want_grad = ref.loss_value_and_grad(name, y, p, sw, **kw)
    assert value.shape == ()
    np.testing.assert_allclose(float(value), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss, name, y, p, kw", CASES, ids=lambda c: getattr(c, "name", ""))
def test_a_loss_function_gives_the_reference_per_sample_losses(loss, name, y, p, kw):
    fn = getattr(losses, loss.name if name != "huber" else "huber")
    got = fn(y, p, **kw)
    np.testing.assert_allclose(np.asarray(got), ref.per_sample_loss(name, y, p, **kw),
                               rtol=1e-5, atol=1e-6)


def test_a_loss_function_under_the_tape_gives_the_reference_gradient():
    pred = ferrax.Variable(LOGITS)
    with ferrax.GradientTape() as tape:
        value = ops.mean(losses.categorical_crossentropy(ref.one_hot(IDS, 4), pred,
                                                         from_logits=True))
    _, want = ref.loss_value_and_grad("categorical_crossentropy", ref.one_hot(IDS, 4), LOGITS,
                                      from_logits=True)
    np.testing.assert_allclose(np.asarray(tape.gradient(value, pred)), want, rtol=1e-5,
                               atol=1e-7)


def test_targets_of_one_rank_less_get_a_trailing_axis_as_in_keras():
    y = np.array([1.0, 2.0, 3.0], np.float32)
    p = np.array([[1.5], [2.0], [2.0]], np.float32)
    np.testing.assert_allclose(np.asarray(losses.mean_squared_error(y, p)), [0.25, 0.0, 1.0])
    assert float(losses.MeanSquaredError()(y, p)) == pytest.approx(1.25 / 3)


def test_the_keras_guide_loop_with_a_loss_object_gives_the_weights_of_fit_bitwise():
    r = np.random.default_rng(1)
    x = r.normal(size=(64, 5)).astype(np.float32)
    y = r.integers(0, 3, size=64)

    def make() -> ferrax.Model:
        ferrax.utils.set_random_seed(5)
        return ferrax.Sequential([ferrax.Input((5,)), layers.Dense(7, activation="relu"),
                                  layers.Dense(3)])

    loss_fn = losses.SparseCategoricalCrossentropy(from_logits=True)
    fitted = make()
    fitted.compile(optimizer=ferrax.optimizers.Adam(0.01), loss=loss_fn)
    fitted.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    model, optimizer = make(), ferrax.optimizers.Adam(0.01)
    for _ in range(2):
        for i in range(0, 64, 16):
            with ferrax.GradientTape() as tape:
                logits = model(x[i:i + 16], training=True)
                loss_value = loss_fn(y[i:i + 16], logits)
            grads = tape.gradient(loss_value, model.trainable_weights)
            optimizer.apply_gradients(zip(grads, model.trainable_weights))
    for a, b in zip(model.get_weights(), fitted.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("form", ["object", "functions"])
def test_losses_inside_a_traced_loss_function_score_as_numpy_does(form):
    x = R.normal(size=(16, 3)).astype(np.float32)
    t = R.normal(size=(16, 2)).astype(np.float32)
    if form == "object":
        def loss(y_true, y_pred):
            return 2.0 * losses.MeanSquaredError()(y_true, y_pred)
    else:
        def loss(y_true, y_pred):
            return losses.huber(y_true, y_pred, delta=0.5) + losses.mae(y_true, y_pred)
    ferrax.utils.set_random_seed(2)
    model = ferrax.Sequential([ferrax.Input((3,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss=loss)
    got = model.evaluate(x, t, batch_size=16, verbose=0)
    p = model.predict(x, verbose=0)
    if form == "object":
        want = 2.0 * ref.loss_value("mse", t, p)
    else:
        want = ref.loss_value("huber", t, p, delta=0.5) + ref.loss_value("mae", t, p)
    assert got == pytest.approx(want, rel=1e-5)


def test_a_loss_object_refuses_targets_for_another_batch():
    with pytest.raises(ValueError, match="y_true has shape \\(5,\\) but y_pred has 6 samples"):
        losses.SparseCategoricalCrossentropy()(IDS[:5], P)
    with pytest.raises(ValueError, match="sample_weight holds 3 weights for 6 samples"):
        losses.MeanSquaredError()(DENSE, P, sample_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="one class id"):
        losses.SparseCategoricalCrossentropy()(ref.one_hot(IDS, 4), P)
