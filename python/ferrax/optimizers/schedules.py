"""Learning-rate schedules with Keras 3's names, arguments, defaults and formulas.

A schedule maps the optimizer step (0 for the first update) to a learning rate. Pass one as an
optimizer's `learning_rate`; the engine evaluates the same formula (rust/core/src/schedule.rs)
before each update, so training keeps running many batches per call. Calling a schedule from
Python, `schedule(step)`, returns the rate as a Python float computed in float64.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ferrax._serial import check_number, describe, snake_case
from ferrax._typing import Config

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "CosineDecay",
    "CosineDecayRestarts",
    "ExponentialDecay",
    "InverseTimeDecay",
    "LearningRateSchedule",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "deserialize",
    "get",
    "serialize",
]


def _step(owner: str, step: Any) -> float:
    """The step as a non-negative float (ints, floats and NumPy scalars accepted)."""
    if hasattr(step, "item") and getattr(step, "ndim", 0) == 0:
        step = step.item()
    check_number(owner, "step", step, low=0)
    if math.isinf(step):
        raise ValueError(f"{owner}: 'step' must be finite, got {step}")
    return float(step)


def _finite(owner: str, arg: str, value: Any, **bounds: Any) -> Any:
    check_number(owner, arg, value, **bounds)
    if math.isinf(value):
        raise ValueError(f"{owner}: '{arg}' must be finite, got {value}")
    return value


def _flag(owner: str, arg: str, value: Any) -> bool:
    if not isinstance(value, (bool, int)) or value not in (0, 1):
        raise TypeError(f"{owner}: '{arg}' must be True or False, got {describe(value)}")
    return bool(value)


def _name(owner: str, value: Any, default: str) -> str:
    if value is None:  # Keras's own docs deserialize configs with "name": None
        return default
    if not isinstance(value, str):
        raise TypeError(f"{owner}: 'name' must be a string, got {describe(value)}")
    return value


def _cosine(fraction: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * fraction))


class LearningRateSchedule:
    """Base class. Subclasses implement `__call__(step)` and `get_config()`.

    Only the built-in schedules can run inside the engine; for a rule written in Python, use
    the `ferrax.callbacks.LearningRateScheduler` callback (it sets the rate once per epoch).
    """

    def __call__(self, step: Any) -> float:
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override "
            f"`__call__(self, step)`")

    def get_config(self) -> Config:
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `get_config()` "
            f"in order to be serializable")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls(**config)

    def _core_spec(self) -> Config:
        raise TypeError(
            f"Learning rate schedule '{type(self).__name__}' is written in Python, so the "
            f"engine cannot evaluate it at each step. Use one of the built-in schedules "
            f"({', '.join(sorted(n for n in _BUILTIN))}) or set the rate per epoch with "
            f"ferrax.callbacks.LearningRateScheduler")

    def __repr__(self) -> str:
        try:
            config = self.get_config()
        except NotImplementedError:
            return object.__repr__(self)
        args = ", ".join(f"{k}={v!r}" for k, v in config.items() if k != "name")
        return f"{type(self).__name__}({args})"


class _Builtin(LearningRateSchedule):
    """A schedule the engine implements: its spec is its config minus the name."""

    def _core_spec(self) -> Config:
        spec: Config = {"name": snake_case(type(self).__name__)}
        spec.update({k: v for k, v in self.get_config().items() if k != "name"})
        return spec


class ExponentialDecay(_Builtin):
    """`initial_learning_rate * decay_rate ** (step / decay_steps)`; with `staircase=True`
    the exponent is `floor(step / decay_steps)`."""

    def __init__(self, initial_learning_rate: float, decay_steps: float, decay_rate: float,
                 staircase: bool = False, name: str = "ExponentialDecay") -> None:
        owner = type(self).__name__
        self.initial_learning_rate = _finite(owner, "initial_learning_rate",
                                             initial_learning_rate, low=0)
        self.decay_steps = _finite(owner, "decay_steps", decay_steps, low=0, low_open=True)
        self.decay_rate = _finite(owner, "decay_rate", decay_rate, low=0)
        self.staircase = _flag(owner, "staircase", staircase)
        self.name = _name(owner, name, "ExponentialDecay")

    def __call__(self, step: Any) -> float:
        p = _step(type(self).__name__, step) / float(self.decay_steps)
        if self.staircase:
            p = math.floor(p)
        return float(self.initial_learning_rate) * float(self.decay_rate) ** p

    def get_config(self) -> Config:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(_Builtin):
    """`initial_learning_rate / (1 + decay_rate * step / decay_steps)`; with
    `staircase=True`, `step / decay_steps` is floored."""

    def __init__(self, initial_learning_rate: float, decay_steps: float, decay_rate: float,
                 staircase: bool = False, name: str = "InverseTimeDecay") -> None:
        owner = type(self).__name__
        self.initial_learning_rate = _finite(owner, "initial_learning_rate",
                                             initial_learning_rate, low=0)
        self.decay_steps = _finite(owner, "decay_steps", decay_steps, low=0, low_open=True)
        self.decay_rate = _finite(owner, "decay_rate", decay_rate, low=0)
        self.staircase = _flag(owner, "staircase", staircase)
        self.name = _name(owner, name, "InverseTimeDecay")

    def __call__(self, step: Any) -> float:
        p = _step(type(self).__name__, step) / float(self.decay_steps)
        if self.staircase:
            p = math.floor(p)
        return float(self.initial_learning_rate) / (1.0 + float(self.decay_rate) * p)

    def get_config(self) -> Config:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(_Builtin):
    """`values[0]` while `step <= boundaries[0]`, `values[i]` while
    `boundaries[i-1] < step <= boundaries[i]`, `values[-1]` after the last boundary."""

    def __init__(self, boundaries: Sequence[float], values: Sequence[float],
                 name: str = "PiecewiseConstant") -> None:
        owner = type(self).__name__
        for arg, seq in (("boundaries", boundaries), ("values", values)):
            if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__"):
                raise TypeError(f"{owner}: '{arg}' must be a list of numbers, got "
                                f"{describe(seq)}")
        boundaries = [b.item() if hasattr(b, "item") else b for b in boundaries]
        values = [v.item() if hasattr(v, "item") else v for v in values]
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"{owner}: 'values' must have one more element than "
                             f"'boundaries', got boundaries={boundaries} of length "
                             f"{len(boundaries)} and values={values} of length {len(values)}")
        for i, b in enumerate(boundaries):
            _finite(owner, f"boundaries[{i}]", b)
        for a, b in zip(boundaries, boundaries[1:]):
            if not b > a:
                raise ValueError(f"{owner}: 'boundaries' must be strictly increasing, got "
                                 f"{boundaries}")
        for i, v in enumerate(values):
            _finite(owner, f"values[{i}]", v, low=0)
        self.boundaries = list(boundaries)
        self.values = list(values)
        self.name = _name(owner, name, "PiecewiseConstant")

    def __call__(self, step: Any) -> float:
        s = _step(type(self).__name__, step)
        for b, v in zip(self.boundaries, self.values):
            if s <= b:
                return float(v)
        return float(self.values[-1])

    def get_config(self) -> Config:
        return {"boundaries": list(self.boundaries), "values": list(self.values),
                "name": self.name}


class PolynomialDecay(_Builtin):
    """`(initial - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end`; with
    `cycle=True`, `decay_steps` is first multiplied by `ceil(step / decay_steps)` (1 at
    step 0)."""

    def __init__(self, initial_learning_rate: float, decay_steps: float,
                 end_learning_rate: float = 0.0001, power: float = 1.0, cycle: bool = False,
                 name: str = "PolynomialDecay") -> None:
        owner = type(self).__name__
        self.initial_learning_rate = _finite(owner, "initial_learning_rate",
                                             initial_learning_rate, low=0)
        self.decay_steps = _finite(owner, "decay_steps", decay_steps, low=0, low_open=True)
        self.end_learning_rate = _finite(owner, "end_learning_rate", end_learning_rate, low=0)
        self.power = _finite(owner, "power", power, low=0)
        self.cycle = _flag(owner, "cycle", cycle)
        self.name = _name(owner, name, "PolynomialDecay")

    def __call__(self, step: Any) -> float:
        s = _step(type(self).__name__, step)
        steps = float(self.decay_steps)
        if self.cycle:
            steps *= 1.0 if s == 0 else math.ceil(s / steps)
        else:
            s = min(s, steps)
        lr0, lr1 = float(self.initial_learning_rate), float(self.end_learning_rate)
        return (lr0 - lr1) * (1.0 - s / steps) ** float(self.power) + lr1

    def get_config(self) -> Config:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class CosineDecay(_Builtin):
    """Optional linear warmup from `initial_learning_rate` to `warmup_target` over
    `warmup_steps`, then cosine decay over `decay_steps` from the warmup target (or the
    initial rate when `warmup_target` is None) down to `alpha` times it."""

    def __init__(self, initial_learning_rate: float, decay_steps: float, alpha: float = 0.0,
                 name: str = "CosineDecay", warmup_target: float | None = None,
                 warmup_steps: float = 0) -> None:
        owner = type(self).__name__
        self.initial_learning_rate = _finite(owner, "initial_learning_rate",
                                             initial_learning_rate, low=0)
        self.decay_steps = _finite(owner, "decay_steps", decay_steps, low=0, low_open=True)
        self.alpha = _finite(owner, "alpha", alpha, low=0, high=1)
        self.name = _name(owner, name, "CosineDecay")
        if warmup_target is not None:
            _finite(owner, "warmup_target", warmup_target, low=0)
        self.warmup_target = warmup_target
        self.warmup_steps = _finite(owner, "warmup_steps", warmup_steps, low=0)

    def _decay(self, s: float, peak: float) -> float:
        alpha = float(self.alpha)
        return peak * ((1.0 - alpha) * _cosine(s / float(self.decay_steps)) + alpha)

    def __call__(self, step: Any) -> float:
        s = _step(type(self).__name__, step)
        decay_steps = float(self.decay_steps)
        lr0 = float(self.initial_learning_rate)
        if self.warmup_target is None:
            return self._decay(min(s, decay_steps), lr0)
        warmup_steps = float(self.warmup_steps)
        target = float(self.warmup_target)
        s = min(s, decay_steps + warmup_steps)
        if s < warmup_steps:
            return (target - lr0) * (s / warmup_steps) + lr0
        return self._decay(s - warmup_steps, target)

    def get_config(self) -> Config:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(_Builtin):
    """Cosine decay (SGDR) that restarts: the first period lasts `first_decay_steps`, each
    next one `t_mul` times longer and starting from `m_mul` times the previous peak; within a
    period the rate goes from its peak down to `alpha * initial_learning_rate`."""

    def __init__(self, initial_learning_rate: float, first_decay_steps: float, t_mul: float = 2.0,
                 m_mul: float = 1.0, alpha: float = 0.0, name: str = "SGDRDecay") -> None:
        owner = type(self).__name__
        self.initial_learning_rate = _finite(owner, "initial_learning_rate",
                                             initial_learning_rate, low=0)
        self.first_decay_steps = _finite(owner, "first_decay_steps", first_decay_steps, low=0,
                                         low_open=True)
        self.t_mul = _finite(owner, "t_mul", t_mul, low=0, low_open=True)
        self.m_mul = _finite(owner, "m_mul", m_mul, low=0)
        self.alpha = _finite(owner, "alpha", alpha, low=0, high=1)
        self.name = _name(owner, name, "SGDRDecay")

    def _restart(self, fraction: float) -> tuple[int, float] | None:
        """(index of the period, fraction of it completed) for `fraction` = step divided by
        the first period's length; None past the end of all periods (t_mul < 1 only)."""
        t = float(self.t_mul)
        if t == 1.0:
            i = math.floor(fraction)
            return i, fraction - i
        x = 1.0 - fraction * (1.0 - t)
        if x <= 0.0:
            return None
        # Period i starts at sum_{k<i} t^k = (1 - t^i) / (1 - t). Rounding can put the closed
        # form one period off at an exact restart; step it onto the right one.
        i = math.floor(math.log(x) / math.log(t))

        def start(k: int) -> float:
            return (1.0 - t ** k) / (1.0 - t)

        if i > 0 and start(i) > fraction:
            i -= 1
        elif start(i + 1) <= fraction:
            i += 1
        return i, (fraction - start(i)) / t ** i

    def __call__(self, step: Any) -> float:
        s = _step(type(self).__name__, step)
        alpha = float(self.alpha)
        restart = self._restart(s / float(self.first_decay_steps))
        if restart is None:  # shrinking periods (t_mul < 1) have all ended: stay at the floor
            return float(self.initial_learning_rate) * alpha
        i, fraction = restart
        decayed = (1.0 - alpha) * float(self.m_mul) ** i * _cosine(fraction) + alpha
        return float(self.initial_learning_rate) * decayed

    def get_config(self) -> Config:
        return {"initial_learning_rate": self.initial_learning_rate,
                "first_decay_steps": self.first_decay_steps, "t_mul": self.t_mul,
                "m_mul": self.m_mul, "alpha": self.alpha, "name": self.name}


_BUILTIN: dict[str, type[LearningRateSchedule]] = {
    c.__name__: c for c in (ExponentialDecay, InverseTimeDecay, PiecewiseConstantDecay,
                            PolynomialDecay, CosineDecay, CosineDecayRestarts)}


def serialize(learning_rate_schedule: LearningRateSchedule) -> Config:
    """A JSON-able dict `{"module", "class_name", "config", "registered_name"}`."""
    if not isinstance(learning_rate_schedule, LearningRateSchedule):
        raise TypeError(f"serialize expects a LearningRateSchedule, got "
                        f"{describe(learning_rate_schedule)}")
    cls = type(learning_rate_schedule)
    builtin = _BUILTIN.get(cls.__name__) is cls
    return {"module": "ferrax.optimizers.schedules" if builtin else cls.__module__,
            "class_name": cls.__name__, "config": learning_rate_schedule.get_config(),
            "registered_name": None if builtin else cls.__name__}


def deserialize(config: dict[str, Any],
                custom_objects: Mapping[str, type[LearningRateSchedule]] | None = None
                ) -> LearningRateSchedule:
    """A schedule from `serialize`'s output (or a Keras-serialized one)."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"deserialize expects a dict with 'class_name' and 'config', got "
                         f"{describe(config)}")
    name = config["class_name"]
    classes = dict(_BUILTIN)
    classes.update(custom_objects or {})
    cls = classes.get(name) or classes.get(config.get("registered_name") or "")
    if cls is None:
        raise ValueError(f"Unknown learning rate schedule {name!r}. Expected one of: "
                         f"{', '.join(sorted(_BUILTIN))} (or pass it in custom_objects)")
    return cls.from_config(dict(config.get("config") or {}))


def get(identifier: LearningRateSchedule | dict[str, Any] | None
        ) -> LearningRateSchedule | None:
    """A schedule from an instance, a serialized dict, or None (returned as is)."""
    if identifier is None or isinstance(identifier, LearningRateSchedule):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        raise ValueError(f"A learning rate schedule cannot be built from the name "
                         f"{identifier!r} alone: it needs arguments. Create one, e.g. "
                         f"ExponentialDecay(0.01, decay_steps=1000, decay_rate=0.9)")
    if isinstance(identifier, numbers.Real):
        raise TypeError(f"{identifier!r} is a constant learning rate, not a schedule")
    raise TypeError(f"Could not interpret learning rate schedule {describe(identifier)}")
