"""ferrax.datasets.mnist / fashion_mnist: where data is found, checked, downloaded.

Never touches the network: every mirror points at 127.0.0.1 (a closed port, or a server
run by the test). Fake sets are small; the loaders read counts from the files' headers and
check the real counts (COUNTS) only for sources other than an explicit path, so tests that
use those sources set COUNTS to the fake sizes.
"""

import hashlib
import http.server
import io
import socket
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from ferrax.datasets import DatasetFileError, DatasetNotFoundError, _store, fashion_mnist, mnist
from ferrax.datasets.idx import write_idx

N_TRAIN, N_TEST = 100, 20
GZ = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Every directory the loaders look at, redirected under tmp_path; mirrors offline."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "tmp").mkdir()
    (tmp_path / "sys").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FERRAX_HOME", raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("FERRAX_SYSTEM_DATA_DIRS", str(tmp_path / "sys"))
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(_store, "TIMEOUT", 5.0)
    offline = closed_port_url()
    for mod in (mnist, fashion_mnist):
        monkeypatch.setattr(mod, "MIRRORS", tuple((offline, names) for _, names in mod.MIRRORS))
        monkeypatch.setattr(mod, "COUNTS", (N_TRAIN, N_TEST))
    return tmp_path


def fake_set(seed=0, n_train=N_TRAIN, n_test=N_TEST):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n_train, dtype=np.uint8),
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n_test, dtype=np.uint8))


def write_set(d, arrays, gz=True):
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in zip(GZ, arrays):
        write_idx(d / (name if gz else name[:-3]), arr)
    return d


def write_npz(path, arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays)))
    return path


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def use_checksums_of(monkeypatch, mod, d, names):
    table = {n: (sha(d / n),) for n in names}
    monkeypatch.setattr(mod, "SHA256", table)
    monkeypatch.setattr(mod, "SIZES", {n: (d / n).stat().st_size for n in names})


def assert_loaded(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    for got, want in zip((x_train, y_train, x_test, y_test), arrays):
        assert got.dtype == np.uint8
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- explicit path

@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("mod", [mnist, fashion_mnist])
def test_explicit_idx_directory(env, gz, mod):
    arrays = fake_set()
    d = write_set(env / "data", arrays, gz=gz)
    assert_loaded(mod.load_data(path=d), arrays)
    assert_loaded(mod.load_data(path=str(d)), arrays)


def test_explicit_npz_file_and_directory(env):
    arrays = fake_set(1, 30, 7)  # any counts load from an explicit path
    f = write_npz(env / "d" / "mnist.npz", arrays)
    assert_loaded(mnist.load_data(path=f), arrays)
    assert_loaded(mnist.load_data(path=f.parent), arrays)
    g = write_npz(env / "e" / "fashion-mnist.npz", arrays)
    assert_loaded(fashion_mnist.load_data(path=g.parent), arrays)


def test_explicit_path_missing(env):
    with pytest.raises(DatasetNotFoundError, match="nowhere") as e:
        mnist.load_data(path=env / "nowhere")
    assert isinstance(e.value, FileNotFoundError)
    (env / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte") as e:
        mnist.load_data(path=env / "empty")
    assert "mnist.npz" in str(e.value)


def test_keras_default_path_name_searches_like_none(env, monkeypatch):
    arrays = fake_set(2)
    write_npz(env / "home" / ".keras" / "datasets" / "mnist.npz", arrays)
    monkeypatch.chdir(env)
    assert_loaded(mnist.load_data("mnist.npz"), arrays)


def test_npz_with_objects_is_refused(env):
    f = env / "obj.npz"
    x = np.empty(2, dtype=object)
    np.savez(f, x_train=x, y_train=x, x_test=x, y_test=x)
    with pytest.raises(DatasetFileError, match="obj.npz.*Python objects"):
        mnist.load_data(path=f)


def test_npz_with_lying_header_is_refused(env):
    # A member whose .npy header claims 10^12 bytes: refused before numpy allocates.
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**6)})
    f = env / "liar.npz"
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            z.writestr(key + ".npy", buf.getvalue() + b"\0" * 64)
    with pytest.raises(DatasetFileError, match="liar.npz.*truncated or corrupt"):
        mnist.load_data(path=f)


def test_npz_missing_key_and_not_npz(env):
    f = env / "partial.npz"
    np.savez(f, x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DatasetFileError, match="partial.npz.*y_train"):
        mnist.load_data(path=f)
    g = env / "junk.bin"
    g.write_bytes(b"not a zip")
    with pytest.raises(DatasetFileError, match="junk.bin: not a .npz"):
        mnist.load_data(path=g)


def test_truncated_file_is_named(env):
    d = write_set(env / "data", fake_set(), gz=False)
    target = d / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(DatasetFileError, match="train-images-idx3-ubyte: truncated"):
        mnist.load_data(path=d)


def test_truncated_gz_is_named(env):
    d = write_set(env / "data", fake_set(), gz=True)
    target = d / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-40])
    with pytest.raises(DatasetFileError, match="t10k-images-idx3-ubyte.gz: (corrupt|truncated)"):
        fashion_mnist.load_data(path=d)


def test_wrong_magic_is_named(env):
    arrays = list(fake_set())
    d = write_set(env / "data", arrays, gz=True)
    # Labels where the images should be: magic 0x00000801 instead of 0x00000803.
    write_idx(d / "train-images-idx3-ubyte.gz", arrays[1])
    with pytest.raises(DatasetFileError,
                       match=r"train-images-idx3-ubyte.gz: wrong magic number 0x00000801"):
        mnist.load_data(path=d)
    (d / "train-images-idx3-ubyte.gz").write_bytes(b"\x12\x34\x56\x78" + b"\0" * 20)
    with pytest.raises(DatasetFileError, match="train-images-idx3-ubyte.gz: not an IDX file"):
        mnist.load_data(path=d)


def test_inconsistent_set_is_named(env):
    x_train, y_train, x_test, y_test = fake_set()
    d = write_set(env / "a", (x_train, y_train[:-1], x_test, y_test))
    with pytest.raises(DatasetFileError, match="100 images but .*99 labels"):
        mnist.load_data(path=d)
    d = write_set(env / "b", (x_train[:, :27], y_train, x_test, y_test))
    with pytest.raises(DatasetFileError, match=r"\(27, 28\)"):
        mnist.load_data(path=d)
    d = write_set(env / "c", (x_train, y_train + 10, x_test, y_test))
    with pytest.raises(DatasetFileError, match="out of range"):
        mnist.load_data(path=d)


# ---------------------------------------------------------------- copies on the machine

def test_keras_cache_mnist_npz(env, monkeypatch):
    arrays = fake_set(3)
    write_npz(env / "home" / ".keras" / "datasets" / "mnist.npz", arrays)
    assert_loaded(mnist.load_data(), arrays)


def test_keras_home_env(env, monkeypatch):
    arrays = fake_set(4)
    write_npz(env / "kh" / "datasets" / "mnist.npz", arrays)
    monkeypatch.setenv("KERAS_HOME", str(env / "kh"))
    assert_loaded(mnist.load_data(), arrays)
    fashion = fake_set(5)
    write_set(env / "kh" / "datasets" / "fashion-mnist", fashion)
    assert_loaded(fashion_mnist.load_data(), fashion)


def test_keras_cache_fashion_gz_files(env):
    arrays = fake_set(6)
    write_set(env / "home" / ".keras" / "datasets" / "fashion-mnist", arrays)
    assert_loaded(fashion_mnist.load_data(), arrays)


def test_system_directory(env, monkeypatch):
    arrays = fake_set(7)
    write_set(env / "sys" / "fashion-mnist", arrays)
    assert_loaded(fashion_mnist.load_data(), arrays)
    mnist_arrays = fake_set(8)
    write_set(env / "sys" / "mnist", mnist_arrays, gz=False)
    assert_loaded(mnist.load_data(), mnist_arrays)


def test_system_directory_tuple(env, monkeypatch):
    monkeypatch.delenv("FERRAX_SYSTEM_DATA_DIRS")
    monkeypatch.setattr(_store, "SYSTEM_DATA_DIRS", (str(env / "elsewhere"), str(env / "sys2")))
    arrays = fake_set(9)
    write_set(env / "sys2" / "mnist", arrays)
    assert_loaded(mnist.load_data(), arrays)


def test_real_counts_are_checked_outside_explicit_path(env, monkeypatch):
    write_set(env / "sys" / "fashion-mnist", fake_set(10))
    monkeypatch.setattr(fashion_mnist, "COUNTS", (60_000, 10_000))
    with pytest.raises(DatasetFileError, match="expected 60000 training and 10000 test"):
        fashion_mnist.load_data()


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist not installed")
def test_debian_fashion_mnist(env, monkeypatch):
    monkeypatch.delenv("FERRAX_SYSTEM_DATA_DIRS")
    monkeypatch.setattr(fashion_mnist, "COUNTS", (60_000, 10_000))
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert (x_train.shape, y_train.shape, x_test.shape, y_test.shape) == \
        ((60000, 28, 28), (60000,), (10000, 28, 28), (10000,))
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert np.array_equal(np.bincount(y_train), [6000] * 10)
    assert np.array_equal(np.bincount(y_test), [1000] * 10)
    assert list(y_train[:10]) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]  # as Keras returns them
    # Debian's copies are among the digests the cache accepts.
    for name in GZ:
        assert sha(DEBIAN / name) in fashion_mnist.SHA256[name]


# ---------------------------------------------------------------- ferrax's cache

def test_cache_is_used_and_checked(env, monkeypatch):
    monkeypatch.setenv("FERRAX_HOME", str(env / "fh"))
    arrays = fake_set(11)
    cache = write_set(env / "fh" / "datasets" / "mnist", arrays)
    use_checksums_of(monkeypatch, mnist, cache, GZ)
    assert_loaded(mnist.load_data(), arrays)


def test_cache_checksum_mismatch_deletes_file(env, monkeypatch):
    arrays = fake_set(12)
    cache = write_set(env / "home" / ".ferrax" / "datasets" / "mnist", arrays)
    use_checksums_of(monkeypatch, mnist, cache, GZ)
    bad = cache / "t10k-labels-idx1-ubyte.gz"
    write_idx(bad, (arrays[3] + 1) % 10)  # a valid file, but not the published one
    with pytest.raises(DatasetFileError, match="t10k-labels-idx1-ubyte.gz failed its SHA-256"):
        mnist.load_data()
    assert not bad.exists()
    assert (cache / "train-images-idx3-ubyte.gz").exists()


def test_cache_npz(env, monkeypatch):
    arrays = fake_set(13)
    f = write_npz(env / "home" / ".ferrax" / "datasets" / "mnist" / "mnist.npz", arrays)
    monkeypatch.setitem(mnist.SHA256, "mnist.npz", (sha(f),))
    assert_loaded(mnist.load_data(), arrays)


# ---------------------------------------------------------------- offline error

@pytest.mark.parametrize("mod", [mnist, fashion_mnist])
def test_offline_error_lists_files_place_and_checksums(env, mod):
    with pytest.raises(DatasetNotFoundError) as e:
        mod.load_data()
    msg = str(e.value)
    assert isinstance(e.value, OSError)
    cache = env / "home" / ".ferrax" / "datasets" / mod.NAME
    assert str(cache) in msg
    assert "path=" in msg
    for name in GZ:
        assert name in msg
        assert mod.SHA256[name][0] in msg
    assert "127.0.0.1" in msg  # the attempts, with why they failed
    if mod is mnist:
        assert "mnist.npz" in msg and mod.SHA256["mnist.npz"][0] in msg
        assert "load_sample()" in msg
    else:
        assert "dataset-fashion-mnist" in msg
    assert not any(p.name.endswith(".part") for p in cache.rglob("*"))


# ---------------------------------------------------------------- downloads

class _Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict] = {}
    cut: ClassVar[set] = set()  # paths sent with a full Content-Length, then cut halfway

    def do_GET(self):
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.path in self.cut:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Handler", (_Handler,), {"files": {}, "cut": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def serve_set(handler, prefix, d, names):
    for name in names:
        handler.files[f"{prefix}{name}"] = (d / name).read_bytes()


def test_download_into_cache(env, monkeypatch, server, capsys):
    handler, base = server
    arrays = fake_set(14)
    src = write_set(env / "src", arrays)
    serve_set(handler, "/mirror2/", src, GZ)
    use_checksums_of(monkeypatch, mnist, src, GZ)
    # The first mirror has nothing (404); the second serves the files.
    monkeypatch.setattr(mnist, "MIRRORS", ((base + "/mirror1/", tuple(GZ)),
                                           (base + "/mirror2/", tuple(GZ))))
    assert_loaded(mnist.load_data(), arrays)
    cache = env / "home" / ".ferrax" / "datasets" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(GZ)
    assert "Downloading " + base + "/mirror2/train-images-idx3-ubyte.gz" in capsys.readouterr().err
    # Offline again: the cache serves it.
    monkeypatch.setattr(mnist, "MIRRORS", ((closed_port_url(), tuple(GZ)),))
    assert_loaded(mnist.load_data(), arrays)


def test_download_npz_mirror(env, monkeypatch, server):
    handler, base = server
    arrays = fake_set(15)
    f = write_npz(env / "src" / "mnist.npz", arrays)
    handler.files["/keras/mnist.npz"] = f.read_bytes()
    monkeypatch.setitem(mnist.SHA256, "mnist.npz", (sha(f),))
    monkeypatch.setitem(mnist.SIZES, "mnist.npz", f.stat().st_size)
    monkeypatch.setattr(mnist, "MIRRORS", ((base + "/none/", tuple(GZ)),
                                           (base + "/keras/", ("mnist.npz",))))
    assert_loaded(mnist.load_data(), arrays)
    assert (env / "home" / ".ferrax" / "datasets" / "mnist" / "mnist.npz").is_file()


def test_interrupted_download_leaves_nothing(env, monkeypatch, server):
    handler, base = server
    src = write_set(env / "src", fake_set(16))
    serve_set(handler, "/m/", src, GZ)
    handler.cut.add("/m/train-images-idx3-ubyte.gz")
    use_checksums_of(monkeypatch, fashion_mnist, src, GZ)
    monkeypatch.setattr(fashion_mnist, "MIRRORS", ((base + "/m/", tuple(GZ)),))
    with pytest.raises(DatasetNotFoundError,
                       match="train-images-idx3-ubyte.gz: connection closed after"):
        fashion_mnist.load_data()
    cache = env / "home" / ".ferrax" / "datasets" / "fashion-mnist"
    assert list(cache.iterdir()) == []


def test_ctrl_c_during_download_leaves_nothing(env, monkeypatch, server):
    handler, base = server
    src = write_set(env / "src", fake_set(20))
    serve_set(handler, "/m/", src, GZ)
    use_checksums_of(monkeypatch, mnist, src, GZ)
    monkeypatch.setattr(mnist, "MIRRORS", ((base + "/m/", tuple(GZ)),))

    def interrupt(self, done):
        raise KeyboardInterrupt

    monkeypatch.setattr(_store._Progress, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        mnist.load_data()
    assert list((env / "home" / ".ferrax" / "datasets" / "mnist").iterdir()) == []


def test_download_checksum_mismatch_keeps_nothing(env, monkeypatch, server):
    handler, base = server
    src = write_set(env / "src", fake_set(17))
    serve_set(handler, "/m/", src, GZ)
    use_checksums_of(monkeypatch, mnist, src, GZ)
    monkeypatch.setitem(mnist.SHA256, "train-images-idx3-ubyte.gz", ("0" * 64,))
    monkeypatch.setattr(mnist, "MIRRORS", ((base + "/m/", tuple(GZ)),))
    with pytest.raises(DatasetNotFoundError, match="failed its SHA-256 check"):
        mnist.load_data()
    cache = env / "home" / ".ferrax" / "datasets" / "mnist"
    assert list(cache.iterdir()) == []


def test_download_too_long_is_cut(env, monkeypatch, server):
    handler, base = server
    src = write_set(env / "src", fake_set(18))
    serve_set(handler, "/m/", src, GZ)
    use_checksums_of(monkeypatch, mnist, src, GZ)
    monkeypatch.setitem(mnist.SIZES, "train-images-idx3-ubyte.gz", 10)
    monkeypatch.setattr(mnist, "MIRRORS", ((base + "/m/", tuple(GZ)),))
    with pytest.raises(DatasetNotFoundError, match="more than the 10 bytes"):
        mnist.load_data()
    assert list((env / "home" / ".ferrax" / "datasets" / "mnist").iterdir()) == []


def test_unwritable_home_falls_back_to_temp_dir(env, monkeypatch, server):
    handler, base = server
    arrays = fake_set(19)
    src = write_set(env / "src", arrays)
    serve_set(handler, "/m/", src, GZ)
    use_checksums_of(monkeypatch, mnist, src, GZ)
    monkeypatch.setattr(mnist, "MIRRORS", ((base + "/m/", tuple(GZ)),))
    blocker = env / "blocker"
    blocker.write_text("a file, so no directory can be made under it")
    monkeypatch.setenv("FERRAX_HOME", str(blocker / "ferrax"))
    assert_loaded(mnist.load_data(), arrays)
    fallback = env / "tmp" / ".ferrax" / "datasets" / "mnist"
    assert sorted(p.name for p in fallback.iterdir()) == sorted(GZ)
    monkeypatch.setattr(mnist, "MIRRORS", ((closed_port_url(), tuple(GZ)),))
    assert_loaded(mnist.load_data(), arrays)  # found again in the fallback cache


# ---------------------------------------------------------------- bundled sample

def test_sample():
    (x_train, y_train), (x_test, y_test) = mnist.load_sample()
    assert (x_train.shape, y_train.shape, x_test.shape, y_test.shape) == \
        ((4000, 28, 28), (4000,), (1000, 28, 28), (1000,))
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert np.array_equal(np.bincount(y_train, minlength=10), [400] * 10)
    assert np.array_equal(np.bincount(y_test, minlength=10), [100] * 10)
    assert 0 < x_train.mean() < 80 and x_train.max() == 255  # real digits, not noise
    # No digit is in both splits.
    train = {x.tobytes() for x in x_train}
    assert not any(x.tobytes() in train for x in x_test)


def test_load_or_sample_falls_back_to_the_bundled_sample(monkeypatch):
    import io

    from ferrax.datasets import fashion_mnist, load_or_sample

    def unavailable():
        raise OSError("no network\nsecond line")

    monkeypatch.setattr(fashion_mnist, "load_data", unavailable)
    out = io.StringIO()
    ((x, y), (xt, yt)), used = load_or_sample("fashion_mnist", out=out)
    assert used == "sample"
    assert x.shape == (4000, 28, 28) and xt.shape == (1000, 28, 28)
    line = out.getvalue()
    assert line.count("\n") == 1 and "fashion_mnist" in line and "no network" in line
    assert load_or_sample("sample")[1] == "sample"
    with pytest.raises(ValueError, match="cifar10"):
        load_or_sample("cifar10")
