"""Merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate): the
engine's forward output and input gradients against float64 NumPy references, with the
references themselves checked by central finite differences; broadcasting, Maximum /
Minimum tie rules, Concatenate axes, error messages and config round trips."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

ELEMENTWISE = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]
VARIADIC = ["Add", "Multiply", "Average", "Maximum", "Minimum"]

# float32 engine against float64 reference.
RTOL, ATOL = 1e-5, 1e-6


def _layers():
    import ferrax.layers

    return ferrax.layers


def _run(layer, xs, dy):
    import ferrax._testing as ft

    return ft.merge_forward_backward(layer, xs, dy)


# ----------------------------------------------------------------------------- references


def _pad(x, rank):
    """(batch, *s) -> (batch, 1, ..., 1, *s) with `rank` per-sample axes, so that NumPy's
    broadcasting right-aligns the per-sample shapes and never touches the batch axis."""
    extra = rank - (x.ndim - 1)
    return x.reshape((x.shape[0],) + (1,) * extra + x.shape[1:])


def _aligned(xs):
    rank = max(x.ndim for x in xs) - 1
    return [_pad(np.asarray(x, dtype=np.float64), rank) for x in xs]


def ref_elementwise(op, xs):
    """Folded left to right in float64: ((x0 op x1) op x2) ..."""
    p = _aligned(xs)
    if op == "Subtract":
        assert len(p) == 2
        return p[0] - p[1]
    fn = {"Add": np.add, "Average": np.add, "Multiply": np.multiply,
          "Maximum": np.maximum, "Minimum": np.minimum}[op]
    acc = p[0]
    for v in p[1:]:
        acc = fn(acc, v)
    if op == "Average":
        acc = acc / len(p)
    return np.broadcast_to(acc, np.broadcast_shapes(*(v.shape for v in p))).copy()


def _unbroadcast(g, shape):
    """Sums the output-shaped gradient `g` over the axes that input `shape` was
    broadcast along (its missing leading per-sample axes and its size-1 axes)."""
    extra = g.ndim - len(shape)
    padded = (shape[0],) + (1,) * extra + tuple(shape[1:])
    axes = tuple(i for i in range(1, g.ndim) if padded[i] == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def ref_elementwise_grads(op, xs, dy):
    """d(sum(dy * y))/d(x_k) for each input, written from the derivative of each op (not
    from the forward reference); Maximum/Minimum route each element to the FIRST input
    holding the winning value."""
    dy = np.asarray(dy, dtype=np.float64)
    b = [np.broadcast_to(v, dy.shape) for v in _aligned(xs)]
    n = len(b)
    if op in ("Maximum", "Minimum"):
        stack = np.stack(b)
        best = stack.max(axis=0) if op == "Maximum" else stack.min(axis=0)
        winner = np.argmax(stack == best, axis=0)  # first index holding the winner
    grads = []
    for k in range(n):
        if op == "Add":
            local = np.ones(dy.shape)
        elif op == "Subtract":
            local = np.full(dy.shape, 1.0 if k == 0 else -1.0)
        elif op == "Average":
            local = np.full(dy.shape, 1.0 / n)
        elif op == "Multiply":
            local = np.ones(dy.shape)
            for j in range(n):
                if j != k:
                    local = local * b[j]
        else:
            local = (winner == k).astype(np.float64)
        grads.append(_unbroadcast(dy * local, np.shape(xs[k])))
    return grads


def ref_concatenate(xs, axis):
    return np.concatenate([np.asarray(x, dtype=np.float64) for x in xs], axis=axis)


def ref_concatenate_grads(xs, axis, dy):
    sizes = [np.shape(x)[axis] for x in xs]
    return np.split(np.asarray(dy, dtype=np.float64), np.cumsum(sizes)[:-1], axis=axis)


def fd_grads(f, xs, dy, h=1e-5):
    """Central finite differences, in float64, of sum(dy * f(xs)) for every input element."""
    xs = [np.asarray(x, dtype=np.float64) for x in xs]
    dy = np.asarray(dy, dtype=np.float64)
    out = []
    for k, x in enumerate(xs):
        g = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            plus = [v.copy() for v in xs]
            minus = [v.copy() for v in xs]
            plus[k][idx] += h
            minus[k][idx] -= h
            g[idx] = (np.sum(dy * f(plus)) - np.sum(dy * f(minus))) / (2 * h)
        out.append(g)
    return out


def _check_reference_by_fd(f, grads, xs, dy):
    # Every op here is piecewise linear in each single input element, so central
    # differences are exact up to float64 rounding (away from Maximum/Minimum ties).
    for k, (want, got) in enumerate(zip(fd_grads(f, xs, dy), grads)):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7,
                                   err_msg=f"reference gradient of input {k} vs FD")


# ----------------------------------------------------------------------------- data


def _inputs(rng, batch, shapes, distinct=True):
    """float32 inputs (batch, *shape). With `distinct`, every value across all inputs is
    different (gaps >= ~1e-2), so Maximum/Minimum have no ties anywhere."""
    sizes = [batch * int(np.prod(s, dtype=np.int64)) for s in shapes]
    total = sum(sizes)
    if distinct:
        flat = (rng.permutation(total) - total / 2 + rng.uniform(0.1, 0.9)) * (4.0 / total)
    else:
        flat = rng.uniform(-2, 2, size=total)
    flat = flat.astype(np.float32)
    out, at = [], 0
    for s, n in zip(shapes, sizes):
        out.append(flat[at:at + n].reshape((batch,) + tuple(s)).copy())
        at += n
    return out


def _dy(rng, shape):
    return rng.normal(size=shape).astype(np.float32)


def _layer(op, **kwargs):
    return getattr(_layers(), op)(**kwargs)


def _check_elementwise(op, xs, dy, fd=True):
    y, dxs = _run(_layer(op), xs, dy)
    want_y = ref_elementwise(op, xs)
    want_dx = ref_elementwise_grads(op, xs, dy)
    if fd:
        _check_reference_by_fd(lambda v: ref_elementwise(op, v), want_dx, xs, dy)
    assert y.dtype == np.float32 and y.shape == want_y.shape
    np.testing.assert_allclose(y, want_y, rtol=RTOL, atol=ATOL, err_msg=f"{op} forward")
    assert len(dxs) == len(xs)
    for k, (got, want) in enumerate(zip(dxs, want_dx)):
        assert got.shape == np.shape(xs[k])
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{op} gradient of input {k}")
    return y, dxs


# ----------------------------------------------------------------------------- reference


def test_reference_helpers_are_not_vacuous():
    """The references and the finite-difference check detect a wrong gradient."""
    x = [np.array([[1.0, 2.0]]), np.array([[3.0, -1.0]])]
    dy = np.array([[1.0, 1.0]])
    np.testing.assert_array_equal(ref_elementwise("Multiply", x), [[3.0, -2.0]])
    grads = ref_elementwise_grads("Multiply", x, dy)
    np.testing.assert_array_equal(grads[0], [[3.0, -1.0]])
    with pytest.raises(AssertionError):
        _check_reference_by_fd(lambda v: ref_elementwise("Multiply", v),
                               [grads[1], grads[0]], x, dy)
    # (batch, 3, 4) + (batch, 4): right-aligned, not aligned with the batch axis.
    a, b = np.zeros((2, 3, 4)), np.arange(8.0).reshape(2, 4)
    np.testing.assert_array_equal(ref_elementwise("Add", [a, b])[1, 2], [4, 5, 6, 7])
    np.testing.assert_array_equal(_unbroadcast(np.ones((2, 3, 4)), (2, 4)), np.full((2, 4), 3))


# ----------------------------------------------------------------------------- equal shapes


@pytest.mark.parametrize("shape,batch", [((5,), 2), ((3, 4), 3), ((2, 3, 4), 4)])
@pytest.mark.parametrize("op,n", [(op, n) for op in ELEMENTWISE for n in (2, 3)
                                  if op != "Subtract" or n == 2])  # Subtract: exactly 2
def test_elementwise_equal_shapes(op, n, shape, batch):
    rng = np.random.default_rng([n, batch, len(shape), ELEMENTWISE.index(op)])
    xs = _inputs(rng, batch, [shape] * n)
    _check_elementwise(op, xs, _dy(rng, (batch,) + shape))


@pytest.mark.parametrize("op", VARIADIC)
def test_elementwise_single_input_is_identity(op):
    rng = np.random.default_rng(7)
    (x,) = _inputs(rng, 3, [(4,)])
    dy = _dy(rng, (3, 4))
    y, (dx,) = _check_elementwise(op, [x], dy)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, dy)


def test_multiply_gradient_with_exact_zeros():
    """Product of the other inputs (not y / x_k, which breaks at zero)."""
    x0 = np.array([[0.0, 2.0, 0.0, -1.5]], dtype=np.float32)
    x1 = np.array([[3.0, 0.0, 0.0, 2.0]], dtype=np.float32)
    x2 = np.array([[-2.0, 0.5, 4.0, 0.0]], dtype=np.float32)
    dy = np.array([[1.0, -2.0, 0.5, 3.0]], dtype=np.float32)
    _, dxs = _check_elementwise("Multiply", [x0, x1, x2], dy)
    np.testing.assert_array_equal(dxs[0], [[-6.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(dxs[1], [[0.0, -2.0, 0.0, 0.0]])
    np.testing.assert_array_equal(dxs[2], [[0.0, 0.0, 0.0, -9.0]])


def test_large_inputs_take_the_parallel_path():
    """Over the engine's parallel threshold (32768 values) the results are the same."""
    rng = np.random.default_rng(11)
    shape = (64, 160)
    xs = _inputs(rng, 4, [shape] * 3, distinct=False)
    dy = _dy(rng, (4,) + shape)
    for op in VARIADIC:
        _check_elementwise(op, xs, dy, fd=False)
    xs = _inputs(rng, 4, [(64, 100), (64, 60)], distinct=False)
    _check_concatenate(xs, -1, fd=False)


# ----------------------------------------------------------------------------- broadcasting


BROADCAST_CASES = [
    [(3, 4), (4,)],
    [(4,), (3, 4)],
    [(3, 1), (1, 4)],
    [(2, 1, 4), (3, 4)],
    [(3, 4), (1,)],
    [(2, 3, 4), (3, 1)],
    [(2, 1, 4), (3, 1), (4,)],
    [(3, 4), (3, 4), (1, 4)],
]


@pytest.mark.parametrize("op,shapes", [(op, s) for op in ELEMENTWISE for s in BROADCAST_CASES
                                       if op != "Subtract" or len(s) == 2], ids=str)
def test_elementwise_broadcasting(op, shapes):
    rng = np.random.default_rng([len(shapes), sum(map(len, shapes)), ELEMENTWISE.index(op)])
    batch = 3
    out = np.broadcast_shapes(*shapes)
    xs = _inputs(rng, batch, shapes)
    _check_elementwise(op, xs, _dy(rng, (batch,) + out))


def test_broadcast_gradient_is_the_sum_over_broadcast_axes():
    """Add of (3, 4) and (4,): the (4,) input's gradient sums dy over the 3 rows; (3, 1) and
    (1, 4) each sum over the axis they lack."""
    rng = np.random.default_rng(3)
    dy = _dy(rng, (2, 3, 4))
    xs = _inputs(rng, 2, [(3, 4), (4,)])
    _, (da, db) = _run(_layer("Add"), xs, dy)
    np.testing.assert_allclose(da, dy, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=1), rtol=RTOL, atol=ATOL)
    xs = _inputs(rng, 2, [(3, 1), (1, 4)])
    _, (da, db) = _run(_layer("Subtract"), xs, dy)
    np.testing.assert_allclose(da, dy.astype(np.float64).sum(axis=2, keepdims=True),
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(db, -dy.astype(np.float64).sum(axis=1, keepdims=True),
                               rtol=RTOL, atol=ATOL)


@settings(max_examples=30, deadline=None)
@given(shapes=st.integers(2, 3).flatmap(
           lambda n: hnp.mutually_broadcastable_shapes(num_shapes=n, min_dims=0, max_dims=3,
                                                       max_side=4)),
       op=st.sampled_from(VARIADIC), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_elementwise_broadcasting_property(shapes, op, batch, seed):
    rng = np.random.default_rng(seed)
    in_shapes, out = shapes.input_shapes, shapes.result_shape
    xs = _inputs(rng, batch, in_shapes)
    _check_elementwise(op, xs, _dy(rng, (batch,) + tuple(out)), fd=False)


# ----------------------------------------------------------------------------- ties


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("op", ["Maximum", "Minimum"])
def test_ties_go_to_the_first_input(op, n):
    """Small integer values give many exact ties; the engine must match the first-input
    rule of the reference (and, where there is no tie, finite differences)."""
    rng = np.random.default_rng([n, op == "Maximum"])
    xs = [rng.integers(0, 3, size=(4, 3, 4)).astype(np.float32) for _ in range(n)]
    stack = np.stack(xs)
    best = stack.max(0) if op == "Maximum" else stack.min(0)
    ties = (stack == best).sum(0) > 1
    assert ties.any() and (~ties).any()
    dy = _dy(rng, (4, 3, 4))
    _, dxs = _check_elementwise(op, xs, dy, fd=False)
    # Explicitly: at each element the whole of dy goes to the first input holding the
    # winning value, nothing to any other (a "last input" or "split" rule fails here).
    first = np.argmax(stack == best, axis=0)
    for k in range(n):
        np.testing.assert_array_equal(dxs[k], np.where(first == k, dy, 0.0))
    np.testing.assert_array_equal(sum(dxs), dy)


@pytest.mark.parametrize("op", ["Maximum", "Minimum"])
def test_ties_explicit(op):
    a = np.array([[1.0, 5.0, 2.0, -3.0]], dtype=np.float32)
    sign = 1.0 if op == "Maximum" else -1.0
    b = a.copy()                       # ties a everywhere
    c = a - sign * 1.0                 # loses everywhere
    d = a + sign * np.array([[0.0, 1.0, 0.0, 2.0]], dtype=np.float32)  # wins at 1 and 3
    dy = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    _, dxs = _run(_layer(op), [a, b], dy)
    np.testing.assert_array_equal(dxs[0], dy)
    np.testing.assert_array_equal(dxs[1], 0 * dy)
    # The winner is the first input holding the winning value, even after a loser.
    _, dxs = _run(_layer(op), [c, a, b, d], dy)
    np.testing.assert_array_equal(dxs[0], 0 * dy)
    np.testing.assert_array_equal(dxs[1], [[1.0, 0.0, 3.0, 0.0]])
    np.testing.assert_array_equal(dxs[2], 0 * dy)
    np.testing.assert_array_equal(dxs[3], [[0.0, 2.0, 0.0, 4.0]])


@pytest.mark.parametrize("op", ["Maximum", "Minimum"])
def test_ties_with_broadcasting(op):
    """(3, 4) against a (4,) row equal to the first input's middle row: the tied row's
    gradient stays with input 0; the broadcast input collects the rows it wins."""
    x0 = np.array([[[0.0, 1.0, 2.0, 3.0],
                    [4.0, 5.0, 6.0, 7.0],
                    [8.0, 9.0, 10.0, 11.0]]], dtype=np.float32)
    if op == "Minimum":
        x0 = -x0
    x1 = x0[:, 1, :].copy()
    dy = np.arange(1.0, 13.0, dtype=np.float32).reshape(1, 3, 4)
    y, (d0, d1) = _check_elementwise(op, [x0, x1], dy, fd=False)
    np.testing.assert_array_equal(y[0, 0], x1[0])
    np.testing.assert_array_equal(d0, dy * np.array([0, 1, 1], np.float32)[None, :, None])
    np.testing.assert_array_equal(d1, dy[:, 0, :])


@pytest.mark.parametrize("op", ["Maximum", "Minimum"])
def test_max_min_reference_agrees_with_fd_away_from_ties(op):
    rng = np.random.default_rng(5)
    xs = _inputs(rng, 2, [(2, 3), (2, 3), (3,)])
    assert len(np.unique(np.concatenate([x.ravel() for x in xs]))) == sum(x.size for x in xs)
    dy = _dy(rng, (2, 2, 3))
    grads = ref_elementwise_grads(op, xs, dy)
    _check_reference_by_fd(lambda v: ref_elementwise(op, v), grads, xs, dy)
    _check_elementwise(op, xs, dy, fd=False)


# ----------------------------------------------------------------------------- concatenate


def _check_concatenate(xs, axis, fd=True, **kwargs):
    layer = _layers().Concatenate(axis=axis, **kwargs)
    dy = _dy(np.random.default_rng(99), ref_concatenate(xs, axis).shape)
    y, dxs = _run(layer, xs, dy)
    want_y = ref_concatenate(xs, axis)
    want_dx = ref_concatenate_grads(xs, axis, dy)
    if fd:
        _check_reference_by_fd(lambda v: ref_concatenate(v, axis), want_dx, xs, dy)
    assert y.shape == want_y.shape
    np.testing.assert_allclose(y, want_y, rtol=RTOL, atol=ATOL, err_msg="Concatenate forward")
    for k, (got, want) in enumerate(zip(dxs, want_dx)):
        assert got.shape == np.shape(xs[k])
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL,
                                   err_msg=f"Concatenate gradient of input {k}")
    return y, dxs


CONCAT_CASES = [
    # (per-sample shapes, axis counted with the batch axis)
    ([(3,), (5,)], -1),
    ([(3,), (5,), (1,)], 1),
    ([(3, 2), (3, 4)], -1),
    ([(3, 2), (3, 4)], 2),
    ([(2, 4), (3, 4)], 1),
    ([(2, 4), (3, 4)], -2),
    ([(1, 3, 4), (2, 3, 4), (3, 3, 4)], 1),
    ([(1, 3, 4), (2, 3, 4)], -3),
    ([(2, 1, 4), (2, 3, 4)], 2),
    ([(2, 1, 4), (2, 3, 4), (2, 2, 4)], -2),
    ([(2, 3, 1), (2, 3, 5)], 3),
    ([(2, 3, 1), (2, 3, 5)], -1),
    ([(2, 3, 4)], -1),
]


@pytest.mark.parametrize("shapes,axis", CONCAT_CASES, ids=str)
def test_concatenate(shapes, axis):
    rng = np.random.default_rng([len(shapes), axis + 10, sum(map(len, shapes))])
    xs = _inputs(rng, 3, shapes)
    _check_concatenate(xs, axis)


def test_concatenate_default_axis_is_last():
    rng = np.random.default_rng(2)
    xs = _inputs(rng, 2, [(2, 3, 1), (2, 3, 2)])
    dy = _dy(rng, (2, 2, 3, 3))
    y, dxs = _run(_layers().Concatenate(), xs, dy)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=-1))
    np.testing.assert_array_equal(dxs[0], dy[..., :1])
    np.testing.assert_array_equal(dxs[1], dy[..., 1:])


# ----------------------------------------------------------------------------- errors


def _zeros(*shapes, batch=2):
    return [np.zeros((batch,) + s, np.float32) for s in shapes]


def test_add_of_mismatched_shapes_names_the_layer_and_shapes():
    xs = _zeros((16,), (8,))
    with pytest.raises(ValueError) as e:
        _run(_layer("Add", name="skip_add"), xs, np.zeros((2, 16), np.float32))
    msg = str(e.value)
    assert "skip_add" in msg and "(None, 16)" in msg and "(None, 8)" in msg, msg


@pytest.mark.parametrize("op", ELEMENTWISE)
@pytest.mark.parametrize("shapes", [[(3, 4), (3,)], [(2, 3), (3, 2)], [(2, 1, 4), (3, 5)]],
                         ids=str)
def test_elementwise_refuses_shapes_that_do_not_broadcast(op, shapes):
    xs = _zeros(*shapes)
    with pytest.raises(ValueError) as e:
        _run(_layer(op, name="m_bad"), xs, np.zeros((2, 1), np.float32))
    msg = str(e.value)
    assert "m_bad" in msg, msg
    for s in shapes:
        assert "(None, " + ", ".join(map(str, s)) + ")" in msg, msg


@pytest.mark.parametrize("shapes,axis", [
    ([(4, 3), (5, 2)], -1),
    ([(4, 3), (4,)], -1),
    ([(2, 3, 4), (2, 5, 4)], -1),
    ([(2, 3, 4), (3, 3, 5)], 1),
], ids=str)
def test_concatenate_of_mismatched_shapes(shapes, axis):
    xs = _zeros(*shapes)
    with pytest.raises(ValueError) as e:
        _run(_layers().Concatenate(axis=axis, name="cat_bad"), xs,
             np.zeros((2, 1), np.float32))
    msg = str(e.value)
    assert "cat_bad" in msg, msg
    for s in shapes:
        assert "(None, " + ", ".join(map(str, s)) + ")" in msg, msg


@pytest.mark.parametrize("n", [1, 3])
def test_subtract_needs_exactly_two_inputs(n):
    xs = _zeros(*[(4,)] * n)
    with pytest.raises(ValueError, match="exactly 2") as e:
        _run(_layer("Subtract", name="sub_n"), xs, np.zeros((2, 4), np.float32))
    assert "sub_n" in str(e.value)


@pytest.mark.parametrize("axis", [0, -3, 3, -4])
def test_concatenate_refuses_the_batch_axis_and_out_of_range_axes(axis):
    """Per-sample (4, 3): axes 1, 2 (or -1, -2) are valid; 0 and -3 name the batch axis."""
    xs = _zeros((4, 3), (4, 3))
    with pytest.raises(ValueError, match="axis") as e:
        _run(_layers().Concatenate(axis=axis, name="cat_axis"), xs,
             np.zeros((2, 8, 3), np.float32))
    assert "cat_axis" in str(e.value)


@pytest.mark.parametrize("axis", [1.0, "1", True, None])
def test_concatenate_axis_must_be_an_integer(axis):
    with pytest.raises(TypeError, match="axis"):
        _layers().Concatenate(axis=axis)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("cls", ELEMENTWISE + ["Concatenate"])
def test_config_round_trip(cls):
    layer = getattr(_layers(), cls)(name=f"{cls.lower()}_rt")
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert type(again) is type(layer)
    assert again.get_config() == config
    assert again.name == f"{cls.lower()}_rt"


@pytest.mark.parametrize("axis", [-1, 1, 2, -2])
def test_concatenate_config_keeps_axis(axis):
    Concatenate = _layers().Concatenate
    layer = Concatenate(axis=axis)
    assert layer.get_config()["axis"] == axis
    again = Concatenate.from_config(layer.get_config())
    assert again.axis == axis and again.get_config() == layer.get_config()
    # The restored layer joins the engine's inputs along the same axis.
    rng = np.random.default_rng(axis + 4)
    xs = _inputs(rng, 2, [(2, 3), (2, 3)])
    dy = _dy(rng, ref_concatenate(xs, axis).shape)
    y0, d0 = _run(layer, xs, dy)
    y1, d1 = _run(again, xs, dy)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(y1, ref_concatenate(xs, axis))
    for a, b in zip(d0, d1):
        np.testing.assert_array_equal(a, b)


def test_concatenate_default_axis_in_config():
    assert _layers().Concatenate().get_config()["axis"] == -1


def test_functional_forms_exist():
    # Calling them needs symbolic tensors (not tested here yet).
    import inspect

    L = _layers()
    for name in ["add", "subtract", "multiply", "average", "maximum", "minimum",
                 "concatenate"]:
        assert callable(getattr(L, name)), name
        assert name in L.__all__, name
    assert inspect.signature(L.concatenate).parameters["axis"].default == -1


# ----------------------------------------------------------------------------- dot
# Dot(axes, normalize): the per-sample dot product along one axis of each of two inputs
# (Keras's batch_dot), optionally of the L2-normalised inputs (cosine similarity).

DOT_EPS = 1e-12  # floor of the squared norm, as Keras's l2_normalize


def _dot_axes(axes, shapes):
    """Keras's axes (counted with the batch axis) resolved to non-negative axes of the
    full (batch, ...) arrays."""
    pair = [axes, axes] if isinstance(axes, int) else list(axes)
    return [a + len(s) if a < 0 else a for a, s in zip(pair, shapes)]


def _dot_subscripts(shapes, axes):
    """einsum subscripts for x1, x2 and the output: 'z' the batch, 'k' the summed axis."""
    free = iter("abcdefghij")
    s1 = "".join("z" if i == 0 else "k" if i == axes[0] else next(free)
                 for i in range(len(shapes[0])))
    s2 = "".join("z" if i == 0 else "k" if i == axes[1] else next(free)
                 for i in range(len(shapes[1])))
    out = "z" + s1[1:].replace("k", "") + s2[1:].replace("k", "")
    return s1, s2, out


def _l2_normalize(x, axis):
    """x / sqrt(max(sum(x^2), eps)) along `axis`, and the inverse norm and floor flag."""
    sq = np.sum(x * x, axis=axis, keepdims=True)
    inv = 1.0 / np.sqrt(np.maximum(sq, DOT_EPS))
    return x * inv, inv, sq < DOT_EPS


def ref_dot(xs, axes, normalize=False):
    x1, x2 = (np.asarray(x, dtype=np.float64) for x in xs)
    a = _dot_axes(axes, [x1.shape, x2.shape])
    if normalize:
        x1, x2 = _l2_normalize(x1, a[0])[0], _l2_normalize(x2, a[1])[0]
    s1, s2, out = _dot_subscripts([x1.shape, x2.shape], a)
    y = np.einsum(f"{s1},{s2}->{out}", x1, x2)
    return y.reshape(-1, 1) if y.ndim == 1 else y


def ref_dot_grads(xs, axes, dy, normalize=False):
    """Written from the derivative, not from the forward reference: with u = x * g (g the
    inverse norm), du1 = einsum(dy, u2) and dx1 = g * (du1 - u1 * sum(u1 * du1)) along the
    summed axis (just g * du1 where the norm is the floor); likewise for x2."""
    x1, x2 = (np.asarray(x, dtype=np.float64) for x in xs)
    a = _dot_axes(axes, [x1.shape, x2.shape])
    s1, s2, out = _dot_subscripts([x1.shape, x2.shape], a)
    dy = np.asarray(dy, dtype=np.float64).reshape(
        np.einsum(f"{s1},{s2}->{out}", x1, x2).shape)
    if not normalize:
        return [np.einsum(f"{out},{s2}->{s1}", dy, x2), np.einsum(f"{out},{s1}->{s2}", dy, x1)]
    u1, g1, floor1 = _l2_normalize(x1, a[0])
    u2, g2, floor2 = _l2_normalize(x2, a[1])
    du1 = np.einsum(f"{out},{s2}->{s1}", dy, u2)
    du2 = np.einsum(f"{out},{s1}->{s2}", dy, u1)
    grads = []
    for u, g, floor, du, axis in [(u1, g1, floor1, du1, a[0]), (u2, g2, floor2, du2, a[1])]:
        c = np.where(floor, 0.0, np.sum(u * du, axis=axis, keepdims=True))
        grads.append(g * (du - u * c))
    return grads


def _check_dot_reference_by_fd(xs, axes, dy, normalize):
    grads = ref_dot_grads(xs, axes, dy, normalize)
    # Without normalize the product is linear in each single element: central differences
    # are exact up to rounding; with it, smooth (away from zero vectors): O(h^2) error.
    tol = 1e-6 if normalize else 1e-7
    fd = fd_grads(lambda v: ref_dot(v, axes, normalize), xs, dy)
    for k, (want, got) in enumerate(zip(fd, grads)):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol,
                                   err_msg=f"Dot reference gradient of input {k} vs FD")


def _check_dot(xs, axes, normalize=False, fd=True, dy=None, **kwargs):
    layer = _layers().Dot(axes=axes, normalize=normalize, **kwargs)
    want_y = ref_dot(xs, axes, normalize)
    if dy is None:
        dy = _dy(np.random.default_rng(42), want_y.shape)
    if fd:
        _check_dot_reference_by_fd(xs, axes, dy, normalize)
    y, dxs = _run(layer, xs, dy)
    assert y.dtype == np.float32 and y.shape == want_y.shape
    np.testing.assert_allclose(y, want_y, rtol=RTOL, atol=ATOL, err_msg="Dot forward")
    assert len(dxs) == 2
    for k, (got, want) in enumerate(zip(dxs, ref_dot_grads(xs, axes, dy, normalize))):
        assert got.shape == np.shape(xs[k])
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL,
                                   err_msg=f"Dot gradient of input {k}")
    return y, dxs


DOT_CASES = [
    # (per-sample shapes, axes, per-sample output shape)
    ([(4,), (4,)], 1, (1,)),
    ([(4,), (4,)], -1, (1,)),
    ([(4,), (4,)], [1, -1], (1,)),
    ([(3, 4), (4,)], [2, 1], (3,)),
    ([(3, 4), (4,)], -1, (3,)),            # -1 is axis 2 of x1 and axis 1 of x2
    ([(4, 3), (4,)], 1, (3,)),
    ([(4, 3), (4,)], [-2, -1], (3,)),
    ([(4,), (3, 4)], [1, 2], (3,)),
    ([(4,), (4, 3)], 1, (3,)),
    ([(3, 4), (5, 4)], 2, (3, 5)),
    ([(3, 4), (5, 4)], -1, (3, 5)),
    ([(4, 3), (4, 5)], 1, (3, 5)),
    ([(4, 3), (4, 5)], -2, (3, 5)),
    ([(4, 3), (5, 4)], [1, 2], (3, 5)),
    ([(3, 4), (4, 5)], [2, 1], (3, 5)),    # a batched matmul
    ([(3, 4), (4, 5)], [-1, -2], (3, 5)),
    ([(1, 4), (4, 1)], [2, 1], (1, 1)),
    # Higher per-sample ranks follow the same rule (Keras's batch_dot squashes them).
    ([(2, 3, 4), (4,)], [3, 1], (2, 3)),
    ([(2, 4, 3), (5, 4)], [2, -1], (2, 3, 5)),
]


def test_dot_reference_helpers_are_not_vacuous():
    x1 = np.array([[1.0, 2.0, 3.0]])
    x2 = np.array([[4.0, -5.0, 6.0]])
    np.testing.assert_array_equal(ref_dot([x1, x2], 1), [[12.0]])
    cos = 12.0 / np.sqrt(14.0 * 77.0)
    np.testing.assert_allclose(ref_dot([x1, x2], 1, normalize=True), [[cos]], rtol=1e-15)
    a = np.arange(24.0).reshape(2, 3, 4)
    b = np.arange(40.0).reshape(2, 5, 4)
    np.testing.assert_array_equal(ref_dot([a, b], 2), a @ b.transpose(0, 2, 1))
    np.testing.assert_array_equal(ref_dot([a.transpose(0, 2, 1), b.transpose(0, 2, 1)], 1),
                                  a @ b.transpose(0, 2, 1))
    dy = np.array([[1.0]])
    grads = ref_dot_grads([x1, x2], 1, dy, normalize=True)
    # Swapped gradients, or the gradient without the normalisation's term, fail the FD check.
    for wrong in ([grads[1], grads[0]], ref_dot_grads([x1, x2], 1, dy)):
        with pytest.raises(AssertionError):
            fd = fd_grads(lambda v: ref_dot(v, 1, True), [x1, x2], dy)
            for want, got in zip(fd, wrong):
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("shapes,axes,out", DOT_CASES, ids=str)
def test_dot(shapes, axes, out, normalize):
    rng = np.random.default_rng([len(shapes[0]), len(shapes[1]), sum(map(sum, shapes)),
                                 normalize])
    batch = 3
    xs = _inputs(rng, batch, shapes, distinct=False)
    y, _ = _check_dot(xs, axes, normalize)
    assert y.shape == (batch,) + out


def test_dot_of_vectors_is_the_row_dot_product():
    x1 = np.array([[1.0, 2.0, 3.0], [0.0, 3.0, 4.0]], np.float32)
    x2 = np.array([[4.0, 5.0, 6.0], [1.0, 6.0, 8.0]], np.float32)
    dy = np.array([[1.0], [2.0]], np.float32)
    y, (d1, d2) = _run(_layers().Dot(axes=1), [x1, x2], dy)
    np.testing.assert_array_equal(y, [[32.0], [50.0]])
    np.testing.assert_array_equal(d1, dy * x2)
    np.testing.assert_array_equal(d2, dy * x1)


def test_dot_normalize_is_the_cosine_similarity():
    rng = np.random.default_rng(8)
    x1, x2 = _inputs(rng, 4, [(6,), (6,)], distinct=False)
    y, _ = _check_dot([x1, x2], -1, normalize=True)
    x1d, x2d = x1.astype(np.float64), x2.astype(np.float64)
    cos = np.sum(x1d * x2d, axis=1) / (np.linalg.norm(x1d, axis=1) * np.linalg.norm(x2d, axis=1))
    np.testing.assert_allclose(y[:, 0], cos, rtol=RTOL, atol=ATOL)
    # Scaling an input changes neither the output nor (beyond the scale) the gradient.
    y2, (d1, _) = _run(_layers().Dot(axes=-1, normalize=True), [3 * x1, x2],
                       np.ones((4, 1), np.float32))
    _, (d1_ref, _) = _run(_layers().Dot(axes=-1, normalize=True), [x1, x2],
                          np.ones((4, 1), np.float32))
    np.testing.assert_allclose(y2, y, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(d1 * 3, d1_ref, rtol=1e-5, atol=1e-6)
    # The gradient of a cosine is orthogonal to its own input.
    np.testing.assert_allclose(np.sum(d1_ref.astype(np.float64) * x1d, axis=1), 0.0, atol=1e-5)


def test_dot_normalize_of_a_zero_vector():
    """The squared norm's floor 1e-12 keeps the output 0 and the gradient finite:
    u1 = x1 / 1e-6, so d(u1 . u2)/dx1 = u2 / 1e-6."""
    x1 = np.array([[0.0, 0.0], [1.0, 0.0]], np.float32)
    x2 = np.array([[3.0, 4.0], [3.0, 4.0]], np.float32)
    dy = np.ones((2, 1), np.float32)
    y, (d1, d2) = _run(_layers().Dot(axes=1, normalize=True), [x1, x2], dy)
    np.testing.assert_allclose(y, [[0.0], [0.6]], rtol=1e-6)
    np.testing.assert_allclose(d1[0], [0.6e6, 0.8e6], rtol=1e-6)
    np.testing.assert_array_equal(d2[0], [0.0, 0.0])
    for got, want in zip([d1, d2], ref_dot_grads([x1, x2], 1, dy, normalize=True)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # Rows of a (3, 2) input along axis 1: a zero row next to ordinary ones.
    a = np.array([[[0.0, 0.0], [1.0, 2.0], [-2.0, 0.5]]], np.float32)
    b = np.array([[0.5, -1.0]], np.float32)
    _check_dot([a, b], [2, 1], normalize=True, fd=False)


@pytest.mark.parametrize("normalize", [False, True])
def test_dot_large_batch_takes_the_parallel_path(normalize):
    """64 samples of (8, 16) . (8, 16) on axis 2 is 64 * 64 * 16 = 65536 multiply-adds,
    over the engine's threshold: the same values as sample by sample."""
    rng = np.random.default_rng(21)
    xs = _inputs(rng, 64, [(8, 16), (8, 16)], distinct=False)
    dy = _dy(rng, (64, 8, 8))
    y, dxs = _check_dot(xs, 2, normalize, fd=False, dy=dy)
    layer = _layers().Dot(axes=2, normalize=normalize)
    for r in [0, 31, 63]:
        y_r, dxs_r = _run(layer, [x[r:r + 1] for x in xs], dy[r:r + 1])
        np.testing.assert_array_equal(y_r, y[r:r + 1])
        for got, want in zip(dxs_r, dxs):
            np.testing.assert_array_equal(got, want[r:r + 1])


def test_dot_batch_of_one_and_a_batch_that_grows():
    """Buffers kept between calls (the norms) follow the batch size."""
    rng = np.random.default_rng(4)
    layer = _layers().Dot(axes=-1, normalize=True)
    for batch in [1, 5, 2, 7]:
        xs = _inputs(rng, batch, [(3, 4), (2, 4)], distinct=False)
        dy = _dy(rng, (batch, 3, 2))
        y, dxs = _run(layer, xs, dy)
        np.testing.assert_allclose(y, ref_dot(xs, -1, True), rtol=RTOL, atol=ATOL)
        for got, want in zip(dxs, ref_dot_grads(xs, -1, dy, True)):
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- dot errors


def test_dot_incompatible_shapes_message():
    xs = _zeros((4,), (5,))
    with pytest.raises(ValueError) as e:
        _run(_layers().Dot(axes=1, name="dot"), xs, np.zeros((2, 1), np.float32))
    assert ("Dot 'dot': incompatible input shapes: axis values 4 (axis 1 of (None, 4)) and 5 "
            "(axis 1 of (None, 5))") in str(e.value), str(e.value)


@pytest.mark.parametrize("shapes,axes,values", [
    ([(3, 4), (4, 3)], -1, "axis values 4 (axis 2 of (None, 3, 4)) and 3 (axis 2 of "
                           "(None, 4, 3))"),
    ([(3, 4), (4,)], 1, "axis values 3 (axis 1 of (None, 3, 4)) and 4 (axis 1 of (None, 4))"),
    ([(3, 4), (5, 6)], [2, 1], "axis values 4 (axis 2 of (None, 3, 4)) and 5 (axis 1 of "
                               "(None, 5, 6))"),
], ids=str)
def test_dot_incompatible_shapes_name_both_axes(shapes, axes, values):
    with pytest.raises(ValueError) as e:
        _run(_layers().Dot(axes=axes, name="dot_bad"), _zeros(*shapes),
             np.zeros((2, 1), np.float32))
    assert f"Dot 'dot_bad': incompatible input shapes: {values}" in str(e.value), str(e.value)


@pytest.mark.parametrize("shapes,axes", [
    ([(4,), (4,)], 2),
    ([(4,), (4,)], -2),          # the batch axis, counted from the end
    ([(3, 4), (4,)], [3, 1]),
    ([(3, 4), (4,)], [2, -3]),
], ids=str)
def test_dot_axes_out_of_range(shapes, axes):
    with pytest.raises(ValueError, match="out of range") as e:
        _run(_layers().Dot(axes=axes, name="dot_range"), _zeros(*shapes),
             np.zeros((2, 1), np.float32))
    assert "dot_range" in str(e.value)


@pytest.mark.parametrize("n", [1, 3])
def test_dot_needs_exactly_two_inputs(n):
    with pytest.raises(ValueError, match="exactly 2") as e:
        _run(_layers().Dot(axes=1, name="dot_n"), _zeros(*[(4,)] * n),
             np.zeros((2, 1), np.float32))
    assert "dot_n" in str(e.value)


@pytest.mark.parametrize("axes", [0, [0, 1], (1, 0)])
def test_dot_refuses_the_batch_axis(axes):
    with pytest.raises(ValueError, match="batch axis") as e:
        _layers().Dot(axes=axes, name="dot_batch")
    assert "dot_batch" in str(e.value)


@pytest.mark.parametrize("axes", [1.0, "1", True, None, {1: 2}, [1, "2"], [1.0, 1],
                                  [True, 1]])
def test_dot_axes_must_be_integers(axes):
    with pytest.raises(TypeError, match="axes") as e:
        _layers().Dot(axes=axes, name="dot_type")
    assert "dot_type" in str(e.value)


@pytest.mark.parametrize("axes", [[], [1], [1, 2, 3]])
def test_dot_axes_must_be_one_or_two(axes):
    with pytest.raises(ValueError, match="axes") as e:
        _layers().Dot(axes=axes, name="dot_len")
    assert "dot_len" in str(e.value)


@pytest.mark.parametrize("normalize", ["yes", None, 1.0])
def test_dot_normalize_must_be_a_bool(normalize):
    with pytest.raises(TypeError, match="normalize") as e:
        _layers().Dot(axes=1, normalize=normalize, name="dot_norm")
    assert "dot_norm" in str(e.value)


def test_dot_needs_axes():
    with pytest.raises(TypeError):
        _layers().Dot()


# ----------------------------------------------------------------------------- dot config


@pytest.mark.parametrize("axes,stored", [(1, 1), (-1, -1), ([1, 2], [1, 2]),
                                         ((2, -1), [2, -1]), (np.int64(2), 2)], ids=str)
@pytest.mark.parametrize("normalize", [False, True])
def test_dot_config_round_trip(axes, stored, normalize):
    Dot = _layers().Dot
    layer = Dot(axes=axes, normalize=normalize, name="dot_rt")
    config = layer.get_config()
    assert config["axes"] == stored and type(config["axes"]) is type(stored)
    assert config["normalize"] is normalize
    assert config["name"] == "dot_rt"
    again = Dot.from_config(config)
    assert type(again) is Dot and again.get_config() == config
    assert again.axes == stored and again.normalize is normalize
    # The config does not share the layer's list.
    if isinstance(stored, list):
        config["axes"].append(9)
        assert layer.axes == stored


def test_dot_restored_layer_computes_the_same():
    Dot = _layers().Dot
    layer = Dot(axes=(2, 1), normalize=True)
    again = Dot.from_config(layer.get_config())
    rng = np.random.default_rng(13)
    xs = _inputs(rng, 2, [(3, 4), (4, 5)], distinct=False)
    dy = _dy(rng, (2, 3, 5))
    y0, d0 = _run(layer, xs, dy)
    y1, d1 = _run(again, xs, dy)
    np.testing.assert_array_equal(y0, y1)
    for a, b in zip(d0, d1):
        np.testing.assert_array_equal(a, b)


def test_dot_defaults_and_functional_form():
    import inspect

    L = _layers()
    assert "Dot" in L.__all__ and "dot" in L.__all__
    assert L.Dot(axes=1).get_config()["normalize"] is False
    assert inspect.signature(L.Dot).parameters["normalize"].default is False
    params = inspect.signature(L.dot).parameters
    assert params["axes"].default == -1 and params["normalize"].default is False
    with pytest.raises(TypeError, match="list"):
        L.dot("not a list")
