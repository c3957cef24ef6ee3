"""Cost of one eager op call (Python -> Rust kernel -> Python Tensor), alone and
recorded on a GradientTape, and of the tape's backward per op.

    python benches/eager_dispatch.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import ferrax
from ferrax import ops


def per_call_us(fn, calls: int) -> float:
    fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    x = ops.convert_to_tensor(np.ones((32, 10), np.float32))
    w = ferrax.Variable(np.ones((32, 10), np.float32))

    def taped() -> None:
        with ferrax.GradientTape():
            ops.add(w, 1.0)

    def taped_with_backward() -> None:
        with ferrax.GradientTape() as tape:
            y = ops.add(w, 1.0)
        tape.gradient(y, w)

    rows = [("numpy add (32x10)", lambda: np.add(x.numpy(), 1.0), args.calls),
            ("ops.add eager (32x10)", lambda: ops.add(x, 1.0), args.calls),
            ("tape + 1 recorded op", taped, args.calls // 4),
            ("tape + 1 op + gradient", taped_with_backward, args.calls // 4)]
    for label, fn, calls in rows:
        print(f"{label + ':':28s} {per_call_us(fn, calls):6.2f} us")

if __name__ == "__main__":
    main()
