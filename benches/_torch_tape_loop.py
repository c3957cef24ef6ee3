"""PyTorch's plain loop over W1 (784-128-10, batch 32), for benches/tape_loop.py:
`zero_grad`, `backward`, `step` per batch, batches in order, Adam(1e-3, eps=1e-7)
(Keras's epsilon). Run with a Python that has torch; prints the best epoch's seconds.

    python benches/_torch_tape_loop.py SAMPLES ROUNDS THREADS
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from torch import nn


def main() -> None:
    samples, rounds, threads = (int(a) for a in sys.argv[1:4])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    r = np.random.default_rng(0)
    x = torch.from_numpy(r.uniform(size=(samples, 784)).astype(np.float32))
    y = torch.from_numpy(r.integers(0, 10, size=samples))
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(0, samples, 32):
            optimizer.zero_grad()
            loss = loss_fn(model(x[i:i + 32]), y[i:i + 32])
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"epoch_s": min(times), "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
