"""A GradientTape loop over W1 (784-128-10, batch 32) and a train_step override run
by fit, against fit's fused loop on the same model and data, per epoch, in one run.
The train_step (Keras's customizing-fit pattern: compute_loss, and a Mean of the loss
returned as the logs) is compared with a tape loop doing the same work ("tape loop +
loss mean"), as well as with the plain loop PyTorch's is measured against.

    python benches/tape_loop.py [--samples 20000] [--rounds 3] [--torch-python PATH]

With --torch-python (a Python that has torch), PyTorch's plain loop on the same model,
data and batch order runs too (benches/_torch_tape_loop.py), alternating with ferrax's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import numpy as np

import ferrax
from ferrax import layers


def model(cls: type = ferrax.Model) -> ferrax.Model:
    ferrax.utils.set_random_seed(0)
    inputs = ferrax.Input((784,))
    return cls(inputs, layers.Dense(10)(layers.Dense(128, activation="relu")(inputs)))


class StepModel(ferrax.Model):
    """Keras's customizing-fit pattern: the step written by hand, run by fit."""

    def train_step(self, data):  # type: ignore[no-untyped-def]
        x, y = data
        with ferrax.GradientTape() as tape:
            loss = self.compute_loss(y=y, y_pred=self(x, training=True))
        self.optimizer.apply(tape.gradient(loss, self.trainable_variables),
                             self.trainable_variables)
        self._loss_tracker.update_state(loss)
        return {"loss": self._loss_tracker.result()}


LOSS = ferrax.losses.SparseCategoricalCrossentropy(from_logits=True)


def tape_epoch(m: ferrax.Model, optimizer: object, x: np.ndarray, y: np.ndarray,
               tracker: ferrax.metrics.Mean | None = None) -> float:
    """One epoch of the plain loop; with `tracker`, each step's loss is tracked too, and
    the mean read, as train_step's logs are."""
    start = time.perf_counter()
    variables = m.trainable_variables
    for i in range(0, len(x), 32):
        with ferrax.GradientTape() as tape:
            logits = m(x[i:i + 32], training=True)
            loss = LOSS(y[i:i + 32], logits)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        if tracker is not None:
            tracker.update_state(loss)
            float(tracker.result())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--torch-python", default=None)
    args = parser.parse_args()
    r = np.random.default_rng(0)
    x = r.uniform(size=(args.samples, 784)).astype(np.float32)
    y = r.integers(0, 10, size=args.samples)
    fitted, stepped = model(), model(StepModel)
    for m in (fitted, stepped):
        m.compile(optimizer="adam", loss=LOSS)
    looped, optimizer = model(), ferrax.optimizers.Adam()
    tracked, tracked_optimizer = model(), ferrax.optimizers.Adam()
    fit_times, tape_times, tracked_times, step_times, torch_times = [], [], [], [], []
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_torch_tape_loop.py")
    threads = int(os.environ.get("FERRAX_NUM_THREADS", os.cpu_count() or 1))
    torch_version = ""
    for _ in range(args.rounds):
        if args.torch_python:
            # (two epochs a process: the second, warm, is the one that counts)
            out = subprocess.run([args.torch_python, worker, str(args.samples), "2",
                                  str(threads)], check=True, capture_output=True, text=True)
            result = json.loads(out.stdout)
            torch_times.append(result["epoch_s"])
            torch_version = f"torch {result['torch']}, {result['threads']} threads"
        start = time.perf_counter()
        fitted.fit(x, y, batch_size=32, epochs=1, verbose=0)
        fit_times.append(time.perf_counter() - start)
        tape_times.append(tape_epoch(looped, optimizer, x, y))
        tracked_times.append(tape_epoch(tracked, tracked_optimizer, x, y,
                                        ferrax.metrics.Mean()))
        start = time.perf_counter()
        # (the tape loop's order: batch after batch)
        stepped.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
        step_times.append(time.perf_counter() - start)
    steps = args.samples // 32
    print(f"fit epoch:       {min(fit_times):.3f} s ({1e3 * min(fit_times) / steps:.3f} ms/step)")
    print(f"tape-loop epoch: {min(tape_times):.3f} s ({1e3 * min(tape_times) / steps:.3f} "
          f"ms/step), {min(tape_times) / min(fit_times):.1f}x fit")
    print(f"tape loop + loss mean: {min(tracked_times):.3f} s "
          f"({1e3 * min(tracked_times) / steps:.3f} ms/step)")
    print(f"train_step fit:  {min(step_times):.3f} s ({1e3 * min(step_times) / steps:.3f} "
          f"ms/step), {min(step_times) / min(tracked_times):.2f}x the tape loop + loss mean, "
          f"{min(step_times) / min(tape_times):.2f}x the plain tape loop")
    if torch_times:
        print(f"torch loop:      {min(torch_times):.3f} s ({1e3 * min(torch_times) / steps:.3f} "
              f"ms/step; {torch_version}): the tape loop is "
              f"{min(torch_times) / min(tape_times):.2f}x as fast")


if __name__ == "__main__":
    main()
