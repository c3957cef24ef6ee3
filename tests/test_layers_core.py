"""Core layers: Dense, Activation, Flatten, Reshape, Dropout, forward and backward, and the
regularizers' losses and gradients, against float64 references (tests/reference.py)."""

import math

import numpy as np
import pytest
import reference as ref
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def _ft():
    import ferrax._testing as ft

    return ft


def _layers():
    import ferrax.layers

    return ferrax.layers


def _reg(spec):
    """spec: None or (class name, l1, l2) -> a ferrax regularizer."""
    if spec is None:
        return None
    import ferrax.regularizers as R

    cls, l1, l2 = spec
    if cls == "L1":
        return R.L1(l1=l1)
    if cls == "L2":
        return R.L2(l2=l2)
    return R.L1L2(l1=l1, l2=l2)


def _arr(shape, lo, hi):
    return hnp.arrays(
        np.float32, shape, elements=st.floats(lo, hi, width=32, allow_subnormal=False)
    )


def _off_zero(w, margin=1e-3):
    # L1's |w| has no derivative at 0: keep weights away from it
    w = np.asarray(w, dtype=np.float32)
    return np.where(np.abs(w) < margin, np.float32(10 * margin), w).astype(np.float32)


DENSE_ACTIVATIONS = [None] + ref.ACTIVATIONS


@st.composite
def dense_case(draw):
    b, i, u = draw(st.integers(1, 8)), draw(st.integers(1, 12)), draw(st.integers(1, 12))
    x = draw(_arr((b, i), -2, 2))
    kernel = draw(_arr((i, u), -1, 1))
    bias = draw(_arr((u,), -1, 1))
    dy = draw(_arr((b, u), -2, 2))
    return x, kernel, bias, dy


def _z_off_kinks(act, x, kernel, bias, margin=1e-4):
    """Reject draws whose pre-activation lies within `margin` of a kink of `act`."""
    kinks = ref.ACTIVATION_KINKS.get(act or "linear", ())
    if not kinks:
        return True
    z = x.astype(np.float64) @ kernel.astype(np.float64)
    if bias is not None:
        z = z + bias
    return all(np.all(np.abs(z - k) > margin) for k in kinks)


def _check_dense(act, use_bias, x, kernel, bias, dy, kreg=None, breg=None):
    bias = bias if use_bias else None
    layer = _layers().Dense(
        kernel.shape[1],
        activation=act,
        use_bias=use_bias,
        kernel_regularizer=_reg(kreg),
        bias_regularizer=_reg(breg),
    )
    weights = [kernel] + ([bias] if use_bias else [])
    with_reg = kreg is not None or breg is not None
    out = _ft().layer_forward_backward(
        layer, x, dy, weights=weights, include_regularization=with_reg
    )
    if with_reg:
        assert len(out) == 4
        y, dx, grads, reg_loss = out
    else:
        assert len(out) == 3
        y, dx, grads = out
    want_y, want_dx, want_grads = ref.dense_forward_backward(x, kernel, bias, act, dy)
    want_reg = 0.0
    for w, spec in ((kernel, kreg), (bias, breg)):
        if spec is not None and w is not None:
            want_reg += ref.regularizer_penalty(w, spec[1], spec[2])
    if kreg is not None:
        want_grads[0] = want_grads[0] + ref.regularizer_grad(kernel, kreg[1], kreg[2])
    if breg is not None and use_bias:
        want_grads[1] = want_grads[1] + ref.regularizer_grad(bias, breg[1], breg[2])
    what = f"Dense(activation={act}, use_bias={use_bias}, kreg={kreg}, breg={breg})"
    inputs = f"x={x.tolist()}, kernel={kernel.tolist()}, " + (
        "no bias" if bias is None else f"bias={bias.tolist()}"
    )
    tol = dict(rtol=1e-4, atol=2e-5)
    assert y.dtype == np.float32 and dx.dtype == np.float32
    ref.assert_close(y, want_y, **tol, what=f"{what} output; {inputs}")
    ref.assert_close(dx, want_dx, **tol, what=f"{what} input gradient; {inputs}")
    assert len(grads) == len(want_grads), f"{what}: {len(grads)} parameter gradients"
    for name, g, w in zip(("kernel", "bias"), grads, want_grads):
        ref.assert_close(g, w, **tol, what=f"{what} {name} gradient; {inputs}")
    if with_reg:
        assert isinstance(reg_loss, float)
        ref.assert_close(
            reg_loss, want_reg, rtol=2e-5, atol=1e-6, what=f"{what} regularization loss"
        )


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("act", DENSE_ACTIVATIONS, ids=str)
@settings(max_examples=15, deadline=None)
@given(case=dense_case())
def test_dense(act, use_bias, case):
    x, kernel, bias, dy = case
    assume(_z_off_kinks(act, x, kernel, bias if use_bias else None))
    _check_dense(act, use_bias, x, kernel, bias, dy)


REGS = [("L1", 0.01, 0.0), ("L2", 0.0, 0.01), ("L1L2", 0.02, 0.03), ("L2", 0.0, 0.5)]


@pytest.mark.parametrize(
    "kreg,breg",
    [(REGS[0], None), (REGS[1], None), (None, REGS[1]), (REGS[2], REGS[0]), (REGS[3], REGS[3])],
    ids=str,
)
@settings(max_examples=20, deadline=None)
@given(case=dense_case(), use_bias=st.booleans(), act=st.sampled_from([None, "tanh"]))
def test_dense_regularizers(kreg, breg, case, use_bias, act):
    x, kernel, bias, dy = case
    _check_dense(act, use_bias, x, _off_zero(kernel), _off_zero(bias), dy, kreg, breg)


def test_dense_default_initialization():
    # with x = I, y = kernel + bias: the kernel is glorot_uniform, the bias zeros
    i, u = 12, 7
    layer = _layers().Dense(u)
    y, _, grads = _ft().layer_forward_backward(layer, np.eye(i, dtype=np.float32), seed=4)
    limit = math.sqrt(6 / (i + u))
    assert y.shape == (i, u)
    assert np.all(np.abs(y) <= limit * (1 + 1e-6)) and np.abs(y).max() > 0.5 * limit
    y0, _, _ = _ft().layer_forward_backward(_layers().Dense(u), np.zeros((3, i), np.float32))
    np.testing.assert_array_equal(y0, np.zeros((3, u), np.float32))
    # dy = ones by default: d sum(y) / d kernel = x^T 1, d / d bias = batch size
    np.testing.assert_allclose(grads[0], np.ones((i, u)), rtol=1e-6)
    np.testing.assert_allclose(grads[1], np.full(u, float(i)), rtol=1e-6)
    # same seed, same kernel; another seed, another kernel
    y2, _, _ = _ft().layer_forward_backward(_layers().Dense(u), np.eye(i, dtype=np.float32), seed=4)
    y3, _, _ = _ft().layer_forward_backward(_layers().Dense(u), np.eye(i, dtype=np.float32), seed=5)
    np.testing.assert_array_equal(y, y2)
    assert not np.allclose(y, y3)


def test_dense_initializer_arguments():
    layer = _layers().Dense(3, kernel_initializer="ones", bias_initializer="ones")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    y, _, _ = _ft().layer_forward_backward(layer, x)
    np.testing.assert_allclose(y, x.sum(axis=1, keepdims=True) + np.ones((2, 3)), rtol=1e-6)


@pytest.mark.parametrize("act", ref.ACTIVATIONS)
@settings(max_examples=10, deadline=None)
@given(x=st.integers(1, 6).flatmap(lambda b: _arr((b, 7), -4, 4)), seed=st.integers(0, 99))
def test_activation_layer(act, x, seed):
    x = ref.away_from_kinks(act, x).astype(np.float32)
    dy = np.random.default_rng(seed).normal(size=x.shape).astype(np.float32)
    y, dx, grads = _ft().layer_forward_backward(_layers().Activation(act), x, dy)
    assert grads == [] or len(grads) == 0
    ref.assert_close(y, ref.activation(act, x), rtol=2e-5, atol=2e-6, what=f"Activation({act})")
    ref.assert_close(
        dx, ref.activation_vjp(act, x, dy), rtol=1e-4, atol=1e-5, what=f"Activation({act}) backward"
    )


@st.composite
def rank_3_4(draw):
    shape = (draw(st.integers(1, 5)),) + tuple(
        draw(st.lists(st.integers(1, 5), min_size=2, max_size=3))
    )
    x = draw(_arr(shape, -5, 5))
    dy_seed = draw(st.integers(0, 2**31))
    return x, dy_seed


@settings(max_examples=30, deadline=None)
@given(case=rank_3_4())
def test_flatten(case):
    x, s = case
    b = x.shape[0]
    dy = np.random.default_rng(s).normal(size=(b, x[0].size)).astype(np.float32)
    y, dx, grads = _ft().layer_forward_backward(_layers().Flatten(), x, dy)
    assert len(grads) == 0
    np.testing.assert_array_equal(y, x.reshape(b, -1))  # row-major, like Keras
    np.testing.assert_array_equal(dx, dy.reshape(x.shape))


@settings(max_examples=30, deadline=None)
@given(case=rank_3_4(), pick=st.integers(0, 5))
def test_reshape(case, pick):
    x, s = case
    b, inner = x.shape[0], x.shape[1:]
    n = int(np.prod(inner))
    targets = [(n,), (1, n), (n, 1), tuple(reversed(inner)), (inner[-1], -1), (-1,)]
    target = targets[pick]
    full = np.empty((b,) + inner).reshape((b,) + target).shape
    dy = np.random.default_rng(s).normal(size=full).astype(np.float32)
    y, dx, grads = _ft().layer_forward_backward(_layers().Reshape(target), x, dy)
    assert len(grads) == 0
    np.testing.assert_array_equal(y, x.reshape(full))
    np.testing.assert_array_equal(dx, dy.reshape(x.shape))


# ---- Dropout ----


def _dropout_input(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(np.float32)


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5, 0.8])
def test_dropout_training(rate):
    x = _dropout_input((64, 128))
    dy = _dropout_input(x.shape, seed=1)
    y, dx, grads = _ft().layer_forward_backward(
        _layers().Dropout(rate), x, dy, training=True, seed=9
    )
    assert len(grads) == 0
    keep = y != 0
    n = x.size
    dropped = 1.0 - keep.mean()
    assert abs(dropped - rate) < 5 * math.sqrt(rate * (1 - rate) / n) + 1e-3, (
        f"Dropout({rate}): dropped fraction {dropped:.4f}"
    )
    # kept units are scaled by 1 / (1 - rate); the gradient uses the same mask and scale
    ref.assert_close(
        y, ref.dropout_reference(x, keep, rate), rtol=1e-6, atol=0, what=f"Dropout({rate}) output"
    )
    ref.assert_close(
        dx,
        ref.dropout_reference(dy, keep, rate),
        rtol=1e-6,
        atol=0,
        what=f"Dropout({rate}) input gradient",
    )
    # the mask is not degenerate: rows and columns differ, no row or column all dropped / kept
    assert not np.array_equal(keep[0], keep[1]) and not np.array_equal(keep[:, 0], keep[:, 1])
    if 0.25 <= rate <= 0.5:  # 64 draws per column: all-kept / all-dropped is ~1e-8 likely
        col = keep.mean(axis=0)
        assert np.all(col > 0) and np.all(col < 1)
    assert abs(keep[:32].mean() - keep[32:].mean()) < 0.08


def test_dropout_seed():
    x = _dropout_input((16, 64))
    ft, L = _ft(), _layers()
    a = ft.layer_forward_backward(L.Dropout(0.5), x, training=True, seed=1)[0]
    b = ft.layer_forward_backward(L.Dropout(0.5), x, training=True, seed=1)[0]
    c = ft.layer_forward_backward(L.Dropout(0.5), x, training=True, seed=2)[0]
    np.testing.assert_array_equal(a, b)
    assert np.mean((a != 0) != (c != 0)) > 0.2, "seeds 1 and 2 give (nearly) the same mask"


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.9])
def test_dropout_inference_is_identity(rate):
    x = _dropout_input((8, 10))
    dy = _dropout_input(x.shape, seed=3)
    y, dx, _ = _ft().layer_forward_backward(_layers().Dropout(rate), x, dy, training=False)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, dy)


def test_dropout_rate_zero_in_training_is_identity():
    x = _dropout_input((8, 10))
    y, dx, _ = _ft().layer_forward_backward(_layers().Dropout(0.0), x, training=True)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, np.ones_like(x))


# ---- the references themselves, against central finite differences (float64) ----


def _reference_dense_fd_check(act, x, kernel, bias, dy, l1, l2, what):
    def objective(xx, kk, bb):
        return float(
            np.sum(ref.dense_forward(xx, kk, bb, act) * dy) + ref.regularizer_penalty(kk, l1, l2)
        )

    _, dx, grads = ref.dense_forward_backward(x, kernel, bias, act, dy)
    grads[0] = grads[0] + ref.regularizer_grad(kernel, l1, l2)
    num = ref.numerical_grad(lambda v: objective(v, kernel, bias), x)
    ref.assert_close(dx, num, rtol=1e-6, atol=1e-8, what=what + " dx")
    num = ref.numerical_grad(lambda v: objective(x, v, bias), kernel)
    ref.assert_close(grads[0], num, rtol=1e-6, atol=1e-8, what=what + " dkernel")
    if bias is not None:
        num = ref.numerical_grad(lambda v: objective(x, kernel, v), bias)
        ref.assert_close(grads[1], num, rtol=1e-6, atol=1e-8, what=what + " dbias")


@pytest.mark.parametrize("act", DENSE_ACTIVATIONS + ["gelu_approximate"], ids=str)
def test_reference_dense_gradients_match_finite_differences(act):
    rng = np.random.default_rng(17)
    checked = 0
    for use_bias, kreg in ((True, None), (False, None), (True, (0.01, 0.02))) * 2:
        b, i, u = 3, 4, 5
        x = rng.uniform(-2, 2, (b, i))
        kernel = _off_zero(rng.uniform(-1, 1, (i, u))).astype(np.float64)
        bias = rng.uniform(-1, 1, u) if use_bias else None
        dy = rng.normal(size=(b, u))
        if not _z_off_kinks(act, x, kernel, bias, margin=1e-3):
            continue
        l1, l2 = kreg or (0.0, 0.0)
        _reference_dense_fd_check(
            act, x, kernel, bias, dy, l1, l2, f"reference Dense({act}, bias={use_bias}, reg={kreg})"
        )
        checked += 1
    assert checked >= 3
