"""Conv2D, MaxPooling2D and AveragePooling2D (channels_last), forward and backward, against
float64 NumPy references written here from the Keras 3 / TensorFlow definitions.

The references are direct: a sum over kernel offsets of strided slices of the (zero- or
-inf-) padded input, and an explicit loop over pooling windows. Their gradients are checked
against central finite differences below, so they are validated independently of ferrax.
"""

import math
import re

import numpy as np
import pytest
import reference as ref
from hypothesis import assume, given, settings
from hypothesis import strategies as st


def _ft():
    import ferrax._testing as ft

    return ft


def _layers():
    import ferrax.layers

    return ferrax.layers


def all_of(*parts):
    """A regex (for pytest.raises(match=...)) that needs every part somewhere, in any order."""
    return "(?is)" + "".join(f"(?=.*{p})" for p in parts)


def any_of(*parts):
    return "(?:" + "|".join(parts) + ")"


def num(n):
    return r"(?<![\d.])" + re.escape(str(n)) + r"(?![\d.])"


TOL = dict(rtol=1e-4, atol=1e-5)

# --------------------------------------------------------------------------------------------
# float64 references


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def out_and_pads(n, k, stride, dilation, padding):
    """(output size, pad before, pad after) along one spatial axis, as TensorFlow computes them.

    "valid": floor((n - eff) / stride) + 1 with eff = (k - 1) * dilation + 1 (may be <= 0).
    "same": ceil(n / stride), total padding max((out - 1) * stride + eff - n, 0), the smaller
    half before (top / left).
    """
    eff = (k - 1) * dilation + 1
    if padding == "valid":
        return (n - eff) // stride + 1, 0, 0
    assert padding == "same"
    out = -(-n // stride)
    total = max((out - 1) * stride + eff - n, 0)
    return out, total // 2, total - total // 2


def _pad(x, pads, value):
    (t, b), (l, r) = pads
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def conv2d_forward_backward(x, kernel, bias, strides, padding, dilation, act=None, dy=None):
    """(y, dx, [dkernel(, dbias)]) of y = act(conv2d(x, kernel) + bias), cross-correlation as in
    Keras (no kernel flip), for the output cotangent dy (ones if None)."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    bsz, h, w, c = x.shape
    kh, kw, kc, f = kernel.shape
    assert kc == c
    (sh, sw), (dh, dw) = _pair(strides), _pair(dilation)
    oh, pt, pb = out_and_pads(h, kh, sh, dh, padding)
    ow, pl, pr = out_and_pads(w, kw, sw, dw, padding)
    assert oh > 0 and ow > 0
    xp = _pad(x, ((pt, pb), (pl, pr)), 0.0)

    def window(p, q):  # the input entries that kernel offset (p, q) meets: (b, oh, ow, c)
        r0, c0 = p * dh, q * dw
        return (slice(None), slice(r0, r0 + (oh - 1) * sh + 1, sh),
                slice(c0, c0 + (ow - 1) * sw + 1, sw), slice(None))

    z = np.zeros((bsz, oh, ow, f))
    for p in range(kh):
        for q in range(kw):
            z += np.einsum("bijc,cf->bijf", xp[window(p, q)], kernel[p, q])
    if bias is not None:
        z += np.asarray(bias, np.float64)
    name = act or "linear"
    y = ref.activation(name, z)
    dy = np.ones_like(y) if dy is None else np.asarray(dy, np.float64)
    dz = ref.activation_vjp(name, z, dy)
    dxp = np.zeros_like(xp)
    dk = np.zeros_like(kernel)
    for p in range(kh):
        for q in range(kw):
            dk[p, q] = np.einsum("bijc,bijf->cf", xp[window(p, q)], dz)
            dxp[window(p, q)] += np.einsum("bijf,cf->bijc", dz, kernel[p, q])
    dx = dxp[:, pt:pt + h, pl:pl + w, :]
    grads = [dk] + ([dz.sum(axis=(0, 1, 2))] if bias is not None else [])
    return y, dx, grads


def conv2d_forward(x, kernel, bias, strides, padding, dilation, act=None):
    return conv2d_forward_backward(x, kernel, bias, strides, padding, dilation, act)[0]


def pool2d_forward_backward(kind, x, pool, strides, padding, dy=None):
    """(y, dx) of TensorFlow's max / average pooling. "same" padding: padded positions never
    win the max; the average counts only the real elements of each window."""
    x = np.asarray(x, np.float64)
    bsz, h, w, c = x.shape
    (kh, kw) = _pair(pool)
    (sh, sw) = _pair(pool if strides is None else strides)
    oh, pt, _ = out_and_pads(h, kh, sh, 1, padding)
    ow, pl, _ = out_and_pads(w, kw, sw, 1, padding)
    assert oh > 0 and ow > 0
    y = np.zeros((bsz, oh, ow, c))
    dyy = np.ones_like(y) if dy is None else np.asarray(dy, np.float64)
    dx = np.zeros_like(x)
    for i in range(oh):
        r0, r1 = max(i * sh - pt, 0), min(i * sh - pt + kh, h)
        for j in range(ow):
            c0, c1 = max(j * sw - pl, 0), min(j * sw - pl + kw, w)
            assert r1 > r0 and c1 > c0  # every window holds a real element
            win = x[:, r0:r1, c0:c1, :]
            g = dyy[:, i, j, :]
            if kind == "max":
                flat = win.reshape(bsz, -1, c)
                arg = flat.argmax(axis=1)  # (b, c)
                y[:, i, j, :] = flat.max(axis=1)
                onehot = np.zeros_like(flat)
                np.put_along_axis(onehot, arg[:, None, :], 1.0, axis=1)
                dx[:, r0:r1, c0:c1, :] += (onehot * g[:, None, :]).reshape(win.shape)
            else:
                count = (r1 - r0) * (c1 - c0)
                y[:, i, j, :] = win.sum(axis=(1, 2)) / count
                dx[:, r0:r1, c0:c1, :] += g[:, None, None, :] / count
    return y, dx


# --------------------------------------------------------------------------------------------
# the references against finite differences (and the output-size rule against brute force)


def test_reference_output_sizes():
    # "same": the output covers every input position; the last window starts inside the input
    for n in range(1, 12):
        for k in range(1, 5):
            for s in range(1, 4):
                out, before, after = out_and_pads(n, k, s, 1, "same")
                assert out == math.ceil(n / s)
                assert 0 <= before <= after <= before + 1
                assert (out - 1) * s + k == n + before + after or before + after == 0
    assert out_and_pads(4, 3, 2, 1, "same") == (2, 0, 1)  # the extra pad goes bottom/right
    assert out_and_pads(5, 3, 1, 2, "same") == (5, 2, 2)
    assert out_and_pads(9, 3, 2, 1, "valid") == (4, 0, 0)
    assert out_and_pads(7, 3, 1, 2, "valid") == (3, 0, 0)


@pytest.mark.parametrize(
    "strides,padding,dilation,act",
    [(1, "valid", 1, None), ((2, 1), "same", 1, "tanh"), (1, "same", (2, 1), None),
     (3, "same", 1, None), (1, "valid", 2, "tanh")],
)
def test_reference_conv_gradients_match_finite_differences(strides, padding, dilation, act):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 4, 2))
    kernel = rng.normal(size=(3, 2, 2, 3))
    bias = rng.normal(size=3)
    y, dx, (dk, db) = conv2d_forward_backward(x, kernel, bias, strides, padding, dilation, act)
    dy = rng.normal(size=y.shape)
    y, dx, (dk, db) = conv2d_forward_backward(x, kernel, bias, strides, padding, dilation, act, dy)

    def obj(xx, kk, bb):
        return float(np.sum(conv2d_forward(xx, kk, bb, strides, padding, dilation, act) * dy))

    what = f"reference conv2d(strides={strides}, {padding}, dilation={dilation}, {act})"
    tol = dict(rtol=1e-6, atol=1e-8)
    ref.assert_close(dx, ref.numerical_grad(lambda v: obj(v, kernel, bias), x), **tol,
                     what=what + " dx")
    ref.assert_close(dk, ref.numerical_grad(lambda v: obj(x, v, bias), kernel), **tol,
                     what=what + " dkernel")
    ref.assert_close(db, ref.numerical_grad(lambda v: obj(x, kernel, v), bias), **tol,
                     what=what + " dbias")


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 2, "same"),
                                                  ((2, 3), (1, 2), "same"), (3, 1, "valid")])
def test_reference_pool_gradients_match_finite_differences(kind, pool, strides, padding):
    rng = np.random.default_rng(5)
    x = _distinct((2, 5, 6, 2), rng).astype(np.float64)
    y, _ = pool2d_forward_backward(kind, x, pool, strides, padding)
    dy = rng.normal(size=y.shape)
    _, dx = pool2d_forward_backward(kind, x, pool, strides, padding, dy)
    num_dx = ref.numerical_grad(
        lambda v: float(np.sum(pool2d_forward_backward(kind, v, pool, strides, padding)[0] * dy)),
        x, eps=1e-7)
    ref.assert_close(dx, num_dx, rtol=1e-6, atol=1e-7, what=f"reference {kind} pool dx")


def test_reference_conv_is_a_dense_for_1x1_and_matches_a_direct_sum():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 3, 4, 3))
    kernel = rng.normal(size=(1, 1, 3, 5))
    y = conv2d_forward(x, kernel, None, 1, "valid", 1)
    np.testing.assert_allclose(y, x @ kernel[0, 0], rtol=1e-12)
    # a direct six-fold sum, for a strided, padded, dilated case
    kernel = rng.normal(size=(2, 3, 3, 2))
    x = rng.normal(size=(1, 5, 6, 3))
    for strides, dil, padding in (((2, 3), 1, "same"), (1, (2, 2), "same"), (2, 1, "valid")):
        y = conv2d_forward(x, kernel, None, strides, padding, dil)
        (sh, sw), (dh, dw) = _pair(strides), _pair(dil)
        _, pt, _ = out_and_pads(5, 2, sh, dh, padding)
        _, pl, _ = out_and_pads(6, 3, sw, dw, padding)
        want = np.zeros_like(y)
        for i in range(y.shape[1]):
            for j in range(y.shape[2]):
                for p in range(2):
                    for q in range(3):
                        r, c = i * sh + p * dh - pt, j * sw + q * dw - pl
                        if 0 <= r < 5 and 0 <= c < 6:
                            want[0, i, j] += x[0, r, c] @ kernel[p, q]
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Conv2D against the reference


def _distinct(shape, rng):
    """Distinct values (no ties for max pooling), spread over about [-2, 2]."""
    n = int(np.prod(shape))
    vals = (rng.permutation(n) - n / 2) / max(n / 4, 1) + rng.uniform(-0.01, 0.01, n)
    return vals.reshape(shape).astype(np.float32)


def _check_conv(x, kernel, bias, dy, strides, padding, dilation, act=None):
    f = kernel.shape[3]
    kw = dict(strides=strides, padding=padding, dilation_rate=dilation, activation=act,
              use_bias=bias is not None)
    layer = _layers().Conv2D(f, kernel.shape[:2], **kw)
    weights = [kernel] + ([bias] if bias is not None else [])
    y, dx, grads = _ft().layer_forward_backward(layer, x, dy, weights=weights)
    want_y, want_dx, want_grads = conv2d_forward_backward(
        x, kernel, bias, strides, padding, dilation, act, dy)
    what = (f"Conv2D({f}, {kernel.shape[:2]}, {kw}) on x.shape={x.shape}; "
            f"x={x.tolist()}, kernel={kernel.tolist()}, "
            f"bias={None if bias is None else bias.tolist()}, dy={dy.tolist()}")
    assert y.dtype == np.float32 and dx.dtype == np.float32
    ref.assert_close(y, want_y, **TOL, what="y: " + what)
    ref.assert_close(dx, want_dx, **TOL, what="dx: " + what)
    assert len(grads) == len(want_grads), f"{len(grads)} parameter gradients: {what}"
    for name, g, w in zip(("kernel", "bias"), grads, want_grads):
        ref.assert_close(g, w, **TOL, what=f"d{name}: " + what)


@st.composite
def conv_case(draw):
    b, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    c, f = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    padding = draw(st.sampled_from(["valid", "same"]))
    if draw(st.booleans()):
        strides, dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3))), (1, 1)
    else:
        strides, dilation = (1, 1), (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if draw(st.booleans()):  # sometimes the int forms
        strides = strides[0] if strides[0] == strides[1] else strides
        dilation = dilation[0] if dilation[0] == dilation[1] else dilation
    oh = out_and_pads(h, kh, _pair(strides)[0], _pair(dilation)[0], padding)[0]
    ow = out_and_pads(w, kw, _pair(strides)[1], _pair(dilation)[1], padding)[0]
    assume(oh > 0 and ow > 0)
    use_bias = draw(st.booleans())
    act = draw(st.sampled_from([None, None, "relu"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (b, h, w, c)).astype(np.float32)
    kernel = rng.uniform(-1, 1, (kh, kw, c, f)).astype(np.float32)
    bias = rng.uniform(-1, 1, f).astype(np.float32) if use_bias else None
    dy = rng.normal(size=(b, oh, ow, f)).astype(np.float32)
    return x, kernel, bias, dy, strides, padding, dilation, act


@settings(max_examples=25, deadline=None)
@given(case=conv_case())
def test_conv2d_matches_reference(case):
    x, kernel, bias, dy, strides, padding, dilation, act = case
    if act == "relu":  # keep pre-activations off the kink
        z = conv2d_forward(x, kernel, bias, strides, padding, dilation)
        assume(np.all(np.abs(z) > 1e-3))
    _check_conv(x, kernel, bias, dy, strides, padding, dilation, act)


def test_conv2d_1x1_is_dense_over_channels():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 3)).astype(np.float32)
    kernel = rng.normal(size=(1, 1, 3, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    dy = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    y, dx, grads = _ft().layer_forward_backward(
        _layers().Conv2D(5, 1), x, dy, weights=[kernel, bias])
    want_y, want_dx, want_grads = ref.dense_forward_backward(
        x.reshape(-1, 3), kernel[0, 0], bias, None, dy.reshape(-1, 5))
    ref.assert_close(y, want_y.reshape(2, 3, 4, 5), **TOL, what="1x1 Conv2D y vs Dense")
    ref.assert_close(dx, want_dx.reshape(x.shape), **TOL, what="1x1 Conv2D dx vs Dense")
    ref.assert_close(grads[0], want_grads[0].reshape(1, 1, 3, 5), **TOL,
                     what="1x1 Conv2D dkernel vs Dense")
    ref.assert_close(grads[1], want_grads[1], **TOL, what="1x1 Conv2D dbias vs Dense")
    # and the same numbers as ferrax's own Dense on the flattened pixels
    yd, dxd, gd = _ft().layer_forward_backward(
        _layers().Dense(5), x.reshape(-1, 3), dy.reshape(-1, 5), weights=[kernel[0, 0], bias])
    np.testing.assert_allclose(y.reshape(-1, 5), yd, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx.reshape(-1, 3), dxd, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads[0].reshape(3, 5), gd[0], rtol=1e-5, atol=1e-5)


def test_conv2d_hand_computed_3x3_valid():
    # x[i, j] = 4i + j; y[i, j] = x[i, j] + 2 x[i, j+1] - x[i+2, j+2] + 1 = 8i + 2j - 7
    # (cross-correlation: a flipped kernel would give other numbers)
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    k = np.zeros((3, 3, 1, 1), np.float32)
    k[0, 0], k[0, 1], k[2, 2] = 1.0, 2.0, -1.0
    y, dx, (dk, db) = _ft().layer_forward_backward(
        _layers().Conv2D(1, (3, 3)), x, weights=[k, np.ones(1, np.float32)])
    np.testing.assert_allclose(y[0, :, :, 0], [[-7.0, -5.0], [1.0, 3.0]], atol=1e-5)
    # dy = ones: dx[r, c] = sum of the kernel entries that touch (r, c)
    want_dx = np.zeros((4, 4))
    for i in range(2):
        for j in range(2):
            want_dx[i:i + 3, j:j + 3] += k[:, :, 0, 0]
    np.testing.assert_allclose(dx[0, :, :, 0], want_dx, atol=1e-5)
    # dkernel[p, q] = sum of the 2x2 block of x at offset (p, q)
    want_dk = [[x[0, p:p + 2, q:q + 2, 0].sum() for q in range(3)] for p in range(3)]
    np.testing.assert_allclose(dk[:, :, 0, 0], want_dk, rtol=1e-6)
    np.testing.assert_allclose(db, [4.0], rtol=1e-6)


def test_conv2d_hand_computed_3x3_same():
    # all-ones 3x3 kernel, "same": each output is the sum of its 3x3 neighbourhood
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    sums = [[12.0, 21.0, 16.0], [27.0, 45.0, 33.0], [24.0, 39.0, 28.0]]
    y, dx, (dk, db) = _ft().layer_forward_backward(
        _layers().Conv2D(1, 3, padding="same", kernel_initializer="ones"), x)
    np.testing.assert_allclose(y[0, :, :, 0], sums, rtol=1e-6)
    np.testing.assert_allclose(dx[0, :, :, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]], rtol=1e-6)
    np.testing.assert_allclose(dk[:, :, 0, 0], sums, rtol=1e-6)  # the same sums, by symmetry
    np.testing.assert_allclose(db, [9.0], rtol=1e-6)


def test_conv2d_same_padding_puts_the_extra_pad_after():
    # width 4, kernel 3, stride 2: output 2, one pad column, on the right (TensorFlow's split)
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(1, 1, 4, 1)
    k = np.array([1.0, 10.0, 100.0], np.float32).reshape(1, 3, 1, 1)
    y, _, _ = _ft().layer_forward_backward(
        _layers().Conv2D(1, (1, 3), strides=2, padding="same", use_bias=False), x, weights=[k])
    np.testing.assert_allclose(y.reshape(-1), [321.0, 43.0], rtol=1e-6)


def test_conv2d_relu():
    rng = np.random.default_rng(21)
    x = rng.uniform(-2, 2, (2, 6, 5, 3)).astype(np.float32)
    kernel = rng.uniform(-1, 1, (3, 2, 3, 4)).astype(np.float32)
    bias = rng.uniform(-0.5, 0.5, 4).astype(np.float32)
    z = conv2d_forward(x, kernel, bias, 1, "same", 1)
    assert np.all(np.abs(z) > 1e-3) and (z > 0).mean() > 0.2 and (z < 0).mean() > 0.2
    dy = rng.normal(size=z.shape).astype(np.float32)
    _check_conv(x, kernel, bias, dy, 1, "same", 1, "relu")
    y, _, _ = _ft().layer_forward_backward(
        _layers().Conv2D(4, (3, 2), padding="same", activation="relu"), x,
        weights=[kernel, bias])
    assert np.all(y >= 0) and np.sum(y == 0) == np.sum(z < 0)


def test_conv2d_default_initialization_and_shapes():
    layer = _layers().Conv2D(3, 2)
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 4)).astype(np.float32)
    y, dx, grads = _ft().layer_forward_backward(layer, x, seed=3)
    assert y.shape == (2, 4, 4, 3) and dx.shape == x.shape
    assert [g.shape for g in grads] == [(2, 2, 4, 3), (3,)]
    np.testing.assert_allclose(grads[1], np.full(3, 32.0), rtol=1e-6)  # dy = ones: 2*4*4
    # glorot_uniform over fans (2*2*4, 2*2*3): y = conv(x, kernel) with a zero bias
    limit = math.sqrt(6 / (16 + 12))
    e = np.zeros((1, 2, 2, 4), np.float32)
    e[0, 0, 0, 0] = 1.0  # picks kernel[0, 0, 0, :]
    k000, _, _ = _ft().layer_forward_backward(_layers().Conv2D(3, 2), e, seed=3)
    assert np.all(np.abs(k000) <= limit * (1 + 1e-6)) and np.abs(k000).max() > 0


# --------------------------------------------------------------------------------------------
# pooling against the reference


@st.composite
def pool_case(draw):
    b, h, w, c = (draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)),
                  draw(st.integers(1, 4)))
    pool = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    if draw(st.booleans()):
        pool = pool[0]
    strides = draw(st.one_of(st.none(), st.integers(1, 3),
                             st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = draw(st.sampled_from(["valid", "same"]))
    ph, pw = _pair(pool)
    sh, sw = _pair(pool if strides is None else strides)
    oh, ow = out_and_pads(h, ph, sh, 1, padding)[0], out_and_pads(w, pw, sw, 1, padding)[0]
    assume(oh > 0 and ow > 0)
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = _distinct((b, h, w, c), rng)
    dy = rng.normal(size=(b, oh, ow, c)).astype(np.float32)
    return x, dy, pool, strides, padding


@pytest.mark.parametrize("kind", ["max", "avg"])
@settings(max_examples=25, deadline=None)
@given(case=pool_case())
def test_pooling_matches_reference(kind, case):
    x, dy, pool, strides, padding = case
    cls = _layers().MaxPooling2D if kind == "max" else _layers().AveragePooling2D
    layer = cls(pool_size=pool, strides=strides, padding=padding)
    y, dx, grads = _ft().layer_forward_backward(layer, x, dy)
    want_y, want_dx = pool2d_forward_backward(kind, x, pool, strides, padding, dy)
    what = (f"{cls.__name__}(pool_size={pool}, strides={strides}, padding={padding!r}) on "
            f"x.shape={x.shape}; x={x.tolist()}, dy={dy.tolist()}")
    assert len(grads) == 0, what
    ref.assert_close(y, want_y, **TOL, what="y: " + what)
    ref.assert_close(dx, want_dx, **TOL, what="dx: " + what)


def test_pooling_hand_computed():
    L, ft = _layers(), _ft()
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    y, dx, _ = ft.layer_forward_backward(L.MaxPooling2D(2), x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[5, 7], [13, 15]])
    want = np.zeros((4, 4), np.float32)
    want[1::2, 1::2] = 1.0
    np.testing.assert_array_equal(dx[0, :, :, 0], want)
    y, dx, _ = ft.layer_forward_backward(L.AveragePooling2D(2), x)
    np.testing.assert_allclose(y[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]], rtol=1e-6)
    np.testing.assert_allclose(dx, np.full(x.shape, 0.25), rtol=1e-6)
    # "same" on 3x3 with pool 2: one pad row / column at the bottom / right
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    y, _, _ = ft.layer_forward_backward(L.MaxPooling2D(2, padding="same"), x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[5, 6], [8, 9]])
    # padded positions never win the max, even when every real value is negative
    y, dx, _ = ft.layer_forward_backward(L.MaxPooling2D(2, padding="same"), -x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[-1, -3], [-7, -9]])
    np.testing.assert_array_equal(
        dx[0, :, :, 0], [[1, 0, 1], [0, 0, 0], [1, 0, 1]])
    # the average counts only the real elements of each window
    y, dx, _ = ft.layer_forward_backward(L.AveragePooling2D(2, padding="same"), x)
    np.testing.assert_allclose(y[0, :, :, 0], [[3.0, 4.5], [7.5, 9.0]], rtol=1e-6)
    np.testing.assert_allclose(
        dx[0, :, :, 0], [[0.25, 0.25, 0.5], [0.25, 0.25, 0.5], [0.5, 0.5, 1.0]], rtol=1e-6)


# --------------------------------------------------------------------------------------------
# errors


def test_conv2d_on_rank_2_input_names_the_layer():
    import ferrax

    L = _layers()
    with pytest.raises(ValueError, match=r"my_conv"):
        m = ferrax.Sequential([L.Conv2D(2, 3, input_shape=(5,), name="my_conv")])
        m.summary(print_fn=lambda *a, **k: None)
        m.predict(np.zeros((2, 5), np.float32), verbose=0)
    with pytest.raises(ValueError, match=r"my_conv"):
        _ft().layer_forward_backward(L.Conv2D(2, 3, name="my_conv"), np.zeros((2, 5), np.float32))


def test_conv2d_kernel_larger_than_input():
    import ferrax

    L = _layers()
    msg = all_of(any_of("kernel", "input", "size"), num(6), num(4))
    with pytest.raises(ValueError, match=msg):
        m = ferrax.Sequential([L.Conv2D(2, 6, input_shape=(4, 4, 1))])
        m.summary(print_fn=lambda *a, **k: None)
        m.predict(np.zeros((2, 4, 4, 1), np.float32), verbose=0)
    with pytest.raises(ValueError, match=msg):
        _ft().layer_forward_backward(L.Conv2D(2, 6), np.zeros((1, 4, 4, 1), np.float32))
    # "same" padding has no such limit
    y, _, _ = _ft().layer_forward_backward(
        L.Conv2D(2, 6, padding="same"), np.ones((1, 4, 4, 1), np.float32))
    assert y.shape == (1, 4, 4, 2)


def test_conv2d_filters_must_be_positive():
    with pytest.raises(ValueError, match=r"(?i)filters"):
        _layers().Conv2D(0, 3)
    with pytest.raises(ValueError, match=r"(?i)filters"):
        _layers().Conv2D(-2, 3)


@pytest.mark.parametrize("cls", ["Conv2D", "MaxPooling2D", "AveragePooling2D"])
def test_bad_padding(cls):
    L = _layers()
    with pytest.raises(ValueError, match=r"(?i)padding"):
        if cls == "Conv2D":
            L.Conv2D(2, 3, padding="bogus")
        else:
            getattr(L, cls)(2, padding="bogus")


# --------------------------------------------------------------------------------------------
# end to end


def _summary_text(model):
    lines = []
    model.summary(print_fn=lambda s, *a, **k: lines.append(str(s)))
    return "\n".join(lines)


def test_small_cnn_learns_top_vs_bottom():
    import ferrax

    L = _layers()
    ferrax.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = 200
    labels = rng.integers(0, 2, n)
    x = rng.uniform(0.0, 0.3, (n, 8, 8, 1))
    for i in range(n):  # class 0: bright top half, class 1: bright bottom half
        rows = slice(0, 4) if labels[i] == 0 else slice(4, 8)
        x[i, rows] += rng.uniform(0.5, 1.0)
    x = x.astype(np.float32)
    model = ferrax.Sequential([
        L.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(2, activation="softmax"),
    ])
    text = _summary_text(model)
    assert "(None, 6, 6, 4)" in text and "(None, 3, 3, 4)" in text, text
    assert re.search(r"(?m)^.*Conv2D.*\b40\b", text), text  # 3*3*1*4 + 4
    assert re.search(r"Total params:\s*114\b", text), text  # 40 + 36*2 + 2
    model.compile(optimizer=ferrax.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, labels, epochs=5, batch_size=16, verbose=0)
    _, acc = model.evaluate(x, labels, verbose=0)
    assert acc >= 0.95, f"accuracy {acc}"
    pred = model.predict(x[:5], verbose=0)
    assert pred.shape == (5, 2)
