"""Pictures: learning curves and the layer stack (matplotlib is optional)."""

import sys

import pytest

import ferrax
from ferrax import layers

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def _model():
    return ferrax.Sequential([layers.Flatten(input_shape=(4, 4)),
                              layers.Dense(8, activation="relu"), layers.Dense(2)])


def test_plot_history_writes_a_png_and_returns_the_figure(tmp_path):
    history = {"loss": [1.0, 0.5, 0.25], "val_loss": [1.2, 0.7, 0.6],
               "accuracy": [0.5, 0.7, 0.9], "val_accuracy": [0.4, 0.6, 0.8]}
    path = tmp_path / "h.png"
    ferrax.utils.plot_history(history, path)
    assert path.read_bytes()[:8] == PNG
    fig = ferrax.utils.plot_history(history)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy"]
    assert [len(line.get_ydata()) for line in fig.axes[0].lines] == [3, 3]


def test_plot_model_draws_every_layer_with_its_shape(tmp_path):
    model = _model()
    path = tmp_path / "m.png"
    ferrax.utils.plot_model(model, path)
    assert path.read_bytes()[:8] == PNG
    fig = ferrax.utils.plot_model(model, None)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for layer in model.layers:
        assert layer.name in texts and str(layer.output_shape) in texts
    assert "136 params" in texts  # 16 * 8 + 8


def test_without_matplotlib_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"ferrax\[plot\]"):
        ferrax.utils.plot_model(_model(), None)
