"""Optimizers with Keras 3's names, defaults and update rules (run in the engine)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ferrax._serial import check_number, describe
from ferrax._typing import Config
from ferrax.optimizers import schedules  # noqa: F401  (ferrax.optimizers.schedules.X)

if TYPE_CHECKING:
    from typing_extensions import Self

    from ferrax._core import CoreModel

# What `learning_rate=` accepts: a number, a schedule, or a serialized schedule.
LearningRateLike = float | schedules.LearningRateSchedule | dict[str, Any]


class Optimizer:
    """Base: learning rate, weight decay and gradient clipping, as in Keras 3."""

    _name = "optimizer"
    _args: tuple[str, ...] = ()

    def __init__(self, learning_rate: LearningRateLike, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = None,
                 **kwargs: Any) -> None:
        owner = type(self).__name__
        unknown = set(kwargs) - {"use_ema", "ema_momentum", "ema_overwrite_frequency",
                                 "loss_scale_factor", "gradient_accumulation_steps"}
        if unknown:
            raise TypeError(f"{owner}: unexpected argument(s) {sorted(unknown)}")
        if isinstance(learning_rate, dict):
            learning_rate = schedules.deserialize(learning_rate)
        # A schedule is evaluated by the engine before every step.
        self._schedule: schedules.LearningRateSchedule | None = (
            learning_rate if isinstance(learning_rate, schedules.LearningRateSchedule) else None)
        self._learning_rate = (float(self._schedule(0)) if self._schedule is not None else
                               float(check_number(owner, "learning_rate", learning_rate, low=0)))
        for arg, v in (("weight_decay", weight_decay), ("clipnorm", clipnorm),
                       ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            if v is not None:
                check_number(owner, arg, v, low=0)
        if sum(v is not None for v in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(f"{owner}: only one of clipnorm, clipvalue and global_clipnorm can "
                             f"be set, got clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.name = name or self._name
        # set when compiled: the engine owns the live state
        self._core_model: CoreModel | None = None
        # a custom loop's state (apply_gradients), and the variables it was built for
        self._eager: Any = None
        self._eager_variables: list[Any] = []
        # The variables of the last update, when they were one model's weights: the
        # same objects again skip the checks that passed.
        self._model_step: tuple[Any, ...] | None = None

    @property
    def learning_rate(self) -> float:
        if self._schedule is not None:
            return float(self._schedule(self.iterations))
        # The Python value is authoritative: the setter passes it on to the engine.
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if self._schedule is not None:
            raise TypeError(f"{type(self).__name__}: the learning rate comes from a "
                            f"{type(self._schedule).__name__} schedule and cannot be set")
        self._learning_rate = float(check_number(type(self).__name__, "learning_rate", value,
                                                 low=0))
        # Before the engine is compiled it reads the value from _core_spec().
        if self._core_model is not None and self._core_model.learning_rate is not None:
            self._core_model.learning_rate = self._learning_rate
        if self._eager is not None:
            self._eager.learning_rate = self._learning_rate

    lr = learning_rate

    @property
    def iterations(self) -> int:
        """Updates made so far (by fit, or by apply_gradients in a custom loop)."""
        if self._core_model is not None:
            return int(self._core_model.iterations)
        return 0 if self._eager is None else int(self._eager.iterations)

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, Any]]) -> int:
        """One update of each variable from its gradient, by this optimizer's rule
        (with its clipping, weight decay and schedule), as in a custom training loop.

        Args:
            grads_and_vars: (gradient, variable) pairs; a None gradient leaves its
                variable (and its optimizer state) as it is.

        Returns:
            The number of updates made so far (`iterations`).

        Example:

        >>> with ferrax.GradientTape() as tape:
        ...     loss = ferrax.ops.sum(ferrax.ops.square(w - 1.0))
        >>> optimizer.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
        """
        pairs = list(grads_and_vars)
        for k, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"{type(self).__name__}.apply_gradients: expected (gradient, "
                                f"variable) pairs, got {describe(pair)} at position {k}")
        return self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def apply(self, grads: Sequence[Any], trainable_variables: Sequence[Any] | None = None
              ) -> int:
        """`apply_gradients` with the gradients and the variables as two lists.

        Args:
            grads: One gradient (or None) per variable.
            trainable_variables: The variables (those of the first call when omitted).

        Example:

        >>> optimizer.apply(tape.gradient(loss, model.trainable_variables),
        ...                 model.trainable_variables)
        """
        import numpy as np

        from ferrax import _core
        from ferrax.layers.base import Variable as EngineWeight
        from ferrax.variables import Variable, variable_key

        owner = f"{type(self).__name__}.apply_gradients"
        from ferrax.models import _claims
        from ferrax.ops._nodes import LayerVariable

        grads = list(grads)
        variables = list(self._eager_variables if trainable_variables is None
                         else trainable_variables)
        known = self._model_step
        if known is not None and len(grads) == len(variables) == len(known) and all(
                a is b for a, b in zip(variables, known)):
            # (a custom loop's every step: the same weights of one model as last time)
            _claims.check_free(variables[0]._model, owner)
            arrays = _gradient_arrays(owner, grads, variables)
            self._eager.apply_to_model(variables[0]._model._built_core(),
                                       [v._index for v in variables], arrays)
            return self.iterations
        for k, v in enumerate(variables):
            if isinstance(v, LayerVariable):  # a custom layer's weight: where it is held
                if not v._holder.built:
                    raise ValueError(f"{owner}: variable {k} ('{v.path}') belongs to a layer "
                                     f"that has not run yet")
                variables[k] = v._holder.weights[0]
        if len(grads) != len(variables):
            raise ValueError(f"{owner}: {len(grads)} gradients for {len(variables)} variables")
        if not variables:
            raise ValueError(f"{owner}: no gradients and variables given")
        for k, v in enumerate(variables):
            if isinstance(v, EngineWeight):
                continue  # a model's weight, held in its engine
            if not isinstance(v, Variable) or v.dtype != "float32":
                raise TypeError(f"{owner}: variable {k} must be a float32 ferrax.Variable or "
                                f"a model's weight, got {describe(v)}")
        arrays = _gradient_arrays(owner, grads, variables)
        if self._eager is None:
            self._eager = _core.EagerOptimizer(json.dumps(self._core_spec()))
            self._eager_variables = list(variables)
        elif len(variables) != len(self._eager_variables) or any(
                variable_key(a) != variable_key(b)
                for a, b in zip(variables, self._eager_variables)):
            built = ", ".join(v.name for v in self._eager_variables)
            raise ValueError(f"{owner}: this optimizer was built for the variables [{built}]; "
                             f"give those, in that order (make another optimizer for others)")
        owners = {id(v._model): v._model for v in variables if isinstance(v, EngineWeight)}
        for model in owners.values():
            _claims.check_free(model, owner)
        if len(owners) == 1 and all(isinstance(v, EngineWeight) for v in variables):
            # one model's weights (model.trainable_variables): updated in its engine
            core = variables[0]._model._built_core()
            self._eager.apply_to_model(core, [v._index for v in variables], arrays)
            self._model_step = tuple(variables)
            return self.iterations
        # a model's weights are read from its engine once, and written back once
        engines: dict[int, tuple[Any, list[Any]]] = {}
        for v in variables:
            if isinstance(v, EngineWeight) and id(v._model) not in engines:
                core = v._model._built_core()
                engines[id(v._model)] = (core, core.get_weights())
        values = [engines[id(v._model)][1][v._index] if isinstance(v, EngineWeight)
                  else np.ascontiguousarray(v._value) for v in variables]
        for v, new in zip(variables, self._eager.apply(values, arrays)):
            if isinstance(v, EngineWeight):
                engines[id(v._model)][1][v._index] = new
            else:
                v._value = new  # a new array: a tape that read the old value keeps it
        for core, weights in engines.values():
            core.set_weights([np.ascontiguousarray(w) for w in weights])
        return self.iterations

    def _learning_rate_config(self) -> float | Config:
        if self._schedule is not None:
            return schedules.serialize(self._schedule)
        return self._learning_rate

    def get_config(self) -> Config:
        config: Config = {"name": self.name, "learning_rate": self._learning_rate_config()}
        config.update({a: getattr(self, a) for a in self._args})
        config.update(weight_decay=self.weight_decay, clipnorm=self.clipnorm,
                      clipvalue=self.clipvalue, global_clipnorm=self.global_clipnorm)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls(**config)

    def _core_spec(self) -> Config:
        spec: Config = {"name": self._name, "learning_rate": (
            self._schedule._core_spec() if self._schedule is not None else self._learning_rate)}
        spec.update({a: getattr(self, a) for a in self._args})
        spec.update(weight_decay=self.weight_decay, clipnorm=self.clipnorm,
                    clipvalue=self.clipvalue, global_clipnorm=self.global_clipnorm)
        return spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}(learning_rate={self.learning_rate})"


class SGD(Optimizer):
    _name, _args = "sgd", ("momentum", "nesterov")

    def __init__(self, learning_rate: LearningRateLike = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.momentum = float(check_number("SGD", "momentum", momentum, low=0, high=1))
        self.nesterov = bool(nesterov)


class RMSprop(Optimizer):
    _name, _args = "rmsprop", ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate: LearningRateLike = 0.001, rho: float = 0.9,
                 momentum: float = 0.0, epsilon: float = 1e-7, centered: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.rho = float(check_number("RMSprop", "rho", rho, low=0, high=1))
        self.momentum = float(check_number("RMSprop", "momentum", momentum, low=0, high=1))
        self.epsilon = float(check_number("RMSprop", "epsilon", epsilon, low=0))
        self.centered = bool(centered)


class Adam(Optimizer):
    _name, _args = "adam", ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate: LearningRateLike = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, amsgrad: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        owner = type(self).__name__
        self.beta_1 = float(check_number(owner, "beta_1", beta_1, low=0, high=1, high_open=True))
        self.beta_2 = float(check_number(owner, "beta_2", beta_2, low=0, high=1, high_open=True))
        self.epsilon = float(check_number(owner, "epsilon", epsilon, low=0))
        self.amsgrad = bool(amsgrad)


class AdamW(Adam):
    _name = "adamw"

    def __init__(self, learning_rate: LearningRateLike = 0.001, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad,
                         weight_decay=weight_decay, **kwargs)


class Adagrad(Optimizer):
    _name, _args = "adagrad", ("initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate: LearningRateLike = 0.001,
                 initial_accumulator_value: float = 0.1, epsilon: float = 1e-7,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = float(check_number(
            "Adagrad", "initial_accumulator_value", initial_accumulator_value, low=0))
        self.epsilon = float(check_number("Adagrad", "epsilon", epsilon, low=0))


class Nadam(Optimizer):
    _name, _args = "nadam", ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate: LearningRateLike = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = float(check_number("Nadam", "beta_1", beta_1, low=0, high=1,
                                         high_open=True))
        self.beta_2 = float(check_number("Nadam", "beta_2", beta_2, low=0, high=1,
                                         high_open=True))
        self.epsilon = float(check_number("Nadam", "epsilon", epsilon, low=0))


_CLASSES: dict[str, type[Optimizer]] = {
    "sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW, "adagrad": Adagrad,
    "nadam": Nadam}


def get(identifier: str | dict[str, Any] | Optimizer) -> Optimizer:
    """An Optimizer from a name ('adam'), a config dict or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _CLASSES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown optimizer {identifier!r}. Expected one of: "
                             f"{', '.join(sorted(_CLASSES))}")
        return cls()  # type: ignore[call-arg]  # every subclass defaults learning_rate
    if isinstance(identifier, dict) and "class_name" in identifier:
        return get(identifier["class_name"]).from_config(identifier.get("config", {}))
    raise TypeError(f"optimizer must be a name like 'adam' or a ferrax.optimizers object, "
                    f"got {describe(identifier)}")


def serialize(opt: Optimizer) -> Config:
    return {"class_name": type(opt).__name__, "config": opt.get_config()}


def _gradient_arrays(owner: str, grads: list[Any], variables: list[Any]) -> list[Any]:
    """Each gradient as a C-contiguous float32 array of its variable's shape (None
    kept: that variable is left as it is)."""
    import numpy as np

    if all(g is None for g in grads):
        names = ", ".join(v.name for v in variables)
        raise ValueError(f"{owner}: no gradient for any variable ({names}); does the loss "
                         f"depend on them, and was it computed under the GradientTape?")
    arrays: list[Any] = []
    for g, v in zip(grads, variables):
        if g is None:
            arrays.append(None)
            continue
        a = np.ascontiguousarray(g, dtype=np.float32)
        if a.shape != v.shape:
            raise ValueError(f"{owner}: the gradient of '{v.name}' has shape {a.shape}, "
                             f"the variable {v.shape}")
        arrays.append(a)
    return arrays
