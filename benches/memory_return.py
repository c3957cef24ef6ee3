"""Does memory go back after models are dropped? RSS over repeated build / fit / drop.

    python benches/memory_return.py [--rounds 200] [--repeats 3] [--trim auto|engine|python|off]

Each round builds Input(784) - Dense(1200, relu) - Dense(10, softmax) (955,210 weights),
fits it for one epoch on 2,000 fresh random samples at a random batch size (32-256),
evaluates them at batch 2,000, predicts them at a random batch size (500-2,000), and drops it.
Each run is a fresh interpreter; it prints the resident set size (``/proc/self/statm``,
Linux only) after a first warm-up round, and then every 50 rounds, so what is left after
the last round is measured against the warm start.

``--trim`` picks what happens when a model is dropped (FERRAX_MALLOC_TRIM in the worker):
``engine``/``auto`` leave it to the engine (which calls glibc's ``malloc_trim`` when a model
that held large buffers is freed), ``off`` turns that off (glibc as it is), ``python`` turns it
off and calls ``malloc_trim(0)`` through ctypes after each drop instead (for comparison).
"""

import argparse
import json
import os
import subprocess
import sys

WORKER = r"""
import ctypes, gc, json, os, sys
import numpy as np
import ferrax as keras
from ferrax import layers

rounds, trim = int(sys.argv[1]), sys.argv[2]
page = os.sysconf("SC_PAGE_SIZE")
libc = ctypes.CDLL(None)

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page / 2**20

rng = np.random.default_rng(0)

def one_round():
    # fresh data each round, and batch sizes that give each buffer another size
    x = rng.standard_normal((2000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 2000)
    model = keras.Sequential([layers.Input((784,)), layers.Dense(1200, activation="relu"),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=int(rng.integers(32, 257)), epochs=1, verbose=0)
    model.evaluate(x, y, batch_size=2000, verbose=0)
    model.predict(x, batch_size=int(rng.integers(500, 2001)), verbose=0)
    del model
    gc.collect()
    if trim == "python":
        libc.malloc_trim(0)

one_round()
trace = {0: rss_mb()}
for r in range(1, rounds + 1):
    one_round()
    if r % 50 == 0 or r == rounds:
        trace[r] = rss_mb()
print(json.dumps(trace))
"""


def run(rounds: int, trim: str) -> dict:
    env_trim = {"auto": "auto", "engine": "1", "off": "0", "python": "0"}[trim]
    env = {"FERRAX_MALLOC_TRIM": env_trim}
    proc = subprocess.run([sys.executable, "-c", WORKER, str(rounds), trim],
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          check=True)
    return {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trim", nargs="+", default=["off", "python", "engine"],
                        choices=["auto", "engine", "python", "off"])
    args = parser.parse_args()
    print(f"{'trim':8} {'warm MB':>8} {'last MB':>8} {'growth MB':>10}  trace (round: MB)")
    for _ in range(args.repeats):
        for trim in args.trim:
            trace = run(args.rounds, trim)
            warm, last = trace[0], trace[max(trace)]
            steps = " ".join(f"{r}:{v:.0f}" for r, v in sorted(trace.items()))
            print(f"{trim:8} {warm:8.1f} {last:8.1f} {last - warm:10.1f}  {steps}", flush=True)


if __name__ == "__main__":
    main()
