"""The functional API: symbolic tensors, Model(inputs, outputs), graphs with merges and
fan-out, their training against float64 references, files, configs and errors."""

import textwrap

import numpy as np
import pytest
from reference import assert_close, numerical_grad
from threads import weights_at_threads

import ferrax
from ferrax import layers


def _residual(seed=0):
    """x(4) -> a = Dense(5, tanh) -> b = Dense(5, tanh)(a) -> add([a, b]) ->
    concatenate([sum, x]) -> Dense(3): `a` and `x` both feed two layers."""
    ferrax.utils.set_random_seed(seed)
    x = ferrax.Input(shape=(4,), name="x")
    a = layers.Dense(5, activation="tanh", name="a")(x)
    b = layers.Dense(5, activation="tanh", name="b")(a)
    s = layers.add([a, b], name="sum")
    c = layers.concatenate([s, x], name="cat")
    out = layers.Dense(3, name="out")(c)
    return ferrax.Model(x, out, name="residual")


def _residual_loss_and_grads(params, x, y):
    """Mean squared error of _residual's graph and its gradients, in float64."""
    wa, ba, wb, bb, wo, bo = (np.asarray(p, np.float64) for p in params)
    a = np.tanh(x @ wa + ba)
    b = np.tanh(a @ wb + bb)
    c = np.concatenate([a + b, x], axis=1)
    o = c @ wo + bo
    loss = np.mean((o - y) ** 2)
    do = 2.0 * (o - y) / o.size
    dc = do @ wo.T
    ds = dc[:, :5]
    dzb = ds * (1.0 - b**2)
    da = ds + dzb @ wb.T  # a feeds both the sum and layer b: the gradients add
    dza = da * (1.0 - a**2)
    grads = [x.T @ dza, dza.sum(0), a.T @ dzb, dzb.sum(0), c.T @ do, do.sum(0)]
    return loss, grads


def _checked_reference(loss_and_grads, params, x, y):
    """The reference's gradients, each checked against central finite differences."""
    _, grads = loss_and_grads(params, x, y)
    for k in range(len(params)):
        def loss_at(p, k=k):
            trial = list(params)
            trial[k] = p
            return loss_and_grads(trial, x, y)[0]

        assert_close(numerical_grad(loss_at, params[k]), grads[k], rtol=1e-6, atol=1e-8,
                     what=f"reference gradient {k}")
    return grads


def _data(n=6, seed=1):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, 4)), r.normal(size=(n, 3))


def test_input_is_a_symbolic_tensor_and_layers_follow_their_shape_rule():
    x = ferrax.Input(shape=(28, 28, 1), name="image")
    assert isinstance(x, ferrax.KerasTensor)
    assert (x.shape, x.dtype, x.name) == ((None, 28, 28, 1), "float32", "image")
    y = layers.Conv2D(8, 3)(x)
    assert y.shape == (None, 26, 26, 8)
    assert layers.Flatten()(layers.MaxPooling2D()(y)).shape == (None, 13 * 13 * 8)
    ids = ferrax.Input(shape=(10,), dtype="int32")
    assert ids.dtype == "int32"
    assert layers.Embedding(100, 4)(ids).shape == (None, 10, 4)
    assert ferrax.Input(batch_shape=(16, 3)).shape == (16, 3)


def test_residual_reference_is_checked_by_finite_differences():
    model = _residual()
    x, y = _data()
    params = [w.astype(np.float64) for w in model.get_weights()]
    _checked_reference(_residual_loss_and_grads, params, x, y)


def test_a_training_step_through_fan_out_and_merges_matches_the_reference():
    model = _residual()
    model.compile(optimizer=ferrax.optimizers.SGD(learning_rate=0.1), loss="mse")
    x, y = _data()
    before = [w.astype(np.float64) for w in model.get_weights()]
    loss, grads = _residual_loss_and_grads(before, x.astype(np.float32), y)
    got = model.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    assert_close(got, loss, rtol=1e-5, atol=1e-6, what="loss")
    for k, (w, g, after) in enumerate(zip(before, grads, model.get_weights())):
        assert_close(after, w - 0.1 * g, rtol=1e-5, atol=1e-6, what=f"weight {k}")


def test_model_structure_accessors():
    model = _residual()
    names = [l.name for l in model.layers]
    assert names == ["x", "a", "b", "sum", "cat", "out"]
    assert model.get_layer("b") is model.layers[2]
    assert model.get_layer(index=-1).name == "out"
    assert model.inputs == [model.input] and model.outputs == [model.output]
    assert model.input.shape == (None, 4) and model.output.shape == (None, 3)
    assert model.get_layer("sum").input == [model.get_layer("a").output,
                                            model.get_layer("b").output]
    assert model.get_layer("cat").output.shape == (None, 9)
    assert model.count_params() == 4 * 5 + 5 + 5 * 5 + 5 + 9 * 3 + 3
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text and "a[0][0]" in text and "x[0][0]" in text
    with pytest.raises(ValueError, match="No such layer: nope"):
        model.get_layer("nope")


def test_feature_extraction_uses_the_trained_weights():
    model = _residual()
    model.compile(optimizer="adam", loss="mse")
    x, y = _data(64)
    model.fit(x, y, epochs=2, verbose=0)
    features = ferrax.Model(model.input, model.get_layer("a").output)
    wa, ba = model.get_layer("a").get_weights()
    assert_close(features.predict(x, verbose=0), np.tanh(x @ wa + ba), rtol=1e-5, atol=1e-6,
                 what="features")


def test_models_sharing_layers_share_their_weights():
    # Keras's autoencoder example: the encoder is built first, the autoencoder trained.
    x = ferrax.Input(shape=(6,))
    code = layers.Dense(2, activation="relu", name="code")(x)
    decoded = layers.Dense(6, name="decoded")(code)
    encoder = ferrax.Model(x, code)
    autoencoder = ferrax.Model(x, decoded)
    autoencoder.compile(optimizer="adam", loss="mse")
    data = np.random.default_rng(0).random((64, 6)).astype(np.float32)
    before = encoder.predict(data, verbose=0)
    autoencoder.fit(data, data, epochs=3, verbose=0)
    kernel, bias = autoencoder.get_layer("code").get_weights()
    after = encoder.predict(data, verbose=0)
    assert not np.array_equal(before, after)
    assert_close(after, np.maximum(data @ kernel + bias, 0), rtol=1e-5, atol=1e-6,
                 what="encoder after the autoencoder trained")
    np.testing.assert_array_equal(encoder.get_layer("code").get_weights()[0], kernel)


def test_a_chain_in_functional_spelling_trains_bitwise_like_sequential():
    def train(functional):
        ferrax.utils.set_random_seed(11)
        stack = [layers.Dense(16, activation="relu"), layers.Dropout(0.2),
                 layers.Dense(3, activation="softmax")]
        if functional:
            x = ferrax.Input(shape=(5,))
            h = x
            for layer in stack:
                h = layer(h)
            model = ferrax.Model(x, h)
        else:
            model = ferrax.Sequential([ferrax.Input(shape=(5,)), *stack])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        r = np.random.default_rng(2)
        xs = r.random((100, 5)).astype(np.float32)
        history = model.fit(xs, (xs.sum(1) * 2).astype(int) % 3, epochs=2, batch_size=16,
                            verbose=0)
        return model.get_weights(), history.history

    (w_seq, h_seq), (w_fun, h_fun) = train(False), train(True)
    assert h_seq == h_fun
    assert all(np.array_equal(a, b) for a, b in zip(w_seq, w_fun))


def test_inputs_and_outputs_as_lists_and_dicts():
    x = ferrax.Input(shape=(4,), name="features")
    out = layers.Dense(2, name="score")(x)
    as_list = ferrax.Model([x], [out])
    data = np.ones((3, 4), np.float32)
    result = as_list.predict([data], verbose=0)
    assert isinstance(result, list) and result[0].shape == (3, 2)
    as_dict = ferrax.Model({"features": x}, {"score": out})
    np.testing.assert_array_equal(as_dict.predict({"features": data}, verbose=0)["score"],
                                  result[0])
    as_dict.compile(optimizer="sgd", loss="mse")
    as_dict.fit({"features": data}, {"score": np.zeros((3, 2))}, epochs=1, verbose=0)
    # the two models share the layer: the list model sees the dict model's training
    np.testing.assert_array_equal(as_list.predict([data], verbose=0)[0],
                                  as_dict.predict({"features": data}, verbose=0)["score"])


def test_save_load_config_and_clone_round_trips(tmp_path):
    model = _residual(seed=4)
    model.compile(optimizer="adam", loss="mse")
    x, y = _data(32)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "residual.ferrax"
    model.save(path)
    loaded = ferrax.models.load_model(path)
    assert type(loaded) is type(model)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # training resumes exactly
    model.fit(x, y, epochs=1, verbose=0)
    loaded.fit(x, y, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), loaded.get_weights()))

    config = model.get_config()
    assert config["input_layers"] == ["x", 0, 0] and config["output_layers"] == ["out", 0, 0]
    sum_entry = next(e for e in config["layers"] if e["name"] == "sum")
    history = [a["config"]["keras_history"] for a in sum_entry["inbound_nodes"][0]["args"][0]]
    assert history == [["a", 0, 0], ["b", 0, 0]]
    rebuilt = ferrax.Model.from_config(config) if hasattr(ferrax.Model, "from_config") else None
    rebuilt = type(model).from_config(config)
    assert rebuilt.get_config() == config

    clone = ferrax.models.clone_model(model)
    assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
    assert not {l.name for l in clone.layers} & {l.name for l in model.layers}
    assert clone.output.shape == model.output.shape
    assert not np.array_equal(clone.get_weights()[0], model.get_weights()[0])

    weights = tmp_path / "residual.weights.safetensors"
    model.save_weights(weights)
    rebuilt.load_weights(weights)
    np.testing.assert_array_equal(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0))


def test_freezing_a_layer_of_a_graph():
    model = _residual()
    model.get_layer("b").trainable = False
    model.compile(optimizer="sgd", loss="mse")
    frozen = model.get_layer("b").get_weights()
    x, y = _data(16)
    model.fit(x, y, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(frozen, model.get_layer("b").get_weights()))
    assert not np.array_equal(model.get_layer("a").get_weights()[0],
                              _residual().get_layer("a").get_weights()[0])


# --- shared layers and nested models ----------------------------------------------------------
def _siamese(seed=0):
    """e = Dense(3, tanh) called on x and on Dense(4)(x); Dense(1) of their difference."""
    ferrax.utils.set_random_seed(seed)
    x = ferrax.Input(shape=(4,), name="x")
    encoder = layers.Dense(3, activation="tanh", name="e")
    h1 = encoder(x)
    h2 = encoder(layers.Dense(4, name="p")(x))
    out = layers.Dense(1, name="o")(layers.subtract([h1, h2]))
    return ferrax.Model(x, out)


def _siamese_loss_and_grads(params, x, y):
    we, be, wp, bp, wo, bo = (np.asarray(p, np.float64) for p in params)
    pz = x @ wp + bp
    h1, h2 = np.tanh(x @ we + be), np.tanh(pz @ we + be)
    d = h1 - h2
    o = d @ wo + bo
    loss = np.mean((o - y) ** 2)
    do = 2.0 * (o - y) / o.size
    dd = do @ wo.T
    dz1, dz2 = dd * (1.0 - h1**2), -dd * (1.0 - h2**2)
    dpz = dz2 @ we.T
    # the shared kernel's gradient is the sum over its two calls
    grads = [x.T @ dz1 + pz.T @ dz2, dz1.sum(0) + dz2.sum(0), x.T @ dpz, dpz.sum(0),
             d.T @ do, do.sum(0)]
    return loss, grads


def test_a_shared_layer_has_one_set_of_weights_and_summed_gradients():
    model = _siamese()
    assert [tuple(w.shape) for w in model.get_weights()] == [(4, 3), (3,), (4, 4), (4,),
                                                             (3, 1), (1,)]
    assert model.count_params() == 15 + 20 + 4
    x, y = _data(8)
    y = y[:, :1]
    params = [w.astype(np.float64) for w in model.get_weights()]
    grads = _checked_reference(_siamese_loss_and_grads, params, x, y)
    model.compile(optimizer=ferrax.optimizers.SGD(learning_rate=0.5), loss="mse")
    model.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    for k, (w, g, after) in enumerate(zip(params, grads, model.get_weights())):
        assert_close(after, w - 0.5 * g, rtol=1e-5, atol=1e-6, what=f"weight {k}")
    # both calls use the updated weights
    we, be, wp, bp, wo, bo = model.get_weights()
    want = (np.tanh(x @ we + be) - np.tanh((x @ wp + bp) @ we + be)) @ wo + bo
    assert_close(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6, what="predict")


def test_shared_layer_config_round_trip_keeps_the_sharing():
    model = _siamese(seed=3)
    config = model.get_config()
    entry = next(e for e in config["layers"] if e["name"] == "e")
    assert len(entry["inbound_nodes"]) == 2
    rebuilt = ferrax.Model.from_config(config)
    assert rebuilt.get_config() == config
    assert len(rebuilt.get_weights()) == 6
    dense = layers.Dense(2, name="picky")
    dense(ferrax.Input(shape=(3,)))
    with pytest.raises(ValueError, match=r"picky.*\(None, 3\).*\(None, 5\)"):
        dense(ferrax.Input(shape=(5,)))


def test_a_nested_sequential_trains_inside_a_functional_model(tmp_path):
    ferrax.utils.set_random_seed(8)
    base = ferrax.Sequential([layers.Dense(6, activation="relu"), layers.Dense(4)], name="base")
    x = ferrax.Input(shape=(4,))
    out = layers.Dense(2, activation="softmax", name="head")(layers.add([base(x), x]))
    model = ferrax.Model(x, out)
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Sequential", "Add",
                                                        "Dense"]
    assert model.count_params() == base.count_params() + 10
    lines = []
    model.summary(print_fn=lines.append)
    assert any("base (Sequential)" in line for line in lines)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    data, _ = _data(64)
    labels = (data[:, 0] > 0).astype(int)
    before = base.get_weights()
    model.fit(data, labels, epochs=2, verbose=0)
    after = base.get_weights()
    assert not np.array_equal(before[0], after[0]), "the nested model's weights trained"
    w = after
    inner = np.maximum(data @ w[0] + w[1], 0) @ w[2] + w[3]
    assert_close(base.predict(data, verbose=0), inner, rtol=1e-5, atol=1e-5, what="base")
    # freezing the nested model freezes its layers in the outer one
    base.trainable = False
    model.fit(data, labels, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(after, base.get_weights()))
    path = tmp_path / "nested.ferrax"
    model.save(path)
    loaded = ferrax.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(data, verbose=0), model.predict(data, verbose=0))
    assert type(loaded.get_layer("base")) is ferrax.Sequential


def test_a_model_as_the_first_layer_of_a_sequential():
    x = ferrax.Input(shape=(5,))
    feature = ferrax.Model(x, layers.Dense(3, activation="tanh", name="feat")(x))
    stack = ferrax.Sequential([feature, layers.Dense(2, name="top")])
    data = np.random.default_rng(0).random((7, 5)).astype(np.float32)
    kf, bf = feature.get_layer("feat").get_weights()
    kt, bt = stack.get_layer("top").get_weights()
    assert_close(stack.predict(data, verbose=0), np.tanh(data @ kf + bf) @ kt + bt,
                 rtol=1e-5, atol=1e-6, what="stacked")
    clone = ferrax.Sequential.from_config(stack.get_config())
    assert clone.predict(data, verbose=0).shape == (7, 2)


# --- several inputs ---------------------------------------------------------------------------
def _two_inputs():
    ferrax.utils.set_random_seed(21)
    image = ferrax.Input(shape=(2, 3), name="image")
    ids = ferrax.Input(shape=(2,), name="ids")
    a = layers.Dense(4, activation="relu", name="a")(layers.Flatten()(image))
    e = layers.Flatten()(layers.Embedding(5, 3, name="emb")(ids))
    out = layers.Dense(2, name="o")(layers.concatenate([a, e]))
    return ferrax.Model(inputs=[image, ids], outputs=out)


def test_a_two_input_model_trains_like_its_reference():
    model = _two_inputs()
    r = np.random.default_rng(4)
    image = r.normal(size=(10, 2, 3)).astype(np.float32)
    ids = r.integers(0, 5, size=(10, 2))
    y = r.normal(size=(10, 2)).astype(np.float32)
    wa, ba, table, wo, bo = (w.astype(np.float64) for w in model.get_weights())
    x = image.reshape(10, 6).astype(np.float64)
    za = x @ wa + ba
    a = np.maximum(za, 0)
    c = np.concatenate([a, table[ids].reshape(10, 6)], axis=1)
    o = c @ wo + bo
    do = 2 * (o - y) / o.size
    dc = do @ wo.T
    dza = dc[:, :4] * (za > 0)
    dtable = np.zeros_like(table)
    np.add.at(dtable, ids.reshape(-1), dc[:, 4:].reshape(-1, 3))
    grads = [x.T @ dza, dza.sum(0), dtable, c.T @ do, do.sum(0)]
    assert_close(model.predict([image, ids], verbose=0), o, rtol=1e-5, atol=1e-6, what="o")
    model.compile(optimizer=ferrax.optimizers.SGD(learning_rate=0.1), loss="mse")
    model.train_on_batch({"ids": ids, "image": image}, y)
    for k, (w, g, after) in enumerate(zip((wa, ba, table, wo, bo), grads, model.get_weights())):
        assert_close(after, w - 0.1 * g, rtol=1e-5, atol=1e-6, what=f"weight {k}")


def test_two_input_data_checks_and_round_trip(tmp_path):
    model = _two_inputs()
    model.compile(optimizer="adam", loss="mse")
    image = np.ones((6, 2, 3), np.float32)
    ids = np.zeros((6, 2), np.int64)
    history = model.fit([image, ids], np.zeros((6, 2)), epochs=2, validation_split=0.5,
                        verbose=0)
    assert set(history.history) == {"loss", "val_loss"}
    with pytest.raises(ValueError, match=r"expects 2 input array\(s\).*got a list of 1"):
        model.predict([image], verbose=0)
    with pytest.raises(ValueError, match="same number of samples"):
        model.predict([image, ids[:3]], verbose=0)
    with pytest.raises(ValueError, match=r"x\['ids'\].*\(None, 2\)"):
        model.predict([image, image], verbose=0)
    with pytest.raises(ValueError, match=r"'x'.*\['nope'\].*\['image', 'ids'\]"):
        model.predict({"image": image, "ids": ids, "nope": ids}, verbose=0)
    with pytest.raises(ValueError, match="emb"):
        model.predict([image, ids + 7], verbose=0)
    path = tmp_path / "two.ferrax"
    model.save(path)
    loaded = ferrax.models.load_model(path)
    assert loaded.input_names == ["image", "ids"]
    np.testing.assert_array_equal(loaded.predict([image, ids], verbose=0),
                                  model.predict([image, ids], verbose=0))


# --- several outputs --------------------------------------------------------------------------
def _two_outputs(as_dict=False):
    ferrax.utils.set_random_seed(31)
    x = ferrax.Input(shape=(4,), name="x")
    h = layers.Dense(5, activation="tanh", name="h")(x)
    cls = layers.Dense(3, activation="softmax", name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    return ferrax.Model(x, {"cls": cls, "reg": reg} if as_dict else [cls, reg])


def _two_outputs_loss_and_grads(params, x, ids, target):
    """Sparse cross-entropy on cls plus 0.5 x mean squared error on reg, in float64."""
    wh, bh, wc, bc, wr, br = (np.asarray(p, np.float64) for p in params)
    h = np.tanh(x @ wh + bh)
    logits = h @ wc + bc
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    r = h @ wr + br
    n = len(x)
    ce = -np.mean(np.log(p[np.arange(n), ids]))
    mse = np.mean((r - target) ** 2)
    dlogits = (p - np.eye(3)[ids]) / n
    dr = 0.5 * 2 * (r - target) / n
    dz = (dlogits @ wc.T + dr @ wr.T) * (1 - h**2)
    grads = [x.T @ dz, dz.sum(0), h.T @ dlogits, dlogits.sum(0), h.T @ dr, dr.sum(0)]
    return ce + 0.5 * mse, grads, (ce, mse)


def test_two_outputs_train_on_their_weighted_losses():
    model = _two_outputs()
    r = np.random.default_rng(6)
    x = r.normal(size=(8, 4))
    ids = r.integers(0, 3, size=8)
    target = r.normal(size=(8, 1))
    params = [w.astype(np.float64) for w in model.get_weights()]

    def loss_and_grads(p, x_, _):
        total, grads, _ = _two_outputs_loss_and_grads(p, x_, ids, target)
        return total, grads

    grads = _checked_reference(loss_and_grads, params, x, None)
    total, _, (ce, mse) = _two_outputs_loss_and_grads(params, x, ids, target)
    model.compile(optimizer=ferrax.optimizers.SGD(learning_rate=0.2),
                  loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
                  metrics=[["accuracy"], []])
    assert model.metrics_names == ["loss", "cls_loss", "reg_loss", "cls_accuracy"]
    logs = model.test_on_batch(x.astype(np.float32), [ids, target], return_dict=True)
    assert_close([logs["loss"], logs["cls_loss"], logs["reg_loss"]], [total, ce, mse],
                 rtol=1e-5, atol=1e-6, what="losses")
    model.train_on_batch(x.astype(np.float32), {"cls": ids, "reg": target})
    for k, (w, g, after) in enumerate(zip(params, grads, model.get_weights())):
        assert_close(after, w - 0.2 * g, rtol=1e-5, atol=1e-6, what=f"weight {k}")


def test_two_outputs_fit_predict_and_files(tmp_path):
    model = _two_outputs(as_dict=True)
    model.compile(optimizer="adam", loss={"cls": "sparse_categorical_crossentropy",
                                          "reg": "mse"}, metrics={"cls": "accuracy"})
    r = np.random.default_rng(7)
    x = r.normal(size=(40, 4)).astype(np.float32)
    y = {"cls": r.integers(0, 3, size=40), "reg": r.normal(size=(40, 1))}
    history = model.fit(x, y, epochs=2, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "cls_loss", "reg_loss", "cls_accuracy",
                                    "val_loss", "val_cls_loss", "val_reg_loss",
                                    "val_cls_accuracy"}
    out = model.predict(x, verbose=0)
    assert set(out) == {"cls", "reg"} and out["cls"].shape == (40, 3)
    np.testing.assert_allclose(out["cls"].sum(1), 1.0, rtol=1e-5)
    path = tmp_path / "two_outputs.ferrax"
    model.save(path)
    loaded = ferrax.models.load_model(path)
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=1, verbose=0)
    loaded.fit(x, y, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), loaded.get_weights()))
    with pytest.raises(ValueError, match=r"'y'.*\['oops'\].*\['cls', 'reg'\]"):
        model.fit(x, {"cls": y["cls"], "oops": y["reg"]}, verbose=0)
    with pytest.raises(ValueError, match="class_weight"):
        model.fit(x, y, class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="no loss for output 'reg'"):
        model.compile(optimizer="sgd", loss={"cls": "sparse_categorical_crossentropy"})


# --- axes of unknown length -------------------------------------------------------------------
def test_shapes_with_an_axis_of_unknown_length():
    seq = ferrax.Input(shape=(None, 4))
    conv = layers.Conv1D(8, 3, activation="relu")(seq)
    assert conv.shape == (None, None, 8)
    assert layers.MaxPooling1D(2)(conv).shape == (None, None, 8)
    assert layers.GlobalAveragePooling1D()(conv).shape == (None, 8)
    assert layers.LSTM(5, return_sequences=True)(seq).shape == (None, None, 5)
    assert layers.TimeDistributed(layers.Dense(3))(seq).shape == (None, None, 3)
    with pytest.raises(ValueError, match=r"dense_after.*\(None, None\).*known length"):
        layers.Dense(3, name="dense_after")(layers.Flatten()(ferrax.Input(shape=(None, 8))))


def test_each_call_may_use_another_length(tmp_path):
    ferrax.utils.set_random_seed(2)
    tokens = ferrax.Input(shape=(None,), dtype="int32", name="tokens")
    x = layers.Embedding(30, 6, mask_zero=True)(tokens)
    x = layers.Bidirectional(layers.GRU(5))(x)
    model = ferrax.Model(tokens, layers.Dense(2, activation="softmax")(x))
    lines = []
    model.summary(print_fn=lines.append)
    assert any("(None, None, 6)" in line for line in lines)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    r = np.random.default_rng(3)
    long = r.integers(1, 30, size=(40, 9))
    short = long[:, :5].copy()
    labels = (long[:, 0] > 15).astype(int)
    model.fit(long, labels, epochs=2, verbose=0, validation_data=(short, labels))
    model.fit(short, labels, epochs=1, verbose=0)
    assert model.input_shape == (None, None)
    # padding a sequence with zeros (masked) leaves its prediction as it was
    padded = np.concatenate([short, np.zeros((40, 4), np.int64)], axis=1)
    np.testing.assert_allclose(model.predict(padded, verbose=0), model.predict(short, verbose=0),
                               rtol=1e-5, atol=1e-6)
    # a model file keeps the unknown length; training resumes exactly
    path = tmp_path / "tokens.ferrax"
    model.save(path)
    loaded = ferrax.models.load_model(path)
    assert loaded.input_shape == (None, None)
    model.fit(long, labels, epochs=1, verbose=0)
    loaded.fit(long, labels, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), loaded.get_weights()))


def test_a_sequential_model_with_an_axis_of_unknown_length():
    model = ferrax.Sequential([ferrax.Input(shape=(None,), dtype="int32"),
                               layers.Embedding(40, 8), layers.Conv1D(8, 3, activation="relu"),
                               layers.GlobalMaxPooling1D(), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    r = np.random.default_rng(5)
    for length in (10, 20):
        x = r.integers(1, 40, size=(32, length))
        model.fit(x, (x[:, 0] > 20).astype(int), verbose=0)
    assert model.predict(r.integers(1, 40, size=(3, 7)), verbose=0).shape == (3, 1)
    lines = []
    model.summary(print_fn=lines.append)
    assert any("(Conv1D)" in line and "(None, None, 8)" in line for line in lines)
    with pytest.raises(ValueError, match=r"\(None, None\)"):
        model.predict(np.ones((2, 3, 3)), verbose=0)


@pytest.mark.parametrize("join", ["add", "time_axis", "features"])
def test_masks_flow_through_merges_into_an_rnn(join):
    ferrax.utils.set_random_seed(14)
    tokens = ferrax.Input(shape=(None,), dtype="int32")
    e = layers.Embedding(30, 6, mask_zero=True)(tokens)
    d = layers.Dense(6, activation="tanh")(e)  # keeps the mask
    merged = {"add": lambda: layers.add([e, d]),
              "time_axis": lambda: layers.concatenate([e, d], axis=1),
              "features": lambda: layers.concatenate([e, d])}[join]()
    model = ferrax.Model(tokens, layers.Dense(1)(layers.LSTM(4)(merged)))
    r = np.random.default_rng(1)
    ids = r.integers(1, 30, size=(5, 6))
    padded = np.concatenate([ids, np.zeros((5, 3), np.int64)], axis=1)
    # padded steps are skipped by the LSTM: the same outputs as without them
    np.testing.assert_allclose(model.predict(padded, verbose=0), model.predict(ids, verbose=0),
                               rtol=1e-5, atol=1e-6)
    model.compile(optimizer="adam", loss="mse")
    model.fit(padded, np.zeros((5, 1)), epochs=1, verbose=0)


def test_the_functional_guides_ticket_model():
    # Keras's functional API guide: three inputs (two of unknown length), two outputs
    title = ferrax.Input(shape=(None,), name="title")
    body = ferrax.Input(shape=(None,), name="body")
    tags = ferrax.Input(shape=(12,), name="tags")
    t = layers.LSTM(16)(layers.Embedding(100, 8)(title))
    b = layers.LSTM(8)(layers.Embedding(100, 8)(body))
    x = layers.concatenate([t, b, tags])
    model = ferrax.Model([title, body, tags], {"priority": layers.Dense(1, name="priority")(x),
                                               "department": layers.Dense(4, name="department")(x)})
    model.compile(optimizer=ferrax.optimizers.RMSprop(1e-3),
                  loss={"priority": ferrax.losses.BinaryCrossentropy(from_logits=True),
                        "department": ferrax.losses.CategoricalCrossentropy(from_logits=True)},
                  loss_weights={"priority": 1.0, "department": 0.2})
    r = np.random.default_rng(8)
    data = {"title": r.integers(100, size=(24, 10)), "body": r.integers(100, size=(24, 30)),
            "tags": r.integers(2, size=(24, 12)).astype("float32")}
    targets = {"priority": r.random(size=(24, 1)), "department": r.integers(2, size=(24, 4))}
    history = model.fit(data, targets, epochs=2, batch_size=8, verbose=0)
    assert set(history.history) == {"loss", "priority_loss", "department_loss"}
    short = {"title": data["title"][:3, :4], "body": data["body"][:3, :7], "tags": data["tags"][:3]}
    out = model.predict(short, verbose=0)
    assert out["priority"].shape == (3, 1) and out["department"].shape == (3, 4)
    # the same lengths again give the same predictions (the engine follows the lengths)
    model.predict(data, verbose=0)
    np.testing.assert_array_equal(model.predict(short, verbose=0)["department"],
                                  out["department"])
    # swapping which input is long changes the packed layout, not the answer for each
    swapped = {"title": data["title"][:3, :7], "body": data["body"][:3, :4], "tags": short["tags"]}
    model.predict(swapped, verbose=0)
    np.testing.assert_array_equal(model.predict(short, verbose=0)["priority"], out["priority"])


def test_switching_lengths_keeps_training_as_one_run():
    def build(length):
        ferrax.utils.set_random_seed(12)
        seq = ferrax.Input(shape=(length, 3))
        out = layers.Dense(1)(layers.GlobalAveragePooling1D()(layers.Conv1D(4, 2)(seq)))
        model = ferrax.Model(seq, out)
        model.compile(optimizer="adam", loss="mse")
        return model

    def fit(model, lengths):
        r = np.random.default_rng(0)
        for length in lengths:
            x = r.normal(size=(16, length, 3)).astype(np.float32)
            model.fit(x, x.mean(axis=(1, 2))[:, None], epochs=1, batch_size=4, verbose=0,
                      shuffle=False)
        return model.get_weights()

    # the same weights as a model built for that length: nothing is lost in the switch
    assert all(np.array_equal(a, b) for a, b in zip(fit(build(None), [6, 6]),
                                                    fit(build(6), [6, 6])))
    switching = build(None)
    fit(switching, [6, 4, 6])
    assert switching.optimizer.iterations == 12  # Adam's step count carried over


# --- errors ---------------------------------------------------------------------------------
def test_graph_disconnected_names_the_tensor_and_layer():
    a = ferrax.Input(shape=(3,), name="first")
    b = ferrax.Input(shape=(3,), name="second")
    out = layers.Dense(2)(layers.add([layers.Dense(3)(a), b]))
    with pytest.raises(ValueError, match="graph disconnected.*'second'"):
        ferrax.Model(a, out)


def test_duplicate_layer_names_are_refused():
    x = ferrax.Input(shape=(3,))
    h = layers.Dense(3, name="twin")(x)
    out = layers.Dense(3, name="twin")(h)
    with pytest.raises(ValueError, match='"twin" is used 2 times'):
        ferrax.Model(x, out)


def test_mismatched_merge_shapes_name_the_layer_and_shapes():
    x = ferrax.Input(shape=(4,))
    with pytest.raises(ValueError, match=r"skip.*\(None, 16\), \(None, 8\)"):
        layers.Add(name="skip")([layers.Dense(16)(x), layers.Dense(8)(x)])
    with pytest.raises(ValueError, match="exactly 2"):
        layers.subtract([x, x, x])
    with pytest.raises(TypeError, match="list of tensors"):
        layers.Add()(x)
    with pytest.raises(TypeError, match="one input tensor"):
        layers.Dense(2)([x, x])


def test_wrong_data_structures_are_named():
    x = ferrax.Input(shape=(4,), name="features")
    model = ferrax.Model(x, layers.Dense(2, name="score")(x))
    model.compile(optimizer="sgd", loss="mse")
    data = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"expects 1 input array\(s\).*got a list of 2"):
        model.predict([data, data], verbose=0)
    with pytest.raises(ValueError, match=r"'wrong'.*\['features'\]"):
        model.fit({"wrong": data}, np.zeros((3, 2)), verbose=0)
    with pytest.raises(ValueError, match=r"'y'.*'nope'.*\['score'\]"):
        model.fit(data, {"nope": np.zeros((3, 2))}, verbose=0)


def test_not_yet_supported_uses_say_so():
    with pytest.raises(NotImplementedError, match="one axis of unknown length"):
        x = ferrax.Input(shape=(None, None, 3))
        ferrax.Model(x, layers.Conv2D(2, 3)(x))


def test_a_model_subclass_without_call_says_what_it_needs():
    class Custom(ferrax.Model):
        pass

    custom = Custom()
    custom.compile(optimizer="sgd", loss="mse")
    with pytest.raises(NotImplementedError, match="define call"):
        custom.fit(np.ones((2, 4)), np.ones((2, 1)), verbose=0)


# --- determinism across thread counts --------------------------------------------------------
SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import ferrax
    from ferrax import layers

    r = np.random.default_rng(0)
    x = r.random((600, 300)).astype(np.float32)
    y = (x[:, :10].argmax(axis=1) + r.integers(0, 2, size=600)) % 10
    ferrax.utils.set_random_seed(77)
    inp = ferrax.Input(shape=(300,))
    h = layers.Dense(256, activation="relu")(inp)
    shared = layers.Dense(256, activation="relu")
    branch = shared(shared(layers.Dropout(0.3)(h)))
    merged = layers.concatenate([layers.add([h, branch]), inp])
    out = layers.Dense(10, activation="softmax")(merged)
    model = ferrax.Model(inp, out)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=128, epochs=2, verbose=0)
    np.savez(sys.argv[1], *model.get_weights())
    """
)


def test_graph_weights_do_not_depend_on_the_thread_count(tmp_path):
    runs = weights_at_threads(SCRIPT, tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


def test_relu_and_softmax_layers_and_keras_short_names():
    x = ferrax.Input(shape=(4,))
    model = ferrax.Model(x, layers.Softmax()(layers.ReLU()(x)))
    data = np.array([[-1.0, 0.5, 2.0, -3.0]], np.float32)
    relu = np.maximum(data, 0)
    want = np.exp(relu) / np.exp(relu).sum()
    assert_close(model.predict(data, verbose=0), want, rtol=1e-6, atol=1e-7, what="softmax")
    assert layers.MaxPool2D is layers.MaxPooling2D
    assert layers.GlobalAvgPool1D is layers.GlobalAveragePooling1D
    with pytest.raises(ValueError, match=r"ReLU '.*': 'max_value'"):
        layers.ReLU(max_value=-1.0)


def _seq2seq(units=3):
    ferrax.utils.set_random_seed(17)
    enc_in = ferrax.Input(shape=(None, 2), name="enc_in")
    dec_in = ferrax.Input(shape=(None, 2), name="dec_in")
    _, h, c = layers.LSTM(units, return_state=True, name="encoder")(enc_in)
    seq, _, _ = layers.LSTM(units, return_sequences=True, return_state=True,
                            name="decoder")(dec_in, initial_state=[h, c])
    return ferrax.Model([enc_in, dec_in], layers.Dense(1, name="out")(seq))


def test_initial_state_carries_the_gradient_into_the_encoder():
    model = _seq2seq()
    r = np.random.default_rng(9)
    x = [r.normal(size=(6, 4, 2)).astype(np.float32), r.normal(size=(6, 3, 2)).astype(np.float32)]
    y = r.normal(size=(6, 3, 1)).astype(np.float32)
    model.compile(optimizer=ferrax.optimizers.SGD(learning_rate=0.1), loss="mse")
    before = model.get_weights()

    def loss_at(weights):
        model.set_weights(weights)
        return model.evaluate(x, y, verbose=0)

    eps = 1e-2
    numeric = []
    for k in range(4):  # entries of the encoder's kernel: their only path is the state
        plus = [w.copy() for w in before]
        minus = [w.copy() for w in before]
        plus[0].flat[k] += eps
        minus[0].flat[k] -= eps
        numeric.append((loss_at(plus) - loss_at(minus)) / (2 * eps))
    model.set_weights(before)
    model.train_on_batch(x, y)
    analytic = (before[0] - model.get_weights()[0]).reshape(-1)[:4] / 0.1
    assert np.abs(np.asarray(numeric)).max() > 1e-4, "the encoder must matter"
    assert_close(analytic, numeric, rtol=2e-2, atol=2e-4, what="encoder kernel gradient")


def test_keras_seq2seq_training_and_inference_models(tmp_path):
    model = _seq2seq(units=8)
    model.compile(optimizer="rmsprop", loss="mse")
    r = np.random.default_rng(10)
    x = [r.normal(size=(12, 5, 2)), r.normal(size=(12, 4, 2))]
    model.fit(x, r.normal(size=(12, 4, 1)), epochs=1, verbose=0)
    # the inference models of Keras's lstm_seq2seq example share the trained layers
    encoder_model = ferrax.Model(model.get_layer("enc_in").output,
                                 model.get_layer("encoder").output[1:])
    state_in = [ferrax.Input(shape=(8,)), ferrax.Input(shape=(8,))]
    dec_in = model.get_layer("dec_in").output
    seq, h, c = model.get_layer("decoder")(dec_in, initial_state=state_in)
    decoder_model = ferrax.Model([dec_in, *state_in], [model.get_layer("out")(seq), h, c])
    states = encoder_model.predict(x[0], verbose=0)
    step, h1, c1 = decoder_model.predict([x[1][:, :1], *states], verbose=0)
    assert step.shape == (12, 1, 1) and h1.shape == (12, 8)
    # one decoder step from the encoder's states is the training model's first step
    full = model.predict(x, verbose=0)
    assert_close(step[:, 0], full[:, 0], rtol=1e-5, atol=1e-6, what="first step")
    config = model.get_config()
    entry = next(e for e in config["layers"] if e["name"] == "decoder")
    assert len(entry["inbound_nodes"][0]["kwargs"]["initial_state"]) == 2
    path = tmp_path / "s2s.ferrax"
    model.save(path)
    loaded = ferrax.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), full)


def test_sample_weights_per_output():
    model = _two_outputs()
    model.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", "mse"],
                  loss_weights=[1.0, 0.5])
    r = np.random.default_rng(11)
    x = r.normal(size=(8, 4)).astype(np.float32)
    ids, target = r.integers(0, 3, size=8), r.normal(size=(8, 1))
    params = [w.astype(np.float64) for w in model.get_weights()]
    _, _, (ce, mse) = _two_outputs_loss_and_grads(params, x, ids, target)
    # weight 0 on the second half of the samples for reg only
    w_reg = np.r_[np.ones(4), np.zeros(4)]
    logs = model.test_on_batch(x, [ids, target], sample_weight={"reg": w_reg},
                               return_dict=True)
    _, _, (_, mse_half) = _two_outputs_loss_and_grads(params, x[:4], ids[:4], target[:4])
    assert_close([logs["cls_loss"], logs["reg_loss"]], [ce, mse_half / 2], rtol=1e-5,
                 atol=1e-6, what="losses")
    # one array weighs every output
    logs = model.test_on_batch(x, [ids, target], sample_weight=np.full(8, 2.0),
                               return_dict=True)
    assert_close([logs["cls_loss"], logs["reg_loss"]], [2 * ce, 2 * mse], rtol=1e-5,
                 atol=1e-6, what="losses")
    model.fit(x, [ids, target], sample_weight=[None, w_reg], epochs=1, validation_split=0.25,
              verbose=0)
    with pytest.raises(ValueError, match=r"'sample_weight' has key\(s\) \['nope'\]"):
        model.fit(x, [ids, target], sample_weight={"nope": w_reg}, verbose=0)


def test_callbacks_with_a_two_output_model(tmp_path):
    model = _two_outputs()
    model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy", "mse"],
                  metrics=[["accuracy"], []])
    r = np.random.default_rng(12)
    x = r.normal(size=(40, 4)).astype(np.float32)
    y = [r.integers(0, 3, size=40), r.normal(size=(40, 1))]
    best = tmp_path / "best.ferrax"
    log = tmp_path / "log.csv"
    callbacks = [ferrax.callbacks.ModelCheckpoint(str(best), monitor="val_cls_loss",
                                                  save_best_only=True),
                 ferrax.callbacks.CSVLogger(str(log)),
                 ferrax.callbacks.EarlyStopping(monitor="val_reg_loss", patience=1),
                 ferrax.callbacks.BackupAndRestore(str(tmp_path / "backup"))]
    history = model.fit(x, y, epochs=3, validation_split=0.25, callbacks=callbacks, verbose=0)
    header = log.read_text().splitlines()[0].split(",")
    assert {"cls_loss", "reg_loss", "cls_accuracy", "val_cls_loss"} <= set(header)
    assert len(history.history["loss"]) >= 1
    restored = ferrax.models.load_model(best)
    assert restored.output_names == ["cls", "reg"]


def test_a_nested_model_with_two_inputs_and_two_outputs():
    a, b = ferrax.Input(shape=(4,)), ferrax.Input(shape=(4,))
    head = ferrax.Model([a, b], [layers.Dense(1, name="score")(layers.concatenate([a, b])),
                                 layers.subtract([a, b])], name="head")
    x = ferrax.Input(shape=(6,))
    e1, e2 = layers.Dense(4, name="e1")(x), layers.Dense(4, name="e2")(x)
    score, diff = head([e1, e2])
    model = ferrax.Model(x, [score, layers.Dense(2, name="d2")(diff)])
    data = np.random.default_rng(13).random((5, 6)).astype(np.float32)
    (k1, b1), (k2, b2) = model.get_layer("e1").get_weights(), model.get_layer("e2").get_weights()
    ks, bs = head.get_layer("score").get_weights()
    kd, bd = model.get_layer("d2").get_weights()
    h1, h2 = data @ k1 + b1, data @ k2 + b2
    got_score, got_d2 = model.predict(data, verbose=0)
    assert_close(got_score, np.concatenate([h1, h2], 1) @ ks + bs, rtol=1e-5, atol=1e-6,
                 what="score")
    assert_close(got_d2, (h1 - h2) @ kd + bd, rtol=1e-5, atol=1e-6, what="d2")
    config = model.get_config()
    assert ferrax.Model.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="has 2 input"):
        head(e1)


# --- found in review: edges of the graph ----------------------------------------------------
def test_two_outputs_in_one_buffer_add_their_gradients():
    x = ferrax.Input(shape=(3,))
    d = layers.Dense(4, name="d")(x)
    model = ferrax.Model(x, [d, layers.Reshape((2, 2))(d)])  # the Reshape shares d's buffer
    model.compile(optimizer=ferrax.optimizers.SGD(0.1), loss=["mse", "mae"])
    r = np.random.default_rng(14)
    data = r.random((5, 3)).astype(np.float32)
    y1, y2 = r.random((5, 4)).astype(np.float32), r.random((5, 2, 2)).astype(np.float32)
    kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    out = data @ kernel + bias
    g = 2 * (out - y1) / out.size + np.sign(out - y2.reshape(5, 4)) / out.size
    model.train_on_batch(data, [y1, y2])
    assert_close(model.get_weights()[0], kernel - 0.1 * data.T @ g, rtol=1e-5, atol=1e-6,
                 what="kernel")


def test_outputs_that_are_an_input_or_a_pooled_convolution():
    x = ferrax.Input(shape=(3,))
    model = ferrax.Model(x, [x, layers.Dense(2)(x)])
    model.compile(optimizer="sgd", loss="mse")
    a, b = model.predict(np.ones((2, 3), np.float32), verbose=0)
    assert a.shape == (2, 3) and b.shape == (2, 2)
    image = ferrax.Input(shape=(8, 8, 1))
    conv = layers.Conv2D(4, 3, padding="same")(image)
    out = layers.Dense(1)(layers.Flatten()(layers.MaxPooling2D(2)(conv)))
    model = ferrax.Model(image, [conv, out])  # the conv is an output: not fused into the pool
    model.compile(optimizer="sgd", loss="mse")
    data = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)
    model.fit(data, [np.zeros((4, 8, 8, 4)), np.zeros((4, 1))], verbose=0)
    assert [p.shape for p in model.predict(data, verbose=0)] == [(4, 8, 8, 4), (4, 1)]


def test_a_nested_model_with_an_unused_output():
    a = ferrax.Input(shape=(3,))
    inner = ferrax.Model(a, [layers.Dense(4, name="h1")(a), layers.Dense(2, name="h2")(a)])
    x = ferrax.Input(shape=(3,))
    first, _ = inner(x)
    model = ferrax.Model(x, first)
    model.compile(optimizer=ferrax.optimizers.SGD(0.1), loss="mse")
    h2 = inner.get_layer("h2").get_weights()
    model.fit(np.ones((4, 3)), np.zeros((4, 4)), verbose=0)
    assert model.predict(np.ones((2, 3)), verbose=0).shape == (2, 4)
    # the unused branch sends back no gradient
    assert all(np.array_equal(u, v) for u, v in zip(h2, inner.get_layer("h2").get_weights()))


def test_wrapping_a_trained_model_keeps_its_weights():
    base = ferrax.Sequential([ferrax.Input(shape=(4,)), layers.Dense(3, name="base_dense")])
    base.compile(optimizer="adam", loss="mse")
    base.fit(np.ones((8, 4)), np.ones((8, 3)), epochs=2, verbose=0)
    trained = base.get_weights()
    stacked = ferrax.Sequential([base, layers.Dense(1)])
    stacked.add(layers.Dense(1))
    assert all(np.array_equal(a, b) for a, b in zip(trained, base.get_weights()))
    kernel, bias = trained
    k1, b1 = stacked.layers[1].get_weights()
    k2, b2 = stacked.layers[2].get_weights()
    data = np.ones((2, 4), np.float32)
    assert_close(stacked.predict(data, verbose=0), ((data @ kernel + bias) @ k1 + b1) @ k2 + b2,
                 rtol=1e-5, atol=1e-6, what="stacked")


def test_a_refused_call_of_a_built_layer_leaves_its_model_working():
    dense = layers.Dense(2, name="d_built")
    model = ferrax.Sequential([ferrax.Input(shape=(4,)), dense])
    before = model.predict(np.ones((1, 4)), verbose=0)
    x = ferrax.Input(shape=(5,))
    with pytest.raises(ValueError, match=r"d_built.*\(None, 5\)"):
        ferrax.Model(x, dense(x))
    np.testing.assert_array_equal(model.predict(np.ones((1, 4)), verbose=0), before)


def test_output_names_follow_dict_keys_and_stay_unique():
    x = ferrax.Input(shape=(3,))
    h = layers.Dense(4)(x)
    model = ferrax.Model(x, {"score": layers.Dense(1)(h), "cls": layers.Dense(2)(h)})
    assert model.output_names == ["score", "cls"]
    model.compile(optimizer="sgd", loss={"score": "mse", "cls": "mse"})
    model.fit(np.ones((4, 3)), {"score": np.zeros((4, 1)), "cls": np.zeros((4, 2))}, verbose=0)
    seq = ferrax.Input(shape=(5, 2))
    _, h_state, c_state = layers.LSTM(3, return_state=True, name="enc")(seq)
    assert ferrax.Model(seq, [h_state, c_state]).output_names == ["enc", "enc_1"]


def test_the_mask_survives_return_state():
    x = ferrax.Input(shape=(None,), dtype="int32")
    seq, _, _ = layers.LSTM(4, return_sequences=True, return_state=True)(
        layers.Embedding(10, 4, mask_zero=True)(x))
    model = ferrax.Model(x, layers.Dense(3, activation="softmax")(seq))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    ids, labels = np.array([[1, 2, 3, 0, 0, 0]]), np.array([[1, 2, 0, 0, 0, 0]])
    assert model.evaluate(ids, labels, verbose=0) == pytest.approx(
        model.evaluate(ids[:, :3], labels[:, :3], verbose=0), rel=1e-6)
    with pytest.raises(ValueError, match="at least 1 input"):
        layers.Add()([])


def test_nested_readers_check_their_ids_and_a_stack_may_hold_a_model_with_states():
    a, b = ferrax.Input(shape=(3,)), ferrax.Input(shape=(3,))
    inner = ferrax.Model([a, b], layers.concatenate(
        [layers.Flatten()(layers.Embedding(5, 2, name="ids5")(a)), b]))
    x1, x2 = ferrax.Input(shape=(3,)), ferrax.Input(shape=(3,))
    model = ferrax.Model([x1, x2], inner([x1, x2]))
    with pytest.raises(ValueError, match="ids5"):
        model.predict([np.array([[0, 1, 99]]), np.zeros((1, 3))], verbose=0)
    seq = ferrax.Input(shape=(4, 2))
    _, h = layers.GRU(3, return_state=True)(seq)
    stack = ferrax.Sequential([ferrax.Model(seq, h), layers.Dense(1)])
    assert stack.predict(np.ones((2, 4, 2)), verbose=0).shape == (2, 1)


def test_symbolic_calls_use_zero_weights_for_the_shape_rule():
    from ferrax.layers.base import _shape_only

    spec = layers.Bidirectional(layers.LSTM(8, kernel_initializer="orthogonal"))._core_spec()
    cheap = _shape_only(spec)
    found = []

    def walk(v):
        if isinstance(v, dict):
            for k, w in v.items():
                if k.endswith("_initializer"):
                    found.append(w)
                walk(w)

    walk(cheap)
    assert found and all(w == "zeros" for w in found)
    assert _shape_only({"units": 3, "bias_initializer": None}) == {"units": 3,
                                                                   "bias_initializer": None}


def test_a_frozen_layer_stays_frozen_across_lengths():
    seq = ferrax.Input(shape=(None, 3))
    conv = layers.Conv1D(4, 2, name="frozen_conv")
    model = ferrax.Model(seq, layers.Dense(1)(layers.GlobalAveragePooling1D()(conv(seq))))
    model.compile(optimizer="adam", loss="mse")
    conv.trainable = False
    kernel = conv.get_weights()[0].copy()
    r = np.random.default_rng(15)
    for length in (6, 4, 9):
        x = r.random((8, length, 3)).astype(np.float32)
        model.fit(x, x.mean(axis=(1, 2))[:, None], verbose=0)
    np.testing.assert_array_equal(conv.get_weights()[0], kernel)


def test_bad_inputs_and_calls_name_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="no axis of known length"):
        ferrax.Input(shape=(None, None))
    with pytest.raises(TypeError, match="'dtype' must be a NumPy dtype"):
        ferrax.Input(shape=(3,), dtype=object())
    with pytest.raises(ValueError, match="unsupported dtype 'complex64'"):
        ferrax.Input(shape=(3,), dtype="complex64")
    with pytest.raises(NotImplementedError, match="sparse"):
        ferrax.Input(shape=(3,), sparse=True)
    with pytest.raises(NotImplementedError, match="'tensor' and 'optional'"):
        ferrax.Input(shape=(3,), optional=True)
    with pytest.raises(ValueError, match="'shape' or 'batch_shape', not both"):
        ferrax.Input(shape=(3,), batch_shape=(None, 3))
    x = ferrax.Input(shape=(3,), name="in3")
    h = layers.Dense(2)(x)
    with pytest.raises(TypeError, match="must be symbolic tensors"):
        ferrax.Model(x, np.ones(3))
    with pytest.raises(ValueError, match="inputs must come from ferrax.Input.*dense"):
        ferrax.Model(h, layers.Dense(1)(h))
    with pytest.raises(ValueError, match="an input is listed twice"):
        ferrax.Model([x, x], h)
    with pytest.raises(ValueError, match="an output is listed twice"):
        ferrax.Model(x, [h, h])
    with pytest.raises(TypeError, match=r"Model\(inputs=..., outputs=...\)"):
        ferrax.Model(name="m", depth=3)
    seq = ferrax.Input(shape=(4, 2))
    with pytest.raises(ValueError, match=r"initial_state must be 2 tensor\(s\)"):
        layers.LSTM(3)(seq, initial_state=[ferrax.Input(shape=(3,))])
    with pytest.raises(ValueError, match=r"initial_state must be 1 tensor.*\(None, 3\)"):
        layers.GRU(3)(seq, initial_state=[ferrax.Input(shape=(5,))])
    with pytest.raises(TypeError, match="takes no initial_state"):
        layers.Dense(3)(seq, initial_state=[h])
    with pytest.raises(TypeError, match="loss weight of output 'reg' must be a number"):
        _two_outputs().compile(optimizer="sgd", loss="mse", loss_weights=[1.0, "x"])
    with pytest.raises(ValueError, match=r"2 outputs \['cls', 'reg'\], but compile's loss"):
        _two_outputs().compile(optimizer="sgd", loss=["mse"])


def test_a_file_naming_an_unknown_model_class_is_refused(tmp_path):
    import json as json_module

    from ferrax import _core

    model = _residual()
    path = tmp_path / "m.ferrax"
    model.save(path)
    tensors, meta = _core.safetensors_loads(path.read_bytes())
    meta = dict(meta, model_class="os.system")
    path.write_bytes(_core.safetensors_dumps(tensors, meta))
    with pytest.raises(ValueError, match="unknown model class 'os.system'"):
        ferrax.models.load_model(path)
    assert json_module.loads(meta["model_config"])["name"] == model.name
