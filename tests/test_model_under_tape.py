"""A model called under a GradientTape runs forward in the engine as one recorded
node, and its backward is the engine's: gradients against float64 NumPy, a tape loop
against fit (bitwise, with dropout), weights updated by apply_gradients, and the
errors for what is not supported yet."""

from __future__ import annotations

import numpy as np
import pytest

import ferrax
from ferrax import layers, ops

R = np.random.default_rng(0)
X = R.normal(size=(32, 6)).astype(np.float32)
Y = R.normal(size=(32, 4)).astype(np.float32)


def _mlp(dropout: float = 0.0) -> ferrax.Model:
    ferrax.utils.set_random_seed(7)
    return ferrax.Sequential([ferrax.Input((6,)), layers.Dense(8, activation="relu"),
                              layers.Dropout(dropout), layers.Dense(4)])


def test_a_models_gradients_under_the_tape_match_the_numpy_reference():
    model = _mlp()
    with ferrax.GradientTape() as tape:
        out = model(X[:8], training=True)
        loss = ops.mean(ops.square(out - Y[:8]))
    grads = tape.gradient(loss, model.trainable_variables)
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    z = X[:8] @ w1 + b1
    h = np.maximum(z, 0)
    d = 2 * (h @ w2 + b2 - Y[:8]) / (8 * 4)
    dz = (d @ w2.T) * (z > 0)
    for g, want in zip(grads, [X[:8].T @ dz, dz.sum(0), h.T @ d, d.sum(0)]):
        np.testing.assert_allclose(np.asarray(g), want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_a_tape_loop_gives_the_weights_of_fit_bitwise(dropout):
    fitted = _mlp(dropout)
    fitted.compile(optimizer=ferrax.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    fitted.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    model = _mlp(dropout)
    optimizer = ferrax.optimizers.SGD(0.1, momentum=0.9)
    for _ in range(2):
        for start in range(0, 32, 8):
            xb, yb = X[start:start + 8], Y[start:start + 8]
            with ferrax.GradientTape() as tape:
                loss = ops.mean(ops.square(model(xb, training=True) - yb))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
    # (batch 8 and 4 outputs: the loss's scale factors are powers of two, exact in
    # both the engine's fused loss and the ops' mean)
    for a, b in zip(model.get_weights(), fitted.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert optimizer.iterations == 8


def test_a_functional_model_and_ops_after_it_train_together():
    inp = ferrax.Input((6,))
    model = ferrax.Model(inp, layers.Dense(4, activation="tanh")(inp))
    scale = ferrax.Variable(np.ones(4), name="scale")
    optimizer = ferrax.optimizers.Adam(0.05)
    first = None
    for _ in range(40):
        with ferrax.GradientTape() as tape:
            loss = ops.mean(ops.square(model(X) * scale - Y))
        variables = model.trainable_variables + [scale]
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        first = float(loss) if first is None else first
    assert float(loss) < 0.8 * first
    assert not np.array_equal(scale.numpy(), np.ones(4))


def test_a_model_called_twice_under_one_tape_gets_both_calls_gradients():
    model = _mlp()
    a, b = X[:4], X[4:12]
    with ferrax.GradientTape() as tape:
        loss = ops.sum(model(a, training=True)) + ops.sum(ops.square(model(b, training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())

    def reference(x, dout):
        z = x @ w1 + b1
        h = np.maximum(z, 0)
        d = dout(h @ w2 + b2)
        dz = (d @ w2.T) * (z > 0)
        return [x.T @ dz, dz.sum(0), h.T @ d, d.sum(0)]

    want = [p + q for p, q in zip(reference(a, np.ones_like), reference(b, lambda y: 2 * y))]
    for g, w in zip(grads, want):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, atol=1e-6)


def test_two_calls_under_one_tape_replay_the_first_with_its_own_dropout_masks():
    together, apart = _mlp(0.5), _mlp(0.5)
    a, b = X[:8], X[8:16]
    with ferrax.GradientTape() as tape:
        loss = ops.sum(together(a, training=True)) + ops.sum(together(b, training=True))
    joint = tape.gradient(loss, together.trainable_variables)
    summed = None
    for x in (a, b):
        with ferrax.GradientTape() as tape:
            loss = ops.sum(apart(x, training=True))
        g = tape.gradient(loss, apart.trainable_variables)
        summed = g if summed is None else [np.asarray(p) + np.asarray(q)
                                           for p, q in zip(summed, g)]
    for p, q in zip(joint, summed):
        np.testing.assert_array_equal(np.asarray(p), np.asarray(q))


def test_a_replayed_call_leaves_the_moving_statistics_as_the_calls_made_them():
    def bn_model():
        ferrax.utils.set_random_seed(2)
        return ferrax.Sequential([ferrax.Input((6,)), layers.Dense(5),
                                  layers.BatchNormalization(), layers.Dense(1)])

    replayed, plain = bn_model(), bn_model()
    for m in (replayed, plain):
        with ferrax.GradientTape() as tape:
            loss = ops.sum(m(X[:8], training=True)) + ops.sum(m(X[8:16], training=True))
        if m is replayed:
            tape.gradient(loss, m.trainable_variables)
    for p, q in zip(replayed.non_trainable_weights, plain.non_trainable_weights):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_the_gradient_reaches_a_watched_input_through_the_engine():
    model = _mlp()
    x = ops.convert_to_tensor(X[:4])
    with ferrax.GradientTape() as tape:
        tape.watch(x)
        loss = ops.sum(ops.square(model(x, training=True)))
    dx, dw = tape.gradient(loss, [x, model.trainable_variables[0]])
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    z = X[:4] @ w1 + b1
    d = 2 * (np.maximum(z, 0) @ w2 + b2)
    dz = (d @ w2.T) * (z > 0)
    np.testing.assert_allclose(np.asarray(dx), dz @ w1.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(dw), X[:4].T @ dz, rtol=1e-5, atol=1e-6)


def test_the_gradient_flows_from_one_model_into_another_that_made_its_input():
    ferrax.utils.set_random_seed(1)
    first = ferrax.Sequential([ferrax.Input((3,)), layers.Dense(6)])
    inp = ferrax.Input((6,))
    second = ferrax.Model(inp, layers.Dense(2)(layers.add([inp, layers.Dense(6)(inp)])))
    z = R.normal(size=(5, 3)).astype(np.float32)
    with ferrax.GradientTape() as tape:
        loss = ops.sum(second(first(z, training=True), training=True))
    grads = tape.gradient(loss, first.trainable_variables)
    wa, ba = (w.astype(np.float64) for w in first.get_weights())
    wb, bb, wc, bc = (w.astype(np.float64) for w in second.get_weights())
    # d sum(second(h)) / dh = (I + wb) @ wc summed over outputs
    dh = np.ones((5, 2)) @ wc.T
    dh = dh + dh @ wb.T
    np.testing.assert_allclose(np.asarray(grads[0]), z.T @ dh, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grads[1]), dh.sum(0), rtol=1e-5, atol=1e-6)


def test_outside_a_tape_a_model_call_still_predicts():
    model = _mlp()
    np.testing.assert_array_equal(np.asarray(model(X[:4])), model.predict(X[:4], verbose=0))


def test_a_softmax_output_fused_with_its_compiled_loss_gives_plain_gradients_under_the_tape():
    ferrax.utils.set_random_seed(3)
    model = ferrax.Sequential([ferrax.Input((6,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    onehot = np.eye(3, dtype=np.float32)[np.arange(32) % 3]
    model.fit(X, onehot, batch_size=8, epochs=1, verbose=0)  # the fused softmax in use
    seed = R.normal(size=(8, 3)).astype(np.float32)
    with ferrax.GradientTape() as tape:
        out = model(X[:8], training=True)
        target = ops.sum(out * seed)  # any function of the probabilities
    gw, gb = tape.gradient(target, model.trainable_variables)
    w, b = (a.astype(np.float64) for a in model.get_weights())
    logits = X[:8] @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = p * (seed - (seed * p).sum(1, keepdims=True))  # softmax's backward
    np.testing.assert_allclose(np.asarray(gw), X[:8].T @ dz, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gb), dz.sum(0), rtol=1e-4, atol=1e-6)
    before = model.get_weights()
    model.fit(X, onehot, batch_size=32, epochs=1, shuffle=False, verbose=0)
    # fit's step still uses the fused gradient p - y
    w, b = (a.astype(np.float64) for a in before)
    logits = X @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d = (p - onehot) / 32
    np.testing.assert_allclose(model.get_weights()[0], w - 0.01 * X.T @ d, rtol=1e-4,
                               atol=1e-6)


def test_ops_on_a_models_weights_add_their_gradient_to_the_models_own():
    model = _mlp()
    with ferrax.GradientTape() as tape:
        loss = ops.mean(ops.square(model(X[:8]) - Y[:8]))
        kernel = model.trainable_variables[0]
        penalty = 0.5 * ops.sum(ops.square(kernel))  # an L2 term written with ops
        total = loss + penalty
    with_penalty = tape.gradient(total, model.trainable_variables)
    with ferrax.GradientTape() as tape:
        loss = ops.mean(ops.square(model(X[:8]) - Y[:8]))
    plain = tape.gradient(loss, model.trainable_variables)
    np.testing.assert_allclose(np.asarray(with_penalty[0]),
                               np.asarray(plain[0]) + model.get_weights()[0], rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_array_equal(np.asarray(with_penalty[1]), np.asarray(plain[1]))


def test_a_model_whose_outputs_were_given_as_a_list_returns_a_list():
    inp = ferrax.Input((6,))
    model = ferrax.Model(inp, [layers.Dense(4)(inp)])
    with ferrax.GradientTape() as tape:
        result = model(X[:5])
        assert isinstance(result, list) and len(result) == 1
        (out,) = result
        loss = ops.sum(out)
    assert out.shape == (5, 4)
    kernel_grad = tape.gradient(loss, model.trainable_variables)[0]
    np.testing.assert_allclose(np.asarray(kernel_grad),
                               np.repeat(X[:5].sum(0)[:, None], 4, axis=1), rtol=1e-5)


@pytest.mark.parametrize("use_both", [True, False])
def test_a_model_with_several_outputs_gets_each_outputs_gradient(use_both):
    ferrax.utils.set_random_seed(6)
    inp = ferrax.Input((6,))
    hidden = layers.Dense(4, activation="tanh")(inp)
    model = ferrax.Model(inp, {"a": layers.Dense(2)(hidden), "b": layers.Dense(3)(hidden)})
    with ferrax.GradientTape() as tape:
        out = model(X[:5], training=True)
        loss = ops.sum(out["a"])
        if use_both:
            loss = loss + ops.sum(ops.square(out["b"]))
    grads = tape.gradient(loss, model.trainable_variables)
    w, b, wa, ba, wb, bb = (v.astype(np.float64) for v in model.get_weights())
    h = np.tanh(X[:5] @ w + b)
    dh = np.ones((5, 2)) @ wa.T
    if use_both:
        dh = dh + (2 * (h @ wb + bb)) @ wb.T
    dz = dh * (1 - h ** 2)
    np.testing.assert_allclose(np.asarray(grads[0]), X[:5].T @ dz, rtol=1e-5, atol=1e-6)
    # (an output without a gradient gives its own weights zeros, not None: the
    # engine's backward runs over the whole model)
    assert np.any(np.asarray(grads[5]) != 0) == use_both


def test_gradients_reach_each_of_several_model_inputs():
    ferrax.utils.set_random_seed(8)
    a, b = ferrax.Input((2,)), ferrax.Input((3,))
    model = ferrax.Model([a, b], layers.Dense(1)(layers.concatenate([a, b])))
    xa, xb = ops.convert_to_tensor(X[:4, :2]), ops.convert_to_tensor(X[:4, 2:5])
    with ferrax.GradientTape() as tape:
        tape.watch(xb)
        loss = ops.sum(ops.square(model([xa, xb], training=True)))
    ga, gb = tape.gradient(loss, [xa, xb])
    kernel, bias = (v.astype(np.float64) for v in model.get_weights())
    d = 2 * (np.concatenate([X[:4, :2], X[:4, 2:5]], 1) @ kernel + bias)
    assert ga is None  # not watched
    np.testing.assert_allclose(np.asarray(gb), d @ kernel[2:].T, rtol=1e-5, atol=1e-6)


class _Scale(layers.Layer):
    def build(self, input_shape):
        self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return ops.tanh(x * self.s)


def test_a_custom_layer_called_eagerly_under_the_tape_trains_its_own_weights():
    layer = _Scale()
    x = X[:5, :3]
    with ferrax.GradientTape() as tape:
        loss = ops.sum(layer(x))
    (grad,) = tape.gradient(loss, layer.trainable_weights)
    x64 = x.astype(np.float64)
    want = (x64 * (1 - np.tanh(x64) ** 2)).sum(0)
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-5, atol=1e-6)
    ferrax.optimizers.SGD(0.5).apply_gradients(zip([grad], layer.trainable_weights))
    np.testing.assert_allclose(layer.s.numpy(), 1 - 0.5 * want, rtol=1e-5)


def test_a_custom_layers_weight_read_by_ops_and_by_its_call_sums_both_gradients():
    layer = _Scale()
    x = X[:5, :3]
    layer(x)  # built
    with ferrax.GradientTape() as tape:
        loss = ops.sum(layer(x)) + ops.sum(ops.square(layer.s))
    (grad,) = tape.gradient(loss, [layer.s])
    x64 = x.astype(np.float64)
    want = (x64 * (1 - np.tanh(x64) ** 2)).sum(0) + 2.0
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-5, atol=1e-6)


def _step_gradients(model: ferrax.Model, rows: slice) -> list:
    with ferrax.GradientTape() as tape:
        loss = ops.mean(ops.square(model(X[rows], training=True) - Y[rows]))
    return tape.gradient(loss, model.trainable_variables)


def test_gradients_a_loop_keeps_are_not_overwritten_by_later_steps():
    # (the engine reuses the arrays of gradients nothing refers to any more)
    model = _mlp()
    kept = [_step_gradients(model, slice(8 * k, 8 * k + 8)) for k in range(3)]
    model2 = _mlp()
    fresh = [[np.array(g, copy=True) for g in _step_gradients(model2, slice(8 * k, 8 * k + 8))]
             for k in range(3)]
    view = np.asarray(kept[0][0])[:2]  # a view of an array no tensor holds any more
    del kept[0][0]
    _step_gradients(model, slice(0, 8))
    np.testing.assert_array_equal(view, fresh[0][0][:2])
    for got, want in zip(kept, fresh):
        for g, w in zip(got[-3:], want[-3:]):
            np.testing.assert_array_equal(np.asarray(g), w)
    assert not np.array_equal(fresh[0][0], fresh[1][0])  # (the steps' gradients differ)


def test_a_steps_gradients_are_freed_without_the_garbage_collector():
    import gc
    import weakref

    model = _mlp()
    _step_gradients(model, slice(0, 8))
    gc.disable()
    try:
        grads = _step_gradients(model, slice(8, 16))
        refs = [weakref.ref(g) for g in grads]
        del grads
        assert all(r() is None for r in refs), "a reference cycle keeps the gradients alive"
    finally:
        gc.enable()
