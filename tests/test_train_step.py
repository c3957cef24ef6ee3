"""A Model subclass's own train_step / test_step / predict_step, run by fit, evaluate
and predict as in Keras's guide to customizing fit: the guide's examples, the fused
loop's weights for an equivalent step, metrics reset per epoch, validation, callbacks,
sample weights, compute_loss with model.losses, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import ferrax
from ferrax import layers, ops

R = np.random.default_rng(11)
X = R.normal(size=(96, 6)).astype(np.float32)
Y = (X @ R.normal(size=(6, 1)) + 0.1).astype(np.float32)


class GuideModel(ferrax.Model):
    """The guide's first example: compute_loss, then every metric updated by hand."""

    def train_step(self, data):
        x, y = data
        with ferrax.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        trainable_vars = self.trainable_variables
        gradients = tape.gradient(loss, trainable_vars)
        self.optimizer.apply(gradients, trainable_vars)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


def _graph(cls=ferrax.Model):
    ferrax.utils.set_random_seed(3)
    inputs = ferrax.Input(shape=(6,))
    hidden = layers.Dense(8, activation="tanh")(inputs)
    return cls(inputs, layers.Dense(1)(hidden))


def test_a_functional_subclass_keeps_its_class_and_is_functional():
    model = _graph(GuideModel)
    assert isinstance(model, GuideModel) and type(model).__name__ == "GuideModel"
    assert len(model.layers) == 3 and model.output_shape == (None, 1)


def test_the_guides_train_step_gives_the_weights_and_losses_of_the_fused_loop():
    fused, custom = _graph(), _graph(GuideModel)
    for m in (fused, custom):
        m.compile(optimizer=ferrax.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    h_fused = fused.fit(X, Y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    h_custom = custom.fit(X, Y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(custom.get_weights(), fused.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert set(h_custom.history) == {"loss", "mae"}
    for key in ("loss", "mae"):
        np.testing.assert_allclose(h_custom.history[key], h_fused.history[key], rtol=1e-5)


def test_the_default_train_step_called_through_super_trains_as_fit_does():
    class Counting(ferrax.Model):
        steps = 0

        def train_step(self, data):
            Counting.steps += 1
            return super().train_step(data)

    fused, custom = _graph(), _graph(Counting)
    for m in (fused, custom):
        m.compile(optimizer=ferrax.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    fused.fit(X, Y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    history = custom.fit(X, Y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    assert Counting.steps == 6 and list(history.history) == ["loss"]
    for a, b in zip(custom.get_weights(), fused.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_subclassed_models_own_steps_run_with_its_call():
    class Net(ferrax.Model):
        def __init__(self):
            super().__init__()
            self.hidden, self.out = layers.Dense(8, activation="tanh"), layers.Dense(1)
            self.seen: list[str] = []

        def call(self, x):
            return self.out(self.hidden(x))

        def train_step(self, data):
            self.seen.append("train")
            return super().train_step(data)

        def predict_step(self, data):
            self.seen.append("predict")
            return self(data, training=False)

    model = Net()
    model.compile(optimizer="sgd", loss="mse")
    before = model.evaluate(X, Y, verbose=0)
    model.fit(X, Y, batch_size=48, epochs=3, verbose=0)
    assert model.predict(X[:5], verbose=0).shape == (5, 1)
    assert model.seen == ["train"] * 6 + ["predict"]
    assert model.evaluate(X, Y, verbose=0) < before


class LowLevel(ferrax.Model):
    """The guide's lower-level example: its own trackers, listed in `metrics` so fit
    resets them each epoch; compile without a loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = ferrax.metrics.Mean(name="loss")
        self.mae_metric = ferrax.metrics.MeanAbsoluteError(name="mae")
        self.batch_losses: list[float] = []

    def train_step(self, data):
        x, y = data
        with ferrax.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = ops.mean(ops.square(y_pred - y))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        self.mae_metric.update_state(y, y_pred)
        self.batch_losses.append(float(loss))
        return {"loss": self.loss_tracker.result(), "mae": self.mae_metric.result()}

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae_metric]


def test_metrics_listed_by_the_model_are_reset_at_each_epoch():
    model = _graph(LowLevel)
    model.compile(optimizer="adam")
    history = model.fit(X, Y, batch_size=32, epochs=3, verbose=0)
    per_epoch = np.array(model.batch_losses).reshape(3, 3).mean(axis=1)
    np.testing.assert_allclose(history.history["loss"], per_epoch, rtol=1e-6)


def test_tracked_metric_attributes_join_model_metrics_after_the_compiled_ones():
    model = _graph(GuideModel)
    model.extra = ferrax.metrics.Mean(name="extra")
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    assert [m.name for m in model.metrics] == ["loss", "compile_metrics", "extra"]
    model.compute_metrics(None, Y[:4], Y[:4] + 1.0)
    assert model.get_metrics_result() == {"loss": 0.0, "mae": 1.0, "extra": 0.0}
    model.reset_metrics()
    assert model.get_metrics_result()["mae"] == 0.0


class WithTestStep(ferrax.Model):
    def test_step(self, data):
        x, y = data
        y_pred = self(x, training=False)
        self.compiled_metrics.update_state(y, y_pred)
        return {"err": ops.mean(ops.abs(y_pred - y)), "n": float(len(x))}


def test_evaluate_and_validation_run_an_overridden_test_step():
    model = _graph(WithTestStep)
    model.compile(optimizer="sgd", loss="mse")
    logs = model.evaluate(X, Y, batch_size=96, verbose=0, return_dict=True)
    want = float(np.mean(np.abs(model.predict(X, verbose=0) - Y)))
    assert logs["err"] == pytest.approx(want, rel=1e-5) and logs["n"] == 96.0
    history = model.fit(X[:64], Y[:64], batch_size=16, epochs=2, verbose=0,
                        validation_data=(X[64:], Y[64:]))
    assert set(history.history) == {"loss", "val_err", "val_n"}
    # the last validation batch's logs (batches of 16, the fit batch size)
    assert history.history["val_n"] == [16.0, 16.0]


def test_sample_weights_reach_the_step_as_the_third_entry():
    seen = []

    class Weighted(ferrax.Model):
        def train_step(self, data):
            x, y, w = data
            seen.append(np.asarray(w))
            return super().train_step(data)

    fused, custom = _graph(), _graph(Weighted)
    for m in (fused, custom):
        m.compile(optimizer="sgd", loss="mse")
    w = R.uniform(0.5, 2.0, size=96).astype(np.float32)
    fused.fit(X, Y, sample_weight=w, batch_size=32, shuffle=False, verbose=0)
    custom.fit(X, Y, sample_weight=w, batch_size=32, shuffle=False, verbose=0)
    np.testing.assert_array_equal(np.concatenate(seen), w)
    for a, b in zip(custom.get_weights(), fused.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_class_weight_reaches_the_step_folded_into_the_sample_weights():
    seen = []

    class Weighted(ferrax.Model):
        def train_step(self, data):
            x, y, w = data
            seen.append((np.asarray(y), np.asarray(w)))
            return super().train_step(data)

    labels = (X[:, 0] > 0).astype(np.float32)
    model = _graph(Weighted)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, labels, class_weight={0: 1.0, 1: 3.0}, batch_size=32, verbose=0)
    y = np.concatenate([a for a, _ in seen])
    w = np.concatenate([b for _, b in seen])
    np.testing.assert_array_equal(w, np.where(y == 1, 3.0, 1.0))


def test_predict_runs_an_overridden_predict_step():
    class Doubled(ferrax.Model):
        def predict_step(self, data):
            return 2.0 * self(data, training=False)

    model = _graph(Doubled)
    plain = ferrax.Model(model.input, model.output)
    out = model.predict(X, batch_size=40, verbose=0)
    assert out.shape == (96, 1)
    np.testing.assert_allclose(out, 2.0 * plain.predict(X, verbose=0), rtol=1e-6)


def test_callbacks_see_every_batch_and_can_stop_training():
    class Stop(ferrax.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches = []

        def on_train_batch_end(self, batch, logs=None):
            self.batches.append((batch, set(logs)))
            if len(self.batches) == 4:
                self.model.stop_training = True

    stop = Stop()
    model = _graph(GuideModel)
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    history = model.fit(X, Y, batch_size=32, epochs=5, verbose=0, callbacks=[stop])
    assert [b for b, _ in stop.batches] == [0, 1, 2, 0]
    assert stop.batches[0][1] == {"loss", "mae"} and len(history.history["loss"]) == 2


def test_shuffled_epochs_are_reproducible_under_the_global_seed():
    def run():
        model = _graph(GuideModel)
        model.compile(optimizer="adam", loss="mse")
        model.fit(X, Y, batch_size=16, epochs=2, verbose=0)
        return model.get_weights()

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_compute_loss_adds_the_weights_regularization_as_model_losses():
    ferrax.utils.set_random_seed(4)
    inputs = ferrax.Input((6,))
    model = ferrax.Model(inputs, layers.Dense(2, kernel_regularizer=ferrax.regularizers.L2(0.1),
                                              bias_regularizer=ferrax.regularizers.L1(0.2))(
        inputs))
    model.compile(optimizer="sgd", loss="mse")
    kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    (l2,), (l1,) = [np.asarray(t).reshape(1) for t in model.losses]
    assert l2 == pytest.approx(0.1 * np.sum(kernel ** 2), rel=1e-5)
    assert l1 == pytest.approx(0.2 * np.sum(np.abs(bias)), rel=1e-5, abs=1e-7)
    y = np.zeros((8, 2), np.float32)
    with ferrax.GradientTape() as tape:
        pred = model(X[:8], training=True)
        loss = model.compute_loss(y=y, y_pred=pred)
    grads = tape.gradient(loss, model.trainable_variables)
    p = X[:8].astype(np.float64) @ kernel + bias
    assert float(loss) == pytest.approx(np.mean(p ** 2) + l2 + l1, rel=1e-5)
    d = 2 * p / p.size
    np.testing.assert_allclose(np.asarray(grads[0]), X[:8].T @ d + 0.2 * kernel, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(grads[1]), d.sum(0) + 0.2 * np.sign(bias), rtol=1e-4,
                               atol=1e-6)


def test_a_model_that_overrides_no_step_keeps_the_fused_loop(monkeypatch):
    def refuse(self, data):
        raise AssertionError("the fused loop must not call train_step")

    monkeypatch.setattr(ferrax.Model, "train_step", refuse)
    monkeypatch.setattr(ferrax.Model, "test_step", refuse)
    model = _graph()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, Y, epochs=1, verbose=0, validation_split=0.25)
    model.evaluate(X, Y, verbose=0)


def test_a_train_step_that_returns_no_dict_is_a_clear_error():
    class Bad(ferrax.Model):
        def train_step(self, data):
            return 1.0

    model = _graph(Bad)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(TypeError, match="train_step\\(\\) must return a dict of metric values"):
        model.fit(X, Y, verbose=0)


def test_the_step_path_checks_its_data_and_compile():
    model = _graph(GuideModel)
    with pytest.raises(RuntimeError, match="You must call compile"):
        model.fit(X, Y, verbose=0)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="'x' holds 96 samples but 'y' holds 95"):
        model.fit(X, Y[:95], verbose=0)


def test_unpack_and_pack_x_y_sample_weight_follow_keras():
    unpack = ferrax.utils.unpack_x_y_sample_weight
    assert unpack(X) == (X, None, None)
    assert unpack((X,)) == (X, None, None)
    assert unpack((X, Y))[1] is Y and unpack([X, Y, 1.0])[2] == 1.0
    with pytest.raises(ValueError, match="got one of 4"):
        unpack((1, 2, 3, 4))
    assert ferrax.utils.pack_x_y_sample_weight(X, Y) == (X, Y)


class GAN(ferrax.Model):
    """The Keras GAN example's shape: two models, two optimizers, two tapes; the
    generator's gradient flows back through the discriminator's input."""

    def __init__(self, discriminator, generator, latent_dim):
        super().__init__()
        self.discriminator, self.generator, self.latent_dim = discriminator, generator, \
            latent_dim
        self.seed_generator = ferrax.random.SeedGenerator(1337)
        self.d_loss_tracker = ferrax.metrics.Mean(name="d_loss")
        self.g_loss_tracker = ferrax.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer, self.g_optimizer, self.loss_fn = d_optimizer, g_optimizer, loss_fn

    def train_step(self, real):
        batch_size = ops.shape(real)[0]
        z = ferrax.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        fake = self.generator(z)
        combined = ops.concatenate([fake, real], axis=0)
        labels = ops.concatenate([ops.ones((batch_size, 1)), ops.zeros((batch_size, 1))], 0)
        with ferrax.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(combined))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        z = ferrax.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        with ferrax.GradientTape() as tape:
            g_loss = self.loss_fn(ops.zeros((batch_size, 1)),
                                  self.discriminator(self.generator(z)))
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {"d_loss": self.d_loss_tracker.result(), "g_loss": self.g_loss_tracker.result()}


def test_the_gan_example_trains_both_models_through_the_discriminators_input():
    ferrax.utils.set_random_seed(0)
    disc = ferrax.Sequential([ferrax.Input((4,)), layers.Dense(8, activation="relu"),
                              layers.Dense(1)])
    gen = ferrax.Sequential([ferrax.Input((3,)), layers.Dense(8, activation="relu"),
                             layers.Dense(4)])
    gan = GAN(disc, gen, latent_dim=3)
    gan.compile(ferrax.optimizers.Adam(1e-3), ferrax.optimizers.Adam(1e-3),
                ferrax.losses.BinaryCrossentropy(from_logits=True))
    d0, g0 = disc.get_weights(), gen.get_weights()
    real = R.normal(loc=2.0, size=(64, 4)).astype(np.float32)
    history = gan.fit(real, batch_size=16, epochs=2, verbose=0)
    assert set(history.history) == {"d_loss", "g_loss"}
    assert all(np.isfinite(history.history["g_loss"]))
    assert all(not np.array_equal(a, b) for a, b in zip(gen.get_weights(), g0))
    assert all(not np.array_equal(a, b) for a, b in zip(disc.get_weights(), d0))


def test_compile_takes_metrics_the_fused_loop_lacks_and_fit_runs_them_step_by_step():
    from sklearn.metrics import precision_score, roc_auc_score

    r = np.random.default_rng(2)
    x = r.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * r.normal(size=200) > 0).astype(np.float32)
    ferrax.utils.set_random_seed(5)
    model = ferrax.Sequential([ferrax.Input((4,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=ferrax.optimizers.Adam(0.05), loss="binary_crossentropy",
                  metrics=[ferrax.metrics.AUC(num_thresholds=1000), "precision", "accuracy"])
    history = model.fit(x, y, batch_size=50, epochs=3, verbose=0)
    assert set(history.history) == {"loss", "auc", "precision", "accuracy"}
    logs = model.evaluate(x, y, batch_size=200, verbose=0, return_dict=True)
    p = model.predict(x, verbose=0).ravel()
    assert logs["auc"] == pytest.approx(roc_auc_score(y, p), abs=2e-3)
    assert logs["precision"] == pytest.approx(precision_score(y, p > 0.5), rel=1e-6)
    assert logs["accuracy"] == pytest.approx(np.mean((p > 0.5) == y), rel=1e-6)
    assert logs["loss"] == pytest.approx(
        -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), rel=1e-4)


class _Sampling(layers.Layer):
    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = ferrax.random.normal(shape=(ops.shape(z_mean)[0], ops.shape(z_mean)[1]))
        return z_mean + ops.exp(0.5 * z_log_var) * eps


class VAE(ferrax.Model):
    """The shape of Keras's VAE example: a plain Model holding an encoder with three
    outputs (one of them sampled in a custom layer) and a decoder, its loss and
    trackers written in train_step."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.total_loss_tracker = ferrax.metrics.Mean(name="total_loss")
        self.kl_loss_tracker = ferrax.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        with ferrax.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            # (per sample: the sum over the 16 values, as the example sums over pixels)
            rec = 16 * ops.mean(ferrax.losses.binary_crossentropy(data, reconstruction))
            kl = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl = ops.mean(ops.sum(kl, axis=1))
            total = rec + kl
        grads = tape.gradient(total, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total)
        self.kl_loss_tracker.update_state(kl)
        return {"loss": self.total_loss_tracker.result(), "kl_loss": self.kl_loss_tracker.result()}


def test_the_vae_example_trains_its_encoder_and_decoder():
    ferrax.utils.set_random_seed(6)
    enc_in = ferrax.Input((16,))
    h = layers.Dense(8, activation="relu")(enc_in)
    z_mean, z_log_var = layers.Dense(2)(h), layers.Dense(2)(h)
    encoder = ferrax.Model(enc_in, [z_mean, z_log_var, _Sampling()([z_mean, z_log_var])])
    dec_in = ferrax.Input((2,))
    decoder = ferrax.Model(dec_in, layers.Dense(16, activation="sigmoid")(
        layers.Dense(8, activation="relu")(dec_in)))
    vae = VAE(encoder, decoder)
    vae.compile(optimizer=ferrax.optimizers.Adam(0.01))
    assert len(vae.trainable_weights) == 10
    r = np.random.default_rng(3)
    data = (r.uniform(size=(256, 16)) < np.linspace(0.1, 0.9, 16)).astype(np.float32)
    history = vae.fit(data, epochs=6, batch_size=32, verbose=0)
    assert set(history.history) == {"loss", "kl_loss"}
    assert history.history["loss"][-1] < 0.9 * history.history["loss"][0]


class _Penalized(layers.Layer):
    """Keras's ActivityRegularizationLayer: adds 0.01 * sum(x^2) of its input."""

    def call(self, x):
        self.add_loss(0.01 * ops.sum(ops.square(x)))
        return x


def _penalized_model():
    ferrax.utils.set_random_seed(9)
    inp = ferrax.Input((6,))
    return ferrax.Model(inp, layers.Dense(1)(_Penalized()(layers.Dense(4)(inp))))


def test_a_tape_loop_with_sum_of_model_losses_trains_as_fit_with_add_loss():
    fitted = _penalized_model()
    fitted.compile(optimizer=ferrax.optimizers.SGD(0.05), loss="mse")
    fitted.fit(X, Y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    model, optimizer = _penalized_model(), ferrax.optimizers.SGD(0.05)
    loss_fn = ferrax.losses.MeanSquaredError()
    for _ in range(2):
        for i in range(0, 96, 32):
            with ferrax.GradientTape() as tape:
                pred = model(X[i:i + 32], training=True)
                loss = loss_fn(Y[i:i + 32], pred) + ops.sum(ops.stack(model.losses))
            grads = tape.gradient(loss, model.trainable_weights)
            optimizer.apply_gradients(zip(grads, model.trainable_weights))
    for a, b in zip(model.get_weights(), fitted.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    with ferrax.GradientTape():
        model(X[:10], training=True)
    (term,) = model.losses
    kernel, bias = (w.astype(np.float64) for w in model.get_weights()[:2])
    assert float(term) == pytest.approx(0.01 * np.sum((X[:10] @ kernel + bias) ** 2),
                                        rel=1e-5)


def test_model_losses_before_any_call_under_the_tape_says_when_it_is_filled():
    model = _penalized_model()
    model.predict(X[:2], verbose=0)
    with pytest.raises(ValueError, match="model.losses holds them after a call under a "
                                         "GradientTape"):
        _ = model.losses


# --- review fixes -----------------------------------------------------------------------
def test_a_loss_object_gives_the_targets_their_gradient_when_the_tape_tracks_them():
    t = ferrax.Variable(Y[:8])
    p = ferrax.Variable(Y[8:16])
    with ferrax.GradientTape() as tape:
        loss = ferrax.losses.MeanSquaredError()(t, p)
    dt, dp = tape.gradient(loss, [t, p])
    diff = (Y[8:16] - Y[:8]).astype(np.float64)
    np.testing.assert_allclose(np.asarray(dp), 2 * diff / diff.size, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(dt), -2 * diff / diff.size, rtol=1e-5)


@pytest.mark.parametrize("wrapped", ["bidirectional", "time_distributed", "separable"])
def test_model_losses_hold_wrapped_layers_regularizers_as_the_engine_does(wrapped):
    l2 = ferrax.regularizers.L2(0.1)
    ferrax.utils.set_random_seed(1)
    if wrapped == "bidirectional":
        inp = ferrax.Input((5, 3))
        out = layers.Bidirectional(layers.LSTM(2, kernel_regularizer=l2))(inp)
    elif wrapped == "time_distributed":
        inp = ferrax.Input((5, 3))
        out = layers.TimeDistributed(layers.Dense(2, kernel_regularizer=l2))(inp)
    else:
        inp = ferrax.Input((6, 6, 2))
        out = layers.SeparableConv2D(3, 3, depthwise_regularizer=l2,
                                     pointwise_regularizer=l2)(inp)
    model = ferrax.Model(inp, out)
    model.build((None, *inp.shape[1:]))
    terms = [float(t) for t in model.losses]
    names = [w.name for w in model.trainable_weights]
    want = [0.1 * float(np.sum(w.numpy().astype(np.float64) ** 2))
            for w in model.trainable_weights
            if w.name.rsplit("/", 1)[-1] in ("kernel", "depthwise_kernel", "pointwise_kernel")]
    assert len(terms) == {"bidirectional": 2, "time_distributed": 1, "separable": 2}[wrapped]
    assert terms == pytest.approx(want, rel=1e-5), names


def test_an_eager_mask_argument_is_refused_rather_than_dropped():
    with pytest.raises(NotImplementedError, match="a mask= argument on arrays"):
        layers.LSTM(3)(np.ones((2, 4, 3), np.float32), mask=np.ones((2, 4), bool))


def test_a_nested_model_inside_an_eager_call_follows_the_training_mode():
    class Outer(ferrax.Model):
        def __init__(self):
            super().__init__()
            self.enc = ferrax.Sequential([ferrax.Input((50,)), layers.Dropout(0.5)])

        def call(self, x, shift):
            return self.enc(x) + shift

    model = Outer()
    x = np.ones((4, 50), np.float32)
    np.testing.assert_array_equal(np.asarray(model(x, 0.0)), x)
    assert set(np.unique(np.asarray(model(x, 0.0, training=True))).tolist()) == {0.0, 2.0}


def test_several_inputs_without_targets_reach_the_step_whole():
    seen = []

    class Pair(ferrax.Model):
        def train_step(self, data):
            x, y, _ = ferrax.utils.unpack_x_y_sample_weight(data)
            seen.append((len(x), y))
            return {"n": float(len(x))}

    a, b = ferrax.Input((2,)), ferrax.Input((3,))
    model = Pair([a, b], layers.Dense(1)(layers.concatenate([a, b])))
    model.compile(optimizer="sgd")
    model.fit([X[:, :2], X[:, 2:5]], batch_size=48, verbose=0)
    assert seen == [(2, None), (2, None)]
    # and a model of several inputs called on arrays predicts
    out = model([X[:4, :2], X[:4, 2:5]])
    assert np.asarray(out).shape == (4, 1)


def test_a_functional_subclass_saves_and_loads_as_a_functional_model(tmp_path):
    model = _graph(GuideModel)
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, Y, epochs=1, verbose=0)
    model.save(tmp_path / "m.ferrax")
    loaded = ferrax.models.load_model(tmp_path / "m.ferrax")
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0),
                               rtol=1e-6)


def test_backup_and_restore_resumes_a_fit_that_runs_the_steps(tmp_path):
    class Stop(ferrax.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("Interrupting!")

    model = _graph(GuideModel)
    model.compile(optimizer="adam", loss="mse")
    backup = ferrax.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="Interrupting"):
        model.fit(X, Y, epochs=4, verbose=0, callbacks=[backup, Stop()])
    history = model.fit(X, Y, epochs=4, verbose=0, callbacks=[backup])
    assert history.epoch == [2, 3]


def test_predict_of_a_subclassed_model_with_several_outputs_returns_them_all():
    class TwoHeads(ferrax.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = layers.Dense(2), layers.Dense(3)

        def call(self, x):
            return self.a(x), self.b(x)

    model = TwoHeads()
    first, second = model.predict(X, batch_size=40, verbose=0)
    assert first.shape == (96, 2) and second.shape == (96, 3)
    np.testing.assert_allclose(first, np.asarray(model.a(X)), rtol=1e-6)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean_with_sample_weight",
                                       "sum_over_batch_size"])
def test_loss_reductions_follow_keras(reduction):
    w = np.linspace(0.5, 2.0, 8).astype(np.float32)
    t, p = Y[:8], Y[8:16]
    per = ((p - t).astype(np.float64) ** 2).mean(axis=1) * w
    want = {"none": per, "sum": per.sum(), "mean_with_sample_weight": per.sum() / w.sum(),
            "sum_over_batch_size": per.mean()}[reduction]
    got = ferrax.losses.MeanSquaredError(reduction=reduction)(t, p, sample_weight=w)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_compile_refuses_a_loss_reduction_fit_does_not_apply():
    model = _graph()
    with pytest.raises(NotImplementedError, match="reduction='sum'"):
        model.compile(optimizer="sgd", loss=ferrax.losses.MeanSquaredError(reduction="sum"))
    with pytest.raises(ValueError, match="reduction must be one of"):
        ferrax.losses.Huber(reduction="median")


# --- error paths of the step-by-step loops, the loss objects and the metrics ------------
class _Passing(ferrax.Model):
    """A step that only reports its batch: what the data checks let through."""

    def train_step(self, data):
        return {"n": 1.0}

    def predict_step(self, data):
        return data


def _passing():
    inp = ferrax.Input((6,))
    model = _Passing(inp, layers.Dense(1)(inp))
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_the_step_path_names_what_is_wrong_with_its_data():
    model = _passing()
    with pytest.raises(ValueError, match="'x' is required: the data to pass to the step"):
        model.fit(None, Y, verbose=0)
    with pytest.raises(ValueError, match="'x' must be an array with a leading batch axis"):
        model.fit(3.0, verbose=0)
    with pytest.raises(ValueError, match="the arrays of 'x' hold different numbers of "
                                         "samples: \\[4, 5\\]"):
        model.fit([X[:4], X[:5]], verbose=0)
    with pytest.raises(ValueError, match="class_weight needs the targets of one output"):
        model.fit(X, [Y, Y], class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="predict: 'x' holds no samples"):
        model.predict(X[:0], verbose=0)


def test_calls_with_extra_arguments_and_losses_of_a_scalar_are_refused_clearly():
    model = _graph()
    with pytest.raises(TypeError, match="unexpected call arguments"):
        model(X[:2], X[:2])
    with pytest.raises(ValueError, match="y_pred must have a batch axis, got a scalar"):
        ferrax.losses.MeanSquaredError()(1.0, 2.0)


def test_compiled_metrics_of_several_outputs_need_a_prediction_per_output():
    inp = ferrax.Input((6,))
    model = ferrax.Model(inp, {"a": layers.Dense(1)(inp), "b": layers.Dense(2)(inp)})
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    with pytest.raises(ValueError, match="y_pred must be a list of 2 or a dict by output"):
        model.compute_metrics(None, {"a": Y[:4], "b": X[:4, :2]}, Y[:4])


def test_a_multi_label_auc_refuses_another_number_of_labels():
    m = ferrax.metrics.AUC(multi_label=True)
    m.update_state(np.ones((2, 3)), np.full((2, 3), 0.7))
    with pytest.raises(ValueError, match="2 labels, but it counted 3 so far"):
        m.update_state(np.ones((2, 2)), np.full((2, 2), 0.7))
