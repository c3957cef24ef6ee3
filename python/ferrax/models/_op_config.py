"""How a functional model's `ferrax.ops` calls between layers are saved in its config
and made again: an op is an entry like a layer's (class "Op"), its operands the tensors
it reads and the constants written into the code (saved as arrays)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ferrax._typing import Config
from ferrax.symbolic import KerasTensor, Node

OP_CLASS = "Op"
_ARRAY_CLASS = "__numpy__"


def op_entry(node: Node, tensor_config: Callable[[KerasTensor], Config]) -> Config:
    """The config entry of one op call; `tensor_config` describes a tensor it reads."""
    from ferrax.ops._nodes import _ConstantLayer

    layer = node.layer
    args: list[Any] = []
    for t in node.input_tensors:
        source = t.node.layer
        if isinstance(source, _ConstantLayer):
            args.append({"class_name": _ARRAY_CLASS,
                         "config": {"value": source.value.tolist(), "dtype": "float32"}})
        elif getattr(source, "_is_source", False):
            raise NotImplementedError(
                f"op '{layer.name}' reads a weight made outside any layer, which a model "
                f"config cannot hold; make the weight in a custom layer's build()")
        else:
            args.append(tensor_config(t))
    return {"class_name": OP_CLASS, "module": "ferrax.ops", "name": layer.name,
            "config": layer.get_config(), "inbound_nodes": [{"args": args, "kwargs": {}}]}


def is_constant(arg: Any) -> bool:
    return isinstance(arg, Mapping) and arg.get("class_name") == _ARRAY_CLASS


def replay_op(config: Mapping[str, Any], args: list[Any],
              resolve: Callable[[Any], KerasTensor]) -> KerasTensor:
    """The op of `config` called again on its operands (`resolve` finds a tensor)."""
    from ferrax.ops._nodes import _ConstantLayer, _OpLayer

    try:
        op, attrs = str(config["op"]), dict(config["attrs"])
        name, dtype = str(config["name"]), config.get("dtype")
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"Model config: an op entry lacks its name, op or attrs ({e})") from e
    tensors = []
    for arg in args:
        if is_constant(arg):
            value = np.asarray(arg["config"]["value"], dtype=np.float32)
            tensors.append(_ConstantLayer(value)._symbolic())
        else:
            tensors.append(resolve(arg))
    node = _OpLayer(op, attrs, name=name, dtype=None if dtype is None else str(dtype))
    try:
        return node._record(tensors)
    except ValueError as e:
        raise ValueError(f"Model config, op entry '{name}': {e}") from e
