"""Runs a training script at several thread counts (FERRAX_NUM_THREADS is read at
import, so each count needs its own process) and collects the weights it saves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def weights_at_threads(script: str, tmp_path: Path, counts=(1, 3)) -> list[list[np.ndarray]]:
    """Per thread count: the weights `script` saved with np.savez(sys.argv[1], ...)."""
    runs = []
    for threads in counts:
        out = tmp_path / f"w{threads}.npz"
        env = dict(os.environ, FERRAX_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env)
        with np.load(out) as f:
            runs.append([f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))])
    return runs
