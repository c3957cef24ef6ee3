"""Weight initializers with Keras's names and defaults (values drawn in the engine)."""

import json

from ferrax._serial import describe, snake_case


class Initializer:
    """Base class: subclasses set their config as attributes."""

    _args = ()

    def get_config(self):
        return {a: getattr(self, a) for a in self._args}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _core_spec(self):
        return {"name": snake_case(type(self).__name__), **self.get_config()}

    def __call__(self, shape, dtype=None):
        """Draw values for `shape` (float32 NumPy array)."""
        from ferrax import _core
        from ferrax.utils import _next_seed

        seed = self.get_config().get("seed")
        return _core.initializer_sample(
            json.dumps(self._core_spec()), list(shape), _next_seed() if seed is None else seed
        )

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _seeded(name, doc):
    def __init__(self, seed=None):
        self.seed = seed

    return type(name, (Initializer,), {"__init__": __init__, "_args": ("seed",), "__doc__": doc})


GlorotUniform = _seeded("GlorotUniform", "Uniform in ±sqrt(6 / (fan_in + fan_out)).")
GlorotNormal = _seeded("GlorotNormal", "Truncated normal, std sqrt(2 / (fan_in + fan_out)).")
HeNormal = _seeded("HeNormal", "Truncated normal, std sqrt(2 / fan_in).")
HeUniform = _seeded("HeUniform", "Uniform in ±sqrt(6 / fan_in).")
LecunNormal = _seeded("LecunNormal", "Truncated normal, std sqrt(1 / fan_in).")
LecunUniform = _seeded("LecunUniform", "Uniform in ±sqrt(3 / fan_in).")


class Zeros(Initializer):
    pass


class Ones(Initializer):
    pass


class Constant(Initializer):
    _args = ("value",)

    def __init__(self, value=0.0):
        self.value = float(value)


class RandomNormal(Initializer):
    _args = ("mean", "stddev", "seed")

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed


class RandomUniform(Initializer):
    _args = ("minval", "maxval", "seed")

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval, self.seed = float(minval), float(maxval), seed


class TruncatedNormal(Initializer):
    _args = ("mean", "stddev", "seed")

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed


class Orthogonal(Initializer):
    _args = ("gain", "seed")

    def __init__(self, gain=1.0, seed=None):
        self.gain, self.seed = float(gain), seed


class VarianceScaling(Initializer):
    _args = ("scale", "mode", "distribution", "seed")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling: 'mode' must be fan_in, fan_out or fan_avg, "
                             f"got {mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"VarianceScaling: 'distribution' must be truncated_normal, "
                             f"untruncated_normal or uniform, got {distribution!r}")
        self.scale, self.mode, self.distribution, self.seed = float(scale), mode, distribution, seed


_CLASSES = {
    snake_case(c.__name__): c
    for c in (GlorotUniform, GlorotNormal, HeNormal, HeUniform, LecunNormal, LecunUniform, Zeros,
              Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal, Orthogonal,
              VarianceScaling)
}


def get(identifier):
    """An Initializer from a name, a {'class_name', 'config'} dict or an instance."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        cls = _CLASSES.get(snake_case(identifier)) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"Unknown initializer {identifier!r}. Expected one of: "
                             f"{', '.join(sorted(_CLASSES))}")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return get(identifier["class_name"]).from_config(identifier.get("config", {}))
    raise TypeError(f"initializer must be a name or an Initializer, got {describe(identifier)}")


def serialize(initializer):
    return {"class_name": type(initializer).__name__, "config": initializer.get_config()}
