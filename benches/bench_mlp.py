"""ferrax against PyTorch on small dense networks (issue 2's benchmark).

Workloads, all on Fashion-MNIST (60,000 training and 10,000 test images, 28x28):

  W1  Flatten - Dense(128, relu) - Dense(10, softmax), Adam(1e-3), batch 32: seconds per epoch.
  W2  Flatten - Dense(512, relu) - Dense(512, relu) - Dense(10, softmax), Adam(1e-3), batch 128:
      seconds per epoch.
  W3  Conv2D(32, 3, relu) - MaxPooling2D(2) - Flatten - Dense(128, relu) - Dense(10, softmax),
      Adam(1e-3), batch 64: seconds per epoch.
  R1  LSTM(128) reading each image as 28 rows of 28 pixels - Dense(10, softmax), Adam(1e-3),
      batch 128: seconds per epoch (issue 6's figure; PyTorch runs nn.LSTM).
  W4  inference only, after one untimed epoch of W1: predict the 10,000 test images at batch
      1024 (seconds per pass), then 200 single images one at a time (milliseconds per image).

Each framework runs in its own subprocess (this script re-invoked with ``--worker``), so their
thread pools, allocators and peak memory do not mix; with ``--repeats`` the runs alternate
ferrax, torch, ferrax, torch, ... The parent loads the data once (with ferrax's loader) and hands
the same arrays to every worker in a temporary .npz file, so the PyTorch worker needs only torch
and numpy (it can run in a separate virtual environment: ``--torch-python``).

Usage:

  python benches/bench_mlp.py --torch-python /work/peers/torch-venv/bin/python --workload W1
  python benches/bench_mlp.py --workload W2 --epochs 5 --repeats 2 --threads 2

Figures to trust are the ratios from one run on one otherwise idle machine; absolute seconds
drift between runs and machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

MARKER = "BENCH_JSON "
WORKLOADS = {
    "W1": {"hidden": (128,), "batch": 32,
           "what": "784-128(relu)-10(softmax), Adam(1e-3), batch 32"},
    "W2": {"hidden": (512, 512), "batch": 128,
           "what": "784-512(relu)-512(relu)-10(softmax), Adam(1e-3), batch 128"},
    "W3": {"hidden": (128,), "batch": 64, "conv": True,
           "what": "Conv2D(32, 3, relu)-MaxPooling2D(2)-Flatten-128(relu)-10(softmax), "
                   "Adam(1e-3), batch 64"},
    "R1": {"hidden": (), "batch": 128, "rnn": 128,
           "what": "LSTM(128) over 28 rows of 28 pixels - 10(softmax), Adam(1e-3), batch 128"},
    "W4": {"hidden": (128,), "batch": 32,
           "what": "inference after one untimed W1 epoch: 10,000 test images at batch 1024, "
                   "and 200 single images"},
}
PREDICT_BATCH = 1024
SINGLE_IMAGES = 200
SINGLE_WARMUP = 10


# --- helpers shared by parent and workers ------------------------------------------------------

def default_threads():
    env = os.environ.get("FERRAX_NUM_THREADS")
    if env:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def peak_rss_mib():
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def load_arrays(path):
    # In place, so that the peak RSS holds one float32 copy of the images, not two.
    with np.load(path) as f:
        x_train = f["x_train"].astype(np.float32)
        x_test = f["x_test"].astype(np.float32)
        x_train /= 255.0
        x_test /= 255.0
        return x_train, f["y_train"].astype(np.int64), x_test, f["y_test"].astype(np.int64)


def emit(result):
    result["peak_rss_mib"] = peak_rss_mib()
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


# --- ferrax worker ---------------------------------------------------------------------------

def ferrax_worker(args):
    import ferrax as keras

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, x_test, y_test = load_arrays(args.data)
    spec = WORKLOADS[args.workload]

    if spec.get("conv"):
        x_train, x_test = x_train.reshape(-1, 28, 28, 1), x_test.reshape(-1, 28, 28, 1)
        layers = [keras.layers.Conv2D(32, 3, activation="relu", input_shape=(28, 28, 1)),
                  keras.layers.MaxPooling2D(2), keras.layers.Flatten()]
    elif spec.get("rnn"):
        x_train, x_test = x_train.reshape(-1, 28, 28), x_test.reshape(-1, 28, 28)
        layers = [keras.layers.Input(shape=(28, 28)), keras.layers.LSTM(spec["rnn"])]
    else:
        layers = [keras.layers.Flatten(input_shape=(28, 28))]
    layers += [keras.layers.Dense(n, activation="relu") for n in spec["hidden"]]
    layers.append(keras.layers.Dense(10, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def epoch():
        model.fit(x_train, y_train, batch_size=spec["batch"], epochs=1, verbose=0)

    def accuracy():
        probs = model.predict(x_test, batch_size=PREDICT_BATCH, verbose=0)
        return float(np.mean(np.argmax(probs, axis=1) == y_test))

    def predict_all():
        return model.predict(x_test, batch_size=PREDICT_BATCH, verbose=0)

    def predict_one(i):
        return model.predict(x_test[i:i + 1], batch_size=1, verbose=0)

    result = run_workload(args, epoch, accuracy, predict_all, predict_one)
    result.update(framework="ferrax", version=keras.__version__,
                  threads=keras._core.num_threads())
    emit(result)


# --- PyTorch worker --------------------------------------------------------------------------

def torch_worker(args):
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_np, y_np, xt_np, yt_np = load_arrays(args.data)
    spec = WORKLOADS[args.workload]
    # Prepared once: float32 tensors, flattened (what Flatten does), int64 labels.
    shape = (1, 28, 28) if spec.get("conv") else (28, 28) if spec.get("rnn") else (-1,)
    x_train = torch.from_numpy(x_np.reshape(len(x_np), *shape))
    y_train = torch.from_numpy(y_np)
    x_test = torch.from_numpy(xt_np.reshape(len(xt_np), *shape))
    y_test = torch.from_numpy(yt_np)

    class LastStep(nn.Module):
        """nn.LSTM over (batch, rows, pixels), keeping the last step's output."""

        def __init__(self, units):
            super().__init__()
            self.lstm = nn.LSTM(28, units, batch_first=True)

        def forward(self, x):
            return self.lstm(x)[0][:, -1]

    mods, width = [], 784
    if spec.get("rnn"):
        mods, width = [LastStep(spec["rnn"])], spec["rnn"]
    elif spec.get("conv"):
        mods = [nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
        width = 32 * 13 * 13
    for n in spec["hidden"]:
        mods += [nn.Linear(width, n), nn.ReLU()]
        width = n
    mods.append(nn.Linear(width, 10))  # logits; softmax is folded into the loss
    model = nn.Sequential(*mods)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    batch, n = spec["batch"], len(x_train)

    def epoch():
        model.train()
        perm = torch.randperm(n)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    def predict_all():
        model.eval()
        with torch.inference_mode():
            return torch.cat([torch.softmax(model(x_test[i:i + PREDICT_BATCH]), dim=1)
                              for i in range(0, len(x_test), PREDICT_BATCH)])

    def accuracy():
        return float((predict_all().argmax(dim=1) == y_test).float().mean())

    def predict_one(i):
        model.eval()
        with torch.inference_mode():
            return torch.softmax(model(x_test[i:i + 1]), dim=1).numpy()

    result = run_workload(args, epoch, accuracy, predict_all, predict_one)
    result.update(framework="torch", version=torch.__version__, threads=torch.get_num_threads())
    emit(result)


# --- the timing, the same for both -----------------------------------------------------------

def run_workload(args, epoch, accuracy, predict_all, predict_one):
    if args.workload in ("W1", "W2", "W3", "R1"):
        epoch()  # warm-up: allocations, thread pools, first-call costs
        times = []
        for _ in range(args.epochs):
            t0 = time.perf_counter()
            epoch()
            times.append(time.perf_counter() - t0)
        return {"epoch_s": times, "accuracy": accuracy()}

    # W4: one untimed training epoch, then inference only.
    epoch()
    predict_all()  # warm-up
    batch_times = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        predict_all()
        batch_times.append(time.perf_counter() - t0)
    for i in range(SINGLE_WARMUP):
        predict_one(i)
    single = []
    for i in range(SINGLE_IMAGES):
        t0 = time.perf_counter()
        predict_one(i)
        single.append(time.perf_counter() - t0)
    return {"predict_s": batch_times, "single_ms": [s * 1e3 for s in single],
            "accuracy": accuracy()}


# --- parent ----------------------------------------------------------------------------------

def torch_importable_here():
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def prepare_data(path):
    """Fashion-MNIST through ferrax's loader, or random data of the same shape if it is absent."""
    try:
        from ferrax.datasets import fashion_mnist
        (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
        source = "Fashion-MNIST (ferrax.datasets.fashion_mnist.load_data)"
    except Exception as exc:  # missing files, no network, ferrax not importable here
        print(f"NOTE: Fashion-MNIST could not be loaded ({type(exc).__name__}: {exc}); "
              "using RANDOM data of the same shape: timings are valid, accuracies are not.")
        rng = np.random.default_rng(0)
        x_train = rng.integers(0, 256, (60_000, 28, 28), dtype=np.uint8)
        y_train = rng.integers(0, 10, 60_000).astype(np.uint8)
        x_test = rng.integers(0, 256, (10_000, 28, 28), dtype=np.uint8)
        y_test = rng.integers(0, 10, 10_000).astype(np.uint8)
        source = "RANDOM data (Fashion-MNIST missing)"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return source


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_worker(python, framework, args, data_path):
    cmd = [python, os.path.abspath(__file__), "--worker", framework,
           "--workload", args.workload, "--epochs", str(args.epochs),
           "--threads", str(args.threads), "--seed", str(args.seed), "--data", data_path]
    env = dict(os.environ)
    if framework == "ferrax":
        env["FERRAX_NUM_THREADS"] = str(args.threads)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{framework} worker failed (exit {proc.returncode}): {' '.join(cmd)}")
    return json.loads(lines[-1][len(MARKER):])


def summarise(runs, key):
    """Median over every timed sample of every run of one framework."""
    return statistics.median(v for r in runs for v in r[key])


def print_table(args, results, frameworks):
    if args.workload == "W4":
        header = (f"{'framework':<10} {'predict 10k s':>13} {'ratio':>7} {'single ms/img':>13} "
                  f"{'ratio':>7} {'test acc':>8} {'peak RSS MiB':>12}")
        keys = ("predict_s", "single_ms")
    else:
        header = (f"{'framework':<10} {'s/epoch':>9} {'ratio':>7} {'test acc':>8} "
                  f"{'peak RSS MiB':>12}")
        keys = ("epoch_s",)
    base = {k: summarise(results["ferrax"], k) for k in keys}
    print(header)
    print("-" * len(header))
    for fw in frameworks:
        runs = results[fw]
        acc = statistics.mean(r["accuracy"] for r in runs)
        rss = max(r["peak_rss_mib"] for r in runs)
        cells = []
        for k in keys:
            med = summarise(runs, k)
            width = 13 if args.workload == "W4" else 9
            cells.append(f"{med:>{width}.4f} {med / base[k]:>7.2f}")
        print(f"{fw:<10} {' '.join(cells)} {acc:>8.4f} {rss:>12.1f}")
    print("ratio = time / ferrax time (above 1: ferrax is faster). "
          "Medians over all timed samples of all repeats"
          + (" (single: 200 images one at a time)." if args.workload == "W4" else "."))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="W1")
    p.add_argument("--epochs", type=int, default=3,
                   help="timed epochs after one warm-up epoch (W4: timed batch-predict passes)")
    p.add_argument("--repeats", type=int, default=1,
                   help="worker runs per framework, alternating ferrax and torch")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both frameworks (default: FERRAX_NUM_THREADS or all cores)")
    p.add_argument("--torch-python", default=None,
                   help="python of an environment with torch (default: this one, if it has torch)")
    p.add_argument("--no-torch", action="store_true", help="measure ferrax only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", choices=("ferrax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = default_threads()
    if args.epochs < 1 or args.repeats < 1 or args.threads < 1:
        p.error("--epochs, --repeats and --threads must be at least 1")

    if args.worker == "ferrax":
        return ferrax_worker(args)
    if args.worker == "torch":
        return torch_worker(args)

    torch_python = None
    if not args.no_torch:
        if args.torch_python:
            torch_python = args.torch_python
        elif torch_importable_here():
            torch_python = sys.executable
    frameworks = ["ferrax"] + (["torch"] if torch_python else [])

    tmp = tempfile.mkdtemp(prefix="ferrax-bench-")
    try:
        data_path = os.path.join(tmp, "data.npz")
        source = prepare_data(data_path)
        print(f"workload {args.workload}: {WORKLOADS[args.workload]['what']}")
        print(f"data: {source}")
        print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs; threads used: "
              f"{args.threads}; python {platform.python_version()}")
        timed = "batch-predict passes" if args.workload == "W4" else "epochs"
        print(f"{args.epochs} timed {timed} per run after one warm-up, {args.repeats} run(s) "
              f"per framework; frameworks: {', '.join(frameworks)}"
              + ("" if torch_python else " (no torch: pass --torch-python)"))
        load = os.getloadavg()
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*load))
        if load[0] > (os.cpu_count() or 1) - 0.5:
            print(f"WARNING: the 1-minute load average ({load[0]:.2f}) is about the number of "
                  f"CPUs ({os.cpu_count()}) or above: other processes compete for them, and "
                  "multithreaded timings (PyTorch's OpenMP pool above all) degrade badly; "
                  "treat the figures as indicative only, or compare at --threads 1.")
        results = {fw: [] for fw in frameworks}
        t_start = time.perf_counter()
        for _ in range(args.repeats):
            for fw in frameworks:
                python = sys.executable if fw == "ferrax" else torch_python
                r = run_worker(python, fw, args, data_path)
                results[fw].append(r)
                if args.workload == "W4":
                    detail = (f"predict {[f'{t:.4f}' for t in r['predict_s']]} s, single "
                              f"median {statistics.median(r['single_ms']):.3f} ms")
                else:
                    detail = f"epochs {[f'{t:.3f}' for t in r['epoch_s']]} s"
                print(f"  run: {fw} {r['version']} ({r['threads']} threads): {detail}, "
                      f"acc {r['accuracy']:.4f}, peak RSS {r['peak_rss_mib']:.1f} MiB")
        print("load average after:  {:.2f} {:.2f} {:.2f}  (wall {:.0f} s)".format(
            *os.getloadavg(), time.perf_counter() - t_start))
        print()
        print_table(args, results, frameworks)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
