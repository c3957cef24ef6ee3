"""ferrax side by side with PyTorch, Keras and scikit-learn on the workloads of issue 4.

Workloads, on Fashion-MNIST (60,000 training and 10,000 test images, 28x28), all with
Adam(1e-3) and sparse categorical cross-entropy:

  W1  Flatten - Dense(128, relu) - Dense(10, softmax), batch 32: seconds per epoch.
  W2  Flatten - Dense(512, relu) - Dense(512, relu) - Dense(10, softmax), batch 128.
  W3  Conv2D(32, 3, relu) - MaxPooling2D(2) - Flatten - Dense(128, relu) - Dense(10, softmax),
      batch 64.
  R1  LSTM(128) reading each image as 28 rows of 28 pixels - Dense(10, softmax), batch 128.
  W4  inference only, after one untimed epoch of W1: predict the 10,000 test images at batch
      1024 (seconds per pass), then 200 single images one at a time (milliseconds per image).

Frameworks (each peer is measured only where it is installed, never depended on):

  ferrax   ``import ferrax as keras``; ``model.fit(x, y, batch_size, epochs=1, verbose=0)`` per
           timed epoch; ``model.predict`` for W4. Threads: ``FERRAX_NUM_THREADS``.
  torch    a plain training loop: tensors prepared once, a ``torch.randperm`` order per epoch,
           ``zero_grad / backward / step``, ``nn.CrossEntropyLoss`` on logits,
           ``Adam(lr=1e-3, eps=1e-7)`` (Keras's epsilon). Threads: ``torch.set_num_threads``.
  keras    Keras 3 on the backend ``KERAS_BACKEND`` names, else the first of jax, tensorflow,
           torch importable in its environment; Adam(1e-3) with Keras's own epsilon (1e-7);
           ``model.fit(..., epochs=1, verbose=0)`` per timed epoch, ``model.predict`` at batch
           1024 and ``model.predict_on_batch`` for single images (``predict`` adds milliseconds
           of per-call setup that ``predict_on_batch`` skips: this favours Keras). Threads: the
           worker is pinned to the first N CPUs (``sched_setaffinity``, before the backend
           starts: XLA and TensorFlow size their pools from the CPUs the process may use);
           at 1 thread jax also gets ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
           intra_op_parallelism_threads=1``, tensorflow ``tf.config.threading`` intra/inter = N,
           torch ``torch.set_num_threads(N)``.
  sklearn  W1 only: ``MLPClassifier(hidden_layer_sizes=(128,), solver="adam",
           learning_rate_init=1e-3, batch_size=32, epsilon=1e-7, alpha=0)`` (alpha=0: no L2
           penalty, as in the other frameworks). One epoch is one ``partial_fit`` call: one pass
           over the training data in a fresh shuffled order (``shuffle=True``). Threads: the
           BLAS it calls through numpy (``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` /
           ``MKL_NUM_THREADS`` = N).

How it measures: each framework runs in its own subprocess (this script re-invoked with
``--worker``, printing one JSON line), so thread pools, allocators and peak memory do not mix;
the runs alternate between frameworks (ferrax, torch, keras, sklearn, ferrax, ...) ``--repeats``
times per workload. The parent loads the data once with ferrax's loader and hands the same uint8
arrays to every worker in a temporary .npz, so a peer's environment needs only its framework and
numpy. Every worker turns them into float32 / 255, trains one untimed warm-up epoch (compilation,
allocation, thread start-up), then ``--epochs`` timed ones. The table shows: the median over all
timed epochs of all runs; the ratio peer time / ferrax time (above 1: ferrax is faster); test
accuracy after the timed epochs (1 + ``--epochs`` epochs in all; mean over runs); peak RSS
(``ru_maxrss``) of the worker, which includes the float32 copy of the data (about 215 MiB for the
full set) and the framework's libraries.

Usage (from the repository root, with the Python that has ferrax):

  python benches/compare.py --torch-python /work/peers/torch-venv/bin/python \\
      --keras-python /work/peers/keras-venv/bin/python --repeats 2
  python benches/compare.py --workloads W1,W4 --peers torch --threads 1
  python benches/compare.py --workloads W1 --epochs 1 --repeats 1 --limit 2000   # smoke run

Trust ratios from one run on one otherwise idle machine; absolute seconds drift between runs
and machines.
"""

from __future__ import annotations

import argparse
import importlib.util
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
    "W1F": {"hidden": (128,), "batch": 32, "functional": True,
            "what": "W1 spelled with the functional API: Model(Input, Dense(Dense(Flatten)))"},
    "S1": {"hidden": (128,), "batch": 32, "subclassed": True,
           "what": "W1 as a keras.Model subclass: call() = Dense(10, softmax)(ops.relu("
                   "Dense(128)(x)))"},
    "C1": {"hidden": (128,), "batch": 32, "custom_dense": True,
           "what": "W1 with its hidden layer a custom Layer: ops.relu(ops.matmul(x, w) + b) "
                   "with add_weight"},
    "G1": {"hidden": (), "batch": 128, "residual": 16,
           "what": "residual CNN: Conv2D(16, 3, relu)-MaxPooling2D(2), two blocks of "
                   "[Conv2D(16, 3, same)-BN-relu-Conv2D(16, 3, same)-BN] + skip (Add), relu; "
                   "GlobalAveragePooling2D-10(softmax), Adam(1e-3), batch 128"},
    "M2": {"hidden": (), "batch": 32, "two_inputs": True,
           "what": "two inputs: the image through Flatten-128(relu) and its 28 row means "
                   "through 32(relu), concatenated - 10(softmax), Adam(1e-3), batch 32"},
    "W4": {"hidden": (128,), "batch": 32, "inference": True,
           "what": "inference after one untimed W1 epoch: 10,000 test images at batch 1024, "
                   "and 200 single images"},
}
PEERS = ("torch", "keras", "sklearn")
# What each peer's environment must be able to import.
PEER_MODULES = {"torch": ("torch", "numpy"), "keras": ("keras", "numpy"),
                "sklearn": ("sklearn", "numpy")}
KERAS_BACKENDS = ("jax", "tensorflow", "torch")
SKLEARN_WORKLOADS = ("W1",)
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


def load_arrays(path, shape):
    """Images as float32 / 255 in per-sample `shape`, labels as int64."""
    # In place, so that the peak RSS holds one float32 copy of the images, not two.
    with np.load(path) as f:
        x_train = f["x_train"].astype(np.float32)
        x_test = f["x_test"].astype(np.float32)
        x_train /= 255.0
        x_test /= 255.0
        return (x_train.reshape(len(x_train), *shape), f["y_train"].astype(np.int64),
                x_test.reshape(len(x_test), *shape), f["y_test"].astype(np.int64))


def input_shape(spec, channels_first=False):
    """Per-sample shape each framework is fed: images, channel images or rows of pixels."""
    if spec.get("conv") or spec.get("residual"):
        return (1, 28, 28) if channels_first else (28, 28, 1)
    return (28, 28)


def model_inputs(spec, x):
    """What the model is fed: the images, or for M2 the images and their row means."""
    return [x, x.mean(axis=2)] if spec.get("two_inputs") else x


def sample(x, i):
    """Sample i alone (of each input)."""
    return [a[i:i + 1] for a in x] if isinstance(x, list) else x[i:i + 1]


def emit(result):
    result["peak_rss_mib"] = peak_rss_mib()
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


# --- workers: each builds the workload's model and returns its hooks ---------------------------
#
# A worker returns (version, threads, epoch, predict_all, predict_one): epoch() trains one
# epoch, predict_all() gives the test set's class probabilities (or scores), predict_one(i)
# those of test image i alone.

def ferrax_worker(args, spec):
    import ferrax as keras

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, x_test, _ = load_arrays(args.data, input_shape(spec))
    x_train, x_test = model_inputs(spec, x_train), model_inputs(spec, x_test)
    model = keras_style_model(keras, spec)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def epoch():
        model.fit(x_train, y_train, batch_size=spec["batch"], epochs=1, verbose=0)

    def predict_all():
        return model.predict(x_test, batch_size=PREDICT_BATCH, verbose=0)

    def predict_one(i):
        return model.predict(sample(x_test, i), batch_size=1, verbose=0)

    return keras.__version__, keras._core.num_threads(), epoch, predict_all, predict_one


def keras_style_model(keras, spec):
    """The workload as a Sequential (or functional) model of ferrax or Keras 3 (same API)."""
    layers = keras.layers
    if spec.get("residual"):
        return residual_model(keras, spec["residual"])
    if spec.get("subclassed") or spec.get("custom_dense"):
        return custom_model(keras, spec)
    if spec.get("two_inputs"):
        image, rows = keras.Input(shape=(28, 28)), keras.Input(shape=(28,))
        a = layers.Dense(128, activation="relu")(layers.Flatten()(image))
        b = layers.Dense(32, activation="relu")(rows)
        out = layers.Dense(10, activation="softmax")(layers.concatenate([a, b]))
        return keras.Model([image, rows], out)
    if spec.get("conv"):
        stack = [keras.Input(shape=(28, 28, 1)), layers.Conv2D(32, 3, activation="relu"),
                 layers.MaxPooling2D(2), layers.Flatten()]
    elif spec.get("rnn"):
        stack = [keras.Input(shape=(28, 28)), layers.LSTM(spec["rnn"])]
    else:
        stack = [keras.Input(shape=(28, 28)), layers.Flatten()]
    stack += [layers.Dense(n, activation="relu") for n in spec["hidden"]]
    stack.append(layers.Dense(10, activation="softmax"))
    if spec.get("functional"):
        x = stack[0]
        for layer in stack[1:]:
            x = layer(x)
        return keras.Model(stack[0], x)
    return keras.Sequential(stack)


def custom_model(keras, spec):
    """S1 and C1: W1 written with keras.ops, as a subclassed model or a custom layer."""
    layers, ops = keras.layers, keras.ops

    class LinearRelu(layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                     initializer="glorot_uniform")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros")

        def call(self, x):
            return ops.relu(ops.matmul(x, self.w) + self.b)

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.flatten = layers.Flatten()
            self.fc1 = layers.Dense(spec["hidden"][0])
            self.fc2 = layers.Dense(10, activation="softmax")

        def call(self, x):
            return self.fc2(ops.relu(self.fc1(self.flatten(x))))

    if spec.get("subclassed"):
        return Net()
    return keras.Sequential([keras.Input(shape=(28, 28)), layers.Flatten(),
                             LinearRelu(spec["hidden"][0]),
                             layers.Dense(10, activation="softmax")])


def residual_model(keras, filters):
    """G1: a small ResNet-style network with the functional API."""
    layers = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(filters, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    for _ in range(2):
        r = layers.Conv2D(filters, 3, padding="same")(x)
        r = layers.Activation("relu")(layers.BatchNormalization()(r))
        r = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same")(r))
        x = layers.Activation("relu")(layers.add([x, r]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


def keras_worker(args, spec):
    backend = os.environ.get("KERAS_BACKEND", "")
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    elif backend == "torch":
        import torch

        torch.set_num_threads(args.threads)
    import keras

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, x_test, _ = load_arrays(args.data, input_shape(spec))
    x_train, x_test = model_inputs(spec, x_train), model_inputs(spec, x_test)
    model = keras_style_model(keras, spec)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def epoch():
        model.fit(x_train, y_train, batch_size=spec["batch"], epochs=1, verbose=0)

    def predict_all():
        return model.predict(x_test, batch_size=PREDICT_BATCH, verbose=0)

    def predict_one(i):
        return model.predict_on_batch(sample(x_test, i))

    version = f"{keras.__version__} ({keras.backend.backend()})"
    return version, usable_cpus(), epoch, predict_all, predict_one


def torch_worker(args, spec):
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    shape = input_shape(spec, channels_first=True)
    x_np, y_np, xt_np, _ = load_arrays(args.data, shape)
    # every input a tensor; the model is called on the list
    x_train = [torch.from_numpy(a) for a in as_list(model_inputs(spec, x_np))]
    x_test = [torch.from_numpy(a) for a in as_list(model_inputs(spec, xt_np))]
    y_train = torch.from_numpy(y_np)
    model = torch_model(nn, spec)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    batch, n = spec["batch"], len(y_train)

    def epoch():
        model.train()
        perm = torch.randperm(n)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            loss = loss_fn(model(*[a[idx] for a in x_train]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    def predict_all():
        model.eval()
        with torch.inference_mode():
            return torch.cat([torch.softmax(model(*[a[i:i + PREDICT_BATCH] for a in x_test]),
                                            dim=1)
                              for i in range(0, len(x_test[0]), PREDICT_BATCH)]).numpy()

    def predict_one(i):
        model.eval()
        with torch.inference_mode():
            return torch.softmax(model(*[a[i:i + 1] for a in x_test]), dim=1).numpy()

    return torch.__version__, torch.get_num_threads(), epoch, predict_all, predict_one


def as_list(x):
    return x if isinstance(x, list) else [x]


def torch_model(nn, spec):
    """The workload in PyTorch (default init); logits out: softmax is folded into the loss."""
    import torch

    class TwoInputs(nn.Module):
        """M2: the image and its row means, each through a layer, then joined."""

        def __init__(self):
            super().__init__()
            self.image = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU())
            self.rows = nn.Sequential(nn.Linear(28, 32), nn.ReLU())
            self.head = nn.Linear(160, 10)

        def forward(self, image, rows):
            return self.head(torch.cat([self.image(image), self.rows(rows)], dim=1))

    class LastStep(nn.Module):
        """nn.LSTM over (batch, rows, pixels), keeping the last step's output."""

        def __init__(self, units):
            super().__init__()
            self.lstm = nn.LSTM(28, units, batch_first=True)

        def forward(self, x):
            return self.lstm(x)[0][:, -1]

    class Residual(nn.Module):
        """G1, as residual_model builds it for Keras (BatchNorm's momentum and epsilon as
        Keras's defaults)."""

        def __init__(self, filters):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, filters, 3), nn.ReLU(), nn.MaxPool2d(2))

            def block():
                return nn.Sequential(
                    nn.Conv2d(filters, filters, 3, padding=1),
                    nn.BatchNorm2d(filters, eps=1e-3, momentum=0.01), nn.ReLU(),
                    nn.Conv2d(filters, filters, 3, padding=1),
                    nn.BatchNorm2d(filters, eps=1e-3, momentum=0.01))

            self.blocks = nn.ModuleList([block(), block()])
            self.head = nn.Linear(filters, 10)

        def forward(self, x):
            x = self.stem(x)
            for b in self.blocks:
                x = nn.functional.relu(x + b(x))
            return self.head(x.mean(dim=(2, 3)))

    if spec.get("residual"):
        return Residual(spec["residual"])
    if spec.get("two_inputs"):
        return TwoInputs()
    mods, width = [nn.Flatten()], 784
    if spec.get("rnn"):
        mods, width = [LastStep(spec["rnn"])], spec["rnn"]
    elif spec.get("conv"):
        mods = [nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
        width = 32 * 13 * 13
    for n in spec["hidden"]:
        mods += [nn.Linear(width, n), nn.ReLU()]
        width = n
    mods.append(nn.Linear(width, 10))
    return nn.Sequential(*mods)


def sklearn_worker(args, spec):
    import sklearn
    from sklearn.neural_network import MLPClassifier

    x_train, y_train, x_test, _ = load_arrays(args.data, (784,))
    clf = MLPClassifier(hidden_layer_sizes=spec["hidden"], solver="adam", learning_rate_init=1e-3,
                        batch_size=spec["batch"], epsilon=1e-7, alpha=0.0, shuffle=True,
                        random_state=args.seed)
    classes = np.arange(10)

    def epoch():
        clf.partial_fit(x_train, y_train, classes=classes)

    def predict_all():
        return clf.predict_proba(x_test)

    def predict_one(i):
        return clf.predict_proba(x_test[i:i + 1])

    return sklearn.__version__, args.threads, epoch, predict_all, predict_one


WORKERS = {"ferrax": ferrax_worker, "torch": torch_worker, "keras": keras_worker,
           "sklearn": sklearn_worker}


def usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pin_to_threads(n):
    """Let this process run on its first `n` CPUs only (before a backend sizes its pools)."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if n < len(cpus):
        os.sched_setaffinity(0, cpus[:n])


def run_worker_process(args):
    if args.worker == "keras":
        pin_to_threads(args.threads)
    spec = WORKLOADS[args.workload]
    version, threads, epoch, predict_all, predict_one = WORKERS[args.worker](args, spec)
    with np.load(args.data) as f:
        y_test = f["y_test"].astype(np.int64)
    result = time_workload(args, spec, epoch, predict_all, lambda i: predict_one(i % len(y_test)))
    result["accuracy"] = float(np.mean(np.argmax(predict_all(), axis=1) == y_test))
    result.update(framework=args.worker, version=version, threads=threads)
    emit(result)


# --- the timing, the same for every framework --------------------------------------------------

def timed(fn, times):
    """Seconds of each of `times` calls of fn()."""
    out = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def time_workload(args, spec, epoch, predict_all, predict_one):
    epoch()  # warm-up (W4: the untimed training epoch): compilation, allocations, thread pools
    if not spec.get("inference"):
        return {"epoch_s": timed(epoch, args.epochs)}
    predict_all()  # warm-up
    batch_times = timed(predict_all, args.epochs)
    for i in range(SINGLE_WARMUP):
        predict_one(i)
    single_ms = []
    for i in range(SINGLE_IMAGES):
        t0 = time.perf_counter()
        predict_one(i)
        single_ms.append((time.perf_counter() - t0) * 1e3)
    return {"predict_s": batch_times, "single_ms": single_ms}


# --- parent: find the peers ---------------------------------------------------------------------

def can_import(python, modules):
    """Whether `python` exists and finds every module (without importing them: that is slow)."""
    if python == sys.executable:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    code = ("import importlib.util, sys; "
            "sys.exit(0 if all(importlib.util.find_spec(m) for m in sys.argv[1:]) else 1)")
    try:
        return subprocess.run([python, "-c", code, *modules], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def keras_backend(python):
    """KERAS_BACKEND if set, else the first backend installed beside keras."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    return next((b for b in KERAS_BACKENDS if can_import(python, (b,))), None)


def find_peers(args):
    """{peer: python} for the requested peers that import; a one-line note for the others."""
    found = {}
    for peer in args.peers:
        given = getattr(args, f"{peer}_python")
        python = given or sys.executable
        if not can_import(python, PEER_MODULES[peer]):
            where = given or f"this interpreter ({sys.executable})"
            print(f"NOTE: skipping {peer}: {'/'.join(PEER_MODULES[peer])} not importable in "
                  f"{where}; pass --{peer}-python")
            continue
        if peer == "keras":
            args.keras_backend = keras_backend(python)
            if args.keras_backend is None:
                print(f"NOTE: skipping keras: no backend ({', '.join(KERAS_BACKENDS)}) "
                      f"importable in {python}")
                continue
        found[peer] = python
    return found


# --- parent: data, runs and the table ----------------------------------------------------------

def prepare_data(path, limit):
    """Fashion-MNIST through ferrax's loader (or random data of the same shape if it is
    absent), cut to the first `limit` training and test samples if given."""
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
    if limit:
        x_train, y_train, x_test, y_test = (a[:limit] for a in (x_train, y_train, x_test, y_test))
        source += f", first {len(x_train)} training and {len(x_test)} test samples (--limit)"
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


def worker_env(framework, args):
    """The environment that sets a worker's threads (see the module docstring)."""
    env = dict(os.environ)
    n = str(args.threads)
    env.update(FERRAX_NUM_THREADS=n, OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n,
               MKL_NUM_THREADS=n)
    if framework == "keras":
        env["KERAS_BACKEND"] = args.keras_backend
        if args.keras_backend == "jax" and args.threads == 1:
            flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
    return env


def run_worker(python, framework, workload, args, data_path):
    """One worker run; its result, or None (with its output shown) if it failed."""
    cmd = [python, os.path.abspath(__file__), "--worker", framework,
           "--workloads", workload, "--epochs", str(args.epochs),
           "--threads", str(args.threads), "--seed", str(args.seed), "--data", data_path]
    proc = subprocess.run(cmd, env=worker_env(framework, args), capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        print(f"  FAILED: {framework} on {workload} (exit {proc.returncode}): {' '.join(cmd)}\n    "
              + "\n    ".join(tail))
        return None
    return json.loads(lines[-1][len(MARKER):])


def describe_run(r):
    if "predict_s" in r:
        detail = (f"predict {[f'{t:.4f}' for t in r['predict_s']]} s, single median "
                  f"{statistics.median(r['single_ms']):.3f} ms")
    else:
        detail = f"epochs {[f'{t:.3f}' for t in r['epoch_s']]} s"
    return (f"  run: {r['framework']} {r['version']} ({r['threads']} threads): {detail}, "
            f"acc {r['accuracy']:.4f}, peak RSS {r['peak_rss_mib']:.1f} MiB")


def frameworks_for(workload, peers):
    return ["ferrax"] + [p for p in peers
                         if p != "sklearn" or workload in SKLEARN_WORKLOADS]


def run_workload(workload, args, peers, data_path):
    """All runs of one workload, alternating frameworks; {framework: [results]}."""
    print(f"\n{workload}: {WORKLOADS[workload]['what']}")
    frameworks = frameworks_for(workload, peers)
    results = {fw: [] for fw in frameworks}
    for _ in range(args.repeats):
        for fw in frameworks:
            python = sys.executable if fw == "ferrax" else peers[fw]
            r = run_worker(python, fw, workload, args, data_path)
            if r is not None:
                results[fw].append(r)
                print(describe_run(r))
    return results


MEASURES = {"epoch_s": "s/epoch", "predict_s": "s/predict all", "single_ms": "ms/image"}


def table_rows(workload, results):
    """(workload, framework, measure, median, ratio, accuracy, rss) rows of one workload."""
    keys = ("predict_s", "single_ms") if WORKLOADS[workload].get("inference") else ("epoch_s",)
    base = results.get("ferrax") or []
    rows = []
    for key in keys:
        ref = statistics.median(v for r in base for v in r[key]) if base else None
        for fw, runs in results.items():
            if not runs:
                continue
            med = statistics.median(v for r in runs for v in r[key])
            rows.append((workload, fw, MEASURES[key], med, med / ref if ref else None,
                         statistics.mean(r["accuracy"] for r in runs),
                         max(r["peak_rss_mib"] for r in runs)))
    return rows


def print_table(rows):
    header = (f"{'workload':<8} {'framework':<9} {'measure':<14} {'median':>9} "
              f"{'ratio':>7} {'test acc':>8} {'peak RSS MiB':>12}")
    print(header)
    print("-" * len(header))
    for workload, fw, measure, med, ratio, acc, rss in rows:
        ratio_cell = f"{ratio:>7.2f}" if ratio is not None else f"{'-':>7}"
        print(f"{workload:<8} {fw:<9} {measure:<14} {med:>9.4f} {ratio_cell} {acc:>8.4f} "
              f"{rss:>12.1f}")
    print("median over all timed samples of all runs; ratio = peer time / ferrax time "
          "(above 1: ferrax is faster); test acc after the timed epochs (mean over runs).")


# --- command line -------------------------------------------------------------------------------

def parse_list(text, allowed, what):
    items = [t.strip() for t in text.split(",") if t.strip()]
    if items == ["all"]:
        return list(allowed)
    if items == ["none"]:
        return []
    bad = [t for t in items if t not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {what} {bad}; choose from {list(allowed)}")
    return items


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring (top of this file) for what "
                                       "each framework runs and how threads are set.")
    p.add_argument("--workloads", "--workload", default="W1,W2,W3,R1,W4",
                   type=lambda s: parse_list(s, WORKLOADS, "workload"),
                   help="comma-separated, in order (default: W1,W2,W3,R1,W4)")
    p.add_argument("--peers", default="all", type=lambda s: parse_list(s, PEERS, "peer"),
                   help="comma-separated subset of torch,keras,sklearn; 'all' (default) or "
                        "'none' (ferrax alone)")
    p.add_argument("--epochs", type=int, default=3,
                   help="timed epochs per run after one warm-up (W4: timed predict passes)")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per framework and workload, alternating between frameworks")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every framework (default: FERRAX_NUM_THREADS or all cores)")
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N training and test samples (smoke runs)")
    for peer in PEERS:
        p.add_argument(f"--{peer}-python", default=None,
                       help=f"python of an environment with {peer} (default: this one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = default_threads()
    if min(args.epochs, args.repeats, args.threads) < 1 or (args.limit or 1) < 1:
        p.error("--epochs, --repeats, --threads and --limit must be at least 1")
    if args.worker and len(args.workloads) != 1:
        p.error("a worker runs one workload")
    return args


def print_header(args, peers, source):
    print(f"data: {source}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs; threads used: "
          f"{args.threads}; python {platform.python_version()}")
    names = ["ferrax"] + [f"{p} ({peers[p]})" for p in peers]
    print(f"{args.epochs} timed epochs (W4: predict passes) per run after one warm-up, "
          f"{args.repeats} run(s) per framework; frameworks: {', '.join(names)}")
    if "keras" in peers:
        print(f"keras backend: {args.keras_backend}")
    load = os.getloadavg()
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*load))
    if load[0] > (os.cpu_count() or 1) - 0.5:
        print(f"WARNING: the 1-minute load average ({load[0]:.2f}) is about the number of CPUs "
              f"({os.cpu_count()}) or above: other processes compete for them and multithreaded "
              "timings degrade badly; treat the figures as indicative only.")


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        args.workload = args.workloads[0]
        return run_worker_process(args)

    peers = find_peers(args)
    tmp = tempfile.mkdtemp(prefix="ferrax-bench-")
    try:
        data_path = os.path.join(tmp, "data.npz")
        print_header(args, peers, prepare_data(data_path, args.limit))
        t_start = time.perf_counter()
        rows = []
        for workload in args.workloads:
            rows += table_rows(workload, run_workload(workload, args, peers, data_path))
        print("\nload average after:  {:.2f} {:.2f} {:.2f}  (wall {:.0f} s)\n".format(
            *os.getloadavg(), time.perf_counter() - t_start))
        print_table(rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
