"""Weight initializers with Keras's names and defaults (values drawn in the engine)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ferrax._serial import describe, snake_case
from ferrax._typing import Config, Float32Array

if TYPE_CHECKING:
    from typing_extensions import Self


class Initializer:
    """Base class: subclasses set their config as attributes."""

    _args: tuple[str, ...] = ()

    def get_config(self) -> Config:
        return {a: getattr(self, a) for a in self._args}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls(**config)

    def _core_spec(self) -> Config:
        return {"name": snake_case(type(self).__name__), **self.get_config()}

    def __call__(self, shape: Iterable[int], dtype: Any = None) -> Float32Array:
        """Draw values for `shape` (float32 NumPy array)."""
        from ferrax import _core
        from ferrax.utils import _next_seed

        seed = self.get_config().get("seed")
        return _core.initializer_sample(
            json.dumps(self._core_spec()), list(shape), _next_seed() if seed is None else seed
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _Seeded(Initializer):
    """An initializer whose only argument is its seed."""

    _args = ("seed",)

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed


class GlorotUniform(_Seeded):
    """Uniform in ±sqrt(6 / (fan_in + fan_out))."""


class GlorotNormal(_Seeded):
    """Truncated normal, std sqrt(2 / (fan_in + fan_out))."""


class HeNormal(_Seeded):
    """Truncated normal, std sqrt(2 / fan_in)."""


class HeUniform(_Seeded):
    """Uniform in ±sqrt(6 / fan_in)."""


class LecunNormal(_Seeded):
    """Truncated normal, std sqrt(1 / fan_in)."""


class LecunUniform(_Seeded):
    """Uniform in ±sqrt(3 / fan_in)."""


class Zeros(Initializer):
    pass


class Ones(Initializer):
    pass


class Constant(Initializer):
    _args = ("value",)

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)


class RandomNormal(Initializer):
    _args = ("mean", "stddev", "seed")

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None
                 ) -> None:
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed


class RandomUniform(Initializer):
    _args = ("minval", "maxval", "seed")

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None
                 ) -> None:
        self.minval, self.maxval, self.seed = float(minval), float(maxval), seed


class TruncatedNormal(Initializer):
    _args = ("mean", "stddev", "seed")

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None
                 ) -> None:
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed


class Orthogonal(Initializer):
    _args = ("gain", "seed")

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        self.gain, self.seed = float(gain), seed


class VarianceScaling(Initializer):
    _args = ("scale", "mode", "distribution", "seed")

    def __init__(self, scale: float = 1.0, mode: str = "fan_in",
                 distribution: str = "truncated_normal", seed: int | None = None) -> None:
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling: 'mode' must be fan_in, fan_out or fan_avg, "
                             f"got {mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"VarianceScaling: 'distribution' must be truncated_normal, "
                             f"untruncated_normal or uniform, got {distribution!r}")
        self.scale, self.mode, self.distribution, self.seed = float(scale), mode, distribution, seed


_CLASSES: dict[str, type[Initializer]] = {
    snake_case(c.__name__): c
    for c in (GlorotUniform, GlorotNormal, HeNormal, HeUniform, LecunNormal, LecunUniform, Zeros,
              Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal, Orthogonal,
              VarianceScaling)
}


# Short names Keras also accepts (Embedding's default is "uniform").
_ALIASES = {"uniform": "random_uniform", "normal": "random_normal"}


def get(identifier: str | dict[str, Any] | Initializer) -> Initializer:
    """An Initializer from a name, a {'class_name', 'config'} dict or an instance."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        name = _ALIASES.get(identifier, identifier)
        cls = _CLASSES.get(snake_case(name)) or _CLASSES.get(name)
        if cls is None:
            raise ValueError(f"Unknown initializer {identifier!r}. Expected one of: "
                             f"{', '.join(sorted(_CLASSES))}")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return get(identifier["class_name"]).from_config(identifier.get("config", {}))
    raise TypeError(f"initializer must be a name or an Initializer, got {describe(identifier)}")


def serialize(initializer: Initializer) -> Config:
    return {"class_name": type(initializer).__name__, "config": initializer.get_config()}
