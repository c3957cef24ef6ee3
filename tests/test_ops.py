"""ferrax.ops against independent float64 NumPy references (Keras 3 keras.ops semantics).

Layout:

* ``CASES``: differentiable ops. Each case has the ferrax call, a float64 forward reference and
  a hand-written float64 reference of the gradient of ``sum(y * d)``. Three tests use it:
  ``test_reference_grad_matches_finite_differences`` checks the hand-written gradient against
  central finite differences (pure NumPy, runs without ferrax), ``test_forward`` checks the eager
  value, ``test_vjp`` checks ``ferrax.ops._testing.vjp`` against the reference gradient.
* Forward-only tables for ops without a gradient (argmax, comparisons, one_hot, creation, ...).
* Symbolic-vs-eager: a ``ferrax.Model`` built from ``ferrax.Input`` must predict bitwise what the
  eager op computes on the same batch.
* Error messages of a few malformed calls.

Inputs are drawn in float32 and the references get exactly those float32 values (in float64), so
the only difference measured is ferrax's float32 arithmetic. Inputs stay away from kinks (relu at
0, abs at 0, clip bounds, max/min ties) and log/sqrt/power bases stay positive.

Keras 3 facts relied on (keras.ops docs / keras/src/backend/jax): std/var/moments are population
statistics (ddof=0); ops.binary_crossentropy is elementwise (no mean over the last axis); the
categorical cross-entropies sum over ``axis``; without from_logits the probabilities are divided
by their sum over ``axis`` (categorical ones only) and clipped to [1e-7, 1 - 1e-7]; gelu defaults
to approximate=True (tanh form); leaky_relu's negative_slope defaults to 0.2; repeat with
axis=None flattens; take with axis=None indexes the flattened array; argmax with axis=None gives a
flat index. When this file was written, its forward and gradient expectations were also run
outside the repository against Keras 3.15 itself (jax backend, float32, `jax.vjp` standing in
for the vjp hook) and all held there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

F32 = np.float32

# --------------------------------------------------------------------------------------------
# access to ferrax (imported lazily, so the pure-NumPy reference self-checks run without it)


def _ops():
    from ferrax import ops

    return ops


def _vjp():
    from ferrax.ops._testing import vjp

    return vjp


def _ferrax():
    import ferrax

    return ferrax


# --------------------------------------------------------------------------------------------
# helpers


def assert_close(got, want, *, rtol, atol, what=""):
    got = np.asarray(got)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    g = got.astype(np.float64)
    err = np.abs(g - want)
    bad = ~(err <= atol + rtol * np.abs(want))  # NaN counts as bad
    if np.any(bad):
        i = tuple(int(k) for k in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{bad.size} entries off (rtol={rtol}, atol={atol}); "
            f"first at {i}: got {g[i]!r}, expected {want[i]!r}; max abs err "
            f"{float(np.nanmax(np.where(np.isnan(err), np.inf, err))):.3g}"
        )


def numerical_grads(f, xs, d, eps=1e-6):
    """Central differences of sum(f(*xs) * d) w.r.t. every array in xs (float64)."""
    xs = [np.array(x, dtype=np.float64, order="C", copy=True) for x in xs]
    out = []
    for x in xs:
        g = np.zeros_like(x)
        flat, gflat = x.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            fp = float(np.sum(np.asarray(f(*xs), dtype=np.float64) * d))
            flat[i] = old - eps
            fm = float(np.sum(np.asarray(f(*xs), dtype=np.float64) * d))
            flat[i] = old
            gflat[i] = (fp - fm) / (2 * eps)
        out.append(g)
    return out


def unbroadcast(g, shape):
    """Sum g over the axes that broadcasting added to / stretched in `shape`."""
    g = np.asarray(g, dtype=np.float64)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, s in enumerate(shape):
        if s == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g.reshape(shape)


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % ndim for a in axis))


def expand_back(d, x_shape, axis, keepdims):
    """Reshape an (optionally keepdims=False) reduction cotangent to broadcast against x."""
    ax = _axes(axis, len(x_shape))
    shape = tuple(1 if i in ax else s for i, s in enumerate(x_shape))
    return np.broadcast_to(np.asarray(d, dtype=np.float64).reshape(shape), x_shape)


def _n(r, *shape, scale=1.0):
    return np.asarray(scale * r.standard_normal(shape), dtype=F32)


def _u(r, lo, hi, *shape):
    return r.uniform(lo, hi, size=shape).astype(F32)


def _away(x, points=(0.0,), margin=0.05):
    """Push entries of x within `margin` of any of `points` to `margin` past it (float32)."""
    x = np.array(x, dtype=np.float64)
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin)
    return x.astype(F32)


def _apart(r, sa, sb, margin=0.05):
    """Two normal arrays whose broadcast entries differ by at least `margin` (no ties)."""
    for _ in range(100):
        a, b = _n(r, *sa), _n(r, *sb)
        if np.min(np.abs(np.asarray(a, np.float64) - b)) > margin:
            return [a, b]
    raise RuntimeError("could not draw tie-free inputs")


def _signed_mag(r, *shape):
    """Nonzero values of magnitude in [0.6, 1.4] with random signs (for prod)."""
    return (r.uniform(0.6, 1.4, size=shape) * r.choice([-1.0, 1.0], size=shape)).astype(F32)


# --------------------------------------------------------------------------------------------
# float64 math used by the references

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
EPS = 1e-7
_erf = np.vectorize(math.erf, otypes=[np.float64])
_GC = math.sqrt(2.0 / math.pi)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def logsumexp(x, axis=None, keepdims=False):
    ax = _axes(axis, x.ndim)
    m = np.max(x, axis=ax, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=ax)


def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    return x - logsumexp(x, axis=axis, keepdims=True)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(_GC * (x + 0.044715 * x**3)))


def gelu_tanh_grad(x):
    t = np.tanh(_GC * (x + 0.044715 * x**3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _GC * (1.0 + 3 * 0.044715 * x**2)


def Phi(x):
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def phi(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def elu_grad(x, alpha=1.0):
    return np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))


#: The clip bounds as they act on float32 data: 1 - 1e-7 rounds to 1 - 2**-23 in float32, so
#: Keras's log(1 - p) at the upper bound is log(1.19e-7), not log(1e-7).
CLIP_LO = float(np.float32(EPS))
CLIP_HI = float(np.float32(1.0 - EPS))


def _clip_p(p):
    return np.clip(p, CLIP_LO, CLIP_HI)


def matmul_grad(d, a, b):
    """Gradients of sum(matmul(a, b) * d), with NumPy's 1-D promotion and batch broadcasting."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    d2 = np.asarray(d, dtype=np.float64)
    if a.ndim == 1 and b.ndim == 1:
        d2 = d2.reshape(1, 1)
    elif a.ndim == 1:
        d2 = np.expand_dims(d2, -2)
    elif b.ndim == 1:
        d2 = np.expand_dims(d2, -1)
    da = d2 @ np.swapaxes(b2, -1, -2)
    db = np.swapaxes(a2, -1, -2) @ d2
    return [unbroadcast(da, a2.shape).reshape(a.shape), unbroadcast(db, b2.shape).reshape(b.shape)]


def tile_grad(d, x, reps):
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    nd = max(x.ndim, len(reps))
    xs = (1,) * (nd - x.ndim) + x.shape
    reps = (1,) * (nd - len(reps)) + reps
    g = d.reshape(sum(((r, s) for r, s in zip(reps, xs)), ()))
    return g.sum(axis=tuple(range(0, 2 * nd, 2))).reshape(x.shape)


def repeat_grad(d, x, r, axis):
    if axis is None:
        return d.reshape(x.size, r).sum(axis=1).reshape(x.shape)
    axis %= x.ndim
    shape = x.shape[:axis] + (x.shape[axis], r) + x.shape[axis + 1 :]
    return d.reshape(shape).sum(axis=axis + 1)


def take_grad(d, x, idx, axis):
    if axis is None:
        g = np.zeros(x.size)
        np.add.at(g, idx.reshape(-1), d.reshape(-1))
        return g.reshape(x.shape)
    axis %= x.ndim
    g = np.zeros(x.shape)
    gm = np.moveaxis(g, axis, 0)  # a view
    np.add.at(gm, idx, np.moveaxis(d, axis, 0))
    return g


def index_grad(d, x, key):
    g = np.zeros(x.shape)
    g[key] = d
    return g


def pad_grad(d, x, pw):
    return d[tuple(slice(lo, lo + s) for (lo, _), s in zip(pw, x.shape))]


def softmax_vjp(d, x, axis):
    s = softmax(x, axis)
    return s * (d - np.sum(d * s, axis=axis, keepdims=True))


def log_softmax_vjp(d, x, axis):
    return d - softmax(x, axis) * np.sum(d, axis=axis, keepdims=True)


# --------------------------------------------------------------------------------------------
# differentiable cases


@dataclass
class Case:
    id: str
    fn: Callable[..., Any]  # fn(ops, *inputs) -> tensor
    fwd: Callable[..., Any]  # float64 reference of the value
    grad: Callable[..., list] | None  # grad(d, *inputs) -> list of float64 gradients
    make: Callable[[np.random.Generator], list]  # rng -> list of float32 inputs
    rtol: float = 1e-5
    atol: float = 1e-6
    grtol: float = 1e-4
    gatol: float = 1e-5
    fd: bool = True  # small enough for the finite-difference self-check


CASES: list[Case] = []


def case(*args, **kw):
    CASES.append(Case(*args, **kw))


# ---- elementwise binary arithmetic, with broadcasting
BIN_SHAPES = [((4, 3), (4, 3)), ((4, 3), (3,)), ((2, 1, 3), (4, 1)), ((4, 3), ()), ((), (2, 3))]


def _sid(sa, sb):
    return f"{'x'.join(map(str, sa)) or 'scalar'}-{'x'.join(map(str, sb)) or 'scalar'}"


for sa, sb in BIN_SHAPES:
    sid = _sid(sa, sb)

    def mk(r, sa=sa, sb=sb):
        return [_n(r, *sa), _n(r, *sb)]

    def mk_den(r, sa=sa, sb=sb):  # denominators away from zero
        return [_n(r, *sa), _u(r, 0.5, 2.0, *sb) * r.choice([-1, 1], size=sb).astype(F32)]

    def mk_pos(r, sa=sa, sb=sb):  # positive base, moderate exponent
        return [_u(r, 0.5, 2.0, *sa), _u(r, -1.5, 2.5, *sb)]

    case(
        f"add-{sid}",
        lambda o, a, b: o.add(a, b),
        lambda a, b: a + b,
        lambda d, a, b: [unbroadcast(d, a.shape), unbroadcast(d, b.shape)],
        mk,
    )
    case(
        f"subtract-{sid}",
        lambda o, a, b: o.subtract(a, b),
        lambda a, b: a - b,
        lambda d, a, b: [unbroadcast(d, a.shape), unbroadcast(-d, b.shape)],
        mk,
    )
    case(
        f"multiply-{sid}",
        lambda o, a, b: o.multiply(a, b),
        lambda a, b: a * b,
        lambda d, a, b: [unbroadcast(d * b, a.shape), unbroadcast(d * a, b.shape)],
        mk,
    )
    for name in ("divide", "true_divide"):
        case(
            f"{name}-{sid}",
            lambda o, a, b, name=name: getattr(o, name)(a, b),
            lambda a, b: a / b,
            lambda d, a, b: [unbroadcast(d / b, a.shape), unbroadcast(-d * a / b**2, b.shape)],
            mk_den,
        )
    case(
        f"power-{sid}",
        lambda o, a, b: o.power(a, b),
        lambda a, b: a**b,
        lambda d, a, b: [
            unbroadcast(d * b * a ** (b - 1), a.shape),
            unbroadcast(d * a**b * np.log(a), b.shape),
        ],
        mk_pos,
        rtol=1e-4,
        atol=1e-5,
    )
    case(
        f"maximum-{sid}",
        lambda o, a, b: o.maximum(a, b),
        lambda a, b: np.maximum(a, b),
        lambda d, a, b: [
            unbroadcast(d * (a > b), a.shape),
            unbroadcast(d * (b > a), b.shape),
        ],
        lambda r, sa=sa, sb=sb: _apart(r, sa, sb),
    )
    case(
        f"minimum-{sid}",
        lambda o, a, b: o.minimum(a, b),
        lambda a, b: np.minimum(a, b),
        lambda d, a, b: [
            unbroadcast(d * (a < b), a.shape),
            unbroadcast(d * (b < a), b.shape),
        ],
        lambda r, sa=sa, sb=sb: _apart(r, sa, sb),
    )

# ---- elementwise unary
UNARY = [
    # id, fn, fwd, derivative, input maker, (rtol, atol)
    ("negative", lambda o, x: o.negative(x), lambda x: -x, lambda x: -np.ones_like(x),
     lambda r: [_n(r, 3, 4)], None),
    ("square", lambda o, x: o.square(x), lambda x: x * x, lambda x: 2 * x,
     lambda r: [_n(r, 3, 4)], None),
    ("sqrt", lambda o, x: o.sqrt(x), np.sqrt, lambda x: 0.5 / np.sqrt(x),
     lambda r: [_u(r, 0.2, 4.0, 3, 4)], None),
    ("exp", lambda o, x: o.exp(x), np.exp, np.exp, lambda r: [_n(r, 3, 4, scale=2.0)],
     (1e-4, 1e-5)),
    ("log", lambda o, x: o.log(x), np.log, lambda x: 1.0 / x,
     lambda r: [_u(r, 0.1, 5.0, 3, 4)], (1e-4, 1e-5)),
    ("log1p", lambda o, x: o.log1p(x), np.log1p, lambda x: 1.0 / (1.0 + x),
     lambda r: [_u(r, -0.5, 3.0, 3, 4)], (1e-4, 1e-5)),
    ("abs", lambda o, x: o.abs(x), np.abs, np.sign, lambda r: [_away(_n(r, 3, 4))], None),
    ("sign", lambda o, x: o.sign(x), np.sign, np.zeros_like, lambda r: [_away(_n(r, 3, 4))],
     None),
    ("relu", lambda o, x: o.relu(x), lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0,
     lambda r: [_away(_n(r, 3, 4))], None),
    ("relu6", lambda o, x: o.relu6(x), lambda x: np.clip(x, 0, 6),
     lambda x: ((x > 0) & (x < 6)) * 1.0, lambda r: [_away(_n(r, 3, 4, scale=4.0), (0.0, 6.0))],
     None),
    ("sigmoid", lambda o, x: o.sigmoid(x), sigmoid, lambda x: sigmoid(x) * (1 - sigmoid(x)),
     lambda r: [_n(r, 3, 4, scale=2.0)], None),
    ("tanh", lambda o, x: o.tanh(x), np.tanh, lambda x: 1 - np.tanh(x) ** 2,
     lambda r: [_n(r, 3, 4, scale=2.0)], None),
    ("gelu-default", lambda o, x: o.gelu(x), gelu_tanh, gelu_tanh_grad,
     lambda r: [_n(r, 3, 4, scale=2.0)], (1e-4, 1e-5)),
    ("gelu-approximate", lambda o, x: o.gelu(x, approximate=True), gelu_tanh, gelu_tanh_grad,
     lambda r: [_n(r, 3, 4, scale=2.0)], (1e-4, 1e-5)),
    ("gelu-exact", lambda o, x: o.gelu(x, approximate=False), lambda x: x * Phi(x),
     lambda x: Phi(x) + x * phi(x), lambda r: [_n(r, 3, 4, scale=2.0)], (1e-4, 1e-5)),
    ("silu", lambda o, x: o.silu(x), lambda x: x * sigmoid(x),
     lambda x: sigmoid(x) * (1 + x * (1 - sigmoid(x))), lambda r: [_n(r, 3, 4, scale=2.0)],
     None),
    ("softplus", lambda o, x: o.softplus(x), softplus, sigmoid,
     lambda r: [_n(r, 3, 4, scale=3.0)], (1e-5, 1e-6)),
    ("elu-default", lambda o, x: o.elu(x), elu, elu_grad,
     lambda r: [_away(_n(r, 3, 4, scale=2.0))], (1e-5, 1e-6)),
    ("elu-alpha0.5", lambda o, x: o.elu(x, alpha=0.5), lambda x: elu(x, 0.5),
     lambda x: elu_grad(x, 0.5), lambda r: [_away(_n(r, 3, 4, scale=2.0))], (1e-5, 1e-6)),
    ("selu", lambda o, x: o.selu(x), lambda x: SELU_SCALE * elu(x, SELU_ALPHA),
     lambda x: SELU_SCALE * elu_grad(x, SELU_ALPHA), lambda r: [_away(_n(r, 3, 4, scale=2.0))],
     (1e-5, 1e-6)),
    ("leaky_relu-default", lambda o, x: o.leaky_relu(x), lambda x: np.where(x > 0, x, 0.2 * x),
     lambda x: np.where(x > 0, 1.0, 0.2), lambda r: [_away(_n(r, 3, 4))], None),
    ("leaky_relu-0.05", lambda o, x: o.leaky_relu(x, negative_slope=0.05),
     lambda x: np.where(x > 0, x, 0.05 * x), lambda x: np.where(x > 0, 1.0, 0.05),
     lambda r: [_away(_n(r, 3, 4))], None),
]
for uid, ufn, ufwd, uder, umk, utol in UNARY:
    rt, at = utol or (1e-5, 1e-6)
    case(uid, ufn, ufwd, lambda d, x, uder=uder: [d * uder(x)], umk, rtol=rt, atol=at)

# unary ops on a 3-D and a 0-d input too (shape handling)
case("exp-3d", lambda o, x: o.exp(x), np.exp, lambda d, x: [d * np.exp(x)],
     lambda r: [_n(r, 2, 3, 2)], rtol=1e-4, atol=1e-5)
case("tanh-0d", lambda o, x: o.tanh(x), np.tanh, lambda d, x: [d * (1 - np.tanh(x) ** 2)],
     lambda r: [_n(r)])

# ---- clip, where
case(
    "clip",
    lambda o, x: o.clip(x, -0.5, 0.7),
    lambda x: np.clip(x, -0.5, 0.7),
    lambda d, x: [d * ((x > -0.5) & (x < 0.7))],
    lambda r: [_away(_n(r, 4, 5), (-0.5, 0.7))],
)
_COND = np.array([[True, False, True], [False, False, True], [True, True, False],
                  [False, True, True]])
case(
    "where-same-shape",
    lambda o, a, b: o.where(_COND, a, b),
    lambda a, b: np.where(_COND, a, b),
    lambda d, a, b: [d * _COND, d * ~_COND],
    lambda r: [_n(r, 4, 3), _n(r, 4, 3)],
)
case(
    "where-broadcast",
    lambda o, a, b: o.where(_COND, a, b),
    lambda a, b: np.where(_COND, a, b),
    lambda d, a, b: [unbroadcast(d * _COND, a.shape), unbroadcast(d * ~_COND, b.shape)],
    lambda r: [_n(r, 4, 3), _n(r, 3)],
)
case(
    "where-scalar-else",
    lambda o, a: o.where(_COND, a, 0.0),
    lambda a: np.where(_COND, a, 0.0),
    lambda d, a: [d * _COND],
    lambda r: [_n(r, 4, 3)],
)
case(
    "where-tensor-condition",
    lambda o, a, b: o.where(o.greater(a, b), a, b),
    lambda a, b: np.where(a > b, a, b),
    lambda d, a, b: [d * (a > b), d * (b > a)],
    lambda r: _apart(r, (4, 3), (4, 3)),
)

# ---- reductions
RED_AXES = [
    (None, False), (None, True), (0, False), (-1, False), (1, True), (-1, True), ((0, 2), False),
    ((0, -1), True),
]


def _rid(name, axis, keep):
    if axis is None:
        a = "none"
    else:
        a = str(axis) if isinstance(axis, int) else "-".join(map(str, axis))
    return f"{name}-axis{a}{'-keep' if keep else ''}"


for axis, keep in RED_AXES:
    kw = {"axis": axis, "keepdims": keep}

    def _cnt(x, axis=axis):
        return int(np.prod([x.shape[i] for i in _axes(axis, x.ndim)]))

    case(
        _rid("sum", axis, keep),
        lambda o, x, kw=kw: o.sum(x, **kw),
        lambda x, kw=kw: np.sum(x, axis=_axes(kw["axis"], x.ndim), keepdims=kw["keepdims"]),
        lambda d, x, axis=axis, keep=keep: [expand_back(d, x.shape, axis, keep).copy()],
        lambda r: [_n(r, 2, 3, 4)],
        atol=1e-5,
    )
    case(
        _rid("mean", axis, keep),
        lambda o, x, kw=kw: o.mean(x, **kw),
        lambda x, kw=kw: np.mean(x, axis=_axes(kw["axis"], x.ndim), keepdims=kw["keepdims"]),
        lambda d, x, axis=axis, keep=keep, _cnt=_cnt: [
            expand_back(d, x.shape, axis, keep) / _cnt(x)
        ],
        lambda r: [_n(r, 2, 3, 4)],
        atol=1e-6,
    )
    for name, npf in (("max", np.max), ("min", np.min)):
        case(
            _rid(name, axis, keep),
            lambda o, x, kw=kw, name=name: getattr(o, name)(x, **kw),
            lambda x, kw=kw, npf=npf: npf(x, axis=_axes(kw["axis"], x.ndim),
                                          keepdims=kw["keepdims"]),
            lambda d, x, axis=axis, keep=keep, npf=npf: [
                expand_back(d, x.shape, axis, keep)
                * (x == npf(x, axis=_axes(axis, x.ndim), keepdims=True))
            ],
            lambda r: [_n(r, 2, 3, 4)],
        )
    case(
        _rid("prod", axis, keep),
        lambda o, x, kw=kw: o.prod(x, **kw),
        lambda x, kw=kw: np.prod(x, axis=_axes(kw["axis"], x.ndim), keepdims=kw["keepdims"]),
        lambda d, x, axis=axis, keep=keep: [
            expand_back(d, x.shape, axis, keep)
            * np.prod(x, axis=_axes(axis, x.ndim), keepdims=True) / x
        ],
        lambda r: [_signed_mag(r, 2, 3, 4)],
        rtol=1e-5,
        atol=1e-5,
    )
    case(
        _rid("var", axis, keep),
        lambda o, x, kw=kw: o.var(x, **kw),
        lambda x, kw=kw: np.var(x, axis=_axes(kw["axis"], x.ndim), keepdims=kw["keepdims"]),
        lambda d, x, axis=axis, keep=keep, _cnt=_cnt: [
            expand_back(d, x.shape, axis, keep) * 2.0
            * (x - np.mean(x, axis=_axes(axis, x.ndim), keepdims=True)) / _cnt(x)
        ],
        lambda r: [_n(r, 2, 3, 4)],
        rtol=1e-4,
        atol=1e-5,
    )
    case(
        _rid("std", axis, keep),
        lambda o, x, kw=kw: o.std(x, **kw),
        lambda x, kw=kw: np.std(x, axis=_axes(kw["axis"], x.ndim), keepdims=kw["keepdims"]),
        lambda d, x, axis=axis, keep=keep, _cnt=_cnt: [
            expand_back(d, x.shape, axis, keep)
            * (x - np.mean(x, axis=_axes(axis, x.ndim), keepdims=True))
            / (_cnt(x) * np.std(x, axis=_axes(axis, x.ndim), keepdims=True))
        ],
        lambda r: [_n(r, 2, 3, 4)],
        rtol=1e-4,
        atol=1e-5,
    )
    case(
        _rid("logsumexp", axis, keep),
        lambda o, x, kw=kw: o.logsumexp(x, **kw),
        lambda x, kw=kw: logsumexp(x, axis=kw["axis"], keepdims=kw["keepdims"]),
        lambda d, x, axis=axis, keep=keep: [
            expand_back(d, x.shape, axis, keep)
            * np.exp(x - logsumexp(x, axis=axis, keepdims=True))
        ],
        lambda r: [_n(r, 2, 3, 4, scale=2.0)],
        rtol=1e-5,
        atol=1e-5,
    )

# reductions with the default arguments (axis=None, keepdims=False)
for name, npf in (("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min),
                  ("var", np.var), ("std", np.std)):
    case(
        f"{name}-defaults",
        lambda o, x, name=name: getattr(o, name)(x),
        lambda x, npf=npf: npf(x),
        None,
        lambda r: [_n(r, 3, 4)],
        rtol=1e-5,
        atol=1e-5,
    )

# ---- linear algebra
MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (3, 4, 2)),  # leading axes broadcast to (2, 3)
    ((1, 3, 4), (2, 4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((4,), (2, 4, 3)),
    ((2, 3, 4), (4,)),
]
for sa, sb in MATMUL_SHAPES:
    case(
        f"matmul-{_sid(sa, sb)}",
        lambda o, a, b: o.matmul(a, b),
        lambda a, b: np.matmul(a, b),
        matmul_grad,
        lambda r, sa=sa, sb=sb: [_n(r, *sa), _n(r, *sb)],
        atol=1e-5,
    )
case(
    "dot-2d",
    lambda o, a, b: o.dot(a, b),
    lambda a, b: a @ b,
    lambda d, a, b: [d @ b.T, a.T @ d],
    lambda r: [_n(r, 3, 4), _n(r, 4, 5)],
    atol=1e-5,
)
case(
    "einsum-ij,jk->ik",
    lambda o, a, b: o.einsum("ij,jk->ik", a, b),
    lambda a, b: a @ b,
    lambda d, a, b: [d @ b.T, a.T @ d],
    lambda r: [_n(r, 3, 4), _n(r, 4, 5)],
    atol=1e-5,
)
case(
    "einsum-bij,bjk->bik",
    lambda o, a, b: o.einsum("bij,bjk->bik", a, b),
    lambda a, b: np.matmul(a, b),
    lambda d, a, b: [d @ np.swapaxes(b, 1, 2), np.swapaxes(a, 1, 2) @ d],
    lambda r: [_n(r, 2, 3, 4), _n(r, 2, 4, 5)],
    atol=1e-5,
)
case(
    "einsum-bi,bi->b",
    lambda o, a, b: o.einsum("bi,bi->b", a, b),
    lambda a, b: np.sum(a * b, axis=1),
    lambda d, a, b: [d[:, None] * b, d[:, None] * a],
    lambda r: [_n(r, 3, 5), _n(r, 3, 5)],
    atol=1e-5,
)

# ---- shape manipulation
for new in [(6, 4), (4, -1), (24,), (2, 12, 1), (-1,)]:
    case(
        f"reshape-{new}",
        lambda o, x, new=new: o.reshape(x, new),
        lambda x, new=new: x.reshape(new),
        lambda d, x: [d.reshape(x.shape)],
        lambda r: [_n(r, 2, 3, 4)],
    )
for axes in [None, (1, 0, 2), (0, 2, 1), (2, 0, 1)]:
    case(
        f"transpose-{axes}",
        (lambda o, x: o.transpose(x)) if axes is None
        else (lambda o, x, axes=axes: o.transpose(x, axes=axes)),
        lambda x, axes=axes: np.transpose(x, axes),
        lambda d, x, axes=axes: [np.transpose(d, np.argsort(axes) if axes else None)],
        lambda r: [_n(r, 2, 3, 4)],
    )
case("transpose-2d", lambda o, x: o.transpose(x), lambda x: x.T, lambda d, x: [d.T],
     lambda r: [_n(r, 3, 5)])
for ax in [0, 1, -1, 3]:
    case(
        f"expand_dims-{ax}",
        lambda o, x, ax=ax: o.expand_dims(x, ax),
        lambda x, ax=ax: np.expand_dims(x, ax),
        lambda d, x: [d.reshape(x.shape)],
        lambda r: [_n(r, 2, 3, 4)],
    )
for ax in [None, 2, 0, -4, (0, 2)]:
    case(
        f"squeeze-{ax}",
        (lambda o, x: o.squeeze(x)) if ax is None else (lambda o, x, ax=ax: o.squeeze(x, axis=ax)),
        lambda x, ax=ax: np.squeeze(x, axis=ax),
        lambda d, x: [d.reshape(x.shape)],
        lambda r: [_n(r, 1, 3, 1, 4)],
    )
for shapes, ax in [([(2, 3), (2, 5)], 1), ([(2, 3), (4, 3)], 0), ([(2, 1, 3), (2, 2, 3),
                                                                  (2, 3, 3)], -2),
                   ([(2, 3), (2, 2), (2, 1)], -1)]:
    def _cgrad(d, *xs, ax=ax):
        cuts = np.cumsum([x.shape[ax] for x in xs])[:-1]
        return np.split(d, cuts, axis=ax)

    case(
        f"concatenate-{len(shapes)}-axis{ax}",
        lambda o, *xs, ax=ax: o.concatenate(list(xs), axis=ax),
        lambda *xs, ax=ax: np.concatenate(xs, axis=ax),
        _cgrad,
        lambda r, shapes=shapes: [_n(r, *s) for s in shapes],
    )
for ax in [0, 1, -1]:
    case(
        f"stack-axis{ax}",
        lambda o, a, b, c, ax=ax: o.stack([a, b, c], axis=ax),
        lambda a, b, c, ax=ax: np.stack([a, b, c], axis=ax),
        lambda d, a, b, c, ax=ax: [np.take(d, i, axis=ax) for i in range(3)],
        lambda r: [_n(r, 2, 3) for _ in range(3)],
    )
for piece in range(3):
    case(
        f"split-3-axis1-piece{piece}",
        lambda o, x, piece=piece: o.split(x, 3, axis=1)[piece],
        lambda x, piece=piece: x[:, 2 * piece : 2 * piece + 2],
        lambda d, x, piece=piece: [index_grad(d, x, (slice(None), slice(2 * piece,
                                                                         2 * piece + 2)))],
        lambda r: [_n(r, 4, 6)],
    )
case(
    "split-2-axis0-default",
    lambda o, x: o.split(x, 2)[1],
    lambda x: x[2:],
    lambda d, x: [index_grad(d, x, slice(2, None))],
    lambda r: [_n(r, 4, 3)],
)
for reps in [(2, 1), (1, 3), (2, 2), (2, 1, 2), 3]:
    case(
        f"tile-{reps}",
        lambda o, x, reps=reps: o.tile(x, reps),
        lambda x, reps=reps: np.tile(x, reps),
        lambda d, x, reps=reps: [tile_grad(d, x, reps)],
        lambda r: [_n(r, 2, 3)],
    )
for rep, ax in [(2, 1), (3, 0), (2, -1), (2, None)]:
    case(
        f"repeat-{rep}-axis{ax}",
        lambda o, x, rep=rep, ax=ax: o.repeat(x, rep, axis=ax),
        lambda x, rep=rep, ax=ax: np.repeat(x, rep, axis=ax),
        lambda d, x, rep=rep, ax=ax: [repeat_grad(d, x, rep, ax)],
        lambda r: [_n(r, 2, 3)],
    )
case(
    "repeat-default-axis",
    lambda o, x: o.repeat(x, 2),
    lambda x: np.repeat(x, 2),
    lambda d, x: [repeat_grad(d, x, 2, None)],
    lambda r: [_n(r, 2, 3)],
)
for pw in [((1, 2), (0, 1)), ((0, 0), (3, 0)), ((1, 1), (1, 1), (0, 2))]:
    nd = len(pw)
    case(
        f"pad-{pw}",
        lambda o, x, pw=pw: o.pad(x, pw),
        lambda x, pw=pw: np.pad(x, pw),
        lambda d, x, pw=pw: [pad_grad(d, x, pw)],
        lambda r, nd=nd: [_n(r, *((2, 3) if nd == 2 else (2, 3, 2)))],
    )
case(
    "pad-constant-1.5",
    lambda o, x: o.pad(x, ((1, 0), (2, 1)), mode="constant", constant_values=1.5),
    lambda x: np.pad(x, ((1, 0), (2, 1)), constant_values=1.5),
    lambda d, x: [pad_grad(d, x, ((1, 0), (2, 1)))],
    lambda r: [_n(r, 2, 3)],
)
for idx, ax in [([0, 2, 2, 4], 0), ([2, 0], 1), ([1, -1], -1), ([[0, 1], [4, 4]], 0),
                ([0, 7, 14, 7], None)]:
    idx_arr = np.array(idx)
    case(
        f"take-{idx}-axis{ax}",
        lambda o, x, idx_arr=idx_arr, ax=ax: o.take(x, idx_arr, axis=ax),
        lambda x, idx_arr=idx_arr, ax=ax: np.take(x, idx_arr, axis=ax),
        lambda d, x, idx_arr=idx_arr, ax=ax: [
            take_grad(d, x, idx_arr % (x.size if ax is None else x.shape[ax]), ax)
        ],
        lambda r: [_n(r, 5, 3)],
    )

# ---- indexing and slicing of tensors (Python's [] on a ferrax.Tensor)
INDEX_KEYS = [
    ("[:,0]", (slice(None), 0)),
    ("[...,:4]", (Ellipsis, slice(None, 4))),
    ("[1:3,::2]", (slice(1, 3), slice(None, None, 2))),
    ("[-1]", -1),
    ("[:,-2:]", (slice(None), slice(-2, None))),
    ("[-2,...,-1]", (-2, Ellipsis, -1)),
    ("[::-1]", slice(None, None, -1)),
    ("[1,2]", (1, 2)),
]
for kid, key in INDEX_KEYS:
    case(
        f"getitem{kid}",
        lambda o, x, key=key: o.convert_to_tensor(x)[key],
        lambda x, key=key: x[key],
        lambda d, x, key=key: [index_grad(d, x, key)],
        lambda r: [_n(r, 4, 3, 5)],
    )

# ---- nn
for ax in [-1, 0, 1]:
    case(
        f"softmax-axis{ax}",
        lambda o, x, ax=ax: o.softmax(x, axis=ax),
        lambda x, ax=ax: softmax(x, ax),
        lambda d, x, ax=ax: [softmax_vjp(d, x, ax)],
        lambda r: [_n(r, 2, 3, 4, scale=2.0)],
    )
    case(
        f"log_softmax-axis{ax}",
        lambda o, x, ax=ax: o.log_softmax(x, axis=ax),
        lambda x, ax=ax: log_softmax(x, ax),
        lambda d, x, ax=ax: [log_softmax_vjp(d, x, ax)],
        lambda r: [_n(r, 2, 3, 4, scale=2.0)],
        atol=1e-5,
    )
case("softmax-default", lambda o, x: o.softmax(x), lambda x: softmax(x, -1),
     lambda d, x: [softmax_vjp(d, x, -1)], lambda r: [_n(r, 3, 5)])
case("log_softmax-default", lambda o, x: o.log_softmax(x), lambda x: log_softmax(x, -1),
     lambda d, x: [log_softmax_vjp(d, x, -1)], lambda r: [_n(r, 3, 5)], atol=1e-5)


def _bce(t, p):
    p = _clip_p(p)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def _bce_grad(d, t, p):
    return [d * -(np.log(p) - np.log(1 - p)), d * (-(t / p) + (1 - t) / (1 - p))]


def _bce_logits(t, x):
    # -t log sigmoid(x) - (1 - t) log sigmoid(-x) = softplus(x) - t x
    return softplus(x) - t * x


for tkind in ("hard", "soft"):
    def _mk_t(r, *shape, tkind=tkind):
        if tkind == "hard":
            return r.integers(0, 2, size=shape).astype(F32)
        return _u(r, 0.0, 1.0, *shape)

    case(
        f"binary_crossentropy-{tkind}",
        lambda o, t, p: o.binary_crossentropy(t, p),
        _bce,
        _bce_grad,
        lambda r, _mk_t=_mk_t: [_mk_t(r, 4, 3), _u(r, 0.05, 0.95, 4, 3)],
        atol=1e-5,
    )
    case(
        f"binary_crossentropy-logits-{tkind}",
        lambda o, t, x: o.binary_crossentropy(t, x, from_logits=True),
        _bce_logits,
        lambda d, t, x: [d * -x, d * (sigmoid(x) - t)],
        lambda r, _mk_t=_mk_t: [_mk_t(r, 4, 3), _n(r, 4, 3, scale=2.0)],
        atol=1e-5,
    )


def _cce(t, p, axis=-1):
    q = _clip_p(p / np.sum(p, axis=axis, keepdims=True))
    return -np.sum(t * np.log(q), axis=axis)


def _cce_grad(d, t, p, axis=-1):
    de = np.expand_dims(d, axis)
    s = np.sum(p, axis=axis, keepdims=True)
    dt = -np.log(p / s) * de
    dp = (-t / p + np.sum(t, axis=axis, keepdims=True) / s) * de
    return [dt, dp]


def _cce_logits(t, x, axis=-1):
    return -np.sum(t * log_softmax(x, axis), axis=axis)


def _cce_logits_grad(d, t, x, axis=-1):
    de = np.expand_dims(d, axis)
    return [-log_softmax(x, axis) * de,
            (np.sum(t, axis=axis, keepdims=True) * softmax(x, axis) - t) * de]


def _onehot_targets(r, shape, axis):
    k = shape[axis]
    other = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    ids = r.integers(0, k, size=other)
    return np.moveaxis(np.eye(k, dtype=F32)[ids], -1, axis)


def _soft_targets(r, shape, axis):
    return softmax(r.standard_normal(shape), axis).astype(F32)


for tkind, tmk in (("onehot", _onehot_targets), ("soft", _soft_targets)):
    for shape, ax, use_kw in (((4, 5), -1, False), ((2, 3, 4), -1, True), ((3, 4), 0, True)):
        kw = {"axis": ax} if use_kw else {}
        sid = f"{tkind}-{'x'.join(map(str, shape))}-axis{ax}"
        case(
            f"categorical_crossentropy-{sid}",
            lambda o, t, p, kw=kw: o.categorical_crossentropy(t, p, **kw),
            lambda t, p, ax=ax: _cce(t, p, ax),
            lambda d, t, p, ax=ax: _cce_grad(d, t, p, ax),
            # unnormalised positive "probabilities": Keras divides by their sum over axis
            lambda r, shape=shape, ax=ax, tmk=tmk: [tmk(r, shape, ax), _u(r, 0.1, 1.0, *shape)],
            atol=1e-5,
        )
        case(
            f"categorical_crossentropy-logits-{sid}",
            lambda o, t, x, kw=kw: o.categorical_crossentropy(t, x, from_logits=True, **kw),
            lambda t, x, ax=ax: _cce_logits(t, x, ax),
            lambda d, t, x, ax=ax: _cce_logits_grad(d, t, x, ax),
            lambda r, shape=shape, ax=ax, tmk=tmk: [tmk(r, shape, ax), _n(r, *shape, scale=2.0)],
            atol=1e-5,
        )

_SPARSE_T = np.array([2, 0, 4, 1])
_SPARSE_T2 = np.array([[0, 3, 1], [2, 2, 0]])


def _onehot_last(ids, k):
    return np.eye(k)[ids]


for tids, shape in ((_SPARSE_T, (4, 5)), (_SPARSE_T2, (2, 3, 4))):
    sid = "x".join(map(str, shape))
    k = shape[-1]
    case(
        f"sparse_categorical_crossentropy-{sid}",
        lambda o, p, tids=tids: o.sparse_categorical_crossentropy(tids, p),
        lambda p, tids=tids, k=k: _cce(_onehot_last(tids, k), p, -1),
        lambda d, p, tids=tids, k=k: [_cce_grad(d, _onehot_last(tids, k), p, -1)[1]],
        lambda r, shape=shape: [_u(r, 0.1, 1.0, *shape)],
        atol=1e-5,
    )
    case(
        f"sparse_categorical_crossentropy-logits-{sid}",
        lambda o, x, tids=tids: o.sparse_categorical_crossentropy(tids, x, from_logits=True,
                                                                  axis=-1),
        lambda x, tids=tids, k=k: _cce_logits(_onehot_last(tids, k), x, -1),
        lambda d, x, tids=tids, k=k: [_cce_logits_grad(d, _onehot_last(tids, k), x, -1)[1]],
        lambda r, shape=shape: [_n(r, *shape, scale=2.0)],
        atol=1e-5,
    )

# clipping of probabilities at 0 and 1 (values only; the gradient at a clip is 0 and is
# not a finite-difference point)
case(
    "binary_crossentropy-clipped",
    lambda o, t, p: o.binary_crossentropy(t, p),
    _bce,
    None,
    lambda r: [np.array([[1.0, 0.0, 1.0, 0.0]], F32), np.array([[0.0, 1.0, 1.0, 0.0]], F32)],
    rtol=1e-5,
    atol=1e-5,
)

for axes, keep in [((0,), False), ((0, 1), False), ((-1,), True), ((0, 2), True)]:
    for which in (0, 1):
        case(
            f"moments-{axes}{'-keep' if keep else ''}-{'mean' if which == 0 else 'var'}",
            lambda o, x, axes=axes, keep=keep, which=which: o.moments(x, list(axes),
                                                                        keepdims=keep)[which],
            (lambda x, axes=axes, keep=keep: np.mean(x, axis=_axes(axes, x.ndim), keepdims=keep))
            if which == 0
            else (lambda x, axes=axes, keep=keep: np.var(x, axis=_axes(axes, x.ndim),
                                                         keepdims=keep)),
            (lambda d, x, axes=axes, keep=keep: [
                expand_back(d, x.shape, axes, keep)
                / np.prod([x.shape[i] for i in _axes(axes, x.ndim)])
            ])
            if which == 0
            else (lambda d, x, axes=axes, keep=keep: [
                expand_back(d, x.shape, axes, keep) * 2.0
                * (x - np.mean(x, axis=_axes(axes, x.ndim), keepdims=True))
                / np.prod([x.shape[i] for i in _axes(axes, x.ndim)])
            ]),
            lambda r: [_n(r, 2, 3, 4, scale=1.5)],
            rtol=1e-4,
            atol=1e-5,
        )

# ---- stop_gradient: the value passes, no gradient flows through it
case(
    "stop_gradient-value",
    lambda o, x: o.stop_gradient(x),
    lambda x: x,
    None,
    lambda r: [_n(r, 3, 4)],
)
case(
    "stop_gradient-in-product",  # y = x * stop(x): dy/dx = stop(x) = x, not 2x
    lambda o, x: o.multiply(x, o.stop_gradient(x)),
    lambda x: x * x,
    None,
    lambda r: [_n(r, 3, 4)],
)
case(
    "stop_gradient-in-sum",  # y = stop(x^2) + x: dy/dx = 1
    lambda o, x: o.add(o.stop_gradient(o.square(x)), x),
    lambda x: x * x + x,
    None,
    lambda r: [_n(r, 3, 4)],
)
STOP_GRAD_REFS = {
    "stop_gradient-value": lambda d, x: [np.zeros_like(x)],
    "stop_gradient-in-product": lambda d, x: [d * x],
    "stop_gradient-in-sum": lambda d, x: [d.copy()],
}

# ---- Python operators on tensors
OPERATORS = [
    ("op+", lambda a, b: a + b, lambda d, a, b: [unbroadcast(d, a.shape), unbroadcast(d, b.shape)],
     (4, 3), (3,)),
    ("op-", lambda a, b: a - b, lambda d, a, b: [unbroadcast(d, a.shape), unbroadcast(-d, b.shape)],
     (4, 3), (4, 3)),
    ("op*", lambda a, b: a * b,
     lambda d, a, b: [unbroadcast(d * b, a.shape), unbroadcast(d * a, b.shape)], (2, 1, 3), (4, 1)),
    ("op/", lambda a, b: a / b,
     lambda d, a, b: [unbroadcast(d / b, a.shape), unbroadcast(-d * a / b**2, b.shape)],
     (4, 3), (3,)),
    ("op@", lambda a, b: a @ b, matmul_grad, (3, 4), (4, 2)),
    ("op@-batched", lambda a, b: a @ b, matmul_grad, (2, 3, 4), (2, 4, 2)),
]
for oid, opf, og, sa, sb in OPERATORS:
    def _mk_op(r, sa=sa, sb=sb, oid=oid):
        b = _n(r, *sb)
        if oid == "op/":
            b = (np.sign(b) * (np.abs(b) + 0.5)).astype(F32)
        return [_n(r, *sa), b]

    case(
        oid,
        lambda o, a, b, opf=opf: opf(o.convert_to_tensor(a), o.convert_to_tensor(b)),
        opf,
        og,
        _mk_op,
        atol=1e-5,
    )
case("op**", lambda o, a: o.convert_to_tensor(a) ** 2.0, lambda a: a**2, lambda d, a: [2 * a * d],
     lambda r: [_u(r, 0.5, 2.0, 3, 4)], rtol=1e-4, atol=1e-5)
case("op-tensor**tensor", lambda o, a, b: o.convert_to_tensor(a) ** o.convert_to_tensor(b),
     lambda a, b: a**b,
     lambda d, a, b: [d * b * a ** (b - 1), d * a**b * np.log(a)],
     lambda r: [_u(r, 0.5, 2.0, 3, 4), _u(r, -1.0, 2.0, 3, 4)], rtol=1e-4, atol=1e-5)
case("op-neg", lambda o, a: -o.convert_to_tensor(a), lambda a: -a, lambda d, a: [-d],
     lambda r: [_n(r, 3, 4)])
case("op-scalar-left", lambda o, a: 1.5 - 2.0 * (1.0 + o.convert_to_tensor(a)),
     lambda a: 1.5 - 2.0 * (1.0 + a), lambda d, a: [-2.0 * d], lambda r: [_n(r, 3, 4)])
case("op-scalar-rdiv", lambda o, a: 2.0 / o.convert_to_tensor(a), lambda a: 2.0 / a,
     lambda d, a: [-2.0 * d / a**2], lambda r: [_u(r, 0.5, 2.0, 3, 4)], atol=1e-5)
case("op-scalar-right", lambda o, a: (o.convert_to_tensor(a) - 0.5) / 4.0 * 3.0 + 1.0,
     lambda a: (a - 0.5) / 4.0 * 3.0 + 1.0, lambda d, a: [0.75 * d], lambda r: [_n(r, 3, 4)])

# ---- scalar (Python number) operands for the binary ops
for name, npf in (("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply),
                  ("divide", np.divide), ("maximum", np.maximum), ("minimum", np.minimum),
                  ("power", np.power)):
    case(
        f"{name}-python-scalar-right",
        lambda o, a, name=name: getattr(o, name)(a, 1.5),
        lambda a, npf=npf: npf(a, 1.5),
        None,
        lambda r: [_away(_u(r, 0.2, 3.0, 3, 4), (1.5,))],
        rtol=1e-5,
        atol=1e-6,
    )
    case(
        f"{name}-python-scalar-left",
        lambda o, a, name=name: getattr(o, name)(1.5, a),
        lambda a, npf=npf: npf(1.5, a),
        None,
        lambda r: [_away(_u(r, 0.2, 3.0, 3, 4), (1.5,))],
        rtol=1e-5,
        atol=1e-6,
    )

# ---- compositions: a tensor used twice, every output of a multi-output op used
case(
    "compose-reuse",
    lambda o, x: o.add(o.multiply(x, x), o.exp(x)),
    lambda x: x * x + np.exp(x),
    lambda d, x: [d * (2 * x + np.exp(x))],
    lambda r: [_n(r, 3, 4)],
    rtol=1e-5,
    atol=1e-5,
)
case(
    "compose-split-all-pieces",
    lambda o, x: o.concatenate([o.multiply(p, float(i + 1)) for i, p in
                                enumerate(o.split(x, 3, axis=1))][::-1], axis=1),
    lambda x: np.concatenate([p * (i + 1) for i, p in enumerate(np.split(x, 3, axis=1))][::-1],
                             axis=1),
    lambda d, x: [np.concatenate([q * (3 - j) for j, q in enumerate(np.split(d, 3, axis=1))][::-1],
                                 axis=1)],
    lambda r: [_n(r, 2, 6)],
)
case(
    "compose-moments-both",
    lambda o, x: o.multiply(*o.moments(x, [0])),
    lambda x: np.mean(x, axis=0) * np.var(x, axis=0),
    lambda d, x: [d * (np.var(x, axis=0) / x.shape[0]
                       + np.mean(x, axis=0) * 2 * (x - np.mean(x, axis=0)) / x.shape[0])],
    lambda r: [_n(r, 5, 3)],
    rtol=1e-4,
    atol=1e-5,
)

# ---- larger shapes: past any blocking / threading threshold of the kernels. The gradient
# formulas are the ones the small cases check against finite differences.
for sa, sb in [((65, 130), (130, 70)), ((3, 33, 17), (3, 17, 40)), ((4, 129, 64), (64, 33))]:
    case(
        f"matmul-large-{_sid(sa, sb)}",
        lambda o, a, b: o.matmul(a, b),
        lambda a, b: np.matmul(a, b),
        matmul_grad,
        lambda r, sa=sa, sb=sb: [_n(r, *sa), _n(r, *sb)],
        rtol=1e-4,
        atol=1e-4,
        grtol=1e-4,
        gatol=2e-4,
        fd=False,
    )
case("add-large-broadcast", lambda o, a, b: o.add(a, b), lambda a, b: a + b,
     lambda d, a, b: [unbroadcast(d, a.shape), unbroadcast(d, b.shape)],
     lambda r: [_n(r, 300, 257), _n(r, 257)], gatol=1e-4, fd=False)
case("multiply-large-broadcast", lambda o, a, b: o.multiply(a, b), lambda a, b: a * b,
     lambda d, a, b: [unbroadcast(d * b, a.shape), unbroadcast(d * a, b.shape)],
     lambda r: [_n(r, 40, 1, 70), _n(r, 50, 1)], gatol=1e-4, fd=False)
for ax in (None, 0, 1, -1):
    case(
        f"sum-large-axis{ax}",
        lambda o, x, ax=ax: o.sum(x, axis=ax),
        lambda x, ax=ax: np.sum(x, axis=ax),
        lambda d, x, ax=ax: [expand_back(d, x.shape, ax, False).copy()],
        lambda r, ax=ax: [_n(r, 50, 1000)] if ax != -1 else [_n(r, 7, 20, 600)],
        rtol=1e-5,
        atol=1e-3 if ax is None else 2e-4,
        fd=False,
    )
    case(
        f"max-large-axis{ax}",
        lambda o, x, ax=ax: o.max(x, axis=ax),
        lambda x, ax=ax: np.max(x, axis=ax),
        lambda d, x, ax=ax: [expand_back(d, x.shape, ax, False)
                             * (x == np.max(x, axis=ax, keepdims=True))],
        lambda r, ax=ax: [_n(r, 50, 1000)] if ax != -1 else [_n(r, 7, 20, 600)],
        fd=False,
    )
case("mean-large-axis0", lambda o, x: o.mean(x, axis=0), lambda x: np.mean(x, axis=0),
     lambda d, x: [np.broadcast_to(d / x.shape[0], x.shape)],
     lambda r: [_n(r, 2000, 30)], atol=1e-5, fd=False)
case("softmax-large", lambda o, x: o.softmax(x, axis=-1), lambda x: softmax(x, -1),
     lambda d, x: [softmax_vjp(d, x, -1)], lambda r: [_n(r, 64, 1000, scale=3.0)],
     rtol=1e-4, atol=1e-6, fd=False)
case("exp-large", lambda o, x: o.exp(x), np.exp, lambda d, x: [d * np.exp(x)],
     lambda r: [_n(r, 257, 301)], rtol=1e-4, atol=1e-5, fd=False)
case("transpose-large", lambda o, x: o.transpose(x, axes=(2, 0, 1)),
     lambda x: np.transpose(x, (2, 0, 1)), lambda d, x: [np.transpose(d, (1, 2, 0))],
     lambda r: [_n(r, 37, 64, 29)], fd=False)
case("concatenate-large", lambda o, a, b: o.concatenate([a, b], axis=1),
     lambda a, b: np.concatenate([a, b], axis=1), lambda d, a, b: np.split(d, [300], axis=1),
     lambda r: [_n(r, 100, 300), _n(r, 100, 77)], fd=False)
case("getitem-large", lambda o, x: o.convert_to_tensor(x)[5:300:3, 1::2],
     lambda x: x[5:300:3, 1::2],
     lambda d, x: [index_grad(d, x, (slice(5, 300, 3), slice(1, None, 2)))],
     lambda r: [_n(r, 310, 101)], fd=False)

CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS), "duplicate case ids"
GRAD_CASES = [c for c in CASES if c.grad is not None or c.id in STOP_GRAD_REFS]


def _ref_grad(c):
    return c.grad if c.grad is not None else STOP_GRAD_REFS[c.id]


def _inputs(c):
    seed = sum(ord(ch) * (i + 1) for i, ch in enumerate(c.id)) % (2**32)
    r = np.random.default_rng(seed)
    xs = [np.array(x, dtype=F32, order="C") for x in c.make(r)]  # keeps 0-d arrays 0-d
    d = None
    if c.grad is not None or c.id in STOP_GRAD_REFS:
        y = np.asarray(c.fwd(*[np.asarray(x, np.float64) for x in xs]))
        d = np.asarray(r.standard_normal(y.shape), dtype=F32)
    return r, xs, d


# --------------------------------------------------------------------------------------------
# the reference self-check (pure NumPy)


@pytest.mark.parametrize("c", [c for c in CASES if c.grad is not None and c.fd],
                         ids=lambda c: c.id)
def test_reference_grad_matches_finite_differences(c):
    _, xs, d = _inputs(c)
    xs64 = [np.asarray(x, np.float64) for x in xs]
    d64 = np.asarray(d, np.float64)
    want = c.grad(d64, *xs64)
    num = numerical_grads(c.fwd, xs64, d64)
    assert len(want) == len(xs)
    for i, (w, n) in enumerate(zip(want, num)):
        assert_close(w, n, rtol=1e-5, atol=1e-6, what=f"{c.id} reference d/dx{i} vs FD")


def test_stop_gradient_refs_match_finite_differences_of_the_unstopped_parts():
    # x * stop(x): treat the stopped factor as a constant c = x0 -> d/dx (x * c) = c
    r = np.random.default_rng(0)
    x0 = r.standard_normal((3, 4))
    d = r.standard_normal((3, 4))
    (n,) = numerical_grads(lambda x: x * x0, [x0], d)
    assert_close(STOP_GRAD_REFS["stop_gradient-in-product"](d, x0)[0], n, rtol=1e-6, atol=1e-7)
    (n,) = numerical_grads(lambda x: x0 * x0 + x, [x0], d)
    assert_close(STOP_GRAD_REFS["stop_gradient-in-sum"](d, x0)[0], n, rtol=1e-6, atol=1e-7)


def test_reference_spot_values():
    """The float64 references at points with known values (guards the forward formulas)."""
    x = np.array([-1.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-14)
    np.testing.assert_allclose(softplus(x), np.log(1 + np.exp(x)), rtol=1e-14)
    np.testing.assert_allclose(x * Phi(x), [-0.15865525393145707, 0.0, 0.8413447460685429,
                                            1.9544997361036416], rtol=1e-12)
    np.testing.assert_allclose(gelu_tanh(x), [-0.15880800939172324, 0.0, 0.8411919906082768,
                                              1.954597694087775], rtol=1e-12)
    np.testing.assert_allclose(SELU_SCALE * elu(x, SELU_ALPHA)[0], -1.1113307378125625, rtol=1e-12)
    np.testing.assert_allclose(logsumexp(np.log(np.array([[1.0, 2.0, 5.0]])), axis=-1), [np.log(8)])
    np.testing.assert_allclose(softmax(np.log(np.array([1.0, 3.0]))), [0.25, 0.75])
    # cross-entropies: -log(0.25) for the true class at p = 0.25 after normalisation
    t = np.array([[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(_cce(t, np.array([[1.0, 1.0, 2.0]])), [np.log(4)])
    np.testing.assert_allclose(_cce_logits(t, np.log(np.array([[1.0, 1.0, 2.0]]))), [np.log(4)])
    np.testing.assert_allclose(_bce(np.array([1.0, 0.0]), np.array([0.8, 0.8])),
                               [-np.log(0.8), -np.log(0.2)])
    np.testing.assert_allclose(_bce_logits(np.array([1.0, 0.0]), np.array([0.3, 0.3])),
                               _bce(np.array([1.0, 0.0]), sigmoid(np.array([0.3, 0.3]))))
    np.testing.assert_allclose(_bce(np.array([1.0]), np.array([0.0])), [-np.log(CLIP_LO)])


def test_every_listed_op_has_a_case():
    """The brief's op list, each name used by at least one case or forward-only test below."""
    src = Path(__file__).read_text()
    names = [
        "add", "subtract", "multiply", "divide", "true_divide", "negative", "power", "square",
        "sqrt", "exp", "log", "log1p", "abs", "sign", "maximum", "minimum", "clip", "where",
        "sum", "mean", "max", "min", "prod", "argmax", "argmin", "std", "var", "logsumexp",
        "matmul", "dot", "einsum", "reshape", "transpose", "expand_dims", "squeeze",
        "concatenate", "stack", "split", "tile", "repeat", "pad", "take", "shape", "size", "relu",
        "relu6", "sigmoid", "tanh", "softmax", "log_softmax", "gelu", "silu", "softplus", "elu",
        "selu", "leaky_relu", "one_hot", "binary_crossentropy", "categorical_crossentropy",
        "sparse_categorical_crossentropy", "moments", "equal", "not_equal", "greater",
        "greater_equal", "less", "less_equal", "logical_and", "logical_or", "logical_not",
        "zeros", "ones", "zeros_like", "ones_like", "full", "arange", "eye", "cast",
        "convert_to_tensor", "convert_to_numpy", "stop_gradient",
    ]
    missing = [n for n in names if f"o.{n}(" not in src and f'"{n}"' not in src]
    assert not missing, missing


# --------------------------------------------------------------------------------------------
# eager forward values and gradients


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_forward(c):
    o = _ops()
    _, xs, _ = _inputs(c)
    want = c.fwd(*[np.asarray(x, np.float64) for x in xs])
    out = c.fn(o, *xs)
    got = np.asarray(out)
    assert got.dtype == np.float32, f"{c.id}: dtype {got.dtype}"
    assert tuple(out.shape) == np.shape(want), f"{c.id}: shape {out.shape} vs {np.shape(want)}"
    assert_close(got, want, rtol=c.rtol, atol=c.atol, what=c.id)


@pytest.mark.parametrize("c", GRAD_CASES, ids=lambda c: c.id)
def test_vjp(c):
    o, vjp = _ops(), _vjp()
    _, xs, d = _inputs(c)
    want = _ref_grad(c)(np.asarray(d, np.float64), *[np.asarray(x, np.float64) for x in xs])
    got = vjp(lambda *ts: c.fn(o, *ts), *xs, dout=d)
    assert len(got) == len(xs), f"{c.id}: {len(got)} gradients for {len(xs)} inputs"
    for i, (g, w, x) in enumerate(zip(got, want, xs)):
        g = np.asarray(g)
        assert g.shape == x.shape, f"{c.id}: d/dx{i} shape {g.shape}, input {x.shape}"
        assert_close(g, w, rtol=c.grtol, atol=c.gatol, what=f"{c.id} d/dx{i}")


def test_eager_result_is_a_ferrax_tensor():
    ferrax, o = _ferrax(), _ops()
    a = np.arange(6, dtype=F32).reshape(2, 3)
    t = o.add(a, 1.0)
    assert isinstance(t, ferrax.Tensor)
    assert t.shape == (2, 3) and isinstance(t.shape, tuple)
    n = t.numpy()
    assert isinstance(n, np.ndarray) and n.dtype == np.float32
    np.testing.assert_array_equal(n, a + 1.0)
    np.testing.assert_array_equal(np.asarray(t), a + 1.0)
    s = o.sum(3.0 * np.ones((2, 2), F32))  # a 0-d result
    assert s.shape == ()
    assert float(np.asarray(s)) == 12.0


def test_python_scalar_inputs():
    o = _ops()
    t = o.exp(1.0)
    assert tuple(t.shape) == ()
    assert_close(np.asarray(t), math.e, rtol=1e-6, atol=0, what="exp(1.0)")
    assert float(np.asarray(o.add(1.0, 2.5))) == 3.5
    assert float(np.asarray(o.multiply(2, 1.5))) == 3.0
    assert_close(np.asarray(o.sqrt(2.0)), math.sqrt(2.0), rtol=1e-6, atol=0, what="sqrt(2.0)")


def test_split_returns_all_pieces():
    o = _ops()
    x = np.arange(24, dtype=F32).reshape(4, 6)
    for sections, axis in [(3, 1), (2, 0), (6, -1)]:
        parts = o.split(x, sections, axis=axis)
        want = np.split(x, sections, axis=axis)
        assert len(parts) == len(want)
        for p, w in zip(parts, want):
            np.testing.assert_array_equal(np.asarray(p), w)


# --------------------------------------------------------------------------------------------
# forward-only ops


@pytest.mark.parametrize("name,npf", [("argmax", np.argmax), ("argmin", np.argmin)])
@pytest.mark.parametrize("axis,keep", [(None, False), (0, False), (1, False), (-1, False),
                                       (-1, True), (0, True)])
def test_argmax_argmin(name, npf, axis, keep):
    o = _ops()
    x = _n(np.random.default_rng(7), 3, 4, 5)
    got = np.asarray(getattr(o, name)(x, axis=axis, keepdims=keep))
    want = npf(x, axis=axis, keepdims=keep)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.astype(np.int64), want)


def test_argmax_default_is_flat_index():
    o = _ops()
    x = np.array([[0.1, 0.3], [0.9, -2.0]], F32)
    assert int(np.asarray(o.argmax(x))) == 2
    assert int(np.asarray(o.argmin(x))) == 3


_CMP = [
    ("equal", np.equal), ("not_equal", np.not_equal), ("greater", np.greater),
    ("greater_equal", np.greater_equal), ("less", np.less), ("less_equal", np.less_equal),
]


def _as_bool(a):
    a = np.asarray(a)
    if a.dtype != np.bool_:
        assert np.all((a == 0) | (a == 1)), f"not boolean/0-1 values: {a}"
    return a.astype(bool)


@pytest.mark.parametrize("name,npf", _CMP)
@pytest.mark.parametrize("shapes", [((4, 3), (4, 3)), ((4, 3), (3,)), ((2, 1, 3), (4, 1)),
                                    ((4, 3), None)], ids=str)
def test_comparisons(name, npf, shapes):
    o = _ops()
    r = np.random.default_rng(3)
    sa, sb = shapes
    # small integers as floats: plenty of exact ties
    a = r.integers(-2, 3, size=sa).astype(F32)
    b = 1.0 if sb is None else r.integers(-2, 3, size=sb).astype(F32)
    want = npf(a, b)
    got = _as_bool(getattr(o, name)(a, b))
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name,npf", [(">", np.greater), (">=", np.greater_equal),
                                      ("<", np.less), ("<=", np.less_equal)])
def test_comparison_operators_on_tensors(name, npf):
    o = _ops()
    r = np.random.default_rng(4)
    a = r.integers(-2, 3, size=(4, 3)).astype(F32)
    b = r.integers(-2, 3, size=(3,)).astype(F32)
    ta, tb = o.convert_to_tensor(a), o.convert_to_tensor(b)
    res = {">": lambda: ta > tb, ">=": lambda: ta >= tb, "<": lambda: ta < tb,
           "<=": lambda: ta <= tb}[name]()
    np.testing.assert_array_equal(_as_bool(res), npf(a, b))


LOGIC_A = np.array([[True, False, True], [False, False, True]])
LOGIC_B = np.array([[True, True, False], [False, True, True]])


@pytest.mark.parametrize("name,npf", [("logical_and", np.logical_and),
                                      ("logical_or", np.logical_or)])
@pytest.mark.parametrize("kind", ["bool", "float", "broadcast", "from-comparison"])
def test_logical_binary(name, npf, kind):
    o = _ops()
    if kind == "bool":
        a, b, want = LOGIC_A, LOGIC_B, npf(LOGIC_A, LOGIC_B)
        got = getattr(o, name)(a, b)
    elif kind == "float":  # nonzero is true
        a = np.where(LOGIC_A, 2.5, 0.0).astype(F32)
        b = np.where(LOGIC_B, -1.0, 0.0).astype(F32)
        want = npf(LOGIC_A, LOGIC_B)
        got = getattr(o, name)(a, b)
    elif kind == "broadcast":
        want = npf(LOGIC_A, LOGIC_B[0])
        got = getattr(o, name)(LOGIC_A, LOGIC_B[0])
    else:
        x = np.array([[1.0, -1.0, 2.0], [-3.0, 0.5, 4.0]], F32)
        want = npf(x > 0, x < 3)
        got = getattr(o, name)(o.greater(x, 0.0), o.less(x, 3.0))
    g = _as_bool(got)
    assert g.shape == want.shape
    np.testing.assert_array_equal(g, want)


@pytest.mark.parametrize("kind", ["bool", "float", "from-comparison"])
def test_logical_not(kind):
    o = _ops()
    if kind == "bool":
        got, want = o.logical_not(LOGIC_A), ~LOGIC_A
    elif kind == "float":
        got, want = o.logical_not(np.where(LOGIC_A, 3.0, 0.0).astype(F32)), ~LOGIC_A
    else:
        x = np.array([1.0, -1.0, 0.0, 2.0], F32)
        got, want = o.logical_not(o.greater(x, 0.0)), ~(x > 0)
    np.testing.assert_array_equal(_as_bool(got), want)


@pytest.mark.parametrize("ids,k", [([0, 2, 1, 3], 4), ([[0, 4, 1], [2, 2, 3]], 5), ([3], 7)])
def test_one_hot(ids, k):
    o = _ops()
    ids = np.array(ids)
    got = np.asarray(o.one_hot(ids, k))
    want = (ids[..., None] == np.arange(k)).astype(np.float64)
    assert got.shape == ids.shape + (k,)
    np.testing.assert_array_equal(got.astype(np.float64), want)


@pytest.mark.parametrize("axis", [0, 1, -2, -3])
def test_one_hot_puts_the_class_axis_where_asked(axis):
    o = _ops()
    ids = np.array([[0, 4, 1], [2, 2, 3]])
    got = np.asarray(o.one_hot(ids, 5, axis=axis))
    want = np.moveaxis((ids[..., None] == np.arange(5)).astype(np.float64), -1, axis)
    np.testing.assert_array_equal(got.astype(np.float64), want)


def test_one_hot_axis_out_of_range_is_refused():
    with pytest.raises(ValueError, match="one_hot: axis 3 is out of range for a result of "
                                         "rank 3"):
        _ops().one_hot(np.array([[0, 1]]), 2, axis=3)


def test_where_with_the_condition_alone_gives_the_indices_as_nonzero():
    o = _ops()
    x = np.array([[0.0, 3.0, 0.0], [5.0, 0.0, -1.0]], F32)
    for got in (o.where(x), o.nonzero(x), o.where(x != 0)):
        assert len(got) == 2
        for g, want in zip(got, np.nonzero(x)):
            assert np.asarray(g).dtype == np.int32
            np.testing.assert_array_equal(np.asarray(g), want)
    with pytest.raises(ValueError, match="give both x1 and x2, or neither"):
        o.where(x, 1.0)


def test_nonzero_of_a_symbolic_tensor_says_why_it_has_no_result():
    import ferrax

    with pytest.raises(ValueError, match=r"nonzero: the number of indices depends on the "
                                         r"values.*\(None, 4\)"):
        _ops().where(ferrax.Input((4,)) > 0)


def test_one_hot_num_classes_keyword():
    o = _ops()
    got = np.asarray(o.one_hot(np.array([1, 0]), num_classes=3))
    np.testing.assert_array_equal(got.astype(np.float64), [[0, 1, 0], [1, 0, 0]])


def test_moments_returns_mean_and_variance_pair():
    o = _ops()
    x = _n(np.random.default_rng(5), 4, 3)
    res = o.moments(x, axes=[0])
    assert len(res) == 2
    m, v = res
    assert_close(np.asarray(m), np.mean(x.astype(np.float64), axis=0), rtol=1e-5, atol=1e-6,
                 what="moments mean")
    assert_close(np.asarray(v), np.var(x.astype(np.float64), axis=0), rtol=1e-5, atol=1e-6,
                 what="moments variance")


def test_shape_and_size():
    o = _ops()
    x = np.zeros((2, 3, 4), F32)
    s = o.shape(x)
    assert isinstance(s, tuple) and s == (2, 3, 4)
    assert o.shape(o.convert_to_tensor(x)) == (2, 3, 4)
    assert int(np.asarray(o.size(x))) == 24
    assert int(np.asarray(o.size(o.convert_to_tensor(np.ones((5,), F32))))) == 5
    assert o.shape(o.sum(x, axis=1)) == (2, 4)


# ---- creation and casting


def _vals(t):
    return np.asarray(t).astype(np.float64)


@pytest.mark.parametrize("shape", [(2, 3), (4,), (1, 2, 2)])
def test_zeros_ones_full(shape):
    o = _ops()
    for name, want in (("zeros", 0.0), ("ones", 1.0)):
        t = getattr(o, name)(shape)
        a = np.asarray(t)
        assert a.shape == shape and a.dtype == np.float32, (name, a.shape, a.dtype)
        np.testing.assert_array_equal(a, np.full(shape, want))
    a = np.asarray(o.full(shape, 2.5))
    assert a.shape == shape
    np.testing.assert_array_equal(a.astype(np.float64), np.full(shape, 2.5))


def test_zeros_like_ones_like():
    o = _ops()
    x = _n(np.random.default_rng(1), 3, 2)
    z, one = np.asarray(o.zeros_like(x)), np.asarray(o.ones_like(x))
    assert z.shape == (3, 2) and one.shape == (3, 2)
    np.testing.assert_array_equal(z, np.zeros((3, 2)))
    np.testing.assert_array_equal(one, np.ones((3, 2)))
    t = o.convert_to_tensor(x)
    np.testing.assert_array_equal(np.asarray(o.zeros_like(t)), np.zeros((3, 2)))
    np.testing.assert_array_equal(np.asarray(o.ones_like(t)), np.ones((3, 2)))


@pytest.mark.parametrize("args,kw,want", [
    ((5,), {}, [0, 1, 2, 3, 4]),
    ((2, 8), {}, [2, 3, 4, 5, 6, 7]),
    ((1, 8, 3), {}, [1, 4, 7]),
    ((0.0, 1.0, 0.25), {}, [0.0, 0.25, 0.5, 0.75]),
    ((5, 0, -2), {}, [5, 3, 1]),
    ((3,), {"dtype": "float32"}, [0.0, 1.0, 2.0]),
], ids=str)
def test_arange(args, kw, want):
    o = _ops()
    got = np.asarray(o.arange(*args, **kw))
    assert got.shape == (len(want),)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=1e-7)
    if kw.get("dtype") == "float32":
        assert got.dtype == np.float32


@pytest.mark.parametrize("args,kw", [((3,), {}), ((2, 4), {}), ((4, 3), {}), ((4,), {"k": 1}),
                                     ((3, 4), {"k": -1}), ((3,), {"M": 5})], ids=str)
def test_eye(args, kw):
    o = _ops()
    n = args[0]
    m = args[1] if len(args) > 1 else kw.get("M", n)
    k = kw.get("k", 0)
    want = np.array([[1.0 if j - i == k else 0.0 for j in range(m)] for i in range(n)])
    got = np.asarray(o.eye(*args, **kw))
    assert got.shape == (n, m)
    np.testing.assert_array_equal(got.astype(np.float64), want)


def test_cast():
    o = _ops()
    x = np.array([1.7, -1.7, 2.0, 0.2], F32)
    i = np.asarray(o.cast(x, "int32"))
    np.testing.assert_array_equal(i, [1, -1, 2, 0])  # truncation toward zero
    assert np.issubdtype(i.dtype, np.integer), i.dtype
    f = np.asarray(o.cast(np.array([1, -3, 7]), "float32"))
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f, [1.0, -3.0, 7.0])
    f2 = np.asarray(o.cast(o.convert_to_tensor(x), "float32"))
    np.testing.assert_array_equal(f2, x)
    b = np.asarray(o.cast(np.array([0.0, 2.0, -1.0], F32), "bool"))
    np.testing.assert_array_equal(b.astype(bool), [False, True, True])


def test_convert_to_tensor_and_numpy():
    ferrax, o = _ferrax(), _ops()
    x = _n(np.random.default_rng(2), 2, 3)
    t = o.convert_to_tensor(x)
    assert isinstance(t, ferrax.Tensor)
    assert t.shape == (2, 3)
    n = o.convert_to_numpy(t)
    assert isinstance(n, np.ndarray) and n.dtype == np.float32
    np.testing.assert_array_equal(n, x)
    # float64 and nested-list input become float32
    n64 = o.convert_to_numpy(o.convert_to_tensor(x.astype(np.float64)))
    assert n64.dtype == np.float32
    np.testing.assert_array_equal(n64, x)
    nl = o.convert_to_numpy(o.convert_to_tensor([[1.0, 2.0], [3.0, 4.5]]))
    np.testing.assert_array_equal(nl.astype(np.float64), [[1.0, 2.0], [3.0, 4.5]])
    # a scalar
    assert float(o.convert_to_numpy(o.convert_to_tensor(2.5))) == 2.5
    # numpy() of a computed tensor
    np.testing.assert_array_equal(o.convert_to_numpy(o.add(t, t)), x + x)


# --------------------------------------------------------------------------------------------
# symbolic (ferrax.Input / ferrax.Model) versus eager

_C4 = np.linspace(-1.0, 1.0, 4).astype(F32)
_W45 = (np.arange(20, dtype=F32).reshape(4, 5) / 7.0 - 1.3).astype(F32)

SYMBOLIC = [
    # id, input shapes (without the batch axis), build(ops, *inputs)
    ("add-broadcast-const", [(3, 4)], lambda o, x: o.add(x, _C4)),
    ("add-scalar", [(3, 4)], lambda o, x: o.add(x, 0.25)),
    ("multiply-two-inputs", [(3, 4), (3, 4)], lambda o, x, y: o.multiply(x, y)),
    ("subtract-broadcast-inputs", [(3, 4), (1, 4)], lambda o, x, y: o.subtract(x, y)),
    ("exp", [(3, 4)], lambda o, x: o.exp(x)),
    ("sum-axis-1", [(3, 4)], lambda o, x: o.sum(x, axis=-1)),
    ("mean-axis-1", [(3, 4)], lambda o, x: o.mean(x, axis=1)),
    ("max-keepdims", [(3, 4)], lambda o, x: o.max(x, axis=1, keepdims=True)),
    ("matmul-const", [(3, 4)], lambda o, x: o.matmul(x, _W45)),
    ("reshape", [(3, 4)], lambda o, x: o.reshape(x, (-1, 12))),
    ("transpose-021", [(3, 4)], lambda o, x: o.transpose(x, axes=(0, 2, 1))),
    ("concatenate", [(3, 4), (3, 2)], lambda o, x, y: o.concatenate([x, y], axis=-1)),
    ("slice", [(3, 4)], lambda o, x: x[:, 1:, :2]),
    ("softmax", [(3, 4)], lambda o, x: o.softmax(x)),
    ("relu", [(3, 4)], lambda o, x: o.relu(x)),
    ("where", [(3, 4)], lambda o, x: o.where(o.greater(x, 0.0), x, o.multiply(x, 0.1))),
    ("chain", [(3, 4)],
     lambda o, x: o.sum(o.square(o.sigmoid(o.matmul(x, _W45)) - 0.5), axis=-1)),
    ("operators", [(3, 4), (3, 4)], lambda o, x, y: (x * y - 2.0 * x) / (1.0 + y * y)),
    ("binary_crossentropy", [(3, 4), (3, 4)],
     lambda o, t, p: o.binary_crossentropy(o.sigmoid(t), o.sigmoid(p))),
]


@pytest.mark.parametrize("sid,shapes,build", SYMBOLIC, ids=[s[0] for s in SYMBOLIC])
def test_symbolic_matches_eager(sid, shapes, build):
    ferrax, o = _ferrax(), _ops()
    r = np.random.default_rng(11)
    n = 8
    data = [_n(r, n, *s) for s in shapes]
    eager = np.asarray(build(o, *[o.convert_to_tensor(d) for d in data]))
    inputs = [ferrax.Input(shape=s) for s in shapes]
    y = build(o, *inputs)
    assert tuple(y.shape) == (None,) + eager.shape[1:], f"symbolic shape {y.shape}"
    model = ferrax.Model(inputs[0] if len(inputs) == 1 else inputs, y)
    pred = model.predict(data[0] if len(data) == 1 else data, verbose=0)
    pred = np.asarray(pred)
    assert pred.shape == eager.shape
    assert np.array_equal(pred, eager), f"{sid}: max diff {np.max(np.abs(pred - eager))}"


# --------------------------------------------------------------------------------------------
# errors


def test_add_incompatible_shapes_error():
    o = _ops()
    with pytest.raises(ValueError) as ei:
        o.add(np.zeros((4, 3), F32), np.zeros((2,), F32))
    msg = str(ei.value)
    assert "add" in msg and "(4, 3)" in msg and "(2,)" in msg, msg


def test_matmul_incompatible_shapes_error():
    o = _ops()
    with pytest.raises(ValueError) as ei:
        o.matmul(np.zeros((3, 4), F32), np.zeros((5, 6), F32))
    msg = str(ei.value)
    assert "matmul" in msg and "(3, 4)" in msg and "(5, 6)" in msg, msg


@pytest.mark.parametrize("axis", [2, -3, (0, 5)], ids=str)
def test_sum_axis_out_of_range_error(axis):
    o = _ops()
    with pytest.raises(ValueError):
        o.sum(np.zeros((2, 3), F32), axis=axis)
