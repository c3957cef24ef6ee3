"""Custom layers (a Layer subclass with build/add_weight/call), subclassed models
(a Model subclass with call) and layers called on arrays: traced into the engine's
graph and trained by fit. Gradients are checked against float64 NumPy references."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from threads import weights_at_threads

import ferrax
from ferrax import layers, ops


class LinearRelu(layers.Layer):
    """Dense + relu written with ops, as the Keras guide's custom layers are."""

    def __init__(self, units: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                 initializer="random_normal", name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")
        self.built = True

    def call(self, inputs):
        return ops.relu(ops.matmul(inputs, self.w) + self.b)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class Scale(layers.Layer):
    """A weight used twice and a constant: x * s + s ** 2 - 0.5."""

    def build(self, input_shape):
        self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.s + self.s ** 2 - 0.5


def _data(n=16, d=5, seed=0):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, d)).astype(np.float32)


# --- forward and gradients against NumPy ---------------------------------------------
def _one_sgd_step(model, x, y, lr=0.1):
    model.compile(optimizer=ferrax.optimizers.SGD(learning_rate=lr), loss="mse")
    before = [w.copy() for w in model.get_weights()]
    model.train_on_batch(x, y)
    return before, model.get_weights()


def test_a_custom_layer_computes_and_trains_like_its_numpy_reference():
    x = _data()
    inp = ferrax.Input(shape=(5,))
    layer = LinearRelu(3)
    model = ferrax.Model(inp, layer(inp))
    w, b = (v.numpy().astype(np.float64) for v in layer.weights)
    b = b + np.array([0.3, -0.2, 0.1])  # so that some units are off and some on
    layer.b.assign(b)
    z = x.astype(np.float64) @ w + b
    np.testing.assert_allclose(model.predict(x, verbose=0), np.maximum(z, 0), rtol=1e-5,
                               atol=1e-6)
    y = _data(16, 3, seed=1)
    (w0, b0), (w1, b1) = _one_sgd_step(model, x, y)
    # mse over all elements: d/dy_pred = 2 (pred - y) / (n * units)
    pred = np.maximum(z, 0)
    dz = 2 * (pred - y) / pred.size * (z > 0)
    np.testing.assert_allclose(w0 - w1, 0.1 * (x.T.astype(np.float64) @ dz), rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(b0 - b1, 0.1 * dz.sum(0), rtol=1e-4, atol=1e-6)


def test_a_weight_read_twice_gets_the_sum_of_both_gradients():
    x = _data(8, 3)
    inp = ferrax.Input(shape=(3,))
    layer = Scale()
    model = ferrax.Model(inp, layer(inp))
    s = np.array([0.5, -1.0, 2.0])
    layer.s.assign(s)
    np.testing.assert_allclose(model.predict(x, verbose=0), x * s + s ** 2 - 0.5, rtol=1e-6)
    y = np.zeros((8, 3), np.float32)
    (s0,), (s1,) = _one_sgd_step(model, x, y)
    pred = x * s + s ** 2 - 0.5
    d = 2 * (pred - y) / pred.size
    grad = (d * x).sum(0) + (d * 2 * s).sum(0)  # through x * s and through s ** 2
    np.testing.assert_allclose(s0 - s1, 0.1 * grad, rtol=1e-4, atol=1e-6)


def test_the_reference_gradient_matches_finite_differences():
    # (the analytic gradient used above, checked independently of ferrax)
    r = np.random.default_rng(3)
    x, s = r.normal(size=(8, 3)), r.normal(size=3)

    def loss(s):
        return np.mean((x * s + s ** 2 - 0.5) ** 2)
    d = 2 * (x * s + s ** 2 - 0.5) / x.size
    analytic = (d * x).sum(0) + (d * 2 * s).sum(0)
    eps = 1e-6
    numeric = [(loss(s + eps * e) - loss(s - eps * e)) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


# --- where a custom layer can go ----------------------------------------------------
@pytest.mark.parametrize("kind", ["functional", "sequential", "subclassed"])
def test_a_custom_layer_trains_inside_every_kind_of_model(kind):
    ferrax.utils.set_random_seed(1)
    x = _data(64)
    y = (x[:, :2] * 2.0).astype(np.float32)
    if kind == "functional":
        inp = ferrax.Input(shape=(5,))
        model = ferrax.Model(inp, layers.Dense(2)(LinearRelu(8)(inp)))
    elif kind == "sequential":
        model = ferrax.Sequential([LinearRelu(8), layers.Dense(2)])
    else:
        class Net(ferrax.Model):
            def __init__(self):
                super().__init__()
                self.hidden = LinearRelu(8)
                self.out = layers.Dense(2)

            def call(self, x):
                return self.out(self.hidden(x))
        model = Net()
    model.compile(optimizer=ferrax.optimizers.Adam(0.01), loss="mse")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=40, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.3 * first
    assert len(model.weights) == 4
    assert sorted(w.shape for w in model.trainable_weights) == [(2,), (5, 8), (8,), (8, 2)]


def test_sublayers_held_in_attributes_lists_and_dicts_are_tracked():
    class Block(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.stack = [layers.Dense(4), layers.Dense(4)]
            self.heads = {"a": layers.Dense(2)}

        def call(self, x):
            for layer in self.stack:
                x = ops.relu(layer(x))
            return self.heads["a"](x)

    block = Block()
    inp = ferrax.Input(shape=(3,))
    model = ferrax.Model(inp, block(inp))
    assert [l.name for l in model.layers] == [model.layers[0].name, block.name]
    assert len(block.weights) == 6 and len(model.weights) == 6
    assert block.count_params() == (3 * 4 + 4) + (4 * 4 + 4) + (4 * 2 + 2)


def test_a_shared_custom_layer_keeps_one_set_of_weights():
    inp_a, inp_b = ferrax.Input(shape=(5,)), ferrax.Input(shape=(5,))
    enc = LinearRelu(3)
    out = layers.Add()([enc(inp_a), enc(inp_b)])
    model = ferrax.Model([inp_a, inp_b], out)
    assert len(model.weights) == 2
    x1, x2 = _data(6), _data(6, seed=1)
    w, b = (v.numpy() for v in enc.weights)
    want = np.maximum(x1 @ w + b, 0) + np.maximum(x2 @ w + b, 0)
    np.testing.assert_allclose(model.predict([x1, x2], verbose=0), want, rtol=1e-5, atol=1e-6)


def test_freezing_a_custom_layer_freezes_its_weights():
    x, y = _data(32), _data(32, 2, seed=1)
    inp = ferrax.Input(shape=(5,))
    hidden = LinearRelu(4)
    model = ferrax.Model(inp, layers.Dense(2)(hidden(inp)))
    hidden.trainable = False
    model.compile(optimizer="sgd", loss="mse")
    frozen = [v.numpy().copy() for v in hidden.weights]
    model.fit(x, y, epochs=2, verbose=0)
    for before, v in zip(frozen, hidden.weights):
        np.testing.assert_array_equal(before, v.numpy())
    assert not hidden.trainable_weights and len(hidden.non_trainable_weights) == 2


def test_an_add_weight_regularizer_joins_the_loss():
    class Penalised(layers.Layer):
        def build(self, input_shape):
            self.k = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                     regularizer=ferrax.regularizers.L2(0.5))

        def call(self, x):
            return x * self.k

    x = _data(8, 3)
    inp = ferrax.Input(shape=(3,))
    model = ferrax.Model(inp, Penalised()(inp))
    model.compile(optimizer="sgd", loss="mse")
    mse = float(np.mean(x.astype(np.float64) ** 2))
    assert model.evaluate(x, np.zeros_like(x), verbose=0) == pytest.approx(mse + 0.5 * 3,
                                                                            rel=1e-5)


# --- subclassed models ----------------------------------------------------------------
class Mlp(ferrax.Model):
    """Seed 003's Net: 784-128-10 (here 20-16-3), relu through ops.relu."""

    def __init__(self, hidden=16, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.fc1 = layers.Dense(hidden)
        self.fc2 = layers.Dense(classes, activation="softmax")

    def call(self, x, training=None):
        return self.fc2(ops.relu(self.fc1(x)))

    def get_config(self):
        return {**super().get_config(), "hidden": self.fc1.units,
                "classes": self.fc2.units}


def _functional_mlp(hidden=16, classes=3):
    inp = ferrax.Input(shape=(20,))
    h = ops.relu(layers.Dense(hidden)(inp))
    return ferrax.Model(inp, layers.Dense(classes, activation="softmax")(h))


def test_a_subclassed_model_trains_to_the_functional_models_weights_bitwise():
    r = np.random.default_rng(0)
    x = r.normal(size=(200, 20)).astype(np.float32)
    y = r.integers(0, 3, 200)
    results = []
    for make in (Mlp, _functional_mlp):
        ferrax.utils.set_random_seed(7)
        model = make()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(x, y, epochs=2, batch_size=32, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_a_subclassed_model_is_called_on_arrays_and_inside_a_functional_model():
    model = Mlp()
    x = _data(4, 20)
    direct = model(x)
    assert np.asarray(direct).shape == (4, 3)
    np.testing.assert_allclose(np.asarray(direct).sum(1), 1.0, rtol=1e-5)
    inp = ferrax.Input(shape=(20,))
    outer = ferrax.Model(inp, model(inp))
    np.testing.assert_array_equal(outer.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [l.name for l in model.layers] == [model.fc1.name, model.fc2.name]


def test_a_subclassed_model_saves_and_loads_with_custom_objects(tmp_path):
    x = _data(8, 20)
    model = Mlp()
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, np.full((8, 3), 1 / 3, np.float32), epochs=1, verbose=0)
    path = tmp_path / "mlp.ferrax"
    model.save(path)
    with pytest.raises(ValueError, match="unknown model class 'Mlp'"):
        ferrax.models.load_model(path)
    loaded = ferrax.models.load_model(path, custom_objects={"Mlp": Mlp})
    assert type(loaded) is Mlp
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    path_w = tmp_path / "mlp.weights.safetensors"
    model.save_weights(path_w)
    fresh = Mlp()
    fresh.build((None, 20))
    fresh.load_weights(path_w)
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))


# --- saving custom layers -------------------------------------------------------------
@ferrax.saving.register_keras_serializable(package="tests")
class RegisteredScale(Scale):
    pass


def test_a_registered_custom_layer_round_trips_through_a_file(tmp_path):
    x = _data(6, 3)
    inp = ferrax.Input(shape=(3,))
    model = ferrax.Model(inp, layers.Dense(2)(RegisteredScale()(inp)))
    model.layers[1].s.assign([1.5, -2.0, 0.25])
    path = tmp_path / "m.ferrax"
    model.save(path)
    loaded = ferrax.models.load_model(path)
    assert type(loaded.layers[1]) is RegisteredScale
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_an_unregistered_custom_layer_needs_custom_objects(tmp_path):
    x = _data(6, 5)
    model = ferrax.Sequential([ferrax.Input((5,)), LinearRelu(3, name="lin")])
    path = tmp_path / "m.ferrax"
    model.save(path)
    with pytest.raises(ValueError, match=r"unknown class 'LinearRelu': pass custom_objects"):
        ferrax.models.load_model(path)
    loaded = ferrax.models.load_model(path, custom_objects={"LinearRelu": LinearRelu})
    assert loaded.layers[0].units == 3
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_custom_layer_config_round_trips():
    layer = LinearRelu(7, name="seven")
    again = LinearRelu.from_config(layer.get_config())
    assert again.units == 7 and again.name == "seven"


# --- layers called on arrays ----------------------------------------------------------
def test_a_layer_called_on_arrays_returns_its_result():
    x = np.arange(20, dtype=np.float32).reshape(4, 5) / 10
    dense = layers.Dense(3)
    out = dense(x)
    assert isinstance(out, ferrax.Tensor) and out.shape == (4, 3)
    kernel, bias = dense.get_weights()
    np.testing.assert_allclose(np.asarray(out), x @ kernel + bias, rtol=1e-5, atol=1e-6)
    custom = LinearRelu(2)
    w, b = (v.numpy() for v in custom.weights) if custom.built else (None, None)
    got = np.asarray(custom(x))
    w, b = (v.numpy() for v in custom.weights)
    np.testing.assert_allclose(got, np.maximum(x @ w + b, 0), rtol=1e-5, atol=1e-6)


# --- errors ---------------------------------------------------------------------------
def test_python_control_flow_on_a_traced_tensor_names_the_line():
    class Branchy(ferrax.Model):
        def __init__(self):
            super().__init__()
            self.d = layers.Dense(2)

        def call(self, x):
            if ops.sum(x) > 0:  # data-dependent: cannot be traced
                return self.d(x)
            return self.d(-x)

    with pytest.raises(TypeError, match=r"test_custom_layers\.py:\d+: if ops\.sum\(x\) > 0"
                                        r".*GradientTape"):
        Branchy().predict(_data(2, 3), verbose=0)


def test_a_call_that_returns_no_tensor_is_an_error():
    class Wrong(layers.Layer):
        def call(self, x):
            return 3.0

    with pytest.raises(TypeError, match=r"Wrong 'wrong.*': call\(\) must return tensors.*"
                                        r"got float"):
        Wrong()(ferrax.Input(shape=(2,)))


def test_add_weight_checks_its_arguments():
    class BadShape(layers.Layer):
        def build(self, input_shape):
            self.add_weight(shape=(3, -1))

        def call(self, x):
            return x

    class BadInit(layers.Layer):
        def build(self, input_shape):
            self.add_weight(shape=(3,), initializer="no_such_thing")

        def call(self, x):
            return x

    with pytest.raises(ValueError, match=r"Layer 'bad_shape.*': add_weight: 'shape'"):
        BadShape()(ferrax.Input(shape=(2,)))
    with pytest.raises(ValueError, match=r"Layer 'bad_init.*': add_weight: .*no_such_thing"):
        BadInit()(ferrax.Input(shape=(2,)))


def test_an_op_on_incompatible_shapes_names_the_op_and_both_shapes():
    inp = ferrax.Input(shape=(16,))
    with pytest.raises(ValueError, match=r"add.*\(None, 16\).*\(None, 8\)"):
        ops.add(inp, layers.Dense(8)(inp))


def test_the_training_flag_passes_on_to_layers_but_python_cannot_branch_on_it():
    class PassesItOn(ferrax.Model):
        def __init__(self):
            super().__init__()
            self.drop = layers.Dropout(0.5)
            self.out = layers.Dense(1)

        def call(self, x, training=None):
            return self.out(self.drop(x, training=training))

    x = np.ones((64, 4), np.float32)
    model = PassesItOn()
    first = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), first)  # inference: no dropout

    class BranchesOnIt(PassesItOn):
        def call(self, x, training=None):
            if training:
                x = self.drop(x)
            return self.out(x)

    with pytest.raises(TypeError, match=r"branches on its 'training' argument.*if training:"):
        BranchesOnIt().predict(x, verbose=0)


class Penalty(layers.Layer):
    """x * s, adding 0.5 * sum(s ** 2) and 0.1 * mean(out ** 2) to the loss."""

    def build(self, input_shape):
        self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        out = x * self.s
        self.add_loss(0.5 * ops.sum(self.s ** 2))
        self.add_loss(0.1 * ops.mean(ops.square(out)))
        return out


@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_add_loss_joins_the_loss_and_its_gradient(kind):
    x = _data(8, 3)
    if kind == "functional":
        inp = ferrax.Input(shape=(3,))
        layer = Penalty()
        model = ferrax.Model(inp, layer(inp))
    else:
        class Net(ferrax.Model):
            def __init__(self):
                super().__init__()
                self.p = Penalty()

            def call(self, x):
                return self.p(x)
        model = Net()
        model.build((None, 3))
        layer = model.p
    s = np.array([0.5, -1.0, 2.0])
    layer.s.assign(s)
    y = np.zeros_like(x)
    model.compile(optimizer=ferrax.optimizers.SGD(0.1), loss="mse")
    x64 = x.astype(np.float64)
    out = x64 * s
    mse = np.mean(out ** 2)
    want = mse + 0.5 * np.sum(s ** 2) + 0.1 * np.mean(out ** 2)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(want, rel=1e-5)
    model.train_on_batch(x, y)
    grad = (2 * out / out.size * x64).sum(0) * (1 + 0.1) + s
    np.testing.assert_allclose(s - layer.s.numpy(), 0.1 * grad, rtol=1e-4, atol=1e-6)


def test_add_loss_outside_a_traced_call_says_where_it_works():
    with pytest.raises(NotImplementedError, match="inside a traced call"):
        layers.Dense(2).add_loss(1.0)


def _model_with_raw_ops() -> ferrax.Model:
    inp = ferrax.Input((4,))
    h = layers.Dense(3)(inp)
    # an op with a constant array, a comparison (bool result) cast back, a reduction
    gate = ops.cast(ops.greater(h, np.array([0.0, 0.5, -0.5], np.float32)), "float32")
    h = ops.relu(h) * 2.0 + gate
    h = h - ops.mean(h, axis=-1, keepdims=True)
    return ferrax.Model(inp, layers.Dense(2)(h))


def _raw_ops_reference(model: ferrax.Model, x: np.ndarray) -> np.ndarray:
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    h = x.astype(np.float64) @ w1 + b1
    h = 2 * np.maximum(h, 0) + (h > np.array([0.0, 0.5, -0.5])).astype(np.float64)
    h = h - h.mean(-1, keepdims=True)
    return h @ w2 + b2


def test_a_functional_model_with_raw_ops_saves_and_loads(tmp_path):
    model = _model_with_raw_ops()
    x = _data(5, 4)
    np.testing.assert_allclose(model.predict(x, verbose=0), _raw_ops_reference(model, x),
                               rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "m.ferrax")
    loaded = ferrax.saving.load_model(tmp_path / "m.ferrax")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    entries = [e for e in loaded.get_config()["layers"] if e["class_name"] == "Op"]
    assert {e["config"]["op"] for e in entries} >= {"greater", "relu", "mean", "subtract"}


def test_a_functional_model_with_raw_ops_clones_with_fresh_weights():
    model = _model_with_raw_ops()
    clone = ferrax.models.clone_model(model)
    x = _data(5, 4)
    np.testing.assert_allclose(clone.predict(x, verbose=0), _raw_ops_reference(clone, x),
                               rtol=1e-5, atol=1e-5)
    assert not np.array_equal(clone.get_weights()[0], model.get_weights()[0])


def test_a_model_config_with_an_unknown_op_is_refused_with_its_name():
    config = _model_with_raw_ops().get_config()
    for e in config["layers"]:
        if e["class_name"] == "Op" and e["config"]["op"] == "relu":
            e["config"]["op"] = "os.system"
    with pytest.raises(ValueError, match="op entry 'relu.*': unknown op 'os.system'"):
        ferrax.Model.from_config(config)


# --- determinism across thread counts ------------------------------------------------
THREADS_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import ferrax
    from ferrax import layers, ops

    class Block(layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 512))
            self.b = self.add_weight(shape=(512,), initializer="zeros")
            self.g = self.add_weight(shape=(512,), initializer="ones")

        def call(self, x):
            h = ops.gelu(ops.matmul(x, self.w) + self.b)
            mean, var = ops.moments(h, axes=[-1], keepdims=True)
            h = (h - mean) / ops.sqrt(var + 1e-3) * self.g
            self.add_loss(1e-3 * ops.mean(ops.square(h)))
            return h

    class Net(ferrax.Model):
        def __init__(self):
            super().__init__()
            self.block = Block()
            self.drop = layers.Dropout(0.2)
            self.out = layers.Dense(10, activation="softmax")

        def call(self, x, training=None):
            return self.out(self.drop(self.block(x), training=training))

    r = np.random.default_rng(0)
    x = r.random((512, 200)).astype(np.float32)
    y = x[:, :10].argmax(axis=1)
    ferrax.utils.set_random_seed(5)
    model = Net()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=128, epochs=2, verbose=0)
    np.savez(sys.argv[1], *model.get_weights())
    """
)


def test_a_traced_models_weights_do_not_depend_on_the_thread_count(tmp_path):
    runs = weights_at_threads(THREADS_SCRIPT, tmp_path)
    assert len(runs[0]) == 5
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


def test_clone_model_rebuilds_custom_layers_and_subclassed_models():
    x = _data(4, 5)
    seq = ferrax.Sequential([ferrax.Input((5,)), LinearRelu(3), layers.Dense(2)])
    clone = ferrax.models.clone_model(seq)
    assert [type(l) for l in clone.layers] == [LinearRelu, layers.Dense]
    assert clone.layers[0].units == 3 and clone.layers[0].name != seq.layers[0].name
    clone.set_weights(seq.get_weights())
    np.testing.assert_array_equal(clone.predict(x, verbose=0), seq.predict(x, verbose=0))
    net = Mlp(hidden=4)
    net.build((None, 20))
    twin = ferrax.models.clone_model(net)
    assert type(twin) is Mlp and [w.shape for w in twin.weights] == [w.shape for w in
                                                                     net.weights]


def test_rounding_ops_and_symbolic_casts_match_numpy():
    x = np.array([[-2.5, -1.5, -0.4, 0.5, 1.5, 2.7]], np.float32)
    for fn, ref in ((ops.floor, np.floor), (ops.ceil, np.ceil), (ops.round, np.round),
                    (ops.trunc, np.trunc)):
        np.testing.assert_array_equal(np.asarray(fn(x)), ref(x))
        inp = ferrax.Input(shape=(6,))
        np.testing.assert_array_equal(ferrax.Model(inp, fn(inp)).predict(x, verbose=0), ref(x))
    np.testing.assert_allclose(np.asarray(ops.round(x * 1.234, 1)), np.round(x * 1.234, 1),
                               rtol=1e-6)
    inp = ferrax.Input(shape=(6,))
    as_int = ops.cast(inp, "int32")
    assert as_int.dtype == "int32"
    model = ferrax.Model(inp, ops.add(as_int, ops.cast(inp, "bool")))
    np.testing.assert_array_equal(model.predict(x, verbose=0),
                                  x.astype(np.int32) + (x != 0))
    # no gradient flows through rounding
    from ferrax.ops._testing import vjp
    (g,) = vjp(lambda t: ops.floor(t) * t, x, dout=np.ones_like(x))
    np.testing.assert_array_equal(g, np.floor(x))


# --- losses written as Python functions ------------------------------------------------
def my_mse(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred), axis=-1)


def _regressor():
    return ferrax.Sequential([ferrax.Input((5,)), layers.Dense(8, activation="relu"),
                              layers.Dense(2)])


def test_a_loss_function_trains_as_the_builtin_loss_it_spells():
    x = _data(64)
    y = x[:, :2] * 2
    runs = []
    for loss in (my_mse, "mse"):
        ferrax.utils.set_random_seed(3)
        model = _regressor()
        model.compile(optimizer="adam", loss=loss)
        history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
        runs.append((history.history["loss"], model.get_weights(),
                     model.evaluate(x, y, verbose=0), model.predict(x, verbose=0)))
    (loss_a, w_a, ev_a, p_a), (loss_b, w_b, ev_b, p_b) = runs
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
    assert ev_a == pytest.approx(ev_b, rel=1e-6)
    for a, b in zip(w_a, w_b):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p_a, p_b, rtol=1e-5, atol=1e-6)


def test_a_loss_functions_gradient_matches_its_numpy_reference():
    def weighted_abs(y_true, y_pred):  # per element, no axis reduced: the mean of all
        return ops.abs(y_true - y_pred) * ops.where(y_true > 0, 2.0, 1.0)

    x = _data(8, 3)
    inp = ferrax.Input(shape=(3,))
    layer = Scale()
    model = ferrax.Model(inp, layer(inp))
    s = np.array([0.5, -1.0, 2.0])
    layer.s.assign(s)
    y = _data(8, 3, seed=4)
    model.compile(optimizer=ferrax.optimizers.SGD(0.1), loss=weighted_abs)
    pred = x * s + s ** 2 - 0.5
    weight = np.where(y > 0, 2.0, 1.0)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(
        np.mean(np.abs(y - pred) * weight), rel=1e-5)
    model.train_on_batch(x, y)
    d = np.sign(pred - y) * weight / pred.size
    grad = (d * x).sum(0) + (d * 2 * s).sum(0)
    np.testing.assert_allclose(s - layer.s.numpy(), 0.1 * grad, rtol=1e-4, atol=1e-6)


def test_a_loss_function_is_saved_by_name_and_found_in_custom_objects(tmp_path):
    x, y = _data(16), _data(16, 2, seed=1)
    model = _regressor()
    model.compile(optimizer="adam", loss=my_mse)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.ferrax"
    model.save(path)
    with pytest.raises(ValueError, match="'my_mse' is not loaded from files"):
        ferrax.models.load_model(path)
    loaded = ferrax.models.load_model(path, custom_objects={"my_mse": my_mse})
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0),
                                                             rel=1e-6)
    # recompiled with a built-in loss, the model drops the traced one and trains on
    loaded.compile(optimizer="adam", loss="mse")
    loaded.fit(x, y, epochs=1, verbose=0)
    assert not loaded._engine_graph().added_losses


def _fit_weights(loss, **fit_kwargs):
    ferrax.utils.set_random_seed(3)
    model = _regressor()
    model.compile(optimizer="sgd", loss=loss)
    x, y = _data(32), _data(32, 2, seed=1)
    history = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, **fit_kwargs)
    return model.get_weights(), history.history["loss"]


def test_a_loss_function_weighs_samples_as_the_builtin_loss_does():
    sw = np.random.default_rng(4).uniform(0, 2, size=32).astype(np.float32)
    sw[::5] = 0
    mine, builtin = _fit_weights(my_mse, sample_weight=sw), _fit_weights("mse", sample_weight=sw)
    for a, b in zip(mine[0], builtin[0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mine[1], builtin[1], rtol=1e-5)
    unweighted = _fit_weights("mse")
    assert not np.allclose(unweighted[0][0], builtin[0][0])


def my_sparse_ce(y_true, y_pred):
    return ops.sparse_categorical_crossentropy(y_true, y_pred)


def test_a_loss_function_reads_class_ids_and_honours_class_weight():
    x = _data(48, 5)
    ids = (np.arange(48) % 3).astype(np.int64)
    runs = []
    for loss in (my_sparse_ce, "sparse_categorical_crossentropy"):
        ferrax.utils.set_random_seed(5)
        model = ferrax.Sequential([ferrax.Input((5,)), layers.Dense(3, activation="softmax")])
        model.compile(optimizer="sgd", loss=loss)
        model.fit(x, ids, epochs=2, batch_size=16, shuffle=False, verbose=0,
                  class_weight={0: 1.0, 1: 3.0, 2: 0.5})
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_y_true_keeps_its_shape_with_a_trailing_axis_matched_as_keras_does():
    seen = []

    def shaped(y_true, y_pred):
        seen.append((y_true.shape, y_pred.shape))
        if len(y_true.shape) == len(y_pred.shape):
            return ops.mean(ops.square(y_true - y_pred), axis=-1)
        return ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "float32"), y_true)

    model = ferrax.Sequential([ferrax.Input((5,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss=shaped)
    model.fit(_data(8), np.arange(8, dtype=np.float32), verbose=0)  # (8,) for (8, 1)
    assert seen[-1] == ((None, 1), (None, 1))
    classes = ferrax.Sequential([ferrax.Input((5,)), layers.Dense(4, activation="softmax")])
    classes.compile(optimizer="sgd", loss=my_sparse_ce, metrics=[shaped])
    classes.fit(_data(8), np.arange(8) % 4, verbose=0)
    assert seen[-1] == ((None,), (None, 4))


def test_a_loss_function_of_the_whole_batch_cannot_weigh_samples():
    def batch_mse(y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred))

    model = _regressor()
    model.compile(optimizer="adam", loss=batch_mse)
    model.fit(_data(4), _data(4, 2), verbose=0)  # unweighted: fine
    with pytest.raises(ValueError, match="'batch_mse' returns one number for the whole "
                                         "batch, so sample_weight"):
        model.fit(_data(4), _data(4, 2), sample_weight=np.ones(4), verbose=0)


def _two_outputs():
    inp = ferrax.Input((5,))
    h = layers.Dense(6, activation="tanh")(inp)
    return ferrax.Model(inp, {"a": layers.Dense(2, name="a")(h),
                              "b": layers.Dense(1, name="b")(h)})


def test_loss_and_metric_functions_on_a_model_with_several_outputs():
    x = _data(40)
    y = {"a": _data(40, 2, seed=1), "b": _data(40, 1, seed=2)}
    sw = {"a": np.linspace(0, 2, 40).astype(np.float32)}
    runs = []
    for loss, metrics in (({"a": my_mse, "b": "mse"}, {"a": [my_mae], "b": ["mae"]}),
                          ({"a": "mse", "b": "mse"}, {"a": ["mae"], "b": ["mae"]})):
        ferrax.utils.set_random_seed(6)
        model = _two_outputs()
        model.compile(optimizer="sgd", loss=loss, loss_weights={"a": 0.5, "b": 2.0},
                      metrics=metrics)
        history = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0,
                            sample_weight=sw, validation_split=0.25)
        runs.append((model.get_weights(), history.history))
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    mine, builtin = runs[0][1], runs[1][1]
    assert set(mine) == {"loss", "a_loss", "b_loss", "a_my_mae", "b_mae", "val_loss",
                         "val_a_loss", "val_b_loss", "val_a_my_mae", "val_b_mae"}
    for key in ("loss", "a_loss", "b_loss", "b_mae", "val_loss", "val_a_loss"):
        np.testing.assert_allclose(mine[key], builtin[key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(mine["a_my_mae"], builtin["a_mae"], rtol=1e-5)
    np.testing.assert_allclose(mine["val_a_my_mae"], builtin["val_a_mae"], rtol=1e-5)


def my_mae(y_true, y_pred):
    return ops.mean(ops.abs(y_true - y_pred), axis=-1)


def test_a_metric_function_reports_what_the_builtin_metric_does(tmp_path):
    x = _data(50)
    y = _data(50, 2, seed=2)
    model = _regressor()
    model.compile(optimizer="adam", loss=my_mse, metrics=["mae", my_mae])
    history = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0)
    for key in ("loss", "mae", "my_mae", "val_loss", "val_mae", "val_my_mae"):
        assert key in history.history, key
    np.testing.assert_allclose(history.history["my_mae"], history.history["mae"], rtol=1e-5)
    np.testing.assert_allclose(history.history["val_my_mae"], history.history["val_mae"],
                               rtol=1e-5)
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    assert result["my_mae"] == pytest.approx(np.mean(np.abs(y - pred)), rel=1e-5)
    assert result["loss"] == pytest.approx(np.mean((y - pred) ** 2), rel=1e-5)
    path = tmp_path / "m.ferrax"
    model.save(path)
    with pytest.raises(ValueError, match="'my_mae' is not loaded from files"):
        ferrax.models.load_model(path, custom_objects={"my_mse": my_mse})
    loaded = ferrax.models.load_model(path, custom_objects={"my_mse": my_mse,
                                                            "my_mae": my_mae})
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(result,
                                                                              rel=1e-6)


def test_a_loss_function_called_on_arrays_weighs_samples_as_fit_does():
    loss = ferrax.losses.get(my_mse)
    y_true, y_pred = _data(6, 2), _data(6, 2, seed=9)
    w = np.array([1.0, 0.0, 2.0, 0.5, 0.0, 1.0])
    per_sample = ((y_true.astype(np.float64) - y_pred) ** 2).mean(axis=1)
    assert loss(y_true, y_pred, sample_weight=w) == pytest.approx((per_sample * w).sum() / 6,
                                                                  rel=1e-6)
    assert loss(y_true, y_pred) == pytest.approx(per_sample.mean(), rel=1e-6)


def test_a_loss_function_called_on_arrays_refuses_weights_it_cannot_apply():
    loss = ferrax.losses.get(lambda t, p: ops.mean(ops.square(t - p)))
    with pytest.raises(ValueError, match="one number for the whole batch, so sample_weight cannot"):
        loss(np.ones((3, 2)), np.zeros((3, 2)), sample_weight=np.ones(3))
    per_sample = ferrax.losses.get(my_mse)
    with pytest.raises(ValueError, match="sample_weight holds 2 weights for 3 samples"):
        per_sample(np.ones((3, 2)), np.zeros((3, 2)), sample_weight=np.ones(2))


def test_a_model_config_op_entry_without_its_fields_is_refused():
    config = _model_with_raw_ops().get_config()
    for e in config["layers"]:
        if e["class_name"] == "Op":
            del e["config"]["attrs"]
            break
    with pytest.raises(ValueError, match="an op entry lacks its name, op or attrs"):
        ferrax.Model.from_config(config)


def test_a_weight_made_outside_any_layer_cannot_go_in_a_config():
    from ferrax.ops._nodes import LayerVariable

    inp = ferrax.Input((3,))
    loose = LayerVariable((3,), {"name": "ones"}, None, True, "loose", "nowhere")
    model = ferrax.Model(inp, layers.Dense(2)(ops.add(inp, loose._holder._symbolic())))
    with pytest.raises(NotImplementedError, match="reads a weight made outside any layer"):
        model.get_config()


class _Star(layers.Layer):
    def call(self, x, *rest):
        return x


def test_a_custom_layers_star_arguments_are_refused():
    with pytest.raises(NotImplementedError, match=r"call\(\*rest\) is not supported"):
        _Star()(ferrax.Input((3,)), 1.0)
