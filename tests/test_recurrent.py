"""SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed, Embedding and Masking: forward and
backpropagation through time against the float64 NumPy references in tests/rnn_reference.py.

The references follow Keras 3 (gates i, f, c, o; GRU z, r, h with reset_after; masked steps
carry the states and repeat the previous output; go_backwards returns the sequence in processing
order; Bidirectional zeroes masked outputs and flips the backward sequence back). They were
checked against Keras 3.15 offline (scripts/make_keras_rnn_fixtures.py --check-reference: float64
outputs, states and jax.grad gradients agree to ~1e-15); here every analytic gradient of the
references is checked against central finite differences, and single steps against formulas
written out by hand. tests/data/keras_rnn_fixtures.npz holds weights, inputs and outputs made by
real Keras for the weight-layout round trip.
"""

from __future__ import annotations

import math
import os
import re
import zlib

import numpy as np
import pytest
import reference as ref
import rnn_reference as R
from hypothesis import given, settings
from hypothesis import strategies as st

# float32 engine, errors accumulate over the steps: a little looser than the Dense tests
TOL = dict(rtol=2e-4, atol=2e-5)
FIXTURES = os.path.join(os.path.dirname(__file__), "data", "keras_rnn_fixtures.npz")
KINDS = ["SimpleRNN", "LSTM", "GRU"]


def _ft():
    import ferrax._testing as ft

    return ft


def _layers():
    import ferrax.layers

    return ferrax.layers


def _ferrax():
    import ferrax

    return ferrax


def all_of(*parts):
    """A regex (for pytest.raises(match=...)) that needs every part somewhere, in any order."""
    return "(?is)" + "".join(f"(?=.*{p})" for p in parts)


def any_of(*parts):
    return "(?:" + "|".join(parts) + ")"


def _weights(kind, f, u, rng, use_bias=True, scale=0.8):
    g = R.GATES[kind]
    ws = [rng.uniform(-scale, scale, (f, g * u)), rng.uniform(-scale, scale, (u, g * u))]
    if use_bias:
        shape = (2, 3 * u) if kind == "GRU" else (g * u,)
        ws.append(rng.uniform(-scale, scale, shape))
    return [w.astype(np.float32) for w in ws]


def _mask(rng, b, t, style):
    """None, or a bool (batch, T) keep-mask: "gaps" (random, about 30% masked, at least one gap
    inside a sequence when T >= 3) or "all" (like gaps, and sample 0 wholly masked)."""
    if style is None:
        return None
    m = rng.uniform(size=(b, t)) > 0.3
    if t >= 3:
        m[-1, 0], m[-1, 1], m[-1, 2] = True, False, True  # a gap between kept steps
    if style == "all":
        m[0, :] = False
    return m


def _state_names(kind):
    return ["output", "h", "c"] if kind == "LSTM" else ["output", "h"]


def _check_rnn(kind, x, ws, dy, what, *, mask=None, training=False, layer_kw=None,
               cell_kw=None, tol=TOL, **opts):
    """Run ferrax's layer through the hook and compare y (and states), dx and every weight
    gradient with the reference."""
    layer_kw = dict(layer_kw or {})
    cls = getattr(_layers(), kind)
    layer = cls(ws[1].shape[0], **opts, **layer_kw)
    y, dx, grads = _ft().layer_forward_backward(layer, x, dy, weights=ws, mask=mask,
                                                training=training)
    want_y, want_dx, want_grads, _ = R.rnn_forward_backward(
        kind, x, ws, dy, mask=mask, **opts, **(cell_kw or {}))
    if opts.get("return_state"):
        assert isinstance(y, (list, tuple)) and len(y) == len(want_y), (
            f"return_state: {type(y).__name__} of {len(y)}: {what}")
        for name, a, b in zip(_state_names(kind), y, want_y):
            ref.assert_close(a, b, **tol, what=f"{name}: {what}")
    else:
        ref.assert_close(y, want_y, **tol, what="y: " + what)
    ref.assert_close(dx, want_dx, **tol, what="dx: " + what)
    assert len(grads) == len(want_grads), f"{len(grads)} weight gradients: {what}"
    for name, g, w in zip(("kernel", "recurrent_kernel", "bias"), grads, want_grads):
        ref.assert_close(g, w, **tol, what=f"d{name}: {what}")
    return y, dx, grads


# --------------------------------------------------------------------------------------------
# the references: gradients against finite differences, single steps against hand formulas

REF_CONFIGS = [
    dict(return_sequences=True),
    dict(return_sequences=True, go_backwards=True, mask="gaps"),
    dict(go_backwards=True, mask="all"),
    dict(return_sequences=True, return_state=True, go_backwards=True, mask="all"),
    dict(return_sequences=True, zero_output_for_mask=True, mask="gaps"),
    dict(use_bias=False),
    dict(dropout=0.3, recurrent_dropout=0.0, return_sequences=True),
    dict(dropout=0.3, recurrent_dropout=0.4, mask="gaps", initial_state=True,
         return_state=True),
]


@pytest.mark.parametrize("kind", KINDS + ["GRU-reset_before"])
@pytest.mark.parametrize("cfg", REF_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in
                                                                    c.items()) or "plain")
def test_reference_rnn_gradients_match_finite_differences(kind, cfg):
    rng = np.random.default_rng(11)
    cell_kw = {}
    if kind == "GRU-reset_before":
        kind, cell_kw = "GRU", dict(reset_after=False)
    cfg = dict(cfg)
    b, t, f, u = 3, 3, 2, 2
    use_bias = cfg.pop("use_bias", True)
    x = rng.normal(size=(b, t, f))
    ws = [w.astype(np.float64) for w in _weights(kind, f, u, rng, use_bias)]
    if cell_kw and use_bias:
        ws[2] = rng.uniform(-0.8, 0.8, 3 * u)
    mask = _mask(rng, b, t, cfg.pop("mask", None))
    n_states = 2 if kind == "LSTM" else 1
    init = ([rng.normal(size=(b, u)) for _ in range(n_states)]
            if cfg.pop("initial_state", False) else None)
    rate, rrate = cfg.pop("dropout", 0.0), cfg.pop("recurrent_dropout", 0.0)
    g = 1 if kind == "SimpleRNN" or not rrate else R.GATES[kind]

    def draws(shape, r):
        ms = [(rng.uniform(size=shape) >= r) / (1.0 - r) for _ in range(g)]
        return ms[0] if g == 1 else ms

    if rate:
        cell_kw["dropout_mask"] = draws((b, f), rate)
    if rrate:
        cell_kw["recurrent_dropout_mask"] = draws((b, u), rrate)
    kw = dict(cfg, mask=mask, initial_state=init, use_bias=use_bias, **cell_kw)
    y = R.rnn_forward(kind, x, ws, **kw)
    ys = y if cfg.get("return_state") else [y]
    dys = [rng.normal(size=a.shape) for a in ys]
    dy = dys if cfg.get("return_state") else dys[0]
    _, dx, grads, dinit = R.rnn_forward_backward(kind, x, ws, dy, **kw)

    def obj(xx, wws, ii):
        out = R.rnn_forward(kind, xx, wws, **dict(kw, initial_state=ii))
        outs = out if cfg.get("return_state") else [out]
        return float(sum(np.sum(o * d) for o, d in zip(outs, dys)))

    what = f"reference {kind} {cell_kw.get('reset_after', '')} {cfg} mask={mask is not None}"
    tol = dict(rtol=1e-6, atol=1e-8)
    ref.assert_close(dx, ref.numerical_grad(lambda v: obj(v, ws, init), x), **tol,
                     what=what + " dx")
    for i in range(len(ws)):
        def f_w(v, i=i):
            return obj(x, ws[:i] + [v] + ws[i + 1:], init)
        ref.assert_close(grads[i], ref.numerical_grad(f_w, ws[i]), **tol,
                         what=f"{what} dweight{i}")
    if init is not None:
        for i in range(n_states):
            def f_s(v, i=i):
                return obj(x, ws, init[:i] + [v] + init[i + 1:])
            ref.assert_close(dinit[i], ref.numerical_grad(f_s, init[i]), **tol,
                             what=f"{what} dinitial_state{i}")


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("rs,masked", [(False, True), (True, True)])
def test_reference_bidirectional_gradients_match_finite_differences(mode, rs, masked):
    rng = np.random.default_rng(5)
    b, t, f, u = 3, 3, 2, 2
    x = rng.normal(size=(b, t, f))
    fw = [w.astype(np.float64) for w in _weights("LSTM", f, u, rng)]
    bw = [w.astype(np.float64) for w in _weights("LSTM", f, u, rng)]
    mask = _mask(rng, b, t, "all") if masked else None
    kw = dict(merge_mode=mode, return_sequences=rs, mask=mask)
    y, _, _ = R.bidirectional_forward_backward("LSTM", x, fw, bw, **kw)
    dy = rng.normal(size=y.shape)
    _, dx, grads = R.bidirectional_forward_backward("LSTM", x, fw, bw, dy, **kw)
    ws = fw + bw

    def obj(xx, wws):
        return float(np.sum(R.bidirectional_forward("LSTM", xx, wws[:3], wws[3:], **kw) * dy))

    tol = dict(rtol=1e-6, atol=1e-8)
    ref.assert_close(dx, ref.numerical_grad(lambda v: obj(v, ws), x), **tol, what="bidi dx")
    for i in range(6):
        ref.assert_close(grads[i], ref.numerical_grad(
            lambda v, i=i: obj(x, ws[:i] + [v] + ws[i + 1:]), ws[i]), **tol, what=f"bidi dw{i}")


def test_reference_single_steps_by_hand():
    # one unit, one feature, one step from the zero state, written out from the formulas
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    x = np.array([[[0.7]]])
    # LSTM: kernel blocks i, f, c, o
    k = np.array([[0.5, -0.3, 0.8, 0.2]])
    rk = np.array([[0.1, 0.2, 0.3, 0.4]])
    bias = np.array([0.1, 1.0, -0.2, 0.05])
    i, o = sig(0.35 + 0.1), sig(0.14 + 0.05)
    c = i * math.tanh(0.56 - 0.2)  # f * c_prev vanishes (c_prev = 0)
    y, c_out = R.rnn_forward("LSTM", x, [k, rk, bias], return_state=True)[::2]
    np.testing.assert_allclose(y, [[o * math.tanh(c)]], rtol=1e-12)
    np.testing.assert_allclose(c_out, [[c]], rtol=1e-12)
    # a second step: now the forget gate and the recurrent kernel matter
    x2 = np.array([[[0.7], [-0.4]]])
    h1 = o * math.tanh(c)
    zi, zf = -0.4 * 0.5 + h1 * 0.1 + 0.1, -0.4 * -0.3 + h1 * 0.2 + 1.0
    zc, zo = -0.4 * 0.8 + h1 * 0.3 - 0.2, -0.4 * 0.2 + h1 * 0.4 + 0.05
    c2 = sig(zf) * c + sig(zi) * math.tanh(zc)
    np.testing.assert_allclose(R.rnn_forward("LSTM", x2, [k, rk, bias]),
                               [[sig(zo) * math.tanh(c2)]], rtol=1e-12)
    # GRU (reset_after): blocks z, r, h; bias rows input / recurrent; h' = z h + (1 - z) hh
    k = np.array([[0.5, -0.3, 0.8]])
    rk = np.array([[0.1, 0.2, 0.3]])
    bias = np.array([[0.1, 0.2, 0.3], [-0.1, 0.05, 0.4]])
    h = np.array([[0.6]])
    z = sig(0.35 + 0.1 + 0.06 - 0.1)
    r = sig(-0.21 + 0.2 + 0.12 + 0.05)
    hh = math.tanh(0.56 + 0.3 + r * (0.18 + 0.4))
    y = R.rnn_forward("GRU", x, [k, rk, bias], initial_state=[h])
    np.testing.assert_allclose(y, [[z * 0.6 + (1 - z) * hh]], rtol=1e-12)
    # SimpleRNN
    y = R.rnn_forward("SimpleRNN", x2, [np.array([[0.5]]), np.array([[0.9]]), np.array([0.1])])
    np.testing.assert_allclose(y, [[math.tanh(-0.2 + 0.9 * math.tanh(0.45) + 0.1)]],
                               rtol=1e-12)


def test_reference_mask_and_go_backwards_semantics():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5, 3))
    ws = [w.astype(np.float64) for w in _weights("LSTM", 3, 2, rng)]
    full = R.rnn_forward("LSTM", x, ws, return_sequences=True)
    # masked steps: the output repeats the previous one, the states skip the step
    mask = np.array([[True, False, True, True, False], [False] * 5])
    seq, h, c = R.rnn_forward("LSTM", x, ws, return_sequences=True, return_state=True,
                              mask=mask)
    kept = R.rnn_forward("LSTM", x[:1, [0, 2, 3]], ws, return_sequences=True)
    np.testing.assert_allclose(seq[0], kept[0][[0, 0, 1, 2, 2]], rtol=1e-12)
    np.testing.assert_allclose(h[0], kept[0, -1], rtol=1e-12)
    np.testing.assert_array_equal(seq[1], 0.0)  # all masked: zeros, zero final states
    np.testing.assert_array_equal(h[1], 0.0)
    np.testing.assert_array_equal(c[1], 0.0)
    zero = R.rnn_forward("LSTM", x, ws, return_sequences=True, mask=mask,
                         zero_output_for_mask=True)
    np.testing.assert_array_equal(zero[0, [1, 4]], 0.0)
    np.testing.assert_allclose(zero[0, [0, 2, 3]], kept[0], rtol=1e-12)
    # go_backwards = the forward run on the reversed sequence, in processing order
    back = R.rnn_forward("LSTM", x, ws, return_sequences=True, go_backwards=True)
    np.testing.assert_allclose(back, R.rnn_forward("LSTM", x[:, ::-1], ws,
                                                   return_sequences=True), rtol=1e-12)
    assert not np.allclose(back, full)


def test_reference_embedding_accumulates_repeated_ids():
    e = np.arange(12.0).reshape(4, 3)
    ids = np.array([[1, 3, 1], [0, 1, 1]])
    y, de = R.embedding_forward_backward(ids, e, np.ones((2, 3, 3)))
    np.testing.assert_array_equal(y[0, 1], e[3])
    np.testing.assert_array_equal(de, [[1, 1, 1], [4, 4, 4], [0, 0, 0], [1, 1, 1]])


# --------------------------------------------------------------------------------------------
# SimpleRNN / LSTM / GRU against the reference


@st.composite
def rnn_case(draw):
    b, t = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    f, u = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    opts = dict(return_sequences=draw(st.booleans()), go_backwards=draw(st.booleans()),
                return_state=draw(st.booleans()), use_bias=draw(st.sampled_from([True] * 3 +
                                                                                  [False])))
    mask_style = draw(st.sampled_from([None, None, "gaps", "all"]))
    seed = draw(st.integers(0, 2**31 - 1))
    return b, t, f, u, opts, mask_style, seed


def _draw_inputs(kind, b, t, f, u, opts, mask_style, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.5, 1.5, (b, t, f)).astype(np.float32)
    ws = _weights(kind, f, u, rng, opts["use_bias"])
    mask = _mask(rng, b, t, mask_style)
    out_shape = (b, t, u) if opts["return_sequences"] else (b, u)
    dy = rng.normal(size=out_shape).astype(np.float32)
    if opts["return_state"]:
        n = 2 if kind == "LSTM" else 1
        dy = [dy] + [rng.normal(size=(b, u)).astype(np.float32) for _ in range(n)]
    return x, ws, mask, dy


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=30, deadline=None)
@given(case=rnn_case())
def test_rnn_matches_reference(kind, case):
    b, t, f, u, opts, mask_style, seed = case
    x, ws, mask, dy = _draw_inputs(kind, *case[:5], mask_style, seed)
    what = (f"{kind}({u}, {opts}) on x.shape={x.shape}, mask={mask_style}: "
            f"x={x.tolist()}, weights={[w.tolist() for w in ws]}, "
            f"mask={None if mask is None else mask.tolist()}")
    _check_rnn(kind, x, ws, dy, what, mask=mask, **opts)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("activation,recurrent_activation",
                         [("relu", "sigmoid"), ("tanh", "hard_sigmoid"), (None, "tanh")])
def test_rnn_other_activations(kind, activation, recurrent_activation):
    rng = np.random.default_rng(4)
    b, t, f, u = 2, 4, 3, 3
    x = rng.uniform(-1, 1, (b, t, f)).astype(np.float32)
    ws = _weights(kind, f, u, rng, scale=0.5)
    dy = rng.normal(size=(b, t, u)).astype(np.float32)
    layer_kw = dict(activation=activation)
    cell_kw = dict(activation=activation)
    if kind != "SimpleRNN":
        layer_kw["recurrent_activation"] = recurrent_activation
        cell_kw["recurrent_activation"] = recurrent_activation
    # (small weights keep hard_sigmoid's pre-activations inside its linear part (-3, 3); a
    # relu pre-activation within float32 rounding of its kink has probability ~1e-6)
    _check_rnn(kind, x, ws, dy, f"{kind}({layer_kw})", layer_kw=layer_kw, cell_kw=cell_kw,
               return_sequences=True)


@pytest.mark.parametrize("kind", KINDS)
def test_rnn_masked_steps_by_hand(kind):
    """A masked step leaves the output and the states as they were; a fully masked sample gives
    zeros; masking a step is the same as deleting it (for the last output)."""
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, (3, 5, 2)).astype(np.float32)
    ws = _weights(kind, 2, 3, rng)
    mask = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    layer = getattr(_layers(), kind)(3, return_sequences=True)
    y, _, _ = _ft().layer_forward_backward(layer, x, weights=ws, mask=mask)
    np.testing.assert_array_equal(y[0, 1], y[0, 0])
    np.testing.assert_array_equal(y[0, 3], y[0, 2])
    np.testing.assert_array_equal(y[0, 4], y[0, 2])
    np.testing.assert_array_equal(y[1], np.zeros((5, 3), np.float32))
    short, _, _ = _ft().layer_forward_backward(getattr(_layers(), kind)(3), x[:1, [0, 2]],
                                               weights=ws)
    np.testing.assert_allclose(y[0, -1], short[0], rtol=1e-5, atol=1e-6)
    # gradients never reach the masked inputs
    _, dx, _ = _ft().layer_forward_backward(layer, x, weights=ws, mask=mask)
    np.testing.assert_array_equal(dx[0, [1, 3, 4]], 0.0)
    np.testing.assert_array_equal(dx[1], 0.0)


def test_go_backwards_output_order():
    """go_backwards returns the sequence in processing order: the same numbers as the forward
    layer on the time-reversed input (not flipped back)."""
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, (2, 5, 3)).astype(np.float32)
    ws = _weights("GRU", 3, 4, rng)
    L, ft = _layers(), _ft()
    back, _, _ = ft.layer_forward_backward(L.GRU(4, return_sequences=True, go_backwards=True),
                                           x, weights=ws)
    fwd_rev, _, _ = ft.layer_forward_backward(L.GRU(4, return_sequences=True),
                                              np.ascontiguousarray(x[:, ::-1]), weights=ws)
    np.testing.assert_allclose(back, fwd_rev, rtol=1e-5, atol=1e-6)


def test_gru_reset_after_false_matches_reference_or_is_not_implemented():
    rng = np.random.default_rng(12)
    x = rng.uniform(-1, 1, (2, 4, 3)).astype(np.float32)
    ws = _weights("GRU", 3, 2, rng)[:2] + [rng.uniform(-0.8, 0.8, 6).astype(np.float32)]
    dy = rng.normal(size=(2, 4, 2)).astype(np.float32)
    try:
        layer = _layers().GRU(2, reset_after=False, return_sequences=True)
        _ft().layer_forward_backward(layer, x, dy, weights=ws)
    except NotImplementedError:
        pytest.skip("GRU(reset_after=False) is not implemented")
    _check_rnn("GRU", x, ws, dy, "GRU(reset_after=False)", layer_kw=dict(reset_after=False),
               cell_kw=dict(reset_after=False), return_sequences=True)


# --------------------------------------------------------------------------------------------
# Bidirectional, TimeDistributed, Embedding, Masking


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("rs", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_bidirectional_matches_reference(kind, mode, rs, masked):
    rng = np.random.default_rng(zlib.crc32(f"{kind}{mode}{rs}{masked}".encode()))
    b, t, f, u = 3, 5, 3, 3
    x = rng.uniform(-1.5, 1.5, (b, t, f)).astype(np.float32)
    fw, bw = _weights(kind, f, u, rng), _weights(kind, f, u, rng)
    mask = _mask(rng, b, t, "all") if masked else None
    L = _layers()
    layer = L.Bidirectional(getattr(L, kind)(u, return_sequences=rs), merge_mode=mode)
    want_y, _, _ = R.bidirectional_forward_backward(kind, x, fw, bw, merge_mode=mode,
                                                    return_sequences=rs, mask=mask)
    dy = rng.normal(size=want_y.shape).astype(np.float32)
    want_y, want_dx, want_grads = R.bidirectional_forward_backward(
        kind, x, fw, bw, dy, merge_mode=mode, return_sequences=rs, mask=mask)
    y, dx, grads = _ft().layer_forward_backward(layer, x, dy, weights=fw + bw, mask=mask)
    what = f"Bidirectional({kind}({u}, return_sequences={rs}), merge_mode={mode!r}) mask={masked}"
    ref.assert_close(y, want_y, **TOL, what="y: " + what)
    ref.assert_close(dx, want_dx, **TOL, what="dx: " + what)
    assert len(grads) == 6, what
    for i, (g, w) in enumerate(zip(grads, want_grads)):
        ref.assert_close(g, w, **TOL, what=f"dweight{i} ({'forward' if i < 3 else 'backward'}"
                                           f" layer): {what}")


def test_bidirectional_weights_are_forward_then_backward():
    import ferrax

    L = _layers()
    model = ferrax.models.Sequential([L.Input(shape=(4, 3)),
                                      L.Bidirectional(L.LSTM(5, return_sequences=True))])
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(3, 20), (5, 20), (20,)] * 2, shapes
    y = model.predict(np.zeros((2, 4, 3), np.float32), verbose=0)
    assert y.shape == (2, 4, 10)
    fw, bw = model.get_weights()[:3], model.get_weights()[3:]
    assert not np.array_equal(fw[0], bw[0]), "the two directions need their own initial draws"


@pytest.mark.parametrize("activation", [None, "tanh"])
def test_time_distributed_dense(activation):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 4, 5)).astype(np.float32)
    k = rng.uniform(-1, 1, (5, 2)).astype(np.float32)
    bias = rng.uniform(-1, 1, 2).astype(np.float32)
    dy = rng.normal(size=(3, 4, 2)).astype(np.float32)
    L = _layers()
    y, dx, grads = _ft().layer_forward_backward(
        L.TimeDistributed(L.Dense(2, activation=activation)), x, dy, weights=[k, bias])
    want_y, want_dx, want_grads = R.time_distributed_dense_forward_backward(
        x, k, bias, activation, dy)
    ref.assert_close(y, want_y, **TOL, what="TimeDistributed(Dense) y")
    ref.assert_close(dx, want_dx, **TOL, what="TimeDistributed(Dense) dx")
    assert len(grads) == 2
    ref.assert_close(grads[0], want_grads[0], **TOL, what="TimeDistributed(Dense) dkernel")
    ref.assert_close(grads[1], want_grads[1], **TOL, what="TimeDistributed(Dense) dbias")


def test_time_distributed_in_a_model_after_an_lstm():
    import ferrax

    L = _layers()
    rng = np.random.default_rng(6)
    model = ferrax.models.Sequential([L.Input(shape=(4, 3)), L.LSTM(5, return_sequences=True),
                                      L.TimeDistributed(L.Dense(2))])
    ws = _weights("LSTM", 3, 5, rng) + [rng.uniform(-1, 1, (5, 2)).astype(np.float32),
                                        rng.uniform(-1, 1, 2).astype(np.float32)]
    model.set_weights(ws)
    x = rng.normal(size=(3, 4, 3)).astype(np.float32)
    h = R.rnn_forward("LSTM", x, ws[:3], return_sequences=True)
    ref.assert_close(model.predict(x, verbose=0), h @ ws[3].astype(np.float64) + ws[4], **TOL,
                     what="LSTM -> TimeDistributed(Dense)")


@pytest.mark.parametrize("as_float", [False, True])
def test_embedding_forward_and_gradient(as_float):
    rng = np.random.default_rng(10)
    e = rng.normal(size=(7, 3)).astype(np.float32)
    ids = np.array([[1, 6, 1, 0], [1, 1, 5, 6]])  # repeats: the gradient rows accumulate
    dy = rng.normal(size=(2, 4, 3)).astype(np.float32)
    x = ids.astype(np.float32) if as_float else ids
    y, _, grads = _ft().layer_forward_backward(_layers().Embedding(7, 3), x, dy, weights=[e])
    want_y, want_de = R.embedding_forward_backward(ids, e, dy)
    ref.assert_close(y, want_y, rtol=0, atol=0, what="Embedding y")
    assert len(grads) == 1
    ref.assert_close(grads[0], want_de, **TOL, what="Embedding d embeddings")
    np.testing.assert_array_equal(grads[0][[2, 3, 4]], 0.0)


@pytest.mark.parametrize("rs", [False, True])
def test_embedding_mask_zero_into_lstm(rs):
    import ferrax

    L = _layers()
    rng = np.random.default_rng(13)
    ids = np.array([[3, 1, 0, 4, 6, 0], [0, 0, 0, 0, 0, 0], [5, 2, 2, 0, 0, 0],
                    [0, 0, 1, 2, 3, 4]])
    e = rng.normal(size=(7, 4)).astype(np.float32)
    ws = _weights("LSTM", 4, 3, rng)
    model = ferrax.models.Sequential([L.Input(shape=(6,)), L.Embedding(7, 4, mask_zero=True),
                                      L.LSTM(3, return_sequences=rs)])
    model.set_weights([e] + ws)
    emb, _ = R.embedding_forward_backward(ids, e)
    want = R.rnn_forward("LSTM", emb, ws, return_sequences=rs, mask=ids != 0)
    ref.assert_close(model.predict(ids, verbose=0), want, **TOL,
                     what=f"Embedding(mask_zero=True) -> LSTM(return_sequences={rs})")
    # without mask_zero the zeros are ordinary tokens, and the numbers differ
    plain = R.rnn_forward("LSTM", emb, ws, return_sequences=rs)
    assert np.abs(plain - want).max() > 1e-2


def test_masking_into_lstm():
    import ferrax

    L = _layers()
    rng = np.random.default_rng(14)
    x = rng.normal(size=(3, 5, 2)).astype(np.float32)
    x[0, [1, 3]] = -1.0
    x[1] = -1.0
    x[2, 4, 0] = -1.0  # only one feature equal to mask_value: kept
    ws = _weights("LSTM", 2, 3, rng)
    model = ferrax.models.Sequential([L.Input(shape=(5, 2)), L.Masking(mask_value=-1.0),
                                      L.LSTM(3, return_sequences=True)])
    model.set_weights(ws)
    xm, keep = R.masking_forward(x, -1.0)
    assert keep.tolist() == [[True, False, True, False, True], [False] * 5, [True] * 5]
    want = R.rnn_forward("LSTM", xm, ws, return_sequences=True, mask=keep)
    ref.assert_close(model.predict(x, verbose=0), want, **TOL, what="Masking -> LSTM")


def test_masking_layer_alone_zeroes_masked_steps():
    x = np.array([[[1.0, 2.0], [0.0, 0.0], [0.0, 3.0]]], np.float32)
    y, dx, grads = _ft().layer_forward_backward(_layers().Masking(), x)
    np.testing.assert_array_equal(y, [[[1, 2], [0, 0], [0, 3]]])
    np.testing.assert_array_equal(dx, [[[1, 1], [0, 0], [1, 1]]])
    assert len(grads) == 0


# --------------------------------------------------------------------------------------------
# stateful


@pytest.mark.parametrize("kind", KINDS)
def test_stateful_carries_state_across_predict_calls(kind):
    import ferrax

    L = _layers()
    rng = np.random.default_rng(15)
    b, t, f, u = 2, 3, 2, 3
    layer = getattr(L, kind)(u, stateful=True, return_sequences=True)
    model = ferrax.models.Sequential([L.Input(shape=(t, f), batch_size=b), layer])
    ws = _weights(kind, f, u, rng)
    model.set_weights(ws)
    x = rng.normal(size=(b, 3 * t, f)).astype(np.float32)
    want = R.rnn_forward(kind, x, ws, return_sequences=True)
    chunks = [np.ascontiguousarray(x[:, i * t:(i + 1) * t]) for i in range(3)]
    got = [model.predict(c, batch_size=b, verbose=0) for c in chunks]
    ref.assert_close(np.concatenate(got, axis=1), want, **TOL,
                     what=f"stateful {kind}: three predict calls vs one run")
    layer.reset_states()
    ref.assert_close(model.predict(chunks[0], batch_size=b, verbose=0), want[:, :t], **TOL,
                     what=f"stateful {kind} after layer.reset_states()")
    ref.assert_close(model.predict(chunks[1], batch_size=b, verbose=0), want[:, t:2 * t],
                     **TOL, what=f"stateful {kind} after reset, second call")
    model.reset_states()
    ref.assert_close(model.predict(chunks[0], batch_size=b, verbose=0), want[:, :t], **TOL,
                     what=f"stateful {kind} after model.reset_states()")


def test_stateful_lstm_keras_fixture():
    import ferrax

    d = np.load(FIXTURES)
    L = _layers()
    model = ferrax.models.Sequential([L.Input(shape=(3, 2), batch_size=2),
                                      L.LSTM(3, stateful=True)])
    model.set_weights([d[f"stateful_lstm/w{i}"] for i in range(3)])
    y1 = model.predict(d["stateful_lstm/x1"], batch_size=2, verbose=0)
    y2 = model.predict(d["stateful_lstm/x2"], batch_size=2, verbose=0)
    ref.assert_close(y1, d["stateful_lstm/y1"], rtol=1e-4, atol=1e-5, what="stateful y1")
    ref.assert_close(y2, d["stateful_lstm/y2"], rtol=1e-4, atol=1e-5, what="stateful y2")
    model.layers[-1].reset_states()
    ref.assert_close(model.predict(d["stateful_lstm/x1"], batch_size=2, verbose=0),
                     d["stateful_lstm/y1_after_reset"], rtol=1e-4, atol=1e-5,
                     what="stateful after reset_states")


def test_non_stateful_layers_start_from_zeros_every_call():
    import ferrax

    L = _layers()
    rng = np.random.default_rng(16)
    model = ferrax.models.Sequential([L.Input(shape=(3, 2)), L.LSTM(3)])
    ws = _weights("LSTM", 2, 3, rng)
    model.set_weights(ws)
    x = rng.normal(size=(4, 3, 2)).astype(np.float32)
    want = R.rnn_forward("LSTM", x, ws)
    for _ in range(2):
        ref.assert_close(model.predict(x, batch_size=2, verbose=0), want, **TOL,
                         what="non-stateful LSTM predict")


# --------------------------------------------------------------------------------------------
# dropout / recurrent_dropout
#
# Keras draws its dropout masks once per call, of shape (batch, features) -- per sample and
# feature, the same at every time step. LSTM/GRU share one input mask across the gates when
# recurrent_dropout == 0, and draw one input and one recurrent mask per gate otherwise. The
# random draws themselves cannot be compared with Keras's; what the tests can pin down is the
# inference path, reproducibility, and -- for input dropout alone -- the mask read back from the
# zero pattern of dx, which must be constant over time and give the reference's numbers.


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_inactive_at_inference(kind):
    rng = np.random.default_rng(17)
    x = rng.normal(size=(3, 4, 3)).astype(np.float32)
    ws = _weights(kind, 3, 4, rng)
    dy = rng.normal(size=(3, 4, 4)).astype(np.float32)
    _check_rnn(kind, x, ws, dy, f"{kind}(dropout=0.4, recurrent_dropout=0.3), training=False",
               layer_kw=dict(dropout=0.4, recurrent_dropout=0.3), training=False,
               return_sequences=True)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_training_is_seeded_and_finite(kind):
    rng = np.random.default_rng(18)
    x = rng.normal(size=(8, 4, 5)).astype(np.float32)
    ws = _weights(kind, 5, 4, rng)
    L, ft = _layers(), _ft()

    def run(seed, training=True):
        layer = getattr(L, kind)(4, dropout=0.4, recurrent_dropout=0.3, return_sequences=True)
        return ft.layer_forward_backward(layer, x, weights=ws, training=training, seed=seed)

    y1, dx1, g1 = run(3)
    y2, dx2, g2 = run(3)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)
    for a, b in zip(g1, g2):
        np.testing.assert_array_equal(a, b)
    y_inf, _, _ = run(3, training=False)
    assert np.abs(y1 - y_inf).max() > 1e-3, "training=True applied no dropout"
    y3, _, _ = run(4)
    assert np.abs(y1 - y3).max() > 1e-3, "another seed drew the same masks"
    for arr in [y1, dx1, *g1]:
        assert np.all(np.isfinite(arr))


@pytest.mark.parametrize("kind", KINDS)
def test_input_dropout_mask_is_per_sample_and_feature_fixed_over_time(kind):
    rng = np.random.default_rng(19)
    b, t, f, u, rate = 64, 4, 8, 3, 0.5
    x = rng.uniform(0.2, 1.0, (b, t, f)).astype(np.float32) * rng.choice([-1, 1], (b, t, f))
    ws = _weights(kind, f, u, rng)
    dy = rng.normal(size=(b, t, u)).astype(np.float32)
    layer = getattr(_layers(), kind)(u, dropout=rate, return_sequences=True)
    y, dx, grads = _ft().layer_forward_backward(layer, x, dy, weights=ws, training=True, seed=5)
    dropped = np.abs(dx) == 0  # (b, t, f)
    col = dropped[:, :1, :]
    assert np.array_equal(dropped, np.broadcast_to(col, dropped.shape)), (
        "input dropout must drop the same (sample, feature) at every time step")
    frac = col.mean()
    assert 0.38 <= frac <= 0.62, f"dropped fraction {frac} for rate {rate}"
    # the mask read back gives exactly the reference's numbers (kept inputs scaled by 1/(1-rate))
    m = np.where(col[:, 0, :], 0.0, 1.0 / (1.0 - rate))
    want_y, want_dx, want_grads, _ = R.rnn_forward_backward(
        kind, x, ws, dy, return_sequences=True, dropout_mask=m)
    ref.assert_close(y, want_y, **TOL, what=f"{kind} dropout y (mask read back)")
    ref.assert_close(dx, want_dx, **TOL, what=f"{kind} dropout dx")
    for g, w in zip(grads, want_grads):
        ref.assert_close(g, w, **TOL, what=f"{kind} dropout weight gradient")


# --------------------------------------------------------------------------------------------
# Keras layout: weights from real Keras, default initial weights


def _fixture(d, case, n):
    return [d[f"{case}/w{i}"] for i in range(n)], d[f"{case}/x"], d[f"{case}/y"]


def _fixture_models():
    L = _layers()
    return {
        "simple_rnn": (3, lambda: [L.Input(shape=(5, 3)), L.SimpleRNN(4, return_sequences=True)]),
        "lstm": (3, lambda: [L.Input(shape=(5, 3)), L.LSTM(5)]),
        "gru": (3, lambda: [L.Input(shape=(5, 3)),
                            L.GRU(4, return_sequences=True, go_backwards=True)]),
        "bidi_lstm": (6, lambda: [L.Input(shape=(5, 3)),
                                  L.Bidirectional(L.LSTM(3, return_sequences=True))]),
        "bidi_gru_sum": (6, lambda: [L.Input(shape=(5, 3)),
                                     L.Bidirectional(L.GRU(3), merge_mode="sum")]),
        "emb_lstm": (4, lambda: [L.Input(shape=(6,)), L.Embedding(7, 4, mask_zero=True),
                                 L.LSTM(3, return_sequences=True)]),
        "masking_gru": (3, lambda: [L.Input(shape=(5, 2)), L.Masking(0.0), L.GRU(3)]),
    }


def test_fixture_file_is_small_and_complete():
    assert os.path.getsize(FIXTURES) < 100_000
    d = np.load(FIXTURES)
    for case, (n, _) in _fixture_models().items():
        ws, x, y = _fixture(d, case, n)
        assert all(w.dtype == np.float32 for w in ws), case


def test_fixtures_agree_with_the_reference():
    """Keras's float32 outputs vs the float64 reference (guards the fixture file itself)."""
    d = np.load(FIXTURES)
    ws, x, y = _fixture(d, "lstm", 3)
    ref.assert_close(y, R.rnn_forward("LSTM", x, ws), rtol=1e-5, atol=1e-6, what="lstm")
    ws, x, y = _fixture(d, "gru", 3)
    ref.assert_close(y, R.rnn_forward("GRU", x, ws, return_sequences=True, go_backwards=True),
                     rtol=1e-5, atol=1e-6, what="gru")
    ws, x, y = _fixture(d, "bidi_lstm", 6)
    ref.assert_close(y, R.bidirectional_forward_backward("LSTM", x, ws[:3], ws[3:],
                                                         return_sequences=True)[0],
                     rtol=1e-5, atol=1e-6, what="bidi_lstm")
    ws, x, y = _fixture(d, "emb_lstm", 4)
    emb, _ = R.embedding_forward_backward(x, ws[0])
    ref.assert_close(y, R.rnn_forward("LSTM", emb, ws[1:], return_sequences=True, mask=x != 0),
                     rtol=1e-5, atol=1e-6, what="emb_lstm")


@pytest.mark.parametrize("case", ["simple_rnn", "lstm", "gru", "bidi_lstm", "bidi_gru_sum",
                                  "emb_lstm", "masking_gru"])
def test_keras_weights_round_trip(case):
    import ferrax

    d = np.load(FIXTURES)
    n, layers = _fixture_models()[case]
    ws, x, y = _fixture(d, case, n)
    model = ferrax.models.Sequential(layers())
    assert [w.shape for w in model.get_weights()] == [w.shape for w in ws], case
    model.set_weights(ws)
    got = model.predict(x, verbose=0)
    ref.assert_close(got, y, rtol=1e-4, atol=1e-5, what=f"Keras fixture {case}")
    for a, b in zip(model.get_weights(), ws):
        np.testing.assert_array_equal(a, b)


def _initial_weights(layer, shape):
    import ferrax

    model = ferrax.models.Sequential([_layers().Input(shape=shape), layer])
    return model.get_weights()


@pytest.mark.parametrize("units", [1, 3, 8])
def test_lstm_initial_weights_follow_keras(units):
    f = 5
    k, rk, b = _initial_weights(_layers().LSTM(units), (4, f))
    assert k.shape == (f, 4 * units) and rk.shape == (units, 4 * units) and b.shape == (4 * units,)
    # glorot_uniform over (fan_in, fan_out) = (F, 4U)
    limit = math.sqrt(6.0 / (f + 4 * units))
    assert np.abs(k).max() <= limit * (1 + 1e-6) and np.abs(k).max() > 0.3 * limit
    # Keras's Orthogonal is applied to the whole (U, 4U) matrix: its U rows are orthonormal
    # (R R^T = I). (Orthogonalising each (U, U) gate block instead would give R R^T = 4 I.)
    assert R.orthonormal_rows_error(rk) < 1e-5, rk @ rk.T
    # unit_forget_bias: ones in the forget block, zeros elsewhere
    want = np.zeros(4 * units, np.float32)
    want[units:2 * units] = 1.0
    np.testing.assert_array_equal(b, want)
    (_, _, b2) = _initial_weights(_layers().LSTM(units, unit_forget_bias=False), (4, f))
    np.testing.assert_array_equal(b2, 0.0)


def test_gru_and_simple_rnn_initial_weights_follow_keras():
    k, rk, b = _initial_weights(_layers().GRU(4), (3, 2))
    assert k.shape == (2, 12) and rk.shape == (4, 12) and b.shape == (2, 12)
    assert R.orthonormal_rows_error(rk) < 1e-5
    np.testing.assert_array_equal(b, 0.0)
    assert np.abs(k).max() <= math.sqrt(6.0 / 14) * (1 + 1e-6)
    k, rk, b = _initial_weights(_layers().SimpleRNN(5), (3, 2))
    assert k.shape == (2, 5) and rk.shape == (5, 5) and b.shape == (5,)
    np.testing.assert_allclose(rk.T @ rk, np.eye(5), atol=1e-5)
    np.testing.assert_allclose(rk @ rk.T, np.eye(5), atol=1e-5)
    np.testing.assert_array_equal(b, 0.0)


def test_embedding_initial_weights_uniform_005():
    (e,) = _initial_weights(_layers().Embedding(500, 8), (4,))
    assert e.shape == (500, 8)
    assert np.abs(e).max() <= 0.05 and np.abs(e).max() > 0.045
    assert abs(float(e.std()) - 0.05 / math.sqrt(3)) < 0.003
    assert abs(float(e.mean())) < 0.003


# --------------------------------------------------------------------------------------------
# gradient clipping in recurrent training


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("clip", [dict(clipnorm=0.05), dict(clipvalue=0.01),
                                  dict(global_clipnorm=0.05), dict()],
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "none")
def test_clipped_sgd_step_on_recurrent_model(kind, clip):
    import ferrax

    L = _layers()
    rng = np.random.default_rng(20)
    b, t, f, u, k = 4, 3, 2, 3, 2
    x = rng.normal(size=(b, t, f)).astype(np.float32)
    y = rng.normal(size=(b, k)).astype(np.float32)
    ws = _weights(kind, f, u, rng) + [rng.uniform(-0.8, 0.8, (u, k)).astype(np.float32),
                                      rng.uniform(-0.8, 0.8, k).astype(np.float32)]
    model = ferrax.models.Sequential([L.Input(shape=(t, f)), getattr(L, kind)(u), L.Dense(k)])
    model.compile(optimizer=ferrax.optimizers.SGD(learning_rate=0.5, **clip), loss="mse")
    model.set_weights(ws)
    loss, grads = R.rnn_dense_mse_grads(kind, x, y, ws)
    # the clip must bite, or the test could not tell clipping from none
    if "clipnorm" in clip:
        assert max(np.linalg.norm(g) for g in grads) > 2 * clip["clipnorm"]
    if "global_clipnorm" in clip:
        assert math.sqrt(sum(float(np.sum(g * g)) for g in grads)) > clip["global_clipnorm"]
    if "clipvalue" in clip:
        assert max(np.abs(g).max() for g in grads) > 2 * clip["clipvalue"]
    want = R.sgd_clipped_step(ws, grads, 0.5, **clip)
    got_loss = model.train_on_batch(x, y)
    got_loss = float(np.ravel(got_loss)[0]) if np.ndim(got_loss) else float(got_loss)
    assert got_loss == pytest.approx(loss, rel=1e-4, abs=1e-6)
    names = ["kernel", "recurrent_kernel", "bias", "dense kernel", "dense bias"]
    for name, a, w in zip(names, model.get_weights(), want):
        ref.assert_close(a, w, rtol=1e-4, atol=1e-5, what=f"{kind} SGD({clip}) {name} after "
                                                          "one step")


# --------------------------------------------------------------------------------------------
# errors


def _build_and_predict(layers, x):
    import ferrax

    m = ferrax.models.Sequential(layers)
    m.summary(print_fn=lambda *a, **k: None)
    m.predict(x, verbose=0)


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_rank_input_names_the_layer(kind):
    L = _layers()
    with pytest.raises(ValueError, match="my_rnn"):
        _build_and_predict([L.Input(shape=(4, 3)), L.Flatten(), getattr(L, kind)(2, name="my_rnn")],
                           np.zeros((2, 4, 3), np.float32))
    with pytest.raises(ValueError, match="my_rnn"):
        _build_and_predict([L.Input(shape=(784,)), getattr(L, kind)(2, name="my_rnn")],
                           np.zeros((2, 784), np.float32))
    with pytest.raises(ValueError, match="my_rnn"):
        _ft().layer_forward_backward(getattr(L, kind)(2, name="my_rnn"),
                                     np.zeros((2, 5), np.float32))


def test_bidirectional_wrong_rank_names_a_layer():
    L = _layers()
    with pytest.raises(ValueError, match=any_of("my_bidi", "my_lstm")):
        _build_and_predict([L.Input(shape=(6,)),
                            L.Bidirectional(L.LSTM(2, name="my_lstm"), name="my_bidi")],
                           np.zeros((2, 6), np.float32))


@pytest.mark.parametrize("kind", KINDS)
def test_zero_length_sequence_names_the_layer(kind):
    L = _layers()
    msg = all_of("my_rnn", any_of("zero", "empty", r"(?<![\d.])0(?![\d.])", "length", "step"))
    with pytest.raises(ValueError, match=msg):
        _ft().layer_forward_backward(getattr(L, kind)(2, name="my_rnn"),
                                     np.zeros((2, 0, 3), np.float32))
    # at model level: data with T = 0 for a model built for T = 5 ...
    with pytest.raises(ValueError):
        _build_and_predict([L.Input(shape=(5, 3)), getattr(L, kind)(2, name="my_rnn")],
                           np.zeros((2, 0, 3), np.float32))
    # ... or a model declared with T = 0 (the Input itself may refuse it)
    with pytest.raises(ValueError, match=any_of("my_rnn", "zero", "empty", "length",
                                                "positive")):
        _build_and_predict([L.Input(shape=(0, 3)), getattr(L, kind)(2, name="my_rnn")],
                           np.zeros((2, 0, 3), np.float32))


@pytest.mark.parametrize("bad", [10, 11, -1])
def test_embedding_ids_out_of_range(bad):
    import ferrax

    L = _layers()
    model = ferrax.models.Sequential([L.Input(shape=(4,)), L.Embedding(10, 3, name="my_emb"),
                                      L.LSTM(2)])
    model.compile(optimizer="sgd", loss="mse")
    ids = np.array([[1, 2, 3, 4], [5, 6, bad, 0]])
    msg = all_of("my_emb", re.escape(str(bad)))
    with pytest.raises(ValueError, match=msg):
        model.predict(ids, verbose=0)
    with pytest.raises(ValueError, match=msg):
        model.fit(ids, np.zeros((2, 2), np.float32), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=msg):
        model.evaluate(ids, np.zeros((2, 2), np.float32), verbose=0)
    with pytest.raises(ValueError, match=msg):
        model.train_on_batch(ids, np.zeros((2, 2), np.float32))
    # the model still works afterwards with good ids
    ok = np.array([[1, 2, 3, 4], [5, 6, 9, 0]])
    assert model.predict(ok, verbose=0).shape == (2, 2)


def test_embedding_ids_out_of_range_in_the_engine():
    """The engine itself (here reached through the test hook, past the Python-side checks) must
    refuse out-of-range ids too, not look up a row of zeros."""
    ids = np.array([[1, 2, 3, 4], [5, 6, 11, 0]])
    with pytest.raises(ValueError, match="my_emb"):
        _ft().layer_forward_backward(_layers().Embedding(10, 3, name="my_emb"), ids)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("units", [0, -3])
def test_units_must_be_positive(kind, units):
    with pytest.raises((ValueError, TypeError), match="units"):
        getattr(_layers(), kind)(units)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arg,value", [("dropout", -0.1), ("dropout", 1.0), ("dropout", 1.5),
                                       ("recurrent_dropout", -0.5),
                                       ("recurrent_dropout", 1.0)])
def test_dropout_rates_outside_0_1(kind, arg, value):
    # (Keras 3 silently clamps these to [0, 1]; ferrax refuses them, naming the argument)
    with pytest.raises(ValueError, match=arg):
        getattr(_layers(), kind)(3, **{arg: value})


def test_bidirectional_argument_errors():
    L = _layers()
    with pytest.raises((ValueError, TypeError), match=any_of("Bidirectional", "recurrent",
                                                             "RNN", "Dense")):
        L.Bidirectional(L.Dense(3))
    with pytest.raises(ValueError, match=all_of("merge_mode", "max")):
        L.Bidirectional(L.LSTM(3), merge_mode="max")


# --------------------------------------------------------------------------------------------
# a small real task


def test_lstm_learns_digits_row_by_row(digits_split):
    """sklearn's 8x8 digits read as 8 steps of 8 pixels: LSTM(32) -> Dense(10). Keras 3 with the
    same setup reaches 0.92-0.97 test accuracy after 15 epochs (5 seeds)."""
    import ferrax

    L = _layers()
    x_tr, y_tr, x_te, y_te = digits_split
    ferrax.utils.set_random_seed(0)
    model = ferrax.models.Sequential([L.Input(shape=(8, 8)), L.LSTM(32),
                                      L.Dense(10, activation="softmax")])
    model.compile(optimizer=ferrax.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_tr.reshape(-1, 8, 8), y_tr, epochs=15, batch_size=32, verbose=0)
    _, acc = model.evaluate(x_te.reshape(-1, 8, 8), y_te, verbose=0)
    assert acc >= 0.9, f"test accuracy {acc}"
