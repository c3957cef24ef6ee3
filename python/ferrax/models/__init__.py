"""Models: Sequential, and the Model base class with training and inference."""

from __future__ import annotations

from typing import Any, TypeVar

from ferrax._typing import Config
from ferrax.models.model import Model
from ferrax.models.sequential import Sequential
from ferrax.saving import load_model

_M = TypeVar("_M", bound=Model)


def clone_model(model: _M, input_tensors: Any = None, clone_function: Any = None) -> _M:
    """A new model with the same architecture and freshly initialised weights."""
    if input_tensors is not None or clone_function is not None:
        raise NotImplementedError("clone_model: input_tensors and clone_function are not "
                                  "supported yet")
    from ferrax._registry import custom_object_scope
    from ferrax.models.functional import Functional, _renamed_config

    # The model's own classes (custom layers among them) rebuild its clone: no file is
    # read, so no class needs registering.
    own = {type(l).__name__: type(l) for l in _all_layers(model)}
    with custom_object_scope(own):
        if isinstance(model, Functional):
            return type(model).from_config(_renamed_config(model.get_config()))
        config = model.get_config()
        clone = type(model).from_config(config if model._is_subclassed() else _renamed(config))
    if model.built:
        clone.build((None, *model._input_shape))
    return clone


def _all_layers(model: Any) -> list[Any]:
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, Model):
            found += _all_layers(layer)
    return found


def _renamed(config: Config) -> Config:
    # Fresh layer names: a clone's layers must not share the original's.
    config = dict(config)
    config["layers"] = [{**{k: v for k, v in e.items() if k != "config"},
                         "config": {k: v for k, v in e["config"].items() if k != "name"}}
                        for e in config["layers"]]
    config.pop("name", None)
    return config


__all__ = ["Model", "Sequential", "clone_model", "load_model"]
