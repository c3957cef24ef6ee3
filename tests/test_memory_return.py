"""After a model is dropped, its memory goes back to the system (glibc's malloc_trim).

glibc keeps freed blocks below its mmap threshold in its arenas, so without a trim the
resident set stays where the largest model left it; rust/python/src/memory.rs trims
when a model that held at least 1 MB is dropped. Linux with glibc only: other C
libraries return memory on their own, and /proc is Linux's.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim is glibc's; RSS is read from /proc")

ROUNDS = r"""
import gc, os
import numpy as np
import ferrax as keras
from ferrax import layers

page = os.sysconf("SC_PAGE_SIZE")
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page / 2**20

x = np.random.default_rng(0).standard_normal((512, 1024), dtype=np.float32)
y = np.zeros(512, dtype=int)

def build_fit_drop(width):
    model = keras.Sequential([layers.Input((1024,))]
                             + [layers.Dense(width, activation="relu") for _ in range(4)]
                             + [layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=256, epochs=1, verbose=0)
    del model
    gc.collect()

build_fit_drop(64)  # warm: the interpreter's and the engine's own first allocations
start = rss_mb()
for width in (1500, 1800, 1200, 1000):  # 7-14 MB kernels: below glibc's mmap ceiling
    build_fit_drop(width)
print(rss_mb() - start)
"""


def rss_growth(trim: str) -> float:
    proc = subprocess.run([sys.executable, "-c", ROUNDS], capture_output=True, text=True,
                          timeout=300, check=False,
                          env=dict(os.environ, FERRAX_MALLOC_TRIM=trim))
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout.strip().splitlines()[-1])


def test_dropped_models_give_their_memory_back():
    kept = rss_growth("auto")
    untrimmed = rss_growth("0")  # glibc alone, for the message: 25 MB when measured
    assert kept < 8, f"RSS grew {kept:.1f} MB over 4 dropped models (untrimmed: {untrimmed:.1f})"
