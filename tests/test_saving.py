"""Model and weight files: round trips, exact resumption, and hostile input."""

import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import ferrax
from ferrax import layers, regularizers


def _data(n=240, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, classes, n)


def _model(optimizer="adam", seed=5):
    ferrax.utils.set_random_seed(seed)
    model = ferrax.Sequential([
        ferrax.Input(shape=(6,)),
        layers.Dense(16, activation="relu", kernel_regularizer=regularizers.L2(1e-3),
                     kernel_initializer="he_normal", name="hidden"),
        layers.Dropout(0.25),
        layers.Reshape((4, 4)),
        layers.Flatten(),
        layers.Activation("tanh"),
        layers.Dense(3, activation="softmax", use_bias=True, bias_initializer="ones"),
    ])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def read_safetensors(path):
    """An independent reader of the safetensors layout: u64 header size, JSON, data."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32"
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + start:8 + n + end], "<f4").reshape(info["shape"])
    return out, meta


def write_safetensors(path, tensors, meta, dtype="F32", header_override=None):
    header = {"__metadata__": meta}
    blobs, offset = [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, "<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if header_override:
        header_override(header)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_round_trip_keeps_every_layer_config_and_prediction(tmp_path):
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "m.ferrax"
    model.save(path)
    loaded = ferrax.models.load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("optimizer", [
    "adam", "nadam", "adagrad", "adamw",
    ferrax.optimizers.RMSprop(momentum=0.5, centered=True),
    ferrax.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
])
def test_fit_two_epochs_equals_fit_save_load_fit_bitwise(tmp_path, optimizer):
    x, y = _data()
    opt = lambda: ferrax.optimizers.get(optimizer) if isinstance(optimizer, str) else \
        type(optimizer).from_config(optimizer.get_config())  # noqa: E731
    straight = _model(opt())
    straight.fit(x, y, epochs=2, batch_size=32, verbose=0)
    first = _model(opt())
    first.fit(x, y, epochs=1, batch_size=32, verbose=0)
    first.save(tmp_path / "half.ferrax")
    resumed = ferrax.models.load_model(tmp_path / "half.ferrax")
    assert resumed.optimizer.iterations == 0 or resumed.optimizer.iterations == 8
    resumed.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert resumed.optimizer.iterations == 16
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_weights_file_is_plain_safetensors_and_loads_by_order(tmp_path):
    x, _ = _data()
    model = _model()
    path = tmp_path / "w.weights.safetensors"
    model.save_weights(path)
    tensors, meta = read_safetensors(path)
    assert sorted(tensors) == sorted(v.name for v in model.weights)
    np.testing.assert_array_equal(tensors["hidden/kernel"], model.get_weights()[0])
    other = _model(seed=9)  # other auto-names, other values
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


def test_wrong_suffixes_and_unbuilt_models_are_refused(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match=r"\.ferrax"):
        model.save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match=r"\.weights\.safetensors"):
        model.save_weights(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="not built"):
        ferrax.Sequential([layers.Dense(2)]).save(tmp_path / "u.ferrax")
    with pytest.raises(FileNotFoundError, match="nothing.ferrax"):
        ferrax.models.load_model(tmp_path / "nothing.ferrax")


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    ferrax.utils.set_random_seed(1)
    model = ferrax.Sequential([layers.Dense(3, input_shape=(2,)), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    path = tmp_path_factory.mktemp("small") / "s.ferrax"
    model.save(path)
    return path


def test_every_truncation_gives_a_clear_error(small_file, tmp_path):
    raw = small_file.read_bytes()
    cut_path = tmp_path / "cut.ferrax"
    for cut in range(len(raw)):
        cut_path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="cut.ferrax"):
            ferrax.models.load_model(cut_path)


def test_random_byte_flips_never_crash(small_file, tmp_path):
    raw = small_file.read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "flip.ferrax"
    outcomes = {"loaded": 0, "error": 0}
    for _ in range(300):
        data = bytearray(raw)
        for i in rng.integers(0, len(data), size=rng.integers(1, 4)):
            data[i] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(data))
        try:
            ferrax.models.load_model(path)
            outcomes["loaded"] += 1  # a flip inside the float data is still a valid file
        except ValueError as e:
            assert "flip.ferrax" in str(e)
            outcomes["error"] += 1
    assert outcomes["error"] > 0


def _meta(small_file):
    tensors, meta = read_safetensors(small_file)
    return dict(tensors), dict(meta)


@pytest.mark.parametrize("case, pattern", [
    ("garbage", "not a valid safetensors"),
    ("header_longer_than_file", "not a valid safetensors"),
    ("offsets_past_end", "not a valid safetensors"),
    ("float16", "float32"),
    ("wrong_shape", "shape"),
    ("missing_weight", "missing"),
    ("newer_version", "newer ferrax"),
    ("not_ferrax", "not a ferrax file"),
    ("bad_json", "not valid JSON"),
])
def test_hostile_files_raise_clear_errors(small_file, tmp_path, case, pattern):
    tensors, meta = _meta(small_file)
    path = tmp_path / f"{case}.ferrax"
    if case == "garbage":
        path.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 3)
    elif case == "header_longer_than_file":
        raw = bytearray(small_file.read_bytes())
        raw[:8] = struct.pack("<Q", len(raw) * 10)
        path.write_bytes(bytes(raw))
    elif case == "offsets_past_end":
        def grow(header):
            name = next(k for k in header if k != "__metadata__")
            header[name]["data_offsets"][1] += 10**9
            header[name]["shape"] = [header[name]["data_offsets"][1] // 4]
        write_safetensors(path, tensors, meta, header_override=grow)
    elif case == "float16":
        write_safetensors(path, tensors, meta, dtype="F16",
                          header_override=lambda h: [v["shape"].__setitem__(-1, v["shape"][-1] * 2)
                                                     for k, v in h.items() if k != "__metadata__"])
    elif case == "wrong_shape":
        key = next(k for k in tensors if k.startswith("weights/") and k.endswith("kernel"))
        tensors[key] = np.zeros((7, 7), np.float32)
        write_safetensors(path, tensors, meta)
    elif case == "missing_weight":
        del tensors[next(k for k in tensors if k.startswith("weights/"))]
        write_safetensors(path, tensors, meta)
    elif case == "newer_version":
        write_safetensors(path, tensors, {**meta, "format_version": "99"})
    elif case == "not_ferrax":
        write_safetensors(path, tensors, {**meta, "format": "something-else"})
    elif case == "bad_json":
        write_safetensors(path, tensors, {**meta, "model_config": "{not json"})
    with pytest.raises(ValueError, match=pattern):
        ferrax.models.load_model(path)


def test_older_files_still_load(small_file, tmp_path):
    # A file records its format version; this reader accepts every version up to its own.
    tensors, meta = _meta(small_file)
    assert meta["format_version"] == str(ferrax.saving.FORMAT_VERSION)
    path = tmp_path / "v1.ferrax"
    write_safetensors(path, tensors, {**meta, "format_version": "1"})
    ferrax.models.load_model(path)


def test_a_save_killed_midway_leaves_the_previous_file_loadable(tmp_path):
    target = tmp_path / "big.ferrax"
    code = f"""
import numpy as np, ferrax, sys
from ferrax import layers
ferrax.utils.set_random_seed(0)
m = ferrax.Sequential([layers.Dense(1024, input_shape=(1024,)), layers.Dense(1024)])
m.save({str(target)!r})
print("saved", flush=True)
while True:
    m.set_weights([w + 1 for w in m.get_weights()])
    m.save({str(target)!r})
"""
    for delay in (0.05, 0.2, 0.4):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "saved"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        proc.wait()
        model = ferrax.models.load_model(target)
        kernel = model.get_weights()[0]
        assert kernel.shape == (1024, 1024)
