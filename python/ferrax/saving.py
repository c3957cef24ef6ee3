"""Model and weight files.

A `.ferrax` file is a safetensors file: the weights and the optimizer's state
as float32 tensors, and in its metadata the architecture (each layer's
get_config()), the compile settings and the training counters, as JSON.
Loading never unpickles and never runs code: files are untrusted input, and
every problem becomes a ValueError that names the file.
`.weights.safetensors` files hold the weights alone and load in any
safetensors reader.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ferrax import _core, _memory
from ferrax._registry import (
    custom_object_scope,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
)
from ferrax._typing import Float32Array, PathLike

if TYPE_CHECKING:
    from ferrax.models import Model

__all__ = ["custom_object_scope", "get_custom_objects", "get_registered_name",
           "get_registered_object", "load_model", "load_weights", "register_keras_serializable",
           "save_model", "save_weights"]

FORMAT = "ferrax"
WEIGHTS_FORMAT = "ferrax-weights"
# Bump when the layout changes; readers accept every version up to their own.
FORMAT_VERSION = 1
MODEL_SUFFIX = ".ferrax"
WEIGHTS_SUFFIX = ".weights.safetensors"



def atomic_write(path: PathLike, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`:
    a crash or kill mid-write leaves the previous file intact. Temporary files of
    `path` that a killed save left behind are removed first."""
    target = Path(path)
    _remove_stale_temporaries(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# Where the writer's process cannot be asked about (Windows), a temporary file this
# old is taken for a killed save's.
_STALE_AFTER_S = 3600.0


def _remove_stale_temporaries(target: Path) -> list[Path]:
    """Removes the temporary files of saves to `target` whose process is gone (killed
    mid-save); a save still running in another process keeps its own. Returns them."""
    import glob
    import time

    removed: list[Path] = []
    try:
        candidates = list(target.parent.glob(f".{glob.escape(target.name)}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        # ".{name}.{pid}.{12 hex}.tmp", or ".{name}.{12 hex}.tmp" (before the pid): any
        # other name matching the pattern is another target's (".{name}.x.{pid}...")
        middle = tmp.name[len(target.name) + 2:-len(".tmp")].split(".")
        if not _is_save_id(middle[-1]) or len(middle) > 2 or (
                len(middle) == 2 and not middle[0].isdigit()):
            continue
        pid = int(middle[0]) if len(middle) == 2 else None
        try:
            if pid is not None and os.name == "posix":
                stale = not _process_alive(pid)
            else:  # (an earlier version's name, without the pid; or no way to ask)
                stale = pid is None or time.time() - tmp.stat().st_mtime > _STALE_AFTER_S
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue  # (gone already, or not ours to remove)
    return removed


def _is_save_id(part: str) -> bool:
    """Whether `part` is a temporary file's random id (12 hex digits)."""
    return len(part) == 12 and all(c in "0123456789abcdef" for c in part)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # (another thread of this process may be saving)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # (someone else's process)
    return True


def _check_suffix(path: PathLike, suffix: str, what: str, other: str) -> None:
    if not str(path).endswith(suffix):
        raise ValueError(f"{what} files must end in '{suffix}', got {str(path)!r}{other}")


def _save_target(model: Model, filepath: PathLike, overwrite: bool, suffix: str, what: str,
                 other: str) -> Path:
    """The checked destination of a save: right suffix, overwrite allowed, model built."""
    _check_suffix(filepath, suffix, what, other)
    path = Path(filepath)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists and overwrite=False")
    if not model.built:
        raise ValueError(f"Model '{model.name}' is not built yet: there are no weights to save")
    return path


def _read(path: PathLike, what: str
          ) -> tuple[Path, dict[str, Float32Array], dict[str, str]]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"No {what} file at {str(file)!r}")
    data = file.read_bytes()
    try:
        tensors, metadata = _core.safetensors_loads(data)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{file}: cannot read {what} file: {e}") from None
    return file, dict(tensors), metadata


# Limits on the JSON a file carries: real configs are a few KB and nest a few
# levels per layer; a hostile file must not exhaust the parser's stack or memory.
MAX_JSON_CHARS = 64 << 20
MAX_RANK = 8  # (axes of a per-sample shape; the engine's limit)
MAX_JSON_DEPTH = 200
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(text: str) -> int:
    """How deep the lists and objects of JSON `text` nest (linear time, no recursion)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if not brackets:
        return 0
    steps = np.frombuffer(brackets.encode(), np.uint8)
    opens = (steps == ord("[")) | (steps == ord("{"))
    return int(np.cumsum(np.where(opens, 1, -1)).max())


def _json(path: Path, metadata: dict[str, str], key: str) -> Any:
    try:
        text = metadata[key]
    except KeyError:
        raise ValueError(f"{path}: missing '{key}' in the file's metadata") from None
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"{path}: '{key}' in the metadata is {len(text)} characters long; "
                         f"files hold at most {MAX_JSON_CHARS}")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{path}: '{key}' in the metadata nests {depth} levels deep; "
                         f"files nest at most {MAX_JSON_DEPTH}")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: '{key}' in the metadata is not valid JSON ({e})") from None


def _check_format(path: Path, metadata: dict[str, str], expected: str) -> int:
    found = metadata.get("format")
    if found != expected:
        hint = (" (a weights file: use model.load_weights)" if found == WEIGHTS_FORMAT else
                " (a whole-model file: use ferrax.models.load_model)" if found == FORMAT else "")
        raise ValueError(f"{path}: not a {expected} file (format {found!r}){hint}")
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise ValueError(f"{path}: invalid format_version "
                         f"{metadata.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: written in format version {version} by a newer ferrax; "
                         f"this ferrax reads versions up to {FORMAT_VERSION}: upgrade ferrax")
    return version


# --- whole models ------------------------------------------------------------
def save_model(model: Model, filepath: PathLike, overwrite: bool = True) -> None:
    """Save architecture, weights, compile settings and optimizer state to one file."""
    path = _save_target(model, filepath, overwrite, MODEL_SUFFIX, "Model",
                        f"; use model.save_weights for '{WEIGHTS_SUFFIX}' files")
    variables = model._variables()
    tensors = [(f"weights/{v.name}", w) for v, w in zip(variables, model.get_weights())]
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "ferrax_version": _core.__version__,
        "model_class": _model_class_name(model),
        "model_config": json.dumps(model.get_config()),
        "input_shape": json.dumps(list(model._input_shape)),
        "seed": str(model._seed),
        "step": str(model._built_core().step),
        "epochs_run": str(model._epochs_run),
        "weight_names": json.dumps([v.name for v in variables]),
    }
    if model._compile_config is not None:
        meta["compile_config"] = json.dumps(_compile_config(model))
        state = model._built_core().optimizer_state() or model._pending_optimizer_state
        if state is not None:
            iterations, u_product, slot_names, slots = state
            meta["optimizer_state"] = json.dumps({"iterations": int(iterations),
                                                  "u_product": float(u_product),
                                                  "slots": list(slot_names)})
            for v, per_slot in zip(variables, slots):
                for name, a in zip(slot_names, per_slot):
                    tensors.append((f"optimizer/{v.name}/{name}", a))
    data = _core.safetensors_dumps([(n, np.ascontiguousarray(a, np.float32))
                                    for n, a in tensors], meta)
    atomic_write(path, data)


def _compile_config(model: Model) -> dict[str, Any]:
    from ferrax import losses, optimizers

    cfg = model._compile_config
    assert cfg is not None  # only called for compiled models
    return {
        "optimizer": optimizers.serialize(cfg["optimizer"]),
        "loss": None if cfg["loss"] is None else losses.serialize(cfg["loss"]),
        "metrics": [_metric_config(m) for m in cfg["metrics"]],
        # a model with several outputs: each one's loss, loss weight and metrics
        "heads": None if model._heads is None else [
            {"loss": losses.serialize(h.loss), "weight": h.weight,
             "metrics": [_metric_config(m) for m in h.metrics]} for h in model._heads],
    }


def _metric_config(m: Any) -> dict[str, Any]:
    return {"kind": m.kind, "name": m.name, "args": m.args}


def _model_classes() -> dict[str, type[Model]]:
    """The model classes a file may name: looked up here, never imported by name."""
    from ferrax.models import Sequential
    from ferrax.models.functional import Functional

    return {"Sequential": Sequential, "Functional": Functional}


def _model_class_name(model: Model) -> str:
    for name, cls in _model_classes().items():
        if type(model) is cls:
            return name
    from ferrax.models.functional import Functional

    if isinstance(model, Functional):
        # CustomModel(inputs, outputs): its graph saves as a functional model's (it
        # loads as one; its own train_step lives in its class, not in the file)
        return "Functional"
    if model._is_subclassed():
        return get_registered_name(model)
    raise ValueError(f"Model '{model.name}': only Sequential, functional and subclassed "
                     f"models can be saved, not {type(model).__name__}")


def load_model(filepath: PathLike, custom_objects: dict[str, Any] | None = None,
               compile: bool = True, safe_mode: bool = True) -> Model:
    """A model saved with model.save(), with its weights and, if compiled, its
    optimizer state: training resumes exactly where it stopped."""
    path, tensors, meta = _read(filepath, "model")
    _check_format(path, meta, FORMAT)
    config = _json(path, meta, "model_config")
    class_name = meta.get("model_class", "Sequential")
    model_cls: Any = _model_classes().get(class_name) or get_registered_object(
        class_name, custom_objects)
    from ferrax.models import Model as _Model

    if not (isinstance(model_cls, type) and issubclass(model_cls, _Model)):
        raise ValueError(f"{path}: unknown model class {class_name!r}; this ferrax reads "
                         f"{sorted(_model_classes())}, subclassed models that are "
                         f"registered with ferrax.saving.register_keras_serializable, and "
                         f"those passed as custom_objects")
    # (the weights the architecture builds cannot hold more than the file's tensors)
    stored = sum(t.nbytes for k, t in tensors.items() if k.startswith("weights/"))
    input_shape = _input_shape(path, meta)
    try:
        with custom_object_scope(custom_objects), _memory.weights_from_file(stored):
            model = model_cls.from_config(config)
            model._seed = int(meta["seed"])
            # (with axes of unknown length the saved shape is the last call's; each call
            # sets its own, so the model is built as its config declares it)
            model.build(None if model._variable_axes() else
                        (None, *input_shape))
    except _MALFORMED as e:
        raise ValueError(f"{path}: the saved architecture cannot be rebuilt: "
                         f"{_malformed(e)}") from None
    names = [v.name for v in model._variables()]
    if model._is_subclassed():
        # its layers' names come from a counter, so they differ between processes: by
        # order, as the file lists them
        saved = json.loads(meta.get("weight_names", "[]"))
        if len(saved) == len(names):
            tensors = {f"weights/{n}": tensors[f"weights/{s}"] for n, s in zip(names, saved)
                       if f"weights/{s}" in tensors} | {
                k: v for k, v in tensors.items() if not k.startswith("weights/")}
    weights = []
    for v in model._variables():
        key = f"weights/{v.name}"
        if key not in tensors:
            raise ValueError(f"{path}: weight '{v.name}' is missing from the file")
        if tuple(tensors[key].shape) != v.shape:
            raise ValueError(f"{path}: weight '{v.name}' has shape {tuple(tensors[key].shape)}, "
                             f"the layer needs {v.shape}")
        weights.append(tensors[key])
    extra = sorted(k for k in tensors if k.startswith("weights/") and k[8:] not in names)
    if extra:
        raise ValueError(f"{path}: the file has weights no layer uses: {', '.join(extra)}")
    model.set_weights(weights)
    model._built_core().step = _counter(path, meta, "step")
    model._epochs_run = _counter(path, meta, "epochs_run")
    if compile and "compile_config" in meta:
        with custom_object_scope(custom_objects):  # (a loss function among them)
            _restore_compile(model, path, meta, tensors)
    return model


# What a malformed config raises while it is rebuilt (a list where a dict belongs,
# a missing key, an index past the end ...): all of them say the file is bad.
_MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError,
              NotImplementedError, RecursionError)


def _malformed(e: BaseException) -> str:
    """A malformed config's error as a message: ferrax's own as they are, Python's named."""
    if type(e) in (ValueError, NotImplementedError):
        return str(e)
    return f"malformed config ({type(e).__name__}: {e})"


def _counter(path: Path, meta: dict[str, str], key: str) -> int:
    """A training counter from the metadata: an integer from 0 to 2**63 - 1."""
    text = meta.get(key, "0")
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise ValueError(f"{path}: '{key}' in the metadata must be an integer from 0 to "
                         f"2**63 - 1, got {text[:40]!r}")
    return value


def _input_shape(path: Path, meta: dict[str, str]) -> list[int]:
    """The saved per-sample input shape: a list of positive integers."""
    shape = _json(path, meta, "input_shape")
    if not (isinstance(shape, list) and len(shape) <= MAX_RANK and all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        text = json.dumps(shape)
        shown = text if len(text) <= 80 else text[:80] + "..."
        raise ValueError(f"{path}: 'input_shape' in the metadata must be a list of at most "
                         f"{MAX_RANK} positive integers, got {shown}")
    return shape


def _restore_compile(model: Model, path: Path, meta: dict[str, str],
                     tensors: dict[str, Float32Array]) -> None:
    from ferrax import losses, metrics, optimizers

    cfg = _json(path, meta, "compile_config")

    def metric(m: dict[str, Any]) -> metrics.Metric:
        if m["kind"] == "traced":  # a metric function: found by name, never loaded
            return metrics.MetricFunctionWrapper.from_name(m["name"])
        if not (isinstance(m.get("name"), str) and isinstance(m.get("args", {}), dict)):
            raise ValueError(f"a metric needs a name (a string) and args (a dict), got {m}")
        if m["kind"] not in metrics.SAVED_KINDS:
            raise ValueError(f"unknown metric kind {m['kind']!r} (of metric {m.get('name')!r}); "
                             f"files hold {sorted(metrics.SAVED_KINDS)}")
        return metrics.Metric(m["kind"], m["name"], **m["args"])

    try:
        if cfg.get("heads"):
            model.compile(optimizer=optimizers.get(cfg["optimizer"]),
                          loss=[losses.get(h["loss"]) for h in cfg["heads"]],
                          loss_weights=[float(h["weight"]) for h in cfg["heads"]],
                          metrics=[[metric(m) for m in h["metrics"]] for h in cfg["heads"]])
        else:
            model.compile(
                optimizer=optimizers.get(cfg["optimizer"]),
                loss=None if cfg["loss"] is None else losses.get(cfg["loss"]),
                metrics=[metric(m) for m in cfg["metrics"]],
            )
    except _MALFORMED as e:
        raise ValueError(f"{path}: the saved compile settings are invalid: {e}") from None
    if "optimizer_state" not in meta:
        return
    state = _json(path, meta, "optimizer_state")
    try:
        slot_names = list(state["slots"])
        iterations, u_product = int(state["iterations"]), float(state["u_product"])
        if not (0 <= iterations < 2**63 and math.isfinite(u_product)):
            raise ValueError(f"iterations must be an integer from 0 to 2**63 - 1 and u_product "
                             f"a finite number, got {iterations} and {u_product}")
    except _MALFORMED as e:
        raise ValueError(f"{path}: invalid optimizer state: {e}") from None
    slots: list[list[Float32Array]] = []
    for v in model._variables():
        per: list[Float32Array] = []
        for name in slot_names:
            key = f"optimizer/{v.name}/{name}"
            if key in tensors:
                if tuple(tensors[key].shape) != v.shape:
                    raise ValueError(f"{path}: optimizer state '{key}' has shape "
                                     f"{tuple(tensors[key].shape)}, expected {v.shape}")
                per.append(tensors[key])
        if per and len(per) != len(slot_names):
            raise ValueError(f"{path}: optimizer state of '{v.name}' is incomplete")
        slots.append(per)
    model._pending_optimizer_state = (iterations, u_product, slot_names, slots)


# --- weights only --------------------------------------------------------------
def save_weights(model: Model, filepath: PathLike, overwrite: bool = True) -> None:
    """The weights alone, as a standard safetensors file (names like 'dense/kernel')."""
    path = _save_target(model, filepath, overwrite, WEIGHTS_SUFFIX, "Weights", "")
    variables = model._variables()
    meta = {"format": WEIGHTS_FORMAT, "format_version": str(FORMAT_VERSION),
            "weight_names": json.dumps([v.name for v in variables])}
    data = _core.safetensors_dumps(
        [(v.name, np.ascontiguousarray(w, np.float32))
         for v, w in zip(variables, model.get_weights())], meta)
    atomic_write(path, data)


def load_weights(model: Model, filepath: PathLike) -> None:
    """Load weights saved by save_weights: by name, or in saved order when the layer
    names differ (e.g. a rebuilt model with other auto-names) but the shapes agree."""
    _check_suffix(filepath, WEIGHTS_SUFFIX, "Weights", "")
    path, tensors, meta = _read(filepath, "weights")
    if not model.built:
        raise ValueError(f"Model '{model.name}' must be built before load_weights")
    variables = model._variables()
    names = [v.name for v in variables]
    if set(names) == set(tensors):
        order = names
    else:
        saved = _json(path, meta, "weight_names") if "weight_names" in meta else sorted(tensors)
        if not isinstance(saved, list) or sorted(map(str, saved)) != sorted(tensors):
            raise ValueError(f"{path}: the weight names in its metadata do not match its tensors")
        if len(saved) != len(names):
            raise ValueError(f"{path}: holds {len(saved)} weights, model '{model.name}' has "
                             f"{len(names)}")
        order = saved
    weights = []
    for v, key in zip(variables, order):
        if tuple(tensors[key].shape) != v.shape:
            raise ValueError(f"{path}: weight '{key}' has shape {tuple(tensors[key].shape)}, "
                             f"'{v.name}' needs {v.shape}")
        weights.append(tensors[key])
    model.set_weights(weights)
