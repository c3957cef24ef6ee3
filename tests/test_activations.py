"""Activations: forward and backward of every Keras activation against float64 references."""

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

ACTS = ref.ACTIVATIONS  # the Keras names, incl. swish / silu, softmax / log_softmax


def _ft():
    import ferrax._testing as ft

    return ft


def _activation_fn(name):
    import ferrax.activations

    return getattr(ferrax.activations, name)


@st.composite
def x_and_dy(draw, lo=-5.0, hi=5.0):
    rank = draw(st.sampled_from([2, 2, 3]))
    shape = (draw(st.integers(1, 8)),)
    if rank == 3:
        shape += (draw(st.integers(1, 4)),)
    shape += (draw(st.integers(1, 12)),)
    el = st.floats(lo, hi, width=32, allow_nan=False, allow_subnormal=False)
    x = draw(hnp.arrays(np.float32, shape, elements=el))
    dy = draw(hnp.arrays(np.float32, shape, elements=st.floats(-5, 5, width=32)))
    return x, dy


def _prepare(name, x):
    # keep inputs off the kinks (relu at 0, hard_sigmoid at +-3, ...) where the derivative
    # is undefined; after rounding to float32 the reference sees exactly what ferrax sees
    return ref.away_from_kinks(name, x).astype(np.float32)


def _check(name, spec, x, dy, rtol_y=2e-5, atol_y=2e-6, rtol_dx=1e-4, atol_dx=1e-5):
    x = _prepare(name, x)
    y, dx = _ft().activation_forward_backward(spec, x, dy)
    assert isinstance(y, np.ndarray) and isinstance(dx, np.ndarray)
    assert y.dtype == np.float32 and dx.dtype == np.float32, (y.dtype, dx.dtype)
    x64, dy64 = x.astype(np.float64), np.asarray(dy, dtype=np.float64)
    ref.assert_close(
        y,
        ref.activation(name, x64),
        rtol=rtol_y,
        atol=atol_y,
        what=f"{name} forward, x={x.tolist()}",
    )
    ref.assert_close(
        dx,
        ref.activation_vjp(name, x64, dy64),
        rtol=rtol_dx,
        atol=atol_dx,
        what=f"{name} backward, x={x.tolist()}, dy={np.asarray(dy).tolist()}",
    )


@pytest.mark.parametrize("name", ACTS)
@settings(max_examples=30, deadline=None)
@given(data=x_and_dy())
def test_activation_by_name(name, data):
    x, dy = data
    _check(name, name, x, dy)


@pytest.mark.parametrize("name", ACTS)
@settings(max_examples=10, deadline=None)
@given(data=x_and_dy())
def test_activation_by_function(name, data):
    x, dy = data
    _check(name, _activation_fn(name), x, dy)


# Inputs far from 0, where naive exp / log formulas overflow or lose everything in float32.
STABLE = [
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "softplus",
    "softsign",
    "silu",
    "swish",
    "elu",
    "selu",
    "gelu",
    "hard_sigmoid",
]


@pytest.mark.parametrize("name", STABLE)
@settings(max_examples=20, deadline=None)
@given(data=x_and_dy(lo=-90.0, hi=90.0))
def test_activation_large_inputs_are_stable(name, data):
    x, dy = data
    # absolute errors scale with |x| here (e.g. log_softmax = x - logsumexp(x))
    scale = max(1.0, float(np.max(np.abs(x))))
    _check(name, name, x, dy, atol_y=2e-6 * scale, atol_dx=2e-5 * scale)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_acts_on_last_axis(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    y, _ = _ft().activation_forward_backward(name, x, dy)
    s = np.exp(y) if name == "log_softmax" else y
    np.testing.assert_allclose(s.sum(axis=-1), np.ones((2, 3)), rtol=1e-5)
    _check(name, name, x, dy)


def test_swish_is_silu():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5)).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    a = _ft().activation_forward_backward("swish", x, dy)
    b = _ft().activation_forward_backward("silu", x, dy)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_keras3_specific_definitions():
    """Spot values that tell Keras 3's definitions from look-alikes."""
    x = np.array([[-1.0, 1.0, 2.0, -4.0]], dtype=np.float32)
    dy = np.ones_like(x)
    ft = _ft()
    y, dx = ft.activation_forward_backward("leaky_relu", x, dy)
    np.testing.assert_allclose(y[0, 0], -0.2, rtol=1e-6)  # slope 0.2, not 0.01 or 0.3
    np.testing.assert_allclose(dx[0, 0], 0.2, rtol=1e-6)
    y, _ = ft.activation_forward_backward("hard_sigmoid", x, dy)
    np.testing.assert_allclose(y[0, :3], [1 / 3, 2 / 3, 5 / 6], rtol=1e-6)  # x/6 + 1/2
    y, _ = ft.activation_forward_backward("gelu", x, dy)
    np.testing.assert_allclose(y[0, 1], ref.activation("gelu", np.array(1.0)), rtol=1e-6)


# ---- the references themselves, against central finite differences (float64) ----


@pytest.mark.parametrize("name", ACTS + ["gelu_approximate"])
def test_reference_activation_gradient_matches_finite_differences(name):
    rng = np.random.default_rng(42)
    x = ref.away_from_kinks(name, rng.uniform(-5, 5, size=(3, 6)), margin=1e-2)
    dy = rng.normal(size=x.shape)
    num = ref.numerical_grad(lambda v: float(np.sum(ref.activation(name, v) * dy)), x)
    ref.assert_close(
        ref.activation_vjp(name, x, dy),
        num,
        rtol=1e-6,
        atol=1e-8,
        what=f"reference {name} vjp vs finite differences",
    )
