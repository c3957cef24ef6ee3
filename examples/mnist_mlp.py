"""Train the Keras quick-start network on MNIST digits with ferrax.

    python examples/mnist_mlp.py [--dataset mnist|fashion_mnist|sample] [--epochs 5]
                                 [--batch-size 32] [--out-dir mnist_mlp_out]

Works offline: when MNIST cannot be found or downloaded, it says so in one
line and trains on the real-digit sample bundled with ferrax instead.
Writes the trained model (.ferrax), its learning curves and a grid of test digits.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import ferrax as keras
from ferrax import layers
from ferrax.datasets import load_or_sample


def build_model():
    model = keras.Sequential([
        # Pixels stay uint8 in memory (a quarter of float32's size); the engine converts
        # and scales each batch as it reads it.
        layers.Rescaling(1 / 255, input_shape=(28, 28)),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def save_digit_grid(x, y_true, y_pred, path, classes, title="Test digits"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrong = np.flatnonzero(y_true != y_pred)
    right = np.flatnonzero(y_true == y_pred)
    # Show mistakes first (up to half the grid), then correct predictions.
    picks = np.concatenate([wrong[:18], right[:36 - min(len(wrong), 18)]])
    fig, axes = plt.subplots(6, 6, figsize=(8, 9))
    for ax, i in zip(axes.flat, picks):
        ax.imshow(x[i], cmap="gray_r")
        ok = y_true[i] == y_pred[i]
        ax.set_title(f"pred {classes[y_pred[i]]}\ntrue {classes[y_true[i]]}", fontsize=8,
                     color="black" if ok else "red")
        if not ok:
            for s in ax.spines.values():
                s.set_color("red")
                s.set_linewidth(2)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(picks):]:
        ax.axis("off")
    fig.suptitle(f"{title}: predicted vs true (mistakes in red)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["mnist", "fashion_mnist", "sample"], default="mnist")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out-dir", type=Path, default=Path("mnist_mlp_out"))
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    ((x_train, y_train), (x_test, y_test)), used = load_or_sample(args.dataset)
    print(f"data: {used}, {len(x_train)} training and {len(x_test)} test images")

    model = build_model()
    model.summary()
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=0.1)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy: {accuracy:.4f}  test loss: {loss:.4f}  "
          f"(training took {seconds:.1f} s, {seconds / max(args.epochs, 1):.2f} s per epoch)")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.out_dir / "mnist_mlp.ferrax"
    model.save(model_path)  # reload with ferrax.models.load_model(path)
    print(f"saved the trained model to {model_path}")

    try:
        keras.utils.plot_history(history, args.out_dir / "learning_curves.png")
        classes = ([str(i) for i in range(10)] if used != "fashion_mnist" else
                   ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Boot"])
        y_pred = model.predict(x_test, verbose=0).argmax(axis=1)
        save_digit_grid(x_test, y_test, y_pred, args.out_dir / "test_digits.png", classes,
                        "Fashion-MNIST test images" if used == "fashion_mnist" else "Test digits")
        print(f"saved learning_curves.png and test_digits.png to {args.out_dir}")
    except ImportError as e:
        print(f"no pictures: {e}")
    return accuracy


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
