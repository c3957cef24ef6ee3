"""layer.trainable = False freezes a layer, as in Keras: fit leaves its weights alone, they
count as non-trainable, a frozen BatchNormalization runs in inference mode, and the setting
survives saving and cloning."""

import numpy as np

import ferrax
from ferrax import layers as L


def _data(n=64, seed=0):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, 6)).astype(np.float32), r.integers(0, 3, n)


def _model():
    return ferrax.Sequential([L.Input((6,)), L.Dense(8, activation="relu", name="first"),
                              L.Dense(3, activation="softmax", name="last")])


def test_frozen_layer_keeps_its_weights_while_the_rest_trains():
    x, y = _data()
    model = _model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.layers[0].trainable = False
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, epochs=2, verbose=0)
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert not np.array_equal(after[2], before[2])
    # Unfreezing lets it train again.
    model.layers[0].trainable = True
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(model.get_weights()[0], before[0])


def test_frozen_weights_count_as_non_trainable():
    model = _model()
    model.layers[0].trainable = False
    assert [v.name for v in model.non_trainable_weights] == ["first/kernel", "first/bias"]
    assert [v.name for v in model.trainable_weights] == ["last/kernel", "last/bias"]
    assert model.layers[0].trainable_weights == []
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Trainable params: 27" in text and "Non-trainable params: 56" in text


def test_model_trainable_false_freezes_every_layer():
    x, y = _data(seed=1)
    model = _model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.trainable = False
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert all(not l.trainable for l in model.layers)


def test_frozen_batch_normalization_uses_its_moving_statistics_in_training():
    r = np.random.default_rng(2)
    x = (r.normal(size=(32, 4)) * 3 + 5).astype(np.float32)
    model = ferrax.Sequential([L.Input((4,)), L.BatchNormalization(name="bn"),
                               L.Dense(1, name="head")])
    model.compile(ferrax.optimizers.SGD(learning_rate=0.0), "mse")
    bn = model.layers[0]
    moving_before = [w.copy() for w in bn.get_weights()[2:]]
    bn.trainable = False
    model.fit(x, np.zeros((32, 1), np.float32), batch_size=32, epochs=1, verbose=0)
    # Frozen: the moving mean and variance did not move...
    for a, b in zip(bn.get_weights()[2:], moving_before):
        np.testing.assert_array_equal(a, b)
    # ...and unfrozen they do (training mode uses and updates batch statistics).
    bn.trainable = True
    model.fit(x, np.zeros((32, 1), np.float32), batch_size=32, epochs=1, verbose=0)
    assert not np.allclose(bn.get_weights()[2], moving_before[0])


def test_freezing_survives_save_load_and_clone(tmp_path):
    model = _model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.layers[0].trainable = False
    model.save(tmp_path / "m.ferrax")
    loaded = ferrax.models.load_model(tmp_path / "m.ferrax")
    assert loaded.layers[0].trainable is False
    assert [v.name for v in loaded.non_trainable_weights] == ["first/kernel", "first/bias"]
    x, y = _data(seed=3)
    before = loaded.get_weights()[0].copy()
    loaded.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(loaded.get_weights()[0], before)
    clone = ferrax.models.clone_model(model)
    assert clone.layers[0].trainable is False
