"""Peak memory of a whole W1 run (load, fit one epoch, evaluate) and the time of `import ferrax`.

    python benches/memory_w1.py [--dataset fashion_mnist|mnist|sample] [--imports 7]

Each variant runs in a fresh interpreter, so its peak RSS (`ru_maxrss`) is that run's alone:

- uint8 + Rescaling: pixels stay uint8 and the model scales them (`layers.Rescaling(1 / 255)`),
  as examples/mnist_mlp.py does; the engine converts each batch as it reads it.
- float32 in place: `x = x.astype("float32"); x /= 255`, one float32 copy of the images.
- float64 (x / 255.0): Keras's quick-start line; NumPy makes a float64 copy (8 bytes a pixel).

The import time is the median over fresh interpreters of the wall time of `import ferrax`
alone (the interpreter's own start-up is not counted).
"""

import argparse
import json
import statistics
import subprocess
import sys

VARIANTS = ("uint8 + Rescaling", "float32 in place", "float64 (x / 255.0)")

WORKER = r"""
import json, resource, sys, time
import ferrax as keras
from ferrax import layers

variant, dataset = sys.argv[1], sys.argv[2]
if dataset == "sample":
    (x, y), (xt, yt) = keras.datasets.mnist.load_sample()
else:
    (x, y), (xt, yt) = getattr(keras.datasets, dataset).load_data()
stack = [layers.Flatten(input_shape=(28, 28)), layers.Dense(128, activation="relu"),
         layers.Dense(10, activation="softmax")]
if variant == "uint8 + Rescaling":
    stack.insert(0, layers.Rescaling(1 / 255, input_shape=(28, 28)))
    stack[1] = layers.Flatten()
elif variant == "float32 in place":
    x, xt = x.astype("float32"), xt.astype("float32")
    x /= 255
    xt /= 255
else:
    x, xt = x / 255.0, xt / 255.0
keras.utils.set_random_seed(0)
model = keras.Sequential(stack)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
t = time.perf_counter()
model.fit(x, y, epochs=1, batch_size=32, verbose=0)
seconds = time.perf_counter() - t
_, accuracy = model.evaluate(xt, yt, verbose=0)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rss_mb = rss / 1e6 if sys.platform == "darwin" else rss * 1024 / 1e6
print(json.dumps({"peak_rss_mb": rss_mb, "fit_s": seconds, "accuracy": accuracy,
                  "samples": len(x)}))
"""

IMPORT_TIMER = (
    "import time; t = time.perf_counter(); import ferrax; print(time.perf_counter() - t)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist",
                        choices=["fashion_mnist", "mnist", "sample"])
    parser.add_argument("--imports", type=int, default=7, help="fresh interpreters to time")
    args = parser.parse_args()

    imports = [float(subprocess.run([sys.executable, "-c", IMPORT_TIMER], check=True,
                                    capture_output=True, text=True).stdout)
               for _ in range(args.imports)]
    print(f"import ferrax: median {statistics.median(imports):.3f} s "
          f"(min {min(imports):.3f}, max {max(imports):.3f}, {len(imports)} interpreters)")

    print(f"\nW1 on {args.dataset}: load, fit 1 epoch (batch 32), evaluate")
    print(f"{'variant':22} {'peak RSS MB':>11} {'fit s':>7} {'test acc':>8}")
    for variant in VARIANTS:
        out = subprocess.run([sys.executable, "-c", WORKER, variant, args.dataset],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{variant:22} {r['peak_rss_mb']:11.1f} {r['fit_s']:7.3f} {r['accuracy']:8.4f}")
    print("peak RSS: ru_maxrss of the run's interpreter, in MB (10^6 bytes)")


if __name__ == "__main__":
    main()
