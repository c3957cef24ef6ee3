"""The text of Model.summary(), laid out like Keras's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
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
    cols = (33, 26, 13)
    layers = model._engine_layers()

    def row(a: str, b: str, c: str, left: str = "│", mid: str = "│", right: str = "│") -> str:
        return (f"{left} {a:<{cols[0] - 2}} {mid} {b:<{cols[1] - 2}} {mid} "
                f"{c:>{cols[2] - 2}} {right}")

    def rule(l: str, m: str, r: str, ch: str) -> str:
        return l + m.join(ch * w for w in cols) + r

    lines = [f'Model: "{model.name}"', rule("┏", "┳", "┓", "━"),
             row("Layer (type)", "Output Shape", "Param #", "┃", "┃", "┃"),
             rule("┡", "╇", "┩", "━")]
    total = trainable = 0
    for i, layer in enumerate(layers):
        shape = str(layer.output_shape) if layer._output_shape is not None else "?"
        count = layer.count_params() if model.built else 0
        total += count
        if model.built:
            trainable += sum(int(np.prod(v.shape)) for v in layer.trainable_weights)
        name = f"{layer.name} ({type(layer).__name__})"
        params = _fmt_count(count) if model.built else "0 (unbuilt)"
        if len(name) <= cols[0] - 2:
            lines.append(row(name, shape, params))
        else:  # as Keras: the type goes on a line of its own
            lines.append(row(layer.name, shape, params))
            lines.append(row(f"({type(layer).__name__})", "", ""))
        if i + 1 < len(layers):
            lines.append(rule("├", "┼", "┤", "─"))
    lines.append(rule("└", "┴", "┘", "─"))
    lines.append(f" Total params: {_fmt_count(total)} ({_fmt_bytes(total * 4)})")
    frozen = total - trainable
    lines.append(f" Trainable params: {_fmt_count(trainable)} ({_fmt_bytes(trainable * 4)})")
    lines.append(f" Non-trainable params: {_fmt_count(frozen)} ({_fmt_bytes(frozen * 4)})")
    return lines
