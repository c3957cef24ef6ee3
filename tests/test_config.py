"""get_config / from_config round trips, and clone_model."""

import numpy as np
import pytest

import ferrax
from ferrax import _testing, initializers, layers, losses, metrics, optimizers, regularizers
from ferrax.optimizers import schedules

LAYERS = [
    layers.Dense(7, activation="gelu", use_bias=False, kernel_initializer="orthogonal",
                 kernel_regularizer=regularizers.L1L2(0.01, 0.02),
                 bias_regularizer=regularizers.L2(0.5)),
    layers.Dense(3, kernel_initializer=initializers.RandomNormal(0.1, 0.2, seed=4),
                 bias_initializer=initializers.Constant(0.3)),
    layers.Activation("leaky_relu"),
    layers.Dropout(0.3, seed=11),
    layers.Flatten(),
    layers.Reshape((3, -1)),
    layers.InputLayer(shape=(5, 2)),
    layers.Conv2D(6, (3, 2), strides=2, padding="same", groups=3,
                  data_format="channels_first", activation="relu",
                  kernel_regularizer=regularizers.L2(0.1)),
    layers.Conv2D(4, 3, dilation_rate=2, use_bias=False),
    layers.Conv1D(4, 5, padding="causal", dilation_rate=2, groups=2),
    layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                           depthwise_initializer="he_normal", depthwise_regularizer="l2"),
    layers.MaxPooling2D((2, 3), strides=1, padding="same", data_format="channels_first"),
    layers.AveragePooling2D(3),
    layers.MaxPooling1D(3, strides=2),
    layers.AveragePooling1D(padding="same"),
    layers.GlobalAveragePooling2D(keepdims=True),
    layers.GlobalMaxPooling2D(data_format="channels_first"),
    layers.GlobalAveragePooling1D(),
    layers.GlobalMaxPooling1D(keepdims=True),
    layers.BatchNormalization(axis=1, momentum=0.9, epsilon=0.01, center=False,
                              gamma_initializer="random_normal", gamma_regularizer="l2"),
    layers.LayerNormalization(axis=[-2, -1], epsilon=1e-5, scale=False),
    layers.ZeroPadding2D(((1, 2), (0, 3))),
    layers.Cropping2D((1, 2), data_format="channels_first"),
    layers.UpSampling2D((2, 3)),
    layers.UpSampling2D(3, interpolation="bilinear", data_format="channels_first"),
    layers.SpatialDropout2D(0.25, seed=3),
    layers.SpatialDropout1D(0.5),
    layers.SeparableConv2D(4, 3, depth_multiplier=2, activation="relu",
                           pointwise_initializer="he_uniform", pointwise_regularizer="l1"),
    layers.Conv2DTranspose(3, (3, 2), strides=2, padding="same", data_format="channels_first"),
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda l: type(l).__name__)
def test_layer_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert type(clone) is type(layer)


OPTIMIZERS = [
    optimizers.SGD(0.1, momentum=0.9, nesterov=True, clipnorm=1.0),
    optimizers.RMSprop(0.01, rho=0.8, momentum=0.1, centered=True, clipvalue=0.5),
    optimizers.Adam(0.002, beta_1=0.8, amsgrad=True, global_clipnorm=2.0),
    optimizers.AdamW(weight_decay=0.1),
    optimizers.Adagrad(initial_accumulator_value=0.2),
    optimizers.Nadam(beta_2=0.99, weight_decay=0.01),
    optimizers.Adam(learning_rate=schedules.CosineDecay(0.01, 100, alpha=0.1)),
]


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: type(o).__name__)
def test_optimizer_config_round_trip_gives_the_same_updates(opt):
    clone = type(opt).from_config(opt.get_config())
    assert clone.get_config() == opt.get_config()
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(3, 2)).astype(np.float32)]
    grads = [[rng.normal(size=(3, 2)).astype(np.float32)] for _ in range(3)]
    a = _testing.optimizer_run(opt, params, grads)
    b = _testing.optimizer_run(clone, params, grads)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0], y[0])


LOSSES = [losses.MeanSquaredError(), losses.MeanAbsoluteError(), losses.Huber(delta=0.5),
          losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
          losses.CategoricalCrossentropy(label_smoothing=0.2),
          losses.SparseCategoricalCrossentropy(from_logits=True)]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: type(l).__name__)
def test_loss_config_round_trip(loss):
    clone = losses.get(losses.serialize(loss))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()


@pytest.mark.parametrize("name", ["accuracy", "binary_accuracy", "categorical_accuracy",
                                  "sparse_categorical_accuracy", "top_k_categorical_accuracy",
                                  "mse", "mae"])
def test_metric_survives_a_model_file(tmp_path, name):
    model = ferrax.Sequential([layers.Dense(3, activation="softmax", input_shape=(2,))])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=[name])
    x = np.random.default_rng(0).normal(size=(20, 2))
    y = ferrax.utils.to_categorical(np.arange(20) % 3)
    want = model.evaluate(x, y, verbose=0, return_dict=True)
    model.save(tmp_path / "m.ferrax")
    loaded = ferrax.models.load_model(tmp_path / "m.ferrax")
    assert loaded.metrics_names == model.metrics_names
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == want


def test_clone_model_copies_the_architecture_not_the_weights():
    ferrax.utils.set_random_seed(0)
    model = ferrax.Sequential([layers.Dense(4, activation="relu", input_shape=(3,)),
                               layers.Dense(2)])
    clone = ferrax.models.clone_model(model)
    assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
    assert [l.get_config()["units"] for l in clone.layers] == [4, 2]
    assert {l.name for l in clone.layers}.isdisjoint({l.name for l in model.layers})
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]
    assert not np.array_equal(clone.get_weights()[0], model.get_weights()[0])
    clone.set_weights(model.get_weights())
    x = np.ones((2, 3))
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))


def test_sequential_config_round_trip_rebuilds_an_equivalent_model():
    model = ferrax.Sequential([ferrax.Input(shape=(5, 2))] + LAYERS[:6])
    clone = ferrax.Sequential.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert metrics.get("accuracy").name == "accuracy"
