"""Recurrent models as whole models: saving and loading, clones, weight names, summaries,
stateful batching rules, and return_state at model level."""

import numpy as np
import pytest

import ferrax
from ferrax import layers as L


def _text_model():
    return ferrax.Sequential([
        L.Input((6,)),
        L.Embedding(12, 5, mask_zero=True, name="embedding"),
        L.Bidirectional(L.GRU(4, return_sequences=True, name="gru"), merge_mode="ave",
                        name="bidirectional"),
        L.TimeDistributed(L.Dense(3, activation="tanh")),
        L.LSTM(2, go_backwards=True, name="lstm"),
    ])


def test_save_load_round_trip_predicts_identically(tmp_path):
    rng = np.random.default_rng(0)
    model = _text_model()
    model.compile("adam", "mse")
    x = rng.integers(0, 12, (8, 6))
    model.fit(x, rng.normal(size=(8, 2)), verbose=0)
    model.save(tmp_path / "m.ferrax")
    loaded = ferrax.models.load_model(tmp_path / "m.ferrax")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    # Training resumes identically too (weights and optimizer state were saved).
    y = rng.normal(size=(8, 2))
    model.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_weight_names_are_unique_and_keras_like():
    model = _text_model()
    names = [v.name for v in model.weights]
    assert len(names) == len(set(names))
    assert "bidirectional/forward_gru/kernel" in names
    assert "bidirectional/backward_gru/recurrent_kernel" in names
    shapes = {v.name: v.shape for v in model.weights}
    assert shapes["embedding/embeddings"] == (12, 5)
    assert shapes["bidirectional/forward_gru/bias"] == (2, 12)
    assert shapes["lstm/kernel"] == (3, 8)


def test_clone_and_config_round_trip_keep_every_option():
    model = _text_model()
    clone = ferrax.models.clone_model(model)
    assert [type(l).__name__ for l in clone.layers] == [type(l).__name__ for l in model.layers]
    bi = clone.layers[1]
    assert bi.merge_mode == "ave" and bi.forward_layer.return_sequences
    assert bi.backward_layer.go_backwards and not bi.forward_layer.go_backwards
    assert clone.layers[0].mask_zero and clone.layers[-1].go_backwards
    assert isinstance(clone.layers[2].layer, L.Dense)
    assert clone.count_params() == model.count_params()


def test_summary_counts_parameters_as_keras():
    lines = []
    model = ferrax.Sequential([L.Input((28, 28)), L.LSTM(128), L.Dense(10)])
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    # 4·(28·128 + 128·128 + 128) = 80,384 (Keras prints the same for this layer).
    assert "80,384" in text and "(None, 128)" in text
    gru = ferrax.Sequential([L.Input((5, 3)), L.GRU(4)])
    assert gru.count_params() == 3 * (3 * 4 + 4 * 4 + 2 * 4)
    rnn = ferrax.Sequential([L.Input((5, 3)), L.Bidirectional(L.SimpleRNN(4))])
    assert rnn.count_params() == 2 * (3 * 4 + 4 * 4 + 4)
    assert rnn.output_shape == (None, 8)


def test_stateful_models_need_full_batches():
    model = ferrax.Sequential([L.Input((4, 2), batch_size=3), L.LSTM(2, stateful=True)])
    x = np.zeros((7, 4, 2), np.float32)
    with pytest.raises(ValueError, match=r"stateful.*multiple of batch_size \(3\)"):
        model.predict(x, batch_size=3, verbose=0)


def test_return_state_must_be_last_and_cannot_train():
    with pytest.raises(ValueError, match=r"(?s)'lstm_state'.*return_state=True.*last layer"):
        ferrax.Sequential([L.Input((4, 2)), L.LSTM(3, return_state=True, name="lstm_state"),
                           L.Dense(1)])
    model = ferrax.Sequential([L.Input((4, 2)), L.GRU(3, return_state=True)])
    out, h = model.predict(np.ones((2, 4, 2), np.float32), verbose=0)
    np.testing.assert_array_equal(out, h)
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match="return_state"):
        model.fit(np.ones((2, 4, 2)), np.ones((2, 3)), verbose=0)


def test_recurrent_layer_after_a_flat_input_names_the_layer_and_shape():
    with pytest.raises(ValueError, match=r"(?s)lstm_rank.*rank 3.*\[784\]"):
        ferrax.Sequential([L.Input((784,)), L.LSTM(3, name="lstm_rank")])


_TRAIN_AND_HASH = """
import hashlib, numpy as np, ferrax
from ferrax import layers as L
ferrax.utils.set_random_seed(1)
m = ferrax.Sequential([L.Input((12, 9)), L.Bidirectional(L.LSTM(40, dropout=0.1,
    recurrent_dropout=0.1, return_sequences=True)), L.GRU(24), L.Dense(3, activation="softmax")])
m.compile("adam", "sparse_categorical_crossentropy")
r = np.random.default_rng(0)
m.fit(r.random((256, 12, 9)).astype("float32"), r.integers(0, 3, 256), batch_size=128,
      epochs=1, verbose=0)
print(hashlib.sha256(b"".join(w.tobytes() for w in m.get_weights())).hexdigest())
"""


def test_recurrent_training_is_bitwise_identical_for_any_thread_count():
    import os
    import subprocess
    import sys

    digests = set()
    for threads in ("1", "2", "3"):
        env = {**os.environ, "FERRAX_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", _TRAIN_AND_HASH], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        digests.add(out)
    assert len(digests) == 1, digests
