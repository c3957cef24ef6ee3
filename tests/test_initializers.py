"""Initializers: the distribution each Keras initializer draws from, seeds, and orthogonality.

Keras 3 (see tests/reference.py): VarianceScaling with scale s, mode fan_in / fan_avg and
distribution uniform (limit sqrt(3 s / n)) or truncated normal (stddev sqrt(s / n) / 0.8796,
cut at 2 stddev, so the result has std sqrt(s / n)); glorot = (1, fan_avg), he = (2, fan_in),
lecun = (1, fan_in); fans: 1-D (n, n), 2-D (shape[0], shape[1]), N-D multiplies by the
receptive field. RandomNormal / RandomUniform / TruncatedNormal default to stddev 0.05 /
[-0.05, 0.05] / stddev 0.05 cut at 2 stddev.
"""

import math

import numpy as np
import pytest
import reference as ref


def _ft():
    import ferrax._testing as ft

    return ft


def _obj(cls, **kw):
    import ferrax.initializers

    return getattr(ferrax.initializers, cls)(**kw)


VARIANCE_SCALING = {
    "glorot_uniform": "GlorotUniform",
    "glorot_normal": "GlorotNormal",
    "he_normal": "HeNormal",
    "he_uniform": "HeUniform",
    "lecun_normal": "LecunNormal",
    "lecun_uniform": "LecunUniform",
}
SHAPES = [(784, 128), (128, 10), (300,), (3, 3, 8, 16)]


def _sample(spec, shape, seed=0):
    w = _ft().initializer_sample(spec, shape, seed=seed)
    assert isinstance(w, np.ndarray), type(w)
    assert w.dtype == np.float32, w.dtype
    assert w.shape == tuple(shape), (w.shape, shape)
    assert np.all(np.isfinite(w))
    return w


def _check_distribution(w, dist, what):
    n = w.size
    x = w.astype(np.float64)
    mean, std = ref.distribution_mean_std(dist)
    # mean and std within ~6 standard errors (the seeds are fixed, so this is deterministic)
    assert abs(x.mean() - mean) <= 6 * std / math.sqrt(n) + 1e-7, (
        f"{what}: mean {x.mean():.6g}, expected {mean:.6g} +- {6 * std / math.sqrt(n):.3g}"
    )
    tol = 6 / math.sqrt(2 * n) + 1e-3
    assert abs(x.std() / std - 1) <= tol, (
        f"{what}: std {x.std():.6g}, expected {std:.6g} (relative tolerance {tol:.3g})"
    )
    if dist["kind"] == "uniform":
        lo, hi = dist["low"], dist["high"]
        span = hi - lo
        assert x.min() >= lo - 1e-6 * span and x.max() <= hi + 1e-6 * span, (
            f"{what}: values in [{x.min():.6g}, {x.max():.6g}], limits [{lo:.6g}, {hi:.6g}]"
        )
        assert x.min() < lo + 0.02 * span and x.max() > hi - 0.02 * span, (
            f"{what}: values in [{x.min():.6g}, {x.max():.6g}] do not reach the limits "
            f"[{lo:.6g}, {hi:.6g}]"
        )
    if dist["kind"] == "truncated_normal":
        dev = np.abs(x - dist["mean"]).max()
        assert dev <= dist["bound"] * (1 + 1e-6), (
            f"{what}: max |w - mean| = {dev:.6g} beyond the truncation at {dist['bound']:.6g}"
        )
        if n > 1000:
            assert dev > 0.9 * dist["bound"], f"{what}: max |w - mean| = {dev:.6g}"
    # shape of the distribution: Kolmogorov-Smirnov at p ~ 1e-6
    ks = ref.ks_statistic(x, dist)
    assert ks < 2.7 / math.sqrt(n), f"{what}: KS distance {ks:.4g} > {2.7 / math.sqrt(n):.4g}"


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(VARIANCE_SCALING))
def test_variance_scaling_by_name(name, shape):
    dist = ref.initializer_distribution(name, shape)
    for seed in (0, 1):
        _check_distribution(_sample(name, shape, seed), dist, f"{name}{shape} seed {seed}")


@pytest.mark.parametrize("name", sorted(VARIANCE_SCALING))
def test_variance_scaling_by_object(name):
    shape = (200, 50)
    w = _sample(_obj(VARIANCE_SCALING[name]), shape, seed=3)
    _check_distribution(w, ref.initializer_distribution(name, shape), f"{name} object")


def test_glorot_uniform_limit_for_mnist_layers():
    # the numbers a user expects: sqrt(6 / (784 + 128)) and sqrt(6 / (128 + 10))
    for shape, limit in [((784, 128), math.sqrt(6 / 912)), ((128, 10), math.sqrt(6 / 138))]:
        w = _sample("glorot_uniform", shape)
        assert np.abs(w).max() <= limit * (1 + 1e-6)
        assert np.abs(w).max() > 0.98 * limit


PLAIN = [
    ("random_normal", None, {}),
    ("random_uniform", None, {}),
    ("truncated_normal", None, {}),
    ("random_normal", "RandomNormal", {"mean": 1.0, "stddev": 2.0}),
    ("random_uniform", "RandomUniform", {"minval": -3.0, "maxval": 0.5}),
    ("truncated_normal", "TruncatedNormal", {"mean": -0.5, "stddev": 0.3}),
    ("random_normal", "RandomNormal", {}),
    ("random_uniform", "RandomUniform", {}),
    ("truncated_normal", "TruncatedNormal", {}),
]


@pytest.mark.parametrize("name,cls,kw", PLAIN)
def test_random_initializers(name, cls, kw):
    shape = (256, 100)
    spec = name if cls is None else _obj(cls, **kw)
    for seed in (0, 7):
        w = _sample(spec, shape, seed)
        _check_distribution(
            w, ref.initializer_distribution(name, shape, **kw), f"{name} {kw} seed {seed}"
        )


@pytest.mark.parametrize("spec,value", [("zeros", 0.0), ("ones", 1.0)])
def test_constant_names(spec, value):
    for shape in [(3,), (4, 5), (2, 3, 4)]:
        np.testing.assert_array_equal(_sample(spec, shape), np.full(shape, value, np.float32))


@pytest.mark.parametrize(
    "cls,kw,value",
    [
        ("Zeros", {}, 0.0),
        ("Ones", {}, 1.0),
        ("Constant", {"value": 0.25}, 0.25),
        ("Constant", {"value": -3.0}, -3.0),
        ("Constant", {}, 0.0),
    ],
)
def test_constant_objects(cls, kw, value):
    np.testing.assert_array_equal(
        _sample(_obj(cls, **kw), (6, 7), seed=5), np.full((6, 7), value, np.float32)
    )


ORTHO_SHAPES = [(10, 10), (20, 5), (5, 20), (64, 32), (3, 4, 6), (1, 7)]


@pytest.mark.parametrize("shape", ORTHO_SHAPES, ids=str)
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal(shape, gain):
    spec = "orthogonal" if gain == 1.0 else _obj("Orthogonal", gain=gain)
    w = _sample(spec, shape, seed=2).astype(np.float64)
    m = w.reshape(-1, shape[-1])  # Keras flattens all but the last axis
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    ref.assert_close(
        gram,
        gain**2 * np.eye(gram.shape[0]),
        rtol=0,
        atol=2e-5 * gain**2,
        what=f"orthogonal{shape} gain {gain}: Gram matrix",
    )


def test_orthogonal_is_random():
    a = _sample("orthogonal", (8, 8), seed=0)
    b = _sample("orthogonal", (8, 8), seed=1)
    assert not np.allclose(a, b)
    assert not np.allclose(np.abs(a), np.eye(8), atol=1e-3)  # not the identity


RANDOM_NAMES = sorted(VARIANCE_SCALING) + [
    "orthogonal",
    "random_normal",
    "random_uniform",
    "truncated_normal",
]


@pytest.mark.parametrize("name", RANDOM_NAMES)
def test_seed_determinism(name):
    shape = (17, 9)
    a = _sample(name, shape, seed=123)
    b = _sample(name, shape, seed=123)
    c = _sample(name, shape, seed=124)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a == c) < 0.1, f"{name}: seeds 123 and 124 give (nearly) the same array"
    # entries are not repeats of one another (a broken counter-based stream would repeat)
    assert len(np.unique(a)) > 0.9 * a.size


# ---- the reference itself ----


def test_reference_fans_and_limits():
    assert ref.compute_fans((784, 128)) == (784, 128)
    assert ref.compute_fans((10,)) == (10, 10)
    assert ref.compute_fans((3, 3, 8, 16)) == (72, 144)
    d = ref.initializer_distribution("he_uniform", (50, 20))
    assert d["high"] == pytest.approx(math.sqrt(6 / 50))
    d = ref.initializer_distribution("glorot_normal", (50, 30))
    assert d["std"] == pytest.approx(math.sqrt(2 / 80))
    # the truncated normal's std is 0.8796 of its parameter: check by sampling
    rng = np.random.default_rng(0)
    z = rng.normal(size=400_000)
    assert z[np.abs(z) <= 2].std() == pytest.approx(ref.TRUNCATED_NORMAL_STD, rel=3e-3)
    # and the KS statistic tells a plain normal from the truncated one at n = 100k
    tn = {
        "kind": "truncated_normal",
        "mean": 0.0,
        "stddev": 1.0,
        "bound": 2.0,
        "std": ref.TRUNCATED_NORMAL_STD,
    }
    assert ref.ks_statistic(z[:100_352] * ref.TRUNCATED_NORMAL_STD, tn) > 2.7 / math.sqrt(100_352)
    assert ref.ks_statistic(z[np.abs(z) <= 2][:100_352], tn) < 2.7 / math.sqrt(100_352)
