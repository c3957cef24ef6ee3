"""GradientTape over eager ops and Variables: gradients against float64 NumPy
references, TensorFlow's rules (non-scalar targets summed, unconnected sources None,
stop_gradient, watch, stop_recording, persistent tapes) and its errors.
(Every op's own gradient runs through the tape too: see test_ops.py's vjp tests.)"""

from __future__ import annotations

import numpy as np
import pytest

import ferrax
from ferrax import ops

R = np.random.default_rng(0)


def _mlp_reference(x, y, w1, b1, w2, b2):
    """Forward and float64 gradients of mean((relu(x w1 + b1) w2 + b2 - y)^2)."""
    x, y, w1, b1, w2, b2 = (a.astype(np.float64) for a in (x, y, w1, b1, w2, b2))
    z = x @ w1 + b1
    h = np.maximum(z, 0)
    out = h @ w2 + b2
    loss = np.mean((out - y) ** 2)
    d_out = 2 * (out - y) / out.size
    dw2, db2 = h.T @ d_out, d_out.sum(0)
    dz = (d_out @ w2.T) * (z > 0)
    return loss, [x.T @ dz, dz.sum(0), dw2, db2]


def test_gradients_of_a_small_network_match_the_numpy_reference():
    x = R.normal(size=(8, 5)).astype(np.float32)
    y = R.normal(size=(8, 3)).astype(np.float32)
    values = [R.normal(size=s).astype(np.float32) * 0.5 for s in ((5, 4), (4,), (4, 3), (3,))]
    w1, b1, w2, b2 = variables = [ferrax.Variable(v) for v in values]
    with ferrax.GradientTape() as tape:
        out = ops.matmul(ops.relu(ops.matmul(x, w1) + b1), w2) + b2
        loss = ops.mean(ops.square(out - y))
    grads = tape.gradient(loss, variables)
    want_loss, want = _mlp_reference(x, y, *values)
    assert float(loss) == pytest.approx(want_loss, rel=1e-5)
    for g, w, v in zip(grads, want, variables):
        assert g.shape == v.shape
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-4, atol=1e-6)


def test_a_gradient_descent_loop_follows_the_float64_reference():
    x = R.normal(size=(16, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype(np.float32)
    w, b = ferrax.Variable(np.zeros((3, 1))), ferrax.Variable(np.zeros((1,)))
    w64, b64 = np.zeros((3, 1)), np.zeros(1)
    for _ in range(20):
        with ferrax.GradientTape() as tape:
            loss = ops.mean(ops.square(ops.matmul(x, w) + b - y))
        gw, gb = tape.gradient(loss, [w, b])
        w.assign_sub(0.1 * np.asarray(gw))
        b.assign_sub(0.1 * np.asarray(gb))
        d = 2 * (x @ w64 + b64 - y) / len(x)
        w64, b64 = w64 - 0.1 * x.T @ d, b64 - 0.1 * d.sum(0)
    np.testing.assert_allclose(w.numpy(), w64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.numpy(), b64, rtol=1e-4, atol=1e-5)


def test_a_non_scalar_target_is_summed_and_output_gradients_weigh_it():
    w = ferrax.Variable(np.array([1.0, 2.0, 3.0]))
    x = np.array([4.0, 5.0, 6.0], np.float32)
    with ferrax.GradientTape(persistent=True) as tape:
        y = w * x
    np.testing.assert_array_equal(np.asarray(tape.gradient(y, w)), x)
    seed = np.array([1.0, 0.0, -2.0], np.float32)
    np.testing.assert_array_equal(np.asarray(tape.gradient(y, w, output_gradients=seed)),
                                  x * seed)
    # several targets: their gradients add
    with ferrax.GradientTape() as tape:
        a, b = ops.sum(w * 2.0), ops.sum(w * w)
    np.testing.assert_array_equal(np.asarray(tape.gradient([a, b], w)),
                                  2.0 + 2 * w.numpy())


def test_unconnected_sources_get_none_or_zeros():
    w, v = ferrax.Variable(np.ones(2)), ferrax.Variable(np.ones(3))
    with ferrax.GradientTape(persistent=True) as tape:
        y = ops.sum(w * 3.0)
    gw, gv = tape.gradient(y, [w, v])
    np.testing.assert_array_equal(np.asarray(gw), [3.0, 3.0])
    assert gv is None
    zeros = tape.gradient(y, {"w": w, "v": v}, unconnected_gradients="zero")
    assert set(zeros) == {"w", "v"}
    np.testing.assert_array_equal(np.asarray(zeros["v"]), np.zeros(3))


def test_stop_gradient_blocks_the_path_through_it():
    w = ferrax.Variable(np.array([2.0, -1.0]))
    with ferrax.GradientTape() as tape:
        y = ops.sum(w * ops.stop_gradient(w))
    np.testing.assert_array_equal(np.asarray(tape.gradient(y, w)), w.numpy())


def test_a_variable_used_twice_gets_both_gradients():
    w = ferrax.Variable(np.array([[0.5, -1.0], [2.0, 0.25]]))
    x = np.array([[1.0, 2.0]], np.float32)
    with ferrax.GradientTape() as tape:
        h = ops.tanh(ops.matmul(x, w))
        y = ops.sum(ops.matmul(h, w))  # w read by two ops, as a layer called twice
    x64, w64 = x.astype(np.float64), w.numpy().astype(np.float64)
    h64 = np.tanh(x64 @ w64)
    dh = np.ones((1, 2)) @ w64.T
    want = h64.T @ np.ones((1, 2)) + x64.T @ (dh * (1 - h64 ** 2))
    np.testing.assert_allclose(np.asarray(tape.gradient(y, w)), want, rtol=1e-5)


def test_watched_tensors_have_gradients_and_unwatched_ones_none():
    x = ops.convert_to_tensor(np.array([1.0, 2.0]))
    z = ops.convert_to_tensor(np.array([3.0, 4.0]))
    with ferrax.GradientTape() as tape:
        tape.watch(x)
        y = ops.sum(x * x * z)
    gx, gz = tape.gradient(y, [x, z])
    np.testing.assert_array_equal(np.asarray(gx), 2 * np.array([1.0, 2.0]) * z.numpy())
    assert gz is None
    with pytest.raises(TypeError, match="convert an array with ferrax.ops.convert_to_tensor"):
        ferrax.GradientTape().watch(np.ones(2))


def test_an_intermediate_watched_tensor_gets_the_gradient_arriving_at_it():
    w = ferrax.Variable(np.array([1.0, 2.0]))
    with ferrax.GradientTape() as tape:
        h = w * 3.0
        tape.watch(h)
        y = ops.sum(h * h)
    gh, gw = tape.gradient(y, [h, w])
    np.testing.assert_array_equal(np.asarray(gh), 2 * h.numpy())
    np.testing.assert_array_equal(np.asarray(gw), 3 * 2 * h.numpy())


def test_stop_recording_and_non_trainable_variables_are_not_watched():
    w = ferrax.Variable(np.ones(2))
    frozen = ferrax.Variable(np.ones(2), trainable=False)
    with ferrax.GradientTape(persistent=True) as tape:
        with tape.stop_recording():
            hidden = ops.sum(w * 2.0)
        y = ops.sum(w * frozen)
    assert tape.gradient(hidden, w) is None
    assert tape.gradient(y, frozen) is None
    assert tape.watched_variables() == [w]
    with ferrax.GradientTape(watch_accessed_variables=False) as tape:
        y = ops.sum(w * 2.0)
    assert tape.gradient(y, w) is None


def test_the_record_holds_the_values_read_even_if_a_variable_changes_later():
    w = ferrax.Variable(np.array([3.0]))
    with ferrax.GradientTape() as tape:
        y = ops.sum(w * w)
    w.assign([100.0])
    np.testing.assert_array_equal(np.asarray(tape.gradient(y, w)), [6.0])


def test_a_non_persistent_tape_gives_gradients_once():
    w = ferrax.Variable(np.ones(2))
    with ferrax.GradientTape() as tape:
        y = ops.sum(w)
    tape.gradient(y, w)
    with pytest.raises(RuntimeError, match="released; make it with "
                                           r"GradientTape\(persistent=True\)"):
        tape.gradient(y, w)


def test_a_gradient_for_a_non_float_source_is_refused():
    counter = ferrax.Variable(np.array([1, 2], np.int32), name="counter")
    assert counter.dtype == "int32"
    w = ferrax.Variable(np.ones(2))
    with ferrax.GradientTape() as tape:
        y = ops.sum(w) + ops.cast(ops.argmax(w), "float32")  # integer steps on the way
    with pytest.raises(ValueError, match=r"source 1 \(counter\) is int32; only float"):
        tape.gradient(y, [w, counter])
    with pytest.raises(TypeError, match="source 0 is .*; sources are variables or tensors"):
        ferrax.GradientTape().gradient(y, np.ones(2))


def test_variables_are_made_from_values_or_initializers_and_assigned():
    w = ferrax.Variable("ones", shape=(2, 3), name="w")
    np.testing.assert_array_equal(w.numpy(), np.ones((2, 3)))
    assert (w.name, w.shape, w.dtype, w.trainable) == ("w", (2, 3), "float32", True)
    w.assign_add(np.full((2, 3), 2.0))
    np.testing.assert_array_equal(np.asarray(w), np.full((2, 3), 3.0))
    with pytest.raises(ValueError, match=r"Variable 'w': assign needs shape \(2, 3\), got "
                                         r"\(3,\)"):
        w.assign(np.ones(3))
    with pytest.raises(ValueError, match="an initializer needs shape="):
        ferrax.Variable("glorot_uniform")
    v = ferrax.Variable(np.arange(4.0))
    assert v.dtype == "float32" and float(ops.sum(v)) == 6.0


def test_tape_misuse_is_refused_with_what_went_wrong():
    w = ferrax.Variable(np.ones(2))
    tape = ferrax.GradientTape()
    with pytest.raises(RuntimeError, match="stop_recording: the tape is not open"), \
            tape.stop_recording():
        pass
    with tape:
        with pytest.raises(RuntimeError, match="this tape is already open"):
            tape.__enter__()
        y = ops.sum(w * 2.0)
    with pytest.raises(ValueError, match="unconnected_gradients must be 'none' or 'zero'"):
        tape.gradient(y, w, unconnected_gradients="zeros")
    with pytest.raises(ValueError, match=r"1 target\(s\) but 2 output gradient\(s\)"):
        tape.gradient(y, w, output_gradients=[1.0, 2.0])
    with pytest.raises(TypeError, match="the target must be a tensor computed under the "
                                        "tape, got"):
        tape.gradient(3.0, w)


def test_variables_refuse_bad_initial_values():
    with pytest.raises(ValueError, match=r"shape=\(3,\) but the value has shape \(2,\)"):
        ferrax.Variable(np.ones(2), shape=(3,))
    with pytest.raises(TypeError, match="the initial value must be an array, a number or an "
                                        "initializer"):
        ferrax.Variable(object())
    with pytest.raises(ValueError, match="shape must be a tuple of integers"):
        ferrax.Variable("zeros", shape=3)
