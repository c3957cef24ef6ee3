"""Optimizers: variables after each of several steps, against float64 references of Keras 3.

Keras order per step (see tests/reference.py): clip the gradients (clipnorm per variable,
global_clipnorm over all, or clipvalue), then decoupled weight decay w -= w * wd * lr on the
variables (any optimizer with weight_decay set; AdamW only defaults it to 0.004), then the update.
Epsilon: Adam / AdamW / Nadam add it to sqrt(v) (Adam's uncorrected v, Nadam's corrected v_hat);
RMSprop and Adagrad add it inside the sqrt.
"""

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st


def _ft():
    import ferrax._testing as ft

    return ft


def _make(name, kw):
    import ferrax.optimizers

    return getattr(ferrax.optimizers, name)(**kw)


CASES = [
    ("SGD", {}),
    ("SGD", {"learning_rate": 0.1}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"learning_rate": 0.1, "weight_decay": 0.1}),
    ("SGD", {"clipnorm": 0.5}),
    ("SGD", {"momentum": 0.5, "clipvalue": 0.3}),
    ("SGD", {"global_clipnorm": 1.0}),
    ("RMSprop", {}),
    ("RMSprop", {"learning_rate": 0.01, "rho": 0.8}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"momentum": 0.5, "centered": True, "epsilon": 1e-3}),
    ("RMSprop", {"weight_decay": 0.05, "clipnorm": 1.0}),
    ("RMSprop", {"global_clipnorm": 0.5}),
    ("Adam", {}),
    ("Adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-3}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"weight_decay": 0.01}),
    ("Adam", {"clipnorm": 0.3}),
    ("Adam", {"clipvalue": 0.1}),
    ("Adam", {"global_clipnorm": 0.7, "amsgrad": True}),
    ("AdamW", {}),
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.1}),
    ("AdamW", {"weight_decay": 0.05, "amsgrad": True}),
    ("AdamW", {"clipnorm": 0.2}),
    ("AdamW", {"global_clipnorm": 0.5, "beta_1": 0.5}),
    ("Adagrad", {}),
    ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.5, "epsilon": 1e-3}),
    ("Adagrad", {"weight_decay": 0.02, "clipvalue": 0.5}),
    ("Adagrad", {"global_clipnorm": 0.4}),
    ("Nadam", {}),
    ("Nadam", {"learning_rate": 0.01, "beta_1": 0.7, "beta_2": 0.9, "epsilon": 1e-4}),
    ("Nadam", {"weight_decay": 0.01, "clipnorm": 0.5}),
    ("Nadam", {"global_clipnorm": 0.3}),
    ("Nadam", {"clipvalue": 0.2}),
]

SHAPES = [(4, 3), (3,), (2, 5)]


def _run_and_compare(name, kw, params, grads, rtol=2e-5, atol=1e-6):
    got = _ft().optimizer_run(_make(name, kw), params, grads)
    want = ref.optimizer_run(
        name,
        [p.astype(np.float64) for p in params],
        [[g.astype(np.float64) for g in step] for step in grads],
        **kw,
    )
    assert len(got) == len(grads), f"{len(got)} steps returned, {len(grads)} expected"
    for step, (gs, ws) in enumerate(zip(got, want)):
        assert len(gs) == len(ws)
        for i, (g, w) in enumerate(zip(gs, ws)):
            assert np.asarray(g).dtype == np.float32
            ref.assert_close(
                g, w, rtol=rtol, atol=atol, what=f"{name}({kw}) variable {i} after step {step + 1}"
            )
    return got, want


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{k}" for n, k in CASES])
@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(3, 5),
    scales=st.lists(st.sampled_from([1e-3, 0.1, 1.0, 10.0]), min_size=3, max_size=3),
)
def test_optimizer_steps(name, kw, seed, steps, scales):
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    grads = [
        [(rng.normal(size=s) * c).astype(np.float32) for s, c in zip(SHAPES, scales)]
        for _ in range(steps)
    ]
    got, want = _run_and_compare(name, kw, params, grads)
    # the variables must actually have moved (the test is not comparing initial values)
    moved = max(float(np.max(np.abs(w - p))) for w, p in zip(want[-1], params))
    assert moved > 1e-6


@pytest.mark.parametrize("name", ["SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "Nadam"])
def test_weight_decay_is_decoupled(name):
    # zero gradients: only the decay w <- w (1 - wd * lr) moves the variables
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(3, 4)).astype(np.float32)]
    grads = [[np.zeros((3, 4), np.float32)] for _ in range(3)]
    kw = {"learning_rate": 0.1, "weight_decay": 0.2}
    got, _ = _run_and_compare(name, kw, params, grads)
    np.testing.assert_allclose(got[-1][0], params[0] * (1 - 0.02) ** 3, rtol=1e-5)


def test_clipnorm_is_per_variable_and_global_clipnorm_is_joint():
    params = [np.zeros((2,), np.float32), np.zeros((2,), np.float32)]
    grads = [[np.array([3.0, 4.0], np.float32), np.array([0.3, 0.4], np.float32)]]
    got, _ = _run_and_compare("SGD", {"learning_rate": 1.0, "clipnorm": 1.0}, params, grads)
    np.testing.assert_allclose(got[0][0], [-0.6, -0.8], rtol=1e-6)  # norm 5 -> 1
    np.testing.assert_allclose(got[0][1], [-0.3, -0.4], rtol=1e-6)  # norm 0.5 kept
    got, _ = _run_and_compare("SGD", {"learning_rate": 1.0, "global_clipnorm": 1.0}, params, grads)
    s = 1.0 / np.sqrt(25.0 + 0.25)
    np.testing.assert_allclose(got[0][0], [-3 * s, -4 * s], rtol=1e-6)
    np.testing.assert_allclose(got[0][1], [-0.3 * s, -0.4 * s], rtol=1e-6)


def test_adam_first_step_is_learning_rate_times_sign():
    # Keras's bias correction makes step 1 = lr * g / (|g| + eps / sqrt(1 - beta_2)):
    # about lr * sign(g), with epsilon-hat on the uncorrected sqrt(v)
    params = [np.array([1.0, -2.0, 0.5], np.float32)]
    grads = [[np.array([0.3, -7.0, 1e-3], np.float32)]]
    got, _ = _run_and_compare("Adam", {"learning_rate": 0.01}, params, grads)
    g = grads[0][0].astype(np.float64)
    step = 0.01 * g / (np.abs(g) + 1e-7 / np.sqrt(1 - 0.999))
    np.testing.assert_allclose(got[0][0], params[0] - step, rtol=1e-6)
    assert abs(step[2]) < 0.01 * (1 - 3e-3)  # epsilon visible at |g| = 1e-3


def test_defaults_match_keras():
    """Optimizers built with no arguments behave as Keras's defaults."""
    rng = np.random.default_rng(11)
    params = [rng.normal(size=(5,)).astype(np.float32)]
    grads = [[rng.normal(size=(5,)).astype(np.float32)] for _ in range(4)]
    for name in ref.OPTIMIZER_DEFAULTS:
        _run_and_compare(name, {}, params, grads)


# ---- the reference itself: a hand-computed case per optimizer ----


def test_reference_sgd_momentum_by_hand():
    # m1 = -0.1*1 = -0.1, w1 = 1 - 0.1 = 0.9; m2 = 0.9*-0.1 - 0.1*2 = -0.29, w2 = 0.61
    hist = ref.optimizer_run(
        "SGD",
        [np.array([1.0])],
        [[np.array([1.0])], [np.array([2.0])]],
        learning_rate=0.1,
        momentum=0.9,
    )
    np.testing.assert_allclose([h[0][0] for h in hist], [0.9, 0.61], rtol=1e-12)
    # nesterov: w1 = 1 + 0.9*-0.1 - 0.1 = 0.81; w2 = 0.81 + 0.9*-0.29 - 0.2 = 0.349
    hist = ref.optimizer_run(
        "SGD",
        [np.array([1.0])],
        [[np.array([1.0])], [np.array([2.0])]],
        learning_rate=0.1,
        momentum=0.9,
        nesterov=True,
    )
    np.testing.assert_allclose([h[0][0] for h in hist], [0.81, 0.349], rtol=1e-12)


def test_reference_adagrad_rmsprop_by_hand():
    hist = ref.optimizer_run(
        "Adagrad",
        [np.array([1.0])],
        [[np.array([2.0])]],
        learning_rate=0.1,
        initial_accumulator_value=0.1,
        epsilon=0.0,
    )
    np.testing.assert_allclose(hist[0][0], 1.0 - 0.1 * 2.0 / np.sqrt(4.1), rtol=1e-12)
    hist = ref.optimizer_run(
        "RMSprop", [np.array([1.0])], [[np.array([2.0])]], learning_rate=0.1, rho=0.9, epsilon=0.0
    )
    np.testing.assert_allclose(hist[0][0], 1.0 - 0.1 * 2.0 / np.sqrt(0.4), rtol=1e-12)


# Every optimizer on a variable big enough (40,000 values, past the engine's 32,768) for
# its update to be split across threads; saved per thread count.
_THREADED_UPDATE = """
import sys
import numpy as np
import ferrax
r = np.random.default_rng(0)
w0 = r.normal(size=(200, 200)).astype(np.float32)
g = r.normal(size=(200, 200)).astype(np.float32)
out = {}
for k, (name, kw) in enumerate([("SGD", {}), ("SGD", {"momentum": 0.9}), ("Adam", {}),
                                ("RMSprop", {}), ("Adagrad", {}), ("Nadam", {})]):
    w = ferrax.Variable(w0)
    opt = getattr(ferrax.optimizers, name)(**kw)
    for _ in range(2):
        opt.apply_gradients([(g, w)])
    out[f"w_{k}"] = np.asarray(w)
np.savez(sys.argv[1], **out)
"""


def test_updates_split_across_threads_reach_every_weight(tmp_path):
    # (plain SGD, which keeps no state, skipped every block of such a variable on 2+ threads)
    from threads import weights_at_threads

    one, two = weights_at_threads(_THREADED_UPDATE, tmp_path, counts=(1, 2))
    r = np.random.default_rng(0)
    w0 = r.normal(size=(200, 200)).astype(np.float32)
    g = r.normal(size=(200, 200)).astype(np.float32)
    sgd = w0 - np.float32(0.01) * g - np.float32(0.01) * g  # two steps, float32 as the engine
    np.testing.assert_array_equal(one[0], sgd)
    np.testing.assert_array_equal(two[0], sgd)
    for k, (a, b) in enumerate(zip(one, two)):
        assert np.array_equal(a, b), f"optimizer {k} differs between 1 and 2 threads"
        assert not np.array_equal(a, w0), f"optimizer {k} left the variable as it was"
