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
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ferrax import _core
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


def _json(path: Path, metadata: dict[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except KeyError:
        raise ValueError(f"{path}: missing '{key}' in the file's metadata") from None
    except json.JSONDecodeError as e:
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
    try:
        with custom_object_scope(custom_objects):
            model = model_cls.from_config(config)
        model._seed = int(meta["seed"])
        # (with axes of unknown length the saved shape is the last call's; each call sets
        # its own, so the model is built as its config declares it)
        model.build(None if model._variable_axes() else
                    (None, *_json(path, meta, "input_shape")))
    except (KeyError, TypeError, ValueError, NotImplementedError) as e:
        raise ValueError(f"{path}: the saved architecture cannot be rebuilt: {e}") from None
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
    try:
        model._built_core().step = int(meta.get("step", "0"))
        model._epochs_run = int(meta.get("epochs_run", "0"))
    except ValueError as e:
        raise ValueError(f"{path}: invalid training counters in metadata: {e}") from None
    if compile and "compile_config" in meta:
        with custom_object_scope(custom_objects):  # (a loss function among them)
            _restore_compile(model, path, meta, tensors)
    return model


def _restore_compile(model: Model, path: Path, meta: dict[str, str],
                     tensors: dict[str, Float32Array]) -> None:
    from ferrax import losses, metrics, optimizers

    cfg = _json(path, meta, "compile_config")

    def metric(m: dict[str, Any]) -> metrics.Metric:
        if m["kind"] == "traced":  # a metric function: found by name, never loaded
            return metrics.MetricFunctionWrapper.from_name(m["name"])
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
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: the saved compile settings are invalid: {e}") from None
    if "optimizer_state" not in meta:
        return
    state = _json(path, meta, "optimizer_state")
    try:
        slot_names = list(state["slots"])
        iterations, u_product = int(state["iterations"]), float(state["u_product"])
    except (KeyError, TypeError, ValueError) as e:
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
