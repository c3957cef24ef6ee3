"""The recurrent examples run end to end and learn (short runs, stated thresholds)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mnist_rnn_learns_the_bundled_sample(capsys):
    accuracy = _example("mnist_rnn").main(
        ["--dataset", "sample", "--epochs", "6", "--batch-size", "32", "--units", "64"])
    assert accuracy >= 0.85, accuracy
    assert "test accuracy" in capsys.readouterr().out


def test_text_lstm_beats_the_unigram_entropy_and_samples(capsys):
    loss, entropy = _example("text_lstm").main(
        ["--epochs", "5", "--units", "64", "--seq-len", "20", "--sample-length", "40",
         "--temperature", "0.5"])
    # A model that ignores context cannot beat the unigram entropy; this one must, clearly.
    assert loss < 0.9 * entropy, (loss, entropy)
    out = capsys.readouterr().out
    assert "--- temperature 0.5" in out
    generated = out.split("--- temperature 0.5")[1].splitlines()
    assert sum(len(line) for line in generated[1:]) >= 40
