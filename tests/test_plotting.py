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


def test_plot_model_draws_a_functional_model_as_its_graph(tmp_path):
    x = ferrax.Input(shape=(8,), name="x")
    a = ferrax.layers.Dense(8, activation="relu", name="a")(x)
    b = ferrax.layers.Dense(8, name="b")(a)
    s = ferrax.layers.add([a, b], name="skip")
    out = ferrax.layers.Dense(3, name="out")(ferrax.layers.concatenate([s, x], name="cat"))
    model = ferrax.Model(x, out)
    fig = ferrax.utils.plot_model(model, None)
    ax = fig.axes[0]
    titles = [t.get_text() for t in ax.texts]
    for layer in model.layers:
        assert any(t.startswith(f"{layer.name} ({type(layer).__name__})") for t in titles)
    arrows = [c for c in ax.get_children() if type(c).__name__ == "Annotation"]
    assert len(arrows) == 7  # x->a, a->b, a->skip, b->skip, skip->cat, x->cat, cat->out
    # layers read by the same row sit side by side: the Add is one row below b
    y = {t.get_text().split(" ")[0]: t.get_position()[1] for t in ax.texts}
    assert y["skip"] < y["b"] < y["a"] < y["x"] and y["cat"] < y["skip"]
    path = tmp_path / "graph.png"
    ferrax.utils.plot_model(model, path)
    assert path.read_bytes()[:8] == PNG


def test_without_matplotlib_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"ferrax\[plot\]"):
        ferrax.utils.plot_model(_model(), None)
