"""BatchNormalization and LayerNormalization."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from ferrax import initializers, regularizers
from ferrax._serial import check_number, describe
from ferrax._typing import Config
from ferrax.layers.base import Layer
from ferrax.layers.core import InitializerLike, RegularizerLike


def _axis(owner: str, axis: Any, allow_list: bool) -> int | list[int]:
    def one(a: Any) -> int:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"{owner}: 'axis' must be an integer"
                            f"{' or a list of integers' if allow_list else ''}, "
                            f"got {describe(axis)}")
        return int(a)

    if allow_list and isinstance(axis, (list, tuple)):
        if not axis:
            raise ValueError(f"{owner}: 'axis' must not be empty")
        return [one(a) for a in axis]
    return one(axis)


class _Normalization(Layer):
    """gamma / beta arguments shared by both normalizations."""

    def _init_affine(self, owner: str, epsilon: float, center: bool, scale: bool,
                     beta_initializer: InitializerLike, gamma_initializer: InitializerLike,
                     beta_regularizer: RegularizerLike, gamma_regularizer: RegularizerLike,
                     beta_constraint: Any, gamma_constraint: Any) -> None:
        self.epsilon = float(check_number(owner, "epsilon", epsilon, low=0.0, low_open=True))
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        for arg, v in (("beta_constraint", beta_constraint),
                       ("gamma_constraint", gamma_constraint)):
            if v is not None:
                raise NotImplementedError(f"{owner}: '{arg}' is not supported yet")

    def _affine_public_config(self) -> Config:
        return {"epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer)}

    def _affine_engine_config(self) -> Config:
        def reg(r: regularizers.Regularizer | None) -> dict[str, float] | None:
            return None if r is None else r._core_spec()

        return {"epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": self.beta_initializer._core_spec(),
                "gamma_initializer": self.gamma_initializer._core_spec(),
                "beta_regularizer": reg(self.beta_regularizer),
                "gamma_regularizer": reg(self.gamma_regularizer)}


class BatchNormalization(_Normalization):
    """Normalises each channel (the `axis`) with the batch's statistics in training and
    with moving averages of them at inference. Weights: gamma, beta (trainable),
    moving_mean, moving_variance (not trainable)."""

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True,
                 beta_initializer: InitializerLike = "zeros",
                 gamma_initializer: InitializerLike = "ones",
                 moving_mean_initializer: InitializerLike = "zeros",
                 moving_variance_initializer: InitializerLike = "ones",
                 beta_regularizer: RegularizerLike = None,
                 gamma_regularizer: RegularizerLike = None, beta_constraint: Any = None,
                 gamma_constraint: Any = None, synchronized: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"BatchNormalization '{self.name}'"
        axis_value = _axis(owner, axis, allow_list=False)
        assert isinstance(axis_value, int)
        self.axis: int = axis_value
        self.momentum = float(check_number(owner, "momentum", momentum, low=0.0, high=1.0))
        self._init_affine(owner, epsilon, center, scale, beta_initializer, gamma_initializer,
                          beta_regularizer, gamma_regularizer, beta_constraint,
                          gamma_constraint)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.synchronized = bool(synchronized)

    def _public_config(self) -> Config:
        return {"axis": self.axis, "momentum": self.momentum, **self._affine_public_config(),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(
                    self.moving_variance_initializer),
                "synchronized": self.synchronized}

    def _engine_config(self) -> Config:
        return {"axis": self.axis, "momentum": self.momentum, **self._affine_engine_config(),
                "moving_mean_initializer": self.moving_mean_initializer._core_spec(),
                "moving_variance_initializer": self.moving_variance_initializer._core_spec()}


class LayerNormalization(_Normalization):
    """Normalises each sample over its trailing `axis` (default the last), then scales by
    gamma and shifts by beta (shaped like those axes)."""

    def __init__(self, axis: int | Sequence[int] = -1, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, rms_scaling: bool = False,
                 beta_initializer: InitializerLike = "zeros",
                 gamma_initializer: InitializerLike = "ones",
                 beta_regularizer: RegularizerLike = None,
                 gamma_regularizer: RegularizerLike = None, beta_constraint: Any = None,
                 gamma_constraint: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"LayerNormalization '{self.name}'"
        self.axis = _axis(owner, axis, allow_list=True)
        if rms_scaling:
            raise NotImplementedError(f"{owner}: 'rms_scaling' is not supported yet")
        self._init_affine(owner, epsilon, center, scale, beta_initializer, gamma_initializer,
                          beta_regularizer, gamma_regularizer, beta_constraint,
                          gamma_constraint)

    def _public_config(self) -> Config:
        return {"axis": self.axis, **self._affine_public_config(), "rms_scaling": False}

    def _engine_config(self) -> Config:
        return {"axis": self.axis, **self._affine_engine_config()}
