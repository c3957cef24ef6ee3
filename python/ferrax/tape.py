"""`GradientTape`: records eager op calls while it is open, then plays their
backward kernels (the engine's, the ones the fused loop runs) in reverse to give
the gradients of a target with respect to variables or watched tensors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ferrax._serial import describe
from ferrax.ops import _dispatch
from ferrax.symbolic import flatten, pack_like
from ferrax.tensor import Tensor
from ferrax.variables import Variable, variable_key


class GradientTape:
    """Records the ops run inside `with GradientTape() as tape:`, for `tape.gradient`.

    Trainable `ferrax.Variable`s an op reads are watched on their own; other tensors
    are watched with `tape.watch(t)`. Only what depends on a watched value is recorded.

    Args:
        persistent: Whether `gradient` may be called more than once (the record is
            kept until the tape is dropped).
        watch_accessed_variables: Whether trainable variables are watched when read.

    Example:

    >>> w = ferrax.Variable(np.ones((2,)))
    >>> x = np.array([3.0, 4.0])
    >>> with ferrax.GradientTape() as tape:
    ...     y = ferrax.ops.sum(w * x)
    >>> tape.gradient(y, w)   # x: [3., 4.]
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True) -> None:
        self.persistent = bool(persistent)
        self.watch_accessed_variables = bool(watch_accessed_variables)
        # what depends on a watched value, by id (the objects kept, so ids stay unique)
        self._tracked: dict[int, Any] = {}
        self._watched_variables: dict[Any, Any] = {}
        # per recorded op, in the order run: (result, op, attrs JSON, operands, arrays);
        # a model's call: (result, "", backward, [], [])
        self._records: list[tuple[Tensor, str, Any, list[Any], list[np.ndarray]]] = []
        self._used = False
        self._open = False

    # --- recording ---------------------------------------------------------------
    def __enter__(self) -> GradientTape:
        if self._open:
            raise RuntimeError("GradientTape: this tape is already open (a tape is entered "
                               "once at a time)")
        self._open = True
        _dispatch._TAPES.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._open = False
        if self in _dispatch._TAPES:
            _dispatch._TAPES.remove(self)

    @contextmanager
    def stop_recording(self) -> Iterator[None]:
        """Within it, ops are not recorded on this tape."""
        if not self._open:
            raise RuntimeError("GradientTape.stop_recording: the tape is not open (use it "
                               "inside `with tape:`)")
        _dispatch._TAPES.remove(self)
        try:
            yield
        finally:
            _dispatch._TAPES.append(self)

    def watch(self, tensor: Any) -> None:
        """Watch `tensor` (or each tensor of a list, tuple or dict): gradients with
        respect to it can then be asked for."""
        for t in flatten(tensor):
            if _is_engine_weight(t):
                self._tracked[variable_key(t)] = t
                continue
            if not isinstance(t, Tensor):
                raise TypeError(f"GradientTape.watch: expected a ferrax tensor or variable, "
                                f"got {describe(t)} (convert an array with "
                                f"ferrax.ops.convert_to_tensor first)")
            self._tracked[id(t)] = t
            if isinstance(t, Variable):
                self._watched_variables[id(t)] = t

    def watched_variables(self) -> list[Any]:
        """The variables this tape watches, in the order first watched."""
        return list(self._watched_variables.values())

    def _record(self, op: str, attrs: str, operands: list[Any], arrays: list[np.ndarray],
                out: Tensor) -> None:
        """Called for each eager op while the tape records (see `_dispatch`)."""
        depends = [self._depends(o) for o in operands]  # (each read variable watched)
        if not any(depends) or out._value.dtype != np.float32:
            return  # (an integer or boolean result carries no gradient)
        self._tracked[id(out)] = out
        self._records.append((out, op, attrs, list(operands), arrays))

    def _record_call(self, owner: str, sources: list[Any], variables: list[Any],
                     outs: list[Tensor], backward: Any) -> None:
        """Records a model's call as one node: `backward(dys, want)` takes the outputs'
        gradients (None for an output without one) and gives (weight, gradient) pairs
        from the engine's own backward pass, and (source, gradient) for each input
        tensor in `sources` that `want` asks for."""
        if self.watch_accessed_variables:
            for v in variables:
                self._tracked[variable_key(v)] = v
        want = [s is not None and self._depends(s) for s in sources]
        if not any(want) and not any(variable_key(v) in self._tracked for v in variables):
            return
        for o in outs:
            self._tracked[id(o)] = o
        self._records.append((tuple(outs), "", backward, want, []))  # type: ignore[arg-type]

    def _depends(self, x: Any) -> bool:
        """Whether an op's operand or a call's input carries a gradient on this tape:
        it depends on a watched value, or it is a trainable variable, watched as it is
        read."""
        key = variable_key(x)
        if key in self._tracked:
            return True
        if self.watch_accessed_variables and (isinstance(x, Variable) or _is_engine_weight(x)) \
                and x.trainable:
            self._tracked[key] = x
            self._watched_variables[key] = x
            return True
        return False

    def _tracks(self, t: Any) -> bool:
        """Whether `t` depends on something this tape watches."""
        return variable_key(t) in self._tracked

    # --- gradients ---------------------------------------------------------------
    def gradient(self, target: Any, sources: Any, output_gradients: Any = None,
                 unconnected_gradients: str = "none") -> Any:
        """The gradient of `target` (summed over its entries, and over the tensors when
        it is a list) with respect to each of `sources`, in their structure.

        Args:
            target: A tensor computed under the tape (or a list of them).
            sources: A variable or watched tensor, or a list, tuple or dict of them.
            output_gradients: The gradient of `target` to start from (ones by default).
            unconnected_gradients: "none" (a source the target does not depend on gets
                None, as TensorFlow does) or "zero".

        Returns:
            One float32 tensor (or None) per source, in the structure of `sources`.
        """
        from ferrax import _core

        if unconnected_gradients not in ("none", "zero"):
            raise ValueError(f"GradientTape.gradient: unconnected_gradients must be 'none' or "
                             f"'zero', got {unconnected_gradients!r}")
        if self._used and not self.persistent:
            raise RuntimeError("GradientTape.gradient: this tape's record was used by an "
                               "earlier gradient() call and released; make it with "
                               "GradientTape(persistent=True) to ask more than once")
        flat_sources = flatten(sources)
        for k, s in enumerate(flat_sources):
            if _is_engine_weight(s):
                continue  # a model's weight: its gradient comes from the model's call
            if not isinstance(s, Tensor):
                raise TypeError(f"GradientTape.gradient: source {k} is {describe(s)}; sources "
                                f"are variables or tensors the tape watches")
            if s._value.dtype != np.float32:
                what = getattr(s, "name", "a tensor")
                raise ValueError(f"GradientTape.gradient: source {k} ({what}) is {s.dtype}; "
                                 f"only float tensors have gradients")
        grads: dict[Any, np.ndarray] = {}
        targets = flatten(target)
        seeds = flatten(output_gradients) if output_gradients is not None else \
            [None] * len(targets)
        if len(seeds) != len(targets):
            raise ValueError(f"GradientTape.gradient: {len(targets)} target(s) but "
                             f"{len(seeds)} output gradient(s)")
        for t, seed in zip(targets, seeds):
            if not isinstance(t, Tensor):
                raise TypeError(f"GradientTape.gradient: the target must be a tensor computed "
                                f"under the tape, got {describe(t)}")
            start = np.ones(t.shape, np.float32) if seed is None else \
                np.array(np.broadcast_to(np.asarray(seed, np.float32), t.shape), order="C")
            _accumulate(grads, variable_key(t), start)
        tracked = self._tracked
        for out, op, attrs, operands, arrays in reversed(self._records):
            if not op:  # a model's call: the engine's backward (to its inputs if tracked)
                dys = [grads.get(id(o)) for o in out]
                if all(d is None for d in dys):
                    continue
                for v, dv in attrs(dys, operands):
                    if (key := variable_key(v)) in tracked:
                        _accumulate(grads, key, dv)
                continue
            g = grads.get(id(out))
            if g is None:
                continue
            y = np.ascontiguousarray(out._value, dtype=np.float32)
            for o, dx in zip(operands, _core.op_vjp(op, attrs, arrays, y, g)):
                if (key := variable_key(o)) in tracked:
                    _accumulate(grads, key, dx)
        if not self.persistent:
            self._used = True
            self._records, self._tracked = [], {}
        results: list[Tensor | None] = []
        for s in flat_sources:
            g = grads.get(variable_key(s))
            if g is None and unconnected_gradients == "zero":
                g = np.zeros(s.shape, np.float32)
            results.append(None if g is None else Tensor(g))
        return pack_like(sources, results)


def _is_engine_weight(x: Any) -> bool:
    """A weight held in an engine: a model's, or a custom layer's `add_weight`."""
    return getattr(x, "_tape_key", None) is not None


def _accumulate(grads: dict[Any, np.ndarray], key: Any, g: np.ndarray) -> None:
    """Adds `g` to the gradient of the value known by `key` (`variable_key`)."""
    have = grads.get(key)
    grads[key] = g if have is None else have + g
