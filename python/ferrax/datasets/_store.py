"""Where data sets live on disk, how they are checked, and how they are downloaded.

Directories are resolved from the environment at call time (never cached at import), so
tests and users can redirect them: FERRAX_HOME (default ~/.ferrax), KERAS_HOME
(default ~/.keras), HOME, and FERRAX_SYSTEM_DATA_DIRS (os.pathsep-separated).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["DatasetFileError", "DatasetNotFoundError"]


class DatasetNotFoundError(FileNotFoundError):
    """A data set is on none of the places searched and could not be downloaded.

    The message lists the files needed, their checksums and where to put them.
    """


class DatasetFileError(ValueError):
    """A data-set file is corrupt, truncated, of the wrong format or fails its checksum.

    The message names the file and says what is wrong.
    """


# Where Linux distributions install data sets (Debian's dataset-fashion-mnist package puts
# its files in /usr/share/datasets/fashion-mnist). Tests may replace this tuple; the
# FERRAX_SYSTEM_DATA_DIRS environment variable, when set, takes precedence.
SYSTEM_DATA_DIRS: tuple[str, ...] = ("/usr/share/datasets", "/usr/local/share/datasets")

# Seconds to wait for a mirror to connect or to send the next bytes.
TIMEOUT = 30.0


def home_dir() -> Path:
    # $HOME first so that it can be faked on every platform; Path.home() knows Windows.
    home = os.environ.get("HOME")
    return Path(home) if home else Path.home()


def ferrax_home() -> Path:
    env = os.environ.get("FERRAX_HOME")
    return Path(env) if env else home_dir() / ".ferrax"


def cache_dirs(name: str) -> list[Path]:
    """Cache directories of data set ``name``, the preferred one first.

    The second, under the system temp directory, is used when the first is not writable.
    """
    first = ferrax_home() / "datasets" / name
    fallback = Path(tempfile.gettempdir()) / ".ferrax" / "datasets" / name
    return [first] if first == fallback else [first, fallback]


def writable_cache_dir(name: str) -> Path:
    """The first cache directory that can be created and written to."""
    errors = []
    for d in cache_dirs(name):
        try:
            d.mkdir(parents=True, exist_ok=True)
            # os.access is unreliable on Windows and network file systems: really try.
            with tempfile.TemporaryFile(dir=d):
                pass
            return d
        except OSError as e:
            errors.append(f"{d}: {e}")
    raise DatasetNotFoundError("no writable cache directory for " + name + ": "
                               + "; ".join(errors))


def keras_dirs() -> list[Path]:
    """Keras's dataset caches: $KERAS_HOME, ~/.keras, and Keras's own temp fallback."""
    dirs: list[Path] = []
    env = os.environ.get("KERAS_HOME")
    if env:
        dirs.append(Path(env) / "datasets")
    dirs.append(home_dir() / ".keras" / "datasets")
    dirs.append(Path(tempfile.gettempdir()) / ".keras" / "datasets")
    return _unique(dirs)


def system_dirs(subdirs: Sequence[str]) -> list[Path]:
    env = os.environ.get("FERRAX_SYSTEM_DATA_DIRS")
    roots: Iterable[str] = ([r for r in env.split(os.pathsep) if r] if env is not None
                            else SYSTEM_DATA_DIRS)
    return _unique(Path(root) / sub for root in roots for sub in subdirs)


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: set[Path] = set()
    out: list[Path] = []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify_cached(path: Path, digests: tuple[str, ...]) -> None:
    """Check a file in ferrax's cache; delete it and raise DatasetFileError if it fails."""
    got = sha256_of(path)
    if got in digests:
        return
    _remove(path)
    raise DatasetFileError(
        f"{path} failed its SHA-256 check (expected {digests[0]}, got {got}); "
        "the file was deleted from the cache. Call load_data() again to download a fresh "
        "copy, or put a good copy there."
    )


def download(url: str, dest: Path, digests: tuple[str, ...], size: int | None) -> None:
    """Download ``url`` to ``dest``, check its SHA-256, then move it into place atomically.

    The data is streamed to a temporary file next to ``dest``; that file is removed on
    any failure (network error, short or long body, checksum mismatch, Ctrl-C), so the
    cache never holds a partial or unverified file. Raises OSError (URLError, timeouts),
    http.client.HTTPException or DatasetFileError.
    """
    # Allow some slack over the published size, but refuse a server that streams forever.
    cap = None if size is None else size + size // 10 + (1 << 16)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    bar = None
    try:
        h = hashlib.sha256()
        req = urllib.request.Request(url, headers={"User-Agent": "ferrax"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = _Progress(dest.name, url, total if total is not None else size)
            done = 0
            while chunk := resp.read(1 << 16):
                done += len(chunk)
                if cap is not None and done > cap:
                    raise DatasetFileError(f"{url}: server sent more than the {size} bytes "
                                           f"{dest.name} should have")
                h.update(chunk)
                out.write(chunk)
                bar.update(done)
            bar.close(done)
            bar = None
            if total is not None and done != total:
                raise OSError(f"connection closed after {done} of {total} bytes")
        got = h.hexdigest()
        if got not in digests:
            raise DatasetFileError(
                f"{url}: downloaded {dest.name} failed its SHA-256 check "
                f"(expected {digests[0]}, got {got}); discarded"
            )
        os.replace(tmp, dest)
    except BaseException:
        _remove(Path(tmp))
        if bar is not None:
            bar.abort()
        raise


# What a failed mirror can raise; any of these means "try the next one".
DOWNLOAD_ERRORS = (OSError, http.client.HTTPException, urllib.error.URLError,
                   DatasetFileError, ValueError)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


class _Progress:
    """A progress bar on stderr: redrawn in place on a terminal, two lines otherwise."""

    def __init__(self, name: str, url: str, total: int | None):
        self.name, self.total = name, total
        self.tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.last = 0.0
        size = f" ({total / 1e6:.1f} MB)" if total else ""
        sys.stderr.write(f"Downloading {url}{size}\n")
        sys.stderr.flush()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.tty or now - self.last < 0.1:
            return
        self.last = now
        self._draw(done)

    def _draw(self, done: int) -> None:
        if self.total:
            frac = min(done / self.total, 1.0)
            bar = "=" * int(frac * 30)
            text = (f"\r{self.name} [{bar:<30}] {frac:4.0%} "
                    f"{done / 1e6:.1f}/{self.total / 1e6:.1f} MB")
        else:
            text = f"\r{self.name} {done / 1e6:.1f} MB"
        sys.stderr.write(text)
        sys.stderr.flush()

    def abort(self) -> None:
        if self.tty and self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()

    def close(self, done: int) -> None:
        if self.tty:
            self._draw(done)
            sys.stderr.write("\n")
        else:
            sys.stderr.write(f"{self.name}: {done / 1e6:.1f} MB received\n")
        sys.stderr.flush()
