"""Classify MNIST digits with an LSTM that reads each image row by row.

    python examples/mnist_rnn.py [--dataset mnist|fashion_mnist|sample] [--epochs 3]
                                 [--batch-size 128] [--units 128]

Each 28x28 image is a sequence of 28 steps of 28 pixels: LSTM(128) then Dense(10).
Works offline like mnist_mlp.py: without MNIST it trains on the bundled sample.
"""

import argparse
import time

import ferrax as keras
from ferrax import layers
from ferrax.datasets import load_or_sample


def build_model(units=128):
    model = keras.Sequential([
        layers.Input(shape=(28, 28)),
        layers.LSTM(units),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["mnist", "fashion_mnist", "sample"], default="mnist")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    ((x_train, y_train), (x_test, y_test)), used = load_or_sample(args.dataset)
    # Pixels to [0, 1]; rows are the time steps.
    x_train = x_train.astype("float32") / 255.0
    x_test = x_test.astype("float32") / 255.0
    print(f"{used}: {len(x_train)} training and {len(x_test)} test sequences of 28 rows")

    model = build_model(args.units)
    model.summary()
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_split=0.1, verbose=2)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy {accuracy:.4f}, test loss {loss:.4f} "
          f"({seconds / max(args.epochs, 1):.1f} s per epoch)")
    return accuracy


if __name__ == "__main__":
    main()
