"""Optimizers in a custom loop: `apply_gradients` / `apply` on ferrax.Variables run
the fused loop's update rules (every optimizer case of test_optimizers.py against
the float64 references, and bitwise against the engine's own run), skip variables
without a gradient, and refuse mismatched or empty lists."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from test_optimizers import CASES, SHAPES, _make

import ferrax
import ferrax._testing as ft
from ferrax import ops

R = np.random.default_rng(11)


def _steps(n=4):
    params = [R.normal(size=s).astype(np.float32) for s in SHAPES]
    grads = [[R.normal(size=s).astype(np.float32) for s in SHAPES] for _ in range(n)]
    return params, grads


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_apply_gradients_runs_the_engines_update_rule(name, kw):
    params, grads = _steps()
    variables = [ferrax.Variable(p) for p in params]
    optimizer = _make(name, kw)
    for step, gs in enumerate(grads):
        assert optimizer.apply_gradients(zip(gs, variables)) == step + 1
    engine = ft.optimizer_run(_make(name, kw), params, grads)[-1]
    want = ref.optimizer_run(name, [p.astype(np.float64) for p in params],
                             [[g.astype(np.float64) for g in s] for s in grads], **kw)[-1]
    for v, e, w in zip(variables, engine, want):
        np.testing.assert_array_equal(v.numpy(), e)
        ref.assert_close(v.numpy(), w, rtol=2e-5, atol=1e-6, what=f"{name}({kw})")
    assert optimizer.iterations == len(grads)


def test_apply_takes_the_two_lists_and_a_tape_loop_trains():
    x = R.normal(size=(32, 4)).astype(np.float32)
    y = (x @ np.array([[1.0], [2.0], [-1.0], [0.5]])).astype(np.float32)
    w = ferrax.Variable("zeros", shape=(4, 1), name="w")
    optimizer = ferrax.optimizers.SGD(learning_rate=0.1, momentum=0.5)
    first = None
    for _ in range(30):
        with ferrax.GradientTape() as tape:
            loss = ops.mean(ops.square(ops.matmul(x, w) - y))
        first = float(loss) if first is None else first
        optimizer.apply(tape.gradient(loss, [w]), [w])
    assert float(loss) < 0.01 * first


def test_a_variable_without_a_gradient_and_its_state_are_left_alone():
    a, b = ferrax.Variable(np.ones(3), name="a"), ferrax.Variable(np.ones(2), name="b")
    optimizer = ferrax.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    optimizer.apply_gradients([(np.ones(3), a), (np.ones(2), b)])
    optimizer.apply_gradients([(np.ones(3), a), (None, b)])
    np.testing.assert_allclose(b.numpy(), 1 - 0.1)  # one step only
    optimizer.apply_gradients([(np.zeros(3), a), (np.zeros(2), b)])
    # momentum remembered from the first step only: 0.9 * -0.1
    np.testing.assert_allclose(b.numpy(), 1 - 0.1 - 0.09, rtol=1e-6)


def test_the_learning_rate_can_be_read_and_set_between_steps():
    w = ferrax.Variable(np.zeros(2))
    optimizer = ferrax.optimizers.SGD(learning_rate=0.5)
    optimizer.apply_gradients([(np.ones(2), w)])
    optimizer.learning_rate = 0.25
    assert optimizer.learning_rate == 0.25
    optimizer.apply_gradients([(np.ones(2), w)])
    np.testing.assert_allclose(w.numpy(), -0.75)


def test_mismatched_empty_and_foreign_lists_are_refused():
    w, v = ferrax.Variable(np.ones(2), name="w"), ferrax.Variable(np.ones(3), name="v")
    optimizer = ferrax.optimizers.Adam()
    with pytest.raises(ValueError, match="2 gradients for 1 variables"):
        optimizer.apply([np.ones(2), np.ones(2)], [w])
    with pytest.raises(ValueError, match="no gradients and variables given"):
        optimizer.apply_gradients([])
    with pytest.raises(ValueError, match=r"no gradient for any variable \(w\)"):
        optimizer.apply_gradients([(None, w)])
    with pytest.raises(TypeError, match="variable 0 must be a float32 ferrax.Variable"):
        optimizer.apply_gradients([(np.ones(2), np.ones(2))])
    with pytest.raises(ValueError, match=r"the gradient of 'w' has shape \(3,\), the "
                                         r"variable \(2,\)"):
        optimizer.apply_gradients([(np.ones(3), w)])
    optimizer.apply_gradients([(np.ones(2), w)])
    with pytest.raises(ValueError, match=r"built for the variables \[w\]"):
        optimizer.apply_gradients([(np.ones(3), v)])
    with pytest.raises(TypeError, match="expected \\(gradient, variable\\) pairs"):
        optimizer.apply_gradients([np.ones(2)])


def test_a_models_weights_stepped_again_are_still_checked():
    # (the same weights as the last step take a shorter path: its checks must hold too)
    ferrax.utils.set_random_seed(0)
    model = ferrax.Sequential([ferrax.Input((3,)), ferrax.layers.Dense(2)])
    model.predict(np.ones((1, 3), np.float32), verbose=0)
    weights = model.trainable_variables
    kernel, bias = (np.array(w) for w in model.get_weights())
    optimizer = ferrax.optimizers.SGD(learning_rate=0.5)
    grads = [np.full((3, 2), 0.25, np.float32), np.full((2,), 0.5, np.float32)]
    for step in range(2):
        optimizer.apply_gradients(zip(grads, weights))
        np.testing.assert_allclose(model.get_weights()[0], kernel - 0.125 * (step + 1), rtol=1e-6)
        np.testing.assert_allclose(model.get_weights()[1], bias - 0.25 * (step + 1), rtol=1e-6)
    with pytest.raises(ValueError, match=r"the gradient of '.*' has shape \(2,\), the "
                                         r"variable \(3, 2\)"):
        optimizer.apply_gradients(zip([grads[1], grads[1]], weights))
    with pytest.raises(ValueError, match="no gradient for any variable"):
        optimizer.apply_gradients(zip([None, None], weights))
    with pytest.raises(ValueError, match="built for the variables"):
        optimizer.apply_gradients(zip(grads[::-1], weights[::-1]))
    np.testing.assert_allclose(model.get_weights()[1], bias - 0.5, rtol=1e-6)  # untouched
