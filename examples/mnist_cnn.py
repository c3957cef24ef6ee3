"""Train the Keras "simple MNIST convnet" with ferrax.

    python examples/mnist_cnn.py [--dataset mnist|fashion_mnist|sample] [--epochs 3]
                                 [--batch-size 128] [--out-dir mnist_cnn_out]

The network, optimizer and settings are those of the Keras example
(keras.io/examples/vision/mnist_convnet): two 3x3 convolutions with max pooling,
dropout, a softmax layer; Adam, categorical cross-entropy, batch 128, 10% of the
training images held out for validation. Works offline: when the data set cannot
be found or downloaded, it says so in one line and trains on the real-digit
sample bundled with ferrax instead. Writes the trained model (.ferrax).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import ferrax as keras
from ferrax import layers
from ferrax.datasets import load_or_sample

NUM_CLASSES = 10



def build_model():
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(NUM_CLASSES, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["mnist", "fashion_mnist", "sample"], default="mnist")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out-dir", type=Path, default=Path("mnist_cnn_out"))
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    ((x_train, y_train), (x_test, y_test)), used = load_or_sample(args.dataset)
    print(f"data: {used}, {len(x_train)} training and {len(x_test)} test images")
    # Scale to [0, 1] and add the channel axis: (n, 28, 28) -> (n, 28, 28, 1).
    x_train = np.expand_dims(x_train.astype(np.float32) / 255.0, -1)
    x_test = np.expand_dims(x_test.astype(np.float32) / 255.0, -1)
    y_train = keras.utils.to_categorical(y_train, NUM_CLASSES)
    y_test = keras.utils.to_categorical(y_test, NUM_CLASSES)

    model = build_model()
    model.summary()
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_split=0.1)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy: {accuracy:.4f}  test loss: {loss:.4f}  "
          f"(training took {seconds:.1f} s, {seconds / max(args.epochs, 1):.2f} s per epoch)")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.out_dir / "mnist_cnn.ferrax"
    model.save(model_path)  # reload with ferrax.models.load_model(path)
    print(f"saved the trained model to {model_path}")
    return accuracy


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
