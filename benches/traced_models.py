"""Traced models against the built-in layers they spell, in one process: W1
(784-128-10 Sequential), S1 (the same as a keras.Model subclass with ops.relu),
C1 (its hidden layer a custom Layer: ops.relu(ops.matmul(x, w) + b)) and W1F (the
functional spelling). Epochs alternate between the models, so machine noise hits
them alike; the table gives each one's median and fastest epoch and their ratios to
W1's.

    python benches/traced_models.py [--rounds 15] [--samples 60000] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workloads", default="W1,S1,C1,W1F")
    args = parser.parse_args()
    if args.threads:
        os.environ["FERRAX_NUM_THREADS"] = str(args.threads)
    import compare

    import ferrax as keras

    try:
        (x, y), _ = keras.datasets.fashion_mnist.load_data()
        source = "Fashion-MNIST"
    except Exception:  # noqa: BLE001 - no data set here: random images, same shapes
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8), rng.integers(0, 10, 60000)
        source = "random images (no Fashion-MNIST found)"
    x = (x[:args.samples] / 255.0).astype(np.float32)
    y = y[:args.samples]
    names = args.workloads.split(",")
    models = {}
    for w in names:
        keras.utils.set_random_seed(0)
        m = compare.keras_style_model(keras, compare.WORKLOADS[w])
        m.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy")
        m.fit(x[:3200], y[:3200], batch_size=32, epochs=1, verbose=0)  # warm-up
        models[w] = m
    times: dict[str, list[float]] = {w: [] for w in names}
    for _ in range(args.rounds):
        for w, m in models.items():
            start = time.perf_counter()
            m.fit(x, y, batch_size=32, epochs=1, verbose=0)
            times[w].append(time.perf_counter() - start)
    print(f"data: {source}, {len(x)} samples, batch 32; {keras._core.num_threads()} threads; "
          f"CPU: {compare.cpu_model()}; {args.rounds} alternating rounds")
    base_med, base_min = np.median(times[names[0]]), min(times[names[0]])
    print(f"{'workload':<9}{'median s':>10}{'min s':>9}{'median/W1':>11}{'min/W1':>8}")
    for w in names:
        t = times[w]
        print(f"{w:<9}{np.median(t):>10.4f}{min(t):>9.4f}{np.median(t) / base_med:>11.3f}"
              f"{min(t) / base_min:>8.3f}")


if __name__ == "__main__":
    main()
