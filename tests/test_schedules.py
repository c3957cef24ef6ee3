"""Learning-rate schedules: Keras 3's formulas against independent float64 references, argument
checks, configs, and the engine evaluating the same schedule before each optimizer step."""

import json
import math

import numpy as np
import pytest

from ferrax.optimizers import schedules as S

STEPS = np.concatenate([np.arange(0, 400), [999, 1000, 1001, 12345, 10**6]]).astype(np.int64)


# --- independent references (vectorised over steps, float64) -------------------------------
def ref_exponential(t, lr0, ds, rate, staircase):
    p = t / ds
    if staircase:
        p = np.floor(p)
    return lr0 * np.power(rate, p)


def ref_inverse_time(t, lr0, ds, rate, staircase):
    p = t / ds
    if staircase:
        p = np.floor(p)
    return lr0 / (1.0 + rate * p)


def ref_piecewise(t, boundaries, values):
    # values[i] where i = number of boundaries the step is strictly past.
    idx = (t[:, None] > np.asarray(boundaries, dtype=np.float64)[None, :]).sum(axis=1)
    return np.asarray(values, dtype=np.float64)[idx]


def ref_polynomial(t, lr0, ds, end, power, cycle):
    t = t.astype(np.float64)
    if cycle:
        period = ds * np.maximum(1.0, np.ceil(t / ds))
    else:
        period = np.full_like(t, float(ds))
        t = np.minimum(t, ds)
    return (lr0 - end) * (1.0 - t / period) ** power + end


def ref_cosine(t, lr0, ds, alpha, warmup_target, warmup_steps):
    t = t.astype(np.float64)
    out = np.empty_like(t)
    for k, s in enumerate(t):
        if warmup_target is not None and s < warmup_steps:
            out[k] = lr0 + (warmup_target - lr0) * s / warmup_steps
            continue
        peak = lr0 if warmup_target is None else warmup_target
        d = min(s - (warmup_steps if warmup_target is not None else 0.0), ds)
        out[k] = peak * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * d / ds)) + alpha)
    return out


def ref_restarts(t, lr0, first, t_mul, m_mul, alpha):
    """Walk the periods one by one (no closed form)."""
    out = []
    for s in t.astype(np.float64):
        start, length, peak = 0.0, float(first), 1.0
        while length > 1e-12 and s >= start + length:
            start += length
            length *= t_mul
            peak *= m_mul
        if length <= 1e-12:  # shrinking periods all ended
            out.append(lr0 * alpha)
            continue
        frac = (s - start) / length
        out.append(lr0 * ((1 - alpha) * peak * 0.5 * (1 + math.cos(math.pi * frac)) + alpha))
    return np.asarray(out)


def values_of(schedule, steps=STEPS):
    got = [schedule(int(s)) for s in steps]
    assert all(type(v) is float for v in got)
    return np.asarray(got)


# --- formulas --------------------------------------------------------------------------------
@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize("lr0,ds,rate", [(0.1, 10, 0.5), (1.0, 7.5, 0.96), (0.01, 1, 0.0)])
def test_exponential_decay(lr0, ds, rate, staircase):
    s = S.ExponentialDecay(lr0, ds, rate, staircase=staircase)
    np.testing.assert_allclose(values_of(s), ref_exponential(STEPS, lr0, ds, rate, staircase),
                               rtol=1e-13, atol=0)


def test_exponential_staircase_boundaries():
    s = S.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert s(0) == s(9) == 0.1
    assert s(10) == pytest.approx(0.05, rel=1e-15) and s(19) == s(10)
    assert s(20) == pytest.approx(0.025, rel=1e-15)


@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize("lr0,ds,rate", [(0.1, 1.0, 0.5), (1.0, 8, 2.0)])
def test_inverse_time_decay(lr0, ds, rate, staircase):
    s = S.InverseTimeDecay(lr0, ds, rate, staircase=staircase)
    np.testing.assert_allclose(values_of(s), ref_inverse_time(STEPS, lr0, ds, rate, staircase),
                               rtol=1e-13, atol=0)


@pytest.mark.parametrize("boundaries,values", [
    ([100000, 110000], [1.0, 0.5, 0.1]),
    ([0, 5, 6, 300], [0.4, 0.3, 0.2, 0.1, 0.05]),
    ([], [0.7]),
])
def test_piecewise_constant_decay(boundaries, values):
    s = S.PiecewiseConstantDecay(boundaries, values)
    np.testing.assert_array_equal(values_of(s), ref_piecewise(STEPS, boundaries, values))


def test_piecewise_constant_boundary_belongs_to_the_earlier_value():
    s = S.PiecewiseConstantDecay([3, 7], [1.0, 0.5, 0.1])
    assert [s(k) for k in range(10)] == [1.0] * 4 + [0.5] * 4 + [0.1] * 2


@pytest.mark.parametrize("cycle", [False, True])
@pytest.mark.parametrize("lr0,ds,end,power", [(0.1, 10, 0.0001, 1.0), (1.0, 37, 0.01, 0.5),
                                              (0.5, 100, 0.0, 3.0)])
def test_polynomial_decay(lr0, ds, end, power, cycle):
    s = S.PolynomialDecay(lr0, ds, end, power=power, cycle=cycle)
    np.testing.assert_allclose(values_of(s), ref_polynomial(STEPS, lr0, ds, end, power, cycle),
                               rtol=1e-12, atol=1e-15)


def test_polynomial_decay_cycle_at_multiples_reaches_the_end_rate():
    s = S.PolynomialDecay(1.0, 10, end_learning_rate=0.0, cycle=True)
    assert s(0) == 1.0 and s(10) == 0.0 and s(20) == 0.0
    assert s(11) == pytest.approx(1.0 - 11 / 20, rel=1e-15)
    clamped = S.PolynomialDecay(1.0, 10, end_learning_rate=0.25)
    assert clamped(10) == clamped(500) == 0.25


@pytest.mark.parametrize("lr0,ds,alpha,target,warmup", [
    (0.1, 100, 0.0, None, 0),
    (0.1, 100, 0.2, None, 50),  # warmup_steps ignored without a target, as in Keras
    (0.0, 100, 0.0, 0.1, 30),
    (0.01, 57, 0.1, 0.5, 13),
    (0.2, 10, 0.0, 0.1, 0),  # a target with no warmup steps: decay from the target
])
def test_cosine_decay(lr0, ds, alpha, target, warmup):
    s = S.CosineDecay(lr0, ds, alpha=alpha, warmup_target=target, warmup_steps=warmup)
    np.testing.assert_allclose(values_of(s), ref_cosine(STEPS, lr0, ds, alpha, target, warmup),
                               rtol=1e-12, atol=1e-16)


def test_cosine_decay_warmup_landmarks():
    s = S.CosineDecay(0.0, 100, warmup_target=1.0, warmup_steps=10)
    assert s(0) == 0.0 and s(5) == pytest.approx(0.5) and s(10) == 1.0
    assert s(60) == pytest.approx(0.5, abs=1e-15)
    assert s(110) == pytest.approx(0.0, abs=1e-15) and s(10**6) == s(110)


@pytest.mark.parametrize("t_mul,m_mul,alpha", [(2.0, 1.0, 0.0), (1.0, 0.5, 0.1),
                                               (3.0, 0.7, 0.05), (1.5, 0.9, 0.0),
                                               (0.5, 1.0, 0.2)])
def test_cosine_decay_restarts(t_mul, m_mul, alpha):
    s = S.CosineDecayRestarts(1.0, 10, t_mul=t_mul, m_mul=m_mul, alpha=alpha)
    steps = np.arange(0, 1300)
    np.testing.assert_allclose(values_of(s, steps), ref_restarts(steps, 1.0, 10, t_mul, m_mul,
                                                                 alpha), rtol=1e-9, atol=1e-12)


def test_cosine_decay_restarts_restarts_exactly_at_period_ends():
    # Periods of 10, 30, 90, 270, 810 steps: restarts at 10, 40, 130, 400, 1210. The closed
    # form's log ratio lands just below the integer at 1210; it must still restart there.
    s = S.CosineDecayRestarts(0.5, 10, t_mul=3.0)
    for start in (0, 10, 40, 130, 400, 1210):
        assert s(start) == pytest.approx(0.5, rel=1e-12), start
        assert s(start - 1) < 0.02 if start else True  # the end of the previous period


def test_call_accepts_numpy_steps_and_rejects_bad_ones():
    s = S.ExponentialDecay(0.1, 10, 0.5)
    assert s(np.int64(10)) == s(10) == s(10.0) == s(np.array(10))
    with pytest.raises(ValueError, match="step"):
        s(-1)
    with pytest.raises(TypeError, match="step"):
        s("3")


# --- arguments, configs -----------------------------------------------------------------------
def test_keras_defaults():
    p = S.PolynomialDecay(0.1, 10)
    assert (p.end_learning_rate, p.power, p.cycle, p.name) == (0.0001, 1.0, False,
                                                               "PolynomialDecay")
    c = S.CosineDecay(0.1, 10)
    assert (c.alpha, c.warmup_target, c.warmup_steps, c.name) == (0.0, None, 0, "CosineDecay")
    r = S.CosineDecayRestarts(0.1, 10)
    assert (r.t_mul, r.m_mul, r.alpha, r.name) == (2.0, 1.0, 0.0, "SGDRDecay")
    e = S.ExponentialDecay(0.1, 10, 0.9)
    assert (e.staircase, e.name) == (False, "ExponentialDecay")
    assert S.InverseTimeDecay(0.1, 10, 0.9).name == "InverseTimeDecay"
    assert S.PiecewiseConstantDecay([1], [1.0, 0.5]).name == "PiecewiseConstant"


@pytest.mark.parametrize("make,arg,exc", [
    (lambda: S.ExponentialDecay(0.1, 0, 0.5), "decay_steps", ValueError),
    (lambda: S.ExponentialDecay(0.1, -3, 0.5), "decay_steps", ValueError),
    (lambda: S.ExponentialDecay(-0.1, 10, 0.5), "initial_learning_rate", ValueError),
    (lambda: S.ExponentialDecay("0.1", 10, 0.5), "initial_learning_rate", TypeError),
    (lambda: S.ExponentialDecay(0.1, 10, 0.5, staircase="yes"), "staircase", TypeError),
    (lambda: S.InverseTimeDecay(0.1, 10, -1.0), "decay_rate", ValueError),
    (lambda: S.PiecewiseConstantDecay([1, 2], [1.0, 0.5]), "values", ValueError),
    (lambda: S.PiecewiseConstantDecay([2, 1], [1.0, 0.5, 0.1]), "boundaries", ValueError),
    (lambda: S.PiecewiseConstantDecay(5, [1.0]), "boundaries", TypeError),
    (lambda: S.PolynomialDecay(0.1, 0), "decay_steps", ValueError),
    (lambda: S.PolynomialDecay(0.1, 10, power=-1), "power", ValueError),
    (lambda: S.CosineDecay(0.1, 10, alpha=1.5), "alpha", ValueError),
    (lambda: S.CosineDecay(0.1, 10, warmup_steps=-1), "warmup_steps", ValueError),
    (lambda: S.CosineDecay(0.1, 10, warmup_target=float("nan")), "warmup_target", ValueError),
    (lambda: S.CosineDecayRestarts(0.1, 0), "first_decay_steps", ValueError),
    (lambda: S.CosineDecayRestarts(0.1, 10, t_mul=0), "t_mul", ValueError),
    (lambda: S.CosineDecayRestarts(0.1, 10, m_mul=-1), "m_mul", ValueError),
    (lambda: S.ExponentialDecay(float("inf"), 10, 0.5), "initial_learning_rate", ValueError),
])
def test_bad_arguments_name_the_argument(make, arg, exc):
    with pytest.raises(exc, match=arg):
        make()


ALL = [
    S.ExponentialDecay(0.1, 1000, 0.96, staircase=True),
    S.InverseTimeDecay(0.1, 1.0, 0.5),
    S.PiecewiseConstantDecay([100, 200], [0.1, 0.01, 0.001]),
    S.PolynomialDecay(0.1, 10000, 0.01, power=0.5, cycle=True),
    S.CosineDecay(0.0, 1000, alpha=0.1, warmup_target=0.1, warmup_steps=100),
    S.CosineDecayRestarts(0.1, 1000, t_mul=1.5, m_mul=0.9, alpha=0.01),
]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_config_round_trip(schedule):
    clone = type(schedule).from_config(schedule.get_config())
    assert clone.get_config() == schedule.get_config()
    steps = [0, 1, 99, 100, 101, 5000, 123456]
    assert [clone(k) for k in steps] == [schedule(k) for k in steps]
    data = json.loads(json.dumps(S.serialize(schedule)))
    assert data["class_name"] == type(schedule).__name__
    back = S.deserialize(data)
    assert type(back) is type(schedule) and back.get_config() == schedule.get_config()
    assert S.get(data).get_config() == schedule.get_config()
    assert S.get(schedule) is schedule


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_core_spec_is_json_with_snake_case_name_and_every_argument(schedule):
    spec = json.loads(json.dumps(schedule._core_spec()))
    cls = type(schedule).__name__
    expected = {"ExponentialDecay": "exponential_decay", "InverseTimeDecay": "inverse_time_decay",
                "PiecewiseConstantDecay": "piecewise_constant_decay",
                "PolynomialDecay": "polynomial_decay", "CosineDecay": "cosine_decay",
                "CosineDecayRestarts": "cosine_decay_restarts"}[cls]
    assert spec.pop("name") == expected
    config = schedule.get_config()
    config.pop("name")
    assert spec == config


def test_keras_style_dict_deserializes():
    config = {"class_name": "PolynomialDecay",
              "config": {"cycle": False, "decay_steps": 10000, "end_learning_rate": 0.01,
                         "initial_learning_rate": 0.1, "name": None, "power": 0.5}}
    s = S.deserialize(config)  # the config from Keras's docstring, with "name": None
    assert s(10000) == pytest.approx(0.01) and s.name == "PolynomialDecay"
    with pytest.raises(TypeError, match="name"):
        S.PolynomialDecay(0.1, 10, name=3)
    with pytest.raises(ValueError, match="Unknown learning rate schedule"):
        S.deserialize({"class_name": "StepDecay", "config": {}})


def test_get_rejects_what_is_not_a_schedule():
    assert S.get(None) is None
    with pytest.raises(ValueError, match="needs arguments"):
        S.get("ExponentialDecay")
    with pytest.raises(TypeError, match="constant learning rate"):
        S.get(0.1)


def test_custom_python_schedule():
    class Halving(S.LearningRateSchedule):
        def __init__(self, lr):
            self.lr = lr

        def __call__(self, step):
            return self.lr / 2 ** step

        def get_config(self):
            return {"lr": self.lr}

    h = Halving(1.0)
    assert h(3) == 0.125
    assert S.deserialize(S.serialize(h), custom_objects={"Halving": Halving})(1) == 0.5
    with pytest.raises(TypeError, match="LearningRateScheduler"):
        h._core_spec()
    with pytest.raises(NotImplementedError, match="__call__"):
        S.LearningRateSchedule()(0)


# --- the engine evaluates the same schedule before each step ---------------------------------
def _sgd_reference(schedule, p0, grads):
    """Plain SGD in float32 with lr = schedule(step), step counted from 0."""
    p = np.asarray(p0, np.float32).copy()
    out = []
    for step, g in enumerate(grads):
        lr = np.float32(schedule(step))
        p = (p - lr * np.asarray(g, np.float32)).astype(np.float32)
        out.append(p.copy())
    return out


def _grads(n_steps, shape=(3, 2), seed=0):
    r = np.random.default_rng(seed)
    return [r.normal(size=shape).astype(np.float32) for _ in range(n_steps)]


ENGINE_CASES = ALL + [
    S.ExponentialDecay(0.5, 3, 0.5),
    S.PolynomialDecay(0.3, 7, 0.0, power=2.0),
    S.CosineDecay(0.2, 25),
    S.CosineDecayRestarts(0.3, 4, t_mul=2.0, m_mul=0.5, alpha=0.1),
    S.PiecewiseConstantDecay([2, 5, 9], [0.4, 0.2, 0.1, 0.05]),
    S.CosineDecay(0.0, 20, warmup_target=0.3, warmup_steps=6),
]


@pytest.mark.parametrize("schedule", ENGINE_CASES, ids=lambda s: type(s).__name__)
def test_engine_schedule_matches_python_formula(schedule):
    """The engine's Rust schedule, driven through an SGD spec, against the Python one."""
    from ferrax import _core

    spec = {"name": "sgd", "learning_rate": schedule._core_spec()}
    p0 = np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2)
    grads = _grads(40)
    try:
        got = _core.optimizer_run(json.dumps(spec), [p0], [[g] for g in grads])
    except ValueError as e:
        if "must be a number" in str(e):
            pytest.fail(f"the engine does not accept schedules yet (rebuild?): {e}")
        raise
    want = _sgd_reference(schedule, p0, grads)
    for step, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g[0], w, rtol=2e-7, atol=1e-7, err_msg=f"step {step}")


@pytest.mark.parametrize("schedule", ENGINE_CASES[:6], ids=lambda s: type(s).__name__)
def test_sgd_with_schedule_equals_sgd_steps_with_scheduled_rates(schedule):
    import ferrax
    import ferrax._testing as ft

    p0 = np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2)
    grads = _grads(30, seed=1)
    got = ft.optimizer_run(ferrax.optimizers.SGD(learning_rate=schedule), [p0],
                           [[g] for g in grads])
    want = _sgd_reference(schedule, p0, grads)
    for step, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g[0], w, rtol=2e-7, atol=1e-7, err_msg=f"step {step}")


def test_engine_rejects_bad_schedule_specs():
    from ferrax import _core

    p = [np.zeros(2, np.float32)]
    for bad, words in [({"name": "exponential_decay", "initial_learning_rate": 0.1,
                         "decay_steps": 0, "decay_rate": 0.5}, "decay_steps"),
                       ({"name": "step_decay"}, "unknown learning rate schedule")]:
        with pytest.raises(ValueError, match=words):
            _core.optimizer_run(json.dumps({"name": "sgd", "learning_rate": bad}), p,
                                [[np.ones(2, np.float32)]])


def test_reachable_as_keras_optimizers_schedules():
    """`keras.optimizers.schedules.X` works right after `import keras`; so must ferrax's."""
    import subprocess
    import sys

    code = ("import ferrax\n"
            "s = ferrax.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)\n"
            "print(s(10))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(0.05)


def test_optimizer_with_schedule_round_trips_through_its_config():
    import ferrax

    s = S.CosineDecay(0.0, 100, warmup_target=0.1, warmup_steps=10)
    opt = ferrax.optimizers.SGD(learning_rate=s, momentum=0.5)
    back = ferrax.optimizers.get(json.loads(json.dumps(ferrax.optimizers.serialize(opt))))
    assert back._core_spec() == opt._core_spec()
    assert back.learning_rate == s(0) == 0.0


def test_fit_with_a_schedule_uses_the_step_count_from_zero():
    """PiecewiseConstantDecay([4], [0.05, 0.0]): steps 0..4 use 0.05, later steps 0. So
    exactly five updates change the weights, however fit groups its batches."""
    import ferrax
    from ferrax import layers

    r = np.random.default_rng(0)
    x = r.normal(size=(64, 3)).astype(np.float32)
    y = r.normal(size=(64, 1)).astype(np.float32)
    ferrax.utils.set_random_seed(0)
    m = ferrax.Sequential([ferrax.Input(shape=(3,)), layers.Dense(1)])
    m.compile(optimizer=ferrax.optimizers.SGD(
        learning_rate=S.PiecewiseConstantDecay([4], [0.05, 0.0])), loss="mse")
    seen = [m.get_weights()]
    rec = ferrax.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(m.get_weights()))
    m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[rec])
    changed = [not all(np.array_equal(a, b) for a, b in zip(seen[i], seen[i + 1]))
               for i in range(len(seen) - 1)]
    assert changed == [True] * 5 + [False] * 3
    assert m.optimizer.iterations == 8
    assert m.optimizer.learning_rate == 0.0
