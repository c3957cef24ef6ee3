"""Weight penalties added to the loss: l1·Σ|w| + l2·Σw² (no ½, as in Keras)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ferrax._serial import check_number, describe

if TYPE_CHECKING:
    from typing_extensions import Self


class Regularizer:
    l1: float
    l2: float

    def get_config(self) -> dict[str, float]:
        return {"l1": self.l1, "l2": self.l2}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls(**config)

    def _core_spec(self) -> dict[str, float]:
        return {"l1": self.l1, "l2": self.l2}

    def __call__(self, x: Any) -> Any:
        """The penalty of weight `x`: l1·Σ|x| + l2·Σx², a scalar tensor made of ops (a
        GradientTape records it)."""
        from ferrax import ops

        total = None
        for factor, term in ((self.l1, ops.abs), (self.l2, ops.square)):
            if factor:
                part = ops.multiply(factor, ops.sum(term(x)))
                total = part if total is None else ops.add(total, part)
        return ops.convert_to_tensor(0.0) if total is None else total

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


class L1L2(Regularizer):
    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = float(check_number("L1L2", "l1", l1, low=0))
        self.l2 = float(check_number("L1L2", "l2", l2, low=0))


class L1(Regularizer):
    def __init__(self, l1: float = 0.01) -> None:
        self.l1 = float(check_number("L1", "l1", l1, low=0))
        self.l2 = 0.0

    def get_config(self) -> dict[str, float]:
        return {"l1": self.l1}


class L2(Regularizer):
    def __init__(self, l2: float = 0.01) -> None:
        self.l1 = 0.0
        self.l2 = float(check_number("L2", "l2", l2, low=0))

    def get_config(self) -> dict[str, float]:
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2
_CLASSES: dict[str, type[Regularizer]] = {
    "l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2, "L1": L1, "L2": L2, "L1L2": L1L2}


def get(identifier: str | dict[str, Any] | Regularizer | None) -> Regularizer | None:
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str) and identifier in _CLASSES:
        return _CLASSES[identifier]()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return _CLASSES[identifier["class_name"]].from_config(identifier.get("config", {}))
    raise ValueError(f"Unknown regularizer {describe(identifier)}; expected 'l1', 'l2', 'l1_l2' "
                     f"or a ferrax.regularizers object")


def serialize(reg: Regularizer | None) -> dict[str, Any] | None:
    return None if reg is None else {"class_name": type(reg).__name__, "config": reg.get_config()}
