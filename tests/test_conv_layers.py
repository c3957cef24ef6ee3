"""Conv1D, grouped and channels_first Conv2D, DepthwiseConv2D, 1-D and global pooling,
ZeroPadding2D, Cropping2D, UpSampling2D and SpatialDropout, forward and backward, against
float64 NumPy references written here (or in test_conv.py) from the Keras 3 definitions.
"""

import re

import numpy as np
import pytest
import reference as ref
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_conv import _distinct, conv2d_forward_backward, out_and_pads, pool2d_forward_backward

import ferrax
import ferrax._testing as ft
from ferrax import layers as L

TOL = dict(rtol=1e-4, atol=1e-5)

# --------------------------------------------------------------------------------------------
# references


def conv1d_out_and_pads(n, k, stride, dilation, padding):
    """Keras: "causal" pads (k - 1) * dilation on the left, then convolves "valid"."""
    if padding == "causal":
        pad = (k - 1) * dilation
        return (n + pad - ((k - 1) * dilation + 1)) // stride + 1, pad, 0
    return out_and_pads(n, k, stride, dilation, padding)


def conv1d_forward_backward(x, kernel, bias, stride, padding, dilation, groups=1, dy=None):
    """Direct loops over taps and groups: y[b, t, f] = Σ x[b, t*s + j*d - pad, c] k[j, c, f]."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    bsz, n, c = x.shape
    k, cg, f = kernel.shape
    assert cg * groups == c and f % groups == 0
    fg = f // groups
    out, pad, _ = conv1d_out_and_pads(n, k, stride, dilation, padding)
    y = np.zeros((bsz, out, f))
    for t in range(out):
        for j in range(k):
            i = t * stride + j * dilation - pad
            if 0 <= i < n:
                for g in range(groups):
                    y[:, t, g * fg:(g + 1) * fg] += (x[:, i, g * cg:(g + 1) * cg]
                                                     @ kernel[j, :, g * fg:(g + 1) * fg])
    if bias is not None:
        y += bias
    dy = np.ones_like(y) if dy is None else np.asarray(dy, np.float64)
    dx, dk = np.zeros_like(x), np.zeros_like(kernel)
    for t in range(out):
        for j in range(k):
            i = t * stride + j * dilation - pad
            if 0 <= i < n:
                for g in range(groups):
                    cs, fs = slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)
                    dx[:, i, cs] += dy[:, t, fs] @ kernel[j, :, fs].T
                    dk[j, :, fs] += x[:, i, cs].T @ dy[:, t, fs]
    grads = [dk] + ([dy.sum(axis=(0, 1))] if bias is not None else [])
    return y, dx, grads


def grouped_conv2d_forward_backward(x, kernel, bias, strides, padding, dilation, groups, dy):
    """Each group: the plain conv2d reference on its slice of channels and filters."""
    c, f = x.shape[-1], kernel.shape[-1]
    cg, fg = c // groups, f // groups
    ys, dxs, dks = [], [], []
    for g in range(groups):
        fs = slice(g * fg, (g + 1) * fg)
        y, dx, (dk,) = conv2d_forward_backward(x[..., g * cg:(g + 1) * cg], kernel[..., fs],
                                               None, strides, padding, dilation, None,
                                               dy[..., fs])
        ys.append(y)
        dxs.append(dx)
        dks.append(dk)
    y = np.concatenate(ys, axis=-1) + (0 if bias is None else bias)
    grads = [np.concatenate(dks, axis=-1)] + ([dy.sum(axis=(0, 1, 2))] if bias is not None
                                              else [])
    return y, np.concatenate(dxs, axis=-1), grads


@pytest.mark.parametrize("stride,padding,dilation,groups",
                         [(1, "causal", 2, 1), (2, "same", 1, 2), (1, "valid", 1, 1)])
def test_reference_conv1d_gradients_match_finite_differences(stride, padding, dilation, groups):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 4))
    kernel = rng.normal(size=(3, 4 // groups, 4))
    bias = rng.normal(size=4)
    y, _, _ = conv1d_forward_backward(x, kernel, bias, stride, padding, dilation, groups)
    dy = rng.normal(size=y.shape)
    _, dx, (dk, _) = conv1d_forward_backward(x, kernel, bias, stride, padding, dilation,
                                             groups, dy)

    def obj(xx, kk):
        return float(np.sum(conv1d_forward_backward(
            xx, kk, bias, stride, padding, dilation, groups)[0] * dy))

    ref.assert_close(dx, ref.numerical_grad(lambda v: obj(v, kernel), x), rtol=1e-6,
                     atol=1e-8, what=f"reference conv1d dx {padding}")
    ref.assert_close(dk, ref.numerical_grad(lambda v: obj(x, v), kernel), rtol=1e-6,
                     atol=1e-8, what=f"reference conv1d dkernel {padding}")


def test_reference_conv1d_causal_sees_no_future():
    x = np.zeros((1, 6, 1))
    x[0, 3, 0] = 1.0
    y, _, _ = conv1d_forward_backward(x, np.ones((3, 1, 1)), None, 1, "causal", 1)
    np.testing.assert_array_equal(y[0, :, 0], [0, 0, 0, 1, 1, 1])


# --------------------------------------------------------------------------------------------
# Conv1D


@st.composite
def conv1d_case(draw):
    b, n = draw(st.integers(1, 3)), draw(st.integers(1, 10))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c, f = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    k = draw(st.integers(1, 4))
    padding = draw(st.sampled_from(["valid", "same", "causal"]))
    if draw(st.booleans()):
        stride, dilation = draw(st.integers(1, 3)), 1
    else:
        stride, dilation = 1, draw(st.integers(1, 3))
    out = conv1d_out_and_pads(n, k, stride, dilation, padding)[0]
    assume(out > 0)
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.uniform(-2, 2, (b, n, c)).astype(np.float32)
    kernel = rng.uniform(-1, 1, (k, c // groups, f)).astype(np.float32)
    bias = rng.uniform(-1, 1, f).astype(np.float32) if draw(st.booleans()) else None
    dy = rng.normal(size=(b, out, f)).astype(np.float32)
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    return x, kernel, bias, dy, stride, padding, dilation, groups, data_format


@settings(max_examples=30, deadline=None)
@given(case=conv1d_case())
def test_conv1d_matches_reference(case):
    x, kernel, bias, dy, stride, padding, dilation, groups, data_format = case
    layer = L.Conv1D(kernel.shape[2], kernel.shape[0], strides=stride, padding=padding,
                     dilation_rate=dilation, groups=groups, use_bias=bias is not None,
                     data_format=data_format)
    weights = [kernel] + ([bias] if bias is not None else [])
    first = data_format == "channels_first"
    y, dx, grads = ft.layer_forward_backward(layer, _to_first(x) if first else x,
                                             _to_first(dy) if first else dy, weights=weights)
    want_y, want_dx, want_grads = conv1d_forward_backward(x, kernel, bias, stride, padding,
                                                          dilation, groups, dy)
    if first:
        want_y, want_dx = np.moveaxis(want_y, -1, 1), np.moveaxis(want_dx, -1, 1)
    what = (f"Conv1D(k={kernel.shape}, strides={stride}, {padding}, dilation={dilation}, "
            f"groups={groups}, {data_format}) on {x.shape}")
    ref.assert_close(y, want_y, **TOL, what="y: " + what)
    ref.assert_close(dx, want_dx, **TOL, what="dx: " + what)
    assert len(grads) == len(want_grads)
    for g, w in zip(grads, want_grads):
        ref.assert_close(g, w, **TOL, what="grads: " + what)


def test_conv1d_shapes_and_summary():
    model = ferrax.Sequential([ferrax.Input((20, 3)), L.Conv1D(8, 5, padding="causal"),
                               L.Conv1D(4, 3, strides=2), L.MaxPooling1D(),
                               L.GlobalAveragePooling1D()])
    assert [l.output_shape for l in model.layers] == [(None, 20, 8), (None, 9, 4),
                                                      (None, 4, 4), (None, 4)]
    assert [w.shape for w in model.get_weights()] == [(5, 3, 8), (8,), (3, 8, 4), (4,)]


# --------------------------------------------------------------------------------------------
# Conv2D: groups, dilation and channels_first


@st.composite
def conv2d_case(draw):
    b, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    groups = draw(st.sampled_from([1, 2, 3]))
    c, f = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["valid", "same"]))
    if draw(st.booleans()):
        strides, dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))), (1, 1)
    else:
        strides, dilation = (1, 1), (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    oh = out_and_pads(h, kh, strides[0], dilation[0], padding)[0]
    ow = out_and_pads(w, kw, strides[1], dilation[1], padding)[0]
    assume(oh > 0 and ow > 0)
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.uniform(-2, 2, (b, h, w, c)).astype(np.float32)
    kernel = rng.uniform(-1, 1, (kh, kw, c // groups, f)).astype(np.float32)
    bias = rng.uniform(-1, 1, f).astype(np.float32) if draw(st.booleans()) else None
    dy = rng.normal(size=(b, oh, ow, f)).astype(np.float32)
    return x, kernel, bias, dy, strides, padding, dilation, groups, data_format


def _to_first(a):
    return np.ascontiguousarray(np.moveaxis(a, -1, 1))


@settings(max_examples=30, deadline=None)
@given(case=conv2d_case())
def test_conv2d_groups_dilation_and_data_format_match_reference(case):
    x, kernel, bias, dy, strides, padding, dilation, groups, data_format = case
    layer = L.Conv2D(kernel.shape[3], kernel.shape[:2], strides=strides, padding=padding,
                     dilation_rate=dilation, groups=groups, data_format=data_format,
                     use_bias=bias is not None)
    weights = [kernel] + ([bias] if bias is not None else [])
    first = data_format == "channels_first"
    xin, dyin = (_to_first(x), _to_first(dy)) if first else (x, dy)
    y, dx, grads = ft.layer_forward_backward(layer, xin, dyin, weights=weights)
    want_y, want_dx, want_grads = grouped_conv2d_forward_backward(
        x, kernel, bias, strides, padding, dilation, groups, dy)
    if first:
        want_y, want_dx = np.moveaxis(want_y, -1, 1), np.moveaxis(want_dx, -1, 1)
    what = (f"Conv2D(k={kernel.shape}, strides={strides}, {padding}, dilation={dilation}, "
            f"groups={groups}, {data_format}) on {xin.shape}")
    ref.assert_close(y, want_y, **TOL, what="y: " + what)
    ref.assert_close(dx, want_dx, **TOL, what="dx: " + what)
    for g, w in zip(grads, want_grads):
        ref.assert_close(g, w, **TOL, what="grads: " + what)


def test_conv2d_dilation_hand_computed():
    # dilation 2: y[i, j] = x[i, j] + x[i + 2, j + 2] for kernel [[1, 0], [0, 1]]
    x = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    k = np.array([[1, 0], [0, 1]], np.float32).reshape(2, 2, 1, 1)
    y, _, _ = ft.layer_forward_backward(L.Conv2D(1, 2, dilation_rate=2, use_bias=False), x,
                                        weights=[k])
    want = x[0, :3, :3, 0] + x[0, 2:, 2:, 0]
    np.testing.assert_array_equal(y[0, :, :, 0], want)


def test_conv2d_channels_first_shapes():
    model = ferrax.Sequential([ferrax.Input((3, 10, 8)),
                               L.Conv2D(6, 3, data_format="channels_first", groups=3),
                               L.MaxPooling2D(2, data_format="channels_first"),
                               L.GlobalAveragePooling2D(data_format="channels_first",
                                                        keepdims=True)])
    assert [l.output_shape for l in model.layers] == [(None, 6, 8, 6), (None, 6, 4, 3),
                                                      (None, 6, 1, 1)]
    assert [w.shape for w in model.get_weights()] == [(3, 3, 1, 6), (6,)]


def test_conv2d_groups_errors():
    with pytest.raises(ValueError, match=r"(?s)filters.*groups"):
        L.Conv2D(5, 3, groups=2)
    with pytest.raises(ValueError, match=r"(?s)my_conv.*groups.*3"):
        ferrax.Sequential([ferrax.Input((5, 5, 3)), L.Conv2D(4, 3, groups=2, name="my_conv")])
    with pytest.raises(TypeError, match="groups"):
        L.Conv2D(4, 3, groups=1.5)
    with pytest.raises(ValueError, match="data_format"):
        L.Conv2D(4, 3, data_format="NHWC")


# --------------------------------------------------------------------------------------------
# DepthwiseConv2D


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_depthwise_conv2d_matches_reference(data):
    c, dm = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    h, w = data.draw(st.integers(2, 6)), data.draw(st.integers(2, 6))
    k = data.draw(st.integers(1, 2))
    padding = data.draw(st.sampled_from(["valid", "same"]))
    strides = data.draw(st.integers(1, 2))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    x = rng.uniform(-2, 2, (2, h, w, c)).astype(np.float32)
    kernel = rng.uniform(-1, 1, (k, k, c, dm)).astype(np.float32)
    bias = rng.uniform(-1, 1, c * dm).astype(np.float32)
    oh = out_and_pads(h, k, strides, 1, padding)[0]
    ow = out_and_pads(w, k, strides, 1, padding)[0]
    dy = rng.normal(size=(2, oh, ow, c * dm)).astype(np.float32)
    layer = L.DepthwiseConv2D(k, strides=strides, padding=padding, depth_multiplier=dm)
    y, dx, (dk, db) = ft.layer_forward_backward(layer, x, dy, weights=[kernel, bias])
    # channel i, multiplier m -> output channel i * dm + m: conv of channel i with kernel[..., i, m]
    want_y = np.zeros(y.shape)
    want_dx, want_dk = np.zeros(x.shape), np.zeros(kernel.shape)
    for i in range(c):
        out = slice(i * dm, (i + 1) * dm)
        yi, dxi, (dki,) = conv2d_forward_backward(
            x[..., i:i + 1], kernel[:, :, i:i + 1, :], None, strides, padding, 1, None,
            dy[..., out])
        want_y[..., out], want_dx[..., i:i + 1], want_dk[:, :, i, :] = yi, dxi, dki[:, :, 0]
    want_y += bias
    what = f"DepthwiseConv2D({k}, strides={strides}, {padding}, dm={dm}) on {x.shape}"
    ref.assert_close(y, want_y, **TOL, what="y: " + what)
    ref.assert_close(dx, want_dx, **TOL, what="dx: " + what)
    ref.assert_close(dk, want_dk, **TOL, what="dkernel: " + what)
    ref.assert_close(db, dy.sum(axis=(0, 1, 2)), **TOL, what="dbias: " + what)


# --------------------------------------------------------------------------------------------
# pooling


@pytest.mark.parametrize("kind", ["max", "avg"])
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_pooling1d_matches_reference(kind, data):
    n, c = data.draw(st.integers(1, 10)), data.draw(st.integers(1, 3))
    pool = data.draw(st.integers(1, 4))
    strides = data.draw(st.one_of(st.none(), st.integers(1, 3)))
    padding = data.draw(st.sampled_from(["valid", "same"]))
    s = pool if strides is None else strides
    out = out_and_pads(n, pool, s, 1, padding)[0]
    assume(out > 0)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    x = _distinct((2, n, c), rng)
    dy = rng.normal(size=(2, out, c)).astype(np.float32)
    cls = L.MaxPooling1D if kind == "max" else L.AveragePooling1D
    first = data.draw(st.booleans())
    layer = cls(pool, strides, padding, data_format="channels_first" if first else None)
    y, dx, grads = ft.layer_forward_backward(layer, _to_first(x) if first else x,
                                             _to_first(dy) if first else dy)
    # a sequence is an image of height 1
    want_y, want_dx = pool2d_forward_backward(kind, x[:, None], (1, pool), (1, s), padding,
                                              dy[:, None])
    want_y, want_dx = want_y[:, 0], want_dx[:, 0]
    if first:
        want_y, want_dx = np.moveaxis(want_y, -1, 1), np.moveaxis(want_dx, -1, 1)
    what = f"{cls.__name__}({pool}, {strides}, {padding}, first={first}) on {x.shape}"
    assert grads == []
    ref.assert_close(y, want_y, **TOL, what="y: " + what)
    ref.assert_close(dx, want_dx, **TOL, what="dx: " + what)


def test_pooling1d_defaults():
    layer = L.MaxPooling1D()
    assert layer.get_config()["pool_size"] == [2] and layer.get_config()["strides"] == [2]
    x = np.array([1, 5, 2, 3, 9], np.float32).reshape(1, 5, 1)
    y, dx, _ = ft.layer_forward_backward(layer, x)
    np.testing.assert_array_equal(y.ravel(), [5, 3])
    np.testing.assert_array_equal(dx.ravel(), [0, 1, 0, 1, 0])


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_global_pooling_matches_reference(kind, rank, keepdims, data_format):
    rng = np.random.default_rng(rank * 10 + keepdims)
    shape = (3, 4, 5, 2) if rank == 2 else (3, 6, 2)
    x = _distinct(shape, rng)
    axes = tuple(range(1, rank + 1))
    if kind == "max":
        want = x.max(axis=axes, keepdims=True).astype(np.float64)
    else:
        want = x.astype(np.float64).mean(axis=axes, keepdims=True)
    dy_full = rng.normal(size=want.shape)
    if kind == "max":
        want_dx = (x == want) * dy_full
    else:
        want_dx = np.broadcast_to(dy_full / np.prod(shape[1:-1]), shape)
    y_ref = want if keepdims else want.reshape(3, -1)
    dy = dy_full if keepdims else dy_full.reshape(3, -1)
    if data_format == "channels_first":
        x, want_dx = _to_first(x), np.moveaxis(want_dx, -1, 1)
        if keepdims:
            y_ref, dy = np.moveaxis(y_ref, -1, 1), _to_first(dy)
    name = f"Global{'Max' if kind == 'max' else 'Average'}Pooling{rank}D"
    layer = getattr(L, name)(data_format=data_format, keepdims=keepdims)
    y, dx, _ = ft.layer_forward_backward(layer, x, dy.astype(np.float32))
    ref.assert_close(y, y_ref, **TOL, what=f"{name} y")
    ref.assert_close(dx, want_dx, **TOL, what=f"{name} dx")


def test_pooling_rank_errors_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"(?s)my_pool.*rank.*\[4, 4, 3\]"):
        ferrax.Sequential([ferrax.Input((4, 4, 3)), L.MaxPooling1D(name="my_pool")])
    with pytest.raises(ValueError, match=r"(?s)my_gap.*rank.*\[7\]"):
        ferrax.Sequential([ferrax.Input((7,)), L.GlobalAveragePooling2D(name="my_gap")])
    with pytest.raises(ValueError, match=r"(?s)my_pool.*\b5\b.*\b3\b"):
        ferrax.Sequential([ferrax.Input((3, 2)), L.MaxPooling1D(5, name="my_pool")])


# --------------------------------------------------------------------------------------------
# ZeroPadding2D, Cropping2D, UpSampling2D


@pytest.mark.parametrize("padding,want", [(1, ((1, 1), (1, 1))), ((2, 0), ((2, 2), (0, 0))),
                                          (((1, 2), (3, 0)), ((1, 2), (3, 0)))])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_zero_padding_and_cropping_match_numpy(padding, want, data_format):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    (t, b), (l, r) = want
    first = data_format == "channels_first"
    conv = _to_first if first else (lambda a: a)
    # padding
    want_y = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    dy = rng.normal(size=want_y.shape).astype(np.float32)
    y, dx, _ = ft.layer_forward_backward(L.ZeroPadding2D(padding, data_format=data_format),
                                         conv(x), conv(dy))
    np.testing.assert_array_equal(y, conv(want_y))
    np.testing.assert_array_equal(dx, conv(dy[:, t:t + 5, l:l + 6]))  # the adjoint: a crop
    # cropping: the same margins taken away
    want_y = x[:, t:5 - b, l:6 - r]
    dy = rng.normal(size=want_y.shape).astype(np.float32)
    y, dx, _ = ft.layer_forward_backward(L.Cropping2D(padding, data_format=data_format),
                                         conv(x), conv(dy))
    np.testing.assert_array_equal(y, conv(want_y))
    np.testing.assert_array_equal(dx, conv(np.pad(dy, ((0, 0), (t, b), (l, r), (0, 0)))))


@pytest.mark.parametrize("size", [2, (1, 3), (3, 2)])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_upsampling_matches_numpy(size, data_format):
    sh, sw = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 2)).astype(np.float32)
    want_y = np.repeat(np.repeat(x, sh, axis=1), sw, axis=2)
    dy = rng.normal(size=want_y.shape)
    want_dx = dy.reshape(2, 3, sh, 4, sw, 2).sum(axis=(2, 4))  # each pixel's block of copies
    conv = _to_first if data_format == "channels_first" else (lambda a: a)
    y, dx, _ = ft.layer_forward_backward(L.UpSampling2D(size, data_format=data_format),
                                         conv(x), conv(dy.astype(np.float32)))
    np.testing.assert_array_equal(y, conv(want_y))
    ref.assert_close(dx, conv(want_dx), **TOL, what="UpSampling2D dx")


def bilinear_weights(n, factor):
    """(out, in) matrix of 1-D linear interpolation with half-pixel centres, clamped."""
    m = np.zeros((n * factor, n))
    for o in range(n * factor):
        src = min(max((o + 0.5) / factor - 0.5, 0.0), n - 1)
        lo = int(np.floor(src))
        hi = min(lo + 1, n - 1)
        m[o, lo] += 1 - (src - lo)
        m[o, hi] += src - lo
    return m


def test_reference_bilinear_weights():
    m = bilinear_weights(2, 2)  # centres at -0.25, 0.25, 0.75, 1.25 -> clamped at the edges
    np.testing.assert_allclose(m, [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    np.testing.assert_allclose(bilinear_weights(5, 3).sum(1), 1.0)


@pytest.mark.parametrize("size", [2, (1, 3), (3, 2)])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_bilinear_upsampling_matches_reference(size, data_format):
    sh, sw = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 4, 2)).astype(np.float32)
    mh, mw = bilinear_weights(3, sh), bilinear_weights(4, sw)
    want_y = np.einsum("oh,pw,bhwc->bopc", mh, mw, x.astype(np.float64))
    dy = rng.normal(size=want_y.shape)
    want_dx = np.einsum("oh,pw,bopc->bhwc", mh, mw, dy)  # the transpose of a linear map
    conv = _to_first if data_format == "channels_first" else (lambda a: a)
    layer = L.UpSampling2D(size, data_format=data_format, interpolation="bilinear")
    y, dx, _ = ft.layer_forward_backward(layer, conv(x), conv(dy.astype(np.float32)))
    ref.assert_close(y, conv(want_y), **TOL, what="bilinear UpSampling2D y")
    ref.assert_close(dx, conv(want_dx), **TOL, what="bilinear UpSampling2D dx")


def test_reshaping_errors():
    with pytest.raises(ValueError, match=r"(?s)my_crop.*\b4\b"):
        ferrax.Sequential([ferrax.Input((4, 4, 1)), L.Cropping2D(2, name="my_crop")])
    with pytest.raises(ValueError, match="padding"):
        L.ZeroPadding2D((1, 2, 3))
    with pytest.raises(ValueError, match="cropping"):
        L.Cropping2D(-1)
    with pytest.raises(TypeError, match="padding"):
        L.ZeroPadding2D(1.5)
    with pytest.raises(NotImplementedError, match="bicubic"):
        L.UpSampling2D(interpolation="bicubic")
    with pytest.raises(ValueError, match="interpolation"):
        L.UpSampling2D(interpolation="cubic")
    with pytest.raises(ValueError, match=r"(?s)my_up.*rank"):
        ferrax.Sequential([ferrax.Input((4, 4)), L.UpSampling2D(name="my_up")])


# --------------------------------------------------------------------------------------------
# SpatialDropout2D


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_spatial_dropout_drops_whole_channels(data_format):
    rng = np.random.default_rng(2)
    x = rng.uniform(1, 2, size=(50, 3, 4, 8)).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    first = data_format == "channels_first"
    conv = _to_first if first else (lambda a: a)
    layer = L.SpatialDropout2D(0.4, data_format=data_format)
    y, dx, _ = ft.layer_forward_backward(layer, conv(x), conv(dy), training=True, seed=5)
    y = np.moveaxis(y, 1, -1) if first else y
    dx = np.moveaxis(dx, 1, -1) if first else dx
    ratio = y / x  # 0 or 1/(1 - rate), the same over all positions of a (sample, channel)
    kept = ratio[:, 0, 0, :] > 0
    np.testing.assert_allclose(
        ratio, np.broadcast_to(np.where(kept, 1 / 0.6, 0.0)[:, None, None, :], x.shape),
        rtol=1e-6)
    assert 0.25 < 1 - kept.mean() < 0.55  # about `rate` of the 400 channels dropped
    np.testing.assert_allclose(dx, dy * ratio, rtol=1e-6)
    # the same seed gives the same mask; inference is the identity
    y2, _, _ = ft.layer_forward_backward(layer, conv(x), conv(dy), training=True, seed=5)
    np.testing.assert_array_equal(np.moveaxis(y2, 1, -1) if first else y2, y)
    y, dx, _ = ft.layer_forward_backward(layer, conv(x), conv(dy), training=False)
    np.testing.assert_array_equal(y, conv(x))
    np.testing.assert_array_equal(dx, conv(dy))


def test_spatial_dropout_errors():
    with pytest.raises(ValueError, match="rate"):
        L.SpatialDropout2D(1.0)
    with pytest.raises(TypeError, match="rate"):
        L.SpatialDropout2D("half")
    with pytest.raises(ValueError, match=r"(?s)my_sd.*rank"):
        ferrax.Sequential([ferrax.Input((4, 4)), L.SpatialDropout2D(0.5, name="my_sd")])


# --------------------------------------------------------------------------------------------
# rank and channel errors in a model


def test_conv_channel_mismatch_with_set_weights_names_shapes():
    model = ferrax.Sequential([ferrax.Input((6, 6, 3)), L.Conv2D(4, 3, name="c")])
    with pytest.raises(ValueError, match=r"(?s)\(3, 3, 3, 4\).*\(3, 3, 2, 4\)"):
        model.layers[0].set_weights([np.zeros((3, 3, 2, 4)), np.zeros(4)])


def test_conv_rank_errors_name_the_layer():
    for layer, shape in ((L.Conv1D(2, 3, name="my_layer"), (4, 4, 1)),
                         (L.Conv2D(2, 3, name="my_layer"), (8, 1)),
                         (L.DepthwiseConv2D(3, name="my_layer"), (8,))):
        with pytest.raises(ValueError, match=r"(?s)my_layer.*rank.*" + re.escape(
                str(list(shape)))):
            ferrax.Sequential([ferrax.Input(shape), layer])


# --------------------------------------------------------------------------------------------
# Conv2DTranspose and SeparableConv2D


def transpose_out_and_pad(n, k, stride, dilation, padding):
    """Keras's output length (input * stride, plus the overhang of a "valid" window) and the
    padding cut from the front: that of the Conv2D mapping the output back to the input."""
    span = (k - 1) * dilation + 1
    out = n * stride if padding == "same" else n * stride + max(span - stride, 0)
    total = max((n - 1) * stride + span - out, 0)
    return out, total // 2


def conv2d_transpose_forward_backward(x, kernel, bias, strides, padding, dilation, dy=None):
    """Each input pixel scatters x[b, i, j, :] @ kernel[p, q].T onto output pixel
    (i*s + p*d - pad, j*s + q*d - pad); kernel (kh, kw, filters, channels)."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    bsz, h, w, c = x.shape
    kh, kw, f, kc = kernel.shape
    assert kc == c
    (sh, sw), (dh, dw) = strides, dilation
    oh, pt = transpose_out_and_pad(h, kh, sh, dh, padding)
    ow, pl = transpose_out_and_pad(w, kw, sw, dw, padding)
    y = np.zeros((bsz, oh, ow, f))
    dy = None if dy is None else np.asarray(dy, np.float64)
    taps = []
    for i in range(h):
        for j in range(w):
            for p in range(kh):
                for q in range(kw):
                    r, s = i * sh + p * dh - pt, j * sw + q * dw - pl
                    if 0 <= r < oh and 0 <= s < ow:
                        taps.append((i, j, p, q, r, s))
    for i, j, p, q, r, s in taps:
        y[:, r, s, :] += x[:, i, j, :] @ kernel[p, q].T
    if bias is not None:
        y += bias
    dy = np.ones_like(y) if dy is None else dy
    dx, dk = np.zeros_like(x), np.zeros_like(kernel)
    for i, j, p, q, r, s in taps:
        dx[:, i, j, :] += dy[:, r, s, :] @ kernel[p, q]
        dk[p, q] += dy[:, r, s, :].T @ x[:, i, j, :]
    grads = [dk] + ([dy.sum(axis=(0, 1, 2))] if bias is not None else [])
    return y, dx, grads


@pytest.mark.parametrize("strides,padding,dilation", [((1, 1), "valid", (1, 1)),
                                                      ((2, 3), "same", (1, 1)),
                                                      ((2, 1), "valid", (1, 1)),
                                                      ((1, 1), "same", (2, 1))])
def test_reference_conv_transpose_is_the_adjoint_of_conv(strides, padding, dilation):
    """<conv_transpose(x), z> = <x, conv2d(z)> with the same kernel, read by Conv2D as
    (kh, kw, in = filters, out = channels); and the reference's gradients match finite
    differences."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 4, 2))
    kernel = rng.normal(size=(3, 2, 3, 2))  # (kh, kw, filters, channels)
    y, _, _ = conv2d_transpose_forward_backward(x, kernel, None, strides, padding, dilation)
    z = rng.normal(size=y.shape)
    back = conv2d_forward_backward(z, kernel, None, strides, padding,
                                   dilation)[0]
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(y * z), np.sum(x * back), rtol=1e-10)
    bias = rng.normal(size=3)
    _, dx, (dk, db) = conv2d_transpose_forward_backward(x, kernel, bias, strides, padding,
                                                        dilation, z)

    def obj(xx, kk):
        return float(np.sum(conv2d_transpose_forward_backward(
            xx, kk, bias, strides, padding, dilation)[0] * z))

    ref.assert_close(dx, ref.numerical_grad(lambda v: obj(v, kernel), x), rtol=1e-6,
                     atol=1e-8, what="reference conv transpose dx")
    ref.assert_close(dk, ref.numerical_grad(lambda v: obj(x, v), kernel), rtol=1e-6,
                     atol=1e-8, what="reference conv transpose dkernel")


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_conv2d_transpose_matches_reference(data):
    b, h, w = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 5)), data.draw(
        st.integers(1, 5))
    c, f = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    padding = data.draw(st.sampled_from(["valid", "same"]))
    if data.draw(st.booleans()):
        strides, dilation = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))), (1, 1)
    else:
        strides, dilation = (1, 1), (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    data_format = data.draw(st.sampled_from(["channels_last", "channels_first"]))
    act = data.draw(st.sampled_from([None, "tanh"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    x = rng.uniform(-2, 2, (b, h, w, c)).astype(np.float32)
    kernel = rng.uniform(-1, 1, (kh, kw, f, c)).astype(np.float32)
    bias = rng.uniform(-1, 1, f).astype(np.float32) if data.draw(st.booleans()) else None
    z, _, _ = conv2d_transpose_forward_backward(x, kernel, bias, strides, padding, dilation)
    dy = rng.normal(size=z.shape).astype(np.float32)
    want_y, want_dx, want_grads = conv2d_transpose_forward_backward(
        x, kernel, bias, strides, padding, dilation, ref.activation_vjp(act or "linear", z, dy))
    want_y = ref.activation(act or "linear", want_y)
    first = data_format == "channels_first"
    layer = L.Conv2DTranspose(f, (kh, kw), strides=strides, padding=padding,
                              dilation_rate=dilation, data_format=data_format, activation=act,
                              use_bias=bias is not None)
    weights = [kernel] + ([bias] if bias is not None else [])
    y, dx, grads = ft.layer_forward_backward(layer, _to_first(x) if first else x,
                                             _to_first(dy) if first else dy, weights=weights)
    if first:
        want_y, want_dx = np.moveaxis(want_y, -1, 1), np.moveaxis(want_dx, -1, 1)
    what = (f"Conv2DTranspose({f}, {(kh, kw)}, strides={strides}, {padding}, dilation="
            f"{dilation}, {data_format}, {act}) on {x.shape}")
    ref.assert_close(y, want_y, **TOL, what="y: " + what)
    ref.assert_close(dx, want_dx, **TOL, what="dx: " + what)
    assert len(grads) == len(want_grads)
    for g, wg in zip(grads, want_grads):
        ref.assert_close(g, wg, **TOL, what="grads: " + what)


def test_conv2d_transpose_output_shapes():
    model = ferrax.Sequential([ferrax.Input((7, 7, 4)),
                               L.Conv2DTranspose(8, 3, strides=2, padding="same"),
                               L.Conv2DTranspose(2, 3, strides=2),
                               L.Conv2DTranspose(2, 2, strides=3)])
    # same: 7*2; valid: 14*2 + (3-2); valid with kernel < stride: 29*3
    assert [l.output_shape for l in model.layers] == [(None, 14, 14, 8), (None, 29, 29, 2),
                                                      (None, 87, 87, 2)]
    assert [w.shape for w in model.get_weights()[::2]] == [(3, 3, 8, 4), (3, 3, 2, 8),
                                                          (2, 2, 2, 2)]
    with pytest.raises(NotImplementedError, match="output_padding"):
        L.Conv2DTranspose(2, 3, output_padding=1)


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_separable_conv2d_matches_reference(data):
    c, dm, f = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), data.draw(
        st.integers(1, 4))
    h, w, k = data.draw(st.integers(2, 6)), data.draw(st.integers(2, 6)), data.draw(
        st.integers(1, 2))
    padding = data.draw(st.sampled_from(["valid", "same"]))
    strides = data.draw(st.integers(1, 2))
    act = data.draw(st.sampled_from([None, "tanh"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    x = rng.uniform(-2, 2, (2, h, w, c)).astype(np.float32)
    dk = rng.uniform(-1, 1, (k, k, c, dm)).astype(np.float32)
    pk = rng.uniform(-1, 1, (1, 1, c * dm, f)).astype(np.float32)
    bias = rng.uniform(-1, 1, f).astype(np.float32)
    # depthwise: channel i with its dm kernels; then a 1x1 conv (a matmul over channels)
    mids = []
    for i in range(c):
        mids.append(conv2d_forward_backward(x[..., i:i + 1], dk[:, :, i:i + 1, :], None, strides,
                                            padding, 1)[0])
    mid = np.concatenate(mids, axis=-1)
    z = mid @ pk[0, 0].astype(np.float64) + bias
    dy = rng.normal(size=z.shape).astype(np.float32)
    dz = ref.activation_vjp(act or "linear", z, dy)
    want_y = ref.activation(act or "linear", z)
    dmid = dz @ pk[0, 0].T.astype(np.float64)
    want_dpk = np.einsum("bijc,bijf->cf", mid, dz)[None, None]
    want_dx, want_ddk = np.zeros(x.shape), np.zeros(dk.shape)
    for i in range(c):
        _, dxi, (dki,) = conv2d_forward_backward(
            x[..., i:i + 1], dk[:, :, i:i + 1, :], None, strides, padding, 1, None,
            dmid[..., i * dm:(i + 1) * dm])
        want_dx[..., i:i + 1], want_ddk[:, :, i, :] = dxi, dki[:, :, 0]
    layer = L.SeparableConv2D(f, k, strides=strides, padding=padding, depth_multiplier=dm,
                              activation=act)
    y, dx, grads = ft.layer_forward_backward(layer, x, dy, weights=[dk, pk, bias])
    what = f"SeparableConv2D({f}, {k}, strides={strides}, {padding}, dm={dm}, {act})"
    ref.assert_close(y, want_y, **TOL, what="y: " + what)
    ref.assert_close(dx, want_dx, **TOL, what="dx: " + what)
    for g, wg, n in zip(grads, [want_ddk, want_dpk, dz.sum(axis=(0, 1, 2))],
                        ("depthwise", "pointwise", "bias")):
        ref.assert_close(g, wg, **TOL, what=f"d{n}: " + what)


def test_separable_conv2d_weights():
    model = ferrax.Sequential([ferrax.Input((8, 8, 3)),
                               L.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")])
    assert [(v.name, v.shape) for v in model.weights] == [
        ("sep/depthwise_kernel", (3, 3, 3, 2)), ("sep/pointwise_kernel", (1, 1, 6, 5)),
        ("sep/bias", (5,))]
    assert model.layers[0].output_shape == (None, 6, 6, 5)
    assert model.count_params() == 54 + 30 + 5


# --------------------------------------------------------------------------------------------
# bad arguments: raised by the constructor, naming the argument


@pytest.mark.parametrize("make,error,arg", [
    (lambda: L.Conv1D(2, (3, 3)), ValueError, "kernel_size"),
    (lambda: L.Conv1D(2, 3, padding="full"), ValueError, "padding"),
    (lambda: L.Conv2D(2, 3, padding="causal"), ValueError, "padding"),
    (lambda: L.Conv1D(2, 3, strides=2, dilation_rate=2), ValueError, "dilation_rate"),
    (lambda: L.Conv2D(2, 0), ValueError, "kernel_size"),
    (lambda: L.Conv2D(2, 3, strides="1"), TypeError, "strides"),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=0), ValueError, "depth_multiplier"),
    (lambda: L.SeparableConv2D(0, 3), ValueError, "filters"),
    (lambda: L.Conv2DTranspose(2, (1, 2, 3)), ValueError, "kernel_size"),
    (lambda: L.MaxPooling1D(0), ValueError, "pool_size"),
    (lambda: L.AveragePooling1D(2, strides=(1, 1)), ValueError, "strides"),
    (lambda: L.MaxPooling2D(2, data_format="channels_middle"), ValueError, "data_format"),
    (lambda: L.GlobalAveragePooling2D(data_format="nhwc"), ValueError, "data_format"),
    (lambda: L.UpSampling2D(size=0), ValueError, "size"),
    (lambda: L.BatchNormalization(momentum="high"), TypeError, "momentum"),
    (lambda: L.LayerNormalization(epsilon=-1.0), ValueError, "epsilon"),
])
def test_bad_arguments_name_the_argument(make, error, arg):
    with pytest.raises(error, match=arg):
        make()


# --------------------------------------------------------------------------------------------
# determinism across thread counts

CNN_SCRIPT = """
import sys
import numpy as np
import ferrax
from ferrax import layers as L

r = np.random.default_rng(0)
x = r.random((256, 16, 16, 3)).astype(np.float32)
y = r.integers(0, 4, 256)
ferrax.utils.set_random_seed(7)
# activations of 64 x 14 x 14 x 16 values: above the thresholds for going parallel
m = ferrax.Sequential([
    ferrax.Input((16, 16, 3)), L.Conv2D(16, 3, activation="relu"), L.BatchNormalization(),
    L.SpatialDropout2D(0.2), L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
    L.LayerNormalization(), L.Conv2DTranspose(4, 2, strides=2),
    L.MaxPooling2D(2), L.GlobalAveragePooling2D(), L.Dense(4, activation="softmax")])
m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
m.fit(x, y, batch_size=64, epochs=1, verbose=0)
# two Conv2D -> MaxPooling2D pairs the engine fuses, the second with an input gradient
f = ferrax.Sequential([
    ferrax.Input((16, 16, 3)), L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(2),
    L.Conv2D(16, 2, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
    L.Dense(4, activation="softmax")])
f.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
f.fit(x, y, batch_size=64, epochs=1, verbose=0)
fused = {f"fused_{i}": w for i, w in enumerate(f.get_weights())}
np.savez(sys.argv[1], *m.get_weights(), pred=m.predict(x, verbose=0),
         fused_pred=f.predict(x, verbose=0), **fused)
"""


def test_conv_layers_bitwise_identical_across_thread_counts(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "cnn.py"
    script.write_text(CNN_SCRIPT)
    results = []
    for threads in (1, 2):
        env = {k: v for k, v in os.environ.items() if k != "RAYON_NUM_THREADS"}
        env["FERRAX_NUM_THREADS"] = str(threads)
        out = tmp_path / f"t{threads}.npz"
        proc = subprocess.run([sys.executable, str(script), str(out)], env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        results.append(dict(np.load(out)))
    one, two = results
    assert set(one) == set(two) and len(one) > 10
    for name in one:
        assert np.array_equal(one[name], two[name]), name


def test_kernel_larger_than_input_names_the_layer_and_sizes():
    with pytest.raises(ValueError, match=r"(?s)my_conv.*\b5\b.*\b4\b"):
        ferrax.Sequential([ferrax.Input((4, 2)), L.Conv1D(3, 5, name="my_conv")])
    with pytest.raises(ValueError, match=r"(?s)my_conv.*\b5\b.*\b4\b.*channels_first"):
        ferrax.Sequential([ferrax.Input((2, 4, 9)),
                           L.Conv2D(3, 5, data_format="channels_first", name="my_conv")])
    # causal and same padding have no such limit
    model = ferrax.Sequential([ferrax.Input((4, 2)), L.Conv1D(3, 5, padding="causal")])
    assert model.layers[0].output_shape == (None, 4, 3)
