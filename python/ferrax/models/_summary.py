"""The text of Model.summary(), laid out like Keras's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ferrax.layers.base import Layer
    from ferrax.models.model import Model


def _fmt_count(n: int) -> str:
    return f"{n:,}"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable: the loop returns at 'GB'")


def summary_lines(model: Model) -> list[str]:
    connections = model._connections()
    cols: tuple[int, ...] = (33, 26, 13) if connections is None else (30, 22, 11, 22)
    # (a traced graph's ops and weights are not layers: its tracked layers are listed)
    listed = connections is not None or model._graph_needs_shape()
    layers = model.layers if listed else [l for l in model._engine_layers()
                                          if not getattr(l, "_internal", False)]

    def row(cells: list[str], left: str = "│", mid: str = "│", right: str = "│") -> str:
        parts = []
        for i, (cell, width) in enumerate(zip(cells, cols)):
            parts.append(f"{cell:>{width - 2}}" if i == 2 else f"{cell:<{width - 2}}")
        return f"{left} " + f" {mid} ".join(parts) + f" {right}"

    def rule(l: str, m: str, r: str, ch: str) -> str:
        return l + m.join(ch * w for w in cols) + r

    header = ["Layer (type)", "Output Shape", "Param #"]
    if connections is not None:
        header.append("Connected to")
    lines = [f'Model: "{model.name}"', rule("┏", "┳", "┓", "━"),
             row(header, "┃", "┃", "┃"), rule("┡", "╇", "┩", "━")]
    total = trainable = 0
    for i, layer in enumerate(layers):
        shape = model._summary_shape(layer)
        count = layer.count_params() if model.built else 0
        total += count
        if model.built:
            trainable += sum(int(np.prod(v.shape)) for v in layer.trainable_weights)
        name = f"{layer.name} ({type(layer).__name__})"
        params = _fmt_count(count) if model.built else "0 (unbuilt)"
        links = ["-"] if connections is None else connections.get(id(layer), ["-"])
        # several output shapes ("[(None, 16), (None, 16)]") go one to a line when long
        shapes = [shape] if len(shape) <= cols[1] - 2 else _split_shapes(shape)
        first = [layer.name if len(name) > cols[0] - 2 else name, shapes[0], params]
        rows = [first]
        if len(name) > cols[0] - 2:  # as Keras: the type goes on a line of its own
            rows.append([f"({type(layer).__name__})", "", ""])
        for k, extra in enumerate(shapes[1:], start=1):
            while len(rows) <= k:
                rows.append(["", "", ""])
            rows[k][1] = extra
        if connections is not None:
            while len(rows) < len(links):
                rows.append(["", "", ""])
            for r, cells in enumerate(rows):
                cells.append(links[r] if r < len(links) else "")
        lines += [row(cells) for cells in rows]
        if i + 1 < len(layers):
            lines.append(rule("├", "┼", "┤", "─"))
    lines.append(rule("└", "┴", "┘", "─"))
    lines.append(f" Total params: {_fmt_count(total)} ({_fmt_bytes(total * 4)})")
    frozen = total - trainable
    lines.append(f" Trainable params: {_fmt_count(trainable)} ({_fmt_bytes(trainable * 4)})")
    lines.append(f" Non-trainable params: {_fmt_count(frozen)} ({_fmt_bytes(frozen * 4)})")
    return lines


def _split_shapes(text: str) -> list[str]:
    """'[(None, 4), (None, 8)]' as ['[(None, 4),', '(None, 8)]']."""
    parts = text.split("), (")
    return [p + ")," if i < len(parts) - 1 else p for i, p in
            enumerate([parts[0]] + ["(" + q for q in parts[1:]])]


def shape_text(layer: Layer | Model) -> str:
    from ferrax.layers.core import InputLayer
    from ferrax.models.model import Model

    if isinstance(layer, InputLayer):
        return str((None, *layer._input_dims))
    if isinstance(layer, Model):
        return str(layer.output_shape)
    return str(layer.output_shape) if layer._output_shape is not None else "?"
