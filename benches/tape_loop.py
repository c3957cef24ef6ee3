"""A GradientTape loop over W1 (784-128-10, batch 32) against fit's fused loop on
the same model and data, per epoch, in one run.

    python benches/tape_loop.py [--samples 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import ferrax
from ferrax import layers, ops


def model() -> ferrax.Model:
    ferrax.utils.set_random_seed(0)
    return ferrax.Sequential([ferrax.Input((784,)), layers.Dense(128, activation="relu"),
                              layers.Dense(10)])


def tape_epoch(m: ferrax.Model, optimizer: object, x: np.ndarray, y: np.ndarray) -> float:
    start = time.perf_counter()
    variables = m.trainable_variables
    for i in range(0, len(x), 32):
        with ferrax.GradientTape() as tape:
            logits = m(x[i:i + 32], training=True)
            loss = ops.mean(ops.sparse_categorical_crossentropy(y[i:i + 32], logits,
                                                                from_logits=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    r = np.random.default_rng(0)
    x = r.uniform(size=(args.samples, 784)).astype(np.float32)
    y = r.integers(0, 10, size=args.samples)
    fitted = model()
    fitted.compile(optimizer="adam", loss=ferrax.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    looped, optimizer = model(), ferrax.optimizers.Adam()
    fit_times, tape_times = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        fitted.fit(x, y, batch_size=32, epochs=1, verbose=0)
        fit_times.append(time.perf_counter() - start)
        tape_times.append(tape_epoch(looped, optimizer, x, y))
    steps = args.samples // 32
    print(f"fit epoch:       {min(fit_times):.3f} s ({1e3 * min(fit_times) / steps:.3f} ms/step)")
    print(f"tape-loop epoch: {min(tape_times):.3f} s ({1e3 * min(tape_times) / steps:.3f} "
          f"ms/step), {min(tape_times) / min(fit_times):.1f}x fit")


if __name__ == "__main__":
    main()
