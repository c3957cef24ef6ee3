"""Conv2D followed by a MaxPooling2D whose windows tile its input: the engine runs the pair as
one fused kernel (rust/core/src/layers/conv_pool.rs). These tests check whole models that take
that path, forward and one training step, against the float64 references of test_conv.py, for
a first convolution (no input gradient), a later one (input gradient through the fused pair),
filter counts on and off the vectorised path, and "same" padding.
"""

import numpy as np
import pytest
import reference as ref
from test_conv import conv2d_forward_backward, pool2d_forward_backward

import ferrax
from ferrax import layers

# (input shape, [(filters, kernel, activation, padding, pool)] per block, dense units)
CASES = {
    "W3-like block, vectorised path": ((12, 12, 1), [(16, 3, "relu", "valid", 2)], 5),
    "odd filters, same padding, tanh": ((9, 11, 3), [(5, (3, 2), "tanh", "same", (2, 3))], 4),
    "two fused blocks": ((14, 14, 2), [(3, 3, "relu", "same", 2), (8, 3, "elu", "valid", 2)], 3),
}


def build(input_shape, blocks, units):
    stack = [ferrax.Input(input_shape)]
    for filters, kernel, act, padding, pool in blocks:
        stack += [layers.Conv2D(filters, kernel, activation=act, padding=padding,
                                bias_initializer="random_normal"),
                  layers.MaxPooling2D(pool)]
    stack += [layers.Flatten(), layers.Dense(units)]
    return ferrax.Sequential(stack)


def reference_step(weights, blocks, x, target):
    """Predictions and weight gradients of the MSE loss, in float64."""
    acts, caches = np.asarray(x, np.float64), []
    for b, (_, _, act, padding, pool) in enumerate(blocks):
        kernel, bias = weights[2 * b], weights[2 * b + 1]
        conv, _, _ = conv2d_forward_backward(acts, kernel, bias, 1, padding, 1, act)
        pooled, _ = pool2d_forward_backward("max", conv, pool, None, "valid")
        caches.append(acts)
        acts = pooled
    dense_k, dense_b = (np.asarray(w, np.float64) for w in weights[-2:])
    flat = acts.reshape(len(x), -1)
    pred = flat @ dense_k + dense_b
    d_pred = 2.0 * (pred - target) / pred.size  # Keras MSE: mean over units, then batch
    grads = [flat.T @ d_pred, d_pred.sum(axis=0)]
    d_acts = (d_pred @ dense_k.T).reshape(acts.shape)
    for b in reversed(range(len(blocks))):
        _, _, act, padding, pool = blocks[b]
        kernel, bias = weights[2 * b], weights[2 * b + 1]
        conv, _, _ = conv2d_forward_backward(caches[b], kernel, bias, 1, padding, 1, act)
        _, d_conv = pool2d_forward_backward("max", conv, pool, None, "valid", dy=d_acts)
        _, d_acts, (dk, db) = conv2d_forward_backward(caches[b], kernel, bias, 1, padding, 1,
                                                      act, dy=d_conv)
        grads = [dk, db] + grads
    return pred, grads


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_conv_pool_models_match_the_float64_reference(case):
    input_shape, blocks, units = CASES[case]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, *input_shape)).astype(np.float32)  # 7: not a multiple of 4 tasks
    target = rng.normal(size=(7, units)).astype(np.float32)
    model = build(input_shape, blocks, units)
    lr = 0.5
    model.compile(optimizer=ferrax.optimizers.SGD(learning_rate=lr), loss="mse")
    before = [w.astype(np.float64) for w in model.get_weights()]
    pred_want, grads_want = reference_step(before, blocks, x, target)

    ref.assert_close(model.predict(x, verbose=0), pred_want, rtol=1e-4, atol=1e-5,
                     what=f"{case}: predictions")
    model.fit(x, target, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    after = [w.astype(np.float64) for w in model.get_weights()]
    for i, (w0, w1, g) in enumerate(zip(before, after, grads_want)):
        assert np.abs(g).max() > 0, f"{case}: weight {i} gets no gradient in the reference"
        ref.assert_close((w0 - w1) / lr, g, rtol=1e-3, atol=2e-5,
                         what=f"{case}: gradient of weight {i}")
