"""class_weight: keys are class indices the output has, values finite and >= 0; it
weighs each sample as the matching sample_weight would (fit's fused loop and a
train_step override alike)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ferrax
from ferrax import layers

R = np.random.default_rng(5)
X = R.normal(size=(64, 6)).astype(np.float32)
Y = R.integers(0, 4, size=64)


class Stepped(ferrax.Model):
    def train_step(self, data):  # type: ignore[no-untyped-def]
        return super().train_step(data)


def _model(units: int = 4, activation: str = "softmax", cls: type = ferrax.Model
           ) -> ferrax.Model:
    ferrax.utils.set_random_seed(1)
    inputs = ferrax.Input((6,))
    model = cls(inputs, layers.Dense(units, activation=activation)(inputs))
    loss = "sparse_categorical_crossentropy" if units > 1 else "binary_crossentropy"
    model.compile(optimizer="sgd", loss=loss)
    return model


@pytest.mark.parametrize("cls", [ferrax.Model, Stepped])
@pytest.mark.parametrize("bad,error,match", [
    ({-1: 5.0}, ValueError, r"key -1, which is no class of the output \(the output's classes "
                            r"are 0\.\.3\)"),
    ({4: 1.0}, ValueError, r"key 4, which is no class"),
    ({0: math.nan}, ValueError, r"for class 0 must be a finite number >= 0, got nan"),
    ({1: math.inf}, ValueError, r"for class 1 must be a finite number >= 0, got inf"),
    ({2: -0.5}, ValueError, r"for class 2 must be a finite number >= 0, got -0\.5"),
    ({"a": 1.0}, TypeError, r"keys must be integer class indices, got 'a'"),
    ({0: "x"}, ValueError, r"for class 0 must be a finite number"),
    ([1.0, 2.0], TypeError, r"must be a dict"),
])
def test_bad_class_weights_are_refused(cls, bad, error, match):
    model = _model(cls=cls)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(error, match=match):
        model.fit(X, Y, epochs=1, verbose=0, class_weight=bad)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("cls", [ferrax.Model, Stepped])
def test_class_weight_weighs_samples_as_sample_weight_does(cls):
    weights = {0: 2.0, 3: 0.0, 1: 0.5}
    by_class = _model(cls=cls)
    by_class.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                 class_weight=weights)
    by_sample = _model(cls=cls)
    per_sample = np.array([weights.get(int(c), 1.0) for c in Y], np.float32)
    by_sample.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                  sample_weight=per_sample)
    for a, b in zip(by_class.get_weights(), by_sample.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_sigmoid_output_has_two_classes():
    model = _model(units=1, activation="sigmoid")
    y = (Y > 1).astype(np.float32)
    model.fit(X, y, epochs=1, verbose=0, class_weight={0: 1.0, 1: 3.0})
    with pytest.raises(ValueError, match=r"key 2, which is no class of the output \(the "
                                         r"output's classes are 0\.\.1\)"):
        model.fit(X, y, epochs=1, verbose=0, class_weight={2: 1.0})
