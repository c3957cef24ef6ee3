"""BatchNormalization and LayerNormalization against float64 NumPy references written here from
the Keras 3 definitions (keras/src/layers/normalization): batch statistics with the biased
variance in training, moving averages moving = moving * momentum + batch * (1 - momentum),
moving statistics at inference. The references' gradients are checked by finite differences.
"""

import re

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

import ferrax
import ferrax._testing as ft
from ferrax import layers as L

TOL = dict(rtol=2e-4, atol=2e-5)

# --------------------------------------------------------------------------------------------
# references


def _reduce_axes(ndim, axis):
    axis = axis % ndim
    return tuple(a for a in range(ndim) if a != axis), axis


def _bcast(v, ndim, axis):
    shape = [1] * ndim
    shape[axis] = -1
    return np.asarray(v, np.float64).reshape(shape)


def batchnorm_forward_backward(x, gamma, beta, moving_mean, moving_var, *, axis=-1,
                               training, momentum=0.99, epsilon=1e-3, dy=None):
    """(y, dx, dgamma, dbeta, new moving_mean, new moving_var); gamma / beta None when absent."""
    x = np.asarray(x, np.float64)
    red, axis = _reduce_axes(x.ndim, axis)
    c = x.shape[axis]
    g = np.ones(c) if gamma is None else np.asarray(gamma, np.float64)
    b = np.zeros(c) if beta is None else np.asarray(beta, np.float64)
    mm, mv = np.asarray(moving_mean, np.float64), np.asarray(moving_var, np.float64)
    if training:
        mean, var = x.mean(axis=red), x.var(axis=red)  # biased variance
        new_mm, new_mv = mm * momentum + mean * (1 - momentum), mv * momentum + var * (1 - momentum)
    else:
        mean, var, new_mm, new_mv = mm, mv, mm, mv
    inv = 1.0 / np.sqrt(var + epsilon)
    xhat = (x - _bcast(mean, x.ndim, axis)) * _bcast(inv, x.ndim, axis)
    y = xhat * _bcast(g, x.ndim, axis) + _bcast(b, x.ndim, axis)
    dy = np.ones_like(y) if dy is None else np.asarray(dy, np.float64)
    dbeta, dgamma = dy.sum(axis=red), (dy * xhat).sum(axis=red)
    dxhat = dy * _bcast(g, x.ndim, axis)
    if training:
        n = x.size / c
        dx = _bcast(inv, x.ndim, axis) * (
            dxhat - _bcast(dxhat.sum(axis=red) / n, x.ndim, axis)
            - xhat * _bcast((dxhat * xhat).sum(axis=red) / n, x.ndim, axis))
    else:
        dx = dxhat * _bcast(inv, x.ndim, axis)
    return y, dx, dgamma, dbeta, new_mm, new_mv


def layernorm_forward_backward(x, gamma, beta, *, axes=(-1,), epsilon=1e-3, dy=None):
    """(y, dx, dgamma, dbeta) of LayerNormalization over the trailing `axes`."""
    x = np.asarray(x, np.float64)
    axes = tuple(sorted(a % x.ndim for a in axes))
    pshape = x.shape[axes[0]:]
    g = np.ones(pshape) if gamma is None else np.asarray(gamma, np.float64)
    b = np.zeros(pshape) if beta is None else np.asarray(beta, np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(var + epsilon)
    xhat = (x - mean) * inv
    y = xhat * g + b
    dy = np.ones_like(y) if dy is None else np.asarray(dy, np.float64)
    lead = tuple(range(axes[0]))
    dgamma, dbeta = (dy * xhat).sum(axis=lead), dy.sum(axis=lead)
    dxhat = dy * g
    dx = inv * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))
    return y, dx, dgamma, dbeta


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape,axis", [((6, 3), -1), ((3, 4, 5, 2), -1), ((2, 3, 4), 1)])
def test_reference_batchnorm_gradients_match_finite_differences(training, shape, axis):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    c = shape[axis]
    gamma, beta = rng.normal(size=c), rng.normal(size=c)
    mm, mv = rng.normal(size=c), rng.uniform(0.5, 2, c)
    dy = rng.normal(size=shape)
    _, dx, dg, db, _, _ = batchnorm_forward_backward(x, gamma, beta, mm, mv, axis=axis,
                                                     training=training, dy=dy)

    def obj(xx, gg, bb):
        return float(np.sum(batchnorm_forward_backward(
            xx, gg, bb, mm, mv, axis=axis, training=training)[0] * dy))

    tol = dict(rtol=1e-6, atol=1e-8)
    ref.assert_close(dx, ref.numerical_grad(lambda v: obj(v, gamma, beta), x), **tol,
                     what="reference BN dx")
    ref.assert_close(dg, ref.numerical_grad(lambda v: obj(x, v, beta), gamma), **tol,
                     what="reference BN dgamma")
    ref.assert_close(db, ref.numerical_grad(lambda v: obj(x, gamma, v), beta), **tol,
                     what="reference BN dbeta")


@pytest.mark.parametrize("shape,axes", [((4, 5), (-1,)), ((2, 3, 4), (-2, -1))])
def test_reference_layernorm_gradients_match_finite_differences(shape, axes):
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape)
    pshape = shape[min(a % len(shape) for a in axes):]
    gamma, beta = rng.normal(size=pshape), rng.normal(size=pshape)
    dy = rng.normal(size=shape)
    _, dx, dg, db = layernorm_forward_backward(x, gamma, beta, axes=axes, dy=dy)

    def obj(xx, gg, bb):
        return float(np.sum(layernorm_forward_backward(xx, gg, bb, axes=axes)[0] * dy))

    tol = dict(rtol=1e-6, atol=1e-8)
    ref.assert_close(dx, ref.numerical_grad(lambda v: obj(v, gamma, beta), x), **tol,
                     what="reference LN dx")
    ref.assert_close(dg, ref.numerical_grad(lambda v: obj(x, v, beta), gamma), **tol,
                     what="reference LN dgamma")
    ref.assert_close(db, ref.numerical_grad(lambda v: obj(x, gamma, v), beta), **tol,
                     what="reference LN dbeta")


def test_reference_batchnorm_normalises_the_batch():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 4))
    y = batchnorm_forward_backward(x, None, None, np.zeros(4), np.ones(4), training=True,
                                   epsilon=0.0)[0]
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(y.std(0), 1, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# BatchNormalization against the reference


@st.composite
def bn_case(draw):
    rank = draw(st.integers(2, 4))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    shape = (draw(st.integers(2, 5)),) + shape[1:]
    axis = draw(st.sampled_from([-1] + list(range(1, rank))))
    center, scale = draw(st.booleans()), draw(st.booleans())
    training = draw(st.booleans())
    momentum = draw(st.sampled_from([0.99, 0.9, 0.5]))
    epsilon = draw(st.sampled_from([1e-3, 0.1]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    return shape, axis, center, scale, training, momentum, epsilon, rng


@settings(max_examples=40, deadline=None)
@given(case=bn_case())
def test_batchnorm_matches_reference(case):
    shape, axis, center, scale, training, momentum, epsilon, rng = case
    c = shape[axis]
    x = rng.normal(1.0, 2.0, size=shape).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    gamma = rng.uniform(0.5, 2, c).astype(np.float32)
    beta = rng.normal(size=c).astype(np.float32)
    mm, mv = rng.normal(size=c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32)
    weights = ([gamma] if scale else []) + ([beta] if center else []) + [mm, mv]
    layer = L.BatchNormalization(axis=axis, momentum=momentum, epsilon=epsilon, center=center,
                                 scale=scale)
    y, dx, grads, after = ft.layer_forward_backward(layer, x, dy, training=training,
                                                    weights=weights, return_weights=True)
    want_y, want_dx, dg, db, new_mm, new_mv = batchnorm_forward_backward(
        x, gamma if scale else None, beta if center else None, mm, mv, axis=axis,
        training=training, momentum=momentum, epsilon=epsilon, dy=dy)
    what = (f"BatchNormalization(axis={axis}, momentum={momentum}, epsilon={epsilon}, "
            f"center={center}, scale={scale}) training={training} on {shape}")
    # a batch of near-equal values has a tiny variance: dx is then a difference of big terms
    tol = TOL if training else dict(rtol=1e-5, atol=1e-6)
    ref.assert_close(y, want_y, **tol, what="y: " + what)
    ref.assert_close(dx, want_dx, rtol=1e-3, atol=1e-4, what="dx: " + what)
    want_grads = ([dg] if scale else []) + ([db] if center else []) + [0 * mm, 0 * mv]
    assert len(grads) == len(want_grads), what
    for g, w in zip(grads, want_grads):
        ref.assert_close(g, w, rtol=1e-4, atol=1e-4, what="grads: " + what)
    ref.assert_close(after[-2], new_mm, rtol=1e-5, atol=1e-6, what="moving_mean: " + what)
    ref.assert_close(after[-1], new_mv, rtol=1e-5, atol=1e-6, what="moving_variance: " + what)


def test_batchnorm_defaults_and_weight_order():
    layer = L.BatchNormalization()
    cfg = layer.get_config()
    assert (cfg["axis"], cfg["momentum"], cfg["epsilon"], cfg["center"], cfg["scale"]) == (
        -1, 0.99, 1e-3, True, True)
    model = ferrax.Sequential([ferrax.Input((3, 3, 4)), layer])
    assert [v.name.split("/")[-1] for v in layer.weights] == [
        "gamma", "beta", "moving_mean", "moving_variance"]
    assert [v.name.split("/")[-1] for v in layer.trainable_weights] == ["gamma", "beta"]
    assert [v.name.split("/")[-1] for v in layer.non_trainable_weights] == [
        "moving_mean", "moving_variance"]
    gamma, beta, mm, mv = model.get_weights()
    np.testing.assert_array_equal(gamma, np.ones(4))
    np.testing.assert_array_equal(beta, np.zeros(4))
    np.testing.assert_array_equal(mm, np.zeros(4))
    np.testing.assert_array_equal(mv, np.ones(4))
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 2
    # inference with the initial moving statistics: y = x / sqrt(1 + eps)
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), x / np.sqrt(1.001), rtol=1e-6)


def _summary(model):
    lines = []
    model.summary(print_fn=lambda s, *a, **k: lines.append(str(s)))
    return "\n".join(lines)


def test_batchnorm_summary_counts_non_trainable_params():
    model = ferrax.Sequential([
        ferrax.Input((6, 6, 1)),
        L.Conv2D(8, 3, use_bias=False),
        L.BatchNormalization(),
        L.Flatten(),
        L.Dense(5),
        L.BatchNormalization(center=False),
    ])
    text = _summary(model)
    # conv 72; BN 4 * 8 = 32 (16 trainable); dense 128 * 5 + 5 = 645; BN 3 * 5 (5 trainable)
    total, trainable = 72 + 32 + 645 + 15, 72 + 16 + 645 + 5
    assert re.search(rf"Total params: {total:,}\b", text), text
    assert re.search(rf"Trainable params: {trainable:,}\b", text), text
    assert re.search(rf"Non-trainable params: {total - trainable}\b", text), text
    # long "name (Type)" entries wrap the type onto the next line, as in Keras
    wrapped = r"│ batch_normalization\S* +│.*\b32 │\n│ \(BatchNormalization\) +│"
    assert re.search(wrapped, text), text


def _bn_model(momentum=0.9):
    ferrax.utils.set_random_seed(3)
    model = ferrax.Sequential([ferrax.Input((5,)), L.BatchNormalization(momentum=momentum),
                               L.Dense(3, activation="softmax")])
    return model


def test_batchnorm_moving_statistics_after_training_steps():
    """BN first: the batches it sees do not depend on the weights, so the moving statistics
    after fit follow the reference batch by batch. AdamW's weight decay would change the
    moving statistics if the optimizer touched them."""
    rng = np.random.default_rng(4)
    x = rng.normal(2.0, 3.0, size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    model = _bn_model(momentum=0.9)
    model.compile(optimizer=ferrax.optimizers.AdamW(0.01, weight_decay=0.5),
                  loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)  # 6 steps: 16, 16, 8
    mm, mv = np.zeros(5), np.ones(5)
    for _ in range(2):
        for start in range(0, 40, 16):
            batch = x[start:start + 16].astype(np.float64)
            mm = 0.9 * mm + 0.1 * batch.mean(0)
            mv = 0.9 * mv + 0.1 * batch.var(0)
    gamma, beta, got_mm, got_mv = model.layers[0].get_weights()
    ref.assert_close(got_mm, mm, rtol=1e-5, atol=1e-6, what="moving_mean after 6 steps")
    ref.assert_close(got_mv, mv, rtol=1e-5, atol=1e-6, what="moving_variance after 6 steps")
    assert not np.allclose(gamma, 1.0) and not np.allclose(beta, 0.0)  # trained
    # inference uses the moving statistics: compare the whole model's output
    kernel, bias = model.layers[1].get_weights()
    h = batchnorm_forward_backward(x, gamma, beta, got_mm, got_mv, training=False)[0]
    want = ref.softmax(h @ kernel.astype(np.float64) + bias)
    ref.assert_close(model.predict(x, verbose=0), want, rtol=1e-4, atol=1e-6,
                     what="predict after training")
    # evaluate and predict do not move the statistics
    model.evaluate(x, y, verbose=0)
    np.testing.assert_array_equal(model.layers[0].get_weights()[2], got_mm)


def test_batchnorm_model_survives_save_and_load(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(1.0, 2.0, size=(32, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 2, 32)
    ferrax.utils.set_random_seed(1)
    model = ferrax.Sequential([ferrax.Input((6, 6, 2)), L.Conv2D(3, 3),
                               L.BatchNormalization(), L.GlobalAveragePooling2D(),
                               L.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    moving = model.layers[1].non_trainable_weights[0].numpy()
    assert not np.allclose(moving, 0.0)
    model.save(tmp_path / "bn.ferrax")
    loaded = ferrax.models.load_model(tmp_path / "bn.ferrax")
    np.testing.assert_array_equal(loaded.layers[1].get_weights()[2], moving)
    assert [v.trainable for v in loaded.weights] == [v.trainable for v in model.weights]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # and a weights-only round trip
    model.save_weights(tmp_path / "bn.weights.safetensors")
    clone = ferrax.models.clone_model(model)
    clone.build((None, 6, 6, 2))
    clone.load_weights(tmp_path / "bn.weights.safetensors")
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))


def test_batchnorm_bad_arguments():
    with pytest.raises(TypeError, match="axis"):
        L.BatchNormalization(axis="last")
    with pytest.raises(ValueError, match="epsilon"):
        L.BatchNormalization(epsilon=0)
    with pytest.raises(ValueError, match="momentum"):
        L.BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match=r"(?s)my_bn.*axis"):
        ft.layer_forward_backward(L.BatchNormalization(axis=3, name="my_bn"),
                                  np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"(?s)my_bn.*axis"):
        ferrax.Sequential([ferrax.Input((4,)), L.BatchNormalization(axis=0, name="my_bn")])


# --------------------------------------------------------------------------------------------
# LayerNormalization


@st.composite
def ln_case(draw):
    rank = draw(st.integers(2, 4))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    n_axes = draw(st.integers(1, rank - 1))
    axes = list(range(-n_axes, 0))
    if draw(st.booleans()):
        axes = [a + rank for a in axes]  # positive forms
    center, scale = draw(st.booleans()), draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    return shape, axes, center, scale, rng


@settings(max_examples=30, deadline=None)
@given(case=ln_case())
def test_layernorm_matches_reference(case):
    shape, axes, center, scale, rng = case
    pshape = shape[len(shape) - len(axes):]
    x = rng.normal(size=shape).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    gamma = rng.uniform(0.5, 2, pshape).astype(np.float32)
    beta = rng.normal(size=pshape).astype(np.float32)
    weights = ([gamma] if scale else []) + ([beta] if center else [])
    axis = axes[0] if len(axes) == 1 and rng.random() < 0.5 else axes
    layer = L.LayerNormalization(axis=axis, center=center, scale=scale)
    y, dx, grads = ft.layer_forward_backward(layer, x, dy, weights=weights)
    want_y, want_dx, dg, db = layernorm_forward_backward(
        x, gamma if scale else None, beta if center else None, axes=axes, dy=dy)
    what = f"LayerNormalization(axis={axis}, center={center}, scale={scale}) on {shape}"
    ref.assert_close(y, want_y, **TOL, what="y: " + what)
    ref.assert_close(dx, want_dx, rtol=1e-3, atol=1e-4, what="dx: " + what)
    want = ([dg] if scale else []) + ([db] if center else [])
    assert len(grads) == len(want), what
    for g, w in zip(grads, want):
        ref.assert_close(g, w, rtol=1e-4, atol=1e-4, what="grads: " + what)


def test_layernorm_weights_and_errors():
    model = ferrax.Sequential([ferrax.Input((3, 4)), L.LayerNormalization(axis=[-2, -1])])
    assert [(v.name.split("/")[-1], v.shape) for v in model.weights] == [
        ("gamma", (3, 4)), ("beta", (3, 4))]
    assert len(model.non_trainable_weights) == 0
    with pytest.raises(ValueError, match=r"(?s)my_ln.*axis"):
        ft.layer_forward_backward(L.LayerNormalization(axis=1, name="my_ln"),
                                  np.zeros((2, 3, 4), np.float32))
    with pytest.raises(TypeError, match="axis"):
        L.LayerNormalization(axis=1.5)
    with pytest.raises(NotImplementedError, match="rms_scaling"):
        L.LayerNormalization(rms_scaling=True)
