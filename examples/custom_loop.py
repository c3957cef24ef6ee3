"""A training loop written by hand, as Keras's guide "Writing a training loop from
scratch" and a PyTorch user write it, then the same step as a `train_step` override
that `fit` runs (with its progress bar, History and validation).

    python examples/custom_loop.py [--epochs 3] [--dataset sample|mnist]

The model is a 784-64-64-10 MLP on MNIST (the 4,000 + 1,000 digits that ship with
ferrax by default). Each epoch of the hand-written loop prints its loss, training and
validation accuracy and time.
"""

import argparse
import time

import numpy as np

import ferrax as keras
from ferrax import layers


def load(dataset):
    source = keras.datasets.mnist
    (x_train, y_train), (x_test, y_test) = (source.load_sample() if dataset == "sample"
                                            else source.load_data())
    x_train = x_train.reshape(len(x_train), 784).astype("float32") / 255
    x_test = x_test.reshape(len(x_test), 784).astype("float32") / 255
    return (x_train, y_train), (x_test, y_test)


def mlp(cls=keras.Model):
    inputs = keras.Input(shape=(784,), name="digits")
    x = layers.Dense(64, activation="relu")(inputs)
    x = layers.Dense(64, activation="relu")(x)
    return cls(inputs, layers.Dense(10, name="predictions")(x))


def hand_written_loop(train, test, epochs, batch_size=64):
    model = mlp()
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    train_acc = keras.metrics.SparseCategoricalAccuracy()
    val_acc = keras.metrics.SparseCategoricalAccuracy()
    (x, y), (x_val, y_val) = train, test
    for epoch in range(epochs):
        start = time.perf_counter()
        order = np.random.default_rng(epoch).permutation(len(x))
        for i in range(0, len(x), batch_size):
            rows = order[i:i + batch_size]
            with keras.GradientTape() as tape:
                logits = model(x[rows], training=True)
                loss_value = loss_fn(y[rows], logits)
            grads = tape.gradient(loss_value, model.trainable_weights)
            optimizer.apply_gradients(zip(grads, model.trainable_weights))
            train_acc.update_state(y[rows], logits)
        for i in range(0, len(x_val), 256):
            val_acc.update_state(y_val[i:i + 256], model(x_val[i:i + 256], training=False))
        accuracy = float(val_acc.result())
        print(f"epoch {epoch + 1}: loss {float(loss_value):.4f}, train accuracy "
              f"{float(train_acc.result()):.4f}, validation accuracy {accuracy:.4f}, "
              f"{time.perf_counter() - start:.2f} s")
        train_acc.reset_state()
        val_acc.reset_state()
    return accuracy


class CustomModel(keras.Model):
    """The same step, written once and run by fit."""

    def train_step(self, data):
        x, y = data
        with keras.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        self.optimizer.apply(tape.gradient(loss, self.trainable_variables),
                             self.trainable_variables)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dataset", choices=["sample", "mnist"], default="sample")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    train, test = load(args.dataset)
    print("A GradientTape loop:")
    accuracy = hand_written_loop(train, test, args.epochs)
    print(f"loop validation accuracy: {accuracy:.4f}")
    print("A train_step override, run by fit:")
    model = mlp(CustomModel)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(*train, batch_size=64, epochs=args.epochs, validation_data=test, verbose=2)
    _, accuracy = model.evaluate(*test, verbose=0)
    print(f"test accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
