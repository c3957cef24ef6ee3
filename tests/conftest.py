"""Shared fixtures for the ferrax test-suite (data only; no ferrax state)."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fresh, seeded NumPy generator for test data."""
    return np.random.default_rng(12345)


def _make_blobs(n=300, features=8, classes=3, seed=0, spread=0.6):
    """Well separated Gaussian blobs: x float32 (n, features), y int64 (n,)."""
    r = np.random.default_rng(seed)
    centers = r.normal(scale=3.0, size=(classes, features))
    y = r.integers(0, classes, size=n).astype(np.int64)
    x = centers[y] + r.normal(scale=spread, size=(n, features))
    return x.astype(np.float32), y


@pytest.fixture
def make_blobs():
    """Factory for blob data: make_blobs(n=300, features=8, classes=3, seed=0, spread=0.6)."""
    return _make_blobs


@pytest.fixture
def blobs():
    """300 samples, 8 float32 features, 3 separable classes (int64 labels)."""
    return _make_blobs()


@pytest.fixture(scope="session")
def digits_split():
    """scikit-learn's bundled 8x8 digits, scaled to [0, 1], split 75/25 with a fixed seed.

    Returns (x_train, y_train, x_test, y_test); x float32 (n, 64), y int64.
    """
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(x))
    n_train = int(len(x) * 0.75)
    tr, te = idx[:n_train], idx[n_train:]
    return x[tr], y[tr], x[te], y[te]
