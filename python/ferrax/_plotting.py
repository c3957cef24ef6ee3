"""Pictures with matplotlib (an optional extra: pip install "ferrax[plot]")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ferrax._typing import PathLike
    from ferrax.callbacks import History
    from ferrax.models import Model


def _pyplot() -> ModuleType:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "ferrax[plot]"') from None
    return plt


def plot_history(history: History | Mapping[str, Sequence[float]],
                 path: PathLike | None = None) -> Figure:
    """Loss and metric curves per epoch, training and validation, one panel per metric.

    `history` is a History (from fit) or its `.history` dict. Saves a PNG to `path`
    if given; returns the matplotlib figure.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    logs = cast("Mapping[str, Sequence[float]]", getattr(history, "history", history))
    names = [k for k in logs if not k.startswith("val_")]
    names.sort(key=lambda k: (k != "loss", k))
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(5 * max(len(names), 1), 3.6),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = range(1, len(logs[name]) + 1)
        ax.plot(epochs, logs[name], "o-", label="training")
        if "val_" + name in logs:
            ax.plot(epochs, logs["val_" + name], "s--", label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig


def plot_model(model: Model, to_file: PathLike | None = "model.png",
               show_shapes: bool = True, show_layer_names: bool = True,
               show_layer_activations: bool = True, dpi: float = 100, **kwargs: Any) -> Figure:
    """Draw the model top to bottom: one box per layer with its name, class, output
    shape and parameter count, joined by arrows (a functional model as its graph, each
    layer one row below the lowest layer it reads). Saves a PNG to `to_file` (None:
    don't save) and returns the matplotlib figure. No Graphviz needed."""
    if not model.built:
        model.build()
    if model._connections() is not None:
        return _plot_graph(model, to_file, show_shapes, show_layer_names,
                           show_layer_activations, dpi)
    plt = _pyplot()
    rows = [("Input", f"{model.input_shape}")]
    for layer in model.layers:
        detail = f"output {layer.output_shape}" if show_shapes else ""
        rows.append((_title(layer, show_layer_names, show_layer_activations),
                     _joined(detail, _params(layer))))
    height = 1.1 * len(rows)
    fig, ax = plt.subplots(figsize=(5.5, max(2.0, height)))
    ax.set_xlim(0, 10)
    ax.set_ylim(-height, 0.4)
    ax.axis("off")
    for i, (title, detail) in enumerate(rows):
        y = -1.1 * i
        _box(ax, 5, y, title, detail, first=i == 0)
        if i:
            ax.annotate("", xy=(5, y), xytext=(5, y + 0.25),
                        arrowprops={"arrowstyle": "->", "color": "#3c4043"})
    return _finish(fig, ax, model, to_file, dpi)


def _title(layer: Any, show_layer_names: bool, show_layer_activations: bool) -> str:
    """A box's first line: the layer's name and class (and activation)."""
    title = f"{layer.name} ({type(layer).__name__})" if show_layer_names else \
        type(layer).__name__
    act = getattr(layer, "activation", None)
    if show_layer_activations and isinstance(act, str) and act != "linear":
        title += f"  [{act}]"
    return title


def _params(layer: Any) -> str:
    params = layer.count_params() if hasattr(layer, "count_params") else 0
    return f"{params:,} params" if params else ""


def _joined(*parts: str) -> str:
    return "   ".join(t for t in parts if t)


def _box(ax: Any, x: float, y: float, title: str, detail: str, first: bool) -> None:
    """One layer's box, 8 wide, its top at y, centred on x (the input's shaded)."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - 4, y - 0.8), 8, 0.8, boxstyle="round,pad=0.05",
                                facecolor="#f1f3f4" if first else "#e8f0fe",
                                edgecolor="#3c4043"))
    ax.text(x, y - 0.28, title, ha="center", va="center", fontsize=9, weight="bold")
    ax.text(x, y - 0.6, detail, ha="center", va="center", fontsize=8)


def _finish(fig: Figure, ax: Any, model: Any, to_file: PathLike | None, dpi: float) -> Figure:
    ax.set_title(f'Model: "{model.name}"', fontsize=10)
    fig.tight_layout()
    if to_file is not None:
        fig.savefig(to_file, dpi=dpi)
        _pyplot().close(fig)
    return fig


def _plot_graph(model: Any, to_file: PathLike | None, show_shapes: bool,
                show_layer_names: bool, show_layer_activations: bool, dpi: float) -> Figure:
    """A functional model's layers in rows by depth, an arrow for every tensor passed."""
    plt = _pyplot()
    depth: dict[int, int] = {id(l): 0 for l in model._input_layers}
    edges: list[tuple[Any, Any]] = []
    for node in model._nodes:
        sources = [t.node.layer for t in node.input_tensors]
        edges += [(s, node.layer) for s in sources]
        depth[id(node.layer)] = max(depth.get(id(node.layer), 0),
                                    1 + max(depth[id(s)] for s in sources))
    rows: dict[int, list[Any]] = {}
    for layer in model.layers:
        rows.setdefault(depth[id(layer)], []).append(layer)
    widest = max(len(r) for r in rows.values())
    width = max(10.0, 9.0 * widest)
    fig, ax = plt.subplots(figsize=(max(5.5, 4.0 * widest), max(2.0, 1.1 * len(rows))))
    ax.set_xlim(0, width)
    ax.set_ylim(-1.1 * len(rows), 0.4)
    ax.axis("off")
    where: dict[int, tuple[float, float]] = {}
    for d, layers in sorted(rows.items()):
        y = -1.1 * d
        for k, layer in enumerate(layers):
            x = width * (k + 0.5) / len(layers)
            where[id(layer)] = (x, y)
            shape = model._summary_shape(layer) if show_shapes else ""
            _box(ax, x, y, _title(layer, show_layer_names, show_layer_activations),
                 _joined(shape, _params(layer)), first=d == 0)
    for source, target in edges:
        (x0, y0), (x1, y1) = where[id(source)], where[id(target)]
        # an arrow past a row bends around the boxes between (to the right)
        skips = y0 - y1 > 1.2
        ax.annotate("", xy=(x1 + (4 if skips else 0), y1 - (0.4 if skips else 0)),
                    xytext=(x0 + (4 if skips else 0), y0 - (0.4 if skips else 0.85)),
                    arrowprops={"arrowstyle": "->", "color": "#3c4043",
                                "connectionstyle": "arc3,rad=-0.4" if skips else "arc3"})
    return _finish(fig, ax, model, to_file, dpi)
