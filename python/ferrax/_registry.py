"""The classes a saved file may name. A file never makes ferrax import a module:
a class it names is one of ferrax's own, one registered with
`register_keras_serializable`, or one passed as `custom_objects`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_REGISTERED: dict[str, Any] = {}  # "package>Name" -> class
_SCOPES: list[Mapping[str, Any]] = []  # custom_objects of the loads under way


def register_keras_serializable(package: str = "Custom", name: str | None = None
                                ) -> Callable[[T], T]:
    """A class decorator: files that name the class (saved models, configs) can be
    loaded without passing it as `custom_objects`.

    Args:
        package: A namespace for the name ("Custom" by default).
        name: The registered name; the class's own name by default.

    Example:

    >>> @ferrax.saving.register_keras_serializable(package="my_layers")
    ... class Scale(ferrax.layers.Layer):
    ...     def call(self, x):
    ...         return x * 2.0
    """
    def decorate(cls: T) -> T:
        key = f"{package}>{name or getattr(cls, '__name__', '')}"
        if key in _REGISTERED and _REGISTERED[key] is not cls:
            raise ValueError(f"register_keras_serializable: '{key}' is already registered "
                             f"to {_REGISTERED[key]!r}")
        _REGISTERED[key] = cls
        cls._registered_name = key  # type: ignore[attr-defined]
        return cls
    return decorate


def get_registered_name(obj: Any) -> str:
    """The name a file stores for `obj`'s class: "package>Name" when registered."""
    cls = obj if isinstance(obj, type) else type(obj)
    key = cls.__dict__.get("_registered_name")
    return key if key is not None else cls.__name__


def get_registered_object(name: str, custom_objects: Mapping[str, Any] | None = None,
                          module_objects: Mapping[str, Any] | None = None) -> Any:
    """The class a file's name stands for, or None: from `custom_objects` (and those of
    a load under way), then the registry, then `module_objects`."""
    for scope in [custom_objects or {}, *reversed(_SCOPES)]:
        if name in scope:
            return scope[name]
        short = name.split(">")[-1]
        if short in scope:
            return scope[short]
    if name in _REGISTERED:
        return _REGISTERED[name]
    by_short = [c for k, c in _REGISTERED.items() if k.split(">")[-1] == name]
    if len(by_short) == 1:
        return by_short[0]
    if module_objects and name in module_objects:
        return module_objects[name]
    return None


def get_custom_objects() -> dict[str, Any]:
    """The registered classes, by registered name."""
    return dict(_REGISTERED)


@contextlib.contextmanager
def custom_object_scope(custom_objects: Mapping[str, Any] | None) -> Iterator[None]:
    """Within the block, configs and files may name the classes in `custom_objects`."""
    _SCOPES.append(dict(custom_objects or {}))
    try:
        yield
    finally:
        _SCOPES.pop()


def unknown_class(name: str) -> ValueError:
    return ValueError(f"unknown class '{name}': pass custom_objects={{'{name.split('>')[-1]}'"
                      f": ...}} to load_model, or register it with "
                      f"ferrax.saving.register_keras_serializable")


def layer_class(name: str) -> Any:
    """A layer class (or model class) a config names, ferrax's own included."""
    from ferrax import layers as layers_module
    from ferrax.layers.base import Layer
    from ferrax.models.model import Model

    own = getattr(layers_module, name, None)
    if isinstance(own, type) and issubclass(own, Layer) and not name.startswith("_"):
        custom = get_registered_object(name) if ">" in name else None
        return custom or own
    found = get_registered_object(name)
    if isinstance(found, type) and issubclass(found, (Layer, Model)):
        return found
    raise unknown_class(name)
