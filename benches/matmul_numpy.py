"""NumPy (OpenBLAS) GEMM at the shapes of rust/core/examples/gemm_shapes.rs, to compare with.

    python benches/matmul_numpy.py [NAME-FILTER]   (OPENBLAS_NUM_THREADS sets threads)
"""

import sys
import time

import numpy as np

SHAPES = [  # name, m, k, n, transpose a, transpose b
    ("W1 fwd 32x784x128", 32, 784, 128, False, False),
    ("W1 dW 784x32x128 (At)", 784, 32, 128, True, False),
    ("W1 dX 32x128x784 (Bt)", 32, 128, 784, False, True),
    ("W2 fwd 128x784x512", 128, 784, 512, False, False),
    ("W2 fwd 128x512x512", 128, 512, 512, False, False),
    ("W2 dW 512x128x512 (At)", 512, 128, 512, True, False),
    ("W3 fwd 64x5408x128", 64, 5408, 128, False, False),
    ("W3 dW 5408x64x128 (At)", 5408, 64, 128, True, False),
    ("W3 dX 64x128x5408 (Bt)", 64, 128, 5408, False, True),
    ("W4 fwd 1024x784x128", 1024, 784, 128, False, False),
    ("1024^3", 1024, 1024, 1024, False, False),
]

name_filter = sys.argv[1] if len(sys.argv) > 1 else ""
for name, m, k, n, ta, tb in SHAPES:
    if name_filter not in name:
        continue
    a = np.full((k, m) if ta else (m, k), 0.5, np.float32)
    b = np.full((n, k) if tb else (k, n), 0.25, np.float32)
    a_op, b_op = (a.T if ta else a), (b.T if tb else b)
    c = np.empty((m, n), np.float32)
    flops = 2.0 * m * n * k
    reps = int(min(max(5e10 / flops, 3), 200_000))  # about half a second
    np.matmul(a_op, b_op, out=c)
    t = time.perf_counter()
    for _ in range(reps):
        np.matmul(a_op, b_op, out=c)
    s = (time.perf_counter() - t) / reps
    print(f"{name:28} numpy {s * 1e6:9.1f} us {flops / s / 1e9:6.1f} GFLOP/s")
