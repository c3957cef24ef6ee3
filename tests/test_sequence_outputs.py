"""Losses and metrics on sequence outputs (batch, steps, classes): as in Keras, each step is
scored over the last axis and a sample's loss is the mean over its steps. Checked against
NumPy computations on the model's own predictions (the loss arithmetic is independent)."""

import numpy as np
import pytest

import ferrax
from ferrax import layers as L


def _model(steps=5, features=3, classes=4, activation="softmax"):
    model = ferrax.models.Sequential([
        L.Input((steps, features)),
        L.LSTM(6, return_sequences=True),
        L.TimeDistributed(L.Dense(classes, activation=activation)),
    ])
    return model


def _data(n=9, steps=5, features=3, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, features)).astype(np.float32)
    ids = rng.integers(0, classes, size=(n, steps))
    return x, ids


def _sparse_ce(p, ids, weights=None):
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    per_step = -np.log(np.take_along_axis(p, ids[..., None], axis=-1)[..., 0])
    per_sample = per_step.mean(axis=1)
    if weights is not None:
        per_sample = per_sample * weights
    return per_sample.mean()


@pytest.mark.parametrize("id_shape", ["nt", "nt1"])
def test_sparse_crossentropy_per_step(id_shape):
    x, ids = _data()
    model = _model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    p = model.predict(x, verbose=0)
    y = ids if id_shape == "nt" else ids[..., None]
    loss, acc = model.evaluate(x, y, batch_size=4, verbose=0)
    np.testing.assert_allclose(loss, _sparse_ce(p, ids), rtol=1e-5)
    np.testing.assert_allclose(acc, np.mean(p.argmax(-1) == ids), rtol=1e-6)


def test_categorical_crossentropy_one_hot_sequences_and_sample_weight():
    x, ids = _data(seed=1)
    model = _model()
    model.compile("adam", "categorical_crossentropy")
    p = model.predict(x, verbose=0)
    one_hot = np.eye(4, dtype=np.float32)[ids]
    w = np.linspace(0.5, 2.0, len(x)).astype(np.float32)
    loss = model.evaluate(x, one_hot, sample_weight=w, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(loss, _sparse_ce(p, ids, w), rtol=1e-5)


def test_training_step_gradient_matches_per_step_mean():
    """One SGD step on the last Dense's bias: the gradient of mean-over-steps cross-entropy
    through softmax is mean over (samples, steps) of (p - onehot)."""
    x, ids = _data(n=6, seed=2)
    model = _model()
    model.compile(ferrax.optimizers.SGD(learning_rate=1.0), "sparse_categorical_crossentropy")
    p = model.predict(x, verbose=0).astype(np.float64)
    bias_before = model.layers[-1].get_weights()[1].astype(np.float64)
    model.train_on_batch(x, ids)
    bias_after = model.layers[-1].get_weights()[1]
    grad = (p - np.eye(4)[ids]).mean(axis=(0, 1))
    np.testing.assert_allclose(bias_after, bias_before - grad, rtol=1e-4, atol=1e-6)


def test_sequence_labels_out_of_range_name_the_layer():
    x, ids = _data()
    model = _model()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"(?s)label 4.*time_distributed.*\[0, 3\]"):
        model.fit(x, ids + 1, verbose=0)
    with pytest.raises(ValueError, match=r"class ids of shape \(9, 5\)"):
        model.fit(x, ids[:, :3], verbose=0)


def _masked_model():
    return ferrax.models.Sequential([
        L.Input((6,)),
        L.Embedding(9, 4, mask_zero=True),
        L.LSTM(5, return_sequences=True),
        L.TimeDistributed(L.Dense(3, activation="softmax")),
    ])


def _masked_data(seed=4):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 9, size=(7, 6))
    for i, length in enumerate([6, 4, 2, 5, 1, 3, 6]):
        ids[i, length:] = 0  # right padding
    labels = rng.integers(0, 3, size=(7, 6))
    return ids, labels


def test_masked_steps_take_no_part_in_loss_or_accuracy():
    """Keras: a masked step's loss is dropped and the mean runs over kept steps only;
    metrics count kept steps only."""
    ids, labels = _masked_data()
    keep = ids != 0
    model = _masked_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    p = model.predict(ids, verbose=0).astype(np.float64)
    loss, acc = model.evaluate(ids, labels, batch_size=len(ids), verbose=0)
    per_step = -np.log(np.clip(np.take_along_axis(p, labels[..., None], -1)[..., 0],
                               1e-7, 1 - 1e-7))
    np.testing.assert_allclose(loss, per_step[keep].mean(), rtol=1e-5)
    np.testing.assert_allclose(acc, (p.argmax(-1) == labels)[keep].mean(), rtol=1e-6)
    # Changing the labels of padded steps changes nothing.
    other = np.where(keep, labels, (labels + 1) % 3)
    loss2, acc2 = model.evaluate(ids, other, batch_size=len(ids), verbose=0)
    assert (loss2, acc2) == (loss, acc)


def test_masked_steps_give_no_gradient():
    ids, labels = _masked_data(seed=5)
    keep = ids != 0
    model = _masked_model()
    model.compile(ferrax.optimizers.SGD(learning_rate=1.0), "sparse_categorical_crossentropy")
    p = model.predict(ids, verbose=0).astype(np.float64)
    bias = model.layers[-1].get_weights()[1].astype(np.float64)
    model.train_on_batch(ids, labels)
    grad = (p - np.eye(3)[labels])[keep].mean(axis=0)
    np.testing.assert_allclose(model.layers[-1].get_weights()[1], bias - grad,
                               rtol=1e-4, atol=1e-6)
