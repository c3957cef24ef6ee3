"""Recurrent state across calls: an LSTM / GRU / SimpleRNN with return_state called
eagerly with initial_state, and under a GradientTape (gradients to the weights, the
inputs and the initial state against the float64 NumPy reference), a PyTorch-style
subclassed model `call(x, hidden)` run eagerly, and truncated backpropagation through
time: chunks carrying their state give the full sequence's outputs."""

from __future__ import annotations

import numpy as np
import pytest
import rnn_reference as ref

import ferrax
from ferrax import layers, ops

R = np.random.default_rng(5)
X = R.normal(size=(3, 6, 2)).astype(np.float32)
KINDS = {"LSTM": (layers.LSTM, 2), "GRU": (layers.GRU, 1), "SimpleRNN": (layers.SimpleRNN, 1)}


def _layer(kind: str, **kw):
    ferrax.utils.set_random_seed(1)
    cls, n_states = KINDS[kind]
    return cls(4, return_sequences=True, return_state=True, **kw), n_states


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_eager_call_with_initial_state_gives_the_references_outputs(kind):
    layer, n_states = _layer(kind)
    states = [R.normal(size=(3, 4)).astype(np.float32) for _ in range(n_states)]
    got = layer(X, initial_state=states)
    want = ref.rnn_forward(kind, X, layer.get_weights(), return_sequences=True,
                           return_state=True, initial_state=states)
    assert len(got) == 1 + n_states
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_under_the_tape_gradients_reach_weights_inputs_and_initial_state(kind):
    layer, n_states = _layer(kind)
    states = [ferrax.Variable(R.normal(size=(3, 4)).astype(np.float32))
              for _ in range(n_states)]
    x = ops.convert_to_tensor(X)
    d_seq = R.normal(size=(3, 6, 4)).astype(np.float32)
    d_h = R.normal(size=(3, 4)).astype(np.float32)
    with ferrax.GradientTape() as tape:
        tape.watch(x)
        seq, h, *_ = layer(x, initial_state=states, training=True)
        loss = ops.sum(seq * d_seq) + ops.sum(h * d_h)
    grads = tape.gradient(loss, [x, *states, *layer.trainable_weights])
    _, dx, dw, d_init = ref.rnn_forward_backward(
        kind, X, layer.get_weights(), [d_seq, d_h], return_sequences=True,
        return_state=True, initial_state=[np.asarray(s) for s in states])
    np.testing.assert_allclose(np.asarray(grads[0]), dx, rtol=1e-4, atol=1e-5)
    for g, w in zip(grads[1:1 + n_states], d_init):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-4, atol=1e-5)
    for g, w in zip(grads[1 + n_states:], dw):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-4, atol=1e-5)


class CharModel(ferrax.Model):
    """The seeds' LSTMModel.forward(input, hidden), written as a Keras subclass."""

    def __init__(self, vocab: int = 12, units: int = 8):
        super().__init__()
        self.embed = layers.Embedding(vocab, 5)
        self.lstm = layers.LSTM(units, return_sequences=True, return_state=True)
        self.fc = layers.Dense(vocab)

    def call(self, x, hidden=None):
        out, h, c = self.lstm(self.embed(x), initial_state=hidden)
        return self.fc(out), [h, c]


def test_chunks_carrying_their_state_give_the_whole_sequences_outputs():
    ferrax.utils.set_random_seed(2)
    model = CharModel()
    ids = R.integers(0, 12, size=(2, 12))
    whole, _ = model(ids)
    hidden, parts = None, []
    for t in range(0, 12, 4):
        logits, hidden = model(ids[:, t:t + 4], hidden)
        parts.append(np.asarray(logits))
    np.testing.assert_allclose(np.concatenate(parts, axis=1), np.asarray(whole), rtol=1e-5,
                               atol=1e-6)


def test_truncated_backpropagation_through_time_trains_a_subclassed_model():
    ferrax.utils.set_random_seed(3)
    model = CharModel()
    optimizer = ferrax.optimizers.Adam(0.05)
    loss_fn = ferrax.losses.SparseCategoricalCrossentropy(from_logits=True)
    text = np.tile(np.arange(12), 5)[None, :].repeat(2, axis=0)  # a sequence to learn
    losses = []
    for _ in range(8):
        hidden, total = None, 0.0
        for t in range(0, 48, 12):
            x, y = text[:, t:t + 12], text[:, t + 1:t + 13]
            with ferrax.GradientTape() as tape:
                logits, hidden = model(x, hidden)
                loss = loss_fn(y.reshape(-1), ops.reshape(logits, (-1, 12)))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            hidden = [ops.stop_gradient(s) for s in hidden]
            total += float(loss)
        losses.append(total / 4)
    assert len(model.trainable_variables) == 6  # embeddings, the LSTM's 3, the Dense's 2
    assert losses[-1] < 0.5 * losses[0]


def test_the_hidden_state_carries_the_gradient_back_into_the_previous_chunk():
    ferrax.utils.set_random_seed(4)
    model = CharModel()
    ids = R.integers(0, 12, size=(2, 8))
    with ferrax.GradientTape() as tape:
        _, hidden = model(ids[:, :4])
        logits, _ = model(ids[:, 4:], hidden)
        loss = ops.sum(logits)
    grads = tape.gradient(loss, model.trainable_variables)
    # the embeddings of ids seen only in the first chunk get a gradient through the state
    first_only = sorted(set(ids[:, :4].ravel()) - set(ids[:, 4:].ravel()))
    embeddings = np.asarray(grads[0])
    assert first_only and np.all(np.abs(embeddings[first_only]).sum(axis=1) > 0)


def test_layers_inside_an_eager_call_follow_the_models_training_mode():
    class Noisy(ferrax.Model):
        def __init__(self):
            super().__init__()
            self.drop = layers.Dropout(0.5)

        def call(self, x, scale):
            return self.drop(x) * scale, x

    model = Noisy()
    x = np.ones((4, 50), np.float32)
    inference, _ = model(x, 2.0)
    training, _ = model(x, 2.0, training=True)
    np.testing.assert_array_equal(np.asarray(inference), 2 * x)
    values = set(np.unique(np.asarray(training)).tolist())
    assert values == {0.0, 4.0}


def test_a_stack_whose_last_layer_returns_its_states_runs_under_the_tape():
    ferrax.utils.set_random_seed(6)
    model = ferrax.Sequential([ferrax.Input((6, 2)),
                               layers.LSTM(4, return_sequences=True, return_state=True)])
    x = ops.convert_to_tensor(X)
    d_seq = R.normal(size=(3, 6, 4)).astype(np.float32)
    d_c = R.normal(size=(3, 4)).astype(np.float32)
    with ferrax.GradientTape() as tape:
        tape.watch(x)
        seq, h, c = model(x, training=True)
        loss = ops.sum(seq * d_seq) + ops.sum(c * d_c)
    grads = tape.gradient(loss, [x, *model.trainable_variables])
    want_y, dx, dw, _ = ref.rnn_forward_backward(
        "LSTM", X, model.get_weights(), [d_seq, None, d_c], return_sequences=True,
        return_state=True)
    for got, want in zip((seq, h, c), want_y):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(grads[0]), dx, rtol=1e-4, atol=1e-5)
    for g, w in zip(grads[1:], dw):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-4, atol=1e-5)
